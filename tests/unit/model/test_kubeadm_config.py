"""
The kubeadm config kubeha renders matches its API version's shape.

There is no kubeadm binary to run `kubeadm config validate` here, so the shapes below are
transcribed from the upstream API reference (kubernetes/website
content/en/docs/reference/config-api/kubeadm-config.v1beta3.md and .v1beta4.md, generated
from cmd/kubeadm/app/apis/kubeadm/v1beta{3,4}/types.go): the fields each type accepts,
and the one type difference that breaks configs in the field: extraArgs is a map in v1beta3
and a list of {name, value} in v1beta4. Unknown fields are errors in kubeadm's strict
decoding, and so they are here.
"""

from __future__ import annotations

import pytest
import yaml

from tests.unit.model.conftest import _merge

COMPONENT = {
    "extraArgs": "args",
    "extraVolumes": [{"name", "hostPath", "mountPath", "readOnly", "pathType"}],
}
SHAPES = {
    "v1beta3": {
        "InitConfiguration": {
            "apiVersion": str,
            "kind": str,
            "bootstrapTokens": list,
            "certificateKey": str,
            "skipPhases": list,
            "patches": {"directory": str},
            "localAPIEndpoint": {"advertiseAddress": str, "bindPort": int},
            "nodeRegistration": {
                "name": str,
                "criSocket": str,
                "taints": list,
                "kubeletExtraArgs": "args",
                "ignorePreflightErrors": list,
                "imagePullPolicy": str,
            },
        },
        "ClusterConfiguration": {
            "apiVersion": str,
            "kind": str,
            "etcd": {
                "local": {
                    "imageRepository": str,
                    "imageTag": str,
                    "dataDir": str,
                    "extraArgs": "args",
                    "serverCertSANs": list,
                    "peerCertSANs": list,
                },
                "external": dict,
            },
            "networking": {"serviceSubnet": str, "podSubnet": str, "dnsDomain": str},
            "kubernetesVersion": str,
            "controlPlaneEndpoint": str,
            "apiServer": {**COMPONENT, "certSANs": list, "timeoutForControlPlane": str},
            "controllerManager": COMPONENT,
            "scheduler": COMPONENT,
            "dns": dict,
            "certificatesDir": str,
            "imageRepository": str,
            "featureGates": dict,
            "clusterName": str,
        },
    },
}
SHAPES["v1beta3"]["JoinConfiguration"] = {
    "apiVersion": str,
    "kind": str,
    "caCertPath": str,
    "discovery": dict,
    "skipPhases": list,
    "patches": {"directory": str},
    "nodeRegistration": SHAPES["v1beta3"]["InitConfiguration"]["nodeRegistration"],
    "controlPlane": {
        "localAPIEndpoint": {"advertiseAddress": str, "bindPort": int},
        "certificateKey": str,
    },
}
# v1beta4: extraEnvs on every component, timeouts/dryRun on Init, imagePullSerial,
# encryptionAlgorithm/proxy/validity periods on Cluster, timeoutForControlPlane gone.
_v4_component = {**COMPONENT, "extraEnvs": list}
SHAPES["v1beta4"] = {
    "InitConfiguration": {
        **SHAPES["v1beta3"]["InitConfiguration"],
        "dryRun": bool,
        "timeouts": dict,
        "nodeRegistration": {
            **SHAPES["v1beta3"]["InitConfiguration"]["nodeRegistration"],
            "imagePullSerial": bool,
        },
    },
    "ClusterConfiguration": {
        **{k: v for k, v in SHAPES["v1beta3"]["ClusterConfiguration"].items()},
        "etcd": {
            "local": {
                **SHAPES["v1beta3"]["ClusterConfiguration"]["etcd"]["local"],
                "extraEnvs": list,
            },
            "external": dict,
        },
        "apiServer": {**_v4_component, "certSANs": list},
        "controllerManager": _v4_component,
        "scheduler": _v4_component,
        "encryptionAlgorithm": str,
        "proxy": dict,
        "certificateValidityPeriod": str,
        "caCertificateValidityPeriod": str,
    },
    "JoinConfiguration": {
        **SHAPES["v1beta3"]["JoinConfiguration"],
        "dryRun": bool,
        "timeouts": dict,
        "nodeRegistration": {
            **SHAPES["v1beta3"]["InitConfiguration"]["nodeRegistration"],
            "imagePullSerial": bool,
        },
    },
    "UpgradeConfiguration": {
        "apiVersion": str,
        "kind": str,
        "apply": dict,
        "node": dict,
        "diff": dict,
        "plan": dict,
        "timeouts": dict,
    },
}


def shape_errors(value, shape, api: str, where: str) -> list[str]:
    if shape == "args":
        if api == "v1beta3":
            ok = isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
            return [] if ok else [f"{where}: v1beta3 extraArgs must map flag -> string"]
        ok = isinstance(value, list) and all(
            isinstance(i, dict) and set(i) == {"name", "value"} and isinstance(i["value"], str)
            for i in value
        )
        return [] if ok else [f"{where}: v1beta4 extraArgs must be [{{name, value}}]"]
    if isinstance(shape, type):
        return [] if isinstance(value, shape) else [f"{where}: expected {shape.__name__}"]
    if isinstance(shape, list):
        if not isinstance(value, list):
            return [f"{where}: expected a list"]
        return [
            f"{where}[{i}]: unknown fields {sorted(set(item) - shape[0])}"
            for i, item in enumerate(value)
            if set(item) - shape[0]
        ]
    if not isinstance(value, dict):
        return [f"{where}: expected a mapping"]
    errors = [f"{where}.{key}: unknown field" for key in value if key not in shape]
    for key, sub in value.items():
        if key in shape:
            errors += shape_errors(sub, shape[key], api, f"{where}.{key}")
    return errors


def documents(salt_funcs, model, node="cp-1"):
    derived = salt_funcs["kubeha_model.derive"](model, node)
    kubeha = {**model, "derived": derived}
    text = salt_funcs["kubeha_kubeadm_config.render"](kubeha)
    return list(yaml.safe_load_all(text)), kubeha


def check_shapes(docs, api):
    errors = []
    for doc in docs:
        if doc["apiVersion"].startswith("kubeadm.k8s.io/"):
            assert doc["apiVersion"] == f"kubeadm.k8s.io/{api}"
            errors += shape_errors(doc, SHAPES[api][doc["kind"]], api, doc["kind"])
    return errors


def test_shape_checker_catches_the_runbook_mistake():
    """The checker itself fails the runbook's v1beta4 document with map extraArgs."""
    doc = {
        "apiVersion": "kubeadm.k8s.io/v1beta4",
        "kind": "ClusterConfiguration",
        "apiServer": {"extraArgs": {"audit-log-maxage": "7"}},
    }
    assert check_shapes([doc], "v1beta4") == [
        "ClusterConfiguration.apiServer.extraArgs: v1beta4 extraArgs must be [{name, value}]"
    ]
    v3 = {"apiVersion": "kubeadm.k8s.io/v1beta3", "kind": "InitConfiguration", "timeouts": {}}
    assert check_shapes([v3], "v1beta3") == ["InitConfiguration.timeouts: unknown field"]


@pytest.mark.parametrize(("version", "api"), [("1.30.0", "v1beta3"), ("1.31.0", "v1beta4")])
def test_kubeadm_config_matches_its_api(salt_funcs, example, version, api):
    model = _merge(example, {"kubernetes": {"version": version}, "upgrade": {"target_version": ""}})
    docs, _ = documents(salt_funcs, model)
    assert [d["kind"] for d in docs] == [
        "InitConfiguration",
        "ClusterConfiguration",
        "KubeletConfiguration",
    ]
    assert check_shapes(docs, api) == []
    init, cluster, kubelet = docs
    assert cluster["kubernetesVersion"] == f"v{version}"
    # HAProxy's port on the VIP, never the apiserver's own (docs/facts.md #6).
    assert cluster["controlPlaneEndpoint"] == "192.168.1.10:8443"
    assert "192.168.1.10" in cluster["apiServer"]["certSANs"]
    assert init["localAPIEndpoint"] == {"advertiseAddress": "192.168.1.11", "bindPort": 6443}
    assert kubelet["cgroupDriver"] == "systemd"


def _args(component, api):
    raw = component["extraArgs"]
    return raw if api == "v1beta3" else {a["name"]: a["value"] for a in raw}


@pytest.mark.parametrize(("version", "api"), [("1.30.0", "v1beta3"), ("1.31.0", "v1beta4")])
def test_flags_for_audit_shutdown_and_leader_election(salt_funcs, example, version, api):
    model = _merge(example, {"kubernetes": {"version": version}, "upgrade": {"target_version": ""}})
    docs, _ = documents(salt_funcs, model)
    cluster = docs[1]
    apiserver = _args(cluster["apiServer"], api)
    assert apiserver["audit-policy-file"] == "/etc/kubernetes/audit/policy.yaml"
    assert apiserver["audit-log-path"] == "/var/log/kubernetes/apiserver/audit.log"
    assert (
        apiserver["audit-log-maxage"],
        apiserver["audit-log-maxbackup"],
        apiserver["audit-log-maxsize"],
    ) == ("7", "10", "100")
    assert apiserver["shutdown-delay-duration"] == "5s"
    # The policy and the log directory are mounted into the pod, or audit does nothing
    # (docs/facts.md #5).
    mounts = {v["name"]: v for v in cluster["apiServer"]["extraVolumes"]}
    assert mounts["audit-policy"]["hostPath"] == apiserver["audit-policy-file"]
    assert mounts["audit-policy"]["readOnly"] is True
    assert mounts["audit-log"]["mountPath"] == "/var/log/kubernetes/apiserver"
    for component in ("controllerManager", "scheduler"):
        flags = _args(cluster[component], api)
        assert (
            flags["leader-elect-lease-duration"],
            flags["leader-elect-renew-deadline"],
            flags["leader-elect-retry-period"],
        ) == ("5s", "3s", "1s")


def test_oidc_and_extra_args_render_in_either_api(salt_funcs, example):
    oidc = {"issuer_url": "https://idp.example.com", "client_id": "kubernetes"}
    model = _merge(
        example,
        {
            "kubernetes": {"version": "1.31.0"},
            "upgrade": {"target_version": ""},
            "apiserver": {"oidc": oidc, "extra_args": {"profiling": "false"}},
        },
    )
    docs, _ = documents(salt_funcs, model)
    flags = _args(docs[1]["apiServer"], "v1beta4")
    assert flags["oidc-issuer-url"] == "https://idp.example.com"
    assert flags["oidc-client-id"] == "kubernetes"
    assert flags["profiling"] == "false"


def test_raw_fragment_is_merged_in_the_right_api(salt_funcs, example):
    model = _merge(
        example,
        {
            "kubeadm": {
                "cluster_configuration": {
                    "apiServer": {"extraArgs": {"profiling": "false"}},
                    "imageRepository": "mirror.local",
                }
            }
        },
    )
    docs, _ = documents(salt_funcs, model)
    assert check_shapes(docs, "v1beta3") == []
    assert docs[1]["imageRepository"] == "mirror.local"
    assert docs[1]["apiServer"]["extraArgs"]["profiling"] == "false"
    # kubeha's own flags survive the merge of the fragment's map.
    assert docs[1]["apiServer"]["extraArgs"]["shutdown-delay-duration"] == "5s"


def test_apiserver_bound_to_node_ip_gets_a_kubeadm_patch(salt_funcs, example):
    model = _merge(
        example, {"vip": {"lb_port": 6443, "lb_bind": "vip"}, "apiserver": {"bind_address": "node"}}
    )
    docs, kubeha = documents(salt_funcs, model, "cp-2")
    assert kubeha["derived"]["apiserver_bind_address"] == "192.168.1.12"
    assert kubeha["derived"]["lb_bind_address"] == "192.168.1.10"
    assert docs[0]["patches"] == {"directory": "/etc/kubernetes/kubeadm/patches"}
    assert docs[1]["controlPlaneEndpoint"] == "192.168.1.10:6443"


def test_upgrade_configuration_for_1_31(salt_funcs, example):
    derived = salt_funcs["kubeha_model.derive"](example, "cp-2")
    text = salt_funcs["kubeha_kubeadm_config.render_upgrade"]({**example, "derived": derived})
    docs = list(yaml.safe_load_all(text))
    assert check_shapes(docs, "v1beta4") == []
    assert docs[0]["apply"]["kubernetesVersion"] == "v1.31.0"
    assert docs[0]["apply"]["certificateRenewal"] is True
    assert docs[0]["node"]["etcdUpgrade"] is True


@pytest.mark.parametrize(("version", "api"), [("1.30.0", "v1beta3"), ("1.31.0", "v1beta4")])
def test_join_configuration_per_role(salt_funcs, example, version, api):
    model = _merge(
        example,
        {
            "kubernetes": {"version": version},
            "upgrade": {"target_version": ""},
            "workers": [{"name": "w-1", "ip": "192.168.1.21"}],
        },
    )
    docs = {}
    for node in ("cp-2", "w-1"):
        derived = salt_funcs["kubeha_model.derive"](model, node)
        text = salt_funcs["kubeha_kubeadm_config.render_join"]({**model, "derived": derived})
        docs[node] = list(yaml.safe_load_all(text))
        assert check_shapes(docs[node], api) == []
    (cp,), (worker,) = docs["cp-2"], docs["w-1"]
    # No secrets in the rendered file: kubeadm_join adds them to a 0600 copy at join time.
    assert "discovery" not in cp and "certificateKey" not in str(cp)
    assert cp["controlPlane"]["localAPIEndpoint"] == {
        "advertiseAddress": "192.168.1.12",
        "bindPort": 6443,
    }
    assert cp["nodeRegistration"]["name"] == "cp-2"
    assert "controlPlane" not in worker
    assert worker["nodeRegistration"]["name"] == "w-1"


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("local", None),  # kubeadm's own https://127.0.0.1:2379
        ("local-first", "https://127.0.0.1:2382"),
        ("all", "https://192.168.1.11:2379,https://192.168.1.12:2379,https://192.168.1.13:2379"),
    ],
)
def test_etcd_servers_of_the_apiservers(salt_funcs, example, mode, expected):
    model = _merge(
        example,
        {"kubernetes": {"version": "1.31.0"}, "upgrade": {"target_version": ""},
         "apiserver": {"etcd_servers": mode}},
    )  # fmt: skip
    docs, _ = documents(salt_funcs, model)
    flags = _args(docs[1]["apiServer"], "v1beta4")
    assert flags.get("etcd-servers") == expected
