"""`down` leaves the host as it found it: no kha- namespace, link, mount, cgroup (or on a
systemd host: unit), loop device or process, and running it twice is fine; it also removes
the systemd host machine of lab.sdhost with the lab that runs inside it. Runs last in the
session (conftest.py), and only where destroying the lab is this session's call: CI, a lab
this session started, or KHA_LAB_DESTROY_OK=1 (conftest.destroy_skip_reason)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from lab import cgroups, config, inventory, lifecycle, sdhost, state
from lab.api import Lab
from lab.base import image_path as base_image_path
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
        # cgroup v1 hierarchies' kha-*, or on a systemd host kha.slice (and its units)
        "cgroups": [str(p) for p in Path("/sys/fs/cgroup").glob("*/kha-*")]
        + [str(p) for p in Path("/sys/fs/cgroup").glob("kha.slice")],
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
    # The systemd host machine, holding what a lab inside it holds (a namespace, a bridge,
    # the base image loop-mounted, a unit), none of it visible here: `down` takes it too.
    # (lab.sdhost_proof runs a whole lab in it; this is the cheap stand-in.)
    host = sdhost.up()
    image = sdhost.INNER_REPO / base_image_path().relative_to(config.REPO)
    host.exec(
        "sh",
        "-ec",
        "ip netns add kha-cp-1; ip link add kha-br0 type bridge; mkdir -p /run/kha-lab/base;"
        f" mount -o loop,ro -t squashfs {image} /run/kha-lab/base;"
        " systemd-run --quiet --unit=kha-down-test sleep 600",
    )
    pids.append(host.nspawn.pid)
    assert sdhost.inner_loop_devices(), "the host machine should hold a loop device"

    left = lifecycle.down()
    assert left.empty(), left.describe()
    assert _host_view() == {"netns": [], "links": [], "mounts": [], "cgroups": []}
    for pid in pids:  # machines' nspawn, salt-master, the mirror's HTTP server
        stat = Path(f"/proc/{pid}/stat")
        assert not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"
    assert not config.MOUNT_ROOT.exists() and not config.DISK_ROOT.exists()
    assert inventory.lab_loop_devices() == [] and sdhost.inner_loop_devices() == []
    assert sdhost.load() is None and not cgroups.exists(sdhost.GROUP)
    assert not Lab().is_up()

    again = lifecycle.down()
    assert again.empty()
