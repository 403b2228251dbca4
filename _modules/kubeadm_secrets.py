"""
The join secrets on the first control plane: kept, renewed, sealed for one joining minion,
and forgotten after the last join.

A bootstrap token and the certificate key (which decrypts the ``kubeadm-certs`` Secret)
let anyone join a control plane. ``kubeadm.init`` stores them in
``<config dir>/join-data.json`` (0600); :py:func:`join_data` renews them when stale and
seals them (``kubeadm_joindata``) to the joining minion's key as the master accepted it,
for that minion id and 15 minutes; :py:func:`forget` deletes the token, the
``kubeadm-certs`` Secret and the file once every node has joined. Every kubeadm call runs
through ``kubeadm_cli.run`` with its output kept out of the log.

CLI Example:

.. code-block:: bash

    salt-run kubeha_join.join lab cp-2        # uses join_data on the init node
    salt 'cp-1' kubeadm_secrets.forget
"""

import re
import shutil
import time

from salt.exceptions import CommandExecutionError

__virtualname__ = "kubeadm_secrets"

ADMIN_CONF = "/etc/kubernetes/admin.conf"
# kubeadm deletes the kubeadm-certs Secret after 2 h (docs/facts.md #11); keep a margin.
CERT_KEY_LIFETIME_S = 2 * 3600 - 600
# Tokens made for joins live an hour; forget() deletes them sooner.
TOKEN_TTL = "1h"
TOKEN_TTL_S = 3600
TOKEN_RE = re.compile(r"[a-z0-9]{6}\.[a-z0-9]{16}")


def __virtual__():
    if shutil.which("kubeadm"):
        return __virtualname__
    return (False, "kubeadm_secrets module: the kubeadm binary is not installed")


def _kubeadm(args: list[str], *, timeout: float = 600, secret: bool = False) -> str:
    return __utils__["kubeadm_cli.run"](
        __salt__["cmd.run_all"], args, timeout=timeout, secret=secret
    )


def _joindata(name: str):
    return __utils__[f"kubeadm_joindata.{name}"]


def _token_expiring(data: dict, now: float) -> bool:
    # Missing or under 10 min left; None is a token made with ttl 0, which never expires.
    return "token_expires" not in data or (
        data["token_expires"] is not None and data["token_expires"] < now + 600
    )


def _delete_token(token: str | None) -> str | None:
    """Delete a bootstrap token by its ID; the ID, or None when there was none to delete."""
    token_id = (token or "").split(".")[0]
    if not token_id:
        return None
    try:
        _kubeadm(["token", "delete", token_id], timeout=60)
    except CommandExecutionError as err:
        if "not found" not in str(err):
            raise
    return token_id


def _fresh_join_data(control_plane: bool) -> dict:
    """Stored join data, renewing the token and certificate key when they are stale. A
    replaced token is deleted: at most one kubeha token is alive at a time."""
    directory = __salt__["kubeadm.config_dir"]()
    data = _joindata("load")(directory) or {}
    now = time.time()
    if not data.get("endpoint"):
        out = _kubeadm(["token", "create", "--ttl", TOKEN_TTL, "--print-join-command"], secret=True)
        data = __utils__["kubeadm_cli.parse_join_commands"](out)
        data["token_expires"] = now + TOKEN_TTL_S
    elif _token_expiring(data, now):
        token = _kubeadm(["token", "create", "--ttl", TOKEN_TTL], secret=True).strip()
        token = token.splitlines()[-1] if token else ""
        if not TOKEN_RE.fullmatch(token):
            raise CommandExecutionError("kubeadm token create printed no token")
        _delete_token(data.get("token"))
        data.update(token=token, token_expires=now + TOKEN_TTL_S)
    if control_plane and data.get("certificate_key_expires", 0) < now + 600:
        # Prints "[upload-certs] Using certificate key:\n<key>" (phases/uploadcerts.go).
        out = _kubeadm(["init", "phase", "upload-certs", "--upload-certs"], secret=True)
        match = re.search(r"\b([a-f0-9]{64})\b", out)
        if not match:
            raise CommandExecutionError("kubeadm upload-certs printed no certificate key")
        data.update(
            certificate_key=match.group(1), certificate_key_expires=now + CERT_KEY_LIFETIME_S
        )
    _joindata("store")(directory, data)
    return data


def join_data(recipient, recipient_id, control_plane=True):
    """
    Join secrets for one joining node, sealed to its minion key as the master accepted it
    (``kubeha_join.join`` reads it from the master's PKI) and to its minion id, valid for
    15 minutes. Renews the token (1 h) and re-uploads certificates with a new key when
    stale.

    Returns the public parts in clear and ``sealed`` (ciphertext only the recipient opens).

    CLI Example:

    .. code-block:: bash

        # PEM = /etc/salt/pki/master/minions/cp-2 on the master
        salt 'cp-1' kubeadm_secrets.join_data recipient="$PEM" recipient_id=cp-2 control_plane=True
    """
    data = _fresh_join_data(bool(control_plane))
    secret = {k: data[k] for k in ("endpoint", "token", "ca_cert_hashes") if k in data}
    if control_plane:
        secret["certificate_key"] = data["certificate_key"]
    sealed = _joindata("seal")(secret, recipient, str(recipient_id))
    return dict(_joindata("public")(data), sealed=sealed)


def forget(kubeconfig=ADMIN_CONF):
    """
    After the last join: delete the stored bootstrap token, the ``kubeadm-certs`` Secret
    (the uploaded control-plane certificates) and ``join-data.json``. A later join makes
    fresh ones (``join_data``). Idempotent.

    CLI Example:

    .. code-block:: bash

        salt 'cp-1' kubeadm_secrets.forget
    """
    directory = __salt__["kubeadm.config_dir"]()
    data = _joindata("load")(directory) or {}
    token_id = _delete_token(data.get("token"))
    res = __salt__["cmd.run_all"](
        [
            "kubectl",
            f"--kubeconfig={kubeconfig}",
            "--request-timeout=30s",
            "-n",
            "kube-system",
            "delete",
            "secret",
            "kubeadm-certs",
            "--ignore-not-found",
        ],
        python_shell=False,
        timeout=60,
        ignore_retcode=True,
    )
    if res["retcode"] != 0:
        raise CommandExecutionError(
            f"could not delete Secret kube-system/kubeadm-certs: {res['stderr'] or res['stdout']}"
        )
    stored = _joindata("path")(directory)
    existed = stored.exists()
    stored.unlink(missing_ok=True)
    return {
        "deleted_token": token_id,
        "kubeadm_certs_deleted": "deleted" in res["stdout"],
        "join_data_removed": existed,
    }
