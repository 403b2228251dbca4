"""How the lab finds and drives each host layout, checked without root or systemd: the
detection (lab.hostlayout), what a process started on a systemd host is prefixed with
(systemd-run --scope, lab.sdunits), and the group bookkeeping both layouts share
(lab.cgroups). The real thing on a systemd + cgroup v2 host: test_lab_systemd_host.py."""

from __future__ import annotations

import time

import pytest

from lab import cgroups, cgroupv1, hostenv, hostlayout, lifecycle, procs, sdunits
from lab.config import SERVICES_CGROUP
from lab.run import LabError


def _fake_host(root, *, systemd: bool, v2_only: bool, v1: tuple[str, ...] = ()):
    cg = root / "cgroup"
    cg.mkdir()
    if v2_only:
        (cg / "cgroup.controllers").write_text("cpu io memory pids\n")
    for hierarchy in v1:
        (cg / hierarchy).mkdir()
        (cg / hierarchy / "cgroup.procs").write_text("")
    runtime = root / "run-systemd-system"
    if systemd:
        runtime.mkdir()
    return cg, runtime


@pytest.mark.parametrize(
    ("systemd", "v2_only", "v1", "expected"),
    [
        (True, True, (), hostlayout.SYSTEMD),  # Debian 12, Ubuntu 22.04/24.04
        (False, False, ("systemd", "unified", "freezer", "cpu"), hostlayout.V1),  # this CI
        (False, False, ("systemd", "freezer"), None),  # no unified hierarchy
        (False, True, (), None),  # cgroup v2 without systemd
        (True, False, ("systemd", "unified", "freezer"), None),  # systemd on hybrid
    ],
)
def test_layouts_are_told_apart(tmp_path, systemd, v2_only, v1, expected):
    cg, runtime = _fake_host(tmp_path, systemd=systemd, v2_only=v2_only, v1=v1)
    found = hostlayout.detect(cg, runtime)
    assert found.name == expected
    assert (found.problem() is None) == (expected is not None)
    if expected is None:
        assert found.describe().startswith("unsupported: ")
    else:
        assert expected.split("-")[0] in found.describe()  # "systemd" / "cgroup"


def test_this_machine_is_one_of_the_two_layouts_or_says_why():
    found = hostlayout.detect()
    assert found.name in (hostlayout.V1, hostlayout.SYSTEMD) or found.problem()


def test_a_machine_scope_delegates_and_sits_in_the_lab_slice():
    argv = sdunits.scope_command("kha-cp-1", "cp-1")
    assert argv[:2] == ["systemd-run", "--scope"] and argv[-1] == "--"
    assert "--unit=kha-cp-1.scope" in argv and "--slice=kha.slice" in argv
    assert "--property=Delegate=yes" in argv  # the machine's systemd owns its subtree
    assert "--collect" in argv


def test_each_service_gets_its_scope_in_the_services_slice():
    argv = sdunits.scope_command(SERVICES_CGROUP, "salt-master")
    assert "--unit=kha-salt-master.scope" in argv and "--slice=kha-services.slice" in argv
    assert not any(a.startswith("--property=Delegate") for a in argv)


def test_units_outside_the_lab_are_refused():
    assert sdunits.unit("kha-cp-2") == "kha-cp-2.scope"
    assert sdunits.unit(SERVICES_CGROUP) == "kha-services.slice"
    assert sdunits.unit("kha.slice") == "kha.slice"
    for stranger in ("system.slice", "sshd", "user-0.slice", "machine-foo.scope"):
        with pytest.raises(LabError, match="not the lab's"):
            sdunits.unit(stranger)
    with pytest.raises(LabError, match="not the lab's"):
        cgroupv1.path("freezer", "system.slice")


def test_nspawn_is_registered_with_machined_only_on_a_systemd_host(monkeypatch):
    monkeypatch.setattr(cgroups, "_impl", lambda: sdunits)
    assert cgroups.nspawn_identity("kha-cp-1", "cp-1") == [
        "-M",
        "kha-cp-1",
        "--hostname=cp-1",
        "--register=yes",
        "--keep-unit",
    ]
    monkeypatch.setattr(cgroups, "_impl", lambda: cgroupv1)
    assert cgroups.nspawn_identity("kha-cp-1", "cp-1") == [
        "-M",
        "cp-1",
        "--register=no",
        "--keep-unit",
    ]


def test_spawn_runs_the_placement_prefix_in_front_of_the_command(tmp_path):
    """What systemd-run --scope does (exec the command in place) stood in for by env: the
    prefix gets the process name and the tracked PID is the command's."""
    seen = []

    def prefix(name: str) -> list[str]:
        seen.append(name)
        return ["env", f"KHA_PLACED={name}"]

    log = tmp_path / "out.log"
    proc = procs.spawn(
        "svc-1",
        ["sh", "-c", "echo placed=$KHA_PLACED pid=$$"],
        log,
        before_exec=procs.Placement(prefix=prefix),
    )
    deadline = time.monotonic() + 10
    while procs.alive(proc) and time.monotonic() < deadline:
        procs.reap(proc.pid)
        time.sleep(0.02)
    assert seen == ["svc-1"]
    assert log.read_text().split() == ["placed=svc-1", f"pid={proc.pid}"]


def test_a_v1_placement_joins_in_the_child_and_does_not_prefix(tmp_path):
    marker = tmp_path / "joined"
    placement = procs.Placement(before_exec=lambda: marker.write_text("x"))
    proc = procs.spawn("svc-2", ["true"], tmp_path / "log", before_exec=placement)
    deadline = time.monotonic() + 10
    while procs.alive(proc) and time.monotonic() < deadline:
        procs.reap(proc.pid)
        time.sleep(0.02)
    assert marker.read_text() == "x"


def test_the_lab_groups_on_systemd_are_the_units_in_kha_slice(tmp_path, monkeypatch):
    top = tmp_path / "kha.slice"
    for unit in ("kha-cp-1.scope", "kha-client.scope", "kha-services.slice"):
        (top / unit / "payload").mkdir(parents=True)
    (top / "cgroup.procs").write_text("")
    monkeypatch.setattr(sdunits, "control_group", lambda g: top if g == "kha.slice" else None)
    assert sdunits.lab_cgroups() == ["kha-client", "kha-cp-1", "kha-services", "kha.slice"]


def test_frozen_is_read_from_the_kernels_cgroup_events(tmp_path, monkeypatch):
    (tmp_path / "cgroup.events").write_text("populated 1\nfrozen 1\n")
    monkeypatch.setattr(sdunits, "control_group", lambda g: tmp_path)
    assert sdunits.is_frozen("kha-cp-3")
    (tmp_path / "cgroup.events").write_text("populated 1\nfrozen 0\n")
    assert not sdunits.is_frozen("kha-cp-3")


def test_on_a_host_that_cannot_run_the_lab_cleanup_finds_nothing_and_starting_fails(
    tmp_path, monkeypatch
):
    cg, runtime = _fake_host(tmp_path, systemd=False, v2_only=True)
    monkeypatch.setattr(hostlayout, "CGROUP_ROOT", cg)
    monkeypatch.setattr(hostlayout, "SYSTEMD_RUNTIME", runtime)
    assert cgroups.lab_cgroups() == [] and cgroups.pids("kha-cp-1") == []
    assert not cgroups.exists("kha-cp-1") and not cgroups.is_frozen("kha-cp-1")
    cgroups.kill("kha-cp-1")  # `down` on such a host is a no-op
    cgroups.remove("kha-cp-1")
    with pytest.raises(LabError, match="cannot run the lab"):
        cgroups.freeze("kha-cp-1")
    with pytest.raises(LabError, match="cannot run the lab"):
        cgroups.joiner("kha-cp-1")


def test_the_debian_mirror_can_be_named_instead_of_read_from_apt(monkeypatch):
    """lab.sdhost's host machine reads its apt packages from a file: copy of the lab mirror
    but must key the mirror cache by the outer host's Debian mirror, as the cache was."""
    monkeypatch.setattr(hostenv, "host_sources", lambda: [])  # apt knows no mirror at all
    monkeypatch.setenv(hostenv.MIRROR_ENV, "http://mirror.example/debian/")
    assert hostenv.debian_mirror().uri == "http://mirror.example/debian"
    monkeypatch.delenv(hostenv.MIRROR_ENV)
    with pytest.raises(LabError, match="no apt source for Debian bookworm"):
        hostenv.debian_mirror()


def test_minions_count_as_connected_by_their_established_publish_connection(tmp_path, monkeypatch):
    """/proc/net/tcp as the kernel writes it (little-endian hex): 198.18.0.1:4505 is
    C6120001 -> "010012C6:1199"; only ESTABLISHED (01) connections to it count."""
    header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt"
    rows = [
        "0: 010012C6:1199 0B0012C6:A1B2 01 00000000:00000000 00:00000000 00000000",  # .11
        "1: 010012C6:1199 0C0012C6:A1B3 06 00000000:00000000 00:00000000 00000000",  # .12 TIME_WAIT
        "2: 010012C6:119A 0D0012C6:A1B4 01 00000000:00000000 00:00000000 00000000",  # .13 to 4506
        "3: 010012C6:1199 00000000:0000 0A 00000000:00000000 00:00000000 00000000",  # LISTEN
    ]
    fake = tmp_path / "tcp"
    fake.write_text("\n".join([header, *rows]) + "\n")
    monkeypatch.setattr(lifecycle, "PROC_NET_TCP", fake)
    assert lifecycle.publish_subscribers() == {"198.18.0.11"}
