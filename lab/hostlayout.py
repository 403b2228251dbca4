"""Which of the two host layouts the lab runs on, read from how the host booted.

"cgroup-v1"  no systemd as PID 1, cgroup v1 (or hybrid) with the freezer and a name=systemd
             hierarchy: the lab makes and owns its cgroups kha-<name> itself
             (lab.cgroupv1). This CI machine.
"systemd"    systemd as PID 1 and cgroup v2 only (stock Debian 12, Ubuntu 22.04/24.04): the
             cgroup tree is systemd's, so every process the lab starts runs in a transient
             unit of kha.slice (lab.sdunits) and machines are registered with machined.

Anything else (systemd on a hybrid or legacy hierarchy, cgroup v2 without systemd) is
refused with the reason: the lab would either write into cgroups systemd manages or have
no one to ask for a delegated subtree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
SYSTEMD_RUNTIME = Path("/run/systemd/system")  # sd_booted(3): systemd is PID 1
V1_HIERARCHIES = ("systemd", "unified", "freezer")

V1 = "cgroup-v1"
SYSTEMD = "systemd"


@dataclass(frozen=True)
class Layout:
    name: str | None  # V1, SYSTEMD, or None: this host cannot run the lab
    systemd_pid1: bool
    unified_only: bool  # cgroup2 mounted at /sys/fs/cgroup itself
    v1_missing: tuple[str, ...]  # lab hierarchies absent under /sys/fs/cgroup

    def describe(self) -> str:
        """One line for the operator (`python -m lab up`, `make demo`)."""
        if self.name == SYSTEMD:
            return (
                "systemd as PID 1, cgroup v2 only: machines are transient scopes "
                "kha-<name>.scope in kha.slice, registered with systemd-machined "
                "(machinectl list); freeze is cgroup v2 cgroup.freeze (systemctl freeze)"
            )
        if self.name == V1:
            return (
                "no systemd as PID 1, cgroup v1 with the freezer and name=systemd: machines "
                "run in the lab's own cgroups kha-<name>; freeze is the v1 freezer"
            )
        return f"unsupported: {self.problem()}"

    def problem(self) -> str | None:
        """Why this layout cannot run the lab (not something an install fixes), or None."""
        if self.name is not None:
            return None
        if self.systemd_pid1:
            return (
                f"systemd is PID 1 but {CGROUP_ROOT} is not cgroup v2 only (hybrid or legacy "
                "hierarchy): the lab runs its machines as systemd scopes and freezes them "
                "with cgroup v2's cgroup.freeze; boot with systemd.unified_cgroup_hierarchy=1 "
                "(the default of Debian 11+ and Ubuntu 21.10+)"
            )
        if self.unified_only:
            return (
                f"{CGROUP_ROOT} is cgroup v2 only and systemd is not PID 1: the lab needs "
                "either systemd (it asks it for transient scopes) or cgroup v1 with the "
                "freezer and a name=systemd hierarchy where it makes its own cgroups"
            )
        missing = ", ".join(str(CGROUP_ROOT / h) for h in self.v1_missing)
        return (
            f"missing {missing}; without systemd as PID 1 the lab needs cgroup v1 or "
            "hybrid with the v1 freezer and a name=systemd hierarchy (machines' nspawn run "
            "in kha-<machine> there, and the freeze fault is the v1 freezer)"
        )


def detect(cgroup_root: Path | None = None, systemd_runtime: Path | None = None) -> Layout:
    """The layout of this host (arguments: other roots, for tests)."""
    root = cgroup_root or CGROUP_ROOT
    systemd_pid1 = (systemd_runtime or SYSTEMD_RUNTIME).is_dir()
    unified_only = (root / "cgroup.controllers").exists()
    missing = tuple(h for h in V1_HIERARCHIES if not (root / h / "cgroup.procs").exists())
    name = None
    if systemd_pid1 and unified_only:
        name = SYSTEMD
    elif not systemd_pid1 and not missing:
        name = V1
    return Layout(name, systemd_pid1, unified_only, missing)
