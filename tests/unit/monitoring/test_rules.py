"""
The formula's Prometheus rules (_modules/kubeha_monitoring.py) under Prometheus' own tools:
`promtool check rules` on the generated file, and `promtool test rules` with a case for
every alert that fires it from synthetic series (and a healthy case that does not), so a
broken expression, threshold or label set fails here. The dashboard's queries must use
only series the rules record or the components export.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, require_binary
from tests.unit.modules.khm_load import load, utils

# The module is a Salt execution module; of Salt's dunders, what these tests call uses only
# __utils__: the builders in _utils/kubeha_prom_rules.py and kubeha_red_dashboard.py.
_SPEC = importlib.util.spec_from_file_location(
    "kubeha_monitoring", REPO / "_modules/kubeha_monitoring.py"
)
monitoring = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(monitoring)
monitoring.__utils__ = utils("kubeha_prom_rules", "kubeha_red_dashboard")
red_dashboard = load("_utils", "kubeha_red_dashboard")

ERRORS = {  # 10 % of requests fail: far above every burn threshold of a 99.9 % SLO
    "apiserver_request_total{code='500', verb='GET', job='apiserver'}": "0+10x300",
    "apiserver_request_total{code='200', verb='GET', job='apiserver'}": "0+90x300",
}
HEALTHY = {
    "apiserver_request_total{code='500', verb='GET', job='apiserver'}": "0x300",
    "apiserver_request_total{code='200', verb='GET', job='apiserver'}": "0+100x300",
}


def _bucket(le: str, per_minute: int) -> tuple[str, str]:
    return (
        f"apiserver_request_duration_seconds_bucket{{verb='LIST', le='{le}'}}",
        f"0+{per_minute}x60",
    )


SLOW = dict(_bucket(le, n) for le, n in (("0.1", 0), ("0.5", 10), ("1", 100), ("+Inf", 100)))
FAST = dict(_bucket(le, n) for le, n in (("0.1", 100), ("0.5", 100), ("1", 100), ("+Inf", 100)))
COMMIT = {
    "etcd_disk_backend_commit_duration_seconds_bucket{instance='cp-1', le='0.008'}": "0+0x60",
    "etcd_disk_backend_commit_duration_seconds_bucket{instance='cp-1', le='0.032'}": "0+10x60",
    "etcd_disk_backend_commit_duration_seconds_bucket{instance='cp-1', le='0.128'}": "0+100x60",
    "etcd_disk_backend_commit_duration_seconds_bucket{instance='cp-1', le='+Inf'}": "0+100x60",
}
NOW = 3 * 86400  # promtool's clock starts at 0: expiry timestamps are relative to it


def case(alert, series, at, fired, summary=None, labels=None):  # noqa: PLR0917 - a table row
    return {"alert": alert, "series": series, "at": at, "fired": fired, "summary": summary,
            "labels": labels or {}}  # fmt: skip


CASES = [
    case("KubeAPIErrorBudgetBurn1h", ERRORS, "60m", True,
         "kube-apiserver burns its 99.9% availability budget 14.4x too fast over 1h (and 5m)"),
    case("KubeAPIErrorBudgetBurn1h", HEALTHY, "60m", False),
    case("KubeAPIErrorBudgetBurn6h", ERRORS, "60m", True,
         "kube-apiserver burns its 99.9% availability budget 6x too fast over 6h (and 30m)"),
    case("KubeAPIErrorBudgetBurn1d", ERRORS, "80m", True,
         "kube-apiserver burns its 99.9% availability budget 3x too fast over 1d (and 2h)"),
    case("KubeAPIErrorBudgetBurn1d", ERRORS, "30m", False),  # still pending (for: 1h)
    case("KubeAPIErrorBudgetBurn3d", ERRORS, "250m", True,
         "kube-apiserver burns its 99.9% availability budget 1x too fast over 3d (and 6h)"),
    case("KubeAPILatencyP95High", SLOW, "30m", True,
         "kube-apiserver LIST p95 above the runbook's 500 ms", {"verb": "LIST"}),
    case("KubeAPILatencyP95High", FAST, "30m", False),
    case("KubeAPIInflightSaturation",
         {"apiserver_current_inflight_requests{instance='cp-1', request_kind='mutating'}": "190x20"},  # noqa: E501
         "10m", True, "kube-apiserver cp-1 uses over 80% of its in-flight limit",
         {"instance": "cp-1"}),
    case("KubeAPIInflightSaturation",
         {"apiserver_current_inflight_requests{instance='cp-1', request_kind='readOnly'}": "190x20"},  # noqa: E501
         "10m", False),  # 190 of 400 read-only is under 80 %
    case("KubeAPIDown", {"up{job='apiserver', instance='cp-2'}": "1 1 0x10"}, "5m", True,
         "kube-apiserver cp-2 does not answer its scrape", {"instance": "cp-2", "job": "apiserver"}),  # noqa: E501
    case("AdmissionWebhookErrors",
         {"apiserver_admission_webhook_rejection_count{name='w.example.com', error_type='calling_webhook_error'}": "0+3x20"},  # noqa: E501
         "10m", True, "admission webhook w.example.com fails (calls time out or error)",
         {"name": "w.example.com"}),
    case("AdmissionPolicyDenials",
         {"apiserver_validating_admission_policy_check_total{policy='kubeha-image-tag', policy_binding='kubeha-image-tag', enforcement_action='deny'}": "0+2x20"},  # noqa: E501
         "15m", True,
         "ValidatingAdmissionPolicy kubeha-image-tag refused more than 10 requests in 10 minutes",
         {"policy": "kubeha-image-tag"}),
    case("KubeControlPlaneNoLeader",
         {"leader_election_master_status{name='kube-scheduler', instance='cp-1'}": "1 1 0x10",
          "leader_election_master_status{name='kube-scheduler', instance='cp-2'}": "0x12"},
         "5m", True, "kube-scheduler has no leader: nothing reconciles or schedules",
         {"name": "kube-scheduler"}),
    case("KubeControlPlaneNoLeader",
         {"leader_election_master_status{name='kube-scheduler', instance='cp-1'}": "1 1 0x10",
          "leader_election_master_status{name='kube-scheduler', instance='cp-2'}": "0 0 1x10"},
         "5m", False),  # handed over
    case("KubeControlPlaneLeaderFlapping",
         {"leader_election_master_status{name='kube-controller-manager', instance='cp-1'}": "1 0 1 0 1 1 1"},  # noqa: E501
         "6m", True, "kube-controller-manager changed leader 4 times in 15 minutes",
         {"name": "kube-controller-manager"}),
    case("EtcdBackendCommitSlow", COMMIT, "30m", True,
         "etcd cp-1 backend commit p95 above 25 ms (slow disk)", {"instance": "cp-1"}),
    case("EtcdDatabaseNearQuota",
         {"etcd_mvcc_db_total_size_in_bytes{instance='cp-1'}": "1800000000x20",
          "etcd_server_quota_backend_bytes{instance='cp-1'}": "2147483648x20"},
         "15m", True, "etcd cp-1 database over 80% of its quota (NOSPACE at 100%)",
         {"instance": "cp-1"}),
    case("EtcdDatabaseFragmented",
         {"etcd_mvcc_db_total_size_in_bytes{instance='cp-1'}": "400000000x90",
          "etcd_mvcc_db_total_size_in_use_in_bytes{instance='cp-1'}": "100000000x90"},
         "80m", True,
         "etcd cp-1 database more than half free pages: defragment one member at a time",
         {"instance": "cp-1"}),
    case("EtcdNoLeader", {"etcd_server_has_leader{instance='cp-3'}": "1 0x5"}, "3m", True,
         "etcd member cp-3 has no leader", {"instance": "cp-3"}),
    case("EtcdLeaderChanges", {"etcd_server_leader_changes_seen_total{instance='cp-1'}": "0+1x20"},
         "10m", True, "etcd cp-1 saw more than 3 leader changes in 15 minutes",
         {"instance": "cp-1"}),
    case("VIPNoHolder", {"kubeha_vip_holder{instance='cp-1'}": "1 0x5",
                         "kubeha_vip_holder{instance='cp-2'}": "0x6"},
         "3m", True, "no control plane holds the API VIP"),
    case("VIPNoHolder", {"kubeha_vip_holder{instance='cp-1'}": "1 0x5",
                         "kubeha_vip_holder{instance='cp-2'}": "0 1x5"}, "3m", False),
    case("VIPSplitBrain", {"kubeha_vip_holder{instance='cp-1'}": "1x6",
                           "kubeha_vip_holder{instance='cp-2'}": "0 1x5"},
         "3m", True, "2 control planes hold the API VIP at once (VRRP split brain)"),
    case("KubeCertificateExpiresSoon",
         {"kubeha_certificate_expiry_timestamp_seconds{instance='cp-1', certificate='apiserver'}":
          f"{NOW + 10 * 86400}x200"},
         "120m", True,
         "apiserver on cp-1 expires within 30 days: kubeadm certs renew",
         {"instance": "cp-1", "certificate": "apiserver"}),
    case("KubeCertificateExpiresSoon",
         {"kubeha_certificate_expiry_timestamp_seconds{instance='cp-1', certificate='apiserver'}":
          f"{NOW + 300 * 86400}x200"}, "120m", False),
    case("EtcdBackupTooOld",
         {"kubeha_etcd_backup_last_success_timestamp_seconds": "0x300"}, "150m", True,
         "the last etcd snapshot that reached object storage is older than 2 hours"),
    case("EtcdBackupTooOld",
         {"kubeha_etcd_backup_last_success_timestamp_seconds": "0+60x300"}, "150m", False),
    # cp-3 was down during the last writes: cp-1's newer record counts, no alert.
    case("EtcdBackupTooOld",
         {"kubeha_etcd_backup_last_success_timestamp_seconds{instance='cp-1'}": "0+60x300",
          "kubeha_etcd_backup_last_success_timestamp_seconds{instance='cp-3'}": "0x300"},
         "150m", False),
]  # fmt: skip


def _alerts() -> dict[str, dict]:
    return {r["alert"]: r for g in monitoring.rules()["groups"] for r in g["rules"] if "alert" in r}


def _test_file(rules_name: str) -> dict:
    alerts = _alerts()
    tests = []
    for c in CASES:
        rule = alerts[c["alert"]]
        expected = []
        if c["fired"]:
            expected.append(
                {
                    "exp_labels": {"severity": rule["labels"]["severity"], **c["labels"]},
                    "exp_annotations": {"summary": c["summary"]},
                }
            )
        tests.append(
            {
                "interval": "1m",
                "input_series": [
                    {"series": s.replace("'", '"'), "values": v} for s, v in c["series"].items()
                ],
                "alert_rule_test": [
                    {"eval_time": c["at"], "alertname": c["alert"], "exp_alerts": expected}
                ],
            }
        )
    return {"rule_files": [rules_name], "evaluation_interval": "1m", "tests": tests}


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    (tmp_path / "kubeha.rules.yaml").write_text(monitoring.render_rules())
    (tmp_path / "kubeha.rules_test.yaml").write_text(
        yaml.safe_dump(_test_file("kubeha.rules.yaml"), sort_keys=False, width=1000)
    )
    return tmp_path


def test_promtool_check_rules(rules_dir):
    promtool = require_binary("promtool")
    out = subprocess.run(
        [promtool, "check", "rules", str(rules_dir / "kubeha.rules.yaml")],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    count = sum(len(g["rules"]) for g in monitoring.rules()["groups"])
    assert f"SUCCESS: {count} rules found" in out.stdout


def test_promtool_test_rules_every_alert_fires(rules_dir):
    promtool = require_binary("promtool")
    fired = {c["alert"] for c in CASES if c["fired"]}
    assert fired == set(_alerts()), f"alerts without a firing case: {set(_alerts()) - fired}"
    out = subprocess.run(
        [promtool, "test", "rules", str(rules_dir / "kubeha.rules_test.yaml")],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_promtool_test_rules_can_fail(rules_dir):
    """A wrong expectation (an alert that does not fire) makes promtool fail: the tests
    above are not vacuous."""
    promtool = require_binary("promtool")
    doc = _test_file("kubeha.rules.yaml")
    healthy = next(t for t in doc["tests"] if not t["alert_rule_test"][0]["exp_alerts"])
    healthy["alert_rule_test"][0]["exp_alerts"] = [{"exp_labels": {"severity": "critical"}}]
    path = rules_dir / "wrong_test.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False, width=1000))
    out = subprocess.run(
        [promtool, "test", "rules", str(path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode != 0


def test_dashboard_queries_use_recorded_or_exported_series():
    groups = monitoring.rules()["groups"]
    recorded = {r["record"] for g in groups for r in g["rules"] if "record" in r}
    exported = {
        "apiserver_current_inflight_requests",
        "etcd_request_duration_seconds_bucket",
        "etcd_mvcc_db_total_size_in_bytes",
        "kubeha_vip_holder",
        "leader_election_master_status",
    }
    for query in monitoring.dashboard_queries():
        names = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*(?=[{\[)\s]|$)", query))
        used = {n for n in names if n in recorded or n in exported}
        assert used, query
    dash = monitoring.dashboard()
    assert dash["uid"] == "kubeha-red"
    assert len(monitoring.dashboard_queries()) == len(red_dashboard.PANELS)
    assert dash["annotations"]["list"][0]["expr"] == "kubeha_chaos_fault == 1"
