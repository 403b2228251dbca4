"""
The restore drill (``orch/etcd_restore_drill.sls``, weekly from the master's scheduler):
proof, every run, that the newest backup in object storage restores.

1. the newest complete set (or ``stamp``) and its manifest;
2. its snapshot and PKI archive fetched by the drill host (``drill:host``, else a control
   plane that does not lead etcd) from presigned URLs sealed to that minion
   (``kubeha_archive.fetch``: size and SHA-256 checked against the manifest);
3. the snapshot verified there (SHA-256 trailer, ``etcdutl snapshot status``: revision,
   hash and key count must equal the manifest's) and the PKI archive decrypted with the
   pillar key (its CA keys listed);
4. restored into a scratch single-member etcd on 127.0.0.1 (``etcd_drill.start``);
5. compared with the live cluster: the ``/registry`` key count at the snapshot's revision,
   and a sample of ``/registry`` values (keyed digests, never values) read at that revision
   from a live member. Once the live cluster has compacted past it (the apiserver compacts
   every 5 minutes), the sample is read at the latest revision: a key unchanged since the
   snapshot must match exactly; changed or deleted ones are counted, not judged;
6. the scratch etcd stopped and its files removed, whatever happened;
7. a report (``drill-<cluster>.{json,md}`` in the report directory), the record that
   ``kubeha_status.day2`` shows, and ``kubeha/drill/<cluster>/failed`` when it fails.

CLI Example:

.. code-block:: bash

    salt-run kubeha_drill.run lab
    salt-run kubeha_drill.run lab stamp=20260101T120000Z
"""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path

from salt.exceptions import CommandExecutionError

LOCK_STALE_S = 2 * 3600
URL_LIFETIME_S = 900


def _u(name: str):
    return __utils__[name]


def _ask(node: str, fun: str, *args, timeout: float = 60, **kwargs):
    ok, ret = _u("kubeha_minions.ask")(__opts__, node, fun, *args, timeout=timeout, **kwargs)[node]
    if not ok:
        raise CommandExecutionError(f"{fun} on {node}: {ret}")
    return ret


def _fire(data: dict, tag: str) -> None:
    __salt__["event.send"](tag, data)


def _report_dir(model: dict) -> Path:
    configured = (model.get("chaos") or {}).get("report_dir")
    out = Path(configured or os.path.join(__opts__["cachedir"], "kubeha", "reports"))
    out.mkdir(parents=True, exist_ok=True)
    return out


def _drill_host(model: dict) -> str:
    configured = model["drill"].get("host")
    if configured:
        return configured
    return __salt__["kubeha_backup.pick_member"](model["cluster"]["name"], model)["node"]


def _live_node(model: dict, host: str) -> str:
    cps = [n["name"] for n in model["control_plane"]]
    if host in cps:
        return host
    return __salt__["kubeha_backup.pick_member"](model["cluster"]["name"], model)["node"]


def compare(restored: dict, live: dict, revision: int) -> dict:
    """
    The drill's verdict from the two digests (``etcd_drill.digest``): the scratch etcd
    (``restored``) and a live member read at ``revision`` (or later, when compacted).

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_drill.compare "$RESTORED" "$LIVE" 1234
    """
    out = {"matched": 0, "changed_since": 0, "deleted_since": 0, "mismatched": [], "problems": []}
    for key, mine in restored["sample"].items():
        theirs = live["sample"].get(key)
        if mine is None:
            out["problems"].append(f"{key} listed but not readable in the restored copy")
        elif theirs is None:
            if live["compacted"]:
                out["deleted_since"] += 1
            else:
                out["mismatched"].append(key)
        elif live["compacted"] and theirs["mod_revision"] > revision:
            out["changed_since"] += 1
        elif theirs["hmac"] == mine["hmac"] and theirs["mod_revision"] == mine["mod_revision"]:
            out["matched"] += 1
        else:
            out["mismatched"].append(key)
    if out["mismatched"]:
        out["problems"].append(
            f"{len(out['mismatched'])} sampled key(s) differ from the live cluster at revision "
            f"{revision}: {out['mismatched'][:5]}"
        )
    if restored.get("latest_revision") != revision:
        out["problems"].append(
            f"the restored etcd is at revision {restored.get('latest_revision')}, the "
            f"snapshot's is {revision}"
        )
    if not live["compacted"] and live["count"] != restored["count"]:
        out["problems"].append(
            f"/registry holds {restored['count']} keys restored and {live['count']} live at "
            f"revision {revision}"
        )
    if not restored["sample"]:
        out["problems"].append("the restored copy has no /registry key to compare")
    return out


def _markdown(report: dict) -> str:
    cmp_ = report.get("comparison") or {}
    t = report.get("timings") or {}
    lines = [
        f"# Restore drill: {report['cluster']}",
        "",
        f"- verdict: **{'PASS' if report['result'] else 'FAIL'}** ({report['comment']})",
        f"- backup: `{report.get('stamp')}` taken on {report.get('backup_node')}, revision "
        f"{report.get('revision')}, {report.get('snapshot_bytes')} bytes",
        f"- drill host: {report.get('host')}; live member read on {report.get('live_node')}",
        f"- /registry keys: restored {report.get('restored_count')}, live at the snapshot's "
        f"revision {report.get('live_count')}"
        + (" (compacted since: compared by sample only)" if report.get("compacted") else ""),
        f"- sample: {cmp_.get('matched', 0)} matched, {cmp_.get('changed_since', 0)} changed "
        f"since, {cmp_.get('deleted_since', 0)} deleted since, "
        f"{len(cmp_.get('mismatched') or [])} mismatched",
        f"- PKI archive: {report.get('pki_files')} files, CA keys {report.get('pki_ca_keys')}",
        "",
        "| step | seconds |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in t.items()],
        "",
    ]
    if report.get("problems"):
        lines += ["Problems:", "", *[f"- {p}" for p in report["problems"]], ""]
    return "\n".join(lines)


def _write_report(model: dict, report: dict) -> list[str]:
    base = _report_dir(model) / f"drill-{report['cluster']}"
    base.with_suffix(".json").write_text(json.dumps(report, indent=2, default=str))
    base.with_suffix(".md").write_text(_markdown(report))
    return [str(base.with_suffix(".json")), str(base.with_suffix(".md"))]


def _fetch(conn, s3, host: str, pem: str, order: dict):
    """``order``: key, name, sha256, size, dest. A presigned GET, sealed to ``host``."""
    url = _u("kubeha_s3.presign_get")(conn, s3["bucket"], order["key"], URL_LIFETIME_S)
    sealed = _u("kubeha_sealed.seal")(
        {"url": url, "sha256": order["sha256"], "size": int(order["size"]), "name": order["name"]},
        pem,
        host,
        "fetch",
        URL_LIFETIME_S,
    )
    # As keywords: Salt reads a positional "name=value" string (base64 ends in '=') as one.
    return _ask(host, "kubeha_archive.fetch", sealed=sealed, dest=order["dest"], timeout=1800)


def run(cluster: str, stamp: str | None = None, host: str | None = None) -> dict:
    """
    The drill (see the module's doc) on the newest complete backup, or on ``stamp``.

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_drill.run lab
    """
    started = time.time()
    report: dict = {"cluster": cluster, "result": False, "problems": [], "timings": {}}
    work = None
    model = None
    try:
        with _u("kubeha_day2.locked")(__opts__, cluster, "drill", LOCK_STALE_S):
            model = __salt__["kubeha.model"](cluster)
            drill = model["drill"]
            conn, s3, _ = __salt__["kubeha_backup.storage"](cluster, model)
            chosen = __salt__["kubeha_backup.newest"](cluster, stamp)
            manifest = chosen["manifest"]
            etcd, revision = manifest["etcd"], int(manifest["etcd"]["revision"])
            host = host or _drill_host(model)
            report.update(
                stamp=chosen["stamp"],
                backup_node=manifest.get("node"),
                revision=revision,
                snapshot_bytes=chosen["sizes"].get("etcd.db"),
                host=host,
            )
            pem_path = Path(__opts__["pki_dir"]) / "minions" / host
            if not pem_path.is_file():
                raise CommandExecutionError(f"{host} has no accepted key on this master")
            pem = pem_path.read_text()
            work = f"{drill['work_dir'].rstrip('/')}/{cluster}-{chosen['stamp']}-{os.getpid()}"
            etcd_dir = drill.get("etcd_dir") or None
            etcdutl = f"{etcd_dir.rstrip('/')}/etcdutl" if etcd_dir else None
            _ask(host, "etcd_drill.prepare", work)
            t = time.monotonic()
            pki_key = chosen["keys"].get("pki.tar.gz.enc")
            if not pki_key:
                raise CommandExecutionError(f"backup {chosen['stamp']} has no PKI archive")
            got = _fetch(conn, s3, host, pem, {
                "key": chosen["keys"]["etcd.db"], "name": "etcd.db", "sha256": etcd["sha256"],
                "size": chosen["sizes"]["etcd.db"], "dest": f"{work}/etcd.db"})  # fmt: skip
            _fetch(conn, s3, host, pem, {
                "key": pki_key, "name": "pki.tar.gz.enc", "sha256": manifest["pki"]["sha256"],
                "size": chosen["sizes"]["pki.tar.gz.enc"],
                "dest": f"{work}/pki.tar.gz.enc"})  # fmt: skip
            report["timings"]["fetch_s"] = round(time.monotonic() - t, 2)
            report["fetch_mib_s"] = round(got["size"] / 1048576 / max(got["seconds"], 1e-3), 1)
            t = time.monotonic()
            try:
                status = _ask(host, "etcd_snapshot.status", f"{work}/etcd.db", etcdutl,
                              timeout=600)  # fmt: skip
            except CommandExecutionError as err:
                raise CommandExecutionError(
                    f"the snapshot of {chosen['stamp']} does not verify on {host}: {err}"
                ) from err
            wrong = {
                k: (status.get(k), etcd.get(k))
                for k in ("revision", "hash", "total_keys", "sha256")
                if status.get(k) != etcd.get(k)
            }
            if status.get("integrity") != "sha256" or wrong:
                raise CommandExecutionError(
                    f"the snapshot of {chosen['stamp']} does not verify on {host}: "
                    f"integrity {status.get('integrity')}, differs from the manifest in {wrong}"
                )
            pki = _ask(host, "kubeha_archive.pki_verify", f"{work}/pki.tar.gz.enc",
                       f"{cluster}/{chosen['stamp']}")  # fmt: skip
            report.update(pki_files=pki["files"], pki_ca_keys=pki["ca_keys"])
            report["timings"]["verify_s"] = round(time.monotonic() - t, 2)
            scratch = _ask(host, "etcd_drill.start", f"{work}/etcd.db", work,
                           client_port=drill["client_port"], peer_port=drill["peer_port"],
                           etcd_dir=etcd_dir, timeout=600)  # fmt: skip
            report["timings"]["restore_s"] = scratch["restore_s"]
            report["timings"]["start_s"] = scratch["ready_s"]
            t = time.monotonic()
            seed = secrets.token_hex(16)
            restored = _ask(host, "etcd_drill.digest", scratch["endpoint"], seed,
                            sample=drill["sample"], tls=False, etcd_dir=etcd_dir,
                            timeout=900)  # fmt: skip
            live_node = _live_node(model, host)
            # The drill host's tools (the cluster's etcd version) where it is the live node.
            live = _ask(live_node, "etcd_drill.digest", None, seed,
                        keys=list(restored["sample"]), revision=revision,
                        etcd_dir=etcd_dir if live_node == host else None,
                        timeout=900)  # fmt: skip
            report["timings"]["compare_s"] = round(time.monotonic() - t, 2)
            verdict = compare(restored, live, revision)
            report.update(
                live_node=live_node,
                restored_count=restored["count"],
                restored_total_keys=restored["total_keys"],
                live_count=live["count"],
                compacted=live["compacted"],
                sample=len(restored["sample"]),
                comparison=verdict,
            )
            report["problems"] += verdict["problems"]
            if pki["missing_ca_keys"]:
                report["problems"].append(f"the PKI archive lacks {pki['missing_ca_keys']}")
    except CommandExecutionError as err:
        if _u("kubeha_day2.is_busy")(err):
            return _u("kubeha_day2.skipped")(err, "schedule")
        report["problems"].append(str(err))
    finally:
        if work and host:
            try:
                _ask(host, "etcd_drill.stop", work, timeout=120)
            except CommandExecutionError as err:
                report["problems"].append(f"clean-up on {host}: {err}")
    report["timings"]["total_s"] = round(time.time() - started, 2)
    report["result"] = not report["problems"]
    cmp_ = report.get("comparison") or {}
    report["comment"] = (
        f"{cluster}: backup {report.get('stamp')} restores: {report.get('restored_count')} "
        f"/registry keys, {cmp_.get('matched', 0)}/{report.get('sample', 0)} sampled values "
        f"equal to the live cluster, in {report['timings']['total_s']} s"
        if report["result"]
        else f"restore drill of {cluster} failed: {'; '.join(report['problems'])}"
    )
    if model is not None:
        report["files"] = _write_report(model, report)
    _u("kubeha_day2.record")(__opts__, cluster, "drill", report)
    if not report["result"]:
        return _u("kubeha_day2.failed")(_fire, cluster, "drill", report["comment"], report=report)
    return report
