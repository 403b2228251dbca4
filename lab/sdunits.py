"""The lab on a systemd host (systemd as PID 1, cgroup v2 only): transient units in kha.slice.

The cgroup tree belongs to systemd there (https://systemd.io/CGROUP_DELEGATION/: only a
unit with Delegate=yes may have its subtree written by someone else), so the lab never
makes or writes a cgroup itself; it asks systemd:

- each machine's systemd-nspawn runs in the transient scope kha-<machine>.scope
  (`systemd-run --scope` exec's the command inside the new scope, so the PID the lab
  tracks is nspawn's), with Delegate=yes for the machine's own systemd, and nspawn
  registers it with systemd-machined (`--register=yes --keep-unit`): `machinectl list`
  shows kha-<machine>;
- the host services (salt-master, the mirror's HTTP server) run in kha-<service>.scope
  units of kha-services.slice;
- all of them sit in kha.slice, so `systemctl status kha.slice` shows the whole lab and
  `down` ends by stopping it;
- freeze/thaw are `systemctl freeze|thaw` (FreezeUnit, systemd >= 246), which writes the
  unit's cgroup v2 `cgroup.freeze`; done when the kernel reports `frozen 1|0` in its
  `cgroup.events` (Documentation/admin-guide/cgroup-v2.rst, "Core Interface Files").

A lab "group" name is what lab.config names a machine's or the services' cgroup
(kha-cp-1, kha-services); `unit()` maps it to its unit.
"""

from __future__ import annotations

import time
from pathlib import Path

from lab import hostlayout
from lab.config import PREFIX, SERVICES_CGROUP
from lab.run import LabError, run, wait_for

TOP = "kha.slice"


def unit(group: str) -> str:
    """kha-services -> kha-services.slice, kha-cp-1 -> kha-cp-1.scope; unit names as given."""
    if group.endswith((".scope", ".slice")):
        name = group
    elif group == SERVICES_CGROUP:
        name = f"{group}.slice"
    else:
        name = f"{group}.scope"
    if not (name.startswith(PREFIX) or name == TOP):
        raise LabError(f"refusing unit {name!r}: not the lab's ({PREFIX}*, {TOP})")
    return name


def scope_name(group: str, process: str) -> str:
    """A machine's group is its scope; each service gets a scope in the services' slice."""
    return f"{PREFIX}{process}.scope" if group == SERVICES_CGROUP else unit(group)


def scope_command(group: str, process: str) -> list[str]:
    """The `systemd-run --scope` prefix that starts `process` in the group's unit."""
    scope = scope_name(group, process)
    if group == SERVICES_CGROUP:
        parent, delegate = unit(group), []
    else:
        # The machine's own systemd manages the cgroup subtree below nspawn's payload.
        parent, delegate = TOP, ["--property=Delegate=yes"]
    return [
        "systemd-run",
        "--scope",
        "--quiet",
        "--collect",  # unloaded once it ends, whatever its result: nothing lingers
        f"--unit={scope}",
        f"--slice={parent}",
        *delegate,
        f"--description=kubeha lab: {process}",
        "--",
    ]


def start_command(group: str, process: str, timeout: float = 20) -> list[str]:
    """`scope_command`, once the scope's name is free: a scope is gone only when systemd
    has seen its last process exit, which can lag behind that exit (a restarted
    salt-master, a machine powered on right after power-off)."""
    scope = scope_name(group, process)
    deadline = time.monotonic() + timeout
    while (state := _active_state(scope)) not in ("inactive", ""):
        if state == "failed":
            _systemctl("reset-failed", scope, check=False)
        elif time.monotonic() > deadline:
            raise LabError(f"{scope} is still {state}: something of the lab's still runs in it")
        time.sleep(0.1)
    return scope_command(group, process)


def _active_state(name: str) -> str:
    """ActiveState; "inactive" also for a unit systemd does not know (not loaded)."""
    out = _systemctl("show", "--property=ActiveState", "--value", name, check=False)
    return out.stdout.strip()


def control_group(group: str) -> Path | None:
    """The unit's cgroup directory, or None if the unit has none (not running)."""
    out = _systemctl("show", "--property=ControlGroup", "--value", unit(group), check=False)
    cgroup = out.stdout.strip()
    if out.returncode != 0 or not cgroup:
        return None
    found = hostlayout.CGROUP_ROOT / cgroup.lstrip("/")
    return found if found.is_dir() else None


def exists(group: str) -> bool:
    return control_group(group) is not None


def pids(group: str) -> list[int]:
    """Every process of the unit, sub-cgroups (nspawn's payload/supervisor) included."""
    top = control_group(group)
    found: list[int] = []
    if top is not None:
        for procs in top.rglob("cgroup.procs"):
            try:
                found += [int(p) for p in procs.read_text().split()]
            except (FileNotFoundError, OSError):
                continue  # the sub-cgroup went away while we looked
    return found


def is_frozen(group: str) -> bool:
    """The kernel's word: `frozen 1` in the unit's cgroup.events."""
    top = control_group(group)
    if top is None:
        return False
    events = dict(line.split() for line in (top / "cgroup.events").read_text().splitlines())
    return events.get("frozen") == "1"


def _switch(group: str, verb: str, frozen: bool, timeout: float) -> None:
    if control_group(group) is None:
        raise LabError(f"{unit(group)} is not running: nothing to {verb}")
    _systemctl(verb, unit(group), timeout=timeout)
    wait_for(
        lambda: is_frozen(group) == frozen,
        timeout=timeout,
        interval=0.02,
        what=f"{unit(group)} to {verb}",
    )


def freeze(group: str, timeout: float = 20) -> None:
    _switch(group, "freeze", True, timeout)


def thaw(group: str, timeout: float = 20) -> None:
    _switch(group, "thaw", False, timeout)


def kill_members(group: str, live: list[int]) -> None:
    """SIGKILL every process of the unit, through systemd (`systemctl kill`)."""
    del live
    _systemctl("kill", "--signal=SIGKILL", unit(group), check=False)


def remove(group: str) -> None:
    """Stop the unit (a slice: with everything in it) and forget a failed result."""
    name = unit(group)
    _systemctl("stop", name, check=False, timeout=120)
    _systemctl("reset-failed", name, check=False)
    if control_group(group) is not None:
        raise LabError(f"{name} is still running after `systemctl stop`")


def lab_cgroups() -> list[str]:
    """The lab's groups that have a cgroup now: each unit directly in kha.slice, by its lab
    name (kha-cp-1, kha-services), and kha.slice itself while it is active."""
    top = control_group(TOP)
    if top is None:
        return []
    found = [
        d.name.rsplit(".", 1)[0]
        for d in top.iterdir()
        if d.is_dir() and d.name.startswith(PREFIX) and d.name.endswith((".scope", ".slice"))
    ]
    return sorted(found) + [TOP]


def nspawn_identity(group: str, hostname: str) -> list[str]:
    """nspawn's name and registration: machined knows the machine as its group's name."""
    return ["-M", group, f"--hostname={hostname}", "--register=yes", "--keep-unit"]


def _systemctl(*args: str, check: bool = True, timeout: float = 60):
    return run(["systemctl", *args], timeout=timeout, check=check)
