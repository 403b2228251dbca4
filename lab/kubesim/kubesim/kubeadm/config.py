"""Loading, validating and defaulting the kubeadm configuration API per kubeadm version.

- kubeadm.k8s.io/v1beta4 is registered only from kubeadm v1.31 (app/apis/kubeadm/v1beta4);
  before that the scheme rejects it: `no kind "X" is registered for version ...`.
- v1beta3: extraArgs (apiServer, controllerManager, scheduler, etcd.local,
  nodeRegistration.kubeletExtraArgs) are map[string]string; v1beta4: lists of {name, value}.
  The wrong shape fails decoding with encoding/json's "cannot unmarshal" message.
- Unknown fields are reported by strict decoding as warnings (util/config/strict).
- From v1.31, v1beta3 is deprecated and kubeadm says so.
Internally extraArgs are kept as ordered [(name, value)] lists.
"""

from __future__ import annotations

import copy
import socket
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .. import klog
from ..kubelet.main import node_ip_guess
from ..versions import V1BETA4_SINCE, Version, own_version
from .errors import KubeadmError
from .schema import COMPONENT_KINDS, GO_FIELD, GROUP, KINDS, SCHEME, V1BETA4_ONLY, strict

DEFAULT_CRI = "unix:///var/run/containerd/containerd.sock"
CONTROL_PLANE_TAINT = {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}


def detect_node_ip() -> str:

    return node_ip_guess()


@dataclass
class Config:
    """The documents of one kubeadm config, defaulted; extraArgs as [(name, value)]."""

    api_version: str
    cluster: dict
    init: dict = field(default_factory=dict)
    join: dict = field(default_factory=dict)
    upgrade: dict = field(default_factory=dict)
    kubelet: dict = field(default_factory=dict)
    kubeproxy: dict = field(default_factory=dict)

    # convenience views
    @property
    def kubernetes_version(self) -> Version:
        return Version.parse(self.cluster["kubernetesVersion"])

    @property
    def node_name(self) -> str:
        reg = (self.join or self.init).get("nodeRegistration", {})
        return reg.get("name") or socket.gethostname().lower()

    @property
    def advertise_address(self) -> str:
        if self.join:
            cp = self.join.get("controlPlane") or {}
            return (cp.get("localAPIEndpoint") or {}).get("advertiseAddress") or detect_node_ip()
        return (self.init.get("localAPIEndpoint") or {}).get("advertiseAddress") or detect_node_ip()

    @property
    def bind_port(self) -> int:
        if self.join:
            cp = self.join.get("controlPlane") or {}
            return int((cp.get("localAPIEndpoint") or {}).get("bindPort") or 6443)
        return int((self.init.get("localAPIEndpoint") or {}).get("bindPort") or 6443)

    @property
    def control_plane_endpoint(self) -> str:
        return (
            self.cluster.get("controlPlaneEndpoint") or f"{self.advertise_address}:{self.bind_port}"
        )

    @property
    def pki_dir(self) -> Path:
        return Path(self.cluster.get("certificatesDir", "/etc/kubernetes/pki"))

    def extra_args(self, component: str) -> list[tuple[str, str]]:
        if component == "etcd":
            return ((self.cluster.get("etcd") or {}).get("local") or {}).get("extraArgs") or []
        return (self.cluster.get(component) or {}).get("extraArgs") or []

    @property
    def node_registration(self) -> dict:
        return (self.join or self.init).get("nodeRegistration", {})


def _args_from(value: object, where: str, api_version: str) -> list[tuple[str, str]]:
    gofield = GO_FIELD.get(where, where)
    if value is None:
        return []
    if isinstance(value, list) and all(isinstance(i, tuple) for i in value):
        return value  # already normalised
    if api_version.endswith("v1beta3"):
        if isinstance(value, list):
            raise KubeadmError(
                f"json: cannot unmarshal array into Go struct field {gofield}."
                "extraArgs of type map[string]string"
            )
        if not isinstance(value, dict):
            raise KubeadmError(
                f"json: cannot unmarshal {type(value).__name__} into Go struct field "
                f"{gofield}.extraArgs of type map[string]string"
            )
        return [(str(k), "" if v is None else str(v)) for k, v in value.items()]
    if isinstance(value, dict):
        raise KubeadmError(
            f"json: cannot unmarshal object into Go struct field {gofield}.extraArgs "
            "of type []v1beta4.Arg"
        )
    out = []
    for item in value:  # type: ignore[union-attr]
        if not isinstance(item, dict) or "name" not in item:
            raise KubeadmError(
                f"json: cannot unmarshal into Go struct field {gofield}.extraArgs of "
                "type []v1beta4.Arg"
            )
        out.append((str(item["name"]), "" if item.get("value") is None else str(item["value"])))
    return out


def args_to_api(args: list[tuple[str, str]], api_version: str) -> object:
    if api_version.endswith("v1beta3"):
        return dict(args)
    return [{"name": k, "value": v} for k, v in args]


def parse_documents(text: str, kubeadm_version: Version | None = None) -> Config:
    kubeadm_version = kubeadm_version or own_version()
    v1beta4_ok = (kubeadm_version.major, kubeadm_version.minor) >= V1BETA4_SINCE
    try:
        docs = [d for d in yaml.safe_load_all(text) if d]
    except yaml.YAMLError as err:
        raise KubeadmError(f"error converting YAML to JSON: {err}") from err
    found: dict[str, dict] = {}
    api_version = ""
    for doc in docs:
        if not isinstance(doc, dict):
            raise KubeadmError("invalid configuration: the document is not a YAML mapping")
        gv, kind = doc.get("apiVersion", ""), doc.get("kind", "")
        if not gv or not kind:
            raise KubeadmError(
                "invalid configuration for GroupVersionKind /, Kind=: kind and "
                "apiVersion is mandatory information that must be specified"
            )
        if (gv, kind) in COMPONENT_KINDS:
            found[kind] = doc
            continue
        group, _, version = gv.partition("/")
        if group != GROUP or kind not in KINDS:
            klog.warning(
                f"[config] WARNING: Ignored YAML document with GroupVersionKind {gv}, Kind={kind}",
                "common.go:185",
            )
            continue
        known = {"v1beta3"} | ({"v1beta4"} if v1beta4_ok else set())
        if (
            version not in known
            or (kind == "UpgradeConfiguration" and version != "v1beta4")
            or (kind == "ResetConfiguration" and version == "v1beta3")
        ):
            raise KubeadmError(
                f'no kind "{kind}" is registered for version "{gv}" in scheme "{SCHEME}"'
            )
        if version == "v1beta3" and v1beta4_ok:
            klog.warning(
                f'your configuration file uses a deprecated API spec: "{gv}" (kind: '
                f'"{kind}"). Please use \'kubeadm config migrate --old-config old.yaml '
                "--new-config new.yaml', which will write the new, similar spec using a "
                "newer API version.",
                "common.go:101",
            )
        strict(doc, kind, gv)
        api_version = api_version or gv
        found[kind] = copy.deepcopy(doc)
    if not any(
        k in found
        for k in (
            "InitConfiguration",
            "ClusterConfiguration",
            "JoinConfiguration",
            "UpgradeConfiguration",
        )
    ):
        raise KubeadmError(
            "no InitConfiguration, ClusterConfiguration or JoinConfiguration kind was "
            "found in the YAML file"
        )
    cfg = Config(
        api_version or f"{GROUP}/v1beta3",
        copy.deepcopy(found.get("ClusterConfiguration", {})),
        found.get("InitConfiguration", {}),
        found.get("JoinConfiguration", {}),
        found.get("UpgradeConfiguration", {}),
        found.get("KubeletConfiguration", {}),
        found.get("KubeProxyConfiguration", {}),
    )
    normalise(cfg, kubeadm_version)
    return cfg


def normalise(cfg: Config, kubeadm_version: Version) -> None:
    """Convert extraArgs to lists and apply kubeadm's defaults (v1beta3/defaults.go)."""
    gv = cfg.api_version
    c = cfg.cluster
    c.setdefault("kubernetesVersion", str(kubeadm_version))
    c["kubernetesVersion"] = (
        str(Version.parse(c["kubernetesVersion"]))
        if not str(c["kubernetesVersion"]).startswith("stable")
        else str(kubeadm_version)
    )
    c.setdefault("clusterName", "kubernetes")
    c.setdefault("certificatesDir", "/etc/kubernetes/pki")
    c.setdefault("imageRepository", "registry.k8s.io")
    net = c.setdefault("networking", {})
    net.setdefault("serviceSubnet", "10.96.0.0/12")
    net.setdefault("dnsDomain", "cluster.local")
    for comp in ("apiServer", "controllerManager", "scheduler"):
        section = c.get(comp) or {}
        if section:
            section["extraArgs"] = _args_from(section.get("extraArgs"), comp, gv)
            c[comp] = section
    etcd = c.setdefault("etcd", {})
    if "external" not in etcd:
        local = etcd.setdefault("local", {}) or {}
        etcd["local"] = local
        local.setdefault("dataDir", "/var/lib/etcd")
        local["extraArgs"] = _args_from(local.get("extraArgs"), "etcd.local", gv)
    for doc in (cfg.init, cfg.join):
        if not doc:
            continue
        reg = doc.setdefault("nodeRegistration", {})
        reg["kubeletExtraArgs"] = _args_from(reg.get("kubeletExtraArgs"), "nodeRegistration", gv)
        reg.setdefault("criSocket", DEFAULT_CRI)
        reg.setdefault("imagePullPolicy", "IfNotPresent")
    if cfg.init:
        reg = cfg.init["nodeRegistration"]
        if "taints" not in reg:
            reg["taints"] = [dict(CONTROL_PLANE_TAINT)]
        cfg.init.setdefault(
            "bootstrapTokens",
            [
                {
                    "groups": ["system:bootstrappers:kubeadm:default-node-token"],
                    "ttl": "24h0m0s",
                    "usages": ["signing", "authentication"],
                }
            ],
        )
    if cfg.join and cfg.join.get("controlPlane") is not None:
        reg = cfg.join["nodeRegistration"]
        if "taints" not in reg:
            reg["taints"] = [dict(CONTROL_PLANE_TAINT)]


def load(path: str | Path, kubeadm_version: Version | None = None) -> Config:
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise KubeadmError(
            f'unable to read config from "{path}" : open {path}: '
            f"{(err.strerror or str(err)).lower()}"
        ) from err
    return parse_documents(text, kubeadm_version)


def cluster_configuration_yaml(cfg: Config, kubeadm_version: Version) -> str:
    """ClusterConfiguration as kubeadm uploads it, in the API version this kubeadm prefers."""
    v1beta4 = (kubeadm_version.major, kubeadm_version.minor) >= V1BETA4_SINCE
    gv = f"{GROUP}/v1beta4" if v1beta4 else f"{GROUP}/v1beta3"
    doc = copy.deepcopy(cfg.cluster)
    doc["apiVersion"], doc["kind"] = gv, "ClusterConfiguration"
    for comp in ("apiServer", "controllerManager", "scheduler"):
        section = doc.setdefault(comp, {})
        if section.get("extraArgs"):
            section["extraArgs"] = args_to_api(section["extraArgs"], gv)
        else:
            section.pop("extraArgs", None)
        if v1beta4:
            section.pop("timeoutForControlPlane", None)
    local = (doc.get("etcd") or {}).get("local")
    if local is not None:
        if local.get("extraArgs"):
            local["extraArgs"] = args_to_api(local["extraArgs"], gv)
        else:
            local.pop("extraArgs", None)
    if not v1beta4:
        for key in V1BETA4_ONLY["ClusterConfiguration"]:
            doc.pop(key, None)
    doc.setdefault("dns", {})
    return yaml.safe_dump(doc, default_flow_style=False, sort_keys=True)


def from_cluster(cluster_yaml: str, kubeadm_version: Version) -> dict:
    """Read the ClusterConfiguration stored in the kubeadm-config ConfigMap (any known version)."""
    doc = yaml.safe_load(cluster_yaml) or {}
    cfg = Config(doc.get("apiVersion", f"{GROUP}/v1beta3"), doc)
    normalise(cfg, kubeadm_version)
    return cfg.cluster
