"""
The Prometheus recording and alerting rules of a kubeha control plane, built from code: the
thresholds, the series each rule reads and the rule groups as Prometheus' rule file reads
them. Pure functions, no Salt calls; the ``kubeha_monitoring`` execution module renders
them (``kubeha_monitoring.rules`` / ``render_rules``) and documents what is watched.

Loaded as ``__utils__["kubeha_prom_rules.<name>"]``; only ``rules`` is public.
"""

from __future__ import annotations

AVAILABILITY_SLO = 0.999
LATENCY_P95_SECONDS = 0.5  # the runbook's TTFB goal
MAX_INFLIGHT = {"readOnly": 400, "mutating": 200}  # kube-apiserver flag defaults
ETCD_COMMIT_P95_SECONDS = 0.025
CERT_WARNING_DAYS = 30
BACKUP_MAX_AGE_SECONDS = 2 * 3600
# (severity, long window, short window, burn factor, for) - SRE workbook table 5-8.
BURN_RATES = (
    ("critical", "1h", "5m", 14.4, "2m"),
    ("critical", "6h", "30m", 6, "15m"),
    ("warning", "1d", "2h", 3, "1h"),
    ("warning", "3d", "6h", 1, "3h"),
)
WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
NOT_STREAMING = 'verb!~"WATCH|CONNECT"'


def _record(name: str, expr: str, labels: dict | None = None) -> dict:
    out = {"record": name, "expr": expr}
    if labels:
        out["labels"] = labels
    return out


def _alert(name: str, expr: str, duration: str, severity: str, summary: str) -> dict:
    return {
        "alert": name,
        "expr": expr,
        "for": duration,
        "labels": {"severity": severity},
        "annotations": {"summary": summary},
    }


def _apiserver_records() -> list[dict]:
    out = [
        _record(
            "kubeha:apiserver_request:rate5m",
            "sum by (verb, code) (rate(apiserver_request_total[5m]))",
        )
    ]
    for q in ("0.95", "0.99"):
        out.append(
            _record(
                f"kubeha:apiserver_request_duration_seconds:p{q[2:]}_by_verb",
                f"histogram_quantile({q}, sum by (le, verb) "
                f"(rate(apiserver_request_duration_seconds_bucket{{{NOT_STREAMING}}}[5m])))",
            )
        )
    for window in WINDOWS:
        out.append(
            _record(
                f"kubeha:apiserver_request:error_ratio_rate{window}",
                f'sum(rate(apiserver_request_total{{code=~"5.."}}[{window}])) / '
                f"sum(rate(apiserver_request_total[{window}]))",
            )
        )
    return out


def _apiserver_alerts() -> list[dict]:
    budget = round(1 - AVAILABILITY_SLO, 6)
    out = []
    for severity, long, short, factor, duration in BURN_RATES:
        threshold = f"({factor} * {budget})"
        out.append(
            _alert(
                f"KubeAPIErrorBudgetBurn{long}",
                f"kubeha:apiserver_request:error_ratio_rate{long} > {threshold} and "
                f"kubeha:apiserver_request:error_ratio_rate{short} > {threshold}",
                duration,
                severity,
                f"kube-apiserver burns its {AVAILABILITY_SLO:.1%} availability budget "
                f"{factor}x too fast over {long} (and {short})",
            )
        )
    out += [
        _alert(
            "KubeAPILatencyP95High",
            f"kubeha:apiserver_request_duration_seconds:p95_by_verb > {LATENCY_P95_SECONDS}",
            "10m",
            "warning",
            "kube-apiserver {{ $labels.verb }} p95 above the runbook's "
            f"{LATENCY_P95_SECONDS * 1000:.0f} ms",
        ),
        _alert(
            "KubeAPIInflightSaturation",
            " or ".join(
                f'max by (instance) (apiserver_current_inflight_requests{{request_kind="{k}"}})'
                f" / {v} > 0.8"
                for k, v in MAX_INFLIGHT.items()
            ),
            "5m",
            "warning",
            "kube-apiserver {{ $labels.instance }} uses over 80% of its in-flight limit",
        ),
        _alert(
            "KubeAPIDown",
            'up{job="apiserver"} == 0',
            "1m",
            "critical",
            "kube-apiserver {{ $labels.instance }} does not answer its scrape",
        ),
        _alert(
            "AdmissionWebhookErrors",
            "sum by (name) (rate(apiserver_admission_webhook_rejection_count"
            '{error_type=~"calling_webhook_error|apiserver_internal_error"}[5m])) > 0',
            "5m",
            "warning",
            "admission webhook {{ $labels.name }} fails (calls time out or error)",
        ),
        _alert(
            "AdmissionPolicyDenials",
            "sum by (policy) (increase(apiserver_validating_admission_policy_check_total"
            '{enforcement_action="deny"}[10m])) > 10',
            "0m",
            "info",
            "ValidatingAdmissionPolicy {{ $labels.policy }} refused more than 10 requests "
            "in 10 minutes",
        ),
    ]
    return out


def _leader_rules() -> list[dict]:
    components = "kube-controller-manager|kube-scheduler"
    return [
        _record(
            "kubeha:leader_election:transitions15m",
            f'sum by (name) (changes(leader_election_master_status{{name=~"{components}"}}[15m]))',
        ),
        _alert(
            "KubeControlPlaneNoLeader",
            f'max by (name) (leader_election_master_status{{name=~"{components}"}}) < 1',
            "1m",
            "critical",
            "{{ $labels.name }} has no leader: nothing reconciles or schedules",
        ),
        _alert(
            "KubeControlPlaneLeaderFlapping",
            "kubeha:leader_election:transitions15m > 2",
            "0m",
            "warning",
            "{{ $labels.name }} changed leader {{ $value }} times in 15 minutes",
        ),
    ]


def _etcd_rules() -> list[dict]:
    return [
        _record(
            "kubeha:etcd_disk_backend_commit_duration_seconds:p95",
            "histogram_quantile(0.95, sum by (le, instance) "
            "(rate(etcd_disk_backend_commit_duration_seconds_bucket[5m])))",
        ),
        _alert(
            "EtcdBackendCommitSlow",
            f"kubeha:etcd_disk_backend_commit_duration_seconds:p95 > {ETCD_COMMIT_P95_SECONDS}",
            "10m",
            "warning",
            "etcd {{ $labels.instance }} backend commit p95 above 25 ms (slow disk)",
        ),
        _alert(
            "EtcdDatabaseNearQuota",
            "etcd_mvcc_db_total_size_in_bytes / etcd_server_quota_backend_bytes > 0.8",
            "10m",
            "warning",
            "etcd {{ $labels.instance }} database over 80% of its quota (NOSPACE at 100%)",
        ),
        _alert(
            "EtcdDatabaseFragmented",
            "(etcd_mvcc_db_total_size_in_bytes - etcd_mvcc_db_total_size_in_use_in_bytes)"
            " / etcd_mvcc_db_total_size_in_bytes > 0.5"
            " and etcd_mvcc_db_total_size_in_bytes > 104857600",
            "1h",
            "info",
            "etcd {{ $labels.instance }} database more than half free pages: defragment "
            "one member at a time",
        ),
        _alert(
            "EtcdNoLeader",
            "etcd_server_has_leader == 0",
            "1m",
            "critical",
            "etcd member {{ $labels.instance }} has no leader",
        ),
        _alert(
            "EtcdLeaderChanges",
            "increase(etcd_server_leader_changes_seen_total[15m]) > 3",
            "0m",
            "warning",
            "etcd {{ $labels.instance }} saw more than 3 leader changes in 15 minutes",
        ),
    ]


def _node_rules() -> list[dict]:
    return [
        _record("kubeha:vip_holders:sum", "sum(kubeha_vip_holder)"),
        _alert(
            "VIPNoHolder",
            "kubeha:vip_holders:sum == 0",
            "30s",
            "critical",
            "no control plane holds the API VIP",
        ),
        _alert(
            "VIPSplitBrain",
            "kubeha:vip_holders:sum > 1",
            "30s",
            "critical",
            "{{ $value }} control planes hold the API VIP at once (VRRP split brain)",
        ),
        _alert(
            "KubeCertificateExpiresSoon",
            f"kubeha_certificate_expiry_timestamp_seconds - time() < {CERT_WARNING_DAYS} * 86400",
            "1h",
            "warning",
            "{{ $labels.certificate }} on {{ $labels.instance }} expires within "
            f"{CERT_WARNING_DAYS} days: kubeadm certs renew",
        ),
        _alert(
            "EtcdBackupTooOld",
            # Every control plane records the last success (kubeha_textfile): the newest
            # record counts, so a node that was down during the last write does not alert.
            "time() - max(kubeha_etcd_backup_last_success_timestamp_seconds) > "
            f"{BACKUP_MAX_AGE_SECONDS}",
            "5m",
            "critical",
            "the last etcd snapshot that reached object storage is older than 2 hours",
        ),
    ]


def rules() -> dict:
    """The rule groups, as Prometheus' rule file reads them."""
    return {
        "groups": [
            {"name": "kubeha-apiserver", "rules": _apiserver_records() + _apiserver_alerts()},
            {"name": "kubeha-leader-election", "rules": _leader_rules()},
            {"name": "kubeha-etcd", "rules": _etcd_rules()},
            {"name": "kubeha-nodes", "rules": _node_rules()},
        ]
    }
