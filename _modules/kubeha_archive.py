"""
Backup files on a node: the PKI archive (encrypted before it exists anywhere), its check,
and fetching a backup object that the master made reachable for this minion only.

- ``pki`` tars ``/etc/kubernetes/pki`` in memory and writes it encrypted with AES-256-GCM
  under pillar ``kubeha:backup:pki_key`` (read here, from this minion's own pillar: the key
  is never an argument, so never in a job, an event or a log). The CA keys in it are never
  on a disk in clear.
- ``pki_verify`` decrypts an archive and lists what it holds (names only).
- ``fetch`` downloads an object from a URL that arrives sealed to this minion's key
  (``kubeha_sealed.seal`` on the master, purpose ``fetch``): a presigned GET that boto3
  signed on the master, so neither S3 credentials nor boto3 are needed here. Size and
  SHA-256 are checked before the file gets its final name.

Format and sealing: ``_utils/kubeha_sealed.py``.
"""

import hashlib
import io
import os
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from salt.exceptions import CommandExecutionError

__virtualname__ = "kubeha_archive"

PKI_DIR = "/etc/kubernetes/pki"
# What a kubeadm control plane cannot be rebuilt without (the rest can be re-issued).
CA_KEYS = ("ca.key", "sa.key", "front-proxy-ca.key", "etcd/ca.key")
READ_CHUNK = 1 << 20


def __virtual__():
    return __virtualname__


def _u(name: str):
    return __utils__[f"kubeha_sealed.{name}"]


def _key() -> bytes:
    # Salt 3008 masks pillar values pillar.get returns unless asked (salt.utils.secret).
    text = __salt__["pillar.get"]("kubeha:backup:pki_key", "", unmask=True)
    return _u("key_from_text")(text)


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` as a 0600 file, atomically (mkstemp, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def pki(path, context, pki_dir=PKI_DIR):
    """
    Archive ``pki_dir`` (tar.gz, in memory) and write it encrypted to ``path`` (0600),
    bound to ``context`` (e.g. ``lab/20260101T120000Z``). Returns names and sizes only.

    CLI Example:

    .. code-block:: bash

        salt cp-2 kubeha_archive.pki /var/lib/kubeha/backups/x/pki.tar.gz.enc lab/x
    """
    source = Path(pki_dir)
    if not source.is_dir():
        raise CommandExecutionError(f"no PKI directory at {source}")
    key = _key()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(str(source), arcname="pki")
        names = [m.name for m in tar.getmembers() if m.isfile()]
    blob = _u("encrypt")(buffer.getvalue(), key, str(context))
    target = Path(path)
    _write_private(target, blob)
    return {
        "path": str(target),
        "size": len(blob),
        "sha256": hashlib.sha256(blob).hexdigest(),
        "key_id": _u("key_id")(key),
        "files": len(names),
        "ca_keys": [k for k in CA_KEYS if f"pki/{k}" in names],
    }


def pki_verify(path, context=None):
    """
    Decrypt an archive made by ``pki`` with this minion's pillar key and list what it
    holds: refuses another key, another ``context``, or any altered byte.

    CLI Example:

    .. code-block:: bash

        salt cp-2 kubeha_archive.pki_verify /var/lib/kubeha/drill/x/pki.tar.gz.enc lab/x
    """
    blob = Path(path).read_bytes()
    clear, head = _u("decrypt")(blob, _key(), context)
    try:
        with tarfile.open(fileobj=io.BytesIO(clear), mode="r:gz") as tar:
            names = [m.name for m in tar.getmembers() if m.isfile()]
    except tarfile.TarError as err:
        raise CommandExecutionError(f"{path} decrypts but is not a tar.gz: {err}") from err
    return {
        "path": str(path),
        "context": head.get("context"),
        "key_id": head.get("key_id"),
        "files": len(names),
        "ca_keys": [k for k in CA_KEYS if f"pki/{k}" in names],
        "missing_ca_keys": [k for k in CA_KEYS if f"pki/{k}" not in names],
    }


def _private_key() -> bytes:
    pki_dir = Path(__opts__.get("pki_dir", "/etc/salt/pki/minion"))
    return (pki_dir / "minion.pem").read_bytes()


def fetch(sealed, dest, timeout=600):
    """
    Download what ``sealed`` names (a URL, its size and SHA-256, sealed for this minion)
    to ``dest`` (0600), within ``timeout`` seconds; refuse a size or checksum that differs.

    CLI Example:

    .. code-block:: bash

        salt cp-3 kubeha_archive.fetch "$SEALED" /var/lib/kubeha/drill/x/etcd.db
    """
    order = _u("unseal")(sealed, _private_key(), __opts__["id"], "fetch")
    target = Path(dest)
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    digest, size = hashlib.sha256(), 0
    started = time.monotonic()
    deadline = started + float(timeout)
    try:
        # The URL is a presigned S3 GET: the whole transfer is bounded by `timeout`, each
        # read by 60 s.
        with (
            os.fdopen(fd, "wb") as out,
            urllib.request.urlopen(order["url"], timeout=60) as resp,  # noqa: S310 - our master's URL
        ):
            while chunk := resp.read(READ_CHUNK):
                out.write(chunk)
                digest.update(chunk)
                size += len(chunk)
                if time.monotonic() > deadline:
                    raise CommandExecutionError(
                        f"fetching {order.get('name', dest)} took longer than {timeout} s"
                    )
        if size != int(order["size"]) or digest.hexdigest() != order["sha256"]:
            raise CommandExecutionError(
                f"{order.get('name', dest)}: got {size} bytes with sha256 "
                f"{digest.hexdigest()[:16]}..., expected {order['size']} bytes with "
                f"{order['sha256'][:16]}...: corrupt in storage or in transit"
            )
        os.replace(tmp, target)
    except (urllib.error.URLError, OSError) as err:
        # The URL itself carries a signature: say where, not what.
        raise CommandExecutionError(
            f"fetching {order.get('name', dest)} failed: {getattr(err, 'reason', err)}"
        ) from None
    finally:
        Path(tmp).unlink(missing_ok=True)
    return {
        "path": str(target),
        "size": size,
        "sha256": digest.hexdigest(),
        "seconds": round(time.monotonic() - started, 3),
    }
