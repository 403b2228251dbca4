"""The kubelet's cgroup driver against containerd's: the mismatch FACTS 4 warns about.

kubeadm configures the kubelet with `cgroupDriver: systemd`; containerd's default runc
options have `SystemdCgroup = false` (config v2 key
plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options, v3
plugins."io.containerd.cri.v1.runtime"...). With the two disagreeing, a real node's pod
sandboxes keep being torn down ("Pod sandbox changed, it will be killed and re-created"),
so the control-plane pods restart every minute or so. A `cri` entry in
`disabled_plugins` leaves no CRI service at all, and the kubelet cannot start.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

CONTAINERD_CONFIG = Path(os.environ.get("KUBESIM_CONTAINERD_CONFIG", "/etc/containerd/config.toml"))
CHURN_SECONDS = 60.0


def _containerd_config() -> dict:
    try:
        return tomllib.loads(CONTAINERD_CONFIG.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError):
        return {}


def cri_disabled() -> bool:
    doc = _containerd_config()
    disabled = doc.get("disabled_plugins") or []
    return any(p in ("cri", "io.containerd.grpc.v1.cri") for p in disabled)


def containerd_systemd_cgroup() -> bool:
    plugins = _containerd_config().get("plugins") or {}
    for plugin in ("io.containerd.grpc.v1.cri", "io.containerd.cri.v1.runtime"):
        runc = (((plugins.get(plugin) or {}).get("containerd") or {}).get("runtimes") or {}).get(
            "runc"
        ) or {}
        value = (runc.get("options") or {}).get("SystemdCgroup")
        if value is not None:
            return bool(value)
    return False  # containerd's default


def driver_mismatch(kubelet_config: dict) -> str | None:
    """A description of the mismatch, or None when kubelet and containerd agree."""
    kubelet = kubelet_config.get("cgroupDriver") or "cgroupfs"
    runtime = "systemd" if containerd_systemd_cgroup() else "cgroupfs"
    if kubelet == runtime:
        return None
    return (
        f'kubelet cgroup driver "{kubelet}" is different from the container runtime cgroup '
        f'driver "{runtime}" ({CONTAINERD_CONFIG}: SystemdCgroup)'
    )
