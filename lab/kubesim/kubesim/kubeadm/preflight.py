"""Preflight checks with upstream's names and messages (cmd/kubeadm/app/preflight/checks.go).

A failing check is an error unless its name (or "all") is in --ignore-preflight-errors,
which turns it into a warning; output and exit as kubeadm's:
    error execution phase preflight: [preflight] Some fatal errors occurred:
    \t[ERROR Swap]: running with swap on is not supported. Please disable swap
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

from ..kubelet.main import check_cri
from ..versions import Version
from .errors import KubeadmError

Check = tuple[str, Callable[[], str | None], bool]  # name, run -> problem, is_warning


def port_free(port: int) -> Callable[[], str | None]:
    def run() -> str | None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("", port))
            except OSError:
                return f"Port {port} is in use"
        return None

    return run


def file_absent(path: Path) -> Callable[[], str | None]:
    return lambda: f"{path} already exists" if path.exists() else None


def dir_empty(path: Path) -> Callable[[], str | None]:
    return lambda: f"{path} is not empty" if path.is_dir() and any(path.iterdir()) else None


def file_content(path: str, want: str) -> Callable[[], str | None]:
    def run() -> str | None:
        try:
            if Path(path).read_text().strip() != want:
                return f"{path} contents are not set to {want}"
        except OSError:
            return f"{path} does not exist"
        return None

    return run


def swap() -> str | None:
    try:
        lines = Path("/proc/swaps").read_text().splitlines()[1:]
    except OSError:
        return None
    if any(line.strip() for line in lines):
        return "running with swap on is not supported. Please disable swap"
    return None


def num_cpu() -> str | None:
    n = os.cpu_count() or 1
    return None if n >= 2 else f"the number of available CPUs {n} is less than the required 2"


def memory() -> str | None:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mb = int(line.split()[1]) // 1024
            return (
                None if mb >= 1700 else f"the system RAM ({mb} MB) is less than the minimum 1700 MB"
            )
    return None


def root() -> str | None:
    return None if os.geteuid() == 0 else "user is not running as root"


def cri(endpoint: str) -> Callable[[], str | None]:
    def run() -> str | None:

        problem = check_cri(endpoint)
        if problem:
            return (
                f'container runtime is not running: output: time="" level=fatal msg="'
                f'{problem}"\n, error: exit status 1'
            )
        return None

    return run


def in_path(binary: str) -> Callable[[], str | None]:
    return lambda: None if shutil.which(binary) else f"{binary} not found in system path"


def kubelet_version(control_plane: Version) -> Callable[[], str | None]:
    def run() -> str | None:
        try:
            out = subprocess.run(
                ["kubelet", "--version"], capture_output=True, text=True, timeout=30, check=False
            ).stdout.split()
            kv = Version.parse(out[-1])
        except (OSError, subprocess.SubprocessError, ValueError, IndexError):
            return "couldn't get kubelet version: cannot execute 'kubelet --version'"
        if (kv.major, kv.minor) > (control_plane.major, control_plane.minor):
            return (
                f"the kubelet version is higher than the control plane version. This is not a "
                f"supported version skew and may lead to a malfunctional cluster. Kubelet "
                f'version: "{kv.bare}" Control plane version: "{control_plane.bare}"'
            )
        return None

    return run


def kubelet_service() -> str | None:
    if not Path("/run/systemd/system").is_dir():
        return None
    try:
        state = subprocess.run(
            ["systemctl", "is-enabled", "kubelet.service"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    if state != "enabled":
        return "kubelet service is not enabled, please run 'systemctl enable kubelet.service'"
    return None


def control_plane_checks(
    version: Version, cri_endpoint: str, data_dir: Path, bind_port: int, etcd_local: bool = True
) -> list[Check]:
    manifests = Path("/etc/kubernetes/manifests")
    checks: list[Check] = [
        ("NumCPU", num_cpu, False),
        ("Mem", memory, False),
        ("KubeletVersion", kubelet_version(version), False),
        (f"Port-{bind_port}", port_free(bind_port), False),
        ("Port-10259", port_free(10259), False),
        ("Port-10257", port_free(10257), False),
    ]
    for comp in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd"):
        path = manifests / f"{comp}.yaml"
        checks.append((f"FileAvailable-{str(path).replace('/', '-')}", file_absent(path), False))
    if etcd_local:
        checks += [
            ("Port-2379", port_free(2379), False),
            ("Port-2380", port_free(2380), False),
            (f"DirAvailable-{str(data_dir).replace('/', '-')}", dir_empty(data_dir), False),
        ]
    return checks


def node_checks(cri_endpoint: str) -> list[Check]:
    return [
        ("IsPrivilegedUser", root, False),
        ("CRI", cri(cri_endpoint), False),
        ("Swap", swap, False),
        ("FileExisting-crictl", in_path("crictl"), False),
        ("FileExisting-conntrack", in_path("conntrack"), False),
        ("FileExisting-ip", in_path("ip"), False),
        ("FileExisting-iptables", in_path("iptables"), False),
        ("FileExisting-mount", in_path("mount"), False),
        ("FileExisting-nsenter", in_path("nsenter"), False),
        ("FileExisting-ebtables", in_path("ebtables"), True),
        ("FileExisting-ethtool", in_path("ethtool"), True),
        ("FileExisting-socat", in_path("socat"), True),
        ("FileExisting-tc", in_path("tc"), True),
        ("FileExisting-touch", in_path("touch"), True),
        ("Service-Kubelet", kubelet_service, True),
        ("Port-10250", port_free(10250), False),
        (
            "FileContent--proc-sys-net-ipv4-ip_forward",
            file_content("/proc/sys/net/ipv4/ip_forward", "1"),
            False,
        ),
    ]


def run(checks: list[Check], ignored: set[str], out) -> None:
    errors, warnings = [], []
    ignore_all = "all" in ignored
    for name, check, warning in checks:
        problem = check()
        if problem is None:
            continue
        if warning or ignore_all or name.lower() in ignored:
            warnings.append(f"\t[WARNING {name}]: {problem}")
        else:
            errors.append(f"\t[ERROR {name}]: {problem}")
    for w in warnings:
        out(w)
    if errors:
        raise KubeadmError(
            "[preflight] Some fatal errors occurred:\n"
            + "\n".join(errors)
            + "\n[preflight] If you know what you are doing, you can make a check "
            "non-fatal with `--ignore-preflight-errors=...`",
            "preflight",
        )


def ignored_set(flag_value: str | None, from_config: list[str] | None) -> set[str]:
    items = [i.strip().lower() for i in (flag_value or "").split(",") if i.strip()]
    items += [i.lower() for i in from_config or []]
    return set(items)
