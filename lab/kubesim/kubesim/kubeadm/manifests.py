"""Static pod manifests of the shape kubeadm writes (phases/controlplane/manifests.go,
phases/etcd/local.go, util/staticpod/utils.go): flags sorted by name with extraArgs
overriding the defaults, probes on /livez /readyz /healthz and etcd's metrics port.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from ..versions import Version, etcd_tag
from .config import Config

MANIFESTS = Path("/etc/kubernetes/manifests")
CA_VOLUMES = [
    ("ca-certs", "/etc/ssl/certs"),
    ("etc-ca-certificates", "/etc/ca-certificates"),
    ("usr-local-share-ca-certificates", "/usr/local/share/ca-certificates"),
    ("usr-share-ca-certificates", "/usr/share/ca-certificates"),
]


def build_args(
    binary: str, defaults: dict[str, str], overrides: list[tuple[str, str]]
) -> list[str]:
    """kubeadmutil.BuildArgumentListFromMap: overrides replace defaults, then sort by name."""
    merged: dict[str, list[str]] = {k: [v] for k, v in defaults.items()}
    seen: set[str] = set()
    for k, v in overrides:
        if k in seen:
            merged[k].append(v)
        else:
            merged[k] = [v]
            seen.add(k)
    return [binary] + [f"--{k}={v}" for k in sorted(merged) for v in merged[k]]


def probe(  # noqa: PLR0917 - mirrors the upstream call's parameters
    host: str,
    path: str,
    port: int,
    scheme: str,
    failure: int,
    initial: int | None = 10,
    period: int = 10,
) -> dict:
    out = {
        "failureThreshold": failure,
        "httpGet": {"host": host, "path": path, "port": port, "scheme": scheme},
    }
    if initial is not None:
        out["initialDelaySeconds"] = initial
    out.update(periodSeconds=period, timeoutSeconds=15)
    return out


def _volumes(items: list[tuple[str, str, str, bool]]) -> tuple[list[dict], list[dict]]:
    mounts, vols = [], []
    for name, path, vtype, ro in sorted(items):
        mount = {"mountPath": path, "name": name}
        if ro:
            mount["readOnly"] = True
        mounts.append(mount)
        vols.append({"hostPath": {"path": path, "type": vtype}, "name": name})
    return mounts, vols


def _extra_volumes(cfg: Config, component: str) -> list[tuple[str, str, str, bool]]:
    out = []
    for v in (cfg.cluster.get(component) or {}).get("extraVolumes") or []:
        out.append(
            (
                v["name"],
                v.get("mountPath", v.get("hostPath")),
                v.get("pathType", ""),
                bool(v.get("readOnly")),
            )
        )
    return out


def _pod(name: str, container: dict, volumes: list[dict], annotations: dict | None = None) -> dict:
    meta: dict = {
        "creationTimestamp": None,
        "labels": {"component": name, "tier": "control-plane"},
        "name": name,
        "namespace": "kube-system",
    }
    if annotations:
        meta = {"annotations": annotations, **meta}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {
            "containers": [container],
            "hostNetwork": True,
            "priority": 2000001000,
            "priorityClassName": "system-node-critical",
            "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
            "volumes": volumes,
        },
        "status": {},
    }


def _image(cfg: Config, component: str, version: Version) -> str:
    return f"{cfg.cluster.get('imageRepository', 'registry.k8s.io')}/{component}:{version}"


def apiserver(cfg: Config, version: Version) -> dict:
    pki_dir = str(cfg.pki_dir)
    ip, port = cfg.advertise_address, cfg.bind_port
    defaults = {
        "advertise-address": ip,
        "allow-privileged": "true",
        "authorization-mode": "Node,RBAC",
        "client-ca-file": f"{pki_dir}/ca.crt",
        "enable-admission-plugins": "NodeRestriction",
        "enable-bootstrap-token-auth": "true",
        "etcd-cafile": f"{pki_dir}/etcd/ca.crt",
        "etcd-certfile": f"{pki_dir}/apiserver-etcd-client.crt",
        "etcd-keyfile": f"{pki_dir}/apiserver-etcd-client.key",
        "etcd-servers": "https://127.0.0.1:2379",
        "kubelet-client-certificate": f"{pki_dir}/apiserver-kubelet-client.crt",
        "kubelet-client-key": f"{pki_dir}/apiserver-kubelet-client.key",
        "kubelet-preferred-address-types": "InternalIP,ExternalIP,Hostname",
        "proxy-client-cert-file": f"{pki_dir}/front-proxy-client.crt",
        "proxy-client-key-file": f"{pki_dir}/front-proxy-client.key",
        "requestheader-allowed-names": "front-proxy-client",
        "requestheader-client-ca-file": f"{pki_dir}/front-proxy-ca.crt",
        "requestheader-extra-headers-prefix": "X-Remote-Extra-",
        "requestheader-group-headers": "X-Remote-Group",
        "requestheader-username-headers": "X-Remote-User",
        "secure-port": str(port),
        "service-account-issuer": f"https://kubernetes.default.svc.{cfg.cluster['networking']['dnsDomain']}",
        "service-account-key-file": f"{pki_dir}/sa.pub",
        "service-account-signing-key-file": f"{pki_dir}/sa.key",
        "service-cluster-ip-range": cfg.cluster["networking"]["serviceSubnet"],
        "tls-cert-file": f"{pki_dir}/apiserver.crt",
        "tls-private-key-file": f"{pki_dir}/apiserver.key",
    }
    mounts, vols = _volumes(
        [(n, p, "DirectoryOrCreate", True) for n, p in CA_VOLUMES]
        + [("k8s-certs", pki_dir, "DirectoryOrCreate", True)]
        + _extra_volumes(cfg, "apiServer")
    )
    container = {
        "command": build_args("kube-apiserver", defaults, cfg.extra_args("apiServer")),
        "image": _image(cfg, "kube-apiserver", version),
        "imagePullPolicy": "IfNotPresent",
        "livenessProbe": probe(ip, "/livez", port, "HTTPS", 8),
        "name": "kube-apiserver",
        "readinessProbe": probe(ip, "/readyz", port, "HTTPS", 3, None, 1),
        "resources": {"requests": {"cpu": "250m"}},
        "startupProbe": probe(ip, "/livez", port, "HTTPS", 24),
        "volumeMounts": mounts,
    }
    return _pod(
        "kube-apiserver",
        container,
        vols,
        {"kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint": f"{ip}:{port}"},
    )


def controller_manager(cfg: Config, version: Version) -> dict:
    pki_dir = str(cfg.pki_dir)
    conf = "/etc/kubernetes/controller-manager.conf"
    defaults = {
        "authentication-kubeconfig": conf,
        "authorization-kubeconfig": conf,
        "bind-address": "127.0.0.1",
        "client-ca-file": f"{pki_dir}/ca.crt",
        "cluster-name": cfg.cluster.get("clusterName", "kubernetes"),
        "cluster-signing-cert-file": f"{pki_dir}/ca.crt",
        "cluster-signing-key-file": f"{pki_dir}/ca.key",
        "controllers": "*,bootstrapsigner,tokencleaner",
        "kubeconfig": conf,
        "leader-elect": "true",
        "requestheader-client-ca-file": f"{pki_dir}/front-proxy-ca.crt",
        "root-ca-file": f"{pki_dir}/ca.crt",
        "service-account-private-key-file": f"{pki_dir}/sa.key",
        "service-cluster-ip-range": cfg.cluster["networking"]["serviceSubnet"],
        "use-service-account-credentials": "true",
    }
    if cfg.cluster["networking"].get("podSubnet"):
        defaults["allocate-node-cidrs"] = "true"
        defaults["cluster-cidr"] = cfg.cluster["networking"]["podSubnet"]
    mounts, vols = _volumes(
        [(n, p, "DirectoryOrCreate", True) for n, p in CA_VOLUMES]
        + [
            (
                "flexvolume-dir",
                "/usr/libexec/kubernetes/kubelet-plugins/volume/exec",
                "DirectoryOrCreate",
                False,
            ),
            ("k8s-certs", pki_dir, "DirectoryOrCreate", True),
            ("kubeconfig", conf, "FileOrCreate", True),
        ]
        + _extra_volumes(cfg, "controllerManager")
    )
    container = {
        "command": build_args(
            "kube-controller-manager", defaults, cfg.extra_args("controllerManager")
        ),
        "image": _image(cfg, "kube-controller-manager", version),
        "imagePullPolicy": "IfNotPresent",
        "livenessProbe": probe("127.0.0.1", "/healthz", 10257, "HTTPS", 8),
        "name": "kube-controller-manager",
        "resources": {"requests": {"cpu": "200m"}},
        "startupProbe": probe("127.0.0.1", "/healthz", 10257, "HTTPS", 24),
        "volumeMounts": mounts,
    }
    return _pod("kube-controller-manager", container, vols)


def scheduler(cfg: Config, version: Version) -> dict:
    conf = "/etc/kubernetes/scheduler.conf"
    defaults = {
        "authentication-kubeconfig": conf,
        "authorization-kubeconfig": conf,
        "bind-address": "127.0.0.1",
        "kubeconfig": conf,
        "leader-elect": "true",
    }
    mounts, vols = _volumes(
        [("kubeconfig", conf, "FileOrCreate", True)] + _extra_volumes(cfg, "scheduler")
    )
    container = {
        "command": build_args("kube-scheduler", defaults, cfg.extra_args("scheduler")),
        "image": _image(cfg, "kube-scheduler", version),
        "imagePullPolicy": "IfNotPresent",
        "livenessProbe": probe("127.0.0.1", "/healthz", 10259, "HTTPS", 8),
        "name": "kube-scheduler",
        "resources": {"requests": {"cpu": "100m"}},
        "startupProbe": probe("127.0.0.1", "/healthz", 10259, "HTTPS", 24),
        "volumeMounts": mounts,
    }
    return _pod("kube-scheduler", container, vols)


def etcd(
    cfg: Config,
    version: Version,
    initial_cluster: list[tuple[str, str]] | None = None,
    existing: bool = False,
) -> dict:
    pki_dir = str(cfg.pki_dir)
    ip, name = cfg.advertise_address, cfg.node_name
    local = (cfg.cluster.get("etcd") or {}).get("local") or {}
    data_dir = local.get("dataDir", "/var/lib/etcd")
    members = initial_cluster or [(name, f"https://{ip}:2380")]
    defaults = {
        "advertise-client-urls": f"https://{ip}:2379",
        "cert-file": f"{pki_dir}/etcd/server.crt",
        "client-cert-auth": "true",
        "data-dir": data_dir,
        "experimental-initial-corrupt-check": "true",
        "experimental-watch-progress-notify-interval": "5s",
        "initial-advertise-peer-urls": f"https://{ip}:2380",
        "initial-cluster": ",".join(f"{n}={u}" for n, u in members),
        "key-file": f"{pki_dir}/etcd/server.key",
        "listen-client-urls": f"https://127.0.0.1:2379,https://{ip}:2379",
        "listen-metrics-urls": "http://127.0.0.1:2381",
        "listen-peer-urls": f"https://{ip}:2380",
        "name": name,
        "peer-cert-file": f"{pki_dir}/etcd/peer.crt",
        "peer-client-cert-auth": "true",
        "peer-key-file": f"{pki_dir}/etcd/peer.key",
        "peer-trusted-ca-file": f"{pki_dir}/etcd/ca.crt",
        "snapshot-count": "10000",
        "trusted-ca-file": f"{pki_dir}/etcd/ca.crt",
    }
    if existing:
        defaults["initial-cluster-state"] = "existing"
    repo = local.get("imageRepository") or cfg.cluster.get("imageRepository", "registry.k8s.io")
    tag = local.get("imageTag") or etcd_tag(version)
    mounts, vols = _volumes(
        [
            ("etcd-certs", f"{pki_dir}/etcd", "DirectoryOrCreate", False),
            ("etcd-data", data_dir, "DirectoryOrCreate", False),
        ]
    )
    for m in mounts:
        m.pop("readOnly", None)
    container = {
        "command": build_args("etcd", defaults, cfg.extra_args("etcd")),
        "image": f"{repo}/etcd:{tag}",
        "imagePullPolicy": "IfNotPresent",
        "livenessProbe": probe(
            "127.0.0.1", "/health?exclude=NOSPACE&serializable=true", 2381, "HTTP", 8
        ),
        "name": "etcd",
        "resources": {"requests": {"cpu": "100m", "memory": "100Mi"}},
        "startupProbe": probe("127.0.0.1", "/health?serializable=false", 2381, "HTTP", 24),
        "volumeMounts": mounts,
    }
    return _pod(
        "etcd",
        container,
        vols,
        {"kubeadm.kubernetes.io/etcd.advertise-client-urls": f"https://{ip}:2379"},
    )


def render(pod: dict) -> str:
    return yaml.safe_dump(pod, default_flow_style=False, sort_keys=True)


def write(directory: Path, name: str, pod: dict) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.yaml"
    tmp = directory / f".{name}.yaml.tmp"
    tmp.write_text(render(pod))
    tmp.chmod(0o600)
    os.replace(tmp, path)
    return path


def control_plane(cfg: Config, version: Version) -> dict[str, dict]:
    return {
        "kube-apiserver": apiserver(cfg, version),
        "kube-controller-manager": controller_manager(cfg, version),
        "kube-scheduler": scheduler(cfg, version),
    }
