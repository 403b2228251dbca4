"""
Prometheus on the monitoring host (runbook step 12): its scrape jobs for one kubeha cluster,
its client identity towards the cluster, and its command-line arguments.

Scrape jobs, one static target per control plane, ``instance`` set to the node's name (what
the rules' and alerts' ``{{ $labels.instance }}`` show):

- ``apiserver``: ``https://<ip>:<apiserver port>/metrics``, verified against the cluster CA,
  with Prometheus' client certificate (O ``system:monitoring``: upstream's bootstrap
  ClusterRole ``system:monitoring`` grants GET on /metrics);
- ``kube-controller-manager`` (10257) and ``kube-scheduler`` (10259): the same client
  certificate (their delegated authorization asks the apiserver); their serving
  certificates are self-signed by the components (kubeadm gives them none), so the server
  certificate is not verified: the client certificate is what protects the data;
- ``etcd``: ``http://<ip>:2381/metrics`` (etcd's ``--listen-metrics-urls``,
  plain HTTP as kubeadm sets it up);
- ``haproxy``: HAProxy's own exporter (``http://<ip>:<haproxy_port>/metrics``);
- ``node``: node exporter, with the ``kubeha_*`` textfile metrics (``kubeha_textfile``);
- ``prometheus``: itself.

The client key is made on the monitoring host and never leaves it: ``client_csr`` returns a
certificate request, the init node signs it (``kubeha_pki.sign_client``), and
``install_client_cert`` stores the certificate and the CA. ``orch.monitoring`` (runner
``kubeha_monitoring.setup``) runs these steps, then ``state.apply kubeha.monitoring.server``.

CLI Example:

.. code-block:: bash

    salt-call kubeha_prometheus.render_config "$(cat model.json)"
    salt monitor kubeha_prometheus.client_csr
    salt monitor kubeha_prometheus.client_status
"""

from __future__ import annotations

import datetime as dt
import json
import os
import pwd
import urllib.parse
import urllib.request
from pathlib import Path

import yaml
from salt.exceptions import CommandExecutionError

__virtualname__ = "kubeha_prometheus"

CERT_DIR = "/etc/prometheus/kubeha"
RULES_FILE = "/etc/prometheus/kubeha-rules.yml"
# The identity Prometheus scrapes with: the bootstrap ClusterRoleBinding system:monitoring
# binds the group (plugin/pkg/auth/authorizer/rbac/bootstrappolicy/policy.go).
ORGANIZATION = "system:monitoring"
COMMON_NAME_PREFIX = "kubeha-monitoring:"
KCM_PORT = 10257  # kube-controller-manager's secure port (cmd/kube-controller-manager)
SCHEDULER_PORT = 10259  # kube-scheduler's secure port (pkg/scheduler/apis/config)
ETCD_METRICS_PORT = 2381  # kubeadm constants.EtcdMetricsPort
USER = "prometheus"  # Debian's package runs Prometheus as this user


def __virtual__():
    return __virtualname__


def _targets(kubeha: dict, port: int) -> list[dict]:
    return [
        {"targets": [f"{n['ip']}:{port}"], "labels": {"instance": n["name"]}}
        for n in kubeha["control_plane"]
    ]


def _tls(cert_dir: str, verify: bool) -> dict:
    tls = {"cert_file": f"{cert_dir}/client.crt", "key_file": f"{cert_dir}/client.key"}
    if verify:
        tls["ca_file"] = f"{cert_dir}/ca.crt"
    else:
        tls["insecure_skip_verify"] = True
    return tls


def scrape_config(kubeha: dict, cert_dir: str = CERT_DIR) -> dict:
    """
    The whole ``prometheus.yml`` for the cluster of ``kubeha`` (the model).

    CLI Example:

    .. code-block:: bash

        salt-call kubeha_prometheus.scrape_config "$(cat model.json)"
    """
    mon = kubeha["monitoring"]
    cluster = kubeha["cluster"]["name"]

    def https(job: str, port: int, verify: bool) -> dict:
        return {"job_name": job, "scheme": "https", "tls_config": _tls(cert_dir, verify),
                "static_configs": _targets(kubeha, port)}  # fmt: skip

    def http(job: str, port: int) -> dict:
        return {"job_name": job, "static_configs": _targets(kubeha, port)}

    return {
        "global": {
            "scrape_interval": mon["scrape_interval"],
            "evaluation_interval": mon["evaluation_interval"],
            # Every series says which cluster it is from (one Prometheus, several clusters).
            "external_labels": {"cluster": cluster},
        },
        "rule_files": [RULES_FILE],
        "scrape_configs": [
            {
                "job_name": "prometheus",
                "static_configs": [{"targets": [_local_address(mon["listen_address"])]}],
            },
            https("apiserver", int(kubeha["apiserver"]["port"]), True),
            https("kube-controller-manager", KCM_PORT, False),
            https("kube-scheduler", SCHEDULER_PORT, False),
            http("etcd", ETCD_METRICS_PORT),
            http("haproxy", int(mon["haproxy_port"])),
            http("node", int(mon["node_exporter_port"])),
        ],
    }


def render_config(kubeha: dict, cert_dir: str = CERT_DIR) -> str:
    """
    ``prometheus.yml`` as text (what kubeha.monitoring.server writes, checked by promtool).

    CLI Example:

    .. code-block:: bash

        salt-call kubeha_prometheus.render_config "$(cat model.json)"
    """
    head = "# Managed by Salt (kubeha.monitoring.server): scrape jobs of one kubeha cluster.\n"
    return head + yaml.safe_dump(scrape_config(kubeha, cert_dir), sort_keys=False)


def args(kubeha: dict) -> str:
    """
    Prometheus' ARGS (Debian's /etc/default/prometheus).

    CLI Example:

    .. code-block:: bash

        salt-call kubeha_prometheus.args "$(cat model.json)"
    """
    mon = kubeha["monitoring"]
    return (
        f"--web.listen-address={mon['listen_address']} "
        f"--storage.tsdb.retention.time={mon['retention']} "
        # POST /-/reload instead of a restart that loses the in-memory head block.
        "--web.enable-lifecycle"
    )


def _chown_to_prometheus(path: Path) -> None:
    try:
        entry = pwd.getpwnam(USER)
    except KeyError:  # the package is not installed yet: root keeps it, 0640
        return
    os.chown(path, 0, entry.pw_gid)


def client_csr(cert_dir=CERT_DIR):
    """
    A certificate request for Prometheus' client certificate (CN ``kubeha-monitoring:<this
    minion>``, O ``system:monitoring``), from the key in ``<cert_dir>/client.key``: made here
    (EC P-256, 0640 root:prometheus) when missing, never sent anywhere.

    CLI Example:

    .. code-block:: bash

        salt monitor kubeha_prometheus.client_csr
    """
    from cryptography import x509  # noqa: PLC0415
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
    from cryptography.x509.oid import NameOID  # noqa: PLC0415

    directory = Path(cert_dir)
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    key_path = directory / "client.key"
    if key_path.exists():
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    else:
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        tmp = directory / ".client.key.new"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        _chown_to_prometheus(tmp)
        tmp.replace(key_path)
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
        x509.NameAttribute(NameOID.COMMON_NAME, f"{COMMON_NAME_PREFIX}{__grains__['id']}"),
    ])  # fmt: skip
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def client_status(cert_dir=CERT_DIR, renew_before_days=30):
    """
    Whether Prometheus' client certificate is usable: present, made for the key here, and
    valid for more than ``renew_before_days``.

    CLI Example:

    .. code-block:: bash

        salt monitor kubeha_prometheus.client_status
    """
    from cryptography import x509  # noqa: PLC0415
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    directory = Path(cert_dir)
    cert_path, key_path = directory / "client.crt", directory / "client.key"
    if not cert_path.exists() or not key_path.exists() or not (directory / "ca.crt").exists():
        return {"usable": False, "reason": "no certificate yet"}
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    same = cert.public_key().public_bytes(serialization.Encoding.PEM, public) == (
        key.public_key().public_bytes(serialization.Encoding.PEM, public)
    )
    left = cert.not_valid_after_utc - dt.datetime.now(dt.UTC)
    days = round(left.total_seconds() / 86400, 1)
    if not same:
        return {"usable": False, "reason": "the certificate is not for this key", "days": days}
    if days <= float(renew_before_days):
        return {"usable": False, "reason": f"expires in {days} days", "days": days}
    return {"usable": True, "reason": f"valid {days} more days", "days": days}


def install_client_cert(cert, ca, cert_dir=CERT_DIR):
    """
    Store the signed client certificate and the cluster CA (public, 0644) beside the key.

    CLI Example:

    .. code-block:: bash

        salt monitor kubeha_prometheus.install_client_cert "$CERT" "$CA"
    """
    from cryptography import x509  # noqa: PLC0415

    for pem in (cert, ca):  # refuse anything that is not a certificate before writing
        x509.load_pem_x509_certificate(pem.encode())
    directory = Path(cert_dir)
    for name, pem in (("client.crt", cert), ("ca.crt", ca)):
        tmp = directory / f".{name}.new"
        tmp.write_text(pem)
        tmp.chmod(0o644)
        tmp.replace(directory / name)
    return client_status(cert_dir)


def _local_address(listen_address: str) -> str:
    """Where this host reaches its own Prometheus: the listen address, or the loopback one
    when it listens on every address."""
    host, _, port = str(listen_address).rpartition(":")
    if host in ("", "0.0.0.0", "[::]"):
        host = "127.0.0.1"
    return f"{host}:{port}"


def _local_url(listen_address: str) -> str:
    return f"http://{_local_address(listen_address)}"


def _api(listen_address: str, path: str, params: dict | None = None, timeout: float = 10):
    url = _local_url(listen_address) + path
    if params:
        url += "?" + urllib.parse.urlencode(params)
    try:
        with urllib.request.urlopen(url, timeout=float(timeout)) as resp:  # noqa: S310 - local
            body = json.load(resp)
    except (OSError, ValueError) as err:
        raise CommandExecutionError(f"Prometheus at {url}: {err}") from err
    if body.get("status") != "success":
        raise CommandExecutionError(f"Prometheus at {url}: {body.get('error') or body}")
    return body["data"]


def targets(listen_address="0.0.0.0:9090"):
    """
    Every active scrape target of this host's Prometheus: job, instance, health, last error.

    CLI Example:

    .. code-block:: bash

        salt monitor kubeha_prometheus.targets
    """
    data = _api(listen_address, "/api/v1/targets", {"state": "active"})
    return sorted(
        (
            {
                "job": t["labels"].get("job"),
                "instance": t["labels"].get("instance"),
                "health": t.get("health"),
                "error": t.get("lastError") or "",
                "url": t.get("scrapeUrl"),
            }
            for t in data["activeTargets"]
        ),
        key=lambda t: (t["job"] or "", t["instance"] or ""),
    )


def query(expr, listen_address="0.0.0.0:9090"):
    """
    An instant query against this host's Prometheus; the result vector as
    ``[{"metric": {...}, "value": float}]``.

    CLI Example:

    .. code-block:: bash

        salt monitor kubeha_prometheus.query 'up == 0'
    """
    data = _api(listen_address, "/api/v1/query", {"query": str(expr)})
    if data["resultType"] == "scalar":
        return [{"metric": {}, "value": float(data["result"][1])}]
    return [{"metric": r["metric"], "value": float(r["value"][1])} for r in data["result"]]


def alerts(listen_address="0.0.0.0:9090"):
    """
    The alerts this host's Prometheus holds (pending and firing), with labels and state.

    CLI Example:

    .. code-block:: bash

        salt monitor kubeha_prometheus.alerts
    """
    data = _api(listen_address, "/api/v1/alerts")
    return [{"name": a["labels"].get("alertname"), "state": a["state"], "labels": a["labels"],
             "active_at": a.get("activeAt")} for a in data["alerts"]]  # fmt: skip
