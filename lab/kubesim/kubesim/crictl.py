"""crictl stand-in over kubesim's container records (cri-tools cmd/crictl).

`ps` and `pods` print the tables of container.go/sandbox.go (tabwriter 20/1/3, ids
truncated to 13 characters, image ids shown as truncated digests); `stop` is CRI
StopContainer (default --timeout 0: SIGKILL at once); `inspect` prints JSON with a
`status` block; `logs` prints the container's log file.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

from . import cri, tabwriter
from . import flags as flagutil
from .humanize import units_human_duration
from .versions import own_version

STATE = {
    cri.RUNNING: "Running",
    cri.EXITED: "Exited",
    cri.CREATED: "Created",
    cri.UNKNOWN: "Unknown",
}
POD_STATE = {cri.READY: "Ready", cri.NOTREADY: "NotReady"}
BOOLS = {
    "a",
    "all",
    "q",
    "quiet",
    "no-trunc",
    "v",
    "verbose",
    "latest",
    "l",
    "version",
    "f",
    "follow",
    "r",
    "resolve-image-path",
}


def trunc(ident: str) -> str:
    return ident[:13]


def _ago(ns: int) -> str:
    return units_human_duration(time.time() - ns / 1e9) + " ago"


def ps(flags: dict, rest: list[str]) -> int:
    records = cri.Records()
    show_all = "a" in flags or "all" in flags
    # what containerd would answer: a start a dead kubelet left half-recorded resolved first
    items = [
        records.refresh(r) for c in records.containers() if (r := records.recover(c)) is not None
    ]
    name_re = flags.get("name")
    state = flags.get("state") or flags.get("s")
    pod = flags.get("pod") or flags.get("p")
    if not show_all and not state:
        items = [c for c in items if c.state == cri.RUNNING]
    if state:
        items = [c for c in items if STATE[c.state].lower() == state.lower()]
    if name_re:
        items = [c for c in items if re.search(name_re, c.name)]
    if pod:
        items = [c for c in items if c.pod_sandbox_id.startswith(pod)]
    items.sort(key=lambda c: c.created_at, reverse=True)
    if flags.get("latest") in ("true", "") or flags.get("l") in ("true", ""):
        items = items[:1]
    if flags.get("o") == "json" or flags.get("output") == "json":
        print(json.dumps({"containers": [_container_json(c) for c in items]}, indent=2))
        return 0
    if "q" in flags or "quiet" in flags:
        for c in items:
            print(c.id)
        return 0
    no_trunc = "no-trunc" in flags
    rows = [["CONTAINER", "IMAGE", "CREATED", "STATE", "NAME", "ATTEMPT", "POD ID", "POD"]]
    for c in items:
        image = c.image_ref if no_trunc else trunc(c.image_ref.split(":", 1)[1])
        rows.append(
            [
                c.id if no_trunc else trunc(c.id),
                image,
                _ago(c.created_at),
                STATE[c.state],
                c.name,
                str(c.attempt),
                c.pod_sandbox_id if no_trunc else trunc(c.pod_sandbox_id),
                c.labels.get("io.kubernetes.pod.name", ""),
            ]
        )
    print(tabwriter.table(rows, 20, 3), end="")
    return 0


def pods(flags: dict, rest: list[str]) -> int:
    records = cri.Records()
    items = sorted(records.sandboxes(), key=lambda s: s.created_at, reverse=True)
    if flags.get("name"):
        items = [s for s in items if flags["name"] in s.name]
    if flags.get("namespace"):
        items = [s for s in items if s.namespace == flags["namespace"]]
    if flags.get("state") or flags.get("s"):
        want = (flags.get("state") or flags.get("s") or "").lower()
        items = [s for s in items if POD_STATE[s.state].lower() == want]
    if flags.get("o") == "json" or flags.get("output") == "json":
        print(json.dumps({"items": [_sandbox_json(s) for s in items]}, indent=2))
        return 0
    if "q" in flags or "quiet" in flags:
        for s in items:
            print(s.id)
        return 0
    rows = [["POD ID", "CREATED", "STATE", "NAME", "NAMESPACE", "ATTEMPT", "RUNTIME"]]
    for s in items:
        rows.append(
            [
                trunc(s.id),
                _ago(s.created_at),
                POD_STATE[s.state],
                s.name,
                s.namespace,
                str(s.attempt),
                "(default)",
            ]
        )
    print(tabwriter.table(rows, 20, 3), end="")
    return 0


def _find(records: cri.Records, ident: str) -> cri.Container:
    try:
        c = records.find_container(ident)
    except ValueError as err:
        raise SystemExit(_fatal(str(err))) from err
    if c is None:
        raise SystemExit(
            _fatal(
                f"rpc error: code = NotFound desc = an error occurred when try to "
                f'find container "{ident}": not found'
            )
        )
    return c


def _fatal(message: str) -> int:
    print(
        f'time="{time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}" level=fatal msg="{message}"',
        file=sys.stderr,
    )
    return 1


def stop(flags: dict, rest: list[str]) -> int:
    if not rest:
        return _fatal("ID cannot be empty")
    records = cri.Records()
    timeout = float(flags.get("timeout") or flags.get("t") or 0)
    for ident in rest:
        c = _find(records, ident)
        cri.stop_container(records, c, timeout)
        print(ident)
    return 0


def _sandbox_json(s: cri.Sandbox) -> dict:
    return {
        "id": s.id,
        "metadata": {"name": s.name, "uid": s.uid, "namespace": s.namespace, "attempt": s.attempt},
        "state": s.state,
        "createdAt": str(s.created_at),
        "labels": s.labels,
        "annotations": s.annotations,
        "runtimeHandler": "",
    }


def _container_json(c: cri.Container) -> dict:
    return {
        "id": c.id,
        "podSandboxId": c.pod_sandbox_id,
        "metadata": {"name": c.name, "attempt": c.attempt},
        "image": {"image": c.image_ref, "annotations": {}},
        "imageRef": c.image_ref,
        "state": c.state,
        "createdAt": str(c.created_at),
        "labels": c.labels,
        "annotations": c.annotations,
    }


def inspect(flags: dict, rest: list[str]) -> int:
    records = cri.Records()
    out = []
    for ident in rest:
        c = records.refresh(_find(records, ident))
        out.append(
            {
                "status": {
                    "id": c.id,
                    "metadata": {"attempt": c.attempt, "name": c.name},
                    "state": c.state,
                    "createdAt": _rfc(c.created_at),
                    "startedAt": _rfc(c.started_at),
                    "finishedAt": _rfc(c.finished_at) if c.finished_at else "0001-01-01T00:00:00Z",
                    "exitCode": c.exit_code,
                    "image": {"annotations": {}, "image": c.image},
                    "imageRef": c.image_ref,
                    "reason": c.reason,
                    "message": "",
                    "labels": c.labels,
                    "annotations": c.annotations,
                    "mounts": [],
                    "logPath": c.log_path,
                },
                "info": {
                    "sandboxID": c.pod_sandbox_id,
                    "pid": c.pid if c.state == cri.RUNNING else 0,
                    "runtimeSpec": {"process": {"args": c.command}},
                },
            }
        )
    print(json.dumps(out[0] if len(out) == 1 else out, indent=2))
    return 0


def _rfc(ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns / 1e9)) + f".{int(ns % 1e9):09d}Z"


def logs(flags: dict, rest: list[str]) -> int:
    if not rest:
        return _fatal("ID cannot be empty")
    records = cri.Records()
    c = _find(records, rest[0])
    try:
        data = Path(c.log_path).read_bytes()
    except OSError as err:
        return _fatal(f'failed to try resolving symlinks in path "{c.log_path}": {err}')
    tail = flags.get("tail")
    if tail and tail != "-1":
        data = b"\n".join(data.splitlines()[-int(tail) :]) + b"\n"
    sys.stdout.buffer.write(data)
    return 0


def rm(flags: dict, rest: list[str]) -> int:
    records = cri.Records()
    for ident in rest:
        c = _find(records, ident)
        if c.state == cri.RUNNING and "f" not in flags and "force" not in flags:
            return _fatal(
                f'unable to remove container "{ident}": rpc error: code = Unknown desc = '
                "failed to remove container: container is running"
            )
        cri.stop_container(records, c, 0)
        records.remove_container(c.id)
        print(ident)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    flags, rest = flagutil.parse(argv, BOOLS)
    version = own_version()
    if "version" in flags and not rest:
        print(f"crictl version {version}")
        return 0
    if not rest:
        print(
            "NAME:\n   crictl - client for CRI\n\nCOMMANDS:\n   ps, pods, stop, inspect, logs, rm, version"  # noqa: E501 - upstream's text
        )
        return 0
    cmd, rest = rest[0], rest[1:]
    handlers = {"ps": ps, "pods": pods, "stop": stop, "inspect": inspect, "logs": logs, "rm": rm}
    if cmd == "version":
        print(
            "Version:  0.1.0\nRuntimeName:  containerd\nRuntimeVersion:  1.6.20\nRuntimeApiVersion:  v1"  # noqa: E501 - upstream's text
        )
        return 0
    if cmd not in handlers:
        return _fatal(f"No help topic for '{cmd}'")
    try:
        return handlers[cmd](flags, rest)
    except SystemExit as done:
        return int(done.code or 0)


if __name__ == "__main__":
    sys.exit(main())
