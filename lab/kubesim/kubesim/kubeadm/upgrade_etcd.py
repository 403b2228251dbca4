"""The etcd step of `kubeadm upgrade` (phases/upgrade/staticpods.go
performEtcdStaticPodUpgrade; util/etcd/etcd.go getClusterStatus, WaitForClusterAvailable;
1.28-1.31):

1. every member of the cluster (the client URLs the etcd mirror pods advertise) must
   answer a status call, each retried with etcdBackoff (11 steps from 50 ms, x2), else
   "etcd cluster is not healthy" and the upgrade stops before touching anything;
2. the data directory is copied to /etc/kubernetes/tmp/kubeadm-backup-etcd-<date>/etcd;
3. the etcd version the target Kubernetes wants is compared with the tag of the running
   manifest's image: older than what runs means "Skipping etcd upgrade" (non-fatal);
4. the manifest is swapped like any component's (upgrade_staticpods.upgrade_component);
   if that fails, kubeadm waits for the old etcd (WaitForClusterAvailable: 10 tries,
   15 s apart) and restores the data directory from the backup if it does not come back;
   after a successful swap it waits for the cluster the same way and, failing that,
   restores data and manifest.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import yaml

from ..etcd import EtcdError, kubeadm_client
from ..kubeclient import Client
from ..versions import Version, etcd_tag
from . import manifests
from .common import out
from .config import Config
from .errors import KubeadmError
from .join import etcd_endpoints
from .upgrade_staticpods import Paths, rollback, upgrade_component
from .upgrade_wait import Waiter

BACKOFF_STEPS, BACKOFF_FIRST, BACKOFF_FACTOR = 11, 0.05, 2.0  # etcd.go etcdBackoff
RETRIES, RETRY_INTERVAL = 10, 15.0


def cluster_status(cfg: Config, endpoints: list[str]) -> None:
    """getClusterStatus: a status answer from every endpoint, each with etcdBackoff."""
    for ep in endpoints:
        delay, last = BACKOFF_FIRST, None
        for _ in range(BACKOFF_STEPS):
            try:
                kubeadm_client(str(cfg.pki_dir), [ep], timeout=2).status()
                last = None
                break
            except (EtcdError, OSError) as err:
                last = err
            time.sleep(delay)
            delay *= BACKOFF_FACTOR
        if last is not None:
            raise KubeadmError(str(last))


def wait_available(cfg: Config, endpoints: list[str]) -> bool:
    for attempt in range(RETRIES):
        if attempt:
            time.sleep(RETRY_INTERVAL)
        try:
            cluster_status(cfg, endpoints)
            return True
        except KubeadmError:
            continue
    return False


def _semver(tag: str) -> tuple[int, ...]:
    return tuple(int(x) for x in tag.split("-", maxsplit=1)[0].lstrip("v").split("."))


def perform_etcd_upgrade(  # noqa: PLR0917 - mirrors the upstream call's parameters
    cfg: Config,
    target: Version,
    client: Client,
    renew: bool,
    waiter: Waiter,
    paths: Paths,
    recover: dict[str, Path],
) -> tuple[bool, KubeadmError | None, bool]:
    """(fatal, error, etcd manifest unchanged)."""
    try:
        endpoints = etcd_endpoints(client)
        cluster_status(cfg, endpoints)
    except KubeadmError as err:
        return True, KubeadmError(f"etcd cluster is not healthy: {err.message}"), False
    local = (cfg.cluster.get("etcd") or {}).get("local") or {}
    data_dir = Path(local.get("dataDir", "/var/lib/etcd"))
    try:
        shutil.copytree(data_dir, paths.backup_etcd / "etcd", dirs_exist_ok=True)
    except OSError as err:
        return True, KubeadmError(f"failed to back up etcd data: {err}"), False
    current_pod = yaml.safe_load(paths.of(paths.real, "etcd").read_text())
    current = current_pod["spec"]["containers"][0]["image"].rpartition(":")[2]
    desired = etcd_tag(target)
    if _semver(desired) < _semver(current):
        return (
            False,
            KubeadmError(
                f'the desired etcd version "{desired}" is older than the currently installed '
                f'"{current}". Skipping etcd upgrade'
            ),
            False,
        )
    try:
        before = waiter.single_hash(cfg.node_name, "etcd")
    except KubeadmError as err:
        return True, KubeadmError(f"failed to get etcd pod's hash: {err.message}"), False
    cmd = current_pod["spec"]["containers"][0]["command"]
    initial = next((a.split("=", 1)[1] for a in cmd if a.startswith("--initial-cluster=")), "")
    members = [tuple(x.split("=", 1)) for x in initial.split(",") if "=" in x]
    existing = "--initial-cluster-state=existing" in cmd
    manifests.write(paths.temp, "etcd", manifests.etcd(cfg, target, members or None, existing))
    try:
        changed = upgrade_component(cfg, "etcd", renew, waiter, paths, before, recover)
    except KubeadmError as err:
        out(f"[upgrade/etcd] Failed to upgrade etcd: {err.message}")
        out("[upgrade/etcd] Waiting for previous etcd to become available")
        if not wait_available(cfg, endpoints):
            out("[upgrade/etcd] Rolling back etcd data")
            shutil.copytree(paths.backup_etcd / "etcd", data_dir, dirs_exist_ok=True)
            out("[upgrade/etcd] Etcd data rollback successful")
        out("[upgrade/etcd] Etcd was rolled back and is now available")
        return (
            True,
            KubeadmError(
                "fatal error when trying to upgrade the etcd cluster, rolled the state back to "
                f"pre-upgrade state: {err.message}"
            ),
            False,
        )
    out("[upgrade/etcd] Waiting for etcd to become available")
    if not wait_available(cfg, endpoints):
        out("[upgrade/etcd] Rolling back etcd data")
        shutil.copytree(paths.backup_etcd / "etcd", data_dir, dirs_exist_ok=True)
        out("[upgrade/etcd] Rolling back etcd manifest")
        rollback(recover, KubeadmError("etcd did not come back"), paths, True)
        return (
            True,
            KubeadmError(
                "fatal error upgrading local etcd cluster, rolled the state back to "
                "pre-upgrade state: timeout waiting for etcd cluster to be available"
            ),
            False,
        )
    return False, None, not changed
