"""
etcd backups of a kubeha cluster to S3-compatible object storage, from the master
(``orch/etcd_backup.sls``, hourly from the master's scheduler: docs/examples/master.d).

``take``: a snapshot on a healthy follower (``etcd_snapshot.save``: written 0600, SHA-256
trailer and ``etcdutl snapshot status`` checked), ``/etc/kubernetes/pki`` archived and
encrypted on that node (``kubeha_archive.pki``: AES-256-GCM, key from the node's pillar),
both copied to the master (``cp.push``; checksums compared), uploaded with ``boto3``
(server-verified checksum, multipart above a size, our SHA-256 as metadata), then the
manifest, written last: a set without one is incomplete and never restored from. The
copies on the node and the master are deleted. ``prune`` applies the retention
(``_utils/kubeha_retention``): N hourly, M daily, K weekly, never the newest verified set.

Why through the master: the nodes then need neither boto3 nor S3 credentials, and the
master (which already holds every node's trust) is the only S3 client. S3 keys and the PKI
key come from pillar and are never in a return, an event or a log.

A failure returns ``result: False`` (the orchestration step fails), fires
``kubeha/backup/<cluster>/failed`` (or ``prune``) and is what ``salt-run
kubeha_status.day2 <cluster>`` shows.

CLI Example:

.. code-block:: bash

    salt-run kubeha_backup.take lab
    salt-run kubeha_backup.prune lab dry_run=True
    salt-run kubeha_backup.sets lab
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
import time
from pathlib import Path

from salt.exceptions import CommandExecutionError

log = logging.getLogger(__name__)

LOCK_STALE_S = 3 * 3600


def _u(name: str):
    return __utils__[name]


def _ask(node: str, fun: str, *args, timeout: float = 60, **kwargs):
    ok, ret = _u("kubeha_minions.ask")(__opts__, node, fun, *args, timeout=timeout, **kwargs)[node]
    if not ok:
        raise CommandExecutionError(f"{fun} on {node}: {ret}")
    return ret


def _fire(data: dict, tag: str) -> None:
    __salt__["event.send"](tag, data)


def _secrets(model: dict) -> dict:
    """The secrets the model redacts, from the same compiled pillar (kubeha.model)."""
    pillar = __salt__["pillar.show_pillar"](minion=model["minions"][0])
    backup = (pillar.get("kubeha") or {}).get("backup") or {}
    s3 = backup.get("s3") or {}
    return {
        "access_key": s3.get("access_key") or "",
        "secret_key": s3.get("secret_key") or "",
        "pki_key_set": bool(backup.get("pki_key")),
    }


def _tell_monitoring(model: dict, stamp: float) -> None:
    """Every control plane records the success for Prometheus (kubeha_textfile): the alert
    EtcdBackupTooOld reads the newest record. Fire and forget: a node that is down now
    keeps its older record, which the alert's max() passes over."""
    mon = model.get("monitoring") or {}
    if mon.get("enabled"):
        cps = [n["name"] for n in model["control_plane"]]
        try:
            _u("kubeha_minions.start")(__opts__, cps, "kubeha_textfile.backup_succeeded",
                                       stamp, mon["textfile_dir"])  # fmt: skip
        except RuntimeError as err:  # the backup itself succeeded: say so, and warn
            log.warning("kubeha_backup: could not record the backup for Prometheus: %s", err)


def storage(cluster: str, model: dict | None = None):
    """
    (boto3 client, the model's ``backup:s3``, the cluster's key prefix) for the other
    day-2 runners; raises when the bucket is not set.

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_backup.storage lab
    """
    model = model or __salt__["kubeha.model"](cluster)
    s3 = dict(model["backup"]["s3"])
    if not s3.get("bucket"):
        raise CommandExecutionError(
            f"no object storage for {cluster}: set kubeha:backup:s3:bucket (and endpoint, "
            "region, credentials: docs/s3.md)"
        )
    secrets = _secrets(model)
    conn = _u("kubeha_s3.client")(s3, secrets["access_key"], secrets["secret_key"])
    return conn, s3, _u("kubeha_s3.cluster_prefix")(s3, cluster)


def _members(model: dict) -> dict:
    """Every member's name, endpoint, health and leadership, asked of the first control
    plane that answers."""
    errors = {}
    for node in [n["name"] for n in model["control_plane"]]:
        try:
            members = _ask(node, "etcdctl.member_list", timeout=30)
            health = _ask(node, "etcdctl.endpoint_health", timeout=30)
            status = _ask(node, "etcdctl.endpoint_status", timeout=30)
        except CommandExecutionError as err:
            errors[node] = str(err)
            continue
        healthy = {h["endpoint"] for h in health if h.get("healthy")}
        by_url = {s["endpoint"]: s for s in status}
        out = {}
        for m in members:
            url = (m.get("client_urls") or [""])[0]
            st = by_url.get(url) or {}
            out[m.get("name") or m["id"]] = {
                "endpoint": url,
                "healthy": url in healthy and bool(st.get("reachable")),
                "leader": bool(st.get("is_leader")),
                "version": st.get("version"),
                "db_size": st.get("db_size"),
            }
        return out
    raise CommandExecutionError(f"no control plane answers about etcd: {errors}")


def pick_member(cluster: str, model: dict | None = None) -> dict:
    """
    The node whose member a snapshot is taken from: a healthy follower (the leader only
    when no follower is healthy), among the cluster's control planes.

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_backup.pick_member lab
    """
    model = model or __salt__["kubeha.model"](cluster)
    cps = [n["name"] for n in model["control_plane"]]
    members = _members(model)
    healthy = [n for n in cps if members.get(n, {}).get("healthy")]
    followers = [n for n in healthy if not members[n]["leader"]]
    if not healthy:
        raise CommandExecutionError(f"no healthy etcd member on {cps}: {members}")
    node = followers[-1] if followers else healthy[0]
    return {"node": node, "leader": members[node]["leader"], "members": members}


def _push(node: str, path: str, sha256: str, copies: list[Path]) -> Path:
    """cp.push ``path`` from ``node`` to the master's cache; check it arrived whole. The
    copy joins ``copies`` before any check, so that it is removed whatever happens next."""
    local = Path(__opts__["cachedir"]) / "minions" / node / "files" / path.lstrip("/")
    copies.append(local)
    if not _ask(node, "cp.push", path, timeout=1800):
        raise CommandExecutionError(
            f"cp.push {path} from {node} was refused: the master needs file_recv: True "
            "(docs/examples/master.d/kubeha.conf) and file_recv_max_size above the file"
        )
    local.chmod(0o600)
    digest = hashlib.sha256()
    with local.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != sha256:
        raise CommandExecutionError(f"the master's copy of {path} does not match {node}'s")
    return local


def _clean(node: str | None, folder: str | None, copies: list[Path]) -> None:
    for local in copies:
        local.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            local.parent.rmdir()  # the set's folder in the master's cache, once empty
    if node and folder:
        try:
            _ask(node, "file.remove", folder, timeout=60)
        except CommandExecutionError as err:
            log.warning("kubeha backup: could not remove %s on %s: %s", folder, node, err)


def take(cluster: str, node: str | None = None, reason: str = "manual") -> dict:
    """
    Snapshot, verify, encrypt the PKI, upload, write the manifest (see the module's doc).
    ``node`` forces the control plane to snapshot on; ``reason`` is recorded.

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_backup.take lab
    """
    started = time.time()
    day2 = "kubeha_day2."
    folder = None
    copies: list[Path] = []
    try:
        with _u(day2 + "locked")(__opts__, cluster, "backup", LOCK_STALE_S):
            model = __salt__["kubeha.model"](cluster)
            conn, s3, prefix = storage(cluster, model)
            if not _secrets(model)["pki_key_set"]:
                raise CommandExecutionError(
                    "kubeha:backup:pki_key is not set: the PKI goes with every backup, "
                    "encrypted; generate one with `openssl rand -base64 32` (secret pillar)"
                )
            picked = pick_member(cluster, model) if not node else {"node": node, "leader": None}
            node = picked["node"]
            stamp = _u("kubeha_retention.format_stamp")(dt.datetime.now(dt.UTC))
            folder = f"{model['backup']['stage_dir'].rstrip('/')}/{cluster}-{stamp}"
            _ask(node, "file.mkdir", folder, mode="0700")
            t0 = time.monotonic()
            snap = _ask(node, "etcd_snapshot.save", f"{folder}/etcd.db", timeout=900)
            save_s = time.monotonic() - t0
            if snap.get("integrity") != "sha256":
                raise CommandExecutionError(
                    f"the snapshot from {node} has no SHA-256 trailer: not a complete "
                    "etcdctl snapshot"
                )
            pki = _ask(node, "kubeha_archive.pki", f"{folder}/pki.tar.gz.enc", f"{cluster}/{stamp}")
            t0 = time.monotonic()
            _push(node, snap["path"], snap["sha256"], copies)
            _push(node, pki["path"], pki["sha256"], copies)
            push_s = time.monotonic() - t0
            meta = {
                "sha256": snap["sha256"],
                "revision": snap["revision"],
                "etcd-hash": snap["hash"],
                "total-keys": snap["total_keys"],
            }
            key = f"{prefix}{stamp}/"
            t0 = time.monotonic()
            up_snap = _u("kubeha_s3.upload")(conn, s3, key + "etcd.db", copies[0], meta)
            up_pki = _u("kubeha_s3.upload")(
                conn, s3, key + "pki.tar.gz.enc", copies[1], {"sha256": pki["sha256"]}
            )
            upload_s = time.monotonic() - t0
            manifest = {
                "cluster": cluster,
                "stamp": stamp,
                "reason": reason,
                "node": node,
                "verified": True,
                "etcd": {
                    "sha256": snap["sha256"],
                    "size": snap["total_size"],
                    "file_size": up_snap["size"],
                    "revision": snap["revision"],
                    "hash": snap["hash"],
                    "total_keys": snap["total_keys"],
                    "integrity": snap["integrity"],
                    "checked_with": snap["checked_with"],
                    "version": (picked.get("members") or {}).get(node, {}).get("version"),
                },
                "pki": {
                    "sha256": pki["sha256"],
                    "size": pki["size"],
                    "key_id": pki["key_id"],
                    "files": pki["files"],
                    "ca_keys": pki["ca_keys"],
                },
                "kubernetes_version": model["kubernetes"]["version"],
                "taken_at": started,
            }
            _u("kubeha_s3.put_json")(conn, s3, s3["bucket"], key + "manifest.json", manifest)
            _clean(node, folder, copies)
            timings = {
                "save_s": round(save_s, 2),
                "push_s": round(push_s, 2),
                "upload_s": round(upload_s, 2),
                "total_s": round(time.time() - started, 2),
            }
            outcome = {
                "result": True,
                "stamp": stamp,
                "node": node,
                "from_leader": picked.get("leader"),
                "key": key,
                "revision": snap["revision"],
                "total_keys": snap["total_keys"],
                "snapshot_bytes": up_snap["size"],
                "pki_bytes": up_pki["size"],
                "multipart_parts": up_snap["multipart_parts"],
                "checksums": up_snap["checksums"],
                "timings": timings,
                "reason": reason,
                "comment": (
                    f"{cluster}: snapshot of {node} (revision {snap['revision']}, "
                    f"{snap['total_keys']} keys, {up_snap['size']} bytes) and PKI stored as "
                    f"{key} in {timings['total_s']} s"
                ),
            }
            _u(day2 + "record")(__opts__, cluster, "backup", outcome)
            _tell_monitoring(model, time.time())
            return outcome
    except CommandExecutionError as err:
        if _u("kubeha_day2.is_busy")(err):
            return _u("kubeha_day2.skipped")(err, reason)
        _clean(node, folder, copies)
        message = f"backup of {cluster} failed: {err}"
        _u(day2 + "record")(__opts__, cluster, "backup", {"result": False, "error": message})
        return _u(day2 + "failed")(_fire, cluster, "backup", message)


def sets(cluster: str) -> dict:
    """
    The cluster's backup sets in object storage, newest first: stamp, complete (has a
    manifest), sizes.

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_backup.sets lab
    """
    conn, s3, prefix = storage(cluster)
    found = _u("kubeha_s3.sets")(conn, s3["bucket"], prefix)
    rows = [
        {"stamp": stamp, "complete": e["complete"], "objects": e["objects"]}
        for stamp, e in sorted(found.items(), reverse=True)
    ]
    return {"bucket": s3["bucket"], "prefix": prefix, "sets": rows}


def newest(cluster: str, stamp: str | None = None) -> dict:
    """
    The manifest of the newest complete set (or of ``stamp``), with its object keys.

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_backup.newest lab
    """
    conn, s3, prefix = storage(cluster)
    found = _u("kubeha_s3.sets")(conn, s3["bucket"], prefix)
    complete = sorted((s for s, e in found.items() if e["complete"]), reverse=True)
    if stamp is None:
        if not complete:
            raise CommandExecutionError(f"no complete backup of {cluster} under {prefix}")
        stamp = complete[0]
    elif stamp not in complete:
        raise CommandExecutionError(f"no complete backup {stamp} of {cluster} under {prefix}")
    manifest = _u("kubeha_s3.get_json")(conn, s3["bucket"], f"{prefix}{stamp}/manifest.json")
    return {
        "stamp": stamp,
        "manifest": manifest,
        "keys": {name: f"{prefix}{stamp}/{name}" for name in found[stamp]["objects"]},
        "sizes": found[stamp]["objects"],
    }


def prune(cluster: str, dry_run: bool = False) -> dict:
    """
    Delete the sets the retention does not keep (``backup:keep_hourly/daily/weekly``);
    never the newest verified set; an incomplete set only once it is an hour old.

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_backup.prune lab dry_run=True
    """
    try:
        model = __salt__["kubeha.model"](cluster)
        conn, s3, prefix = storage(cluster, model)
        found = _u("kubeha_s3.sets")(conn, s3["bucket"], prefix)
        backup = model["backup"]
        plan = _u("kubeha_retention.plan")(
            [{"stamp": s, "verified": e["complete"]} for s, e in found.items()],
            hourly=backup["keep_hourly"],
            daily=backup["keep_daily"],
            weekly=backup["keep_weekly"],
            now=dt.datetime.now(dt.UTC),
        )
        deleted = []
        if not dry_run:
            for stamp in plan["delete"]:
                _u("kubeha_s3.delete_set")(
                    conn, s3["bucket"], prefix, stamp, found[stamp]["objects"]
                )
                deleted.append(stamp)
    except CommandExecutionError as err:
        message = f"pruning the backups of {cluster} failed: {err}"
        _u("kubeha_day2.record")(__opts__, cluster, "prune", {"result": False, "error": message})
        return _u("kubeha_day2.failed")(_fire, cluster, "prune", message)
    outcome = {
        "result": True,
        "dry_run": bool(dry_run),
        "kept": plan["keep"],
        "deleted": deleted if not dry_run else [],
        "would_delete": plan["delete"] if dry_run else [],
        "why": plan["why"],
        "comment": (
            f"{cluster}: {len(plan['keep'])} set(s) kept, "
            f"{len(plan['delete'])} {'would be ' if dry_run else ''}deleted"
        ),
    }
    if not dry_run:
        _u("kubeha_day2.record")(
            __opts__, cluster, "prune", {k: v for k, v in outcome.items() if k != "why"}
        )
    return outcome
