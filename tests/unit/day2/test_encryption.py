"""The PKI archive at rest (AES-256-GCM under the pillar key, the CA keys never in clear)
and what the master hands one minion in transit (sealed to its key): _utils/kubeha_sealed.py
and _modules/kubeha_archive.py."""

import base64
import hashlib
import http.server
import os
import stat
import threading
import types
from pathlib import Path
from unittest.mock import patch

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from salt.exceptions import CommandExecutionError

from tests.unit.modules.khm_load import load, utils

sealed = load("_utils", "kubeha_sealed")
archive = load("_modules", "kubeha_archive")
UTILS = utils("kubeha_sealed")
KEY_TEXT = base64.b64encode(b"k" * 32).decode()
OTHER_KEY_TEXT = base64.b64encode(b"o" * 32).decode()
CA_KEY = (
    b"-----BEGIN RSA PRIVATE KEY-----\nTHE-CLUSTER-CA-KEY-MATERIAL\n-----END RSA PRIVATE KEY-----\n"
)


def _keypair(directory: Path) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "minion.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@pytest.fixture
def pki(tmp_path) -> Path:
    root = tmp_path / "pki"
    (root / "etcd").mkdir(parents=True)
    for name in ("ca.key", "sa.key", "front-proxy-ca.key", "etcd/ca.key"):
        (root / name).write_bytes(CA_KEY)
    (root / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n")
    return root


@pytest.fixture
def pillar_key():
    return {"value": KEY_TEXT}


@pytest.fixture
def configure_loader_modules(tmp_path, pillar_key):
    def pillar_get(key, default="", unmask=False):
        # Salt 3008's pillar.get masks values unless unmask=True (salt.utils.secret).
        return pillar_key["value"] if unmask else "**********"

    salt = {"pillar.get": pillar_get}
    opts = {"id": "cp-3", "pki_dir": str(tmp_path / "minion-pki")}
    return {archive: {"__salt__": salt, "__utils__": UTILS, "__opts__": opts}}


# --- at rest --------------------------------------------------------------------------


def test_round_trip_binds_key_and_context():
    key = sealed.key_from_text(KEY_TEXT)
    blob = sealed.encrypt(b"secret tar", key, "lab/20260101T000000Z")
    clear, head = sealed.decrypt(blob, key, "lab/20260101T000000Z")
    assert clear == b"secret tar"
    assert head["key_id"] == sealed.key_id(key) and KEY_TEXT not in blob.decode(errors="ignore")
    with pytest.raises(CommandExecutionError, match="belongs to 'lab/20260101T000000Z'"):
        sealed.decrypt(blob, key, "lab/20260102T000000Z")
    other = sealed.key_from_text(OTHER_KEY_TEXT)
    with pytest.raises(CommandExecutionError, match=f"encrypted with key {sealed.key_id(key)}"):
        sealed.decrypt(blob, other)


@pytest.mark.parametrize("damage", ["flip", "truncate", "header"])
def test_any_altered_byte_is_refused(damage):
    key = sealed.key_from_text(KEY_TEXT)
    blob = bytearray(sealed.encrypt(os.urandom(4096), key, "lab/x"))
    if damage == "flip":
        blob[-100] ^= 0x01
    elif damage == "truncate":
        blob = blob[:-17]
    else:  # the context in the clear header, rewritten: the tag covers it
        blob = bytearray(bytes(blob).replace(b'"context": "lab/x"', b'"context": "lab/y"'))
    with pytest.raises(CommandExecutionError, match="altered or truncated"):
        sealed.decrypt(bytes(blob), key)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "not set"),
        ("not base64!", "not base64"),
        (base64.b64encode(b"x" * 16).decode(), "16 bytes"),
    ],
)
def test_bad_keys_are_refused_with_the_reason(text, why):
    with pytest.raises(CommandExecutionError, match=why):
        sealed.key_from_text(text)


def test_pki_archive_holds_no_key_in_clear_and_lists_the_ca_keys(pki, tmp_path):
    out = archive.pki(str(tmp_path / "set" / "pki.tar.gz.enc"), "lab/s1", pki_dir=str(pki))
    path = Path(out["path"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = path.read_bytes()
    assert b"THE-CLUSTER-CA-KEY-MATERIAL" not in data and b"PRIVATE KEY" not in data
    assert out["sha256"] == hashlib.sha256(data).hexdigest()
    assert set(out["ca_keys"]) == {"ca.key", "sa.key", "front-proxy-ca.key", "etcd/ca.key"}
    assert KEY_TEXT not in str(out)
    checked = archive.pki_verify(out["path"], "lab/s1")
    assert checked["missing_ca_keys"] == [] and checked["files"] == 5
    # No stray clear file next to it (the tar only ever existed in memory).
    assert [p.name for p in path.parent.iterdir()] == ["pki.tar.gz.enc"]


def test_pki_verify_with_another_pillar_key_says_which_key_it_needs(pki, tmp_path, pillar_key):
    out = archive.pki(str(tmp_path / "pki.tar.gz.enc"), "lab/s1", pki_dir=str(pki))
    pillar_key["value"] = OTHER_KEY_TEXT
    with pytest.raises(CommandExecutionError, match=f"encrypted with key {out['key_id']}"):
        archive.pki_verify(out["path"], "lab/s1")


# --- in transit -----------------------------------------------------------------------


def test_sealed_data_opens_only_for_its_minion_and_purpose(tmp_path):
    pem = _keypair(tmp_path / "cp-3")
    _keypair(tmp_path / "cp-2")
    blob = sealed.seal({"url": "https://s3/x?sig=abc"}, pem, "cp-3", "fetch", 60)
    private = (tmp_path / "cp-3" / "minion.pem").read_bytes()
    assert sealed.unseal(blob, private, "cp-3", "fetch") == {"url": "https://s3/x?sig=abc"}
    assert "sig=abc" not in base64.b64decode(blob).decode()
    with pytest.raises(CommandExecutionError, match="not sealed for cp-2"):
        sealed.unseal(blob, (tmp_path / "cp-2" / "minion.pem").read_bytes(), "cp-2", "fetch")
    with pytest.raises(CommandExecutionError, match="not sealed for cp-3"):
        sealed.unseal(blob, private, "cp-3", "join")
    expired = sealed.seal({"url": "x"}, pem, "cp-3", "fetch", -1)
    with pytest.raises(CommandExecutionError, match="expired"):
        sealed.unseal(expired, private, "cp-3", "fetch")


class _Files(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def http_dir(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    handler = lambda *a, **kw: _Files(*a, directory=str(root), **kw)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_fetch_checks_size_and_checksum_and_never_says_the_url(tmp_path, http_dir):
    root, base = http_dir
    data = os.urandom(300_000)
    (root / "etcd.db").write_bytes(data)
    pem = _keypair(tmp_path / "minion-pki")
    url = f"{base}/etcd.db?X-Amz-Signature=deadbeef"
    order = {
        "url": url,
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
        "name": "etcd.db",
    }
    dest = tmp_path / "drill" / "etcd.db"
    got = archive.fetch(sealed.seal(order, pem, "cp-3", "fetch", 60), str(dest))
    assert dest.read_bytes() == data and got["sha256"] == order["sha256"]
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    bad = dict(order, sha256="0" * 64)
    dest.unlink()
    with pytest.raises(CommandExecutionError, match="corrupt in storage or in transit") as err:
        archive.fetch(sealed.seal(bad, pem, "cp-3", "fetch", 60), str(dest))
    assert "deadbeef" not in str(err.value) and not dest.exists()
    assert not list(dest.parent.glob(".etcd.db.*")), "a partial download was left behind"
    missing = dict(order, url=f"{base}/nothing?X-Amz-Signature=deadbeef")
    with pytest.raises(CommandExecutionError, match="fetching etcd.db failed") as err:
        archive.fetch(sealed.seal(missing, pem, "cp-3", "fetch", 60), str(dest))
    assert "deadbeef" not in str(err.value)


def test_fetch_is_bounded_in_time(tmp_path, http_dir):
    root, base = http_dir
    (root / "big").write_bytes(b"x" * (4 << 20))
    pem = _keypair(tmp_path / "minion-pki")
    order = {"url": f"{base}/big", "sha256": "0" * 64, "size": 4 << 20, "name": "big"}
    ticks = iter([0.0, 0.0, *[10.0] * 10000])  # the clock jumps past the bound at once
    clock = types.SimpleNamespace(monotonic=lambda: next(ticks))
    with (
        patch.object(archive, "READ_CHUNK", 1024),
        patch.object(archive, "time", clock),
        pytest.raises(CommandExecutionError, match="took longer than 5 s"),
    ):
        archive.fetch(sealed.seal(order, pem, "cp-3", "fetch", 60), str(tmp_path / "big"), 5)
