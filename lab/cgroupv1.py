"""The lab's own cgroups kha-<name>, on a host without systemd as PID 1 (cgroup v1/hybrid).

On such a host (this CI machine) nobody manages the cgroup tree and systemd-nspawn stays in
the cgroup it was started in, so each machine's nspawn is started inside kha-<machine> of
the name=systemd, unified and freezer hierarchies: machines do not share a cgroup, and the
v1 freezer stops every process of one machine at once (the `freeze` fault).
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable
from pathlib import Path

from lab import hostlayout
from lab.config import PREFIX
from lab.run import LabError, wait_for

HIERARCHIES = hostlayout.V1_HIERARCHIES


def path(hierarchy: str, name: str) -> Path:
    if not name.startswith(PREFIX):
        raise LabError(f"refusing cgroup {name!r}: not the lab's ({PREFIX}*)")
    return hostlayout.CGROUP_ROOT / hierarchy / name


def create(name: str) -> None:
    for hierarchy in HIERARCHIES:
        path(hierarchy, name).mkdir(exist_ok=True)


def joiner(name: str) -> Callable[[], None]:
    """A pre-exec hook that moves the calling (child) process into kha-<name>."""
    targets = [path(h, name) / "cgroup.procs" for h in HIERARCHIES]

    def join() -> None:
        pid = str(os.getpid())
        for target in targets:
            target.write_text(pid)

    return join


def exists(name: str) -> bool:
    return path("freezer", name).exists()


def pids(name: str) -> list[int]:
    """Every process in the group's freezer cgroup, sub-cgroups included."""
    top = path("freezer", name)
    found: list[int] = []
    if top.exists():
        for procs in top.rglob("cgroup.procs"):
            found += [int(p) for p in procs.read_text().split()]
    return found


def freezer_state(name: str) -> str:
    return (path("freezer", name) / "freezer.state").read_text().strip()


def is_frozen(name: str) -> bool:
    """FROZEN, or FREEZING (some task not stopped yet): either way, not running."""
    return exists(name) and freezer_state(name) != "THAWED"


def _set_freezer(name: str, state: str, timeout: float, what: str) -> None:
    (path("freezer", name) / "freezer.state").write_text(state)
    wait_for(lambda: freezer_state(name) == state, timeout=timeout, interval=0.02, what=what)


def freeze(name: str, timeout: float = 20) -> None:
    _set_freezer(name, "FROZEN", timeout, f"{name} to freeze")


def thaw(name: str, timeout: float = 20) -> None:
    _set_freezer(name, "THAWED", timeout, f"{name} to thaw")


def kill_members(name: str, live: list[int]) -> None:
    """SIGKILL the group's live processes, by PID (nobody else manages this cgroup)."""
    del name
    for pid in live:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def remove(name: str) -> None:
    """Remove kha-<name> (and what nspawn made inside it) once its processes are gone."""
    for hierarchy in HIERARCHIES:
        top = path(hierarchy, name)
        if not top.exists():
            continue
        if hierarchy == "freezer" and freezer_state(name) != "THAWED":
            thaw(name)  # a frozen, emptied cgroup is fine to remove, but thaw to be tidy
        for sub in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            sub.rmdir()
        top.rmdir()


def lab_cgroups() -> list[str]:
    """Names of kha-* cgroups that exist in any of the lab's hierarchies."""
    found = set()
    for hierarchy in HIERARCHIES:
        base = hostlayout.CGROUP_ROOT / hierarchy
        if base.exists():
            found |= {p.name for p in base.glob(f"{PREFIX}*") if p.is_dir()}
    return sorted(found)
