"""kubeha_upgrade_node.worker: a worker's pass in order (issue 13 item 5), and its rollback
when `kubeadm upgrade node` fails. The minions and kubeha_node are stand-ins recording each
call; the runner's own code (steps, timeline, rollback) runs as is."""

import pytest

from tests.unit.modules.khm_load import load

runner = load("_runners", "kubeha_upgrade_node")

MODEL = {
    "control_plane": [{"name": "cp-1"}, {"name": "cp-2"}, {"name": "cp-3"}],
    "workers": [{"name": "w-1"}],
    "derived": {"init_node": "cp-1"},
    "kubernetes": {"version": "1.30.0", "package_revision": "1.1"},
    "upgrade": {"target_version": "1.31.0"},
}
FATAL = "[upgrade] FATAL: couldn't upgrade the kubelet config"
OK_STATE = {"pkg_|-kubeadm_|-kubeadm_|-installed": {"__id__": "kubeadm", "result": True}}


class Rig:
    def __init__(self, kubeadm_fails: bool) -> None:
        self.kubeadm_fails = kubeadm_fails
        self.minion_calls: list[tuple] = []
        self.node_calls: list[tuple] = []
        self.records: list[dict] = []

    def ask(self, _opts, node, fun, *args, timeout=30, **kwargs):
        self.minion_calls.append((node, fun, args, kwargs))
        if fun == "grains.get":
            return {node: (True, "1.30.0")}
        if fun == "state.single" and self.kubeadm_fails:
            failed = {"__id__": "upgrade", "result": False, "comment": FATAL}
            return {node: (False, {"kubeadm_|-upgrade": failed})}
        if fun.startswith("state."):
            return {node: (True, OK_STATE)}
        return {node: (True, True)}

    def node_step(self, name):
        def step(*args, **kwargs):
            self.node_calls.append((name, args, kwargs))
            return True

        return step


@pytest.fixture
def rig(monkeypatch):
    def make(kubeadm_fails=False):
        r = Rig(kubeadm_fails)
        salt = {
            "kubeha.model": lambda cluster: MODEL,
            "kubeha_upgrade_run.record": r.records.append,
            **{f"kubeha_node.{n}": r.node_step(n) for n in ("drain", "uncordon", "ready_at")},
        }
        utils = {"kubeha_minions.ask": r.ask}
        monkeypatch.setattr(runner, "__salt__", salt, raising=False)
        monkeypatch.setattr(runner, "__utils__", utils, raising=False)
        monkeypatch.setattr(runner, "__opts__", {}, raising=False)
        return r

    return make


def _steps(ret):
    return [(s["step"], s["ok"]) for s in ret["steps"]]


def test_a_worker_pass_in_order(rig):
    r = rig()
    ret = runner.worker("lab", "w-1", "1.31.0")
    assert ret["result"] is True, ret
    assert _steps(ret) == [
        ("cordon-drain", True), ("kubeadm-package", True), ("kubeadm-upgrade", True),
        ("kubelet-kubectl", True), ("node-ready", True), ("uncordon", True),
    ]  # fmt: skip
    # Drained and uncordoned through the init node's kubectl; kubeadm pinned to the target.
    assert [c[0] for c in r.node_calls] == ["drain", "ready_at", "uncordon"]
    assert all(c[2] == {"via": "cp-1"} for c in r.node_calls)
    pinned = [c[3]["pillar"] for c in r.minion_calls if c[1] == "state.sls" and c[3]]
    assert pinned == [{"kubeha": {"packages": {"versions": {"kubeadm": "1.31.0-1.1"}}}}]
    upgrade = next(c for c in r.minion_calls if c[1] == "state.single")
    assert upgrade[2] == ("kubeadm.upgraded", "v1.31.0") and "first" not in upgrade[3]
    assert ("w-1", "grains.setval", ("kubeha_kubernetes_version", "1.31.0"), {}) in r.minion_calls
    assert r.records and r.records[-1]["ok"] is True


def test_a_failed_kubeadm_upgrade_node_is_rolled_back_and_named(rig):
    r = rig(kubeadm_fails=True)
    ret = runner.worker("lab", "w-1", "1.31.0")
    assert ret["result"] is False
    assert ret["rolled_back_to"] == "v1.30.0"
    assert "couldn't upgrade the kubelet config" in ret["comment"]
    assert "rolled back to v1.30.0" in ret["comment"]
    steps = _steps(ret)
    assert ("kubeadm-upgrade", False) in steps
    assert [s for s, _ in steps][-2:] == ["rollback-packages", "rollback-node-ready"]
    # The version grain never moved; packages re-applied from pillar (the old version),
    # kubelet restarted, Node Ready at the old version, uncordoned.
    assert not [c for c in r.minion_calls if c[1] == "grains.setval"]
    assert ("w-1", "state.sls", ("kubeha.packages",), {}) in r.minion_calls
    assert ("w-1", "service.restart", ("kubelet",), {}) in r.minion_calls
    assert ("ready_at", ("lab", "w-1", "v1.30.0"), {"via": "cp-1"}) in r.node_calls
    assert r.node_calls[-1][0] == "uncordon"


def test_a_worker_already_at_the_target_is_skipped(rig):
    r = rig()
    ret = runner.worker("lab", "w-1", "1.30.0")
    assert ret["result"] is True and "already runs v1.30.0" in ret["comment"]
    assert r.node_calls == [] and not [c for c in r.minion_calls if c[1] != "grains.get"]


def test_an_unexpected_error_still_rolls_the_node_back(rig):
    r = rig()

    def broken(*args, **kwargs):
        raise RuntimeError("LazyLoader does not have a packed value for: __utils__")

    runner.__salt__["kubeha_node.drain"] = broken
    ret = runner.worker("lab", "w-1", "1.31.0")
    assert ret["result"] is False and ret["rolled_back_to"] == "v1.30.0", ret
    assert "packed value" in ret["comment"]
    assert ("uncordon", ("lab", "w-1"), {"via": "cp-1"}) in r.node_calls
