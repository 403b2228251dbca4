"""
Disaster restore of a stacked etcd (``orch/etcd_restore.sls``): the whole cluster goes back
to one named backup. Refused unless asked for explicitly (``confirm=True``) with the backup
named (``stamp``): it rewinds every object of the cluster to that point.

The upstream procedure for kubeadm's stacked members (docs/facts.md #17; etcd
op-guide/recovery, Kubernetes "Operating etcd clusters", "Restoring an etcd cluster"):

1. before any change: the named set's snapshot fetched to every control plane (sealed
   presigned URLs, SHA-256 checked) and verified there; every node can restore it (and, for
   ``bump_revision``, its etcdutl has ``--bump-revision``, from 3.5.10);
2. every kube-apiserver stopped (then kube-controller-manager and kube-scheduler): their
   static pod manifests moved aside, the containers gone;
3. every etcd stopped the same way (a stacked etcd is a static pod, docs/facts.md #7);
4. each data directory moved aside (kept: ``<data_dir>.before-restore-<stamp>``) and the
   snapshot restored into it with the member's own ``--name`` and peer URL, the same
   ``--initial-cluster`` of all members and a new ``--initial-cluster-token``, plus
   ``--bump-revision`` and ``--mark-compacted`` so that watchers re-list rather than miss
   what happened after the snapshot;
5. etcd started (manifests back) and every member healthy; then the apiservers, ready;
   then the controller-manager and scheduler, and every kubelet restarted so none keeps
   state newer than the snapshot;
6. the final gate.

A step that fails stops the run, says where, and leaves what it moved aside in place (the
message says where to find the old data directories and manifests).

CLI Example:

.. code-block:: bash

    salt-run kubeha_restore.precheck lab 20260101T120000Z
    salt-run kubeha_restore.run lab stamp=20260101T120000Z confirm=True
"""

from __future__ import annotations

import time
from pathlib import Path

from salt.exceptions import CommandExecutionError

LOCK_STALE_S = 3 * 3600
MANIFESTS = "/etc/kubernetes/manifests"
# Stopped in this order, started in the reverse (etcd first).
STOP_ORDER = (
    ("kube-apiserver", "kube-apiserver.yaml"),
    ("kube-controller-manager", "kube-controller-manager.yaml"),
    ("kube-scheduler", "kube-scheduler.yaml"),
    ("etcd", "etcd.yaml"),
)
PEER_PORT = 2380  # kubeadm's etcd peer port (--listen-peer-urls https://<ip>:2380)
DEFAULT_BUMP = 1_000_000_000  # the Kubernetes docs' example: far above any live revision


def _u(name: str):
    return __utils__[name]


def _ask(node: str, fun: str, *args, timeout: float = 60, **kwargs):
    ok, ret = _u("kubeha_minions.ask")(__opts__, node, fun, *args, timeout=timeout, **kwargs)[node]
    if not ok:
        raise CommandExecutionError(f"{fun} on {node}: {ret}")
    return ret


def _each(nodes, fun: str, *args, timeout: float = 60, **kwargs) -> dict:
    answers = _u("kubeha_minions.ask")(__opts__, nodes, fun, *args, timeout=timeout, **kwargs)
    failed = {n: ret for n, (ok, ret) in answers.items() if not ok}
    if failed:
        raise CommandExecutionError(f"{fun}: {failed}")
    return {n: ret for n, (_, ret) in answers.items()}


def _fire(data: dict, tag: str) -> None:
    __salt__["event.send"](tag, data)


def _etcdutl(model: dict) -> str | None:
    etcd_dir = model["drill"].get("etcd_dir")
    return f"{etcd_dir.rstrip('/')}/etcdutl" if etcd_dir else None


def _paths(model: dict, stamp: str) -> dict:
    data_dir = model["etcd"]["data_dir"].rstrip("/")
    return {
        "data_dir": data_dir,
        "old_data": f"{data_dir}.before-restore-{stamp}",
        "parking": f"/etc/kubernetes/kubeha-restore-{stamp}",
        "snapshot": f"{model['backup']['stage_dir'].rstrip('/')}/restore-{stamp}/etcd.db",
    }


def precheck(cluster: str, stamp: str, bump_revision=DEFAULT_BUMP, fetch=True) -> dict:
    """
    Everything the restore needs, before any change: the named set is complete, every
    control plane answers, has the snapshot (fetched and verified when ``fetch``), and can
    restore with ``bump_revision``.

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_restore.precheck lab 20260101T120000Z
    """
    model = __salt__["kubeha.model"](cluster)
    cps = [n["name"] for n in model["control_plane"]]
    chosen = __salt__["kubeha_backup.newest"](cluster, stamp)
    etcd = chosen["manifest"]["etcd"]
    paths = _paths(model, stamp)
    etcdutl = _etcdutl(model)
    verified = {}
    if fetch:
        conn, s3, _ = __salt__["kubeha_backup.storage"](cluster, model)
        for node in cps:
            pem = (Path(__opts__["pki_dir"]) / "minions" / node).read_text()
            url = _u("kubeha_s3.presign_get")(conn, s3["bucket"], chosen["keys"]["etcd.db"], 900)
            order = {"url": url, "sha256": etcd["sha256"], "size": chosen["sizes"]["etcd.db"],
                     "name": "etcd.db"}  # fmt: skip
            sealed = _u("kubeha_sealed.seal")(order, pem, node, "fetch", 900)
            # Keywords: Salt reads a positional "name=value" string (base64, an
            # --initial-cluster) as a keyword argument.
            _ask(node, "kubeha_archive.fetch", sealed=sealed, dest=paths["snapshot"],
                 timeout=1800)  # fmt: skip
            status = _ask(node, "etcd_snapshot.status", paths["snapshot"], etcdutl, timeout=600)
            if status.get("integrity") != "sha256" or status.get("hash") != etcd["hash"]:
                raise CommandExecutionError(f"the snapshot does not verify on {node}: {status}")
            verified[node] = status["revision"]
    bump = {}
    if int(bump_revision or 0) > 0:
        bump = _each(cps, "etcd_snapshot.supports_bump_revision", etcdutl)
        lacking = sorted(n for n, ok in bump.items() if not ok)
        if lacking:
            raise CommandExecutionError(
                f"etcdutl on {lacking} has no --bump-revision (etcd >= 3.5.10 has it; "
                "kubeha:drill:etcd_dir names the tools): use a newer etcdutl, or pass "
                "bump_revision=0 knowing that watchers may then miss changes (restart every "
                "client that watches)"
            )
    return {
        "result": True,
        "stamp": stamp,
        "revision": etcd["revision"],
        "total_keys": etcd["total_keys"],
        "verified_on": verified,
        "paths": paths,
        "comment": f"{cluster}: backup {stamp} (revision {etcd['revision']}) is ready on "
        f"{', '.join(verified) or 'no node (not fetched)'}",
    }


def _wait_gone(node: str, name: str, wait: float = 120) -> None:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if not _ask(node, "crictl.ps", name, timeout=30):
            return
        time.sleep(2)
    raise CommandExecutionError(
        f"{name} on {node} is still running {wait:g} s after its manifest left"
    )


def _park(cps: list[str], paths: dict, component: str, manifest: str) -> None:
    for node in cps:
        _ask(node, "file.mkdir", paths["parking"], mode="0700")
        src, dst = f"{MANIFESTS}/{manifest}", f"{paths['parking']}/{manifest}"
        if _ask(node, "file.file_exists", src):
            _ask(node, "file.rename", src, dst)
    for node in cps:
        _wait_gone(node, component)


def _unpark(cps: list[str], paths: dict, manifest: str) -> None:
    for node in cps:
        src = f"{paths['parking']}/{manifest}"
        if _ask(node, "file.file_exists", src):
            _ask(node, "file.rename", src, f"{MANIFESTS}/{manifest}")


def _gate(result: dict) -> None:
    if not result.get("result"):
        raise CommandExecutionError(result.get("comment"))


def run(cluster: str, stamp=None, confirm=False, bump_revision=DEFAULT_BUMP) -> dict:
    """
    Restore the whole cluster from backup ``stamp`` (see the module's doc). Refused unless
    ``confirm=True`` and ``stamp`` names a complete backup.

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_restore.run lab stamp=20260101T120000Z confirm=True
    """
    if confirm is not True or not stamp:
        msg = (
            "orch.etcd_restore rewinds every object of the cluster to a backup: it runs only "
            'when asked with pillar=\'{"cluster": "<name>", "stamp": "<backup>", "confirm": '
            "true}' (salt-run kubeha_backup.sets <cluster> lists the backups). Nothing was changed."
        )
        return {"result": False, "retcode": 1, "Error": msg, "comment": msg}
    started = time.time()
    steps: list[dict] = []
    changed = False
    paths: dict = {}
    doing = ["precheck"]  # the step under way: the one a failure names

    def step(name: str, fun, *args):
        doing[0] = name
        t = time.monotonic()
        out = fun(*args)
        steps.append({"step": name, "seconds": round(time.monotonic() - t, 2)})
        return out

    try:
        with _u("kubeha_day2.locked")(__opts__, cluster, "restore", LOCK_STALE_S):
            model = __salt__["kubeha.model"](cluster)
            nodes = model["control_plane"]
            cps = [n["name"] for n in nodes]
            ready = step("precheck", precheck, cluster, stamp, bump_revision)
            paths = ready["paths"]
            etcdutl = _etcdutl(model)
            changed = True  # from here on, a failure leaves things moved aside
            for component, manifest in STOP_ORDER:
                step(f"stop {component}", _park, cps, paths, component, manifest)
            initial = ",".join(f"{n['name']}=https://{n['ip']}:{PEER_PORT}" for n in nodes)
            token = f"kubeha-restore-{stamp.lower()}"

            def restore_all():
                for node in nodes:
                    name = node["name"]
                    if _ask(name, "file.directory_exists", paths["data_dir"]):
                        _ask(name, "file.rename", paths["data_dir"], paths["old_data"])
                    _ask(name, "etcd_snapshot.restore", path=paths["snapshot"],
                         data_dir=paths["data_dir"], name=name, initial_cluster=initial,
                         initial_advertise_peer_urls=f"https://{node['ip']}:{PEER_PORT}",
                         initial_cluster_token=token, bump_revision=int(bump_revision or 0),
                         mark_compacted=bool(bump_revision), etcdutl=etcdutl,
                         timeout=900)  # fmt: skip

            step("restore every member", restore_all)
            step("start etcd", _unpark, cps, paths, "etcd.yaml")
            step("etcd healthy", lambda: _gate(
                __salt__["kubeha_gate.etcd_healthy"](cluster, cps, wait=300)))  # fmt: skip
            step("start kube-apiserver", _unpark, cps, paths, "kube-apiserver.yaml")
            step("apiservers ready", lambda: _gate(
                __salt__["kubeha_gate.apiservers_ready"](cluster, cps, wait=300)))  # fmt: skip
            for manifest in ("kube-controller-manager.yaml", "kube-scheduler.yaml"):
                step(f"start {manifest}", _unpark, cps, paths, manifest)
            # Every kubelet, the workers' too: none may keep state newer than the snapshot.
            every_node = cps + [n["name"] for n in model.get("workers") or []]
            step("restart kubelets", lambda: [
                _ask(n, "service.restart", "kubelet", timeout=120) for n in every_node
            ])  # fmt: skip
            step("final gate", lambda: _gate(__salt__["kubeha_gate.final"](cluster, wait=300)))
            for node in cps:
                _ask(node, "file.remove", str(Path(paths["snapshot"]).parent), timeout=60)
    except CommandExecutionError as err:
        if _u("kubeha_day2.is_busy")(err):
            return _u("kubeha_day2.skipped")(err, "manual")
        where = doing[0]
        hint = (
            f" The old data directories are at {paths['old_data']} and the stopped manifests "
            f"in {paths['parking']} on each control plane."
            if changed
            else " Nothing was changed."
        )
        message = f"etcd restore of {cluster} from {stamp} stopped at '{where}': {err}.{hint}"
        _u("kubeha_day2.record")(
            __opts__, cluster, "restore", {"result": False, "error": message, "steps": steps}
        )
        return _u("kubeha_day2.failed")(_fire, cluster, "restore", message, steps=steps)
    outcome = {
        "result": True,
        "stamp": stamp,
        "revision": ready["revision"],
        "bump_revision": int(bump_revision or 0),
        "steps": steps,
        "old_data": paths["old_data"],
        "total_s": round(time.time() - started, 2),
        "comment": f"{cluster}: etcd restored from {stamp} (revision {ready['revision']}) on "
        f"{', '.join(cps)} in {time.time() - started:.0f} s; the old data directories are at "
        f"{paths['old_data']}",
    }
    _u("kubeha_day2.record")(__opts__, cluster, "restore", outcome)
    return outcome
