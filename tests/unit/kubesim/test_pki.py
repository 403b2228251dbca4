"""kubeadm's PKI: SANs, CA pin, expiration table, upload-certs encryption."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from kubesim import pki
from kubesim.kubeadm import certs, cluster, copycerts
from kubesim.kubeadm.config import parse_documents
from kubesim.versions import Version

CFG = """apiVersion: kubeadm.k8s.io/v1beta3
kind: ClusterConfiguration
kubernetesVersion: v1.30.0
controlPlaneEndpoint: 198.18.0.10:8443
certificatesDir: PKI
---
apiVersion: kubeadm.k8s.io/v1beta3
kind: InitConfiguration
localAPIEndpoint: {advertiseAddress: 198.18.0.11}
nodeRegistration: {name: cp-1}
"""


def test_certificate_tree_and_expiration_table(tmp_path: Path):
    cfg = parse_documents(CFG.replace("PKI", str(tmp_path / "pki")), Version.parse("v1.30.0"))
    certs.create_cas(cfg.pki_dir)
    certs.create_leaves(cfg, lambda _line: None)
    dns, ips = pki.sans_of(pki.load_cert(cfg.pki_dir / "apiserver.crt"))
    assert {"cp-1", "kubernetes.default.svc.cluster.local"} <= set(dns)
    assert {"10.96.0.1", "198.18.0.11", "198.18.0.10"} <= set(ips)
    table = certs.check_expiration(cfg.pki_dir, tmp_path, Version.parse("v1.30.0"))
    lines = table.splitlines()
    assert lines[0].split() == [
        "CERTIFICATE",
        "EXPIRES",
        "RESIDUAL",
        "TIME",
        "CERTIFICATE",
        "AUTHORITY",
        "EXTERNALLY",
        "MANAGED",
    ]
    apiserver = next(line for line in lines if line.startswith("apiserver "))
    assert " 364d " in apiserver and " ca " in apiserver and apiserver.rstrip().endswith("no")
    assert any(line.startswith("!MISSING! admin.conf") for line in lines)
    ca = next(line for line in lines if line.startswith("etcd-ca "))
    assert " 9y " in ca


def test_ca_hash_is_sha256_of_spki(tmp_path: Path):
    cert, _ = pki.make_ca("kubernetes")
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert pki.ca_cert_hash(cert) == "sha256:" + hashlib.sha256(spki).hexdigest()


def test_upload_certs_round_trip_and_wrong_key():
    key = "ab" * 32
    blob = copycerts.encrypt(key, b"secret")
    assert copycerts.decrypt(key, blob) == b"secret"
    try:
        copycerts.decrypt("cd" * 32, blob)
    except Exception as err:  # noqa: BLE001
        assert "message authentication failed" in str(err)
    else:
        raise AssertionError("a wrong certificate key must not decrypt")
    # cmd/kubeadm/app/util/crypto/crypto.go EncryptBytes: gcm.Seal(nonce, nonce, data, nil),
    # i.e. a 12-byte random nonce, the ciphertext (as long as the data) and a 16-byte tag
    assert len(blob) == 12 + len(b"secret") + 16
    assert b"secret" not in blob
    again = copycerts.encrypt(key, b"secret")
    assert again[:12] != blob[:12] and again != blob  # a fresh nonce every time
    assert copycerts.decrypt(key, again) == b"secret"


def test_bootstrap_token_secret_shape():
    secret = cluster.token_secret(
        "abcdef.0123456789abcdef", 3600, ["signing", "authentication"], [cluster.DEFAULT_GROUP]
    )
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert secret["type"] == "bootstrap.kubernetes.io/token"
    assert secret["metadata"]["name"] == "bootstrap-token-abcdef"
    assert data["usage-bootstrap-authentication"] == "true"
    assert data["expiration"].endswith("Z")
