"""The lab's fault switches, each recorded with a precise timestamp.

power-off      cable out and PID 1 SIGKILLed: every process dies at once; the machine's
               network namespace goes too (addresses, a VIP, sysctls, iptables rules),
               the disk (overlay) survives
power-on       boots the same disk again; returns once systemd is running
cable-cut      host end of the veth down: the machine keeps running, sees NO-CARRIER
cable-restore  plugs it back
freeze         cgroup freezer: every process of the machine stops where it is (sockets
               stay open, so a TCP connect to it hangs instead of being refused); the v1
               freezer of kha-<machine>, or on a systemd host cgroup v2's cgroup.freeze of
               kha-<machine>.scope (`systemctl freeze`), lab.cgroups
thaw           resumes them

Every fault prints one JSON line and appends it to lab/.state/faults.jsonl:
{"node", "kind", "at" (epoch seconds when the fault took effect), "at_iso", "started"
(epoch seconds before acting), "took_s", "detail"}.
"""

from __future__ import annotations

import json
import signal
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from lab import cgroups, lifecycle, machine, network, state
from lab.config import STATE
from lab.run import LabError

KINDS = ("power-off", "power-on", "cable-cut", "cable-restore", "freeze", "thaw")
JOURNAL = STATE / "faults.jsonl"


@dataclass
class FaultEvent:
    node: str
    kind: str
    at: float  # epoch seconds: the instant the fault took effect
    started: float  # epoch seconds: just before acting
    took_s: float
    detail: dict = field(default_factory=dict)
    # Epoch seconds by which the fault had surely taken effect, when that is later than
    # `at` (a power-off: the cable is down once `ip link` returns): the fault went at some
    # instant of [at, until] (chaos_power reads both).
    until: float | None = None

    @property
    def at_iso(self) -> str:
        return datetime.fromtimestamp(self.at, UTC).isoformat(timespec="microseconds")

    def to_json(self) -> dict:
        return {**asdict(self), "at_iso": self.at_iso}


def inject(node: str, kind: str) -> FaultEvent:
    """Apply fault `kind` to machine `node`; record and return its timestamps."""
    if kind not in KINDS:
        raise LabError(f"unknown fault {kind!r}; one of {', '.join(KINDS)}")
    with state.locked():
        record = state.load()
        rec = record.machines.get(node)
        if rec is None:
            raise LabError(f"{node} is not a lab machine that is up ({', '.join(record.machines)})")
        event = _APPLY[kind](rec, record)
        state.save(record)
    event.node, event.kind = node, kind
    JOURNAL.parent.mkdir(parents=True, exist_ok=True)
    with open(JOURNAL, "a") as journal:
        journal.write(json.dumps(event.to_json(), sort_keys=True) + "\n")
    return event


def _require(
    rec: state.MachineRecord,
    *,
    power: str | None = None,
    cable: str | None = None,
    frozen: bool | None = None,
) -> None:
    if power is not None and rec.power != power:
        raise LabError(f"{rec.name} is powered {rec.power}")
    if cable is not None and rec.cable != cable:
        raise LabError(f"{rec.name}'s cable is {rec.cable}")
    if frozen is not None and rec.frozen != frozen:
        raise LabError(f"{rec.name} is {'frozen' if rec.frozen else 'not frozen'}")


def _power_off(rec: state.MachineRecord, _record: state.LabRecord) -> FaultEvent:
    _require(rec, power="on")
    m = rec.machine
    started = time.time()
    # Cable and power go together, and the fault is dated from the start of the cut. Between
    # the cable and the SIGKILL (a few ms) keepalived sees the link go down and removes the
    # VIP; an `at` taken after the SIGKILL put that removal "before the fault" (measured
    # once: 4 ms), and the run read the VIP as on no node. The cut itself is an `ip link`
    # child process (3-9 ms on an idle lab, longer on a loaded machine): a request opened
    # in that window is still answered by the node's kernel (SYN-ACK, its TLS ClientHello
    # acknowledged), then waits for a reply that never comes. `until` closes the window,
    # so a chaos run can tell that request apart (chaos_analysis.in_flight_at_power_off).
    network.set_cable(m, plugged=False)
    until = time.time()
    machine.signal_init(rec.nspawn, rec.init_pid, signal.SIGKILL)
    at = started
    cable = rec.cable
    lifecycle.stop_machine(rec)
    rec.cable = cable  # a power cycle does not plug a cut cable back in
    return FaultEvent(rec.name, "", at, started, time.time() - started, until=until)


def _power_on(rec: state.MachineRecord, record: state.LabRecord) -> FaultEvent:
    _require(rec, power="off")
    if not record.base:
        raise LabError("no base image recorded; run `python -m lab up`")
    started = time.time()
    lifecycle.start_machine(rec, Path(record.base))
    at = time.time()
    final = lifecycle.finish_boot(rec)
    return FaultEvent(
        rec.name,
        "",
        at,
        started,
        time.time() - started,
        {"booted_at": time.time(), "system_state": final},
    )


def _cable(plugged: bool):
    def apply(rec: state.MachineRecord, _record: state.LabRecord) -> FaultEvent:
        _require(rec, cable="cut" if plugged else "plugged")
        started = time.time()
        if rec.power == "on":  # a powered-off machine's cable stays down until power-on
            network.set_cable(rec.machine, plugged=plugged)
        at = time.time()
        rec.cable = "plugged" if plugged else "cut"
        return FaultEvent(rec.name, "", at, started, at - started)

    return apply


def _freezer(frozen: bool):
    def apply(rec: state.MachineRecord, _record: state.LabRecord) -> FaultEvent:
        _require(rec, power="on", frozen=not frozen)
        started = time.time()
        (cgroups.freeze if frozen else cgroups.thaw)(rec.machine.cgroup)
        at = time.time()
        rec.frozen = frozen
        return FaultEvent(rec.name, "", at, started, at - started)

    return apply


_APPLY = {
    "power-off": _power_off,
    "power-on": _power_on,
    "cable-cut": _cable(plugged=False),
    "cable-restore": _cable(plugged=True),
    "freeze": _freezer(frozen=True),
    "thaw": _freezer(frozen=False),
}


def journal() -> list[dict]:
    """Every fault recorded so far (lab/.state/faults.jsonl)."""
    if not JOURNAL.exists():
        return []
    return [json.loads(line) for line in JOURNAL.read_text().splitlines() if line.strip()]
