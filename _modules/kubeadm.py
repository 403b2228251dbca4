"""
kubeadm: init, join, tokens, upgrades and config validation on a node.

Secrets. ``kubeadm init`` prints a bootstrap token and, with ``--upload-certs``, the
certificate key that decrypts the ``kubeadm-certs`` Secret: together they let anyone
join a control plane. They never reach a log, a job return or an argument list here:

- every kubeadm call that prints or takes them runs with ``output_loglevel=quiet``;
  what is returned or raised has them replaced by ``<redacted>``;
- init keeps them in ``/etc/kubernetes/kubeadm/join-data.json`` (0600, root);
- they travel to a joining node sealed to that node's own Salt minion key
  (RSA-OAEP-SHA256 wrapping an AES-256-GCM key): ``kubeadm_join.recipient`` on the
  joiner gives its public key, ``kubeadm.join_data`` on the first control plane seals
  for it, ``kubeadm_join.join`` on the joiner opens it with ``minion.pem``. The job
  cache and the event bus only ever see ciphertext that one minion can read. The join
  itself reads a 0600 JoinConfiguration file, so the token is not in
  ``/proc/<pid>/cmdline`` either.

The joining side is ``kubeadm_join``; upgrades ``kubeadm_upgrade``; certificates
``kubeadm_certs``.

Paths follow kubeadm's layout: config ``/etc/kubernetes/kubeadm/kubeadm-config.yaml``,
PKI ``/etc/kubernetes/pki``, admin kubeconfig ``/etc/kubernetes/admin.conf``.
"""

import base64
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

from salt.exceptions import CommandExecutionError

__virtualname__ = "kubeadm"

KUBEADM_DIR = Path("/etc/kubernetes/kubeadm")
CONFIG = KUBEADM_DIR / "kubeadm-config.yaml"
JOIN_DATA = KUBEADM_DIR / "join-data.json"
PKI = Path("/etc/kubernetes/pki")
ADMIN_CONF = Path("/etc/kubernetes/admin.conf")
KUBELET_CONF = Path("/etc/kubernetes/kubelet.conf")
MANIFESTS = Path("/etc/kubernetes/manifests")
# kubeadm deletes the kubeadm-certs Secret after 2 h (FACTS 11); keep a margin.
CERT_KEY_LIFETIME_S = 2 * 3600 - 600
TOKEN_RE = re.compile(r"\b([a-z0-9]{6})\.[a-z0-9]{16}\b")
CERT_KEY_RE = re.compile(r"(--certificate-key[ =]|certificate key:\s*)([a-f0-9]{64})")


def __virtual__():
    if shutil.which("kubeadm"):
        return __virtualname__
    return (False, "kubeadm module: the kubeadm binary is not installed")


def redact(text):
    """
    Replace bootstrap tokens' secret half and certificate keys with ``<redacted>``.

    CLI Example:

    .. code-block:: bash

        salt 'cp-1' kubeadm.redact "kubeadm join 198.18.0.10:8443 --token abcdef.0123456789abcdef"
    """
    text = TOKEN_RE.sub(lambda m: f"{m.group(1)}.<redacted>", text or "")
    text = CERT_KEY_RE.sub(lambda m: f"{m.group(1)}<redacted>", text)
    # A bare 64-hex line is a certificate key ("Using certificate key:\n<key>"); CA pins
    # are sha256:<hex> and public.
    return re.sub(r"(?<!sha256:)\b[a-f0-9]{64}\b", "<redacted>", text)


def _kubeadm(args: list[str], *, timeout: int = 600, secret: bool = False) -> str:
    """Run kubeadm; raise with its (redacted) stderr. secret=True keeps it out of logs."""
    res = __salt__["cmd.run_all"](
        ["kubeadm", *args],
        python_shell=False,
        timeout=timeout,
        ignore_retcode=True,
        output_loglevel="quiet" if secret else "debug",
    )
    if res["retcode"] != 0:
        err = redact((res["stderr"] or res["stdout"]).strip())
        what = " ".join(a for a in args[:3] if not a.startswith("-"))
        raise CommandExecutionError(f"kubeadm {what} failed: {err}")
    return res["stdout"]


def version():
    """
    kubeadm's own version (``kubeadm version -o short``), e.g. ``v1.30.0``.

    CLI Example:

    .. code-block:: bash

        salt 'cp-*' kubeadm.version
    """
    return _kubeadm(["version", "-o", "short"], timeout=30).strip()


def config_validate(config=str(CONFIG)):
    """
    Validate a kubeadm config file against this kubeadm's API (``kubeadm config validate``).

    Returns ``{"valid": True}`` or raises with kubeadm's complaint (e.g. v1beta4 on 1.30).

    CLI Example:

    .. code-block:: bash

        salt 'cp-1' kubeadm.config_validate /etc/kubernetes/kubeadm/kubeadm-config.yaml
    """
    out = _kubeadm(["config", "validate", "--config", str(config)], timeout=60)
    return {"valid": True, "config": str(config), "output": out.strip()}


# --- join data --------------------------------------------------------------------------


def _parse_join_commands(stdout: str) -> dict:
    """
    Join parameters from ``kubeadm init`` / ``token create --print-join-command`` output.

    The command is rendered by kubeadm's joinCommandTemplate
    (cmd/kubeadm/app/cmd/util/join.go): ``kubeadm join HOST:PORT --token T \\`` then
    ``--discovery-token-ca-cert-hash sha256:H`` and, for control planes,
    ``--control-plane --certificate-key K``, continued over lines with backslashes.
    """
    flat = re.sub(r"[ \t]*\\[ \t]*\n\s*", " ", stdout)
    joins = re.findall(r"kubeadm join (\S+) --token (\S+)((?: --?[\w-]+(?: [^\s-]\S*)?)*)", flat)
    if not joins:
        raise CommandExecutionError("no `kubeadm join` command in kubeadm's output")
    out: dict = {"endpoint": joins[0][0], "token": joins[0][1], "ca_cert_hashes": []}
    for _, _, rest in joins:
        out["ca_cert_hashes"] += [
            h
            for h in re.findall(r"--discovery-token-ca-cert-hash (\S+)", rest)
            if h not in out["ca_cert_hashes"]
        ]
        if m := re.search(r"--certificate-key ([a-f0-9]{64})", rest):
            out["certificate_key"] = m.group(1)
    return out


def ca_cert_hash(ca_file=str(PKI / "ca.crt")):
    """
    ``sha256:<hex>`` of the CA's SubjectPublicKeyInfo, as kubeadm pins it
    (cmd/kubeadm/app/util/pubkeypin: sha256 over the DER SPKI).

    CLI Example:

    .. code-block:: bash

        salt 'cp-1' kubeadm.ca_cert_hash
    """
    from cryptography import x509  # noqa: PLC0415
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    cert = x509.load_pem_x509_certificate(Path(ca_file).read_bytes())
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256:" + hashlib.sha256(spki).hexdigest()


def _store_join_data(data: dict) -> None:
    KUBEADM_DIR.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=KUBEADM_DIR, prefix=".join-data-")
    with os.fdopen(fd, "w") as fh:  # mkstemp creates it 0600
        json.dump(data, fh)
    os.replace(tmp, JOIN_DATA)


def _public(data: dict) -> dict:
    """What may be shown of join data: endpoint, CA hashes, token ID, expiries."""
    return {
        "endpoint": data.get("endpoint"),
        "ca_cert_hashes": data.get("ca_cert_hashes", []),
        "token_id": data.get("token", "").split(".")[0],
        "has_certificate_key": bool(data.get("certificate_key")),
        "certificate_key_expires": data.get("certificate_key_expires"),
        "token_expires": data.get("token_expires"),
    }


def _load_join_data() -> dict | None:
    try:
        return json.loads(JOIN_DATA.read_text())
    except (OSError, ValueError):
        return None


def _seal(payload: dict, recipient_pem: str) -> str:
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import padding  # noqa: PLC0415
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: PLC0415

    key = AESGCM.generate_key(bit_length=256)
    nonce = os.urandom(12)
    sealed = AESGCM(key).encrypt(nonce, json.dumps(payload).encode(), b"kubeadm-join-v1")
    pub = serialization.load_pem_public_key(recipient_pem.encode())
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    blob = {
        "v": 1,
        "alg": "RSA-OAEP-256+A256GCM",
        "key": base64.b64encode(pub.encrypt(key, oaep)).decode(),
        "nonce": base64.b64encode(nonce).decode(),
        "ct": base64.b64encode(sealed).decode(),
    }
    return base64.b64encode(json.dumps(blob).encode()).decode()


def _token_expiring(data: dict, now: float) -> bool:
    # Missing or under 10 min left; None is a token made with ttl 0, which never expires.
    return "token_expires" not in data or (
        data["token_expires"] is not None and data["token_expires"] < now + 600
    )


def _fresh_join_data(control_plane: bool) -> dict:
    """Stored join data, renewing the token and certificate key when they are stale."""
    data = _load_join_data() or {}
    now = time.time()
    if not data.get("endpoint"):
        out = _kubeadm(["token", "create", "--ttl", "2h", "--print-join-command"], secret=True)
        data = dict(_parse_join_commands(out), token_expires=now + 7200)
    elif _token_expiring(data, now):
        token = _kubeadm(["token", "create", "--ttl", "2h"], secret=True).strip().splitlines()[-1]
        if not TOKEN_RE.fullmatch(token):
            raise CommandExecutionError("kubeadm token create printed no token")
        data.update(token=token, token_expires=now + 7200)
    if control_plane and data.get("certificate_key_expires", 0) < now + 600:
        # Prints "[upload-certs] Using certificate key:\n<key>" (phases/uploadcerts.go).
        out = _kubeadm(["init", "phase", "upload-certs", "--upload-certs"], secret=True)
        match = re.search(r"\b([a-f0-9]{64})\b", out)
        if not match:
            raise CommandExecutionError("kubeadm upload-certs printed no certificate key")
        data.update(
            certificate_key=match.group(1), certificate_key_expires=now + CERT_KEY_LIFETIME_S
        )
    _store_join_data(data)
    return data


def join_data(recipient, control_plane=True):
    """
    Join secrets for one joining node, sealed to its minion key (``kubeadm_join.recipient``).
    Renews the token (2 h) and re-uploads certificates with a new key when stale.

    Returns the public parts in clear and ``sealed`` (ciphertext only the recipient opens).

    CLI Example:

    .. code-block:: bash

        # PEM = the return of: salt cp-2 kubeadm_join.recipient
        salt 'cp-1' kubeadm.join_data recipient="$PEM" control_plane=True
    """
    data = _fresh_join_data(bool(control_plane))
    secret = {k: data[k] for k in ("endpoint", "token", "ca_cert_hashes") if k in data}
    if control_plane:
        secret["certificate_key"] = data["certificate_key"]
    return dict(_public(data), sealed=_seal(secret, recipient))


# --- init ----------------------------------------------------------------------


def is_initialized():
    """
    Whether this node already runs a kubeadm control plane (admin.conf and the
    kube-apiserver manifest exist).

    CLI Example:

    .. code-block:: bash

        salt 'cp-1' kubeadm.is_initialized
    """
    return ADMIN_CONF.is_file() and (MANIFESTS / "kube-apiserver.yaml").is_file()


def init(config=str(CONFIG), upload_certs=True, ignore_preflight_errors=None):
    """
    ``kubeadm init --config <config> [--upload-certs]`` on the first control plane.

    The output's token and certificate key go to ``join-data.json`` (0600); the return
    has the endpoint, CA pins, token ID and the (redacted) output.

    CLI Example:

    .. code-block:: bash

        salt 'cp-1' kubeadm.init
    """
    if is_initialized():
        raise CommandExecutionError("this node is already initialized (admin.conf exists)")
    args = ["init", "--config", str(config)]
    if upload_certs:
        args.append("--upload-certs")
    if ignore_preflight_errors:
        args.append(f"--ignore-preflight-errors={ignore_preflight_errors}")
    started = time.time()
    out = _kubeadm(args, timeout=900, secret=True)
    data = _parse_join_commands(out)
    data["token_expires"] = started + 24 * 3600  # kubeadm's default bootstrap token TTL
    if data.get("certificate_key"):
        data["certificate_key_expires"] = started + CERT_KEY_LIFETIME_S
    _store_join_data(data)
    return dict(_public(data), join_data_file=str(JOIN_DATA), output=redact(out))


# --- tokens -----------------------------------------------------------------------------


def _parse_token_list(stdout: str) -> list[dict]:
    """
    ``kubeadm token list`` (tabwriter columns TOKEN TTL EXPIRES USAGES DESCRIPTION EXTRA
    GROUPS, cmd/kubeadm/app/cmd/token.go); the secret half of each token is dropped.
    """
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    header = next((i for i, ln in enumerate(lines) if ln.startswith("TOKEN ")), None)
    if header is None:
        return []
    names = ["TOKEN", "TTL", "EXPIRES", "USAGES", "DESCRIPTION", "EXTRA GROUPS"]
    starts = [lines[header].index(n) for n in names if n in lines[header]]
    out = []
    for line in lines[header + 1 :]:
        cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
        row = dict(zip(names, cells, strict=False))
        token_id = row["TOKEN"].split(".")[0]
        out.append(
            {
                "token_id": token_id,
                "ttl": row.get("TTL", ""),
                "expires": row.get("EXPIRES", ""),
                "usages": [u for u in row.get("USAGES", "").split(",") if u and u != "<none>"],
                "description": row.get("DESCRIPTION", ""),
                "extra_groups": [
                    g for g in row.get("EXTRA GROUPS", "").split(",") if g and g != "<none>"
                ],
            }
        )
    return out


def token_list():
    """
    Bootstrap tokens (IDs, TTL, expiry, usages; never the secret half).

    CLI Example:

    .. code-block:: bash

        salt 'cp-1' kubeadm.token_list
    """
    return _parse_token_list(_kubeadm(["token", "list"], timeout=60, secret=True))


_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _ttl_seconds(ttl) -> float | None:
    """
    A ``--ttl`` as kubeadm reads it (Go's time.ParseDuration: ``2h``, ``1h30m``, ``90s``;
    a bare number is not a duration) in seconds; None for ``0``: the token never expires.
    """
    text = str(ttl).strip()
    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", text)
    if text != "0" and (not parts or "".join(n + u for n, u in parts) != text):
        raise CommandExecutionError(f"not a token TTL: {ttl!r} (use 2h, 1h30m, 45m)")
    seconds = sum(float(n) * _GO_UNITS[u] for n, u in parts)
    return seconds or None


def token_create(ttl="2h", description=None):
    """
    Create a bootstrap token and keep it in ``join-data.json`` (0600); returns its ID.

    The stored expiry is this token's (``ttl`` from now, ``0``: never), so ``join_data``
    renews it in time instead of sealing a token that is about to lapse.

    CLI Example:

    .. code-block:: bash

        salt 'cp-1' kubeadm.token_create ttl=1h
    """
    lifetime = _ttl_seconds(ttl)
    args = ["token", "create", "--ttl", str(ttl), "--print-join-command"]
    if description:
        args += ["--description", str(description)]
    started = time.time()  # before the call: the stored expiry errs on the early side
    out = _kubeadm(args, timeout=60, secret=True)
    fresh = _parse_join_commands(out)
    data = _load_join_data() or {}
    data.update(fresh, token_expires=None if lifetime is None else started + lifetime)
    _store_join_data(data)
    return {
        "token_id": fresh["token"].split(".")[0],
        "ttl": ttl,
        "token_expires": data["token_expires"],
        "stored_in": str(JOIN_DATA),
    }
