"""Static pod upgrade, one component at a time (phases/upgrade/staticpods.go).

The new manifest is written to /etc/kubernetes/tmp/kubeadm-upgraded-manifests*, the old one
backed up to /etc/kubernetes/tmp/kubeadm-backup-manifests-<date>, etcd's data dir to
kubeadm-backup-etcd-<date>; kubeadm waits for the mirror pod's config hash to change and
rolls the manifest back if it does not within 5 minutes. Certificates are renewed unless
certificateRenewal is false.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
import time
from pathlib import Path

import yaml

from ..etcd import EtcdError, kubeadm_client
from ..kubeclient import Client
from ..versions import Version, etcd_tag
from . import certs, manifests
from .common import KUBE_DIR, out, static_pod_hash, wait_pod_running, wait_static_pod_hash
from .config import Config
from .errors import KubeadmError

TMP = KUBE_DIR / "tmp"


def _stamp() -> str:
    return dt.datetime.now().strftime("%Y-%m-%d-%H-%M-%S")


def upgrade_static_pods(
    cfg: Config, target: Version, client: Client, renew: bool, etcd_upgrade: bool = True
) -> None:
    node = cfg.node_name
    TMP.mkdir(parents=True, exist_ok=True)
    new_dir = Path(tempfile.mkdtemp(prefix="kubeadm-upgraded-manifests", dir=TMP))
    backup = TMP / f"kubeadm-backup-manifests-{_stamp()}"
    backup.mkdir(parents=True, exist_ok=True)
    out(f'[upgrade/staticpods] Writing new Static Pod manifests to "{new_dir}"')
    out('[upgrade/staticpods] Preparing for "etcd" upgrade')
    etcd_path = manifests.MANIFESTS / "etcd.yaml"
    if not etcd_upgrade:
        out("[upgrade/etcd] Skipping etcd upgrade (etcdUpgrade is false)")
    elif etcd_path.exists():
        old_pod = yaml.safe_load(etcd_path.read_text())
        cmd = old_pod["spec"]["containers"][0]["command"]
        initial = next((a.split("=", 1)[1] for a in cmd if a.startswith("--initial-cluster=")), "")
        members = [tuple(x.split("=", 1)) for x in initial.split(",") if "=" in x]
        existing = any(a == "--initial-cluster-state=existing" for a in cmd)
        new_pod = manifests.etcd(cfg, target, members or None, existing)
        old_image = old_pod["spec"]["containers"][0]["image"]
        if (
            new_pod["spec"]["containers"][0]["image"] == old_image
            and manifests.render(new_pod) == manifests.render(old_pod)
            and not renew
        ):
            out(
                "[upgrade/etcd] Non fatal issue encountered during upgrade: the desired etcd version "  # noqa: E501 - upstream's text
                f'"{etcd_tag(target)}" is not newer than the currently installed "{old_image.rpartition(":")[2]}". Skipping etcd upgrade'  # noqa: E501 - upstream's text
            )
        else:
            data_dir = Path(
                ((cfg.cluster.get("etcd") or {}).get("local") or {}).get("dataDir", "/var/lib/etcd")
            )
            etcd_backup = TMP / f"kubeadm-backup-etcd-{_stamp()}" / "etcd"
            if data_dir.exists():
                shutil.copytree(data_dir, etcd_backup, dirs_exist_ok=True)
            if renew:
                for leaf in certs.LEAVES:
                    if leaf.name.startswith("etcd-"):
                        out(f"[upgrade/staticpods] Renewing {leaf.name} certificate")
                        certs.renew_leaf(cfg, leaf)
            replace_and_wait(cfg, client, "etcd", new_pod, new_dir, backup, node)
            out("[upgrade/etcd] Waiting for etcd to become available")
            wait_etcd(cfg)
    pods = manifests.control_plane(cfg, target)
    for comp, pod in pods.items():
        out(f'[upgrade/staticpods] Preparing for "{comp}" upgrade')
        if renew:
            for name in {
                "kube-apiserver": [
                    "apiserver",
                    "apiserver-kubelet-client",
                    "front-proxy-client",
                    "apiserver-etcd-client",
                ],
                "kube-controller-manager": ["controller-manager.conf"],
                "kube-scheduler": ["scheduler.conf"],
            }[comp]:
                out(f"[upgrade/staticpods] Renewing {name} certificate")
                if name.endswith(".conf"):
                    certs.renew_kubeconfig(KUBE_DIR / name, cfg.pki_dir)
                else:
                    certs.renew_leaf(cfg, next(x for x in certs.LEAVES if x.name == name))
        replace_and_wait(cfg, client, comp, pod, new_dir, backup, node)
    if renew:
        for name in ("admin.conf", "super-admin.conf"):
            certs.renew_kubeconfig(KUBE_DIR / name, cfg.pki_dir)


def replace_and_wait(  # noqa: PLR0917 - mirrors the upstream call's parameters
    cfg: Config, client: Client, comp: str, pod: dict, new_dir: Path, backup: Path, node: str
) -> None:
    current = manifests.MANIFESTS / f"{comp}.yaml"
    manifests.write(new_dir, comp, pod)
    old_hash = static_pod_hash(client, comp, node)
    if current.exists() and current.read_text() == (new_dir / f"{comp}.yaml").read_text():
        out(f"[upgrade/staticpods] Current and new manifests of {comp} are equal, skipping upgrade")
        return
    out(
        f'[upgrade/staticpods] Moved new manifest to "{current}" and backed up old manifest to '
        f'"{backup / (comp + ".yaml")}"'
    )
    if current.exists():
        shutil.copy2(current, backup / f"{comp}.yaml")
    shutil.copy2(new_dir / f"{comp}.yaml", current)
    out("[upgrade/staticpods] Waiting for the kubelet to restart the component")
    out("[upgrade/staticpods] This can take up to 5m0s")
    try:
        wait_static_pod_hash(client, comp, node, old_hash)
        wait_pod_running(client, f"component={comp}", node)
    except KubeadmError as err:
        if (backup / f"{comp}.yaml").exists():
            shutil.copy2(backup / f"{comp}.yaml", current)
        raise KubeadmError(
            f"[upgrade/apply] FATAL: couldn't upgrade control plane. kubeadm has "
            f"tried to recover everything into the earlier state. Errors faced: "
            f"{err.message}"
        ) from err
    out(f'[upgrade/staticpods] Component "{comp}" upgraded successfully!')


def wait_etcd(cfg: Config, timeout: float = 120) -> None:

    client = kubeadm_client(str(cfg.pki_dir), [f"https://{cfg.advertise_address}:2379"], timeout=5)
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.get("/registry/health")
            return
        except EtcdError as err:
            if time.monotonic() > deadline:
                raise KubeadmError(f"[upgrade/etcd] Failed to upgrade etcd: {err}") from err
            time.sleep(1)
