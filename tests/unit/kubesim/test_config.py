"""kubeadm config API per version: v1beta3 maps, v1beta4 lists, v1beta4 refused before 1.31."""

from __future__ import annotations

import pytest
from kubesim.kubeadm.config import cluster_configuration_yaml, parse_documents
from kubesim.kubeadm.errors import KubeadmError
from kubesim.kubeadm.manifests import apiserver, build_args
from kubesim.versions import Version

V130, V131 = Version.parse("v1.30.0"), Version.parse("v1.31.0")

BETA3 = """apiVersion: kubeadm.k8s.io/v1beta3
kind: ClusterConfiguration
kubernetesVersion: v1.30.0
controlPlaneEndpoint: 198.18.0.10:8443
apiServer:
  extraArgs:
    audit-log-path: /var/log/kubernetes/apiserver/audit.log
    shutdown-delay-duration: 20s
---
apiVersion: kubeadm.k8s.io/v1beta3
kind: InitConfiguration
localAPIEndpoint: {advertiseAddress: 198.18.0.11, bindPort: 6443}
nodeRegistration: {name: cp-1}
"""
BETA4 = """apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
kubernetesVersion: v1.31.0
controlPlaneEndpoint: 198.18.0.10:8443
apiServer:
  extraArgs:
  - {name: shutdown-delay-duration, value: 20s}
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
localAPIEndpoint: {advertiseAddress: 198.18.0.11, bindPort: 6443}
nodeRegistration: {name: cp-1}
"""


def test_v1beta4_is_refused_by_kubeadm_130_with_the_scheme_error():
    with pytest.raises(KubeadmError) as err:
        parse_documents(BETA4, V130)
    assert (
        'no kind "ClusterConfiguration" is registered for version "kubeadm.k8s.io/v1beta4"'
        in str(err.value)
    )


def test_v1beta4_accepted_by_131_and_args_become_flags():
    cfg = parse_documents(BETA4, V131)
    pod = apiserver(cfg, V131)
    cmd = pod["spec"]["containers"][0]["command"]
    assert "--shutdown-delay-duration=20s" in cmd
    assert "--etcd-servers=https://127.0.0.1:2379" in cmd
    assert cmd[1:] == sorted(cmd[1:])


def test_v1beta3_map_extra_args_and_list_refused():
    cfg = parse_documents(BETA3, V130)
    assert ("shutdown-delay-duration", "20s") in cfg.extra_args("apiServer")
    as_list = BETA3.replace(
        """    audit-log-path: /var/log/kubernetes/apiserver/audit.log
    shutdown-delay-duration: 20s""",
        "  - {name: shutdown-delay-duration, value: 20s}",
    )
    with pytest.raises(KubeadmError) as err:
        parse_documents(as_list, V130)
    assert "cannot unmarshal array" in str(err.value) and "map[string]string" in str(err.value)


def test_v1beta4_map_extra_args_refused():
    bad = BETA4.replace(
        "  - {name: shutdown-delay-duration, value: 20s}", "    shutdown-delay-duration: 20s"
    )
    with pytest.raises(KubeadmError) as err:
        parse_documents(bad, V131)
    assert "cannot unmarshal object" in str(err.value)


def test_uploaded_cluster_configuration_uses_the_kubeadm_preferred_version():
    cfg = parse_documents(BETA3, V131)
    text = cluster_configuration_yaml(cfg, V131)
    assert "apiVersion: kubeadm.k8s.io/v1beta4" in text
    assert "- name: shutdown-delay-duration" in text


def test_build_args_overrides_and_sorts():
    assert build_args("x", {"b": "1", "a": "2"}, [("b", "3"), ("c", "4")]) == [
        "x",
        "--a=2",
        "--b=3",
        "--c=4",
    ]
