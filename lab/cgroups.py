"""Per-machine cgroups kha-<machine>: each machine's processes in a tree of their own.

On this host (cgroup v1 hybrid, no systemd as PID 1) systemd-nspawn stays in the cgroup
it was started in, so each machine's nspawn is started inside kha-<machine> of the
name=systemd, unified and freezer hierarchies: machines do not share a cgroup, and the
v1 freezer stops every process of one machine at once (the `freeze` fault).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from lab.config import PREFIX
from lab.run import LabError, wait_for

CGROUP_ROOT = Path("/sys/fs/cgroup")
HIERARCHIES = ("systemd", "unified", "freezer")


def host_problem() -> str | None:
    """Why this host cannot run the lab's cgroups, or None if it can.

    A property of how the host booted, not something `make system-deps` can install: the
    lab fixture skips with this reason and `python -m lab up` stops with it.
    """
    missing = [h for h in HIERARCHIES if not (CGROUP_ROOT / h / "cgroup.procs").exists()]
    if not missing:
        return None
    if (CGROUP_ROOT / "cgroup.controllers").exists():
        layout = f"{CGROUP_ROOT} is cgroup v2 only (unified)"
    else:
        layout = "missing " + ", ".join(str(CGROUP_ROOT / h) for h in missing)
    return (
        f"{layout}; the lab needs cgroup v1 or hybrid with the v1 freezer and a name=systemd "
        "hierarchy (machines' nspawn run in kha-<machine> there, and the freeze fault is "
        "the v1 freezer), e.g. a host booted with systemd.unified_cgroup_hierarchy=0"
    )


def check_host() -> None:
    problem = host_problem()
    if problem:
        raise LabError(f"this host cannot run the lab: {problem}")


def path(hierarchy: str, name: str) -> Path:
    if not name.startswith(PREFIX):
        raise LabError(f"refusing cgroup {name!r}: not the lab's ({PREFIX}*)")
    return CGROUP_ROOT / hierarchy / name


def create(name: str) -> None:
    for hierarchy in HIERARCHIES:
        path(hierarchy, name).mkdir(exist_ok=True)


def joiner(name: str) -> Callable[[], None]:
    """A pre-exec hook that moves the calling (child) process into kha-<machine>."""
    targets = [path(h, name) / "cgroup.procs" for h in HIERARCHIES]

    def join() -> None:
        pid = str(os.getpid())
        for target in targets:
            target.write_text(pid)

    return join


def pids(name: str) -> list[int]:
    """Every process in the machine's freezer cgroup, sub-cgroups included."""
    top = path("freezer", name)
    found: list[int] = []
    if top.exists():
        for procs in top.rglob("cgroup.procs"):
            found += [int(p) for p in procs.read_text().split()]
    return found


def freezer_state(name: str) -> str:
    return (path("freezer", name) / "freezer.state").read_text().strip()


def _set_freezer(name: str, state: str, timeout: float, what: str) -> None:
    (path("freezer", name) / "freezer.state").write_text(state)
    wait_for(lambda: freezer_state(name) == state, timeout=timeout, interval=0.02, what=what)


def freeze(name: str, timeout: float = 20) -> None:
    """Stop every process of the machine (they stay in memory, sockets stay open)."""
    _set_freezer(name, "FROZEN", timeout, f"{name} to freeze")


def thaw(name: str, timeout: float = 20) -> None:
    _set_freezer(name, "THAWED", timeout, f"{name} to thaw")


def remove(name: str) -> None:
    """Remove kha-<machine> (and what nspawn made inside it) once its processes are gone."""
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
        base = CGROUP_ROOT / hierarchy
        if base.exists():
            found |= {p.name for p in base.glob(f"{PREFIX}*") if p.is_dir()}
    return sorted(found)
