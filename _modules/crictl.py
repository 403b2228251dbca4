"""
Containers and pod sandboxes on a node through ``crictl`` (the CRI CLI).

Used to stop a static pod's container (kubelet restarts it: docs/facts.md #7, the way to bounce
etcd or the apiserver), to find a container by name, and to wait for the restart.
Parses ``-o json`` output: CRI messages (k8s.io/cri-api runtime/v1 api.proto) printed by
cri-tools as protobuf JSON (camelCase: ``podSandboxId``, ``createdAt`` in ns as string).

Settings (``config.get``)::

    crictl:
      runtime_endpoint: unix:///run/containerd/containerd.sock
"""

import json
import shutil
import time

from salt.exceptions import CommandExecutionError

__virtualname__ = "crictl"


def __virtual__():
    if shutil.which("crictl"):
        return __virtualname__
    return (False, "crictl module: crictl (cri-tools) is not installed")


def _crictl(args: list[str], timeout: int = 60) -> str:
    endpoint = (__salt__["config.get"]("crictl", {}) or {}).get("runtime_endpoint")
    cmd = ["crictl", *(["--runtime-endpoint", endpoint] if endpoint else []), *args]
    res = __salt__["cmd.run_all"](
        cmd, python_shell=False, timeout=timeout, ignore_retcode=True, output_loglevel="debug"
    )
    if res["retcode"] != 0:
        what = " ".join(a for a in args[:2] if not a.startswith("-"))  # "ps", not "ps -o"
        raise CommandExecutionError(
            f"crictl {what} failed: {(res['stderr'] or res['stdout']).strip()}"
        )
    return res["stdout"]


def _state(value: str, prefix: str) -> str:
    return value[len(prefix) :] if value.startswith(prefix) else value


def _parse_containers(payload: dict) -> list[dict]:
    """``crictl ps -o json``: {"containers": [Container, ...]}."""
    out = []
    for c in payload.get("containers") or []:
        labels = c.get("labels") or {}
        out.append(
            {
                "id": c["id"],
                "name": (c.get("metadata") or {}).get("name", ""),
                "attempt": int((c.get("metadata") or {}).get("attempt", 0) or 0),
                "state": _state(c.get("state", ""), "CONTAINER_"),
                "image": (c.get("image") or {}).get("image", ""),
                "pod_id": c.get("podSandboxId", ""),
                "pod_name": labels.get("io.kubernetes.pod.name", ""),
                "namespace": labels.get("io.kubernetes.pod.namespace", ""),
                "created_ns": int(c.get("createdAt", 0) or 0),
            }
        )
    return out


def _parse_pods(payload: dict) -> list[dict]:
    """``crictl pods -o json``: {"items": [PodSandbox, ...]}."""
    return [
        {
            "id": p["id"],
            "name": (p.get("metadata") or {}).get("name", ""),
            "namespace": (p.get("metadata") or {}).get("namespace", ""),
            "uid": (p.get("metadata") or {}).get("uid", ""),
            "attempt": int((p.get("metadata") or {}).get("attempt", 0) or 0),
            "state": _state(p.get("state", ""), "SANDBOX_"),
            "created_ns": int(p.get("createdAt", 0) or 0),
        }
        for p in payload.get("items") or []
    ]


def _parse_inspect(payload: dict) -> dict:
    """``crictl inspect -o json``: {"status": ContainerStatus, "info": {...}}."""
    status = payload.get("status") or {}
    info = payload.get("info") or {}
    return {
        "id": status.get("id", ""),
        "name": (status.get("metadata") or {}).get("name", ""),
        "attempt": int((status.get("metadata") or {}).get("attempt", 0) or 0),
        "state": _state(status.get("state", ""), "CONTAINER_"),
        "image": (status.get("image") or {}).get("image", ""),
        "started_at": status.get("startedAt"),
        "finished_at": status.get("finishedAt"),
        "exit_code": status.get("exitCode"),
        "reason": status.get("reason", ""),
        "pid": info.get("pid"),
    }


def ps(name=None, all=False, pod=None):  # noqa: A002  (crictl's own flag name)
    """
    Containers (running ones, or all with ``all=True``), optionally by exact name.

    CLI Example:

    .. code-block:: bash

        salt 'cp-1' crictl.ps name=kube-apiserver
    """
    args = ["ps", "-o", "json"]
    if all:
        args.append("-a")
    if pod:
        args += ["--pod", str(pod)]
    found = _parse_containers(json.loads(_crictl(args) or "{}"))
    return [c for c in found if name is None or c["name"] == name]


def pods(name=None, namespace=None):
    """
    Pod sandboxes, optionally filtered by name and namespace.

    CLI Example:

    .. code-block:: bash

        salt 'cp-1' crictl.pods namespace=kube-system
    """
    found = _parse_pods(json.loads(_crictl(["pods", "-o", "json"]) or "{}"))
    return [
        p
        for p in found
        if (name is None or p["name"] == name)
        and (namespace is None or p["namespace"] == namespace)
    ]


def container_id(name_or_id):
    """
    The ID of the running container with that name (newest if several), or the ID itself.

    CLI Example:

    .. code-block:: bash

        salt 'cp-1' crictl.container_id etcd
    """
    running = ps()
    by_name = sorted((c for c in running if c["name"] == name_or_id), key=lambda c: c["created_ns"])
    if by_name:
        return by_name[-1]["id"]
    by_id = [c for c in running if c["id"].startswith(str(name_or_id))]
    return by_id[0]["id"] if len(by_id) == 1 else None


def inspect(name_or_id):
    """
    One container's status: state, start time, exit code, PID.

    CLI Example:

    .. code-block:: bash

        salt 'cp-1' crictl.inspect kube-apiserver
    """
    cid = container_id(name_or_id) or str(name_or_id)
    return _parse_inspect(json.loads(_crictl(["inspect", "-o", "json", cid])))


def stop(name_or_id, timeout=10):
    """
    Stop a container (by name: every running one with that name). For a static pod the
    kubelet starts a new container: see ``wait_restarted``.

    CLI Example:

    .. code-block:: bash

        salt 'cp-1' crictl.stop kube-apiserver
    """
    targets = [c["id"] for c in ps(name=name_or_id)] or [container_id(name_or_id)]
    targets = [t for t in targets if t]
    if not targets:
        raise CommandExecutionError(f"no running container named or with ID {name_or_id!r}")
    for cid in targets:
        _crictl(["stop", "--timeout", str(int(timeout)), cid], timeout=int(timeout) + 30)
    return {"stopped": targets}


def wait_restarted(name, old_ids, timeout=120):
    """
    Wait until a running container called ``name`` exists whose ID is not in ``old_ids``.

    CLI Example:

    .. code-block:: bash

        salt 'cp-1' crictl.wait_restarted etcd '["3f1c..."]' timeout=90
    """
    old = set(old_ids if isinstance(old_ids, list | tuple | set) else [old_ids])
    started = time.monotonic()
    while time.monotonic() - started < float(timeout):
        fresh = [c for c in ps(name=name) if c["id"] not in old and c["state"] == "RUNNING"]
        if fresh:
            return dict(fresh[0], waited_s=round(time.monotonic() - started, 3))
        time.sleep(1)
    raise CommandExecutionError(f"{name} did not come back within {timeout}s")
