"""`kubeadm upgrade`'s static pod swap against a fake cluster, as upstream 1.28-1.31 does it
(cmd/kubeadm/app/phases/upgrade/staticpods.go, util/apiclient/wait.go,
phases/upgrade/postupgrade.go).

The fake plays the kubelet and the API: each mirror pod's config hash follows the manifest
on disk, and a component can be made to keep its old hash (its new pod never comes) or to
stay Pending (its image cannot be pulled). Manifests live in a temporary directory.
"""

from __future__ import annotations

import hashlib

import pytest
from kubesim.kubeadm import manifests, upgrade, upgrade_etcd, upgrade_staticpods
from kubesim.kubeadm.config import parse_documents
from kubesim.kubeadm.errors import KubeadmError
from kubesim.kubeclient import ApiError
from kubesim.versions import Version

NODE = "cp-1"
CONFIG = """apiVersion: kubeadm.k8s.io/v1beta3
kind: InitConfiguration
localAPIEndpoint: {advertiseAddress: 198.18.0.11, bindPort: 6443}
nodeRegistration: {name: cp-1}
---
apiVersion: kubeadm.k8s.io/v1beta3
kind: ClusterConfiguration
kubernetesVersion: v1.30.0
networking: {podSubnet: 10.244.0.0/16}
"""
RESTARTED = ["kube-apiserver", "kube-controller-manager", "kube-scheduler"]


class FakeCluster:
    def __init__(self, directory) -> None:
        self.dir = directory
        self.frozen: set[str] = set()  # the kubelet never starts the new pod
        self.pending: set[str] = set()  # the new pod stays Pending (ErrImagePull)
        self.broken = False  # every GET fails
        self.seen: dict[str, str] = {}

    def _hash(self, component: str) -> str:
        if component in self.frozen and component in self.seen:
            return self.seen[component]
        text = (self.dir / f"{component}.yaml").read_text()
        self.seen[component] = hashlib.md5(text.encode()).hexdigest()  # noqa: S324
        return self.seen[component]

    def get(self, resource, name, namespace=None, **kw):
        if self.broken:
            raise ApiError(503, {"message": "the server is currently unable to handle the request"})
        component = name.removesuffix(f"-{NODE}")
        return {"metadata": {"annotations": {"kubernetes.io/config.hash": self._hash(component)}}}

    def list(self, resource, namespace=None, label_selector=None, **kw):
        component = label_selector.split("=", 1)[1]
        running = "Pending" if component in self.pending else "Running"
        return {
            "items": [
                {
                    "metadata": {"name": f"{component}-{NODE}"},
                    "spec": {"nodeName": NODE},
                    "status": {"phase": running},
                }
            ]
        }

    def close(self) -> None:
        pass


@pytest.fixture
def cluster(tmp_path, monkeypatch):
    real = tmp_path / "manifests"
    monkeypatch.setattr(manifests, "MANIFESTS", real)
    monkeypatch.setattr(upgrade_staticpods, "TMP", tmp_path / "tmp")
    cfg = parse_documents(CONFIG, Version.parse("v1.30.0"))
    for name, pod in manifests.control_plane(cfg, Version.parse("v1.30.0")).items():
        manifests.write(real, name, pod)
    fake = FakeCluster(real)
    fake.cfg = cfg
    fake.old = {c: (real / f"{c}.yaml").read_text() for c in RESTARTED}
    fake.renewed = []
    monkeypatch.setattr(upgrade_staticpods, "renew_certs", lambda cfg, c: fake.renewed.append(c))
    return fake


def _upgrade(cluster, target="v1.31.0", renew=False):
    upgrade_staticpods.upgrade_static_pods(
        cluster.cfg, Version.parse(target), cluster, renew, etcd_upgrade=False, timeout=1.0
    )


def _current(cluster) -> dict[str, str]:
    return {c: (cluster.dir / f"{c}.yaml").read_text() for c in RESTARTED}


def test_an_apiserver_that_never_starts_is_rolled_back(cluster, capsys):
    """The new kube-apiserver stays Pending: WaitForPodsWithLabel times out and
    rollbackOldManifests puts the old manifest back; nothing after it was touched."""
    cluster.pending.add("kube-apiserver")
    with pytest.raises(KubeadmError) as err:
        _upgrade(cluster)
    assert err.value.message == (
        "couldn't upgrade control plane. kubeadm has tried to recover everything into the "
        "earlier state. Errors faced: timed out waiting for the condition"
    )
    assert _current(cluster) == cluster.old
    assert "[apiclient] Found 1 Pods for label selector component=kube-apiserver" in (
        capsys.readouterr().out
    )


def test_a_later_failure_rolls_back_every_manifest_replaced_so_far(cluster):
    """The scheduler's new pod never comes (its hash does not change): the apiserver and
    controller-manager manifests, already replaced and running, are rolled back too."""
    cluster.frozen.add("kube-scheduler")
    with pytest.raises(KubeadmError) as err:
        _upgrade(cluster)
    assert "static Pod hash for component kube-scheduler on Node cp-1 did not change" in (
        err.value.message
    )
    assert _current(cluster) == cluster.old  # all three back, not only the scheduler


def test_a_crash_looping_apiserver_does_not_stop_the_upgrade(cluster):
    """upstream's ambiguity, followed as written: WaitForPodsWithLabel wants phase Running
    only, and the kubelet reports a crash-looping static pod (restartPolicy Always) as
    Running once its mirror pod has the new hash; kubeadm carries on."""
    _upgrade(cluster)  # every new pod "Running", none Ready
    assert all("v1.31.0" in text for text in _current(cluster).values())


def test_no_hash_no_upgrade(cluster):
    """WaitForStaticPodControlPlaneHashes before any change: an API error is retried until
    the timeout and then stops the upgrade; no old hash is taken for granted."""
    cluster.broken = True
    with pytest.raises(KubeadmError) as err:
        _upgrade(cluster)
    assert "failed to obtain static Pod hash for component kube-apiserver on Node cp-1" in (
        err.value.message
    )
    assert _current(cluster) == cluster.old


def test_certificates_are_renewed_only_for_changed_manifests(cluster, monkeypatch):
    """upgradeComponent renews a component's certificates after the equality check; from
    1.31 an unchanged etcd has its certificates renewed when the apiserver changes
    (kubernetes PR 124688)."""
    monkeypatch.setattr(upgrade_staticpods.certs, "renew_kubeconfig", lambda *a: True)
    _upgrade(cluster, "v1.30.0", renew=True)
    assert cluster.renewed == []  # same version, same manifests: nothing renewed
    monkeypatch.setattr(upgrade_etcd, "perform_etcd_upgrade", lambda *a: (False, None, True))
    (cluster.dir / "etcd.yaml").write_text("unchanged")
    upgrade_staticpods.upgrade_static_pods(
        cluster.cfg, Version.parse("v1.31.0"), cluster, True, etcd_upgrade=True, timeout=1.0
    )
    assert cluster.renewed == ["etcd", *RESTARTED]


def test_addons_wait_for_every_apiserver_at_the_new_version():
    """postupgrade.go unupgradedControlPlaneInstances: addons are left alone while another
    control plane's kube-apiserver runs a different image."""

    class Pods:
        def __init__(self, images):
            self.images = images

        def list(self, *a, **kw):
            return {
                "items": [
                    {"spec": {"nodeName": n, "containers": [{"image": i}]}}
                    for n, i in self.images.items()
                ]
            }

    new, old = "registry.k8s.io/kube-apiserver:v1.31.0", "registry.k8s.io/kube-apiserver:v1.30.0"
    pods = Pods({"cp-1": new, "cp-2": old, "cp-3": old})
    assert upgrade.unupgraded_control_planes(pods, "cp-1") == ["cp-2", "cp-3"]
    assert upgrade.unupgraded_control_planes(Pods(dict.fromkeys(pods.images, new)), "cp-3") == []
