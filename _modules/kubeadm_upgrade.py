"""
kubeadm upgrades: plan (parsed), apply on the first control plane, node on the others.

docs/facts.md #2: ``kubeadm upgrade apply`` runs on the first upgraded control plane only; every
other node runs ``kubeadm upgrade node``. The orchestration decides which is which and
upgrades the kubeadm package first (one apt repository per minor, docs/facts.md #3).
"""

import os
import re
import shutil
from pathlib import Path

from salt.exceptions import CommandExecutionError

__virtualname__ = "kubeadm_upgrade"

MANIFESTS = Path("/etc/kubernetes/manifests")


def __virtual__():
    if shutil.which("kubeadm"):
        return __virtualname__
    return (False, "kubeadm_upgrade module: the kubeadm binary is not installed")


def _kubeadm(args: list[str], *, timeout: float) -> str:
    return __utils__["kubeadm_cli.run"](__salt__["cmd.run_all"], args, timeout=timeout)


def _upgraded_mark() -> Path:
    return Path(__salt__["kubeadm.config_dir"]()) / "upgraded-to"


def _parse_upgrade_plan(stdout: str) -> list[dict]:
    """
    ``kubeadm upgrade plan`` text: one entry per offered upgrade with the target and
    every component row (name, node, current, target). Format from kubeadm's
    upgradePlanTextPrinter (cmd/kubeadm/app/cmd/upgrade/plan.go; plan_test.go).
    """
    if "you're up-to-date" in stdout:
        return []
    # The component-config table that may follow ("API GROUP ...") is not about versions.
    marker = "The table below shows the current state of component configs"
    stdout = stdout.split(marker, maxsplit=1)[0]
    plans: list[dict] = []
    current: dict | None = None
    has_node = False
    for line in stdout.splitlines():
        if m := re.match(r"Upgrade to the latest (.+):$", line.strip()):
            current = {"description": m.group(1), "target": None, "components": []}
            plans.append(current)
            continue
        if line.startswith("Components that must be upgraded manually"):
            # kubelet rows for the offer that follows
            current = {"description": None, "target": None, "components": []}
            plans.append(current)
            continue
        if line.startswith("COMPONENT"):
            has_node = " NODE " in line
            continue
        if m := re.match(r"\s+kubeadm upgrade apply (\S+)", line):
            if current is not None:
                current["target"] = m.group(1)
            continue
        if current is None:
            # kubelet rows come before "Upgrade to the latest ..." (manual upgrades)
            plans.append({"description": None, "target": None, "components": []})
            current = plans[-1]
        cells = line.split()
        if not cells or not re.match(r"(kube|etcd|CoreDNS|kubelet)", cells[0]):
            continue
        if has_node and len(cells) == 4:
            name, node, cur, tgt = cells
        elif len(cells) == 3:
            (name, cur, tgt), node = cells, ""
        else:
            continue
        current["components"].append({"name": name, "node": node, "current": cur, "target": tgt})
    # kubelet rows printed above each plan belong to the plan that follows them
    merged: list[dict] = []
    pending: list[dict] = []
    for plan in plans:
        if plan["description"] is None:
            pending += plan["components"]
            continue
        plan["components"] = pending + plan["components"]
        pending = []
        merged.append(plan)
    return merged


def plan(version=None):
    """
    Parsed ``kubeadm upgrade plan [version]``: per offered upgrade, the target and every
    component's current and target versions (per node where kubeadm says).

    CLI Example:

    .. code-block:: bash

        salt 'cp-1' kubeadm_upgrade.plan v1.31.0
    """
    args = ["upgrade", "plan", *([str(version)] if version else [])]
    return _parse_upgrade_plan(_kubeadm(args, timeout=300))


def apply(version, config=None, etcd_upgrade=True):
    """
    ``kubeadm upgrade apply <version> --yes`` (first control plane only, docs/facts.md #2).

    CLI Example:

    .. code-block:: bash

        salt 'cp-2' kubeadm_upgrade.apply v1.31.0
    """
    args = ["upgrade", "apply", str(version), "--yes"]
    # With --config the UpgradeConfiguration says it (apply.etcdUpgrade); kubeadm refuses
    # most flags mixed with --config.
    if config:
        args += ["--config", str(config)]
    else:
        args.append(f"--etcd-upgrade={bool(etcd_upgrade)}".lower())
    out = _kubeadm(args, timeout=1800)
    _mark_upgraded(str(version))
    return {"upgraded": True, "version": str(version), "output": out[-4000:]}


def node(version=None, config=None):
    """
    ``kubeadm upgrade node`` (every node but the first control plane, docs/facts.md #2).

    CLI Example:

    .. code-block:: bash

        salt 'cp-3' kubeadm_upgrade.node
    """
    args = ["upgrade", "node", *(["--config", str(config)] if config else [])]
    out = _kubeadm(args, timeout=1800)
    _mark_upgraded(str(version) if version else __salt__["kubeadm.version"]())
    return {"upgraded": True, "version": version, "output": out[-4000:]}


def _mark_upgraded(target: str) -> None:
    mark = _upgraded_mark()
    mark.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    mark.write_text(target + "\n")


def node_version():
    """
    The Kubernetes version this node runs: the kube-apiserver static pod's image tag on a
    control plane, else the version ``upgrade_apply``/``upgrade_node`` last recorded.

    CLI Example:

    .. code-block:: bash

        salt 'cp-*' kubeadm_upgrade.node_version
    """
    manifest = MANIFESTS / "kube-apiserver.yaml"
    if manifest.is_file():
        match = re.search(r"image:\s*\S*kube-apiserver:(v[\w.+-]+)", manifest.read_text())
        if match:
            return match.group(1)
    mark = _upgraded_mark()
    if mark.is_file():
        return mark.read_text().strip()
    return None


def restore_manifests(backup_root="/etc/kubernetes/tmp"):
    """
    Put back the static pod manifests that the last ``kubeadm upgrade`` replaced, from its
    newest ``kubeadm-backup-manifests-<date>`` directory (kubeadm's own backups,
    cmd/kubeadm/app/phases/upgrade/staticpods.go), for a node rolled back after kubeadm
    itself had succeeded. Each file is replaced atomically; the kubelet restarts the pods.

    CLI Example:

    .. code-block:: bash

        salt 'cp-2' kubeadm_upgrade.restore_manifests
    """
    backups = sorted(Path(backup_root).glob("kubeadm-backup-manifests-*"))
    if not backups:
        raise CommandExecutionError(f"no kubeadm-backup-manifests-* in {backup_root}")
    restored = []
    for source in sorted(backups[-1].glob("*.yaml")):
        target = MANIFESTS / source.name
        tmp = MANIFESTS.parent / f".{source.name}.kubeha-restore"
        tmp.write_bytes(source.read_bytes())
        tmp.chmod(0o600)
        os.replace(tmp, target)
        restored.append(source.name)
    return {"from": str(backups[-1]), "restored": restored}
