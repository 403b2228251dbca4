"""The object-storage code paths against moto's S3 server on loopback: uploads verified by
the server's checksum (single part and multipart), our SHA-256 as metadata, sets listed by
manifest, a set deleted manifest first, presigned GETs, a server without flexible
checksums (`checksum: none`), and the backup runner's pruning over simulated weeks."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
from pathlib import Path

import pytest
from salt.exceptions import CommandExecutionError

from tests.khm_moto import ACCESS_KEY, SECRET_KEY, MotoS3
from tests.unit.modules.khm_load import load, utils

s3util = load("_utils", "kubeha_s3")
retention = load("_utils", "kubeha_retention")
backup_runner = load("_runners", "kubeha_backup")


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    server = MotoS3(tmp_path_factory.mktemp("moto") / "moto.log")
    yield server
    server.stop()


@pytest.fixture
def conn(moto):
    return s3util.client(moto.settings(), ACCESS_KEY, SECRET_KEY)


def _file(tmp_path: Path, name: str, size: int) -> tuple[Path, str]:
    path = tmp_path / name
    data = os.urandom(size)
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def test_small_upload_is_one_part_with_a_server_checksum(moto, conn, tmp_path):
    path, sha = _file(tmp_path, "pki.tar.gz.enc", 70_000)
    got = s3util.upload(
        conn,
        moto.settings(),
        "kubeha/t1/20260101T000000Z/pki.tar.gz.enc",
        str(path),
        {"sha256": sha},
    )
    assert got["multipart_parts"] == 0 and got["size"] == 70_000
    expected = base64.b64encode(hashlib.sha256(path.read_bytes()).digest()).decode()
    assert got["checksums"]["ChecksumSHA256"] == expected
    head = s3util.head(conn, moto.settings()["bucket"], got["key"])
    assert head["Metadata"] == {"sha256": sha}


def test_big_upload_goes_multipart_and_keeps_our_sha256(moto, conn, tmp_path):
    path, sha = _file(tmp_path, "etcd.db", 12 * 1024 * 1024 + 123)
    got = s3util.upload(
        conn,
        moto.settings(),
        "kubeha/t1/20260101T000000Z/etcd.db",
        str(path),
        {"sha256": sha, "revision": 42},
    )
    assert got["multipart_parts"] == 3  # 5 + 5 + 2 MiB
    assert "ChecksumSHA256" in got["checksums"]
    head = s3util.head(conn, moto.settings()["bucket"], got["key"])
    assert head["Metadata"] == {"sha256": sha, "revision": "42"}
    # A presigned GET (what the drill host fetches) returns the very bytes.
    import urllib.request

    url = s3util.presign_get(conn, moto.settings()["bucket"], got["key"], 60)
    assert "X-Amz-Signature" in url  # SigV4, which every current S3 region requires
    with urllib.request.urlopen(url, timeout=30) as resp:
        assert hashlib.sha256(resp.read()).hexdigest() == sha


def test_a_server_without_flexible_checksums(moto, tmp_path):
    settings = moto.settings(checksum="none")
    conn = s3util.client(settings, ACCESS_KEY, SECRET_KEY)
    path, sha = _file(tmp_path, "etcd.db", 1000)
    got = s3util.upload(
        conn, settings, "kubeha/t2/20260101T000000Z/etcd.db", str(path), {"sha256": sha}
    )
    assert got["size"] == 1000


def test_sets_are_complete_only_with_a_manifest_and_deleted_manifest_first(moto, conn, tmp_path):
    settings, bucket = moto.settings(), moto.settings()["bucket"]
    path, sha = _file(tmp_path, "etcd.db", 2000)
    for stamp in ("20260102T000000Z", "20260103T000000Z"):
        s3util.upload(conn, settings, f"kubeha/t3/{stamp}/etcd.db", str(path), {"sha256": sha})
    s3util.put_json(conn, settings, bucket, "kubeha/t3/20260102T000000Z/manifest.json", {"ok": 1})
    found = s3util.sets(conn, bucket, "kubeha/t3/")
    assert {s: e["complete"] for s, e in found.items()} == {
        "20260102T000000Z": True,
        "20260103T000000Z": False,
    }
    assert s3util.get_json(conn, bucket, "kubeha/t3/20260102T000000Z/manifest.json") == {"ok": 1}
    deleted = s3util.delete_set(
        conn, bucket, "kubeha/t3/", "20260102T000000Z", found["20260102T000000Z"]["objects"]
    )
    assert deleted == 2
    assert set(s3util.sets(conn, bucket, "kubeha/t3/")) == {"20260103T000000Z"}


def test_errors_name_the_operation_not_the_credentials(moto, tmp_path):
    settings = moto.settings(bucket="no-such-bucket")
    conn = s3util.client(settings, ACCESS_KEY, SECRET_KEY)
    path, sha = _file(tmp_path, "x", 10)
    with pytest.raises(CommandExecutionError, match="S3 upload of kubeha/x") as err:
        s3util.upload(conn, settings, "kubeha/x", str(path), {"sha256": sha})
    assert SECRET_KEY not in str(err.value)


# --- the runner's pruning, over three simulated weeks ----------------------------------


@pytest.fixture
def runner(moto, tmp_path):
    model = {
        "cluster": {"name": "t4"},
        "minions": ["cp-1"],
        "backup": {
            "s3": moto.settings(access_key="<redacted>", secret_key="<redacted>"),
            "keep_hourly": 24,
            "keep_daily": 7,
            "keep_weekly": 4,
        },
    }
    pillar = {"kubeha": {"backup": {"s3": {"access_key": ACCESS_KEY, "secret_key": SECRET_KEY}}}}
    events = []
    backup_runner.__salt__ = {
        "kubeha.model": lambda cluster, *a, **kw: model,
        "pillar.show_pillar": lambda minion: pillar,
        "event.send": lambda tag, data: events.append((tag, data)),
    }
    backup_runner.__utils__ = utils("kubeha_s3", "kubeha_retention", "kubeha_day2")
    backup_runner.__opts__ = {"cachedir": str(tmp_path / "cache")}
    backup_runner.events = events
    return backup_runner


def test_prune_keeps_what_the_retention_says_and_the_newest_verified(moto, conn, runner, tmp_path):
    settings, bucket = moto.settings(), moto.settings()["bucket"]
    path, sha = _file(tmp_path, "etcd.db", 100)
    now = dt.datetime.now(dt.UTC).replace(minute=7, second=0, microsecond=0)
    stamps = []
    for hour in range(0, 24 * 21, 5):  # a set every 5 hours for 3 weeks
        stamp = retention.format_stamp(now - dt.timedelta(hours=hour))
        stamps.append(stamp)
        s3util.upload(conn, settings, f"kubeha/t4/{stamp}/etcd.db", str(path), {"sha256": sha})
        # The newest set failed before its manifest (a broken upload); the rest are complete.
        if hour != 0:
            s3util.put_json(conn, settings, bucket, f"kubeha/t4/{stamp}/manifest.json", {})
    preview = runner.prune("t4", dry_run=True)
    assert preview["deleted"] == [] and len(preview["would_delete"]) > 0
    assert len(s3util.sets(conn, bucket, "kubeha/t4/")) == len(stamps)
    done = runner.prune("t4")
    left = s3util.sets(conn, bucket, "kubeha/t4/")
    expected = retention.plan(
        [{"stamp": s, "verified": s != stamps[0]} for s in stamps],
        hourly=24,
        daily=7,
        weekly=4,
        now=dt.datetime.now(dt.UTC),
    )
    assert sorted(left) == sorted(expected["keep"]) == sorted(done["kept"])
    assert stamps[1] in left, "the newest verified set was deleted"
    assert stamps[0] in left, "an incomplete set younger than an hour was deleted"
    assert set(done["deleted"]) == set(stamps) - set(left)
    record = json.loads((tmp_path / "cache/kubeha/day2/t4/prune.json").read_text())
    assert record["result"] is True and runner.events == []


def test_a_failed_prune_fires_an_event_and_is_recorded(moto, runner, tmp_path):
    runner.__salt__["kubeha.model"]("t4")["backup"]["s3"]["bucket"] = "no-such-bucket"
    out = runner.prune("t4")
    assert out["result"] is False and "no-such-bucket" in out["Error"] or "S3" in out["Error"]
    ((tag, data),) = runner.events
    assert tag == "kubeha/prune/t4/failed" and data["cluster"] == "t4"
    assert SECRET_KEY not in json.dumps(out) + json.dumps(data)
