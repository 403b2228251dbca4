"""What is up right now: lab/.state/lab.json, read and written under a lock.

The record is a convenience, not the source of truth for cleaning up: `down` also finds
the lab's leftovers by their kha-* names (see lab.inventory), so a lost or stale record
never leaves anything behind.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

from lab.config import STATE, Machine, machine_from_name
from lab.procs import Tracked
from lab.run import LabError

RECORD = STATE / "lab.json"
LOCK = STATE / ".lock"


@dataclass
class MachineRecord:
    """A machine's switches: power, cable, freezer; its nspawn and its PID 1 when on."""

    name: str
    power: str = "off"  # "on" | "off"
    cable: str = "plugged"  # "plugged" | "cut"
    frozen: bool = False
    nspawn: Tracked | None = None
    init_pid: int | None = None

    @property
    def machine(self) -> Machine:
        return machine_from_name(self.name)


@dataclass
class LabRecord:
    machines: dict[str, MachineRecord] = field(default_factory=dict)
    services: dict[str, Tracked] = field(default_factory=dict)  # "salt-master", "mirror-http"
    base: str | None = None  # the base rootfs the overlays sit on

    def to_json(self) -> dict:
        return {
            "machines": {
                n: {**asdict(m), "nspawn": m.nspawn.to_json() if m.nspawn else None}
                for n, m in self.machines.items()
            },
            "services": {n: t.to_json() for n, t in self.services.items()},
            "base": self.base,
        }

    @classmethod
    def from_json(cls, data: dict) -> LabRecord:
        machines = {}
        for name, m in data.get("machines", {}).items():
            nspawn = Tracked.from_json(m["nspawn"]) if m.get("nspawn") else None
            machines[name] = MachineRecord(
                name,
                m.get("power", "off"),
                m.get("cable", "plugged"),
                bool(m.get("frozen")),
                nspawn,
                m.get("init_pid"),
            )
        services = {n: Tracked.from_json(t) for n, t in data.get("services", {}).items()}
        return cls(machines, services, data.get("base"))


def load() -> LabRecord:
    try:
        return LabRecord.from_json(json.loads(RECORD.read_text()))
    except (FileNotFoundError, json.JSONDecodeError, KeyError, TypeError):
        return LabRecord()


def save(record: LabRecord) -> None:
    STATE.mkdir(parents=True, exist_ok=True)
    tmp = RECORD.with_suffix(".tmp")
    tmp.write_text(json.dumps(record.to_json(), indent=2, sort_keys=True) + "\n")
    os.replace(tmp, RECORD)


def forget() -> None:
    RECORD.unlink(missing_ok=True)


@contextmanager
def locked(timeout: float = 1800) -> Iterator[None]:
    """One lab-changing command at a time (up, down, faults), across processes."""
    STATE.mkdir(parents=True, exist_ok=True)
    with open(LOCK, "w") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise LabError(f"another lab command held {LOCK} for {timeout:.0f}s") from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
