"""`kubeadm reset`: remove this node's etcd member, stop its pods, clean kubeadm's files
(cmd/kubeadm/app/cmd/reset.go and phases/reset)."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from .. import cri
from ..etcd import EtcdError, kubeadm_client
from .common import KUBE_DIR, confirm, out, stop_kubelet
from .errors import KubeadmError


def run(flags: dict) -> int:
    force = flags.get("force") in ("true", "") or flags.get("f") in ("true", "")
    out(
        "W reset: [reset] Reading configuration from the cluster..."
        if False
        else "[reset] Reading configuration from the cluster..."
    )
    out(
        "[reset] FYI: You can look at this config file with 'kubectl -n kube-system get cm "
        "kubeadm-config -o yaml'"
    )
    confirm(
        "[reset] WARNING: Changes made to this host by 'kubeadm init' or 'kubeadm join' will be "
        "reverted.\n[reset] Are you sure you want to proceed? [y/N]: ",
        force,
    )
    out("[preflight] Running pre-flight checks")
    etcd_manifest = KUBE_DIR / "manifests" / "etcd.yaml"
    data_dir = Path("/var/lib/etcd")
    if etcd_manifest.exists():
        pod = yaml.safe_load(etcd_manifest.read_text())
        cmd = pod["spec"]["containers"][0]["command"]
        peer = next(
            (a.split("=", 1)[1] for a in cmd if a.startswith("--initial-advertise-peer-urls=")), ""
        )
        data_dir = Path(
            next((a.split("=", 1)[1] for a in cmd if a.startswith("--data-dir=")), str(data_dir))
        )
        client_url = peer.replace(":2380", ":2379")
        try:
            etcd = kubeadm_client(str(KUBE_DIR / "pki"), [client_url], timeout=5)
            members = etcd.member_list()
            mine = next((m for m in members if peer in m.peer_urls), None)
            if mine is not None and len(members) > 1:
                etcd.member_remove(mine.id)
                out("[reset] Removing member from the etcd cluster")
        except (EtcdError, OSError) as err:
            out(
                f"[reset] Failed to remove etcd member: {err}. Please manually remove this etcd "
                "member using etcdctl"
            )
    out("[reset] Stopping the kubelet service")
    stop_kubelet()
    out('[reset] Unmounting mounted directories in "/var/lib/kubelet"')
    # Static pod manifests go first so that a kubelet that is still running (no systemd to
    # stop it) does not bring the pods back while they are removed.
    manifests_dir = KUBE_DIR / "manifests"
    if manifests_dir.is_dir():
        for child in manifests_dir.iterdir():
            child.unlink(missing_ok=True)
    records = cri.Records()
    for c in records.containers():
        started = records.recover(c, grace_s=0)  # a start a dead kubelet left half-recorded
        if started is not None:
            cri.stop_container(records, started, 0)
        records.remove_container(c.id)
    for s in records.sandboxes():
        records.remove_sandbox(s.id)
    out(
        f"[reset] Deleting contents of directories: [{KUBE_DIR}/manifests /var/lib/kubelet {KUBE_DIR}/pki]"  # noqa: E501 - upstream's text
    )
    for d in (
        KUBE_DIR / "manifests",
        Path("/var/lib/kubelet"),
        KUBE_DIR / "pki",
        data_dir,
        KUBE_DIR / "tmp",
    ):
        if d.is_dir():
            for child in d.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)
    names = [
        "admin.conf",
        "super-admin.conf",
        "kubelet.conf",
        "bootstrap-kubelet.conf",
        "controller-manager.conf",
        "scheduler.conf",
    ]
    out("[reset] Deleting files: [" + " ".join(str(KUBE_DIR / n) for n in names) + "]")
    for n in names:
        (KUBE_DIR / n).unlink(missing_ok=True)
    out("""
The reset process does not clean CNI configuration. To do so, you must remove /etc/cni/net.d

The reset process does not reset or clean up iptables rules or IPVS tables.
If you wish to reset iptables, you must do so manually by using the "iptables" command.

If your cluster was setup to utilize IPVS, run ipvsadm --clear (or similar)
to reset your system's IPVS tables.

The reset process does not clean your kubeconfig files and you must remove them manually.
Please, check the contents of the $HOME/.kube/config file.""")
    return 0


__all__ = ["run", "KubeadmError"]
