"""The lab on a stock Debian 12 host layout: systemd as PID 1, cgroup v2 only (issue 11).

This machine has the other layout (cgroup v1, no systemd as PID 1), so the proof boots
one: lab.sdhost's host machine, the lab's base image with systemd on a unified hierarchy
and a private network, which installs lab.txt from the lab mirror and runs, with the
operator's commands, `python -m lab up --client`, a ping of every minion, freeze/thaw,
power-off/power-on and down (lab.sdhost_proof). Does not need the `lab` fixture: the lab
inside is its own (its own 198.18.0.0/24, bridge, namespaces and units).
"""

from __future__ import annotations

import pytest

from lab import cgroups, sdhost, sdhost_proof

pytestmark = [pytest.mark.root, pytest.mark.lab]


def test_the_lab_runs_on_a_systemd_cgroup_v2_host(capsys):
    problem = sdhost.problem()
    if problem:
        pytest.skip(f"cannot boot the systemd host machine here: {problem}")
    proof = sdhost_proof.run_proof()

    # What the checks saw, by name: the host machine's layout, the layout the lab found in
    # it, the machines as machined and systemd show them, and each fault by the kernel's
    # and systemd's own account (lab.sdhost_proof raises at the first that does not hold).
    for check in (
        "the host machine has cgroup v2 only",
        "its PID 1 is systemd",
        "`python -m lab up` found the systemd layout",
        "machinectl lists them",
        "every minion answers",
        "freeze: cgroup.events says frozen 1",
        "a frozen minion does not answer",
        "thaw: cgroup.events says frozen 0",
        "power-off: machined dropped it",
        "power-on: its minion answers",
        "down: no machine, unit, namespace, bridge or mount left",
    ):
        assert check in proof.checks
    assert "[lab] host layout: systemd" in proof.inner_up
    # The host machine went with everything it held.
    assert sdhost.load() is None and not cgroups.exists(sdhost.GROUP)
    assert sdhost.inner_loop_devices() == [] and not sdhost.FOLDER.exists()
    with capsys.disabled():
        print("\nsystemd host proof timings (s):", proof.timings)
