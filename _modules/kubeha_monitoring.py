"""
Prometheus recording and alerting rules for a kubeha control plane, and a RED dashboard of
the same series, generated from code (runbook steps 7 and 12).

What is watched, and the upstream metric each rule reads:

- apiserver Rate / Errors / Duration: ``apiserver_request_total`` and
  ``apiserver_request_duration_seconds`` (STABLE; endpoints/metrics/metrics.go); p95 and
  p99 by verb, WATCH and CONNECT left out (their duration is the stream's life);
- availability SLO (99.9 % of requests not 5xx) with the multi-window, multi-burn-rate
  alerts of the Google SRE workbook ("Alerting on SLOs", table 5-8): page at 14.4x over
  1 h and 5 m, and at 6x over 6 h and 30 m; ticket at 3x over 1 d and 2 h, 1x over 3 d and
  6 h;
- latency: p95 of non-streaming requests above the runbook's 500 ms for 10 m;
- saturation: ``apiserver_current_inflight_requests`` against kube-apiserver's defaults
  ``--max-requests-inflight=400`` and ``--max-mutating-requests-inflight=200``;
- Lease leader election of kube-controller-manager and kube-scheduler:
  ``leader_election_master_status`` (client-go leaderelection metrics), no leader or more
  than 2 transitions in 15 m;
- etcd: ``etcd_disk_backend_commit_duration_seconds`` p95 above 25 ms (etcd's tuning
  guide: backend commit p99 < 25 ms), ``etcd_mvcc_db_total_size_in_bytes`` over 80 % of
  ``etcd_server_quota_backend_bytes`` (NOSPACE comes at 100 %), more than half the db file
  free pages (``..._in_use_in_bytes``: defragment, docs/facts.md #13), no leader
  (``etcd_server_has_leader``), frequent leader changes;
- admission: ValidatingAdmissionPolicy denials
  (``apiserver_validating_admission_policy_check_total``) and webhook calls that failed
  (``apiserver_admission_webhook_rejection_count`` with error_type
  calling_webhook_error/apiserver_internal_error);
- certificates, backups and the VIP from node-exporter's textfile collector:
  ``kubeha_certificate_expiry_timestamp_seconds`` (30 days ahead, the runbook's check),
  ``kubeha_etcd_backup_last_success_timestamp_seconds`` (hourly snapshots: older than 2 h),
  ``kubeha_vip_holder`` (1 on the node that holds the VIP: none or two is an outage or a
  split brain).

CLI Example:

.. code-block:: bash

    salt-call kubeha_monitoring.render_rules
"""

from __future__ import annotations

import json

import yaml

__virtualname__ = "kubeha_monitoring"

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


def __virtual__():
    return __virtualname__


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
    """
    The rule groups, as Prometheus' rule file reads them.

    CLI Example:

    .. code-block:: bash

        salt-call kubeha_monitoring.rules
    """
    return {
        "groups": [
            {"name": "kubeha-apiserver", "rules": _apiserver_records() + _apiserver_alerts()},
            {"name": "kubeha-leader-election", "rules": _leader_rules()},
            {"name": "kubeha-etcd", "rules": _etcd_rules()},
            {"name": "kubeha-nodes", "rules": _node_rules()},
        ]
    }


def render_rules() -> str:
    """
    The rule file as YAML text.

    CLI Example:

    .. code-block:: bash

        salt-call kubeha_monitoring.render_rules
    """
    return "# Generated by kubeha (_modules/kubeha_monitoring.py); do not edit.\n" + yaml.safe_dump(
        rules(), sort_keys=False, width=1000
    )


ETCD_REQUEST_P95 = (
    "histogram_quantile(0.95, sum by (le, operation) "
    "(rate(etcd_request_duration_seconds_bucket[5m])))"
)
LEADERS = 'leader_election_master_status{name=~"kube-controller-manager|kube-scheduler"}'
# (row, title, query, unit) of the RED dashboard.
PANELS = (
    ("apiserver", "Requests by verb", "sum by (verb) (kubeha:apiserver_request:rate5m)", "reqps"),
    (
        "apiserver",
        "Errors (5xx ratio)",
        "kubeha:apiserver_request:error_ratio_rate5m",
        "percentunit",
    ),
    ("apiserver", "Duration p95", "kubeha:apiserver_request_duration_seconds:p95_by_verb", "s"),
    ("apiserver", "Duration p99", "kubeha:apiserver_request_duration_seconds:p99_by_verb", "s"),
    ("apiserver", "In flight", "max by (request_kind) (apiserver_current_inflight_requests)", ""),
    ("etcd", "etcd requests from the apiserver p95", ETCD_REQUEST_P95, "s"),
    ("etcd", "Backend commit p95", "kubeha:etcd_disk_backend_commit_duration_seconds:p95", "s"),
    ("etcd", "Database size", "etcd_mvcc_db_total_size_in_bytes", "bytes"),
    ("VIP and leaders", "VIP holder", "kubeha_vip_holder", ""),
    ("VIP and leaders", "Lease leaders", LEADERS, ""),
)


def dashboard() -> dict:
    """
    The RED dashboard (Grafana JSON model, schema 39): one row per concern, one time series
    panel per query of ``PANELS``; a chaos run's window shows as the annotation
    ``kubeha_chaos_fault`` (1 while a fault is active).

    CLI Example:

    .. code-block:: bash

        salt-call kubeha_monitoring.dashboard
    """
    panels, y, row_id = [], 0, None
    for i, (row, title, query, unit) in enumerate(PANELS):
        if row != row_id:
            panels.append(
                {
                    "type": "row",
                    "title": row,
                    "id": 100 + i,
                    "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                }
            )
            row_id, y = row, y + 1
        column = len([p for p in panels if p.get("type") == "timeseries" and p["_row"] == row]) % 2
        panels.append(
            {
                "_row": row,
                "type": "timeseries",
                "id": i + 1,
                "title": title,
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "gridPos": {"h": 8, "w": 12, "x": 12 * column, "y": y},
                "targets": [{"refId": "A", "expr": query, "legendFormat": "__auto"}],
            }
        )
        y += 8 if column == 1 else 0
    for panel in panels:
        panel.pop("_row", None)
    return {
        "title": "kubeha control plane (RED)",
        "uid": "kubeha-red",
        "schemaVersion": 39,
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "30s",
        "templating": {
            "list": [{"name": "datasource", "type": "datasource", "query": "prometheus"}]
        },
        "annotations": {
            "list": [
                {
                    "name": "chaos faults",
                    "datasource": {"type": "prometheus", "uid": "${datasource}"},
                    "enable": True,
                    "expr": "kubeha_chaos_fault == 1",
                    "titleFormat": "chaos: {{ scenario }}",
                    "iconColor": "red",
                }
            ]
        },
        "panels": panels,
    }


def dashboard_queries() -> list[str]:
    """
    Every query the dashboard runs (the panels; the chaos annotation is separate).

    CLI Example:

    .. code-block:: bash

        salt-call kubeha_monitoring.dashboard_queries
    """
    return [target["expr"] for p in dashboard()["panels"] for target in p.get("targets", [])]


def render_dashboard() -> str:
    """
    The dashboard as JSON text.

    CLI Example:

    .. code-block:: bash

        salt-call kubeha_monitoring.render_dashboard
    """
    return json.dumps(dashboard(), indent=2, sort_keys=True) + "\n"
