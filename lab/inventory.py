"""Everything of the lab's that exists on the host now, found by name (kha-*), not by record.

`down` removes what this finds and then checks it finds nothing; tests assert the same.
Namespaces and links of other users of the host (khm-*, khf-*, kubesim-*) never match.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lab import cgroups, network
from lab.config import CACHE, DISK_ROOT, MOUNT_ROOT, PREFIX, STATE


@dataclass
class Inventory:
    namespaces: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    mounts: list[str] = field(default_factory=list)
    cgroups: list[str] = field(default_factory=list)
    processes: list[str] = field(default_factory=list)  # "pid command"
    loop_devices: list[str] = field(default_factory=list)  # backed by the lab's base image
    folders: list[str] = field(default_factory=list)  # machine disks and mount points

    def empty(self) -> bool:
        return not any(vars(self).values())

    def describe(self) -> str:
        parts = [f"{k}: {', '.join(v)}" for k, v in vars(self).items() if v]
        return "; ".join(parts) or "nothing"


def lab_mounts() -> list[str]:
    """Mount points the lab made: overlays named kha-*, or anything under its folders (the
    base image's build folders included: an interrupted debootstrap leaves its /proc
    mounted there, and the next build of that recipe would refuse to start)."""
    found = []
    roots = (
        str(MOUNT_ROOT) + "/",
        str(STATE) + "/",
        str(DISK_ROOT) + "/",
        str(CACHE / "base") + "/",
    )
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        point = fields[4]
        source = fields[fields.index("-") + 2]
        if source.startswith(PREFIX) or point.startswith(roots) or point == str(MOUNT_ROOT):
            found.append(point)
    return found


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return "?"


def lab_processes() -> list[str]:
    """Live processes in kha-* cgroups, or running from the lab's folders or its mounts."""
    pids: set[int] = set()
    for name in cgroups.lab_cgroups():
        pids |= set(cgroups.pids(name))
    markers = (str(MOUNT_ROOT), str(STATE))
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            cmd = _cmdline(int(proc.name))
            if any(m in cmd for m in markers):
                pids.add(int(proc.name))
    return sorted(f"{pid} {_cmdline(pid)[:120]}" for pid in pids if _state(pid) not in ("Z", "?"))


def lab_loop_devices() -> list[str]:
    """Loop devices whose backing file is in lab/.cache (the base image)."""
    found = []
    for backing in Path("/sys/block").glob("loop*/loop/backing_file"):
        if backing.read_text().strip().startswith(str(CACHE) + "/"):
            found.append(f"/dev/{backing.parent.parent.name}")
    return sorted(found)


def take() -> Inventory:
    return Inventory(
        namespaces=network.namespaces(),
        links=network.lab_links(),
        mounts=lab_mounts(),
        cgroups=cgroups.lab_cgroups(),
        processes=lab_processes(),
        loop_devices=lab_loop_devices(),
        folders=[str(p) for p in (MOUNT_ROOT, DISK_ROOT) if p.exists()],
    )
