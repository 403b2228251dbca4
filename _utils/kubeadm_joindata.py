"""
Join secrets at rest and in transit: the init node's ``join-data.json`` and the sealed
blob that carries a token (and a certificate key) to exactly one joining minion.

At rest: ``<kubeadm config dir>/join-data.json``, mode 0600 (mkstemp), written atomically,
removed by ``kubeadm.forget_join_secrets`` after the last join.

In transit: RSA-OAEP-SHA256 wraps a fresh AES-256-GCM key, sealed to the joining minion's
public key *as accepted by the master* (its PKI, not what the minion says); the clear text
names the recipient's minion id and an expiry, both checked by the opener, and the minion
id is bound into the AEAD's associated data. Only ciphertext reaches job returns, the event
bus and logs.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
import time
from pathlib import Path

from salt.exceptions import CommandExecutionError

FILE_NAME = "join-data.json"
AAD = b"kubeadm-join-v2"
# A sealed blob is opened within minutes of being made (the runner hands it on at once).
SEALED_LIFETIME_S = 900


def path(config_dir) -> Path:
    return Path(config_dir) / FILE_NAME


def load(config_dir) -> dict | None:
    try:
        return json.loads(path(config_dir).read_text())
    except (OSError, ValueError):
        return None


def store(config_dir, data: dict) -> None:
    directory = Path(config_dir)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".join-data-")
    with os.fdopen(fd, "w") as fh:  # mkstemp creates it 0600
        json.dump(data, fh)
    os.replace(tmp, path(config_dir))


def public(data: dict) -> dict:
    """What may be shown of join data: endpoint, CA pins, token ID, expiries."""
    return {
        "endpoint": data.get("endpoint"),
        "ca_cert_hashes": data.get("ca_cert_hashes", []),
        "token_id": data.get("token", "").split(".")[0],
        "has_certificate_key": bool(data.get("certificate_key")),
        "certificate_key_expires": data.get("certificate_key_expires"),
        "token_expires": data.get("token_expires"),
    }


def seal(payload: dict, recipient_pem: str, recipient_id: str, now: float | None = None) -> str:
    """``payload`` for minion ``recipient_id`` only, valid for SEALED_LIFETIME_S."""
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import padding  # noqa: PLC0415
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: PLC0415

    expires = (time.time() if now is None else now) + SEALED_LIFETIME_S
    clear = dict(payload, recipient=recipient_id, expires=expires)
    key = AESGCM.generate_key(bit_length=256)
    nonce = os.urandom(12)
    sealed = AESGCM(key).encrypt(nonce, json.dumps(clear).encode(), AAD + recipient_id.encode())
    try:
        pub = serialization.load_pem_public_key(recipient_pem.encode())
    except ValueError as err:
        raise CommandExecutionError(f"not a public key for {recipient_id}: {err}") from err
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    blob = {
        "v": 2,
        "alg": "RSA-OAEP-256+A256GCM",
        "for": recipient_id,
        "key": base64.b64encode(pub.encrypt(key, oaep)).decode(),
        "nonce": base64.b64encode(nonce).decode(),
        "ct": base64.b64encode(sealed).decode(),
    }
    return base64.b64encode(json.dumps(blob).encode()).decode()


def unseal(sealed: str, private_pem: bytes, minion_id: str, now: float | None = None) -> dict:
    """Open a blob sealed for ``minion_id``; refuse one for another minion or expired."""
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import padding  # noqa: PLC0415
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: PLC0415

    try:
        blob = json.loads(base64.b64decode(sealed))
        priv = serialization.load_pem_private_key(private_pem, password=None)
        oaep = padding.OAEP(
            mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None
        )
        key = priv.decrypt(base64.b64decode(blob["key"]), oaep)
        clear = AESGCM(key).decrypt(
            base64.b64decode(blob["nonce"]),
            base64.b64decode(blob["ct"]),
            AAD + minion_id.encode(),
        )
        secret = json.loads(clear)
    except Exception as err:  # any failure means: not for us, or tampered with
        raise CommandExecutionError(
            f"cannot open the sealed join data: not sealed for {minion_id}'s key"
        ) from err
    if secret.pop("recipient", None) != minion_id:
        raise CommandExecutionError(f"the sealed join data is not for {minion_id}")
    if secret.pop("expires", 0) < (time.time() if now is None else now):
        raise CommandExecutionError(
            "the sealed join data has expired; run the join again (orch.bootstrap) for a fresh one"
        )
    return secret
