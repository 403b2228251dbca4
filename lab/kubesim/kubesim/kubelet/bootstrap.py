"""The kubelet's TLS bootstrap (k8s.io/kubelet/pkg/certificate/bootstrap): with only
bootstrap-kubelet.conf, post a CSR for system:node:<name> (signer
kubernetes.io/kube-apiserver-client-kubelet), wait for the controller-manager to sign it,
write kubelet-client-<date>.pem + the kubelet-client-current.pem link and a kubelet.conf
pointing at it."""

from __future__ import annotations

import base64
import datetime as dt
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from .. import klog, kubeconfig, pki
from ..kubeclient import Client


def tls_bootstrap(bootstrap: Path, kubeconfig_path: Path, cert_dir: Path, node_name: str) -> None:
    boot = Client.from_kubeconfig(bootstrap, timeout=10)
    key = pki.new_key()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
                    x509.NameAttribute(NameOID.COMMON_NAME, f"system:node:{node_name}"),
                ]
            )
        )
        .sign(key, hashes.SHA256())
    )
    request = base64.b64encode(csr.public_bytes(serialization.Encoding.PEM)).decode()
    obj = boot.create(
        "certificatesigningrequests",
        {
            "apiVersion": "certificates.k8s.io/v1",
            "kind": "CertificateSigningRequest",
            "metadata": {"generateName": "csr-"},
            "spec": {
                "request": request,
                "signerName": "kubernetes.io/kube-apiserver-client-kubelet",
                "usages": ["digital signature", "client auth"],
            },
        },
    )
    name = obj["metadata"]["name"]
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        cur = boot.get("certificatesigningrequests", name)
        cert = cur.get("status", {}).get("certificate")
        if cert:
            stamp = dt.datetime.now().strftime("%Y-%m-%d-%H-%M-%S")
            pem = cert_dir / f"kubelet-client-{stamp}.pem"
            pki.write_private(pem, base64.b64decode(cert) + pki.key_pem(key))
            current = cert_dir / "kubelet-client-current.pem"
            current.unlink(missing_ok=True)
            current.symlink_to(pem)
            cfg = kubeconfig.KubeConfig.load(bootstrap)
            kubeconfig.write(
                kubeconfig_path,
                kubeconfig.render(
                    cfg.cluster or "kubernetes",
                    cfg.server,
                    cfg.ca_pem,
                    "default-auth",
                    cert_file=str(current),
                ),
            )
            klog.info(
                '"Certificate rotation detected, shutting down client connections to '
                'start using new credentials"',
                "transport.go:147",
            )
            return
        time.sleep(1)
    raise TimeoutError("timed out waiting for the CSR to be signed")
