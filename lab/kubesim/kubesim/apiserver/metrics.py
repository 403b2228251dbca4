"""Prometheus text metrics: apiserver_request_duration_seconds and apiserver_request_total.

Buckets and labels as in staging/src/k8s.io/apiserver/pkg/endpoints/metrics/metrics.go.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

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
}

BUCKETS = [
    0.005,
    0.025,
    0.05,
    0.1,
    0.2,
    0.4,
    0.6,
    0.8,
    1.0,
    1.25,
    1.5,
    2,
    3,
    4,
    5,
    6,
    8,
    10,
    15,
    20,
    30,
    45,
    60,
]


class Metrics:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.durations: dict[tuple, list] = {}  # labels -> [bucket counts..., sum, count]
        self.totals: dict[tuple, int] = {}

    def observe(  # noqa: PLR0917 - mirrors the upstream call's parameters
        self,
        verb: str,
        group: str,
        version: str,
        resource: str,
        subresource: str,
        scope: str,
        code: int,
        seconds: float,
    ) -> None:
        labels = (
            ("component", "apiserver"),
            ("dry_run", ""),
            ("group", group),
            ("resource", resource),
            ("scope", scope),
            ("subresource", subresource),
            ("verb", verb),
            ("version", version),
        )
        with self.lock:
            entry = self.durations.setdefault(labels, [0] * len(BUCKETS) + [0.0, 0])
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    entry[i] += 1
            entry[-2] += seconds
            entry[-1] += 1
            total = (("code", str(code)),) + labels
            self.totals[total] = self.totals.get(total, 0) + 1

    def observe_exchange(self, ex: Exchange, seconds: float) -> None:
        """Label one request as endpoints/metrics does: API requests by verb, group, version,
        resource, subresource and scope; anything else by its HTTP method alone."""
        route = ex.route
        res = route.res if route is not None else None
        self.observe(
            METRIC_VERB.get(ex.verb, ex.verb.upper()) if res else ex.method,
            res.group if res else "",
            res.version if res else "",
            res.plural if res else "",
            route.subresource if route else "",
            ex.scope,
            ex.code,
            seconds,
        )

    @staticmethod
    def _fmt(labels: tuple, extra: tuple = ()) -> str:
        return "{" + ",".join(f'{k}="{v}"' for k, v in labels + extra) + "}"

    def render(self) -> str:
        out = [
            "# HELP apiserver_request_duration_seconds [STABLE] Response latency distribution "
            "in seconds for each verb, dry run value, group, version, resource, subresource, "
            "scope and component.",
            "# TYPE apiserver_request_duration_seconds histogram",
        ]
        with self.lock:
            for labels, entry in sorted(self.durations.items()):
                for i, bound in enumerate(BUCKETS):
                    out.append(
                        "apiserver_request_duration_seconds_bucket"
                        f"{self._fmt(labels, (('le', repr(float(bound)).rstrip('0').rstrip('.') if bound != int(bound) else str(bound)),))} {entry[i]}"  # noqa: E501 - upstream's text
                    )
                out.append(
                    f"apiserver_request_duration_seconds_bucket{self._fmt(labels, (('le', '+Inf'),))} {entry[-1]}"  # noqa: E501 - upstream's text
                )
                out.append(f"apiserver_request_duration_seconds_sum{self._fmt(labels)} {entry[-2]}")
                out.append(
                    f"apiserver_request_duration_seconds_count{self._fmt(labels)} {entry[-1]}"
                )
            out.append(
                "# HELP apiserver_request_total [STABLE] Counter of apiserver requests broken "
                "out for each verb, dry run value, group, version, resource, scope, "
                "component, and HTTP response code."
            )
            out.append("# TYPE apiserver_request_total counter")
            for labels, count in sorted(self.totals.items()):
                out.append(f"apiserver_request_total{self._fmt(labels)} {count}")
        return "\n".join(out) + "\n"
