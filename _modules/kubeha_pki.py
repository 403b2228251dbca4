"""
Certificate expiry on a kubeadm control plane, read from the files with ``cryptography``
(Salt's ``cert_info`` beacon needs pyOpenSSL's ``X509.get_extension``, gone from recent
pyOpenSSL: docs/facts.md #18), and from the wire.

What is read (kubeadm's layout, docs/facts.md #18):

- every ``*.crt`` under ``/etc/kubernetes/pki`` and ``pki/etcd``: the CAs (``ca``,
  ``front-proxy-ca``, ``etcd/ca``: 10 years, not renewed by ``kubeadm certs renew``) and the
  leaf certificates (1 year, renewed);
- the client certificates embedded in ``admin.conf``, ``super-admin.conf``,
  ``controller-manager.conf`` and ``scheduler.conf`` (renewed by ``kubeadm certs renew``);
- the kubelet's client certificate ``/var/lib/kubelet/pki/kubelet-client-current.pem``,
  which the kubelet rotates itself (``rotateCertificates``), so it is reported apart.

Names follow ``kubeadm certs check-expiration`` (``apiserver``, ``etcd-server``,
``admin.conf``...). The beacon ``kubeha_certs`` and the ``kubeha_certs`` runner use this.
"""

import base64
import datetime as dt
import ssl
from pathlib import Path

import yaml
from salt.exceptions import CommandExecutionError

__virtualname__ = "kubeha_pki"

PKI_DIR = "/etc/kubernetes/pki"
KUBECONFIG_DIR = "/etc/kubernetes"
KUBECONFIGS = ("admin.conf", "super-admin.conf", "controller-manager.conf", "scheduler.conf")
KUBELET_CERT = "/var/lib/kubelet/pki/kubelet-client-current.pem"


def __virtual__():
    return __virtualname__


def _load(pem: bytes):
    from cryptography import x509  # noqa: PLC0415

    return x509.load_pem_x509_certificate(pem)


def _describe(cert, name: str, kind: str, path: str, now: dt.datetime) -> dict:
    from cryptography import x509  # noqa: PLC0415

    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    not_after = cert.not_valid_after_utc
    return {
        "name": name,
        "kind": "ca" if is_ca else kind,
        "path": path,
        "not_after": not_after.isoformat(),
        "days_left": round((not_after - now).total_seconds() / 86400, 3),
        "serial": format(cert.serial_number, "x"),
    }


def _kubeadm_name(pki: Path, path: Path) -> str:
    rel = path.relative_to(pki).with_suffix("")
    return f"etcd-{rel.name}" if rel.parent.name == "etcd" else str(rel)


def inventory(pki_dir=PKI_DIR, kubeconfig_dir=KUBECONFIG_DIR, kubelet_cert=KUBELET_CERT):
    """
    Every certificate of the control plane with its expiry: ``kind`` is ``ca``, ``leaf``
    (a file under the PKI dir), ``kubeconfig`` (a client certificate in a kubeconfig) or
    ``kubelet`` (rotated by the kubelet itself). Unreadable files are listed in ``errors``.

    CLI Example:

    .. code-block:: bash

        salt 'cp-*' kubeha_pki.inventory
    """
    now = dt.datetime.now(dt.UTC)
    pki = Path(pki_dir)
    out, errors = [], []
    for path in sorted([*pki.glob("*.crt"), *pki.glob("etcd/*.crt")]):
        try:
            out.append(_describe(_load(path.read_bytes()), _kubeadm_name(pki, path), "leaf",
                                 str(path), now))  # fmt: skip
        except (OSError, ValueError) as err:
            errors.append(f"{path}: {err}")
    for name in KUBECONFIGS:
        path = Path(kubeconfig_dir) / name
        if not path.exists():
            continue
        try:
            cfg = yaml.safe_load(path.read_text()) or {}
            data = cfg["users"][0]["user"]["client-certificate-data"]
            out.append(_describe(_load(base64.b64decode(data)), name, "kubeconfig", str(path), now))
        except (OSError, ValueError, KeyError, IndexError, TypeError) as err:
            errors.append(f"{path}: {err}")
    kubelet = Path(kubelet_cert)
    if kubelet.exists():
        try:
            out.append(_describe(_load(kubelet.read_bytes()), "kubelet-client", "kubelet",
                                 str(kubelet), now))  # fmt: skip
        except (OSError, ValueError) as err:
            errors.append(f"{kubelet}: {err}")
    return {"certificates": out, "errors": errors}


def expiring(
    renew_before_days=30, pki_dir=PKI_DIR, kubeconfig_dir=KUBECONFIG_DIR, kubelet_cert=KUBELET_CERT
):
    """
    The certificates with fewer than ``renew_before_days`` days left, by what can be done:
    ``renewable`` (``kubeadm certs renew``), ``ca`` (report only: a CA is never renewed
    here), ``kubelet`` (the kubelet rotates it). ``min_days_left`` covers the renewable ones.

    CLI Example:

    .. code-block:: bash

        salt 'cp-*' kubeha_pki.expiring 30
    """
    # Named, not **kwargs: Salt hands a function that takes **kwargs its __pub_* job data.
    inv = inventory(pki_dir=pki_dir, kubeconfig_dir=kubeconfig_dir, kubelet_cert=kubelet_cert)
    limit = float(renew_before_days)
    groups = {"renewable": [], "ca": [], "kubelet": []}
    for cert in inv["certificates"]:
        if cert["days_left"] >= limit:
            continue
        key = {"ca": "ca", "kubelet": "kubelet"}.get(cert["kind"], "renewable")
        groups[key].append({k: cert[k] for k in ("name", "days_left", "not_after")})
    renewable = [c["days_left"] for c in inv["certificates"] if c["kind"] in ("leaf", "kubeconfig")]
    return {
        **groups,
        "renew_before_days": limit,
        "min_days_left": min(renewable) if renewable else None,
        "errors": inv["errors"],
    }


def served(host, port=6443, timeout=5):
    """
    The certificate a TLS server presents (e.g. kube-apiserver on its node): subject,
    expiry, days left. Not verified: this reads what is served, whatever it is.

    CLI Example:

    .. code-block:: bash

        salt cp-1 kubeha_pki.served 198.18.0.11 6443
    """
    try:
        pem = ssl.get_server_certificate((str(host), int(port)), timeout=float(timeout))
    except (OSError, ssl.SSLError) as err:
        raise CommandExecutionError(f"TLS to {host}:{port}: {err}") from err
    cert = _load(pem.encode())
    info = _describe(cert, f"{host}:{port}", "served", f"{host}:{port}", dt.datetime.now(dt.UTC))
    info["subject"] = cert.subject.rfc4514_string()
    return info
