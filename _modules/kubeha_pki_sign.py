"""
Client certificates signed with the cluster CA on a control plane, for the few identities
kubeha itself needs outside the cluster (today: Prometheus on the monitoring host,
``kubeha_prometheus.client_csr``). What ``kubeadm kubeconfig user`` does, except that the
key is made by the requester and never travels: only the request and the certificate do.

Only the identities of ``ALLOWED`` are signed: a request for anything else (another group
such as ``system:masters``, a server certificate, a CA) is refused, so this function cannot
be used to mint an administrator.

CLI Example:

.. code-block:: bash

    salt cp-1 kubeha_pki_sign.sign_client "$(cat prometheus.csr)" 365
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from salt.exceptions import CommandExecutionError

__virtualname__ = "kubeha_pki_sign"

PKI_DIR = "/etc/kubernetes/pki"
# organization -> the prefix its common name must carry.
ALLOWED = {"system:monitoring": "kubeha-monitoring:"}
# kubeadm's own leaf lifetime (docs/facts.md #18); the CA's end caps it too.
MAX_DAYS = 365


def __virtual__():
    return __virtualname__


def _subject(csr) -> tuple[str, list[str]]:
    from cryptography.x509.oid import NameOID  # noqa: PLC0415

    names = [a.value for a in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    orgs = [a.value for a in csr.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    if len(names) != 1 or len(orgs) != 1 or len(csr.subject) != 2:
        raise CommandExecutionError(
            f"kubeha_pki_sign: the request's subject {csr.subject.rfc4514_string()!r} must be "
            "exactly one CN and one O."
        )
    return names[0], orgs


def sign_client(csr, days=MAX_DAYS, pki_dir=PKI_DIR):
    """
    Sign a client certificate request with ``<pki_dir>/ca.{crt,key}``: clientAuth only, no
    CA, valid ``days`` (at most 365 and never past the CA). Returns the certificate, the CA
    certificate (what the requester verifies the apiservers with) and the expiry.

    CLI Example:

    .. code-block:: bash

        salt cp-1 kubeha_pki_sign.sign_client "$(cat prometheus.csr)" 365
    """
    from cryptography import x509  # noqa: PLC0415
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.x509.oid import ExtendedKeyUsageOID  # noqa: PLC0415

    try:
        request = x509.load_pem_x509_csr(str(csr).encode())
    except ValueError as err:
        message = f"kubeha_pki_sign: not a PEM certificate request: {err}"
        raise CommandExecutionError(message) from err
    if not request.is_signature_valid:
        raise CommandExecutionError("kubeha_pki_sign: the request's signature does not verify.")
    name, (org,) = _subject(request)
    prefix = ALLOWED.get(org)
    if prefix is None or not name.startswith(prefix) or len(name) == len(prefix):
        raise CommandExecutionError(
            f"kubeha_pki_sign: refusing CN={name!r} O={org!r}; this signs only "
            + ", ".join(f"O={o} with CN={p}<host>" for o, p in ALLOWED.items())
            + "."
        )
    days = int(days)
    if not 1 <= days <= MAX_DAYS:
        raise CommandExecutionError(f"kubeha_pki_sign: days {days} is outside 1-{MAX_DAYS}.")
    pki = Path(pki_dir)
    ca_pem = (pki / "ca.crt").read_bytes()
    ca = x509.load_pem_x509_certificate(ca_pem)
    ca_key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), password=None)
    now = dt.datetime.now(dt.UTC)
    # Backdated a little, as kubeadm does (clock skew between the nodes and the requester).
    start = now - dt.timedelta(minutes=5)
    end = min(now + dt.timedelta(days=days), ca.not_valid_after_utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(request.subject)
        .issuer_name(ca.subject)
        .public_key(request.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_encipherment=False,
                content_commitment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )  # fmt: skip
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return {
        "cert": cert.public_bytes(serialization.Encoding.PEM).decode(),
        "ca": ca_pem.decode(),
        "subject": cert.subject.rfc4514_string(),
        "not_after": end.isoformat(),
    }
