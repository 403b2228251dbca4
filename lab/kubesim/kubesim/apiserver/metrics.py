"""The apiserver's /metrics: the request, in-flight and etcd families a lab measures.

Names, help texts, labels, buckets and stability as upstream 1.28-1.31 declares them:
- staging/src/k8s.io/apiserver/pkg/endpoints/metrics/metrics.go: apiserver_request_total,
  apiserver_request_duration_seconds, apiserver_request_sli_duration_seconds,
  apiserver_current_inflight_requests, apiserver_longrunning_requests,
  apiserver_request_terminations_total. MonitorRequest records every instrumented request
  when it ends, WATCH included (its duration is the watch's life); CleanScope makes a
  create `resource`-scoped; the health endpoints are instrumented with
  InstrumentHandlerFunc("GET", "", "", "", <path>, "", "", ...) (server/healthz/healthz.go),
  i.e. subresource = path and no component; /version, /metrics and discovery are not
  instrumented. The in-flight gauge is the highest count of the last second, per
  readOnly/mutating, long-running requests excluded (filters/maxinflight.go
  startWatermarkMaintenance, UpdateInflightRequestMetrics).
- staging/src/k8s.io/apiserver/pkg/storage/etcd3/metrics/metrics.go:
  etcd_request_duration_seconds, etcd_requests_total, etcd_request_errors_total with
  labels operation and type (the group-resource, e.g. `leases.coordination.k8s.io`).
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from ..prom import Counter, Gauge, Histogram, render

if TYPE_CHECKING:
    from .exchange import Exchange

# The verb label of apiserver_request_* (endpoints/metrics: LIST and WATCH split from GET).
METRIC_VERB = {
    "get": "GET",
    "list": "LIST",
    "watch": "WATCH",
    "create": "POST",
    "update": "PUT",
    "patch": "PATCH",
    "delete": "DELETE",
    "deletecollection": "DELETE",  # the method, as upstream's CleanVerb
}
LATENCY = [0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2, 3, 4, 5, 6, 8, 10]
LATENCY += [15, 20, 30, 45, 60]
SLI = LATENCY[2:]
HEALTH_PATHS = ("/healthz", "/livez", "/readyz")
REQUEST = ("verb", "dry_run", "group", "version", "resource", "subresource", "scope", "component")
NO_DRY_RUN = tuple(n for n in REQUEST if n != "dry_run")


class Metrics:
    def __init__(self) -> None:
        self.total = Counter(
            "apiserver_request_total",
            "Counter of apiserver requests broken out for each verb, dry run value, group, "
            "version, resource, scope, component, and HTTP response code.",
            (*REQUEST, "code"),
            "STABLE",
        )
        self.duration = Histogram(
            "apiserver_request_duration_seconds",
            "Response latency distribution in seconds for each verb, dry run value, group, "
            "version, resource, subresource, scope and component.",
            REQUEST,
            "STABLE",
            LATENCY,
        )
        self.sli = Histogram(
            "apiserver_request_sli_duration_seconds",
            "Response latency distribution (not counting webhook duration and priority & "
            "fairness queue wait times) in seconds for each verb, group, version, resource, "
            "subresource, scope and component.",
            NO_DRY_RUN,
            "ALPHA",
            SLI,
        )
        self.inflight = Gauge(
            "apiserver_current_inflight_requests",
            "Maximal number of currently used inflight request limit of this apiserver per "
            "request kind in last second.",
            ("request_kind",),
            "STABLE",
        )
        self.longrunning = Gauge(
            "apiserver_longrunning_requests",
            "Gauge of all active long-running apiserver requests broken out by verb, group, "
            "version, resource, scope and component. Not all requests are tracked this way.",
            NO_DRY_RUN,
            "STABLE",
        )
        self.terminations = Counter(
            "apiserver_request_terminations_total",
            "Number of requests which apiserver terminated in self-defense.",
            (*NO_DRY_RUN, "code"),
            "ALPHA",
        )
        self.etcd_duration = Histogram(
            "etcd_request_duration_seconds",
            "Etcd request latency in seconds for each operation and object type.",
            ("operation", "type"),
            "ALPHA",
            LATENCY,
        )
        self.etcd_total = Counter(
            "etcd_requests_total",
            "Etcd request counts for each operation and object type.",
            ("operation", "type"),
            "ALPHA",
        )
        self.etcd_errors = Counter(
            "etcd_request_errors_total",
            "Etcd failed request counts for each operation and object type.",
            ("operation", "type"),
            "ALPHA",
        )
        # validating/metrics/metrics.go (1.30-1.31): deny, warn, audit, and allow for an
        # evaluation error that failurePolicy Ignore let through.
        self.vap_check = Counter(
            "apiserver_validating_admission_policy_check_total",
            "Validation admission policy check total, labeled by policy and further "
            "identified by binding and enforcement action taken.",
            ("policy", "policy_binding", "enforcement_action"),
            "ALPHA",
        )
        self.lock = threading.Lock()
        self.executing = {"readOnly": 0, "mutating": 0}
        self.watermark = {"readOnly": 0, "mutating": 0}
        for kind in self.watermark:
            self.inflight.set(kind, value=0)
        threading.Thread(target=self._watermarks, daemon=True, name="watermark").start()

    # -- in flight ------------------------------------------------------------------------------
    def started(self, mutating: bool) -> None:
        kind = "mutating" if mutating else "readOnly"
        with self.lock:
            self.executing[kind] += 1
            self.watermark[kind] = max(self.watermark[kind], self.executing[kind])

    def finished(self, mutating: bool) -> None:
        with self.lock:
            self.executing["mutating" if mutating else "readOnly"] -= 1

    def _watermarks(self) -> None:
        while True:
            time.sleep(1.0)  # inflightUsageMetricUpdatePeriod
            with self.lock:
                marks, self.watermark = self.watermark, dict(self.executing)
            for kind, value in marks.items():
                self.inflight.set(kind, value=value)

    # -- requests ------------------------------------------------------------------------------
    @staticmethod
    def labels(ex: Exchange) -> tuple[str, ...] | None:
        """MonitorRequest's labels for `ex`, or None where upstream does not instrument."""
        route = ex.route
        res = route.res if route is not None else None
        if res is not None:
            verb = METRIC_VERB.get(ex.verb, ex.verb.upper())
            dry_run = "All" if ex.query.get("dryRun") == "All" else ""
            scope = "resource" if ex.verb == "create" else ex.scope
            return (verb, dry_run, res.group, res.version, res.plural, route.subresource, scope)
        if ex.path in HEALTH_PATHS:
            return (ex.method, "", "", "", "", ex.path, "")
        return None

    def observe_exchange(self, ex: Exchange, seconds: float, code: int | None = None) -> None:
        labels = self.labels(ex)
        if labels is None:
            return
        component = "apiserver" if ex.route is not None and ex.route.res else ""
        full = (*labels, component)
        self.total.inc(*full, str(code if code is not None else ex.code))
        self.duration.observe(*full, seconds=seconds)
        self.sli.observe(*full[:1], *full[2:], seconds=seconds)

    def longrunning_delta(self, ex: Exchange, delta: int) -> None:
        labels = self.labels(ex)
        if labels is None:
            return
        key = (*labels[:1], *labels[2:], "apiserver")
        with self.longrunning.lock:
            self.longrunning.values[key] = self.longrunning.values.get(key, 0) + delta

    def terminated(self, ex: Exchange, code: int) -> None:
        labels = self.labels(ex)
        if labels is not None:
            component = "apiserver" if ex.route is not None and ex.route.res else ""
            self.terminations.inc(*labels[:1], *labels[2:], component, str(code))

    def policy_check(self, policy: str, binding: str, action: str) -> None:
        self.vap_check.inc(policy, binding, action)

    # -- etcd ----------------------------------------------------------------------------------
    def etcd(self, operation: str, kind: str, seconds: float, failed: bool) -> None:
        self.etcd_duration.observe(operation, kind, seconds=seconds)
        self.etcd_total.inc(operation, kind)
        if failed:
            self.etcd_errors.inc(operation, kind)

    def render(self) -> str:
        return render(
            [
                self.inflight,
                self.longrunning,
                self.duration,
                self.sli,
                self.terminations,
                self.total,
                self.etcd_duration,
                self.etcd_errors,
                self.etcd_total,
                self.vap_check,
            ]
        )
