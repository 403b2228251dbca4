"""The lab for end-to-end tests: `lab` is the running lab (cp-1..cp-3 + client).

    def test_something(lab):                       # tests/lab/..., marked @pytest.mark.lab
        assert lab.salt("cp-*", "test.ping") == {"cp-1": True, "cp-2": True, "cp-3": True}
        lab.exec("cp-1", "systemctl", "is-active", "salt-minion")
        event = lab.fault("cp-2", "power-off")     # event.at: epoch seconds of the fault

`lab` is session-scoped: it runs `up` once (reusing, and repairing, a lab that is already
up) and, if this session started it, takes it down at the end (KHA_LAB_KEEP=1 keeps it).
`lab_healthy` is the same object for tests that inject faults: after the test every
machine is thawed, plugged in, powered on, and its minion answers again.
test_lab_down.py runs last in the session, whatever else is collected, since it takes
the lab down.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import lifecycle
from lab.api import Lab

LAST = "test_lab_down.py"


def pytest_collection_modifyitems(config, items):
    """Move the `down` tests to the very end: every other lab user runs before them."""
    last = [i for i in items if Path(str(i.fspath)).name == LAST]
    if last:
        items[:] = [i for i in items if i not in last] + last


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    was_up = Lab().is_up()
    handle = Lab.up(client=True)
    yield handle
    if not was_up and os.environ.get("KHA_LAB_KEEP") != "1":
        lifecycle.down()


@pytest.fixture
def lab_healthy(lab: Lab) -> Iterator[Lab]:
    yield lab
    lab.restore()
