"""
kubeadm: init, tokens and config validation on a control plane.

Secrets. ``kubeadm init`` prints a bootstrap token and, with ``--upload-certs``, the
certificate key that decrypts the ``kubeadm-certs`` Secret: together they let anyone
join a control plane. They never reach a log, a job return or an argument list here:

- every kubeadm call runs through ``kubeadm_cli.run`` (argument list, timeout, output
  kept out of the log where it may hold a secret, redacted errors);
- init keeps them in ``<config dir>/join-data.json`` (0600, root);
- they travel to a joining node sealed to that node's minion key as the master accepted
  it, for that minion id only and for minutes (``kubeadm_joindata``); the job cache and
  the event bus only ever see ciphertext that one minion can read. The join itself reads a
  0600 JoinConfiguration file, so the token is not in ``/proc/<pid>/cmdline`` either;
- after the last join, ``kubeadm_secrets.forget`` deletes the token, the
  ``kubeadm-certs`` Secret and ``join-data.json``.

Renewing and sealing the join secrets is ``kubeadm_secrets``; the joining side
``kubeadm_join``; upgrades ``kubeadm_upgrade``; certificates ``kubeadm_certs``.

Paths: the kubeadm config directory is the model's ``kubeadm:config_dir``
(:py:func:`config_dir`); PKI ``/etc/kubernetes/pki`` and the admin kubeconfig
``/etc/kubernetes/admin.conf`` are kubeadm's own layout.
"""

import hashlib
import re
import shutil
import time
from pathlib import Path

from salt.exceptions import CommandExecutionError

__virtualname__ = "kubeadm"

DEFAULT_CONFIG_DIR = "/etc/kubernetes/kubeadm"  # parameters/defaults.yaml kubeadm:config_dir
PKI = Path("/etc/kubernetes/pki")
ADMIN_CONF = Path("/etc/kubernetes/admin.conf")
MANIFESTS = Path("/etc/kubernetes/manifests")
# kubeadm deletes the kubeadm-certs Secret after 2 h (docs/facts.md #11); keep a margin.
CERT_KEY_LIFETIME_S = 2 * 3600 - 600


def __virtual__():
    if shutil.which("kubeadm"):
        return __virtualname__
    return (False, "kubeadm module: the kubeadm binary is not installed")


def _kubeadm(args: list[str], *, timeout: float = 600, secret: bool = False) -> str:
    return __utils__["kubeadm_cli.run"](
        __salt__["cmd.run_all"], args, timeout=timeout, secret=secret
    )


def _redact(text: str) -> str:
    return __utils__["kubeadm_cli.redact"](text)


def _joindata(name: str):
    return __utils__[f"kubeadm_joindata.{name}"]


def config_dir():
    """
    Where kubeha keeps this node's kubeadm configs and join data: pillar
    ``kubeha:kubeadm:config_dir`` (default ``/etc/kubernetes/kubeadm``).

    CLI Example:

    .. code-block:: bash

        salt 'cp-1' kubeadm.config_dir
    """
    return str(__salt__["config.get"]("kubeha:kubeadm:config_dir") or DEFAULT_CONFIG_DIR)


def version():
    """
    kubeadm's own version (``kubeadm version -o short``), e.g. ``v1.30.0``.

    CLI Example:

    .. code-block:: bash

        salt 'cp-*' kubeadm.version
    """
    return _kubeadm(["version", "-o", "short"], timeout=30).strip()


def config_validate(config=None):
    """
    Validate a kubeadm config file against this kubeadm's API (``kubeadm config validate``).

    Returns ``{"valid": True}`` or raises with kubeadm's complaint (e.g. v1beta4 on 1.30).

    CLI Example:

    .. code-block:: bash

        salt 'cp-1' kubeadm.config_validate /etc/kubernetes/kubeadm/kubeadm-config.yaml
    """
    config = config or f"{config_dir()}/kubeadm-config.yaml"
    out = _kubeadm(["config", "validate", "--config", str(config)], timeout=60)
    return {"valid": True, "config": str(config), "output": out.strip()}


def upload_config(config=None):
    """
    Upload this config's ClusterConfiguration to the cluster's ``kubeadm-config`` ConfigMap
    (``kubeadm init phase upload-config kubeadm --config``), which ``kubeadm upgrade apply``
    reads: how a change of pillar (an apiserver flag added or removed) reaches the static
    pods the next upgrade writes.

    CLI Example:

    .. code-block:: bash

        salt 'cp-1' kubeadm.upload_config
    """
    config = config or f"{config_dir()}/kubeadm-config.yaml"
    out = _kubeadm(
        ["init", "phase", "upload-config", "kubeadm", "--config", str(config)], timeout=120
    )
    return {"uploaded": True, "config": str(config), "output": out.strip()}


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


def init(config=None, upload_certs=True, ignore_preflight_errors=None):
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
    config = config or f"{config_dir()}/kubeadm-config.yaml"
    args = ["init", "--config", str(config)]
    if upload_certs:
        args.append("--upload-certs")
    if ignore_preflight_errors:
        args.append(f"--ignore-preflight-errors={ignore_preflight_errors}")
    started = time.time()
    out = _kubeadm(args, timeout=900, secret=True)
    data = __utils__["kubeadm_cli.parse_join_commands"](out)
    data["token_expires"] = started + 24 * 3600  # kubeadm's default bootstrap token TTL
    if data.get("certificate_key"):
        data["certificate_key_expires"] = started + CERT_KEY_LIFETIME_S
    _joindata("store")(config_dir(), data)
    stored = str(_joindata("path")(config_dir()))
    return dict(_joindata("public")(data), join_data_file=stored, output=_redact(out))


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
    fresh = __utils__["kubeadm_cli.parse_join_commands"](out)
    data = _joindata("load")(config_dir()) or {}
    data.update(fresh, token_expires=None if lifetime is None else started + lifetime)
    _joindata("store")(config_dir(), data)
    return {
        "token_id": fresh["token"].split(".")[0],
        "ttl": ttl,
        "token_expires": data["token_expires"],
        "stored_in": str(_joindata("path")(config_dir())),
    }
