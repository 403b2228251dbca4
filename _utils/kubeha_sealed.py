"""
Encryption for day-2 data that leaves a node: the PKI archive at rest, and what the master
hands one minion in transit.

**At rest** (the PKI archive in object storage): AES-256-GCM under the key in pillar
``kubeha:backup:pki_key`` (base64 of 32 random bytes). The file is::

    KUBEHA-AESGCM-1\\n
    {"v": 1, "alg": "A256GCM", "key_id": "<16 hex>", "nonce": "<b64>", "context": "..."}\\n
    <ciphertext + 16-byte tag>

The two header lines are the AEAD's associated data, so neither the context (the cluster
and backup it belongs to) nor the key id can be swapped without failing the tag. The key
id is a hash of the key, not the key: a restore with the wrong key says which key it needs.
The clear archive exists only in the node's memory (CA keys are never written in clear).

**In transit** (a presigned URL for one minion): RSA-OAEP-SHA256 wraps a fresh AES-256-GCM
key for the minion's public key as the master accepted it; the minion id, a purpose and an
expiry are inside and in the associated data. Publications reach every minion; only the
recipient can open this.

Loaded as ``__utils__["kubeha_sealed.<name>"]``; the ``cryptography`` package is imported
when used (it is a Salt dependency, present on every minion and master).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import time

from salt.exceptions import CommandExecutionError

MAGIC = b"KUBEHA-AESGCM-1\n"
KEY_BYTES = 32
SEAL_AAD = b"kubeha-sealed-v1"


def key_from_text(text) -> bytes:
    """The 32-byte key from its base64 text (pillar), or CommandExecutionError."""
    if not isinstance(text, str) or not text:
        raise CommandExecutionError(
            "kubeha:backup:pki_key is not set: generate one with `openssl rand -base64 32` "
            "and keep it in an encrypted pillar (and somewhere outside the cluster)"
        )
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as err:
        raise CommandExecutionError("kubeha:backup:pki_key is not base64") from err
    if len(key) != KEY_BYTES:
        raise CommandExecutionError(
            f"kubeha:backup:pki_key decodes to {len(key)} bytes; AES-256 needs {KEY_BYTES}"
        )
    return key


def key_id(key: bytes) -> str:
    """A name for the key that reveals nothing about it."""
    return hashlib.sha256(b"kubeha-key-id:" + key).hexdigest()[:16]


def encrypt(clear: bytes, key: bytes, context: str) -> bytes:
    """The archive format above, for ``clear`` bound to ``context``."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: PLC0415

    nonce = os.urandom(12)
    header = json.dumps(
        {
            "v": 1,
            "alg": "A256GCM",
            "key_id": key_id(key),
            "nonce": base64.b64encode(nonce).decode(),
            "context": context,
        },
        sort_keys=True,
    ).encode()
    aad = MAGIC + header + b"\n"
    return aad + AESGCM(key).encrypt(nonce, clear, aad)


def header(blob: bytes) -> dict:
    """The clear header of an archive (key id, context), without decrypting."""
    if not blob.startswith(MAGIC):
        raise CommandExecutionError("not a kubeha encrypted archive (no KUBEHA-AESGCM-1 header)")
    end = blob.find(b"\n", len(MAGIC))
    if end < 0:
        raise CommandExecutionError("truncated kubeha encrypted archive (no header line)")
    try:
        return json.loads(blob[len(MAGIC) : end])
    except ValueError as err:
        raise CommandExecutionError("corrupt kubeha encrypted archive header") from err


def decrypt(blob: bytes, key: bytes, context: str | None = None) -> tuple[bytes, dict]:
    """(clear, header); refuses another key, another context, or any altered byte."""
    from cryptography.exceptions import InvalidTag  # noqa: PLC0415
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: PLC0415

    head = header(blob)
    if head.get("key_id") != key_id(key):
        raise CommandExecutionError(
            f"the archive was encrypted with key {head.get('key_id')}, pillar's "
            f"kubeha:backup:pki_key is {key_id(key)}: restore with the key it was made with"
        )
    if context is not None and head.get("context") != context:
        raise CommandExecutionError(
            f"the archive belongs to {head.get('context')!r}, not {context!r}"
        )
    split = blob.index(b"\n", len(MAGIC)) + 1
    try:
        clear = AESGCM(key).decrypt(base64.b64decode(head["nonce"]), blob[split:], blob[:split])
    except (InvalidTag, KeyError, ValueError) as err:
        raise CommandExecutionError(
            "the archive does not decrypt: it was altered or truncated"
        ) from err
    return clear, head


def seal(payload: dict, recipient_pem: str, recipient_id: str, purpose: str, lifetime_s: float):
    """``payload`` for minion ``recipient_id`` and ``purpose`` only, for ``lifetime_s``."""
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import padding  # noqa: PLC0415
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: PLC0415

    clear = dict(payload, recipient=recipient_id, purpose=purpose, expires=time.time() + lifetime_s)
    key = AESGCM.generate_key(bit_length=256)
    nonce = os.urandom(12)
    aad = SEAL_AAD + f":{purpose}:{recipient_id}".encode()
    try:
        pub = serialization.load_pem_public_key(recipient_pem.encode())
    except ValueError as err:
        raise CommandExecutionError(f"not a public key for {recipient_id}: {err}") from err
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    blob = {
        "v": 1,
        "for": recipient_id,
        "key": base64.b64encode(pub.encrypt(key, oaep)).decode(),
        "nonce": base64.b64encode(nonce).decode(),
        "ct": base64.b64encode(
            AESGCM(key).encrypt(nonce, json.dumps(clear).encode(), aad)
        ).decode(),
    }
    return base64.b64encode(json.dumps(blob).encode()).decode()


def unseal(sealed: str, private_pem: bytes, minion_id: str, purpose: str) -> dict:
    """Open what ``seal`` made for this minion and purpose; refuse anything else or expired."""
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import padding  # noqa: PLC0415
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: PLC0415

    aad = SEAL_AAD + f":{purpose}:{minion_id}".encode()
    try:
        blob = json.loads(base64.b64decode(sealed))
        priv = serialization.load_pem_private_key(private_pem, password=None)
        oaep = padding.OAEP(
            mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None
        )
        key = priv.decrypt(base64.b64decode(blob["key"]), oaep)
        clear = json.loads(
            AESGCM(key).decrypt(base64.b64decode(blob["nonce"]), base64.b64decode(blob["ct"]), aad)
        )
    except Exception as err:  # noqa: BLE001 - any failure means: not for us, or altered
        raise CommandExecutionError(
            f"cannot open the sealed {purpose} data: not sealed for {minion_id}'s key"
        ) from err
    if clear.pop("recipient", None) != minion_id or clear.pop("purpose", None) != purpose:
        raise CommandExecutionError(f"the sealed {purpose} data is not for {minion_id}")
    if clear.pop("expires", 0) < time.time():
        raise CommandExecutionError(f"the sealed {purpose} data has expired; run it again")
    return clear
