"""
End to end on the lab (issue 15): etcd backups to the lab's object store (moto's S3 server on
the bridge) through `orch.etcd_backup`, the retention over simulated weeks, the restore drill
proving the newest backup, and a truncated snapshot refused; on the cluster
tests/lab/test_bootstrap.py built.

No secret (S3 keys, the PKI key) reaches the master's job cache or log.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from collections.abc import Iterator

import pytest
import yaml

from lab import formula, s3server
from lab.api import Lab
from lab.config import REPO
from lab.saltmaster import HOME, LOG
from tests.unit.modules.khm_load import load

pytestmark = [pytest.mark.lab, pytest.mark.root]

CLUSTER = formula.CLUSTER
PILLAR = yaml.safe_load((REPO / "pillar/kubeha/day2-lab.sls").read_text())["kubeha"]
PREFIX = f"{PILLAR['backup']['s3']['prefix']}/{CLUSTER}/"
retention = load("_utils", "kubeha_retention")


def _orch(lab: Lab, orch: str, timeout: float = 900, **pillar) -> list[formula.OrchStep]:
    arg = "pillar=" + json.dumps({"cluster": CLUSTER, **pillar})
    return formula.orch_steps(lab.salt_run("state.orch", orch, arg, timeout=timeout))


def _record(job: str) -> dict:
    return json.loads((HOME / "cache" / "kubeha" / "day2" / CLUSTER / f"{job}.json").read_text())


def _sets(s3) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=s3server.BUCKET, Prefix=PREFIX):
        for obj in page.get("Contents") or []:
            stamp, _, name = obj["Key"][len(PREFIX) :].partition("/")
            out.setdefault(stamp, set()).add(name)
    return out


@pytest.fixture(scope="module")
def cluster(lab: Lab) -> Iterator[Lab]:
    """The built cluster, healthy, modules synced, the object store up and this cluster's
    backups in it removed (a clean start for the retention count)."""
    if not s3server.serving():
        pytest.fail("the lab's S3 server is not running: moto[server] (requirements/s3-lab.txt)")
    formula.sync(lab)
    gate = lab.salt_run("kubeha_gate.final", CLUSTER, "wait=120", timeout=400)
    assert gate.get("result"), f"the lab has no healthy cluster (run test_bootstrap.py): {gate}"
    s3 = s3server.client()
    for stamp, names in _sets(s3).items():
        s3.delete_objects(
            Bucket=s3server.BUCKET,
            Delete={"Objects": [{"Key": f"{PREFIX}{stamp}/{n}"} for n in names]},
        )
    lab.s3 = s3
    yield lab


def test_backup_is_taken_on_a_follower_verified_and_stored(cluster: Lab):
    started = time.time()
    steps = _orch(cluster, "orch.etcd_backup")
    assert [s.result for s in steps] == [True, True], steps
    took = _record("backup")
    assert took["result"] and took["at"] > started
    assert took["from_leader"] is False, "the snapshot was taken on the etcd leader"
    (stamp,) = _sets(cluster.s3)
    assert _sets(cluster.s3)[stamp] == {"etcd.db", "pki.tar.gz.enc", "manifest.json"}
    manifest = json.loads(
        cluster.s3.get_object(Bucket=s3server.BUCKET, Key=f"{PREFIX}{stamp}/manifest.json")[
            "Body"
        ].read()
    )
    assert manifest["etcd"]["integrity"] == "sha256" and manifest["etcd"]["total_keys"] > 50
    assert manifest["pki"]["ca_keys"] == ["ca.key", "sa.key", "front-proxy-ca.key", "etcd/ca.key"]
    head = cluster.s3.head_object(
        Bucket=s3server.BUCKET, Key=f"{PREFIX}{stamp}/etcd.db", ChecksumMode="ENABLED"
    )
    assert head["Metadata"]["sha256"] == manifest["etcd"]["sha256"] and head["ChecksumSHA256"]
    # Nothing left behind on the node or the master.
    node = took["node"]
    left = cluster.exec(
        node, "ls", "-A", PILLAR.get("stage_dir", "/var/lib/kubeha/backups"), check=False
    ).stdout.split()
    assert left == [], left
    assert not list((HOME / "cache" / "minions").glob(f"*/files/**/{CLUSTER}-{stamp}"))
    status = cluster.salt_run("kubeha_status.day2", CLUSTER)
    assert status["backup"]["last_success_at"] == took["at"]
    print(
        f"backup: {took['comment']}; timings {took['timings']}, "
        f"{took['snapshot_bytes']} B snapshot in {took['multipart_parts']} parts"
    )


def test_the_drill_restores_the_newest_backup(cluster: Lab):
    steps = _orch(cluster, "orch.etcd_restore_drill")
    report = _record("drill")
    assert steps[0].result, report.get("problems")
    cmp_ = report["comparison"]
    assert cmp_["mismatched"] == [] and cmp_["matched"] > 0
    assert cmp_["matched"] + cmp_["changed_since"] + cmp_["deleted_since"] == report["sample"]
    # Not empty; how many depends on the cluster (kubesim's holds a few dozen /registry
    # objects, a real kubeadm cluster hundreds): the equality with the live count below is
    # the check.
    assert report["restored_count"] > 0
    if not report["compacted"]:
        assert report["live_count"] == report["restored_count"]
    # The scratch etcd and its files are gone from the drill host.
    host, work = report["host"], PILLAR.get("drill", {}).get("work_dir", "/var/lib/kubeha/drill")
    assert cluster.exec(host, "ls", "-A", work, check=False).stdout.split() == []
    assert cluster.exec(host, "pgrep", "-f", "name=drill", check=False).returncode != 0
    print(f"drill: {report['comment']}; timings {report['timings']}")


def test_a_truncated_snapshot_is_refused(cluster: Lab):
    good = max(s for s, names in _sets(cluster.s3).items() if "manifest.json" in names)
    key = f"{PREFIX}{good}/"
    data = cluster.s3.get_object(Bucket=s3server.BUCKET, Key=key + "etcd.db")["Body"].read()
    manifest = json.loads(
        cluster.s3.get_object(Bucket=s3server.BUCKET, Key=key + "manifest.json")["Body"].read()
    )
    bad = retention.format_stamp(dt.datetime.now(dt.UTC) + dt.timedelta(days=1))
    truncated = data[: len(data) * 2 // 3]
    manifest["etcd"]["sha256"] = hashlib.sha256(truncated).hexdigest()
    names = ("etcd.db", "pki.tar.gz.enc", "manifest.json")
    cluster.s3.put_object(Bucket=s3server.BUCKET, Key=f"{PREFIX}{bad}/etcd.db", Body=truncated)
    cluster.s3.copy_object(
        Bucket=s3server.BUCKET,
        Key=f"{PREFIX}{bad}/pki.tar.gz.enc",
        CopySource={"Bucket": s3server.BUCKET, "Key": key + "pki.tar.gz.enc"},
    )
    cluster.s3.put_object(
        Bucket=s3server.BUCKET,
        Key=f"{PREFIX}{bad}/manifest.json",
        Body=json.dumps(manifest).encode(),
    )
    try:
        steps = _orch(cluster, "orch.etcd_restore_drill")
    finally:
        cluster.s3.delete_objects(
            Bucket=s3server.BUCKET,
            Delete={"Objects": [{"Key": f"{PREFIX}{bad}/{n}"} for n in names]},
        )
    assert steps[0].result is False
    report = _record("drill")
    assert report["stamp"] == bad and report["result"] is False
    assert any("does not verify" in p for p in report["problems"]), report["problems"]
    status = cluster.salt_run("kubeha_status.day2", CLUSTER)
    assert any("the last drill failed" in p for p in status["problems"]), status


def test_retention_over_simulated_weeks(cluster: Lab):
    """Three weeks of hourly backups (copies of the real one, named back in time), then a
    real backup: the prune keeps exactly what the retention says, the newest included."""
    real = max(s for s, names in _sets(cluster.s3).items() if "manifest.json" in names)
    now = dt.datetime.now(dt.UTC).replace(minute=7, second=0, microsecond=0)
    fakes = [retention.format_stamp(now - dt.timedelta(hours=h)) for h in range(2, 24 * 21, 3)]
    for stamp in fakes:
        for name in ("etcd.db", "pki.tar.gz.enc", "manifest.json"):
            cluster.s3.copy_object(
                Bucket=s3server.BUCKET,
                Key=f"{PREFIX}{stamp}/{name}",
                CopySource={"Bucket": s3server.BUCKET, "Key": f"{PREFIX}{real}/{name}"},
            )
    before = set(_sets(cluster.s3))
    steps = _orch(cluster, "orch.etcd_backup")
    assert [s.result for s in steps] == [True, True], steps
    after = _sets(cluster.s3)
    newest = _record("backup")["stamp"]
    backup = PILLAR.get("backup", {})
    expected = retention.plan(
        [{"stamp": s, "verified": True} for s in before | {newest}],
        hourly=backup.get("keep_hourly", 24),
        daily=backup.get("keep_daily", 7),
        weekly=backup.get("keep_weekly", 4),
        now=dt.datetime.now(dt.UTC),
    )
    assert set(after) == set(expected["keep"]), sorted(set(after) ^ set(expected["keep"]))
    assert newest in after and len(after) < len(before)
    pruned = _record("prune")
    print(
        f"retention: {len(before) + 1} sets -> {len(after)} kept, {len(pruned['deleted'])} deleted"
    )


def test_no_secret_reached_the_masters_job_cache_or_log(cluster: Lab):
    secrets = [PILLAR["backup"]["s3"]["secret_key"], PILLAR["backup"]["pki_key"]]
    jobs = HOME / "cache" / "jobs"
    for path in [*jobs.rglob("*"), LOG, *(HOME / "cache" / "kubeha").rglob("*")]:
        if path.is_file():
            blob = path.read_bytes()
            for secret in secrets:
                assert secret.encode() not in blob, f"a secret is in {path}"
