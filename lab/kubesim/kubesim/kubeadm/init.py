"""`kubeadm init`: the phases of cmd/kubeadm/app/cmd/init.go, in order, with their output."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import yaml

from .. import klog
from ..kubeclient import Client
from ..versions import Version, own_version
from . import certs, cluster, copycerts, files, manifests, preflight
from .common import (
    KUBE_DIR,
    admin_client,
    ca_hash,
    go_seconds,
    join_command,
    out,
    restart_kubelet,
    wait_kubelet,
)
from .config import Config, load, normalise, parse_documents
from .errors import KubeadmError

DONE = """
Your Kubernetes control-plane has initialized successfully!

To start using your cluster, you need to run the following as a regular user:

  mkdir -p $HOME/.kube
  sudo cp -i {admin} $HOME/.kube/config
  sudo chown $(id -u):$(id -g) $HOME/.kube/config

Alternatively, if you are the root user, you can run:

  export KUBECONFIG={admin}

You should now deploy a pod network to the cluster.
Run "kubectl apply -f [podnetwork].yaml" with one of the options listed at:
  https://kubernetes.io/docs/concepts/cluster-administration/addons/
"""
CP_WITH_KEY = """
You can now join any number of control-plane nodes running the following command on each as root:

  {cmd}

Please note that the certificate-key gives access to cluster sensitive data, keep it secret!
As a safeguard, uploaded-certs will be deleted in two hours; If necessary, you can use
"kubeadm init phase upload-certs --upload-certs" to reload certs afterward.
"""
CP_COPY = """
You can now join any number of control-plane nodes by copying certificate authorities
and service account keys on each node and then running the following as root:

  {cmd}
"""
WORKERS = """
Then you can join any number of worker nodes by running the following on each as root:

{cmd}"""


def check_version(cfg: Config, kubeadm: Version) -> None:
    target = cfg.kubernetes_version
    minimum = Version(kubeadm.major, kubeadm.minor - 1, 0)
    if target < minimum:
        raise KubeadmError(
            f"this version of kubeadm only supports deploying clusters with the "
            f"control plane version >= {minimum.bare}. Current version: {target}"
        )
    if (target.major, target.minor) > (kubeadm.major, kubeadm.minor):
        klog.warning(
            f"[init] WARNING: the Kubernetes version {target} is newer than the kubeadm "
            f"version {kubeadm}. This is not a supported version skew",
            "init.go:1",
        )


def config_from_flags(flags: dict) -> Config:
    doc = {"apiVersion": "kubeadm.k8s.io/v1beta3", "kind": "ClusterConfiguration"}
    if flags.get("control-plane-endpoint"):
        doc["controlPlaneEndpoint"] = flags["control-plane-endpoint"]
    if flags.get("kubernetes-version"):
        doc["kubernetesVersion"] = flags["kubernetes-version"]
    if flags.get("pod-network-cidr"):
        doc["networking"] = {"podSubnet": flags["pod-network-cidr"]}
    init = {"apiVersion": "kubeadm.k8s.io/v1beta3", "kind": "InitConfiguration"}
    if flags.get("apiserver-advertise-address"):
        init["localAPIEndpoint"] = {"advertiseAddress": flags["apiserver-advertise-address"]}
    if flags.get("node-name"):
        init["nodeRegistration"] = {"name": flags["node-name"]}
    return parse_documents(yaml.safe_dump_all([init, doc]))


MIXABLE = {
    "config",
    "upload-certs",
    "certificate-key",
    "ignore-preflight-errors",
    "skip-token-print",
    "skip-certificate-key-print",
    "skip-phases",
    "v",
    "dry-run",
    "rootfs",
    "patches",
}


def run(flags: dict) -> int:
    version = own_version()
    if flags.get("config"):
        mixed = sorted(set(flags) - MIXABLE)
        if mixed:
            raise KubeadmError(f"can not mix '--config' with arguments {mixed}")
        cfg = load(flags["config"], version)
    else:
        cfg = config_from_flags(flags)
    if not cfg.init:
        cfg.init = {"nodeRegistration": {}}

        normalise(cfg, version)
    check_version(cfg, version)
    target = cfg.kubernetes_version
    out(f"[init] Using Kubernetes version: {target}")
    reg = cfg.node_registration
    ignored = preflight.ignored_set(
        flags.get("ignore-preflight-errors"), reg.get("ignorePreflightErrors")
    )
    out("[preflight] Running pre-flight checks")
    data_dir = Path(
        ((cfg.cluster.get("etcd") or {}).get("local") or {}).get("dataDir", "/var/lib/etcd")
    )
    preflight.run(
        preflight.node_checks(reg["criSocket"])
        + preflight.control_plane_checks(target, reg["criSocket"], data_dir, cfg.bind_port),
        ignored,
        out,
    )
    out("[preflight] Pulling images required for setting up a Kubernetes cluster")
    out(
        "[preflight] This might take a minute or two, depending on the speed of your internet connection"  # noqa: E501 - upstream's text
    )
    out(
        "[preflight] You can also perform this action beforehand using 'kubeadm config images pull'"
    )
    pki_dir = cfg.pki_dir
    out(f'[certs] Using certificateDir folder "{pki_dir}"')
    for line in certs.create_cas(pki_dir):
        out(line)
    certs.create_leaves(cfg, out)
    out(certs.create_sa(pki_dir))
    out(f'[kubeconfig] Using kubeconfig folder "{KUBE_DIR}"')
    files.write_kubeconfigs(cfg, target, out, init=True)
    out(f'[etcd] Creating static Pod manifest for local etcd in "{manifests.MANIFESTS}"')
    manifests.write(manifests.MANIFESTS, "etcd", manifests.etcd(cfg, target))
    out(f'[control-plane] Using manifest folder "{manifests.MANIFESTS}"')
    for name, pod in manifests.control_plane(cfg, target).items():
        out(f'[control-plane] Creating static Pod manifest for "{name}"')
        manifests.write(manifests.MANIFESTS, name, pod)
    kubelet_doc = files.kubelet_configuration(cfg)
    files.write_kubelet_files(cfg, target, out, kubelet_doc)
    restart_kubelet()
    out(
        f"[wait-control-plane] Waiting for the kubelet to boot up the control plane as static Pods "
        f'from directory "{manifests.MANIFESTS}"'
    )
    wait_kubelet()
    out("[api-check] Waiting for a healthy API server. This can take up to 4m0s")
    client = admin_client(timeout=10)
    if (KUBE_DIR / "super-admin.conf").exists():
        client = Client.from_kubeconfig(KUBE_DIR / "super-admin.conf", timeout=10)

    cluster.wait_api(
        client, 240, lambda s: out(f"[api-check] The API server is healthy after {go_seconds(s)}")
    )
    cluster.upload_config(client, cfg, version, out)
    cluster.upload_kubelet_config(client, yaml.safe_dump(kubelet_doc, sort_keys=True), out)
    certificate_key = flags.get("certificate-key") or (cfg.init.get("certificateKey") or "")
    upload = flags.get("upload-certs") in ("true", "")
    if upload:
        certificate_key = certificate_key or secrets.token_hex(32)
        copycerts.upload_certs(
            client,
            cfg,
            certificate_key,
            lambda line: out(
                line
                if line.startswith("[") or flags.get("skip-certificate-key-print") is None
                else ""
            ),
        )
    else:
        out("[upload-certs] Skipping phase. Please see --upload-certs")
    cluster.mark_control_plane(client, cfg, out)
    tokens = []
    for bt in cfg.init.get("bootstrapTokens") or []:
        token = bt.get("token") or flags.get("token") or cluster.new_token()
        ttl = cluster.parse_ttl(bt.get("ttl", flags.get("token-ttl", "24h0m0s")))
        cluster.create_token(
            client,
            token,
            ttl,
            bt.get("usages") or ["signing", "authentication"],
            bt.get("groups") or [cluster.DEFAULT_GROUP],
            bt.get("description", ""),
        )
        tokens.append(token)
        out(f"[bootstrap-token] Using token: {token}")
    cluster.rbac(client, out)
    cluster.cluster_info(client, cfg, out)
    out(
        f'[kubelet-finalize] Updating "{KUBE_DIR}/kubelet.conf" to point to a rotatable kubelet '
        "client certificate and key"
    )
    files.finalize_kubelet_conf(KUBE_DIR / "kubelet.conf")
    cluster.addons(client, cfg, target, out)
    admin = str(KUBE_DIR / "admin.conf")
    text = DONE.format(admin=admin)
    token = tokens[0] if tokens else "<value withheld>"
    if flags.get("skip-token-print") is not None:
        token = "<value withheld>"
    endpoint = cfg.control_plane_endpoint
    digest = ca_hash(pki_dir)
    if cfg.cluster.get("controlPlaneEndpoint"):
        if upload:
            key = (
                certificate_key
                if flags.get("skip-certificate-key-print") is None
                else "<value withheld>"
            )
            text += CP_WITH_KEY.format(cmd=join_command(endpoint, token, digest, True, key))
        else:
            text += CP_COPY.format(cmd=join_command(endpoint, token, digest, True))
    text += WORKERS.format(cmd=join_command(endpoint, token, digest))
    out(text)
    os.sync()
    return 0
