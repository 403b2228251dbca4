"""
The joining side of kubeadm: ``kubeadm join`` with secrets that arrive sealed.

The join secrets (bootstrap token, certificate key) arrive sealed to this minion's key as
the master accepted it and to its minion id (``kubeadm_secrets.join_data`` on the first
control plane, ``kubeha_join.join`` on the master), are opened here with ``minion.pem``
and handed to kubeadm in a 0600 JoinConfiguration file that is deleted afterwards: not in
a log, an argument list or a job return.
"""

import json
import os
import shutil
import tempfile
from pathlib import Path

import yaml
from salt.exceptions import CommandExecutionError

__virtualname__ = "kubeadm_join"

KUBELET_CONF = Path("/etc/kubernetes/kubelet.conf")
MANIFESTS = Path("/etc/kubernetes/manifests")


def __virtual__():
    if shutil.which("kubeadm"):
        return __virtualname__
    return (False, "kubeadm_join module: the kubeadm binary is not installed")


def _minion_key(name: str) -> Path:
    return Path(__opts__.get("pki_dir", "/etc/salt/pki/minion")) / name


def is_joined(control_plane=False):
    """
    Whether this node has joined a cluster (kubelet.conf; for control planes also the
    kube-apiserver static pod manifest).

    CLI Example:

    .. code-block:: bash

        salt 'cp-2' kubeadm_join.is_joined control_plane=True
    """
    joined = KUBELET_CONF.is_file()
    if control_plane:
        joined = joined and (MANIFESTS / "kube-apiserver.yaml").is_file()
    return joined


def _join_configuration(secret: dict, control_plane: bool, base, node) -> dict:
    """A JoinConfiguration: the formula's (base) or a minimal v1beta3 one, plus secrets."""
    if base:
        cfg = yaml.safe_load(Path(base).read_text()) or {}
        if cfg.get("kind") != "JoinConfiguration":
            raise CommandExecutionError(f"{base} is not a JoinConfiguration")
    else:
        # v1beta3 is read by kubeadm 1.30 and 1.31 alike (v1beta4 only from 1.31, docs/facts.md #1).
        cfg = {"apiVersion": "kubeadm.k8s.io/v1beta3", "kind": "JoinConfiguration"}
    discovery = cfg.setdefault("discovery", {}).setdefault("bootstrapToken", {})
    discovery.update(
        token=secret["token"],
        apiServerEndpoint=secret["endpoint"],
        caCertHashes=secret["ca_cert_hashes"],
    )
    # The sealed token wins over whatever the base config carried.
    cfg["discovery"]["tlsBootstrapToken"] = secret["token"]
    if control_plane:
        if not secret.get("certificate_key"):
            raise CommandExecutionError("control-plane join needs a certificate key")
        plane = cfg.setdefault("controlPlane", {}) or {}
        cfg["controlPlane"] = plane
        plane["certificateKey"] = secret["certificate_key"]
        if node.get("advertise_address"):
            plane.setdefault("localAPIEndpoint", {})["advertiseAddress"] = node["advertise_address"]
        if node.get("bind_port"):
            plane.setdefault("localAPIEndpoint", {})["bindPort"] = int(node["bind_port"])
    registration = cfg.setdefault("nodeRegistration", {}) or {}
    cfg["nodeRegistration"] = registration
    if node.get("node_name"):
        registration["name"] = node["node_name"]
    if node.get("cri_socket"):
        registration["criSocket"] = node["cri_socket"]
    return cfg


def join(
    sealed=None,
    control_plane=False,
    *,
    join_file=None,
    config=None,
    advertise_address=None,
    bind_port=None,
    node_name=None,
    cri_socket=None,
    ignore_preflight_errors=None,
):
    """
    Join this node, as a control plane (``controlPlane.certificateKey``) or a worker.

    sealed
        Output of ``kubeadm_secrets.join_data`` on the first control plane, sealed to this
        minion.
    join_file
        Or a local 0600 JSON file with endpoint, token, ca_cert_hashes, certificate_key
        (what ``init`` wrote), for a manual hand-over.
    config
        The formula's JoinConfiguration without secrets; they are added in a 0600 copy.

    CLI Example:

    .. code-block:: bash

        salt 'cp-2' kubeadm_join.join sealed=<from kubeadm_secrets.join_data> control_plane=True
    """
    if is_joined(control_plane):
        raise CommandExecutionError("this node has already joined (kubelet.conf exists)")
    if sealed:
        secret = __utils__["kubeadm_joindata.unseal"](
            sealed, _minion_key("minion.pem").read_bytes(), __opts__["id"]
        )
    elif join_file:
        path = Path(join_file)
        if path.stat().st_mode & 0o077:
            raise CommandExecutionError(f"{path} is readable by others: chmod 600 it first")
        secret = json.loads(path.read_text())
    else:
        raise CommandExecutionError(
            "join needs sealed= (from kubeadm_secrets.join_data) or join_file="
        )
    node = {
        "advertise_address": advertise_address,
        "bind_port": bind_port,
        "node_name": node_name,
        "cri_socket": cri_socket,
    }
    cfg = _join_configuration(secret, bool(control_plane), config, node)
    directory = Path(__salt__["kubeadm.config_dir"]())
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".join-", suffix=".yaml")
    try:
        with os.fdopen(fd, "w") as fh:
            yaml.safe_dump(cfg, fh)
        args = ["join", "--config", tmp]
        if ignore_preflight_errors:
            args.append(f"--ignore-preflight-errors={ignore_preflight_errors}")
        # The config holds the token and certificate key: output stays out of the log.
        out = __utils__["kubeadm_cli.run"](__salt__["cmd.run_all"], args, timeout=900, secret=True)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return {
        "joined": True,
        "control_plane": bool(control_plane),
        "endpoint": secret["endpoint"],
        "output": __utils__["kubeadm_cli.redact"](out),
    }
