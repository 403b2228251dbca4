"""kubelet vs containerd cgroup driver (FACTS 4) and a disabled CRI plugin."""

from __future__ import annotations

from kubesim.kubelet import cgroups

V2_TRUE = """version = 2
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  SystemdCgroup = true
"""
V3_TRUE = """version = 3
[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
  SystemdCgroup = true
"""


def test_default_containerd_config_mismatches_kubeadms_systemd_driver(tmp_path, monkeypatch):
    monkeypatch.setattr(cgroups, "CONTAINERD_CONFIG", tmp_path / "missing.toml")
    problem = cgroups.driver_mismatch({"cgroupDriver": "systemd"})
    assert problem and '"systemd"' in problem and '"cgroupfs"' in problem


def test_systemd_cgroup_true_in_v2_or_v3_keys_agrees(tmp_path, monkeypatch):
    for text in (V2_TRUE, V3_TRUE):
        path = tmp_path / "config.toml"
        path.write_text(text)
        monkeypatch.setattr(cgroups, "CONTAINERD_CONFIG", path)
        assert cgroups.driver_mismatch({"cgroupDriver": "systemd"}) is None
        assert not cgroups.cri_disabled()


def test_disabled_cri_plugin_is_seen(tmp_path, monkeypatch):
    path = tmp_path / "config.toml"
    path.write_text('disabled_plugins = ["cri"]\n')
    monkeypatch.setattr(cgroups, "CONTAINERD_CONFIG", path)
    assert cgroups.cri_disabled()
