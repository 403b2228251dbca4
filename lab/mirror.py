"""The apt mirror the machines use: http://198.18.0.1:8080/{debian,k8s}, one tracked process.

<www>/debian is the cached Debian mirror (lab.debmirror), <www>/k8s the pkgs.k8s.io-shaped
repositories (lab.k8srepo). Served by Python's http.server, bound to the bridge address
only, started in the kha-services cgroup so `down` can always find it.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

from lab import cgroups, procs
from lab.config import HOST_IP, MIRROR_PORT, SERVICES_CGROUP, STATE
from lab.debmirror import ensure_debian_mirror
from lab.k8srepo import build_k8s_repos
from lab.run import LabError, wait_for

WWW = STATE / "www"


def prepare(base_rootfs: Path) -> dict[str, Path]:
    """Fill <www>: the Debian mirror (link into the cache) and the k8s repos."""
    WWW.mkdir(parents=True, exist_ok=True)
    debian = ensure_debian_mirror(base_rootfs)
    link = WWW / "debian"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(debian)
    repos = build_k8s_repos(WWW / "k8s")
    return {"debian": debian, **repos}


def serving() -> bool:
    try:
        with socket.create_connection((HOST_IP, MIRROR_PORT), timeout=1):
            return True
    except OSError:
        return False


def start() -> procs.Tracked:
    if serving():
        raise LabError(
            f"something already listens on {HOST_IP}:{MIRROR_PORT}; `python -m lab down`"
        )
    cgroups.create(SERVICES_CGROUP)
    argv = [
        sys.executable,
        "-m",
        "http.server",
        "--bind",
        HOST_IP,
        "--directory",
        str(WWW),
        str(MIRROR_PORT),
    ]
    proc = procs.spawn(
        "mirror-http",
        argv,
        STATE / "logs" / "mirror-http.log",
        before_exec=cgroups.joiner(SERVICES_CGROUP),
    )
    wait_for(serving, timeout=30, what=f"the apt mirror on {HOST_IP}:{MIRROR_PORT}")
    return proc
