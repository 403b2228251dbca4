"""Where the lab's processes live, and the freeze switch: one API for both host layouts.

Every machine's processes are one group, kha-<machine>; the host services share
kha-services. What a group is depends on the host (lab.hostlayout):

- cgroup-v1 (no systemd as PID 1, this CI machine): the lab's own cgroups kha-<name> in
  the name=systemd, unified and freezer hierarchies; freeze is the v1 freezer
  (lab.cgroupv1);
- systemd (systemd as PID 1, cgroup v2 only): transient units of kha.slice made by
  systemd (kha-<machine>.scope, kha-services.slice), machines registered with machined;
  freeze is cgroup v2's cgroup.freeze through `systemctl freeze` (lab.sdunits).

Callers start a process in a group with `procs.spawn(..., before_exec=joiner(group))`:
on cgroup-v1 the child writes itself into the cgroups before exec; on systemd the
command is prefixed with `systemd-run --scope` instead.
"""

from __future__ import annotations

import time
from types import ModuleType

from lab import cgroupv1, hostlayout, procs, sdunits
from lab.run import LabError


def layout() -> hostlayout.Layout:
    return hostlayout.detect()


def _impl() -> ModuleType:
    found = layout()
    if found.name == hostlayout.SYSTEMD:
        return sdunits
    if found.name == hostlayout.V1:
        return cgroupv1
    raise LabError(f"this host cannot run the lab: {found.problem()}")


def _supported() -> bool:
    """On a host that cannot run the lab there is no lab group to find, kill or remove
    (`down` there is a no-op, not an error); starting or freezing one is an error."""
    return layout().name is not None


def host_problem() -> str | None:
    """Why this host cannot run the lab's machines, or None if it can.

    A property of how the host booted, not something `make system-deps` can install: the
    lab fixture skips with this reason and `python -m lab up` stops with it.
    """
    return layout().problem()


def check_host() -> None:
    problem = host_problem()
    if problem:
        raise LabError(f"this host cannot run the lab: {problem}")


def create(name: str) -> None:
    """Make the group ready for its first process (systemd makes a scope when it starts)."""
    if layout().name == hostlayout.V1:
        cgroupv1.create(name)


def joiner(name: str) -> procs.Placement:
    """How `procs.spawn` puts a process into the group (pass it as before_exec)."""
    if _impl() is sdunits:
        return procs.Placement(prefix=lambda process: sdunits.start_command(name, process))
    return procs.Placement(before_exec=cgroupv1.joiner(name))


def nspawn_identity(name: str, hostname: str) -> list[str]:
    """systemd-nspawn's machine name and registration for the machine of group `name`."""
    if _impl() is sdunits:
        return sdunits.nspawn_identity(name, hostname)
    # No machined to register with: nspawn stays in the cgroup it was started in.
    return ["-M", hostname, "--register=no", "--keep-unit"]


def exists(name: str) -> bool:
    return _supported() and _impl().exists(name)


def pids(name: str) -> list[int]:
    """Every process in the group (zombies included); [] if it does not exist."""
    return _impl().pids(name) if _supported() else []


def is_frozen(name: str) -> bool:
    return _supported() and _impl().is_frozen(name)


def freeze(name: str, timeout: float = 20) -> None:
    """Stop every process of the group where it is (they stay in memory, sockets open)."""
    _impl().freeze(name, timeout)


def thaw(name: str, timeout: float = 20) -> None:
    _impl().thaw(name, timeout)


def kill(name: str, timeout: float = 20) -> None:
    """SIGKILL whatever is left in the group and wait until it is empty (thawed first:
    a frozen v1 task only dies once thawed)."""
    if not exists(name):
        return
    impl = _impl()
    if impl.is_frozen(name):
        impl.thaw(name)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        live = [p for p in impl.pids(name) if not procs.is_zombie(p)]
        if not live:
            return
        impl.kill_members(name, live)
        for pid in live:
            procs.reap(pid)
        time.sleep(0.1)
    raise LabError(f"processes left in {name}: {impl.pids(name)}")


def remove(name: str) -> None:
    """Remove the group once its processes are gone (systemd: stop its unit); a group that
    does not exist is fine."""
    if _supported():
        _impl().remove(name)


def lab_cgroups() -> list[str]:
    """The lab's groups that exist now (on systemd also kha.slice itself)."""
    return _impl().lab_cgroups() if _supported() else []
