"""
The monitoring host's pieces without a lab: the scrape configuration Prometheus' own
promtool accepts, the client certificate flow (the key made on the host, the request signed
by the cluster CA only for Prometheus' identity, the result usable and checked), the
monitoring model's refusals, the textfile metrics promtool reads, and the kubeadm flags that
open etcd's and the KCM/scheduler metrics to the monitoring host.
"""

from __future__ import annotations

import copy
import datetime as dt
import subprocess

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from salt.exceptions import CommandExecutionError

from tests.conftest import REPO, require_binary
from tests.unit.modules.khm_load import load, utils

prometheus = load("_modules", "kubeha_prometheus")
monitoring = load("_modules", "kubeha_monitoring")
monitoring.__utils__ = utils("kubeha_prom_rules", "kubeha_red_dashboard")
pki_sign = load("_modules", "kubeha_pki_sign")
textfile = load("_modules", "kubeha_textfile")
rules = load("_modules", "kubeha_rules_monitoring")
DEFAULTS = yaml.safe_load((REPO / "salt/kubeha/parameters/defaults.yaml").read_text())["values"]


def model(**monitoring) -> dict:
    out = copy.deepcopy(DEFAULTS)
    out["cluster"]["name"] = "lab"
    out["control_plane"] = [{"name": f"cp-{i}", "ip": f"198.18.0.1{i}"} for i in (1, 2, 3)]
    out["monitoring"].update({"enabled": True, "host": "client", **monitoring})
    return out


# ---- the scrape configuration -------------------------------------------------------------


def test_every_component_is_scraped_on_every_control_plane_named_by_node():
    config = prometheus.scrape_config(model())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"prometheus", "apiserver", "kube-controller-manager", "kube-scheduler",
                         "etcd", "haproxy", "node"}  # fmt: skip
    ports = {"apiserver": 6443, "kube-controller-manager": 10257, "kube-scheduler": 10259,
             "etcd": 2381, "haproxy": 8405, "node": 9100}  # fmt: skip
    for job, port in ports.items():
        statics = jobs[job]["static_configs"]
        assert [s["targets"] for s in statics] == [[f"198.18.0.1{i}:{port}"] for i in (1, 2, 3)]
        assert [s["labels"]["instance"] for s in statics] == ["cp-1", "cp-2", "cp-3"]
    # The apiserver's certificate is verified against the cluster CA; the components'
    # self-signed ones cannot be, the client certificate still goes with every scrape.
    assert jobs["apiserver"]["tls_config"]["ca_file"] == "/etc/prometheus/kubeha/ca.crt"
    for job in ("apiserver", "kube-controller-manager", "kube-scheduler"):
        assert jobs[job]["scheme"] == "https"
        assert jobs[job]["tls_config"]["key_file"] == "/etc/prometheus/kubeha/client.key"
    assert jobs["kube-scheduler"]["tls_config"]["insecure_skip_verify"] is True
    assert config["global"]["external_labels"] == {"cluster": "lab"}
    assert config["rule_files"] == ["/etc/prometheus/kubeha-rules.yml"]
    # Prometheus scrapes itself where it listens (every address: the loopback one).
    assert jobs["prometheus"]["static_configs"] == [{"targets": ["127.0.0.1:9090"]}]
    only = prometheus.scrape_config(model(listen_address="198.18.0.100:9091"))
    assert only["scrape_configs"][0]["static_configs"] == [{"targets": ["198.18.0.100:9091"]}]


def test_promtool_accepts_the_configuration_and_the_rules_it_loads(tmp_path):
    promtool = require_binary("promtool")
    certs = tmp_path / "certs"
    certs.mkdir()
    for name in ("ca.crt", "client.crt", "client.key"):
        (certs / name).write_text("placeholder\n")
    rules_file = tmp_path / "kubeha-rules.yml"
    rules_file.write_text(monitoring.render_rules())
    text = prometheus.render_config(model(), cert_dir=str(certs))
    text = text.replace(prometheus.RULES_FILE, str(rules_file))
    config = tmp_path / "prometheus.yml"
    config.write_text(text)
    proc = subprocess.run([promtool, "check", "config", str(config)], capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout + proc.stderr


def test_args_listen_where_pillar_says_keep_what_it_says_and_allow_reload():
    args = prometheus.args(model(listen_address="198.18.0.100:9090", retention="30d"))
    assert args.split() == [
        "--web.listen-address=198.18.0.100:9090",
        "--storage.tsdb.retention.time=30d",
        "--web.enable-lifecycle",
    ]


# ---- the client certificate ---------------------------------------------------------------


def _ca(directory, days=3650):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubernetes")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(1)
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "ca.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "ca.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))  # fmt: skip
    return cert


@pytest.fixture
def host(monkeypatch):
    monkeypatch.setattr(prometheus, "__grains__", {"id": "client"}, raising=False)


def test_the_key_stays_on_the_host_and_the_signed_certificate_is_usable(tmp_path, host):
    ca = _ca(tmp_path / "pki")
    certs = tmp_path / "prom"
    csr = prometheus.client_csr(cert_dir=str(certs))
    key_file = certs / "client.key"
    assert key_file.stat().st_mode & 0o777 == 0o640
    assert "PRIVATE KEY" not in csr  # only the request travels
    key = key_file.read_bytes()
    again = x509.load_pem_x509_csr(prometheus.client_csr(cert_dir=str(certs)).encode())
    assert key_file.read_bytes() == key  # a second request comes from the same key
    assert again.public_key() == x509.load_pem_x509_csr(csr.encode()).public_key()
    assert prometheus.client_status(cert_dir=str(certs))["usable"] is False

    signed = pki_sign.sign_client(csr, 365, pki_dir=str(tmp_path / "pki"))
    cert = x509.load_pem_x509_certificate(signed["cert"].encode())
    assert signed["subject"] == "CN=kubeha-monitoring:client,O=system:monitoring"
    assert cert.issuer == ca.subject
    ca.public_key().verify(cert.signature, cert.tbs_certificate_bytes,
                           ec.ECDSA(cert.signature_hash_algorithm))  # fmt: skip
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    left = cert.not_valid_after_utc - dt.datetime.now(dt.UTC)
    assert dt.timedelta(days=364) < left <= dt.timedelta(days=365)

    status = prometheus.install_client_cert(signed["cert"], signed["ca"], cert_dir=str(certs))
    assert status["usable"] is True, status
    assert (certs / "ca.crt").read_text() == signed["ca"]
    # Renewal is due within renew_before_days.
    late = prometheus.client_status(cert_dir=str(certs), renew_before_days=400)
    assert late["usable"] is False and "expires in" in late["reason"]


def test_a_certificate_for_another_key_is_not_usable(tmp_path, host):
    _ca(tmp_path / "pki")
    certs = tmp_path / "prom"
    signed = pki_sign.sign_client(prometheus.client_csr(cert_dir=str(certs)),
                                  pki_dir=str(tmp_path / "pki"))  # fmt: skip
    (certs / "client.key").unlink()
    prometheus.client_csr(cert_dir=str(certs))  # a new key
    status = prometheus.install_client_cert(signed["cert"], signed["ca"], cert_dir=str(certs))
    assert status == {"usable": False, "reason": "the certificate is not for this key",
                      "days": status["days"]}  # fmt: skip


def _request(cn: str, org: str | None) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs))
    return csr.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


@pytest.mark.parametrize(
    ("cn", "org", "why"),
    [
        ("kubernetes-admin", "system:masters", "refusing CN='kubernetes-admin' O='system:masters'"),
        ("kubeha-monitoring:client", "system:masters", "refusing"),
        ("someone", "system:monitoring", "refusing CN='someone'"),
        ("kubeha-monitoring:", "system:monitoring", "refusing"),
        ("kubeha-monitoring:client", None, "exactly one CN and one O"),
    ],
)
def test_only_prometheus_identity_is_signed(tmp_path, cn, org, why):
    _ca(tmp_path / "pki")
    with pytest.raises(CommandExecutionError, match=why):
        pki_sign.sign_client(_request(cn, org), pki_dir=str(tmp_path / "pki"))


def test_a_bad_request_or_lifetime_is_refused_and_the_ca_end_caps_the_certificate(tmp_path):
    ca = _ca(tmp_path / "pki", days=10)
    with pytest.raises(CommandExecutionError, match="not a PEM certificate request"):
        pki_sign.sign_client("not a request", pki_dir=str(tmp_path / "pki"))
    good = _request("kubeha-monitoring:client", "system:monitoring")
    with pytest.raises(CommandExecutionError, match="outside 1-365"):
        pki_sign.sign_client(good, 400, pki_dir=str(tmp_path / "pki"))
    signed = pki_sign.sign_client(good, 365, pki_dir=str(tmp_path / "pki"))
    cert = x509.load_pem_x509_certificate(signed["cert"].encode())
    assert cert.not_valid_after_utc == ca.not_valid_after_utc


# ---- the model ----------------------------------------------------------------------------


def test_off_by_default_and_the_lab_setting_passes():
    assert DEFAULTS["monitoring"]["enabled"] is False
    assert rules.problems(DEFAULTS) == []
    assert rules.problems(model()) == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"host": ""}, "kubeha:monitoring:host: empty"),
        ({"host": "cp-2"}, "kubeha:monitoring:host: cp-2 is a control plane"),
        ({"node_exporter_port": 2379}, "node_exporter_port: 2379 is etcd's client port's"),
        ({"haproxy_port": 9100}, "haproxy_port: 9100 is also node_exporter_port"),
        ({"haproxy_port": "8405"}, "haproxy_port: '8405' is not a port"),
        ({"listen_address": "0.0.0.0:99999"}, "listen_address: port 99999 is outside 1-65535"),
        ({"renew_before_days": 365}, "renew_before_days: 365 is not below client_cert_days"),
        ({"textfile_interval": 0}, "textfile_interval: 0 is not a whole number in 1-3600"),
        ({"enabled": "yes"}, "kubeha:monitoring:enabled: must be true or false"),
    ],
)
def test_bad_monitoring_settings_are_refused_with_the_key(change, message):
    found = rules.problems(model(**change))
    assert any(message in p for p in found), found


strings = load("_modules", "kubeha_rules_strings")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"retention": "15 days"}, "kubeha:monitoring:retention: '15 days' is not a Prometheus"),
        ({"scrape_interval": "1.5s"}, "kubeha:monitoring:scrape_interval: '1.5s' is not a"),
        ({"evaluation_interval": "1m15s"}, None),  # units combine, largest first
        ({"scrape_interval": "15s1m"}, "kubeha:monitoring:scrape_interval: '15s1m' is not a"),
        ({"listen_address": "9090"}, "kubeha:monitoring:listen_address: '9090' is not host:port"),
        ({"listen_address": ":9090"}, None),
        ({"listen_address": "[::1]:9090"}, None),
        ({"host": "client;reboot"}, "kubeha:monitoring:host: 'client;reboot' is not a minion id"),
    ],
)
def test_monitoring_strings_are_checked_even_while_monitoring_is_off(monkeypatch, change, message):
    from tests.unit.modules.khm_load import utils  # noqa: PLC0415

    monkeypatch.setattr(strings, "__utils__", utils("kubeha_values"), raising=False)
    off = model(enabled=False, **change)
    found = [p for p in strings.problems(off) if p.startswith("kubeha:monitoring:")]
    if message is None:
        assert found == []
    else:
        assert len(found) == 1 and found[0].startswith(message), found


def test_the_vip_lb_port_counts_as_taken():
    found = rules.problems(model(haproxy_port=DEFAULTS["vip"]["lb_port"]))
    assert found == [f"kubeha:monitoring:haproxy_port: {DEFAULTS['vip']['lb_port']} is "
                     "HAProxy's API frontend's; pick a free port."]  # fmt: skip


# ---- the kubeadm flags --------------------------------------------------------------------


def test_monitoring_opens_etcd_metrics_and_the_components_secure_ports():
    config = load("_modules", "kubeha_kubeadm_config")
    on = model()
    on["derived"] = {"kubeadm_api": "v1beta3", "control_plane_endpoint": "198.18.0.10:8443"}
    off = copy.deepcopy(on)
    off["monitoring"]["enabled"] = False
    doc_on, doc_off = config.cluster_configuration(on), config.cluster_configuration(off)
    assert doc_on["etcd"]["local"]["extraArgs"]["listen-metrics-urls"] == "http://0.0.0.0:2381"
    assert "extraArgs" not in doc_off["etcd"]["local"]
    for component in ("controllerManager", "scheduler"):
        assert doc_on[component]["extraArgs"]["bind-address"] == "0.0.0.0"
        assert "bind-address" not in doc_off[component]["extraArgs"]


# ---- the textfile metrics -----------------------------------------------------------------


def test_textfile_metrics_are_valid_exposition_with_full_precision(tmp_path, monkeypatch):
    promtool = require_binary("promtool")
    ends = "2027-11-28T18:00:00+00:00"
    inventory = {"certificates": [{"name": "apiserver", "kind": "leaf", "not_after": ends},
                                  {"name": 'odd"name', "kind": "ca", "not_after": ends}],
                 "errors": []}  # fmt: skip
    salt = {"kubeha_pki.inventory": lambda: inventory,
            "vip_probe.holds": lambda vip: vip == "198.18.0.10"}  # fmt: skip
    monkeypatch.setattr(textfile, "__salt__", salt, raising=False)
    chaos = tmp_path / "chaos"
    chaos.mkdir()
    out = tmp_path / "textfile"
    ret = textfile.write(str(out), "198.18.0.10", str(chaos))
    assert ret["vip_holder"] is True and ret["certificates"] == 2 and ret["chaos"] == []
    text = (out / "kubeha.prom").read_text()
    stamp = int(dt.datetime.fromisoformat(ends).timestamp())
    expiry = 'kubeha_certificate_expiry_timestamp_seconds{certificate="apiserver",kind="leaf"}'
    assert f"{expiry} {stamp}\n" in text
    assert 'certificate="odd\\"name"' in text
    assert 'kubeha_vip_holder{vip="198.18.0.10"} 1\n' in text
    assert "kubeha_chaos_fault 0\n" in text
    (chaos / "etcd-stop.json").write_text("{}")
    assert textfile.write(str(out), "198.18.0.11", str(chaos))["chaos"] == ["etcd-stop"]
    text = (out / "kubeha.prom").read_text()
    assert "kubeha_chaos_fault 1\n" in text and 'kubeha_vip_holder{vip="198.18.0.11"} 0\n' in text
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary left behind
    textfile.backup_succeeded(1764355200.25, str(out))
    for name in ("kubeha.prom", "kubeha_backup.prom"):
        proc = subprocess.run([promtool, "check", "metrics"], input=(out / name).read_text(),
                              capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
    backup = (out / "kubeha_backup.prom").read_text()
    assert "kubeha_etcd_backup_last_success_timestamp_seconds 1764355200.25\n" in backup
