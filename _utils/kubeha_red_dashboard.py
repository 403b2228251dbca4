"""
The RED dashboard of a kubeha control plane (Grafana JSON model, schema 39), built from
code: one row per concern, one time series panel per query of ``PANELS``, and the chaos
runs' window as an annotation. Its queries read the series ``kubeha_prom_rules`` records
or the components export (tests/unit/monitoring/test_rules.py checks that).

Loaded as ``__utils__["kubeha_red_dashboard.<name>"]`` by the ``kubeha_monitoring``
execution module (``dashboard``, ``render_dashboard``, ``dashboard_queries``).
"""

from __future__ import annotations

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
    The dashboard: one row per concern, one time series panel per query of ``PANELS``; a
    chaos run's window shows as the annotation ``kubeha_chaos_fault`` (1 while a fault is
    active).
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
