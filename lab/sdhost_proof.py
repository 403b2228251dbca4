"""The lab on a systemd + cgroup v2 host, proved in the host machine of lab.sdhost.

    python -m lab.sdhost_proof [--keep]        # make lab-systemd-host

In a Debian 12 machine whose PID 1 is systemd on a cgroup v2 only hierarchy: install what
`make system-deps` installs for the lab (lab.txt, from the lab's apt mirror), then, with
the operator's commands (`python -m lab ...`): up with the client, a ping of every minion,
freeze/thaw, power-off/power-on, down. Each step is checked from inside the host machine
with systemd's and the kernel's own tools (machinectl, systemctl, cgroup.events, ip), and
timed. The host machine is removed at the end (--keep leaves it up for a look:
`python -m lab.sdhost exec -- machinectl list`, then `python -m lab.sdhost down`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field

from lab import sdhost
from lab.run import LabError, say

MACHINES = ["client", "cp-1", "cp-2", "cp-3"]


@dataclass
class Proof:
    timings: dict[str, float] = field(default_factory=dict)
    checks: list[str] = field(default_factory=list)  # what was verified, in order
    inner_up: str = ""  # what `python -m lab up` printed inside


def _check(proof: Proof, ok: bool, what: str, seen: object) -> None:
    if not ok:
        raise LabError(f"systemd host proof: {what}: saw {seen!r}")
    proof.checks.append(what)
    say(f"  ok: {what}")


def _timed(proof: Proof, title: str, func):
    say(f"{title} ...")
    started = time.monotonic()
    result = func()
    proof.timings[title] = round(time.monotonic() - started, 1)
    say(f"{title}: done in {proof.timings[title]}s")
    return result


def _pings(host: sdhost.Host, target: str, timeout: int) -> dict:
    """{minion: True} for each that answered; a silent one maps to False or is missing."""
    out = host.lab(
        "salt",
        target,
        "test.ping",
        "--out=json",
        "--static",
        f"--timeout={timeout}",
        check=False,
    ).stdout
    try:
        return json.loads(out or "{}")
    except json.JSONDecodeError:
        return {"unparsed": out[-500:]}


def _machines(host: sdhost.Host) -> set[str]:
    out = host.exec("machinectl", "list", "--no-legend", "--no-pager").stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def _events(host: sdhost.Host, unit: str) -> dict[str, str]:
    text = host.exec("cat", f"/sys/fs/cgroup/kha.slice/{unit}/cgroup.events").stdout
    return dict(line.split() for line in text.splitlines())


def _layout(proof: Proof, host: sdhost.Host) -> None:
    fs = host.exec("stat", "-f", "-c", "%T", "/sys/fs/cgroup").stdout.strip()
    _check(proof, fs == "cgroup2fs", "the host machine has cgroup v2 only", fs)
    pid1 = host.exec("cat", "/proc/1/comm").stdout.strip()
    _check(proof, pid1 == "systemd", "its PID 1 is systemd", pid1)
    running = host.exec("systemctl", "is-system-running", check=False).stdout.strip()
    _check(proof, running == "running", "its systemd is running", running)


def _up(proof: Proof, host: sdhost.Host) -> None:
    done = host.lab("up", "--client", timeout=900)
    proof.inner_up = done.stderr
    for line in done.stderr.splitlines():  # its own step timings ("[lab]   machines 2.3s")
        if line.startswith("[lab]   ") or line.startswith("[lab] lab up in"):
            say(f"  inside: {line.removeprefix('[lab] ').strip()}")
    _check(
        proof,
        "host layout: systemd" in done.stderr,
        "`python -m lab up` found the systemd layout",
        done.stderr[-1500:],
    )
    _check(proof, _machines(host) == {f"kha-{m}" for m in MACHINES}, "machinectl lists them", None)
    for m in MACHINES:
        active = host.exec("systemctl", "is-active", f"kha-{m}.scope", check=False).stdout
        _check(proof, active.strip() == "active", f"kha-{m}.scope is active", active)


def _freeze(proof: Proof, host: sdhost.Host) -> None:
    host.lab("fault", "cp-3", "freeze")
    events = _events(host, "kha-cp-3.scope")
    _check(proof, events.get("frozen") == "1", "freeze: cgroup.events says frozen 1", events)
    state = host.exec("systemctl", "show", "-P", "FreezerState", "kha-cp-3.scope").stdout
    _check(proof, state.strip() == "frozen", "systemd's FreezerState is frozen", state)
    pings = _pings(host, "cp-3", timeout=3)
    _check(proof, pings.get("cp-3") is not True, "a frozen minion does not answer", pings)
    host.lab("fault", "cp-3", "thaw")
    events = _events(host, "kha-cp-3.scope")
    _check(proof, events.get("frozen") == "0", "thaw: cgroup.events says frozen 0", events)
    pings = _pings(host, "cp-3", timeout=20)
    _check(proof, pings.get("cp-3") is True, "the thawed minion answers", pings)


def _power(proof: Proof, host: sdhost.Host) -> None:
    host.lab("fault", "cp-2", "power-off")
    _check(proof, "kha-cp-2" not in _machines(host), "power-off: machined dropped it", None)
    active = host.exec("systemctl", "is-active", "kha-cp-2.scope", check=False).stdout.strip()
    _check(proof, active != "active", "power-off: its scope is gone", active)
    host.lab("fault", "cp-2", "power-on")
    _check(proof, "kha-cp-2" in _machines(host), "power-on: machined has it again", None)
    deadline = time.monotonic() + 120
    while (pings := _pings(host, "cp-2", timeout=5)).get("cp-2") is not True:
        if time.monotonic() > deadline:
            break
        time.sleep(1)
    _check(proof, pings.get("cp-2") is True, "power-on: its minion answers", pings)


def _down(proof: Proof, host: sdhost.Host) -> None:
    host.lab("down", timeout=300)
    left = {
        "machines": sorted(_machines(host)),
        "units": host.exec(
            "systemctl", "list-units", "--all", "--plain", "--no-legend", "kha*"
        ).stdout.split(),
        "netns": host.exec("ip", "netns", "list").stdout.split(),
        "bridge": host.exec("ip", "link", "show", "kha-br0", check=False).returncode == 0,
        "mounts": [
            line
            for line in host.exec("cat", "/proc/self/mountinfo").stdout.splitlines()
            if "/run/kha-lab" in line or " kha-" in line
        ],
    }
    empty = {"machines": [], "units": [], "netns": [], "bridge": False, "mounts": []}
    _check(proof, left == empty, "down: no machine, unit, namespace, bridge or mount left", left)


def run_proof(keep: bool = False) -> Proof:
    """Every step; raises LabError at the first that fails. The host machine is removed at
    the end, failed or not, unless `keep`."""
    proof = Proof()
    started = time.monotonic()
    try:
        host = _timed(proof, "boot the systemd host machine", sdhost.up)
        _layout(proof, host)
        _timed(
            proof,
            "make system-deps (lab.txt) from the lab mirror",
            lambda: host.exec(f"{sdhost.INNER_REPO}/scripts/install-system-deps.sh", "lab"),
        )
        _timed(proof, "python -m lab up --client", lambda: _up(proof, host))
        pings = _timed(proof, "ping every minion", lambda: _pings(host, "*", timeout=20))
        _check(proof, pings == dict.fromkeys(MACHINES, True), "every minion answers", pings)
        _timed(proof, "freeze and thaw cp-3", lambda: _freeze(proof, host))
        _timed(proof, "power-off and power-on cp-2", lambda: _power(proof, host))
        _timed(proof, "python -m lab down", lambda: _down(proof, host))
    finally:
        if not keep:
            _timed(proof, "remove the host machine", sdhost.down)
    proof.timings["total"] = round(time.monotonic() - started, 1)
    return proof


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.sdhost_proof", description=__doc__[:70])
    parser.add_argument("--keep", action="store_true", help="leave the host machine up")
    args = parser.parse_args(argv)
    try:
        proof = run_proof(keep=args.keep)
    except LabError as err:
        print(f"lab.sdhost_proof: FAILED: {err}", file=sys.stderr)
        return 1
    for step, seconds in proof.timings.items():
        say(f"  {step:<48} {seconds:6.1f}s")
    say(f"the lab runs on a systemd + cgroup v2 host: {len(proof.checks)} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
