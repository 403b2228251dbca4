"""Static pod upgrade, one component at a time (cmd/kubeadm/app/phases/upgrade/staticpods.go
StaticPodControlPlane, upgradeComponent, rollbackOldManifests; 1.28-1.31).

- Before anything changes, the mirror pod hash of every control-plane component on this
  node is read (WaitForStaticPodControlPlaneHashes); failing that, the upgrade stops.
- etcd first (upgrade_etcd.py), then kube-apiserver, kube-controller-manager,
  kube-scheduler. New manifests go to /etc/kubernetes/tmp/kubeadm-upgraded-manifests*,
  replaced ones to /etc/kubernetes/tmp/kubeadm-backup-manifests-<date>.
- Per component: its backup path enters the recovery list *before* the comparison; an
  unchanged manifest is skipped (and its certificates are not renewed); a changed one gets
  its certificates renewed, is swapped in, and kubeadm waits for the mirror pod hash to
  change and for every `component=<name>` pod to be Running (upgrade_wait.py).
- A failure rolls back every manifest in the recovery list (renames the backups into
  place), etcd's only when etcd itself failed; a component skipped as unchanged has no
  backup, and its failed rename is reported with the cause.
- From 1.31 an unchanged etcd manifest still gets its certificates renewed when the
  kube-apiserver manifest changes (kubernetes PR 124688).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
from pathlib import Path

from ..kubeclient import Client
from ..versions import Version
from . import certs, manifests
from .common import KUBE_DIR, out
from .config import Config
from .errors import KubeadmError
from .upgrade_wait import Waiter, go_minutes

TMP = KUBE_DIR / "tmp"
CONTROL_PLANE = ["kube-apiserver", "kube-controller-manager", "kube-scheduler"]
CERTS = {
    "etcd": ["etcd-server", "etcd-peer", "etcd-healthcheck-client"],
    "kube-apiserver": [
        "apiserver",
        "apiserver-kubelet-client",
        "front-proxy-client",
        "apiserver-etcd-client",
    ],
    "kube-controller-manager": ["controller-manager.conf"],
    "kube-scheduler": ["scheduler.conf"],
}


def _stamp() -> str:
    return dt.datetime.now().strftime("%Y-%m-%d-%H-%M-%S")


class Paths:
    """KubeStaticPodPathManager: real, temporary and backup manifest directories."""

    def __init__(self) -> None:
        TMP.mkdir(parents=True, exist_ok=True)
        self.real = manifests.MANIFESTS
        self.temp = Path(tempfile.mkdtemp(prefix="kubeadm-upgraded-manifests", dir=TMP))
        self.backup = TMP / f"kubeadm-backup-manifests-{_stamp()}"
        self.backup.mkdir(parents=True, exist_ok=True)
        self.backup_etcd = TMP / f"kubeadm-backup-etcd-{_stamp()}"

    def of(self, where: Path, component: str) -> Path:
        return where / f"{component}.yaml"


def renew_certs(cfg: Config, component: str) -> None:
    """renewCertsByComponent: the certificates the component's pod uses."""
    for name in CERTS[component]:
        out(f"[upgrade/staticpods] Renewing {name} certificate")
        if name.endswith(".conf"):
            certs.renew_kubeconfig(KUBE_DIR / name, cfg.pki_dir)
        else:
            certs.renew_leaf(cfg, next(x for x in certs.LEAVES if x.name == name))


def rollback(recover: dict[str, Path], cause: Exception, paths: Paths, restore_etcd: bool):
    """rollbackOldManifests: rename every backup back into place; always an error."""
    errors = [str(cause.message if isinstance(cause, KubeadmError) else cause)]
    for component, backup in recover.items():
        if component == "etcd" and not restore_etcd:
            continue
        target = paths.of(paths.real, component)
        try:
            os.rename(backup, target)
        except OSError as err:
            errors.append(f"rename {backup} {target}: {err.strerror.lower()}")
    faced = errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]"
    return KubeadmError(
        "couldn't upgrade control plane. kubeadm has tried to recover everything into the "
        f"earlier state. Errors faced: {faced}"
    )


def upgrade_component(  # noqa: PLR0917 - mirrors the upstream call's parameters
    cfg: Config,
    component: str,
    renew: bool,
    waiter: Waiter,
    paths: Paths,
    before_hash: str,
    recover: dict[str, Path],
) -> bool:
    """Swap one component's manifest in and wait for it; False when it was unchanged."""
    restore_etcd = component == "etcd"
    out(f'[upgrade/staticpods] Preparing for "{component}" upgrade')
    current, new = paths.of(paths.real, component), paths.of(paths.temp, component)
    backup = paths.of(paths.backup, component)
    recover[component] = backup
    if current.exists() and current.read_text() == new.read_text():
        out(
            f"[upgrade/staticpods] Current and new manifests of {component} are equal, "
            "skipping upgrade"
        )
        return False
    try:
        if renew:
            renew_certs(cfg, component)
    except (OSError, ValueError, KubeadmError) as err:
        raise rollback(
            recover,
            KubeadmError(f'failed to renew certificates for component "{component}": {err}'),
            paths,
            restore_etcd,
        ) from err
    try:
        os.rename(current, backup)
        os.rename(new, current)
    except OSError as err:
        raise rollback(recover, err, paths, restore_etcd) from err
    out(
        f'[upgrade/staticpods] Moved new manifest to "{current}" and backed up old manifest '
        f'to "{backup}"'
    )
    out("[upgrade/staticpods] Waiting for the kubelet to restart the component")
    out(f"[upgrade/staticpods] This can take up to {go_minutes(waiter.timeout)}")
    try:
        waiter.hash_change(cfg.node_name, component, before_hash)
        waiter.pods_with_label(f"component={component}")
    except KubeadmError as err:
        raise rollback(recover, err, paths, restore_etcd) from err
    out(f'[upgrade/staticpods] Component "{component}" upgraded successfully!')
    return True


def upgrade_static_pods(  # noqa: PLR0917 - mirrors the upstream call's parameters
    cfg: Config,
    target: Version,
    client: Client,
    renew: bool,
    etcd_upgrade: bool = True,
    timeout: float = 300.0,
) -> None:
    from .upgrade_etcd import perform_etcd_upgrade  # noqa: PLC0415 - it imports this module

    waiter = Waiter(client, timeout)
    recover: dict[str, Path] = {}
    paths = Paths()
    before = waiter.control_plane_hashes(cfg.node_name, CONTROL_PLANE)
    etcd_unchanged = False
    if etcd_upgrade and (manifests.MANIFESTS / "etcd.yaml").exists():
        fatal, err, etcd_unchanged = perform_etcd_upgrade(
            cfg, target, client, renew, waiter, paths, recover
        )
        if err is not None:
            if fatal:
                raise err
            out(f"[upgrade/etcd] Non fatal issue encountered during upgrade: {err.message}")
    out(f'[upgrade/staticpods] Writing new Static Pod manifests to "{paths.temp}"')
    for component, pod in manifests.control_plane(cfg, target).items():
        manifests.write(paths.temp, component, pod)
    api_new = paths.of(paths.temp, "kube-apiserver").read_text()
    api_cur = paths.of(paths.real, "kube-apiserver")
    if (
        etcd_unchanged
        and renew
        and (target.major, target.minor) >= (1, 31)
        and (not api_cur.exists() or api_cur.read_text() != api_new)
    ):
        renew_certs(cfg, "etcd")  # PR 124688: etcd's certificates follow the apiserver's
    for component in CONTROL_PLANE:
        upgrade_component(cfg, component, renew, waiter, paths, before[component], recover)
    if renew:
        for name in ("admin.conf", "super-admin.conf"):
            certs.renew_kubeconfig(KUBE_DIR / name, cfg.pki_dir)
    shutil.rmtree(paths.temp, ignore_errors=True)  # CleanupDirs keeps the backups
