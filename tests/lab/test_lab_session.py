"""The lab test session's rules, checked without root: who may take the lab down, and
what happens on a host that cannot run the lab (cgroup v2 without systemd, systemd on a
hybrid hierarchy). Host layouts themselves: test_lab_hostlayout.py."""

from __future__ import annotations

import pytest

from lab import __main__ as cli
from lab import cgroups, hostlayout, lifecycle, state
from lab.run import LabError
from tests.lab import conftest


@pytest.mark.parametrize(
    ("was_there", "env", "runs"),
    [
        (False, {}, True),  # this session started the lab: its own to destroy
        (True, {}, False),  # someone's lab: never
        (True, {"CI": "true"}, True),  # CI: a clean clone, the lab is the run's own
        (True, {"CI": "false"}, False),
        (True, {"KHA_LAB_DESTROY_OK": "1"}, True),
        (True, {"KHA_LAB_DESTROY_OK": "0"}, False),
        (False, {"KHA_LAB_KEEP": "1"}, False),  # asked to keep it
        (False, {"KHA_LAB_KEEP": "1", "CI": "true"}, True),
    ],
)
def test_only_ci_or_the_labs_starter_may_take_it_down(was_there, env, runs):
    reason = conftest.destroy_skip_reason(was_there, env)
    assert (reason is None) == runs, reason
    if was_there and not runs:
        assert "before this session" in reason and "CI=true" in reason


def _v2_only(root):
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (root / "cgroup.procs").write_text("")


def _host(monkeypatch, root, systemd: bool):
    """Point lab.hostlayout at a fake /sys/fs/cgroup and a fake /run/systemd/system."""
    monkeypatch.setattr(hostlayout, "CGROUP_ROOT", root)
    runtime = root.parent / "run-systemd-system"
    if systemd:
        runtime.mkdir(exist_ok=True)
    monkeypatch.setattr(hostlayout, "SYSTEMD_RUNTIME", runtime)


def _hybrid(root):
    for hierarchy in ("systemd", "unified", "freezer", "cpu"):
        (root / hierarchy).mkdir()
        (root / hierarchy / "cgroup.procs").write_text("")


def test_a_cgroup_v2_only_host_without_systemd_is_named_as_the_reason(tmp_path, monkeypatch):
    (tmp_path / "cg").mkdir()
    _host(monkeypatch, tmp_path / "cg", systemd=False)
    _v2_only(tmp_path / "cg")
    problem = lifecycle.host_problem()
    assert problem and "cgroup v2 only" in problem and "systemd is not PID 1" in problem
    assert "freezer" in problem  # what the other layout needs
    monkeypatch.setattr(lifecycle.os, "geteuid", lambda: 0)
    with pytest.raises(LabError, match="this host cannot run the lab: .*cgroup v2 only"):
        lifecycle.preflight()


def test_a_hybrid_host_with_the_v1_freezer_can_run_the_lab(tmp_path, monkeypatch):
    (tmp_path / "cg").mkdir()
    _host(monkeypatch, tmp_path / "cg", systemd=False)
    _hybrid(tmp_path / "cg")
    assert cgroups.host_problem() is None
    (tmp_path / "cg" / "freezer" / "cgroup.procs").unlink()
    assert "freezer" in cgroups.host_problem()


def test_a_systemd_host_with_cgroup_v2_only_can_run_the_lab(tmp_path, monkeypatch):
    """Stock Debian 12 / Ubuntu 22.04+: no longer refused (issue 11)."""
    (tmp_path / "cg").mkdir()
    _host(monkeypatch, tmp_path / "cg", systemd=True)
    _v2_only(tmp_path / "cg")
    assert cgroups.host_problem() is None
    assert cgroups.layout().name == hostlayout.SYSTEMD


def test_systemd_on_a_hybrid_hierarchy_is_refused_with_what_to_boot(tmp_path, monkeypatch):
    (tmp_path / "cg").mkdir()
    _host(monkeypatch, tmp_path / "cg", systemd=True)
    _hybrid(tmp_path / "cg")
    problem = cgroups.host_problem()
    assert problem and "systemd.unified_cgroup_hierarchy=1" in problem


def test_lab_up_says_why_on_a_v2_only_host(tmp_path, monkeypatch, capsys):
    """What `make lab-up` prints (python -m lab up), and it exits 1."""
    (tmp_path / "cg").mkdir()
    _host(monkeypatch, tmp_path / "cg", systemd=False)
    _v2_only(tmp_path / "cg")
    monkeypatch.setattr(state, "STATE", tmp_path / "state")
    monkeypatch.setattr(state, "LOCK", tmp_path / "state" / ".lock")
    monkeypatch.setattr(lifecycle.os, "geteuid", lambda: 0)
    assert cli.main(["up", "--client"]) == 1
    err = capsys.readouterr().err
    assert "lab: this host cannot run the lab:" in err and "cgroup v2 only" in err


class _Item:
    def __init__(self, name: str, lab: bool):
        self.fspath = f"/repo/tests/lab/{name}"
        self.lab = lab
        self.markers: list = []

    def get_closest_marker(self, name):
        return object() if name == "lab" and self.lab else None

    def add_marker(self, marker):
        self.markers.append(marker)


def test_lab_tests_are_skipped_with_the_reason_and_run_last_down_at_the_very_end(monkeypatch):
    items = [
        _Item("test_lab_down.py", lab=True),
        _Item("test_lab_up.py", lab=True),
        _Item("test_lab_config.py", lab=False),
    ]
    monkeypatch.setattr(lifecycle, "host_problem", lambda: "cgroup v2 only here")
    conftest.pytest_collection_modifyitems(None, items)
    # every other test first (a unit test here), then the lab's, then the one taking it down
    assert [i.fspath.rsplit("/", 1)[1] for i in items] == [
        "test_lab_config.py",
        "test_lab_up.py",
        "test_lab_down.py",
    ]
    reasons = {i.fspath.rsplit("/", 1)[1]: [m.kwargs["reason"] for m in i.markers] for i in items}
    assert reasons == {
        "test_lab_up.py": ["this host cannot run the lab: cgroup v2 only here"],
        "test_lab_config.py": [],
        "test_lab_down.py": ["this host cannot run the lab: cgroup v2 only here"],
    }
    for item in items:
        item.markers.clear()
    monkeypatch.setattr(lifecycle, "host_problem", lambda: None)
    conftest.pytest_collection_modifyitems(None, items)
    assert all(not i.markers for i in items)
