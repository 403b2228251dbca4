"""The node files kubeadm writes besides PKI and manifests: kubeconfigs and kubelet config.

phases/kubeconfig/kubeconfig.go: admin.conf (O=kubeadm:cluster-admins from v1.29,
system:masters before), super-admin.conf (v1.29+, system:masters; init only),
controller-manager.conf and scheduler.conf pointing at the local apiserver, kubelet.conf.
phases/kubelet: /var/lib/kubelet/config.yaml and /var/lib/kubelet/kubeadm-flags.env.
"""

from __future__ import annotations

import datetime as dt
import socket
from pathlib import Path

import yaml

from .. import kubeconfig, pki
from ..versions import Version, pause_tag
from .config import Config

KUBE_DIR = Path("/etc/kubernetes")
KUBELET_DIR = Path("/var/lib/kubelet")


def _client(cfg: Config, cn: str, orgs: list[str]) -> tuple[bytes, bytes, bytes]:
    ca_cert, ca_key = pki.load_pair(cfg.pki_dir, "ca")
    cert, key = pki.sign_leaf(pki.CertSpec(cn, "", "ca", cn, orgs, client=True), ca_cert, ca_key)
    return pki.cert_pem(ca_cert), pki.cert_pem(cert), pki.key_pem(key)


def write_kubeconfigs(
    cfg: Config, version: Version, out, init: bool = True, kube_dir: Path = KUBE_DIR
) -> None:
    cluster = cfg.cluster.get("clusterName", "kubernetes")
    endpoint = f"https://{cfg.control_plane_endpoint}"
    local = f"https://{cfg.advertise_address}:{cfg.bind_port}"
    admin_orgs = ["kubeadm:cluster-admins"] if version.minor >= 29 else ["system:masters"]
    wanted = [("admin.conf", "kubernetes-admin", admin_orgs, endpoint)]
    if init and version.minor >= 29:
        wanted.append(("super-admin.conf", "kubernetes-super-admin", ["system:masters"], endpoint))
    if init:
        wanted.append(("kubelet.conf", f"system:node:{cfg.node_name}", ["system:nodes"], endpoint))
    wanted += [
        ("controller-manager.conf", "system:kube-controller-manager", [], local),
        ("scheduler.conf", "system:kube-scheduler", [], local),
    ]
    for name, cn, orgs, server in wanted:
        path = kube_dir / name
        if path.exists():
            out(f'[kubeconfig] Using existing kubeconfig file: "{path}"')
            continue
        ca, cert, key = _client(cfg, cn, orgs)
        user = (
            "kubernetes-admin"
            if name == "admin.conf"
            else ("kubernetes-super-admin" if name == "super-admin.conf" else cn)
        )
        kubeconfig.write(path, kubeconfig.render(cluster, server, ca, user, cert, key))
        out(f'[kubeconfig] Writing "{name}" kubeconfig file')


def finalize_kubelet_conf(path: Path, kubelet_dir: Path = KUBELET_DIR) -> None:
    """phases/kubelet-finalize: kubelet.conf points at the rotatable kubelet-client-current.pem."""
    cfg = kubeconfig.KubeConfig.load(path)
    if not cfg.cert_pem or not cfg.key_pem:
        return
    pem_dir = kubelet_dir / "pki"
    stamp = dt.datetime.now().strftime("%Y-%m-%d-%H-%M-%S")
    pem = pem_dir / f"kubelet-client-{stamp}.pem"
    pki.write_private(pem, cfg.cert_pem + cfg.key_pem)
    current = pem_dir / "kubelet-client-current.pem"
    current.unlink(missing_ok=True)
    current.symlink_to(pem)
    kubeconfig.write(
        path,
        kubeconfig.render(cfg.cluster, cfg.server, cfg.ca_pem, cfg.user, cert_file=str(current)),
    )


def kubelet_configuration(cfg: Config) -> dict:
    """KubeletConfiguration as kubeadm defaults it (componentconfigs/kubelet.go)."""
    doc = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"cacheTTL": "0s", "enabled": True},
            "x509": {"clientCAFile": f"{cfg.pki_dir}/ca.crt"},
        },
        "authorization": {
            "mode": "Webhook",
            "webhook": {"cacheAuthorizedTTL": "0s", "cacheUnauthorizedTTL": "0s"},
        },
        "cgroupDriver": "systemd",
        "clusterDNS": ["10.96.0.10"],
        "clusterDomain": cfg.cluster["networking"]["dnsDomain"],
        "containerRuntimeEndpoint": "",
        "cpuManagerReconcilePeriod": "0s",
        "evictionPressureTransitionPeriod": "0s",
        "fileCheckFrequency": "0s",
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "httpCheckFrequency": "0s",
        "imageMaximumGCAge": "0s",
        "imageMinimumGCAge": "0s",
        "logging": {
            "flushFrequency": 0,
            "options": {"json": {"infoBufferSize": "0"}},
            "verbosity": 0,
        },
        "memorySwap": {},
        "nodeStatusReportFrequency": "0s",
        "nodeStatusUpdateFrequency": "0s",
        "rotateCertificates": True,
        "runtimeRequestTimeout": "0s",
        "shutdownGracePeriod": "0s",
        "shutdownGracePeriodCriticalPods": "0s",
        "staticPodPath": "/etc/kubernetes/manifests",
        "streamingConnectionIdleTimeout": "0s",
        "syncFrequency": "0s",
        "volumeStatsAggPeriod": "0s",
    }
    for k, v in (cfg.kubelet or {}).items():
        if k not in ("apiVersion", "kind"):
            doc[k] = v
    return doc


def write_kubelet_files(
    cfg: Config,
    version: Version,
    out,
    kubelet_config: dict | None = None,
    kubelet_dir: Path = KUBELET_DIR,
) -> None:
    kubelet_dir.mkdir(parents=True, exist_ok=True)
    reg = cfg.node_registration
    flags = [
        f"--container-runtime-endpoint={reg.get('criSocket', 'unix:///var/run/containerd/containerd.sock')}",
        f"--pod-infra-container-image={cfg.cluster.get('imageRepository', 'registry.k8s.io')}/pause:{pause_tag(version)}",  # noqa: E501 - upstream's text
    ]
    # kubeadm passes --hostname-override only when the node name differs from the
    # hostname (phases/kubelet/flags.go buildKubeletArgs)
    if cfg.node_name != socket.gethostname().lower():
        flags.append(f"--hostname-override={cfg.node_name}")
    for k, v in reg.get("kubeletExtraArgs") or []:
        flags.append(f"--{k}={v}")
    (kubelet_dir / "kubeadm-flags.env").write_text(f'KUBELET_KUBEADM_ARGS="{" ".join(flags)}"\n')
    out(
        f'[kubelet-start] Writing kubelet environment file with flags to file "{kubelet_dir}/kubeadm-flags.env"'  # noqa: E501 - upstream's text
    )
    doc = kubelet_config or kubelet_configuration(cfg)
    (kubelet_dir / "config.yaml").write_text(
        yaml.safe_dump(doc, default_flow_style=False, sort_keys=True)
    )
    out(f'[kubelet-start] Writing kubelet configuration to file "{kubelet_dir}/config.yaml"')
