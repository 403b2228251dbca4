"""Certificate expiry read from kubeadm's files (_modules/kubeha_pki.py), the two day-2
beacons (_beacons/): their configuration checks, and that they report a condition once,
again only after `renotify`, and never for what a renewal cannot fix (a CA)."""

import base64
import datetime as dt
import http.server
import threading
from pathlib import Path
from unittest.mock import patch

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.unit.modules.khm_load import load

pki_mod = load("_modules", "kubeha_pki")
certs_beacon = load("_beacons", "kubeha_certs")
frag_beacon = load("_beacons", "kubeha_etcd_frag")


def _cert(cn: str, days: float, ca: bool = False, issuer=None) -> tuple[bytes, object]:
    now = dt.datetime.now(dt.UTC)  # read per certificate: unit tests run late in CI
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer[0].subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    cert = builder.sign(issuer[1] if issuer else key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM), (cert, key)


def make_pki(root: Path, leaf_days: float, ca_days: float = 3650) -> dict:
    """A kubeadm-shaped /etc/kubernetes: CAs, leaf certificates, kubeconfigs, kubelet cert."""
    pki = root / "pki"
    (pki / "etcd").mkdir(parents=True, exist_ok=True)
    ca_pem, ca = _cert("kubernetes", ca_days, ca=True)
    etcd_ca_pem, etcd_ca = _cert("etcd-ca", ca_days, ca=True)
    (pki / "ca.crt").write_bytes(ca_pem)
    (pki / "etcd" / "ca.crt").write_bytes(etcd_ca_pem)
    for name in ("apiserver", "apiserver-kubelet-client"):
        (pki / f"{name}.crt").write_bytes(_cert(name, leaf_days, issuer=ca)[0])
    for name in ("server", "peer"):
        (pki / "etcd" / f"{name}.crt").write_bytes(_cert(name, leaf_days, issuer=etcd_ca)[0])
    admin_pem = _cert("kubernetes-admin", leaf_days, issuer=ca)[0]
    kubeconfig = {
        "users": [
            {
                "name": "admin",
                "user": {"client-certificate-data": base64.b64encode(admin_pem).decode()},
            }
        ]
    }
    (root / "admin.conf").write_text(yaml.safe_dump(kubeconfig))
    kubelet = root / "kubelet-client-current.pem"
    kubelet.write_bytes(_cert("system:node:cp-1", 20, issuer=ca)[0])
    return {"pki_dir": str(pki), "kubeconfig_dir": str(root), "kubelet_cert": str(kubelet)}


def test_inventory_names_and_kinds_follow_kubeadm(tmp_path):
    paths = make_pki(tmp_path, leaf_days=200)
    inv = pki_mod.inventory(**paths)
    kinds = {c["name"]: c["kind"] for c in inv["certificates"]}
    assert kinds == {
        "apiserver": "leaf",
        "apiserver-kubelet-client": "leaf",
        "ca": "ca",
        "etcd-ca": "ca",
        "etcd-peer": "leaf",
        "etcd-server": "leaf",
        "admin.conf": "kubeconfig",
        "kubelet-client": "kubelet",
    }
    assert inv["errors"] == []
    days = {c["name"]: c["days_left"] for c in inv["certificates"]}
    assert 199.9 < days["apiserver"] <= 200 and days["ca"] > 3649


def test_expiring_groups_by_what_can_be_done(tmp_path):
    paths = make_pki(tmp_path, leaf_days=10, ca_days=25)
    report = pki_mod.expiring(30, **paths)
    assert {c["name"] for c in report["renewable"]} == {
        "apiserver",
        "apiserver-kubelet-client",
        "etcd-server",
        "etcd-peer",
        "admin.conf",
    }
    assert {c["name"] for c in report["ca"]} == {"ca", "etcd-ca"}
    assert [c["name"] for c in report["kubelet"]] == ["kubelet-client"]
    assert 9.9 < report["min_days_left"] <= 10
    fresh = pki_mod.expiring(5, **paths)
    assert fresh["renewable"] == fresh["ca"] == fresh["kubelet"] == []


@pytest.mark.parametrize(
    ("config", "ok"),
    [
        ([{"cluster": "lab"}, {"renew_before_days": 30}, {"interval": 3600}], True),
        (
            [{"cluster": "lab"}, {"renew_before_days": 365}, {"disable_during_state_run": True}],
            True,
        ),
        ({"cluster": "lab"}, False),
        ([{"cluster": "Lab;rm"}], False),
        ([{"cluster": "lab"}, {"renew_before_days": 0}], False),
        ([{"cluster": "lab"}, {"renew_before_days": True}], False),
        ([{"cluster": "lab"}, {"renotify": 5}], False),
        ([{"cluster": "lab"}, {"pki_dir": "relative"}], False),
        ([{"cluster": "lab"}, {"surprise": 1}], False),
    ],
)
def test_certs_beacon_validates_its_configuration(config, ok):
    valid, message = certs_beacon.validate(config)
    assert valid is ok, message


def _run_certs_beacon(paths: dict, days: float, context: dict, renotify: float = 3600):
    config = [
        {"cluster": "lab"},
        {"renew_before_days": days},
        {"renotify": renotify},
        *[{k: v} for k, v in paths.items()],
        {"_beacon_name": "kubeha_certs"},
    ]
    salt = {"kubeha_pki.expiring": pki_mod.expiring}
    with patch.dict(certs_beacon.__dict__, {"__salt__": salt, "__context__": context}):
        return certs_beacon.beacon(config)


def test_certs_beacon_reports_once_then_after_renotify(tmp_path):
    paths = make_pki(tmp_path, leaf_days=10)
    context: dict = {}
    first = _run_certs_beacon(paths, 30, context)
    assert [e["tag"] for e in first] == ["expiring"]
    assert first[0]["cluster"] == "lab" and first[0]["renew_before_days"] == 30
    assert 9.9 < first[0]["min_days_left"] <= 10
    assert _run_certs_beacon(paths, 30, context) == [], "the same condition was reported twice"
    context["kubeha_certs.sent"]["expiring"]["at"] -= 3601
    assert [e["tag"] for e in _run_certs_beacon(paths, 30, context)] == ["expiring"]
    # Renewed: nothing to say, and the next expiry is news again.
    make_pki(tmp_path, leaf_days=365)
    assert _run_certs_beacon(paths, 30, context) == []
    assert "expiring" not in context["kubeha_certs.sent"]


def test_an_expiring_ca_alone_never_asks_for_a_renewal(tmp_path):
    paths = make_pki(tmp_path, leaf_days=365, ca_days=20)
    events = _run_certs_beacon(paths, 30, {})
    assert [e["tag"] for e in events] == ["ca-expiring"]
    assert {c["name"] for c in events[0]["certificates"]} == {"ca", "etcd-ca"}


def test_the_kubelet_certificate_rides_along_but_never_triggers(tmp_path):
    paths = make_pki(tmp_path, leaf_days=365)  # the kubelet's cert has 20 days
    assert _run_certs_beacon(paths, 30, {}) == []


METRICS = """# HELP etcd_mvcc_db_total_size_in_bytes Total size of the underlying database
# TYPE etcd_mvcc_db_total_size_in_bytes gauge
etcd_mvcc_db_total_size_in_bytes {size}
etcd_mvcc_db_total_size_in_use_in_bytes {used}
etcd_server_quota_backend_bytes 2.147483648e+09
"""


@pytest.fixture
def metrics_server():
    sizes = {"size": 0, "used": 0}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            body = METRICS.format(**sizes).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield sizes, f"http://127.0.0.1:{server.server_address[1]}/metrics"
    server.shutdown()


def _run_frag(url: str, context: dict, limit_mb: float = 1):
    config = [
        {"cluster": "lab"},
        {"fragmented_mb": limit_mb},
        {"metrics_url": url},
        {"renotify": 600},
    ]
    with patch.dict(frag_beacon.__dict__, {"__context__": context}):
        return frag_beacon.beacon(config)


def test_fragmentation_beacon_fires_on_crossing_only(metrics_server):
    sizes, url = metrics_server
    context: dict = {}
    sizes.update(size=3 << 20, used=2 << 20)  # 1 MiB free: not above 1 MiB
    assert _run_frag(url, context) == []
    sizes.update(size=8 << 20, used=2 << 20)
    (event,) = _run_frag(url, context)
    assert event["tag"] == "fragmented" and event["fragmented_bytes"] == 6 << 20
    assert event["quota"] == 2147483648 and event["threshold_bytes"] == 1 << 20
    assert _run_frag(url, context) == []
    sizes.update(size=2 << 20, used=2 << 20)  # defragmented
    assert _run_frag(url, context) == []
    sizes.update(size=9 << 20, used=2 << 20)
    assert len(_run_frag(url, context)) == 1, "a new crossing after a defrag is news"


def test_fragmentation_beacon_says_nothing_when_etcd_does_not_answer():
    assert _run_frag("http://127.0.0.1:9/metrics", {}) == []


@pytest.mark.parametrize(
    ("config", "ok"),
    [
        ([{"cluster": "lab"}, {"fragmented_mb": 512}], True),
        ([{"cluster": "lab"}, {"fragmented_mb": 0}], False),
        ([{"cluster": "lab"}, {"metrics_url": "file:///etc/shadow"}], False),
        ([{"cluster": "lab"}, {"metrics_url": "http://127.0.0.1:2381/metrics x"}], False),
        ([{"fragmented_mb": 1}], False),
    ],
)
def test_fragmentation_beacon_validates_its_configuration(config, ok):
    assert frag_beacon.validate(config)[0] is ok
