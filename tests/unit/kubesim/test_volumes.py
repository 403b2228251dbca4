"""A component sees only its pod's mounts: unmounted audit files do not exist for it."""

from __future__ import annotations

import json

from kubesim import volumes


def test_paths_outside_the_pods_mounts_are_invisible(monkeypatch):
    monkeypatch.setenv(
        "KUBESIM_POD_MOUNTS", json.dumps(["/etc/kubernetes/pki", "/etc/kubernetes/audit"])
    )
    assert volumes.visible("/etc/kubernetes/pki/ca.crt")
    assert volumes.visible("/etc/kubernetes/audit/policy.yaml")
    assert not volumes.visible("/etc/kubernetes/audit-policy.yaml")
    assert volumes.container_path("/var/log/kubernetes/audit.log", "kube-apiserver").startswith(
        "/var/lib/kubesim/container-fs/kube-apiserver/"
    )


def test_outside_the_kubelet_nothing_is_hidden(monkeypatch):
    monkeypatch.delenv("KUBESIM_POD_MOUNTS", raising=False)
    assert volumes.visible("/anything")
