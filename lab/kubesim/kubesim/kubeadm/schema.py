"""The kubeadm configuration API's schema as kubeadm's scheme registers it: groups, kinds,
the fields each section knows (v1beta4-only ones marked), and strict decoding, which reports
unknown fields as warnings (cmd/kubeadm/app/util/config/strict/strict.go).
"""

from __future__ import annotations

from .. import klog

GROUP = "kubeadm.k8s.io"
SCHEME = "k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm/scheme/scheme.go:31"
KINDS = {
    "InitConfiguration",
    "ClusterConfiguration",
    "JoinConfiguration",
    "ResetConfiguration",
    "UpgradeConfiguration",
}
COMPONENT_KINDS = {
    ("kubelet.config.k8s.io/v1beta1", "KubeletConfiguration"),
    ("kubeproxy.config.k8s.io/v1alpha1", "KubeProxyConfiguration"),
}

_COMPONENT = {"extraArgs", "extraVolumes", "extraEnvs"}
FIELDS = {
    "ClusterConfiguration": {
        "apiVersion",
        "kind",
        "etcd",
        "networking",
        "kubernetesVersion",
        "controlPlaneEndpoint",
        "apiServer",
        "controllerManager",
        "scheduler",
        "dns",
        "certificatesDir",
        "imageRepository",
        "featureGates",
        "clusterName",
        "encryptionAlgorithm",
        "proxy",
        "certificateValidityPeriod",
        "caCertificateValidityPeriod",
    },
    "InitConfiguration": {
        "apiVersion",
        "kind",
        "bootstrapTokens",
        "nodeRegistration",
        "localAPIEndpoint",
        "certificateKey",
        "skipPhases",
        "patches",
        "dryRun",
        "timeouts",
    },
    "JoinConfiguration": {
        "apiVersion",
        "kind",
        "nodeRegistration",
        "caCertPath",
        "discovery",
        "controlPlane",
        "skipPhases",
        "patches",
        "dryRun",
        "timeouts",
    },
    "UpgradeConfiguration": {"apiVersion", "kind", "apply", "node", "plan", "diff", "timeouts"},
    "ResetConfiguration": {
        "apiVersion",
        "kind",
        "cleanupTmpDir",
        "certificatesDir",
        "criSocket",
        "dryRun",
        "force",
        "ignorePreflightErrors",
        "skipPhases",
        "unmountFlags",
        "timeouts",
    },
    "apiServer": _COMPONENT | {"certSANs", "timeoutForControlPlane"},
    "controllerManager": _COMPONENT,
    "scheduler": _COMPONENT,
    "etcd": {"local", "external"},
    "etcd.local": _COMPONENT
    | {"imageRepository", "imageTag", "dataDir", "serverCertSANs", "peerCertSANs"},
    "networking": {"serviceSubnet", "podSubnet", "dnsDomain"},
    "nodeRegistration": {
        "name",
        "criSocket",
        "taints",
        "kubeletExtraArgs",
        "ignorePreflightErrors",
        "imagePullPolicy",
        "imagePullSerial",
    },
    "localAPIEndpoint": {"advertiseAddress", "bindPort"},
}
V1BETA4_ONLY = {
    "ClusterConfiguration": {
        "encryptionAlgorithm",
        "proxy",
        "certificateValidityPeriod",
        "caCertificateValidityPeriod",
    },
    "InitConfiguration": {"dryRun", "timeouts"},
    "JoinConfiguration": {"dryRun", "timeouts"},
    "apiServer": {"extraEnvs"},
    "controllerManager": {"extraEnvs"},
    "scheduler": {"extraEnvs"},
    "etcd.local": {"extraEnvs"},
}
GO_FIELD = {
    "apiServer": "APIServer.apiServer.ControlPlaneComponent",
    "controllerManager": "ClusterConfiguration.controllerManager.ControlPlaneComponent",
    "scheduler": "ClusterConfiguration.scheduler.ControlPlaneComponent",
    "etcd.local": "LocalEtcd.etcd.local",
    "nodeRegistration": "NodeRegistrationOptions.nodeRegistration",
}


def strict(doc: dict, kind: str, api_version: str) -> None:
    def warn(name: str) -> None:
        klog.warning(
            f'error unmarshaling configuration schema.GroupVersionKind{{Group:"{GROUP}", '
            f'Version:"{api_version.split("/")[1]}", Kind:"{kind}"}}: strict decoding '
            f'error: unknown field "{name}"',
            "strict.go:54",
        )

    def check(obj: object, section: str, prefix: str) -> None:
        if not isinstance(obj, dict):
            return
        allowed = set(FIELDS.get(section, ()))
        if api_version.endswith("v1beta3"):
            allowed -= V1BETA4_ONLY.get(section, set())
        for key in obj:
            if allowed and key not in allowed:
                warn(prefix + key)

    check(doc, kind, "")
    if kind == "ClusterConfiguration":
        for section in ("apiServer", "controllerManager", "scheduler", "networking", "etcd"):
            check(doc.get(section), section, f"{section}.")
        check((doc.get("etcd") or {}).get("local"), "etcd.local", "etcd.local.")
    if kind in ("InitConfiguration", "JoinConfiguration"):
        check(doc.get("nodeRegistration"), "nodeRegistration", "nodeRegistration.")
        check(doc.get("localAPIEndpoint"), "localAPIEndpoint", "localAPIEndpoint.")
