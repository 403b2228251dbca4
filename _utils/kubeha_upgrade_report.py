"""
The upgrade report's pure parts: the summary (durations per node and step, the share spent
in kubeadm vs kubeha's own steps), its Markdown, and a Gantt-style picture. The
``kubeha_upgrade.report`` runner writes them; the probe's timeline is added by the caller
when the upgrade ran under watch.
"""

from __future__ import annotations

import datetime

# Steps whose time is kubeadm's (and the kubelet it restarts), not kubeha's own gates.
KUBEADM_STEPS = ("kubeadm-upgrade", "static-pods")
COLORS = {
    "lb-drain": "#8da0cb",
    "vip-away": "#66c2a5",
    "etcd-leader-away": "#a6d854",
    "kubeadm-package": "#ffd92f",
    "kubeadm-upgrade": "#fc8d62",
    "static-pods": "#e78ac3",
    "cordon-drain": "#b3b3b3",
    "kubelet-kubectl": "#e5c494",
    "node-ready": "#8dd3c7",
    "uncordon": "#bebada",
    "gate": "#80b1d3",
    "lb-back": "#fdb462",
}


def _done(steps: list[dict]) -> list[dict]:
    return [s for s in steps if "ended" in s]


def summary(data: dict) -> dict:
    """Durations per node and step, the whole run, and the kubeadm share."""
    passes = data.get("passes") or []
    steps = [s for p in passes for s in _done(p.get("steps") or [])]
    total = max(s["ended"] for s in steps) - min(s["started"] for s in steps) if steps else 0.0
    spent = sum(s["ended"] - s["started"] for s in steps)
    kubeadm = sum(s["ended"] - s["started"] for s in steps if s["step"] in KUBEADM_STEPS)
    per_step: dict[str, float] = {}
    for s in steps:
        per_step[s["step"]] = per_step.get(s["step"], 0.0) + s["ended"] - s["started"]
    return {
        "nodes": len(passes),
        "failed": [p["node"] for p in passes if not p.get("ok", True)],
        "rolled_back": {p["node"]: p["rolled_back_to"] for p in passes if p.get("rolled_back_to")},
        "total_seconds": round(total, 1),
        "kubeadm_seconds": round(kubeadm, 1),
        "kubeha_seconds": round(spent - kubeadm, 1),
        "kubeadm_share": (kubeadm / spent) if spent else 0.0,
        "per_node_seconds": {f"{p['node']}@{p['version']}": p.get("seconds") for p in passes},
        "per_step_seconds": {k: round(v, 1) for k, v in sorted(per_step.items())},
    }


def markdown(data: dict) -> str:
    """The report for people."""
    summ = data["summary"]
    when = datetime.datetime.fromtimestamp(data.get("started", 0), datetime.UTC)
    lines = [
        f"# kubeha {data.get('cluster')}: upgrade to {data.get('target')}",
        "",
        f"Started {when.isoformat(timespec='seconds')}; {summ['nodes']} node passes in "
        f"{summ['total_seconds']:.0f} s: {summ['kubeadm_seconds']:.0f} s in kubeadm "
        f"({summ['kubeadm_share']:.0%}), {summ['kubeha_seconds']:.0f} s in kubeha's own "
        "steps (pools, etcd leadership, packages, drains, gates).",
        "",
        "| node | version | outcome | seconds |",
        "|---|---|---|---|",
    ]
    for p in data.get("passes") or []:
        outcome = "ok" if p.get("ok", True) else f"failed, rolled back to {p.get('rolled_back_to')}"
        lines.append(f"| {p['node']} | {p['version']} | {outcome} | {p.get('seconds')} |")
    lines += ["", "| step | seconds (all nodes) |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in summ["per_step_seconds"].items()]
    versions = data.get("node_versions") or {}
    if versions:
        lines += ["", "| node | runs now |", "|---|---|"]
        lines += [f"| {n} | {v} |" for n, v in sorted(versions.items())]
    probe = data.get("probe") or {}
    if probe.get("count") is not None:
        writes = probe.get("writes") or {}
        lines += [
            "",
            "## What clients saw (the probe through the VIP for the whole upgrade)",
            "",
            "| requests | failed | TTFB p50 ms | p95 ms | p99 ms | max ms | longest stall s | "
            "writes acknowledged | lost |",
            "|---|---|---|---|---|---|---|---|---|",
            f"| {probe['count']} | {probe['failed']} | {probe.get('ttfb_p50_ms')} | "
            f"{probe.get('ttfb_p95_ms')} | {probe.get('ttfb_p99_ms')} | "
            f"{probe.get('ttfb_max_ms')} | {probe.get('longest_stall_s')} | "
            f"{writes.get('acked')} | {writes.get('lost')} |",
        ]
        if probe.get("failed_by_cause"):
            lines += ["", f"Failures by cause: {probe['failed_by_cause']}"]
    elif probe.get("error"):
        lines += ["", f"The probe returned no result: {probe['error']}"]
    return "\n".join(lines) + "\n"


def gantt(data: dict, path: str) -> bool:
    """One row per node pass, one coloured bar per step; False without matplotlib."""
    try:
        import matplotlib  # noqa: PLC0415 - optional on a master

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        return False
    passes = data.get("passes") or []
    steps = [s for p in passes for s in _done(p.get("steps") or [])]
    if not steps:
        return False
    origin = min(s["started"] for s in steps)
    probe = data.get("probe") or {}
    timeline = probe.get("timeline") or []
    rows = 2 if timeline else 1
    fig, axes = plt.subplots(
        rows, 1, figsize=(11, 1.2 + 0.45 * len(passes) + 2.6 * (rows - 1)), dpi=100,
        sharex=True, squeeze=False,
    )  # fmt: skip
    ax = axes[0][0]
    seen = set()
    for row, p in enumerate(passes):
        for s in _done(p.get("steps") or []):
            label = s["step"] if s["step"] not in seen else None
            seen.add(s["step"])
            ax.barh(
                row,
                s["ended"] - s["started"],
                left=s["started"] - origin,
                color=COLORS.get(s["step"], "#d9d9d9"),
                edgecolor="red" if not s.get("ok") else "none",
                label=label,
            )
    ax.set_yticks(range(len(passes)), [f"{p['node']} → {p['version']}" for p in passes])
    ax.invert_yaxis()
    ax.set_title(f"kubeha {data.get('cluster')}: upgrade to {data.get('target')}")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7)  # beside, not on a bar
    if timeline:
        shift = probe["t0"] - origin
        low = axes[1][0]
        ok = [(t + shift, ms) for t, ms, err in timeline if not err and ms is not None]
        bad = [t + shift for t, ms, err in timeline if err]
        low.plot([t for t, _ in ok], [ms for _, ms in ok], ".", ms=2, label="TTFB ms")
        if bad:
            top = max([ms for _, ms in ok] or [1.0])
            low.plot(bad, [top] * len(bad), "x", color="red", label=f"failed ({len(bad)})")
        low.set_ylabel("TTFB ms (probe)")
        low.legend(loc="upper right", fontsize=7)
        ax = low
    ax.set_xlabel("seconds since the first step")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True
