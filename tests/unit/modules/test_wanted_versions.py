"""kubeha_status.wanted_versions: the gates want each Node at pillar's version, or at the
newer one an upgrade recorded on it (so a gate between upgrade passes, and the final gate
after a partial upgrade, judge each node by where it should be)."""

import pytest

from tests.unit.modules.khm_load import load, utils

status = load("_runners", "kubeha_status")

MODEL = {
    "kubernetes": {"version": "1.30.0"},
    "control_plane": [{"name": "cp-1"}, {"name": "cp-2"}, {"name": "cp-3"}],
    "workers": [{"name": "w-1"}],
}


@pytest.fixture(autouse=True)
def _utils(monkeypatch):
    monkeypatch.setattr(status, "__utils__", utils("kubeha_values"), raising=False)


def test_pillar_version_unless_an_upgrade_recorded_a_newer_one():
    snap = {"upgraded": {"cp-2": "1.31.0", "cp-3": "1.29.15", "w-1": "not-a-version"}}
    assert status.wanted_versions(MODEL, snap) == {
        "cp-1": "v1.30.0",  # nothing recorded
        "cp-2": "v1.31.0",  # upgraded ahead of pillar
        "cp-3": "v1.30.0",  # an older record never pulls a node below pillar
        "w-1": "v1.30.0",  # garbage is ignored
    }


def test_problems_judge_each_node_by_its_wanted_version():
    snap = {
        "vip": {"readyz": {"ok": True}, "url": "https://vip:8443"},
        "etcd": [{"endpoint": f"e{i}", "is_leader": i == 0} for i in range(3)],
        "nodes": [
            {"name": n, "ready": True, "ready_reason": "KubeletReady", "kubelet_version": v}
            for n, v in (
                ("cp-1", "v1.30.0"),
                ("cp-2", "v1.31.0"),
                ("cp-3", "v1.31.0"),
                ("w-1", "v1.30.0"),
            )
        ],  # fmt: skip
        "leases": [{"name": "kube-scheduler", "holder": "cp-1_x"}],
        "upgraded": {"cp-2": "1.31.0"},
    }
    assert status.problems("lab", snap, MODEL) == [
        "Node cp-3: Ready=True (KubeletReady), kubelet v1.31.0 (want v1.30.0)"
    ]
