"""
`make chaos`'s lab driver (lab/chaos.py) and its static-pod flag edits (lab/manifests.py,
also used by the OIDC lab test) between the timer profiles and the runbook's etcd mode,
without a lab (a fake node's manifests dir).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from lab import chaos, manifests

MANIFEST = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "kube-controller-manager", "namespace": "kube-system"},
    "spec": {"containers": [{"name": "kube-controller-manager", "command": [
        "kube-controller-manager", "--leader-elect-lease-duration=3s",
        "--leader-elect-renew-deadline=2500ms", "--leader-elect-retry-period=500ms",
        "--leader-elect=true"]}]},
}  # fmt: skip


class FakeLab:
    """One node's filesystem under a temporary directory; `sh` runs the script there."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "etc/kubernetes/manifests").mkdir(parents=True)

    def _path(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    def exec(self, node: str, *argv: str, check: bool = True):
        assert argv[0] == "cat"
        text = self._path(argv[1]).read_text()
        return subprocess.CompletedProcess(list(argv), 0, text, "")

    def sh(self, node: str, script: str, input: str = "", **kwargs):  # noqa: A002 - Lab.sh's name
        script = script.replace("/etc/", f"{self.root}/etc/")
        return subprocess.run(["sh", "-c", script], input=input, text=True, check=True)  # noqa: S603 S607


def _write(lab: FakeLab, doc: dict) -> Path:
    path = lab._path(f"{manifests.MANIFESTS}/kube-controller-manager.yaml")
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_durations_render_as_the_formula_renders_them():
    assert [chaos._seconds(v) for v in (15, 2.5, 0.5, "10")] == ["15s", "2500ms", "500ms", "10s"]


def test_a_new_timer_profile_replaces_the_flags_and_keeps_the_others(tmp_path):
    lab = FakeLab(tmp_path)
    path = _write(lab, MANIFEST)
    flags = {"leader-elect-lease-duration": "15s", "leader-elect-renew-deadline": "10s",
             "leader-elect-retry-period": "2s"}  # fmt: skip
    assert chaos.set_flags(lab, "cp-1", "kube-controller-manager", flags) is True
    command = yaml.safe_load(path.read_text())["spec"]["containers"][0]["command"]
    assert command[0] == "kube-controller-manager"
    assert sorted(command[1:]) == command[1:]
    assert {c for c in command if c.startswith("--leader-elect")} == {
        "--leader-elect-lease-duration=15s", "--leader-elect-renew-deadline=10s",
        "--leader-elect-retry-period=2s", "--leader-elect=true"}  # fmt: skip
    # No temporary file left in the manifests dir: the kubelet would run it as a pod.
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_the_same_flags_again_change_nothing(tmp_path):
    lab = FakeLab(tmp_path)
    path = _write(lab, MANIFEST)
    flags = {"leader-elect-lease-duration": "3s", "leader-elect-renew-deadline": "2500ms",
             "leader-elect-retry-period": "500ms"}  # fmt: skip
    before = path.stat().st_mtime_ns
    assert chaos.set_flags(lab, "cp-1", "kube-controller-manager", flags) is False
    assert path.stat().st_mtime_ns == before


def test_the_model_profile_is_the_formulas_defaults_with_the_lab_pillar():
    le = {**chaos.DEFAULTS["leader_election"], **chaos.LAB_PILLAR.get("leader_election", {})}
    assert chaos._model_leader() == (le["lease_duration"], le["renew_deadline"],
                                     le["retry_period"])  # fmt: skip
    # make chaos measures kubeadm's profile, the runbook's 5/3/1 and the default.
    assert (15, 10, 2) in chaos.LEADER_PROFILES and (5, 3, 1) in chaos.LEADER_PROFILES
    assert chaos._model_leader() in chaos.LEADER_PROFILES


def test_dropped_flags_go_and_set_ones_stay(tmp_path):
    lab = FakeLab(tmp_path)
    path = _write(lab, MANIFEST)
    drop = ("leader-elect-retry-period", "absent-flag")
    assert manifests.set_flags(lab, "cp-1", "kube-controller-manager", {"v": "2"}, drop=drop)
    command = yaml.safe_load(path.read_text())["spec"]["containers"][0]["command"]
    assert "--v=2" in command
    assert not [c for c in command if c.startswith("--leader-elect-retry-period=")]
    assert manifests.set_flags(lab, "cp-1", "kube-controller-manager", {},
                               drop=("leader-elect-retry-period",)) is False  # fmt: skip
