"""
The restore drill's hands on a node: a scratch single-member etcd restored from a snapshot,
and digests of what an etcd holds, to compare the restored copy with the live cluster.

- ``start`` restores a snapshot (``etcd_snapshot.restore``: a new one-member cluster) into
  ``<work_dir>/data`` and runs ``etcd`` on 127.0.0.1 only, on scratch ports, plain HTTP
  (nothing leaves the loopback), under ``timeout`` so it dies by itself after
  ``max_lifetime`` even if the drill that started it does not come back.
- ``digest`` lists an etcd's keys under a prefix at a revision, counts them, and for a
  sample of keys returns each value's HMAC-SHA256 under the drill's own key (values are
  Secrets; only keyed digests leave the node) with its mod revision.
- ``stop`` ends the scratch etcd (only the process it started: PID and start time) and
  removes the work directory (only one that ``start`` marked).

The live cluster is read with the ``etcdctl`` module's TLS settings (kubeadm's
healthcheck-client); the scratch one without TLS.
"""

import base64
import contextlib
import hashlib
import hmac
import json
import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

from salt.exceptions import CommandExecutionError

__virtualname__ = "etcd_drill"

MARKER = ".kubeha-drill"
COMPACTED = "required revision has been compacted"


def __virtual__():
    return __virtualname__


def _tool(name: str, etcd_dir=None) -> str:
    if etcd_dir and (Path(etcd_dir) / name).exists():
        return str(Path(etcd_dir) / name)
    if name == "etcdctl":
        configured = (__salt__["config.get"]("etcdctl", {}) or {}).get("bin")
        if configured:
            return configured
    found = shutil.which(name)
    if not found:
        where = f" in {etcd_dir} or" if etcd_dir else ""
        raise CommandExecutionError(f"no {name}{where} on PATH (kubeha:drill:etcd_dir)")
    return found


def _start_time(pid: int) -> str:
    """The process's start time (/proc/<pid>/stat field 22); "" once it is gone or a zombie
    (a zombie holds nothing: only its parent's wait is missing)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our own child
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return ""
    return "" if fields[0] == "Z" else fields[19]


def prepare(work_dir):
    """
    Make the drill's work directory (0700) and mark it as the drill's, so that ``stop``
    removes it (and nothing else) whatever happens next.

    CLI Example:

    .. code-block:: bash

        salt cp-3 etcd_drill.prepare /var/lib/kubeha/drill/x
    """
    work = Path(work_dir)
    if work.exists() and not (work / MARKER).exists() and any(work.iterdir()):
        raise CommandExecutionError(f"{work} exists and is not a drill's; choose another work_dir")
    work.mkdir(parents=True, exist_ok=True, mode=0o700)
    (work / MARKER).write_text(str(time.time()))
    return {"work_dir": str(work)}


def start(
    snapshot,
    work_dir,
    *,
    client_port=23790,
    peer_port=23800,
    etcd_dir=None,
    wait=120,
    max_lifetime=1800,
):
    """
    Restore ``snapshot`` into ``<work_dir>/data`` and start a scratch etcd on
    ``127.0.0.1:<client_port>``; return once it answers (within ``wait`` seconds).

    CLI Example:

    .. code-block:: bash

        salt cp-3 etcd_drill.start /var/lib/kubeha/drill/x/etcd.db /var/lib/kubeha/drill/x
    """
    work = Path(work_dir)
    prepare(work_dir)
    etcd = _tool("etcd", etcd_dir)
    has_etcdutl = etcd_dir and (Path(etcd_dir) / "etcdutl").exists()
    etcdutl = _tool("etcdutl", etcd_dir) if has_etcdutl else None
    peer = f"http://127.0.0.1:{int(peer_port)}"
    client = f"http://127.0.0.1:{int(client_port)}"
    started = time.monotonic()
    restored = __salt__["etcd_snapshot.restore"](
        str(snapshot),
        str(work / "data"),
        "drill",
        f"drill={peer}",
        peer,
        initial_cluster_token=f"kubeha-drill-{os.getpid()}",
        etcdutl=etcdutl,
    )
    restore_s = time.monotonic() - started
    argv = [
        "timeout",
        "--kill-after=10",
        str(int(max_lifetime)),
        etcd,
        "--name=drill",
        f"--data-dir={work / 'data'}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=drill={peer}",
        "--log-level=warn",
    ]
    log = (work / "etcd.log").open("ab")
    proc = subprocess.Popen(  # noqa: S603 - argument list, our own binaries
        argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=str(work)
    )
    log.close()
    (work / "etcd.pid").write_text(json.dumps({"pid": proc.pid, "start": _start_time(proc.pid)}))
    deadline = time.monotonic() + float(wait)
    last = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = (work / "etcd.log").read_text(errors="replace")[-800:]
            raise CommandExecutionError(f"the scratch etcd exited ({proc.returncode}): {tail}")
        res = _etcdctl(["endpoint", "health"], client, etcd_dir=etcd_dir, tls=False, check=False)
        if res["retcode"] == 0:
            break
        last = (res["stderr"] or res["stdout"]).strip()[-300:]
        time.sleep(0.5)
    else:
        stop(str(work), remove=False)
        raise CommandExecutionError(f"the scratch etcd did not answer within {wait} s: {last}")
    return {
        "pid": proc.pid,
        "endpoint": client,
        "data_dir": str(work / "data"),
        "restore_s": round(restore_s, 3),
        "ready_s": round(time.monotonic() - started - restore_s, 3),
        "restored": restored,
    }


def stop(work_dir, remove=True):
    """
    Stop the scratch etcd that ``start`` left in ``work_dir`` and (``remove``) delete it.

    CLI Example:

    .. code-block:: bash

        salt cp-3 etcd_drill.stop /var/lib/kubeha/drill/x
    """
    work = Path(work_dir)
    if not (work / MARKER).exists():
        if work.exists():
            raise CommandExecutionError(f"{work} was not made by etcd_drill.start; not touching it")
        return {"stopped": False, "removed": False}
    stopped = False
    try:
        rec = json.loads((work / "etcd.pid").read_text())
    except (OSError, ValueError):
        rec = {}
    pid = int(rec.get("pid") or 0)
    if pid and rec.get("start") and _start_time(pid) == rec["start"]:
        # `timeout` forwards SIGTERM to etcd; the process group takes both down.
        for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                break
            end = time.monotonic() + grace
            while time.monotonic() < end and _start_time(pid) == rec["start"]:
                time.sleep(0.2)
            if _start_time(pid) != rec["start"]:
                break
        stopped = True
    if remove:
        shutil.rmtree(work, ignore_errors=True)
    return {"stopped": stopped, "removed": bool(remove) and not work.exists()}


def _etcdctl(args, endpoint, *, etcd_dir=None, tls=True, check=True, timeout=60):
    settings = __salt__["config.get"]("etcdctl", {}) or {}
    pki = "/etc/kubernetes/pki/etcd"
    cmd = [_tool("etcdctl", etcd_dir), f"--endpoints={endpoint}", "--command-timeout=30s"]
    if tls:
        cmd += [
            f"--cacert={settings.get('cacert') or pki + '/ca.crt'}",
            f"--cert={settings.get('cert') or pki + '/healthcheck-client.crt'}",
            f"--key={settings.get('key') or pki + '/healthcheck-client.key'}",
        ]
    res = __salt__["cmd.run_all"](
        [*cmd, *args],
        python_shell=False,
        env={"ETCDCTL_API": "3"},
        timeout=timeout,
        ignore_retcode=True,
        output_loglevel="quiet",  # values of Secrets pass through here
    )
    if check and res["retcode"] != 0:
        raise CommandExecutionError(
            f"etcdctl {' '.join(args[:2])} at {endpoint}: {(res['stderr'] or '').strip()[:400]}"
        )
    return res


def _fields(stdout: str) -> dict:
    """``-w fields`` output (``"Count" : 12``) as a dict of ints where they are ints."""
    out = {}
    for line in stdout.splitlines():
        name, sep, value = line.partition(" : ")
        if sep:
            value = value.strip()
            out[name.strip().strip('"')] = int(value) if value.lstrip("-").isdigit() else value
    return out


def _count(prefix, endpoint, rev, **kw) -> tuple[int, int]:
    """(count under prefix, header revision) at ``rev`` (0 = latest). etcdctl 3.5 counts on
    the server (``--count-only``); 3.4 has no such flag (Debian bookworm's etcd-client), so
    there the keys are listed and counted."""
    at = [f"--rev={int(rev)}"] if rev else []
    res = _etcdctl(["get", prefix, "--prefix", "--count-only", "-w", "fields", *at], endpoint,
                   check=False, **kw)  # fmt: skip
    if res["retcode"] == 0:
        got = _fields(res["stdout"])
        return int(got.get("Count", 0)), int(got.get("Revision", 0))
    if "unknown flag: --count-only" not in res["stderr"]:
        raise CommandExecutionError(
            f"etcdctl get {prefix} at {endpoint}: {(res['stderr'] or '').strip()[:400]}"
        )
    res = _etcdctl(["get", prefix, "--prefix", "--keys-only", "-w", "json", *at], endpoint, **kw)
    got = json.loads(res["stdout"] or "{}")
    return int(got.get("count", 0)), int(got.get("header", {}).get("revision", 0))


def _sample(keys: list[str], size: int, seed: str) -> list[str]:
    """A deterministic sample spread over resource types (/registry/<type>/...)."""
    by_type: dict[str, list[str]] = {}
    for key in sorted(keys):
        by_type.setdefault("/".join(key.split("/")[:3]), []).append(key)
    rng = random.Random(seed)
    pools = [rng.sample(v, len(v)) for _, v in sorted(by_type.items())]
    out: list[str] = []
    while len(out) < size and any(pools):
        for pool in pools:
            if pool and len(out) < size:
                out.append(pool.pop())
    return out


def digest(
    endpoint=None,
    seed="",
    *,
    prefix="/registry",
    sample=50,
    keys=None,
    revision=0,
    tls=True,
    etcd_dir=None,
):
    """
    What an etcd holds under ``prefix``: key count at ``revision`` (0 = latest), and for
    ``keys`` (or a sample of ``sample`` keys chosen with ``seed``) each value's
    HMAC-SHA256 under ``seed`` and its mod revision. ``endpoint`` defaults to the etcdctl
    module's (the local member). When ``revision`` has been compacted
    the keys are read at the latest revision and ``compacted`` says so.

    CLI Example:

    .. code-block:: bash

        salt cp-1 etcd_drill.digest seed=abc sample=20
        salt cp-3 etcd_drill.digest http://127.0.0.1:23790 seed=abc tls=False
    """
    if not endpoint:
        # The etcdctl module's first endpoint: kubeadm's local member by default.
        configured = (__salt__["config.get"]("etcdctl", {}) or {}).get("endpoints") or []
        endpoint = configured[0] if configured else "https://127.0.0.1:2379"
    kw = {"etcd_dir": etcd_dir, "tls": bool(tls)}
    if not seed:
        raise CommandExecutionError("digest needs a seed (the drill's HMAC key)")
    compacted = False
    count = head_rev = 0
    try:
        count, head_rev = _count(prefix, endpoint, revision, **kw)
    except CommandExecutionError as err:
        if COMPACTED not in str(err):
            raise
        compacted = True
    total, latest = _count("", endpoint, 0, **kw)
    read_rev = 0 if compacted else int(revision or 0)
    if keys is None:
        args = ["get", prefix, "--prefix", "--keys-only", "-w", "json"]
        res = _etcdctl([*args, f"--rev={read_rev}"] if read_rev else args, endpoint, **kw)
        listed = [
            base64.b64decode(kv["key"]).decode(errors="replace")
            for kv in json.loads(res["stdout"] or "{}").get("kvs") or []
        ]
        keys = _sample(listed, int(sample), seed)
    out = {}
    mac = seed.encode()
    for key in keys:
        args = ["get", key, "-w", "json"]
        res = _etcdctl([*args, f"--rev={read_rev}"] if read_rev else args, endpoint, **kw)
        kvs = json.loads(res["stdout"] or "{}").get("kvs") or []
        if not kvs:
            out[key] = None
            continue
        value = base64.b64decode(kvs[0].get("value", ""))
        out[key] = {
            "hmac": hmac.new(mac, value, hashlib.sha256).hexdigest()[:32],
            "mod_revision": int(kvs[0].get("mod_revision", 0)),
        }
    return {
        "endpoint": endpoint,
        "revision": int(revision or 0) or head_rev,
        "latest_revision": latest,
        "compacted": compacted,
        "count": None if compacted else count,
        "total_keys": total,
        "sample": out,
    }
