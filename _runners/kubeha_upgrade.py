"""
The rolling upgrade of a kubeha cluster (runbook step 9), as ``orch/upgrade.sls`` runs it:
the plan, the prechecks and the backups taken off the nodes before any change. The run's
record, probe and report are ``kubeha_upgrade_run``'s.

    salt-run state.orch orch.upgrade pillar='{"cluster": "lab", "version": "1.31.0"}'
    salt-run state.orch orch.upgrade pillar='{"cluster": "lab", "dry_run": true}'

The target is ``version`` or the cluster's ``upgrade:target_version``. It is reached one
minor at a time (``_utils/kubeha_upgrade_plan``); a backwards, cross-major or unavailable
target is refused while the orchestration renders, before any change. Each node's own pass
is ``kubeha_upgrade_node``.

CLI Example:

.. code-block:: bash

    salt-run kubeha_upgrade.plan lab 1.31.0
    salt-run kubeha_upgrade.precheck lab 1.31.0
    salt-run kubeha_upgrade.backup lab
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import time
from pathlib import Path

from salt.exceptions import CommandExecutionError

log = logging.getLogger(__name__)

BACKUP_DIR = "/var/lib/kubeha/backups"


def _plan(name: str):
    return __utils__[f"kubeha_upgrade_plan.{name}"]


def _ask(nodes, fun: str, *args, timeout: float = 60, **kwargs) -> dict:
    return __utils__["kubeha_minions.ask"](__opts__, nodes, fun, *args, timeout=timeout, **kwargs)


def _one(node: str, fun: str, *args, timeout: float = 60, **kwargs):
    ok, ret = _ask(node, fun, *args, timeout=timeout, **kwargs)[node]
    if not ok:
        raise CommandExecutionError(f"{fun} on {node}: {ret}")
    return ret


def available(cluster: str, minors, node: str | None = None) -> dict:
    """
    The kubeadm versions each minor's repository offers, read from the repository's
    ``Packages`` index by ``node`` (default: the init node), as apt would see it there.

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_upgrade.available lab '[1.30, 1.31]'
    """
    model = __salt__["kubeha.model"](cluster)
    node = node or model["derived"]["init_node"]
    base = model["packages"]["repo_base"].rstrip("/")
    out = {}
    for minor in [str(m) for m in minors]:
        url = f"{base}/core:/stable:/v{minor}/deb/Packages"
        res = _one(
            node,
            "cmd.run_all",
            ["curl", "--fail", "--silent", "--show-error", "--max-time", "30", url],
            python_shell=False,
            timeout=60,
        )
        found = res.get("stdout", "") if res.get("retcode") == 0 else ""
        out[minor] = _plan("parse_packages_index")(found)
    return out


def node_versions(cluster: str) -> dict:
    """
    The version each node runs: the lower of its kubelet's (the Node object) and, on a
    control plane, its kube-apiserver's (the static pod's image). None for a node that
    does not answer or has no Node yet.

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_upgrade.node_versions lab
    """
    model = __salt__["kubeha.model"](cluster)
    cps = [n["name"] for n in model["control_plane"]]
    names = cps + [n["name"] for n in model.get("workers") or []]
    kubelets = {}
    for asked in cps:
        ok, got = _ask(asked, "apiserver.nodes", timeout=20)[asked]
        if ok:
            kubelets = {n["name"]: n["kubelet_version"] for n in got}
            break
    asked = _ask(cps, "kubeadm_upgrade.node_version", timeout=20)
    apiservers = {n: ret for n, (ok, ret) in asked.items() if ok}
    out = {}
    for name in names:
        seen = [v for v in (kubelets.get(name), apiservers.get(name)) if v]
        out[name] = min(seen, key=_plan("version")) if seen else None
    return out


def plan(cluster: str, version=None, pillar_override=None) -> dict:
    """
    The upgrade's plan: hops of one minor, control planes in ``upgrade:order`` then workers
    in batches of ``upgrade:worker_batch``, the steps of each, and which nodes a re-run
    skips. Raises (refusing the orchestration before any change) for a backwards,
    cross-major or unavailable target.

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_upgrade.plan lab 1.31.0
    """
    model = __salt__["kubeha.model"](cluster, pillar_override)
    target = str(version or model["upgrade"]["target_version"] or "")
    if not target:
        raise CommandExecutionError(
            f'orch.upgrade: no target version for {cluster}: pass pillar=\'{{"cluster": '
            f'"{cluster}", "version": "1.31.0"}}\' or set kubeha:upgrade:target_version.'
        )
    versions = node_versions(cluster)
    running = [v for v in versions.values() if v]
    if not running:
        raise CommandExecutionError(f"orch.upgrade: no node of {cluster} answers with a version")
    current = min(running, key=_plan("version"))
    try:
        cur, tgt = _plan("version")(current), _plan("version")(target)
    except ValueError as err:
        raise CommandExecutionError(f"orch.upgrade: {err}") from err
    minors = [f"{tgt[0]}.{m}" for m in range(cur[1], tgt[1] + 1)] if tgt[0] == cur[0] else []
    try:
        whole = _plan("plan")(
            cluster=cluster,
            current=current,
            target=target,
            available=available(cluster, minors) if minors else {},
            control_planes=[n["name"] for n in model["control_plane"]],
            upgrade_order=model["derived"]["upgrade_order"],
            workers=[n["name"] for n in model.get("workers") or []],
            worker_batch=int(model["upgrade"]["worker_batch"]),
            node_versions=versions,
        )
    except ValueError as err:
        raise CommandExecutionError(f"orch.upgrade refused before any change: {err}") from err
    return {**whole, "node_versions": versions}


def precheck(cluster: str, version=None) -> dict:
    """
    Before any change: the pillar is valid, the cluster passes the final gate, and every
    node's repository offers the target's kubeadm.

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_upgrade.precheck lab 1.31.0
    """

    def refuse(msg: str) -> dict:
        text = f"upgrade precheck: {msg}. Nothing was changed."
        return {"result": False, "retcode": 1, "Error": text, "comment": text}

    check = __salt__["kubeha.check"](cluster)
    if not check.get("result"):
        return refuse(check.get("comment"))
    # Healthy now: a precheck does not wait for a cluster to recover.
    gate = __salt__["kubeha_gate.final"](cluster, wait=20)
    if not gate.get("result"):
        return refuse(f"the cluster is not healthy: {gate.get('comment')}")
    try:
        whole = plan(cluster, version)
    except CommandExecutionError as err:
        return refuse(str(err))
    if not whole["hops"]:
        return {"result": True, "comment": f"{cluster} already runs {whole['to']}", **whole}
    target = whole["hops"][-1]["version"]
    minor = ".".join(target.split(".")[:2])
    nodes = [n for g in whole["hops"][-1]["groups"] for n in g["nodes"]]
    missing = [
        n
        for n in nodes
        if f"{target}-" not in " ".join(available(cluster, [minor], node=n).get(minor, []))
    ]
    if missing:
        return refuse(f"the {minor} repository of {', '.join(missing)} does not offer {target}")
    hops = " -> ".join(h["version"] for h in whole["hops"])
    return {"result": True, "comment": f"{cluster}: {whole['from']} -> {hops}", **whole}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def backup(cluster: str, node: str | None = None) -> dict:
    """
    An etcd snapshot (verified with ``etcdutl snapshot status``) and an archive of
    ``/etc/kubernetes/pki`` taken on ``node`` (default: the init node) and copied to the
    master (``cp.push``; the master needs ``file_recv: True``, docs/examples/master.d),
    where their checksums are verified. Kept in the master's cachedir, root only.

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_upgrade.backup lab
    """
    model = __salt__["kubeha.model"](cluster)
    node = node or model["derived"]["init_node"]
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    folder = f"{BACKUP_DIR}/{cluster}-{stamp}"
    snapshot, pki = f"{folder}/etcd.db", f"{folder}/pki.tar.gz"
    started = time.time()
    try:
        _one(node, "file.mkdir", folder, mode="0700")
        _one(node, "etcd_snapshot.save", snapshot, timeout=300)
        status = _one(node, "etcd_snapshot.status", snapshot, timeout=120)
        res = _one(
            node,
            "cmd.run_all",
            ["tar", "-C", "/etc/kubernetes", "-czf", pki, "pki"],
            python_shell=False,
            umask="077",
            timeout=120,
        )
        if res.get("retcode") != 0:
            raise CommandExecutionError(f"tar of /etc/kubernetes/pki on {node}: {res['stderr']}")
        copies = {}
        for path in (snapshot, pki):
            if not _one(node, "cp.push", path, timeout=600):
                raise CommandExecutionError(
                    f"cp.push {path} from {node} was refused: set file_recv: True on the master"
                )
            local = Path(__opts__["cachedir"]) / "minions" / node / "files" / path.lstrip("/")
            remote = _one(node, "file.get_hash", path, "sha256", timeout=120)
            if not local.is_file() or _sha256(local) != remote:
                raise CommandExecutionError(f"the master's copy of {path} does not match {node}'s")
            local.chmod(0o600)
            copies[path] = str(local)
    except CommandExecutionError as err:
        text = f"backup before the upgrade failed: {err}. Nothing was changed."
        return {"result": False, "retcode": 1, "Error": text, "comment": text}
    took = time.time() - started
    return {
        "result": True,
        "comment": (
            f"etcd snapshot (revision {status.get('revision')}, {status.get('total_keys')} keys) "
            f"and PKI of {node} copied to the master in {took:.1f} s"
        ),
        "etcd": status,
        "copies": copies,
    }
