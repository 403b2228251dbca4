"""The container's view of host paths, for the components kubesim runs as host processes.

A real kube-apiserver container sees only the hostPath volumes its manifest mounts. kubeadm
mounts /etc/kubernetes/pki and the CA directories; anything else (the audit policy, the
audit log directory) must come through apiServer.extraVolumes (FACTS 5). The kubelet passes
the pod's mountPaths in KUBESIM_POD_MOUNTS; a path outside them does not exist for the
component, and a file it writes there stays inside the container, invisible on the host.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

PRIVATE = Path("/var/lib/kubesim/container-fs")


def mounts() -> list[str] | None:
    """The pod's mount paths, or None when not run by the kubelet (no restriction)."""
    raw = os.environ.get("KUBESIM_POD_MOUNTS")
    return None if raw is None else json.loads(raw)


def visible(path: str) -> bool:
    allowed = mounts()
    if allowed is None:
        return True
    target = os.path.normpath(path)
    return any(target == m or target.startswith(m.rstrip("/") + "/") for m in allowed)


def container_path(path: str, container: str) -> str:
    """Where a write to `path` lands: the host path if mounted, else the container's own fs."""
    if visible(path):
        return path
    return str(PRIVATE / container / path.lstrip("/"))
