"""
Object storage for etcd backups, through ``boto3`` only, on the master.

Layout of a cluster's backups (one *set* per run, its manifest written last)::

    <prefix>/<cluster>/<stamp>/etcd.db          the snapshot (etcdctl snapshot save)
    <prefix>/<cluster>/<stamp>/pki.tar.gz.enc   /etc/kubernetes/pki, AES-256-GCM
    <prefix>/<cluster>/<stamp>/manifest.json    what was verified: revision, hash, keys, sha256

Every object is uploaded with a flexible checksum the server verifies on receipt
(``ChecksumAlgorithm``: SHA256 by default; S3 stores it and returns it on ``HeadObject``
with ``ChecksumMode=ENABLED``), multipart above ``multipart_threshold_mb`` in parts of
``multipart_chunk_mb``, and our own SHA-256 of the whole file as metadata (``sha256``)
that the drill checks end to end. [AWS S3 user guide, "Checking object integrity";
boto3 ``TransferConfig``]

S3-compatible servers: ``endpoint`` (https URL), ``addressing_style: path`` where the
server has no virtual-host buckets (MinIO without a domain, Ceph RGW without
``rgw_dns_name``), ``checksum: none`` for servers that reject boto3's default integrity
headers (boto3 >= 1.36 sends CRC32 trailers by default; older MinIO and Ceph RGW before
Reef refuse them): then ``request_checksum_calculation: when_required``. docs/s3.md.

Loaded as ``__utils__["kubeha_s3.<name>"]`` by runners; boto3 is imported when used, so
minions (which never talk S3) load this file without it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from salt.exceptions import CommandExecutionError

MANIFEST = "manifest.json"
SNAPSHOT = "etcd.db"
PKI = "pki.tar.gz.enc"
MIB = 1024 * 1024


def _boto():
    try:
        import boto3  # noqa: PLC0415
        import botocore.config  # noqa: PLC0415
    except ImportError as err:
        raise CommandExecutionError(
            "kubeha backups need boto3 on the master (pip install -r requirements/s3.txt "
            "into the master's Python, e.g. salt-pip)"
        ) from err
    return boto3, botocore.config


def _errors():
    import boto3.exceptions  # noqa: PLC0415
    import botocore.exceptions  # noqa: PLC0415

    # S3Transfer wraps ClientError in S3UploadFailedError (a Boto3Error).
    return (
        botocore.exceptions.BotoCoreError,
        botocore.exceptions.ClientError,
        boto3.exceptions.Boto3Error,
    )


def client(s3: dict, access_key: str, secret_key: str):
    """A boto3 S3 client for the model's ``backup:s3`` and the pillar's credentials."""
    boto3, config = _boto()
    checksum = s3.get("checksum") or "SHA256"
    cfg = config.Config(
        signature_version="s3v4",
        region_name=s3.get("region") or None,
        connect_timeout=float(s3.get("timeout", 60)),
        read_timeout=float(s3.get("timeout", 60)),
        retries={"max_attempts": 5, "mode": "standard"},
        s3={"addressing_style": s3.get("addressing_style") or "auto"},
        request_checksum_calculation="when_required" if checksum == "none" else "when_supported",
        response_checksum_validation="when_required" if checksum == "none" else "when_supported",
    )
    verify = s3.get("ca_bundle") or bool(s3.get("verify_tls", True))
    return boto3.client(
        "s3",
        endpoint_url=s3.get("endpoint") or None,
        aws_access_key_id=access_key or None,
        aws_secret_access_key=secret_key or None,
        config=cfg,
        verify=verify,
    )


def cluster_prefix(s3: dict, cluster: str) -> str:
    prefix = (s3.get("prefix") or "").strip("/")
    return f"{prefix}/{cluster}/" if prefix else f"{cluster}/"


def _call(what: str, fun, *args, **kwargs):
    try:
        return fun(*args, **kwargs)
    except _errors() as err:
        raise CommandExecutionError(f"S3 {what}: {err}") from err


def _extra(s3: dict, metadata: dict | None) -> dict:
    extra: dict = {}
    if (s3.get("checksum") or "SHA256") != "none":
        extra["ChecksumAlgorithm"] = s3.get("checksum") or "SHA256"
    if s3.get("sse"):
        extra["ServerSideEncryption"] = s3["sse"]
        if s3["sse"] == "aws:kms" and s3.get("kms_key_id"):
            extra["SSEKMSKeyId"] = s3["kms_key_id"]
    if metadata:
        extra["Metadata"] = {k: str(v) for k, v in metadata.items()}
    return extra


def head(conn, bucket: str, key: str) -> dict | None:
    """HeadObject with the stored checksum, or None when there is no such object."""
    import botocore.exceptions  # noqa: PLC0415

    try:
        got = conn.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    except botocore.exceptions.ClientError as err:
        if err.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise CommandExecutionError(f"S3 head {key}: {err}") from err
    except botocore.exceptions.BotoCoreError as err:
        raise CommandExecutionError(f"S3 head {key}: {err}") from err
    return {k: v for k, v in got.items() if k != "ResponseMetadata"}


def upload(conn, s3: dict, key: str, path: str, metadata: dict) -> dict:
    """Upload a file (multipart above the threshold) and check what the server stored."""
    from boto3.s3.transfer import TransferConfig  # noqa: PLC0415

    size = Path(path).stat().st_size
    transfer = TransferConfig(
        multipart_threshold=int(float(s3["multipart_threshold_mb"]) * MIB),
        multipart_chunksize=int(float(s3["multipart_chunk_mb"]) * MIB),
        max_concurrency=4,
    )
    started = time.monotonic()
    _call(
        f"upload of {key}",
        conn.upload_file,
        str(path),
        s3["bucket"],
        key,
        ExtraArgs=_extra(s3, metadata),
        Config=transfer,
    )
    took = time.monotonic() - started
    stored = head(conn, s3["bucket"], key)
    if stored is None or int(stored.get("ContentLength", -1)) != size:
        raise CommandExecutionError(
            f"S3 upload of {key}: the server holds {stored and stored.get('ContentLength')} "
            f"bytes, the file has {size}"
        )
    checksums = {k: v for k, v in stored.items() if k.startswith("Checksum") and v}
    if (s3.get("checksum") or "SHA256") != "none" and not checksums:
        raise CommandExecutionError(
            f"S3 upload of {key}: the server stored no checksum; set "
            "kubeha:backup:s3:checksum: none for a server without flexible checksums"
        )
    parts = str(stored.get("ETag", "")).strip('"').partition("-")[2]
    return {
        "key": key,
        "size": size,
        "seconds": round(took, 3),
        "multipart_parts": int(parts) if parts.isdigit() else 0,
        "checksums": checksums,
    }


def put_json(conn, s3: dict, bucket: str, key: str, data: dict) -> None:
    body = json.dumps(data, indent=2, sort_keys=True, default=str).encode()
    extra = _extra(s3, None)
    _call(f"put {key}", conn.put_object, Bucket=bucket, Key=key, Body=body, **extra)


def get_json(conn, bucket: str, key: str) -> dict:
    got = _call(f"get {key}", conn.get_object, Bucket=bucket, Key=key)
    try:
        return json.loads(got["Body"].read())
    except ValueError as err:
        raise CommandExecutionError(f"S3 {key} is not JSON") from err


def sets(conn, bucket: str, prefix: str) -> dict[str, dict]:
    """{stamp: {"objects": {name: size}, "complete": manifest present}} under ``prefix``."""
    out: dict[str, dict] = {}
    paginator = conn.get_paginator("list_objects_v2")
    pages = _call(f"list {prefix}", lambda: list(paginator.paginate(Bucket=bucket, Prefix=prefix)))
    for page in pages:
        for obj in page.get("Contents") or []:
            rest = obj["Key"][len(prefix) :]
            stamp, _, name = rest.partition("/")
            if not name or "/" in name:
                continue
            entry = out.setdefault(stamp, {"objects": {}, "complete": False})
            entry["objects"][name] = obj["Size"]
            entry["complete"] = entry["complete"] or name == MANIFEST
    return out


def delete_set(conn, bucket: str, prefix: str, stamp: str, names) -> int:
    """Delete one set's objects; the manifest first, so a half-deleted set reads as
    incomplete (and is never chosen for a restore)."""
    ordered = sorted(names, key=lambda n: n != MANIFEST)
    keys = [f"{prefix}{stamp}/{name}" for name in ordered]
    if MANIFEST in ordered:
        _call(f"delete {keys[0]}", conn.delete_object, Bucket=bucket, Key=keys[0])
        keys = keys[1:]
    for start in range(0, len(keys), 1000):
        batch = [{"Key": k} for k in keys[start : start + 1000]]
        got = _call(
            f"delete {prefix}{stamp}",
            conn.delete_objects,
            Bucket=bucket,
            Delete={"Objects": batch, "Quiet": True},
        )
        if got.get("Errors"):
            raise CommandExecutionError(f"S3 delete {prefix}{stamp}: {got['Errors'][:3]}")
    return len(ordered)


def presign_get(conn, bucket: str, key: str, expires_s: int) -> str:
    return _call(
        f"presign {key}",
        conn.generate_presigned_url,
        "get_object",
        Params={"Bucket": bucket, "Key": key},
        ExpiresIn=int(expires_s),
    )
