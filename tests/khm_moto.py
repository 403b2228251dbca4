"""moto's standalone S3 server on loopback for the S3 code paths (no network, no root):
started by PID, stopped by PID; one bucket; the client kubeha's own util builds."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

BUCKET = "kubeha-test"
ACCESS_KEY = "khm-access"
SECRET_KEY = "khm-secret-key-0123456789"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MotoS3:
    def __init__(self, log: Path) -> None:
        pytest.importorskip("moto", reason="moto[server] (requirements/s3.txt) is not installed")
        self.port = _free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log = log.open("ab")
        self.proc = subprocess.Popen(  # noqa: S603 - our interpreter, argument list
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    break
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"moto exited: {log.read_text()[-800:]}") from None
                time.sleep(0.2)
        else:
            self.stop()
            raise RuntimeError("moto did not listen within 60 s")
        self.raw().create_bucket(Bucket=BUCKET)

    def settings(self, **extra) -> dict:
        """The model's backup:s3 for this server (the defaults.yaml values otherwise)."""
        return {
            "endpoint": self.endpoint,
            "region": "us-east-1",
            "bucket": BUCKET,
            "prefix": "kubeha",
            "addressing_style": "path",
            "verify_tls": True,
            "ca_bundle": "",
            "checksum": "SHA256",
            "sse": "",
            "kms_key_id": "",
            "multipart_threshold_mb": 5,
            "multipart_chunk_mb": 5,
            "timeout": 30,
            **extra,
        }

    def raw(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()
