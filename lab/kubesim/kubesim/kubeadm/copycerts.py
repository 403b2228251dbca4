"""copycerts (cmd/kubeadm/app/phases/copycerts/copycerts.go): Secret
kube-system/kubeadm-certs, each file AES-GCM encrypted with the certificate key (nonce
prepended, util/crypto), owned by a 2 h bootstrap token so it goes away with it; joining
control planes download and decrypt it.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .. import pki as pkimod
from ..kubeclient import ApiError, Client
from .cluster import create_token, new_token
from .config import Config
from .errors import KubeadmError

CERT_FILES = [
    "ca.crt",
    "ca.key",
    "sa.key",
    "sa.pub",
    "front-proxy-ca.crt",
    "front-proxy-ca.key",
    "etcd/ca.crt",
    "etcd/ca.key",
]


def encrypt(key_hex: str, data: bytes) -> bytes:
    key = bytes.fromhex(key_hex)
    nonce = os.urandom(12)
    return nonce + AESGCM(key).encrypt(nonce, data, None)


def decrypt(key_hex: str, data: bytes) -> bytes:
    try:
        key = bytes.fromhex(key_hex)
    except ValueError as err:
        raise KubeadmError(f"error decoding certificate key: {err}") from err
    try:
        return AESGCM(key).decrypt(data[:12], data[12:], None)
    except Exception as err:  # noqa: BLE001 - wrong key: cipher: message authentication failed
        raise KubeadmError(
            "error downloading the secret: error decoding secret data with provided "
            "key: cipher: message authentication failed"
        ) from err


def secret_key(name: str) -> str:
    return name.replace("/", "-")


def upload_certs(client: Client, cfg: Config, key_hex: str, out) -> None:
    """copycerts.UploadCerts: a 2 h token owns the kubeadm-certs Secret."""
    out(
        '[upload-certs] Storing the certificates in Secret "kubeadm-certs" in the "kube-system" Namespace'  # noqa: E501 - upstream's text
    )
    token = new_token()
    owner_secret = create_token(
        client,
        token,
        7200,
        usages=[],
        groups=[],
        description="Proxy for managing TTL for the kubeadm-certs secret",
    )
    data = {}
    for name in CERT_FILES:
        path = cfg.pki_dir / name
        if path.exists():
            data[secret_key(name)] = base64.b64encode(encrypt(key_hex, path.read_bytes())).decode()
    owner = {
        "apiVersion": "v1",
        "kind": "Secret",
        "name": owner_secret["metadata"]["name"],
        "uid": owner_secret["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    client.apply(
        "secrets",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {
                "name": "kubeadm-certs",
                "namespace": "kube-system",
                "ownerReferences": [owner],
            },
            "data": data,
        },
        "kube-system",
    )
    out("[upload-certs] Using certificate key:")
    out(key_hex)


def download_certs(client: Client, pki_dir: Path, key_hex: str, out) -> None:
    out(
        '[download-certs] Downloading the certificates in Secret "kubeadm-certs" in the '
        '"kube-system" Namespace'
    )
    try:
        secret = client.get("secrets", "kubeadm-certs", "kube-system")
    except ApiError as err:
        if err.status == 404:
            raise KubeadmError(
                "error downloading certs: error downloading the secret: Secret "
                '"kubeadm-certs" was not found in the "kube-system" Namespace. This '
                "Secret might have expired. Please, run `kubeadm init phase "
                "upload-certs --upload-certs` on a control plane to generate a new "
                "one"
            ) from err
        raise

    for name in CERT_FILES:
        blob = (secret.get("data") or {}).get(secret_key(name))
        if not blob:
            continue
        content = decrypt(key_hex, base64.b64decode(blob))
        target = pki_dir / name
        if name.endswith(".key"):
            pkimod.write_private(target, content)
        else:
            pkimod.write_public(target, content)
    out(f'[download-certs] Saving the certificates to the folder: "{pki_dir}"')
