"""The lab's object store: moto's standalone S3 server on the bridge, one tracked process.

http://198.18.0.1:9000, bound to the bridge address only (like the apt mirror), started in
the kha-services cgroup so `down` finds it, data in memory (gone with the process). `up`
creates the lab's bucket with the lab's own credentials, the ones pillar/kubeha/day2-lab.sls
gives the cluster (the master's runners are its only client: kubeha backs up through the
master). moto does not check signatures unless told to, so a wrong key is not refused here
as AWS, MinIO or Ceph RGW would refuse it; docs/lab.md says so.

moto[server] comes from requirements/s3-lab.txt (make venv). Without it `up` says so and goes
on without an object store: only the day-2 tests need one.
"""

from __future__ import annotations

import importlib.util
import socket
import sys

from lab import cgroups, procs
from lab.config import HOST_IP, S3_PORT, SERVICES_CGROUP, STATE
from lab.run import LabError, wait_for

ENDPOINT = f"http://{HOST_IP}:{S3_PORT}"
# The lab cluster's object storage, as pillar/kubeha/day2-lab.sls names it.
BUCKET = "kubeha-lab"
REGION = "us-east-1"
ACCESS_KEY = "kubeha-lab-access"
SECRET_KEY = "kubeha-lab-secret-0123456789"


def available() -> bool:
    """Whether moto's server and boto3 are installed in the lab's Python."""
    return all(importlib.util.find_spec(m) is not None for m in ("moto", "flask", "boto3"))


def serving() -> bool:
    try:
        with socket.create_connection((HOST_IP, S3_PORT), timeout=1):
            return True
    except OSError:
        return False


def client():
    import boto3  # noqa: PLC0415 - only with the object store

    return boto3.client(
        "s3",
        endpoint_url=ENDPOINT,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )


def ensure_bucket() -> None:
    s3 = client()
    names = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    if BUCKET not in names:
        s3.create_bucket(Bucket=BUCKET)


def start() -> procs.Tracked:
    if serving():
        raise LabError(f"something already listens on {HOST_IP}:{S3_PORT}; `python -m lab down`")
    cgroups.create(SERVICES_CGROUP)
    argv = [sys.executable, "-m", "moto.server", "-H", HOST_IP, "-p", str(S3_PORT)]
    proc = procs.spawn(
        "s3-moto",
        argv,
        STATE / "logs" / "s3-moto.log",
        before_exec=cgroups.joiner(SERVICES_CGROUP),
    )
    wait_for(serving, timeout=60, what=f"the S3 server on {HOST_IP}:{S3_PORT}")
    ensure_bucket()
    return proc
