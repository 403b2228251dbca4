"""The lab for end-to-end tests: `lab` is the running lab (cp-1..cp-3 + client).

    def test_something(lab):                       # tests/lab/..., marked @pytest.mark.lab
        assert lab.salt("cp-*", "test.ping") == {"cp-1": True, "cp-2": True, "cp-3": True}
        lab.exec("cp-1", "systemctl", "is-active", "salt-minion")
        event = lab.fault("cp-2", "power-off")     # event.at: epoch seconds of the fault

`lab` is session-scoped: it runs `up` once (reusing, and repairing, a lab that is already
up) and, if this session started it, takes it down at the end (KHA_LAB_KEEP=1 keeps it).
A lab that was on the host before the session (`lab_was_there`) belongs to someone else:
nothing here takes it down, and test_lab_down.py skips unless CI (or
KHA_LAB_DESTROY_OK=1) says destroying it is fine.
`lab_healthy` is the same object for tests that inject faults: after the test every
machine is thawed, plugged in, powered on, and its minion answers again.
Every test marked `lab` is skipped, with the reason, on a host that cannot run the lab
(lab.lifecycle.host_problem: cgroup v2 only, a kernel without overlay/br_netfilter); under
CI=true each such skip is a failure with the same reason (tests/conftest.py, ci_failure):
CI's machine must run the lab, so a host problem there turns the run red.
Lab tests run after every other tier, and test_lab_down.py last in the session, whatever
else is collected, since it takes the lab down.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from lab import lifecycle
from lab.api import Lab
from lab.run import say

LAST = "test_lab_down.py"
DESTROY_OK = "KHA_LAB_DESTROY_OK"


def pytest_collection_modifyitems(config, items):
    """Lab tests run after every other tier, and the `down` tests at the very end: the fast
    tiers report first, and no root or unit test shares the 2 cores with a running lab
    (a root keepalived test once timed out so). Skip every lab test, saying why, where the
    host cannot run the lab at all."""
    lab_items = [i for i in items if i.get_closest_marker("lab") is not None]
    last = [i for i in lab_items if Path(str(i.fspath)).name == LAST]
    first = [i for i in lab_items if i not in last]
    others = [i for i in items if i.get_closest_marker("lab") is None]
    items[:] = others + first + last
    problem = lifecycle.host_problem() if lab_items else None
    if problem:
        skip = pytest.mark.skip(reason=f"this host cannot run the lab: {problem}")
        for item in lab_items:
            item.add_marker(skip)


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() not in ("", "0", "false", "no")


def destroy_skip_reason(lab_was_there: bool, env: Mapping[str, str] = os.environ) -> str | None:
    """Why a test that takes the lab down must not run now, or None if it may.

    CI (a clean clone, CI=true) always starts the lab itself and must run such tests;
    anywhere else a lab found up may be in use (an operator's, another checkout's).
    """
    if _truthy(env.get("CI")) or _truthy(env.get(DESTROY_OK)):
        return None
    if lab_was_there:
        return (
            "a lab was on this host before this session and may be in use: taking it down "
            f"is left to its owner (CI=true or {DESTROY_OK}=1 runs this anyway)"
        )
    if _truthy(env.get("KHA_LAB_KEEP")):
        return f"KHA_LAB_KEEP=1 keeps the lab up ({DESTROY_OK}=1 runs this anyway)"
    return None


@pytest.fixture(scope="session")
def lab_was_there() -> bool:
    """Whether anything of a lab was on the host before this session touched it."""
    return Lab().exists()


@pytest.fixture(scope="session")
def lab(lab_was_there: bool) -> Iterator[Lab]:
    owned = not lab_was_there
    if lab_was_there and _truthy(os.environ.get("CI")) and not Lab().is_up():
        # CI is a clean clone: a lab that this checkout's record does not know is a
        # leftover (an interrupted run elsewhere) whose names, addresses and base mount
        # would collide with ours. `down` finds it by its kha- names and cgroups.
        say("CI: a lab this checkout did not start is on the host; taking it down first")
        lifecycle.down()
        owned = True
    handle = Lab.up(client=True)
    yield handle
    if owned and not _truthy(os.environ.get("KHA_LAB_KEEP")):
        lifecycle.down()


@pytest.fixture
def lab_healthy(lab: Lab) -> Iterator[Lab]:
    yield lab
    lab.restore()
