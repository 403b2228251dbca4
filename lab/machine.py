"""One lab machine's life: its disk (an overlay over the base), its boot, its console.

A machine is `systemd-nspawn -b` on /run/kha-lab/<name> (overlay: the cached base below,
/var/lib/kha-lab/<name>/upper above), inside namespace kha-<name> and group kha-<name>
(lab.cgroups: the lab's cgroups, or a systemd scope on a systemd host). Its systemd is
the nspawn process's child; commands run in it through `nsenter -t <that pid> -a`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from lab import cgroups, procs
from lab.config import DEBIAN_SUITE, HOST_IP, MIRROR_URL, PREFIX, Machine, topology
from lab.run import LabError, run, wait_for

MACHINE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
LAB_KEYRING = "/etc/apt/keyrings/kubeha-lab.asc"
# Modules the formula asks for. On a kernel built without loadable-module support they are
# built in; the machine gets the modules.builtin a kernel package would ship, so that
# `modprobe overlay` succeeds there as it does on any kernel that has them built in.
BUILTIN_MODULES = {
    "overlay": "kernel/fs/overlayfs/overlay.ko",
    "br_netfilter": "kernel/net/bridge/br_netfilter.ko",
}


def mount_overlay(machine: Machine, base: Path) -> None:
    """Mount the machine's disk (idempotent). Upper/work dirs persist until `down`."""
    if is_mounted(machine.mount_point):
        return
    upper, work = machine.disk_dir / "upper", machine.disk_dir / "work"
    for d in (upper, work, machine.mount_point):
        d.mkdir(parents=True, exist_ok=True)
    run(
        [
            "mount",
            "-t",
            "overlay",
            f"{PREFIX}{machine.name}",
            "-o",
            f"lowerdir={base},upperdir={upper},workdir={work}",
            machine.mount_point,
        ],
        timeout=30,
    )


def is_mounted(path: Path) -> bool:
    return str(path) in {line.split()[4] for line in mountinfo()}


def mountinfo() -> list[str]:
    return Path("/proc/self/mountinfo").read_text().splitlines()


def unmount(path: Path) -> None:
    if is_mounted(path):
        run(["umount", path], timeout=60)


def machine_id(machine: Machine) -> str:
    """Stable per machine (journal and D-Bus want one); derived from its name."""
    return hashlib.md5(f"kubeha-lab:{machine.name}".encode()).hexdigest()  # noqa: S324


def hosts_file(machines: list[Machine]) -> str:
    lines = [
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        f"{HOST_IP}\tlab-host salt",
    ]
    lines += [f"{m.ip}\t{m.name}" for m in machines]
    return "\n".join(lines) + "\n"


def seed(machine: Machine, key_pair: tuple[Path, Path], public_key: Path) -> None:
    """Write what an installer and the operator would have configured on the machine."""
    root = machine.mount_point
    everyone = topology(workers=50, client=True)
    pem, pub = key_pair
    files = {
        "etc/hostname": f"{machine.name}\n",
        "etc/hosts": hosts_file(everyone),
        "etc/machine-id": machine_id(machine) + "\n",
        # No DNS in the lab: names come from /etc/hosts, nothing leaves 198.18.0.0/24.
        "etc/resolv.conf": "# kubeha lab: no DNS server; names are in /etc/hosts\n",
        "etc/apt/sources.list.d/debian.sources": (
            f"Types: deb\nURIs: {MIRROR_URL}/debian\nSuites: {DEBIAN_SUITE}\n"
            f"Components: main\nSigned-By: {LAB_KEYRING}\n"
        ),
        "etc/salt/minion_id": machine.name,
        "etc/salt/minion.d/kubeha-lab.conf": minion_config(machine),
    }
    # The grains file is the operator's from the first boot on (grains.setval writes it):
    # a power cycle keeps what was set there, as on a real machine.
    grains = root / "etc/salt/grains"
    if machine.in_cluster and not grains.exists():
        files["etc/salt/grains"] = "kubeha_cluster: lab\n"
    for rel, text in files.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    (root / "etc/apt/keyrings").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(public_key, root / LAB_KEYRING.lstrip("/"))
    pki = root / "etc/salt/pki/minion"
    pki.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(pem, pki / "minion.pem")
    shutil.copyfile(pub, pki / "minion.pub")
    (pki / "minion.pem").chmod(0o400)
    if not Path("/proc/modules").exists():
        modules = root / "lib/modules" / os.uname().release
        modules.mkdir(parents=True, exist_ok=True)
        (modules / "modules.builtin").write_text("\n".join(BUILTIN_MODULES.values()) + "\n")


def minion_config(machine: Machine) -> str:
    """The minion's lab settings: its master, its id, and quick reconnects after faults."""
    return (
        "# kubeha lab (python -m lab up)\n"
        f"master: {HOST_IP}\n"
        f"id: {machine.name}\n"
        "acceptance_wait_time: 2\n"
        "acceptance_wait_time_max: 5\n"
        "random_reauth_delay: 1\n"
        "recon_default: 500\n"
        "recon_max: 3000\n"
        "recon_randomize: false\n"
        "auth_timeout: 10\n"
        "log_level_logfile: info\n"
    )


def boot(machine: Machine) -> procs.Tracked:
    """Start the machine's nspawn in its own group (lab.cgroups: its cgroups kha-<name>, or
    on a systemd host the scope kha-<name>.scope, registered with machined as
    kha-<name>); returns the tracked nspawn process."""
    cgroups.create(machine.cgroup)
    argv = [
        "systemd-nspawn",
        "-q",
        "-b",
        "-D",
        machine.mount_point,
        *cgroups.nspawn_identity(machine.cgroup, machine.name),
        f"--network-namespace-path=/run/netns/{machine.netns}",
        # keepalived adds the VIP and sends VRRP/gARP: netlink and raw sockets
        "--capability=CAP_NET_ADMIN,CAP_NET_RAW",
        "--resolv-conf=off",
        "--timezone=off",
        "--link-journal=no",
        "--console=read-only",
    ]
    log = machine.console_log
    # /proc/sys/net writable (it is the machine's own namespace): the formula sets
    # net.ipv4.ip_forward and net.bridge.bridge-nf-call-iptables there.
    env = {"SYSTEMD_NSPAWN_API_VFS_WRITABLE": "network"}
    return procs.spawn(machine.name, argv, log, env=env, before_exec=cgroups.joiner(machine.cgroup))


def init_pid(nspawn: procs.Tracked, timeout: float = 30) -> int:
    """The machine's systemd: the child of nspawn that is PID 1 of a new PID namespace.

    nspawn first forks a helper (in the host's PID namespace) that then starts the
    machine's init and exits; only the child whose NSpid ends in 1 is the machine.
    """
    found: list[int] = []

    def look() -> bool:
        if not procs.alive(nspawn):
            raise LabError(f"{nspawn.name}: systemd-nspawn exited while booting")
        found[:] = [pid for pid in procs.children(nspawn.pid) if _is_namespace_init(pid)]
        return bool(found)

    wait_for(look, timeout=timeout, interval=0.05, what=f"{nspawn.name}'s systemd")
    return found[0]


def _is_namespace_init(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    for line in status.splitlines():
        if line.startswith("NSpid:"):
            ids = line.split()[1:]
            return len(ids) >= 2 and ids[-1] == "1"
    return False


def exec_argv(pid: int, cmd: list[str], env: dict[str, str] | None = None) -> list[str]:
    """The host command that runs `cmd` inside the machine whose PID 1 is `pid`."""
    extra = [f"{k}={v}" for k, v in (env or {}).items()]
    return [
        "nsenter",
        "-t",
        str(pid),
        "-a",
        "env",
        "-i",
        f"PATH={MACHINE_PATH}",
        "HOME=/root",
        "LANG=C.UTF-8",
        "TERM=dumb",
        *extra,
        *cmd,
    ]


def exec_in(
    pid: int,
    cmd: list[str],
    *,
    timeout: float = 120,
    check: bool = False,
    input: str | None = None,
    env: dict[str, str] | None = None,
):
    """Run `cmd` inside the machine; returns CompletedProcess (stdout/stderr as text)."""
    return run(exec_argv(pid, cmd, env), timeout=timeout, check=check, input=input)


def system_state(pid: int) -> str:
    """`systemctl is-system-running` inside: starting, running, degraded, ..."""
    try:
        return exec_in(pid, ["systemctl", "is-system-running"], timeout=10).stdout.strip()
    except LabError:
        return "unreachable"


def wait_booted(machine: Machine, pid: int, timeout: float = 120) -> str:
    """Wait until the machine's systemd has finished booting; returns its final state."""
    states: list[str] = []

    def booted() -> bool:
        states.append(system_state(pid))
        return states[-1] in ("running", "degraded")

    try:
        wait_for(booted, timeout=timeout, interval=0.25, what=f"{machine.name} to boot")
    except LabError as err:
        raise LabError(
            f"{err} (last state: {states[-1] if states else '?'}); console log: "
            f"{machine.console_log}"
        ) from err
    return states[-1]


def signal_init(nspawn: procs.Tracked, pid: int | None, sig: int) -> bool:
    """Signal the machine's PID 1, if it is still that nspawn's child; True if sent."""
    if pid is None or not procs.alive(nspawn) or pid not in procs.children(nspawn.pid):
        return False
    os.kill(pid, sig)
    return True


def wait_exit(nspawn: procs.Tracked, timeout: float = 30) -> None:
    """Wait for nspawn to notice its machine is gone and exit; stop it if it does not."""
    deadline = time.monotonic() + timeout
    while procs.alive(nspawn) and time.monotonic() < deadline:
        procs.reap(nspawn.pid)
        time.sleep(0.05)
    procs.stop(nspawn, timeout=10)


def shutdown(nspawn: procs.Tracked, pid: int | None, timeout: float = 60) -> None:
    """Clean power-off: SIGRTMIN+4 asks systemd for `poweroff`; killed if it takes too long."""
    if signal_init(nspawn, pid, signal.SIGRTMIN + 4):
        deadline = time.monotonic() + timeout
        while procs.alive(nspawn) and time.monotonic() < deadline:
            procs.reap(nspawn.pid)
            time.sleep(0.1)
    signal_init(nspawn, pid, signal.SIGKILL)
    wait_exit(nspawn)


def interactive(pid: int, cmd: list[str]) -> int:
    """Run a command in the machine with the operator's terminal (`python -m lab exec`)."""
    return subprocess.call(exec_argv(pid, cmd))  # noqa: S603 - argument list
