"""kubeadm's certificate tree: create, renew, check expiration.

Lists and descriptions from cmd/kubeadm/app/phases/certs/certlist.go and
phases/certs/renewal; the expiration table from cmd/kubeadm/app/cmd/certs.go
(tabwriter 10/4/3, dates "Jan 02, 2006 15:04 MST", residual time as
apimachinery's duration.ShortHumanDuration).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from .. import kubeconfig, pki, tabwriter
from ..versions import Version
from .config import Config

CAS = [
    ("ca", "ca", "kubernetes"),
    ("etcd-ca", "etcd/ca", "etcd-ca"),
    ("front-proxy-ca", "front-proxy-ca", "front-proxy-ca"),
]


@dataclass
class Leaf:
    name: str
    base: str
    ca: str  # base of the CA
    ca_name: str
    renew_text: str


LEAVES = [
    Leaf("apiserver", "apiserver", "ca", "ca", "certificate for serving the Kubernetes API"),
    Leaf(
        "apiserver-kubelet-client",
        "apiserver-kubelet-client",
        "ca",
        "ca",
        "certificate for the API server to connect to kubelet",
    ),
    Leaf(
        "front-proxy-client",
        "front-proxy-client",
        "front-proxy-ca",
        "front-proxy-ca",
        "certificate for the front proxy client",
    ),
    Leaf("etcd-server", "etcd/server", "etcd/ca", "etcd-ca", "certificate for serving etcd"),
    Leaf(
        "etcd-peer",
        "etcd/peer",
        "etcd/ca",
        "etcd-ca",
        "certificate for etcd nodes to communicate with each other",
    ),
    Leaf(
        "etcd-healthcheck-client",
        "etcd/healthcheck-client",
        "etcd/ca",
        "etcd-ca",
        "certificate for liveness probes to healthcheck etcd",
    ),
    Leaf(
        "apiserver-etcd-client",
        "apiserver-etcd-client",
        "etcd/ca",
        "etcd-ca",
        "certificate the apiserver uses to access etcd",
    ),
]
KUBECONFIGS = [
    (
        "admin.conf",
        "certificate embedded in the kubeconfig file for the admin to use and for kubeadm itself",
    ),
    (
        "controller-manager.conf",
        "certificate embedded in the kubeconfig file for the controller manager to use",
    ),
    (
        "scheduler.conf",
        "certificate embedded in the kubeconfig file for the scheduler manager to use",
    ),
    ("super-admin.conf", "certificate embedded in the kubeconfig file for the super-admin"),
]


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def spec_for(name: str, cfg: Config) -> pki.CertSpec:
    node, ip = cfg.node_name, cfg.advertise_address
    if name == "apiserver":
        svc = ipaddress.ip_network(cfg.cluster["networking"]["serviceSubnet"], strict=False)
        domain = cfg.cluster["networking"]["dnsDomain"]
        dns = [
            node,
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            f"kubernetes.default.svc.{domain}",
        ]
        ips = [str(next(svc.hosts())), ip]
        host = cfg.control_plane_endpoint.rsplit(":", 1)[0].strip("[]")
        (ips if _is_ip(host) else dns).append(host)
        for san in (cfg.cluster.get("apiServer") or {}).get("certSANs") or []:
            (ips if _is_ip(san) else dns).append(san)
        return pki.CertSpec(
            name, "apiserver", "ca", "kube-apiserver", server=True, dns_names=dns, ips=ips
        )
    if name == "apiserver-kubelet-client":
        return pki.CertSpec(
            name,
            name,
            "ca",
            "kube-apiserver-kubelet-client",
            ["kubeadm:cluster-admins"] if _minor(cfg) >= 29 else ["system:masters"],
            client=True,
        )
    if name == "front-proxy-client":
        return pki.CertSpec(name, name, "front-proxy-ca", "front-proxy-client", client=True)
    local = (cfg.cluster.get("etcd") or {}).get("local") or {}
    if name in ("etcd-server", "etcd-peer"):
        extra = local.get("serverCertSANs" if name == "etcd-server" else "peerCertSANs") or []
        dns = [node, "localhost"] + [s for s in extra if not _is_ip(s)]
        ips = [ip, "127.0.0.1", "::1"] + [s for s in extra if _is_ip(s)]
        return pki.CertSpec(
            name,
            f"etcd/{name.split('-')[1]}",
            "etcd/ca",
            node,
            server=True,
            client=True,
            dns_names=dns,
            ips=ips,
        )
    if name == "etcd-healthcheck-client":
        return pki.CertSpec(
            name, "etcd/healthcheck-client", "etcd/ca", "kube-etcd-healthcheck-client", client=True
        )
    if name == "apiserver-etcd-client":
        return pki.CertSpec(name, name, "etcd/ca", "kube-apiserver-etcd-client", client=True)
    raise KeyError(name)


def _minor(cfg: Config) -> int:
    return cfg.kubernetes_version.minor


def create_cas(pki_dir: Path) -> list[str]:
    printed = []
    for name, base, cn in CAS:
        if (pki_dir / f"{base}.crt").exists() and (pki_dir / f"{base}.key").exists():
            printed.append(f"[certs] Using existing {name} certificate authority")
            continue
        cert, key = pki.make_ca(cn)
        pki.write_pair(pki_dir, base, cert, key)
        printed.append(f'[certs] Generating "{name}" certificate and key')
    return printed


def create_sa(pki_dir: Path) -> str:
    if (pki_dir / "sa.key").exists():
        return '[certs] Using the existing "sa" key'
    key = pki.new_key()
    pki.write_private(pki_dir / "sa.key", pki.key_pem(key))
    pki.write_public(pki_dir / "sa.pub", pki.public_pem(key))
    return '[certs] Generating "sa" key and public key'


def create_leaves(cfg: Config, out) -> None:
    pki_dir = cfg.pki_dir
    for leaf in LEAVES:
        spec = spec_for(leaf.name, cfg)
        if (pki_dir / f"{leaf.base}.crt").exists():
            out(f"[certs] Using existing {leaf.name} certificate and key on disk")
            continue
        ca_cert, ca_key = pki.load_pair(pki_dir, leaf.ca)
        cert, key = pki.sign_leaf(spec, ca_cert, ca_key)
        pki.write_pair(pki_dir, leaf.base, cert, key)
        out(f'[certs] Generating "{leaf.name}" certificate and key')
        if spec.dns_names or spec.ips:
            out(
                f"[certs] {leaf.name} serving cert is signed for DNS names "
                f"[{' '.join(dict.fromkeys(spec.dns_names))}] and IPs [{' '.join(dict.fromkeys(spec.ips))}]"  # noqa: E501 - upstream's text
            )


def renew_leaf(cfg: Config, leaf: Leaf) -> None:
    ca_cert, ca_key = pki.load_pair(cfg.pki_dir, leaf.ca)
    spec = spec_for(leaf.name, cfg)
    # renewal keeps the subject and SANs of the existing certificate (renewal/readwriter.go)
    existing = cfg.pki_dir / f"{leaf.base}.crt"
    if existing.exists():
        old = pki.load_cert(existing)
        dns, ips = pki.sans_of(old)
        spec.dns_names, spec.ips = dns or spec.dns_names, ips or spec.ips
    cert, key = pki.sign_leaf(spec, ca_cert, ca_key)
    pki.write_pair(cfg.pki_dir, leaf.base, cert, key)


def renew_kubeconfig(path: Path, pki_dir: Path) -> bool:
    if not path.exists():
        return False
    cfg = kubeconfig.KubeConfig.load(path)
    if not cfg.cert_pem:
        return False

    old = x509.load_pem_x509_certificate(cfg.cert_pem)
    ca_cert, ca_key = pki.load_pair(pki_dir, "ca")
    spec = pki.CertSpec(
        "kubeconfig", "", "ca", pki.subject_cn(old), pki.subject_orgs(old), client=True
    )
    cert, key = pki.sign_leaf(spec, ca_cert, ca_key)
    kubeconfig.write(
        path,
        kubeconfig.render(
            cfg.cluster, cfg.server, cfg.ca_pem, cfg.user, pki.cert_pem(cert), pki.key_pem(key)
        ),
    )
    return True


def short_human_duration(delta: dt.timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 60:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes}m"
    hours = seconds // 3600
    if hours < 24:
        return f"{hours}h"
    if hours < 24 * 365:
        return f"{hours // 24}d"
    return f"{int(hours / 24 / 365)}y"


def _expires(cert) -> tuple[str, str]:
    end = pki.not_after(cert).astimezone(dt.UTC)
    return end.strftime("%b %d, %Y %H:%M UTC"), short_human_duration(end - pki.now())


def check_expiration(pki_dir: Path, kube_dir: Path, version: Version) -> str:
    rows: list[tuple[str, str]] = []  # (sort name, line)
    for name, _text in KUBECONFIGS:
        if name == "super-admin.conf" and version.minor < 29:
            continue
        path = kube_dir / name
        if not path.exists():
            rows.append((name, f"!MISSING! {name}\t"))
            continue
        cfg = kubeconfig.KubeConfig.load(path)

        cert = x509.load_pem_x509_certificate(cfg.cert_pem or b"")
        exp, res = _expires(cert)
        managed = "no" if (pki_dir / "ca.key").exists() else "yes"
        rows.append((name, f"{name}\t{exp}\t{res}\tca\t{managed:<8}"))
    for leaf in LEAVES:
        path = pki_dir / f"{leaf.base}.crt"
        if not path.exists():
            rows.append((leaf.name, f"!MISSING! {leaf.name}\t"))
            continue
        exp, res = _expires(pki.load_cert(path))
        managed = "no" if (pki_dir / f"{leaf.ca}.key").exists() else "yes"
        rows.append((leaf.name, f"{leaf.name}\t{exp}\t{res}\t{leaf.ca_name}\t{managed:<8}"))
    lines = ["CERTIFICATE\tEXPIRES\tRESIDUAL TIME\tCERTIFICATE AUTHORITY\tEXTERNALLY MANAGED"]
    lines += [line for _, line in sorted(rows)]
    lines.append("")
    lines.append("CERTIFICATE AUTHORITY\tEXPIRES\tRESIDUAL TIME\tEXTERNALLY MANAGED")
    for name, base, _cn in CAS:
        path = pki_dir / f"{base}.crt"
        if not path.exists():
            lines.append(f"!MISSING! {name}\t")
            continue
        exp, res = _expires(pki.load_cert(path))
        managed = "no" if (pki_dir / f"{base}.key").exists() else "yes"
        lines.append(f"{name}\t{exp}\t{res}\t{managed:<8}")
    return tabwriter.render("\n".join(lines) + "\n", 10, 3)
