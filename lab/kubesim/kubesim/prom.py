"""Prometheus text exposition for the components' /metrics, as component-base renders it.

component-base/metrics prefixes each HELP text with its stability level
(`[STABLE] `, `[ALPHA] `, `[BETA] `; metrics/opts.go annotateStabilityLevel) and labels are
rendered sorted by name (client_golang's text encoder).
"""

from __future__ import annotations

import threading


def _le(bound: float) -> str:
    return str(int(bound)) if bound == int(bound) else repr(float(bound))


def _labels(names: tuple[str, ...], values: tuple[str, ...], extra: tuple = ()) -> str:
    pairs = sorted(zip(names, values, strict=True)) + list(extra)
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{v}"' for k, v in pairs) + "}"


class Family:
    kind = ""

    def __init__(self, name: str, help_text: str, labels: tuple[str, ...], stability: str) -> None:
        self.name, self.help, self.labelnames, self.stability = name, help_text, labels, stability
        self.lock = threading.Lock()
        self.values: dict[tuple, object] = {}

    def header(self) -> list[str]:
        return [
            f"# HELP {self.name} [{self.stability}] {self.help}",
            f"# TYPE {self.name} {self.kind}",
        ]

    def render(self) -> list[str]:
        raise NotImplementedError


class Counter(Family):
    kind = "counter"

    def inc(self, *values: str, by: float = 1) -> None:
        with self.lock:
            self.values[values] = self.values.get(values, 0) + by

    def render(self) -> list[str]:
        with self.lock:
            items = sorted(self.values.items())
        if not items:
            return []
        body = [f"{self.name}{_labels(self.labelnames, k)} {v:g}" for k, v in items]
        return self.header() + body


class Gauge(Counter):
    kind = "gauge"

    def set(self, *values: str, value: float) -> None:
        with self.lock:
            self.values[values] = value


class Histogram(Family):
    kind = "histogram"

    def __init__(  # noqa: PLR0917 - mirrors the upstream call's parameters
        self, name: str, help_text: str, labels: tuple[str, ...], stability: str, buckets: list
    ) -> None:
        super().__init__(name, help_text, labels, stability)
        self.buckets = buckets

    def observe(self, *values: str, seconds: float) -> None:
        with self.lock:
            entry = self.values.setdefault(values, [0] * len(self.buckets) + [0.0, 0])
            for i, bound in enumerate(self.buckets):
                if seconds <= bound:
                    entry[i] += 1
            entry[-2] += seconds
            entry[-1] += 1

    def render(self) -> list[str]:
        with self.lock:
            items = sorted((k, list(v)) for k, v in self.values.items())
        if not items:
            return []
        out = self.header()
        for key, entry in items:
            for i, bound in enumerate(self.buckets):
                le = (("le", _le(bound)),)
                out.append(f"{self.name}_bucket{_labels(self.labelnames, key, le)} {entry[i]}")
            inf = (("le", "+Inf"),)
            out.append(f"{self.name}_bucket{_labels(self.labelnames, key, inf)} {entry[-1]}")
            out.append(f"{self.name}_sum{_labels(self.labelnames, key)} {entry[-2]}")
            out.append(f"{self.name}_count{_labels(self.labelnames, key)} {entry[-1]}")
        return out


def render(families: list[Family]) -> str:
    lines: list[str] = []
    for family in families:
        lines += family.render()
    return "\n".join(lines) + "\n"
