"""The controller-manager's certificate work, as a mixin of manager.Controllers:
- bootstrapsigner / tokencleaner (pkg/controller/bootstrap): signs cluster-info for each
  bootstrap token (detached JWS, HS256), deletes expired tokens;
- csrapproving / csrsigning (pkg/controller/certificates): approves and signs kubelet client
  CSRs of bootstrapping nodes with --cluster-signing-cert-file/--cluster-signing-key-file;
- root-ca-cert-publisher: ConfigMap kube-root-ca.crt in every namespace.

The mixin uses the Controllers' client (``self.c``), signing CA (``self.signing``) and root
CA (``self.root_ca``).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import hmac
import json
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID

from .. import klog, pki
from ..kubeclient import ApiError
from .common import now_str, parse_time


class CertificateControllers:
    # -- bootstrap tokens ------------------------------------------------------------------
    def bootstrap(self) -> None:
        secrets = self.c.list(
            "secrets", "kube-system", field_selector="type=bootstrap.kubernetes.io/token"
        )["items"]
        tokens = {}
        for s in secrets:
            data = {k: base64.b64decode(v).decode() for k, v in (s.get("data") or {}).items()}
            exp = data.get("expiration")
            if exp and parse_time(exp) < time.time():
                klog.info(
                    f"Deleting expired secret kube-system/{s['metadata']['name']}",
                    "tokencleaner.go:194",
                )
                with contextlib.suppress(ApiError):
                    self.c.delete("secrets", s["metadata"]["name"], "kube-system")
                continue
            if data.get("usage-bootstrap-signing") == "true" and data.get("token-id"):
                tokens[data["token-id"]] = data.get("token-secret", "")
        cm = self.c.get_or_none("configmaps", "cluster-info", "kube-public")
        if cm is None:
            return
        content = (cm.get("data") or {}).get("kubeconfig", "")
        want = {
            f"jws-kubeconfig-{tid}": detached_jws(content, tid, sec) for tid, sec in tokens.items()
        }
        have = {k: v for k, v in (cm.get("data") or {}).items() if k.startswith("jws-kubeconfig-")}
        if want != have:
            data = {k: v for k, v in cm["data"].items() if not k.startswith("jws-kubeconfig-")}
            data.update(want)
            cm["data"] = data
            with contextlib.suppress(ApiError):
                self.c.update("configmaps", cm, "kube-public")

    # -- CSRs (kubelet client certificates of joining nodes) -------------------------------
    def csr(self) -> None:
        if self.signing is None:
            return

        for csr in self.c.list("certificatesigningrequests")["items"]:
            spec, status = csr.get("spec", {}), csr.get("status", {})
            if status.get("certificate"):
                continue
            if spec.get("signerName") != "kubernetes.io/kube-apiserver-client-kubelet":
                continue
            name = csr["metadata"]["name"]
            conds = status.get("conditions") or []
            if not any(c.get("type") == "Approved" for c in conds):
                status["conditions"] = conds + [
                    {
                        "type": "Approved",
                        "status": "True",
                        "reason": "AutoApproved",
                        "message": "Auto approving kubelet client certificate after SubjectAccessReview.",  # noqa: E501 - upstream's text
                        "lastUpdateTime": now_str(),
                        "lastTransitionTime": now_str(),
                    }
                ]
                csr["status"] = status
                try:
                    approved = self.c.update(
                        "certificatesigningrequests", csr, subresource="approval"
                    )
                except ApiError:
                    continue
                csr.update(approved)
            request = x509.load_pem_x509_csr(base64.b64decode(spec["request"]))
            cn = request.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)[0].value
            orgs = [
                a.value
                for a in request.subject.get_attributes_for_oid(x509.oid.NameOID.ORGANIZATION_NAME)
            ]
            cert = _sign_csr(request, cn, orgs, *self.signing)
            csr.setdefault("status", {})["certificate"] = base64.b64encode(
                pki.cert_pem(cert)
            ).decode()
            try:
                self.c.update("certificatesigningrequests", csr, subresource="status")
                klog.info(f'"Signed certificate" csr="{name}"', "signer.go:166")
            except ApiError:
                pass

    def root_ca_publisher(self) -> None:
        if not self.root_ca:
            return
        for ns in self.c.list("namespaces")["items"]:
            name = ns["metadata"]["name"]
            cm = self.c.get_or_none("configmaps", "kube-root-ca.crt", name)
            if cm is None:
                with contextlib.suppress(ApiError):
                    self.c.create(
                        "configmaps",
                        {
                            "metadata": {"name": "kube-root-ca.crt"},
                            "data": {"ca.crt": self.root_ca},
                        },
                        name,
                    )


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def detached_jws(content: str, token_id: str, secret: str) -> str:
    """bootstrap/jws.go ComputeDetachedSignature: HS256 over the payload, payload left out."""
    header = _b64url(json.dumps({"alg": "HS256", "kid": token_id}, separators=(",", ":")).encode())
    payload = _b64url(content.encode())
    sig = hmac.new(secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}..{_b64url(sig)}"


def _sign_csr(request, cn: str, orgs: list[str], ca_cert, ca_key):

    start = pki.now() - dt.timedelta(minutes=5)
    return (
        x509.CertificateBuilder()
        .subject_name(request.subject)
        .issuer_name(ca_cert.subject)
        .public_key(request.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(min(start + pki.CERT_VALIDITY, pki.not_after(ca_cert)))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, True, False, False, False, False, False, False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
