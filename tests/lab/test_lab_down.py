"""`down` leaves the host as it found it: no kha- namespace, link, mount, cgroup, loop device
or process, and running it twice is fine. Runs last in the session (conftest.py), and only
where destroying the lab is this session's call: CI, a lab this session started, or
KHA_LAB_DESTROY_OK=1 (conftest.destroy_skip_reason)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from lab import config, inventory, lifecycle, state
from lab.api import Lab
from tests.lab.conftest import destroy_skip_reason

pytestmark = [pytest.mark.root, pytest.mark.lab]


def _host_view() -> dict[str, list[str]]:
    """What the host shows, read with the host's own tools rather than lab.inventory."""
    netns = json.loads(
        subprocess.run(
            ["ip", "-j", "netns", "list"], capture_output=True, text=True, check=True, timeout=20
        ).stdout
        or "[]"
    )
    links = json.loads(
        subprocess.run(
            ["ip", "-j", "link", "show"], capture_output=True, text=True, check=True, timeout=20
        ).stdout
    )
    mounts = Path("/proc/self/mounts").read_text().splitlines()
    return {
        "netns": [n["name"] for n in netns if n["name"].startswith("kha-")],
        "links": [link["ifname"] for link in links if link["ifname"].startswith("kha-")],
        "mounts": [m for m in mounts if "kha-" in m],
        "cgroups": [str(p) for p in Path("/sys/fs/cgroup").glob("*/kha-*")],
    }


def test_down_leaves_nothing_and_is_idempotent(request, lab_was_there):
    reason = destroy_skip_reason(lab_was_there)
    if reason:
        pytest.skip(reason)
    request.getfixturevalue("lab")  # up (or still up from the session's other tests)
    record = state.load()
    pids = [r.nspawn.pid for r in record.machines.values() if r.nspawn]
    pids += [s.pid for s in record.services.values()]
    assert pids and _host_view()["netns"], "the lab should be up before this test"

    left = lifecycle.down()
    assert left.empty(), left.describe()
    assert _host_view() == {"netns": [], "links": [], "mounts": [], "cgroups": []}
    for pid in pids:  # machines' nspawn, salt-master, the mirror's HTTP server
        stat = Path(f"/proc/{pid}/stat")
        assert not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"
    assert not config.MOUNT_ROOT.exists() and not config.DISK_ROOT.exists()
    assert inventory.lab_loop_devices() == []
    assert not Lab().is_up()

    again = lifecycle.down()
    assert again.empty()
