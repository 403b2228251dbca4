"""
Timeline pictures of chaos runs (PNG, matplotlib on the master; in the style of
``kubeha_report``'s steady-state timeline): TTFB of every request through the VIP with the
failed ones marked, the fault window shaded, and below it bands for who held the VIP, what
each HAProxy saw of each apiserver, the Lease holders and the etcd leader.

``run_png(entry, path)`` draws one run; ``summary_png(entries, path)`` a small panel per
report row. Both return False (and draw nothing) where matplotlib is missing.
"""

import logging

log = logging.getLogger(__name__)

# Nodes in blues/purples/browns; green and red are kept for UP and DOWN.
NODE_COLORS = ["#1f77b4", "#9467bd", "#8c564b", "#17becf", "#e377c2", "#bcbd22", "#393b79"]
STATUS_COLORS = {"UP": "#2ca02c", "DOWN": "#d62728", "NOLB": "#ff7f0e", "MAINT": "#7f7f7f",
                 "DRAIN": "#ff7f0e", "unreadable": "#cccccc", "off": "#444444"}  # fmt: skip


def _plt():
    try:
        import matplotlib  # noqa: PLC0415 - optional: without it the report has no PNG

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        log.warning("kubeha: matplotlib is not installed on the master; no PNG timeline")
        return None
    return plt


def _segments(points, t0, end):
    """[[t, value], ...] (changes) -> [(start, width, value)] relative to t0, up to end."""
    out = []
    for i, (t, value) in enumerate(points):
        stop = points[i + 1][0] if i + 1 < len(points) else end
        if stop > t:
            out.append((t - t0, stop - t, value))
    return out


def _ttfb(ax, entry, t0):
    raw = (entry.get("raw") or {}).get("requests") or []
    ok = [(r[1] - t0, max(r[3], 0.1)) for r in raw if not r[6] and r[3] is not None]
    bad = [(r[1] - t0, r[6]) for r in raw if r[6]]
    if ok:
        ax.plot([x for x, _ in ok], [y for _, y in ok], ".", ms=3, label="TTFB (ms)")
    top = max([y for _, y in ok] + [1000.0]) * 1.5
    if bad:
        ax.plot([x for x, _ in bad], [top] * len(bad), "x", color="red",
                label=f"failed ({len(bad)})")  # fmt: skip
    ax.set_yscale("log")
    ax.set_ylim(1, top * 2)
    ax.set_ylabel("TTFB ms")


def _shade(axes, entry, t0):
    fault = entry["fault"]
    start, stop = fault["at"] - t0, (fault.get("reverted_at") or fault["at"]) - t0
    for ax in axes:
        ax.axvspan(start, max(stop, start + 0.2), color="orange", alpha=0.18, lw=0)


def _healing(ax, entry, t0):
    """The self-healing VIP (issue 14) on the TTFB axis: each beacon report the master got
    (a triangle at the bottom) and each decision of the kubeha_vip runner that acted (a
    dashed line, labelled)."""
    heal = entry.get("healing") or {}
    events = heal.get("events") or []
    if events:
        ax.plot([e.get("received", e["at"]) - t0 for e in events], [1.5] * len(events), "^",
                ms=4, color="#9467bd", label=f"VIP beacon reports ({len(events)})")  # fmt: skip
    for decision in heal.get("decisions") or []:
        if decision.get("action") in (None, "none"):
            continue
        x = decision["at"] - t0
        ax.axvline(x, color="#2ca02c", ls="--", lw=1)
        ax.text(x, 3, f" {decision['action']} {decision.get('target') or ''}", fontsize=7,
                color="#2ca02c", rotation=90, va="bottom")  # fmt: skip


def _bands(ax, entry, t0):
    """One horizontal band per timeline: value -> colour, labelled on the y axis."""
    m = entry["measured"]
    end = entry["end"]
    nodes = sorted({*m["vip"].get("before", []), *entry.get("macs", {}), *m["haproxy"]["timeline"]})
    color = {n: NODE_COLORS[i % len(NODE_COLORS)] for i, n in enumerate(nodes)}
    rows = [("VIP", [[t, (h[0] if len(h) == 1 else ("several" if h else "nobody"))]
                     for t, h in m["vip"]["timeline"]])]  # fmt: skip
    for name, lease in sorted(m["leases"].items()):
        short = name.replace("kube-", "").replace("controller-manager", "KCM")
        rows.append((f"{short} lease", [[t, h] for t, h, _ in lease["timeline"]]))
    rows.append(("etcd leader", [[t, n or "none"] for t, n in m["etcd"]["leader_timeline"]]))
    dead = entry["fault"].get("dead") or {}
    for hap, servers in sorted(m["haproxy"]["timeline"].items()):
        for server, points in sorted(servers.items()):
            line = [[t, s.split("/")[0].split(" ")[0]] for t, s in points]
            if hap in dead:  # a powered-off node's HAProxy saw nothing from then on
                line = [p for p in line if p[0] < dead[hap]] + [[dead[hap], "off"]]
            rows.append((f"{hap} sees {server}", line))
    for y, (_label, points) in enumerate(reversed(rows)):
        for start, width, value in _segments(points, t0, end):
            fill = color.get(value) or STATUS_COLORS.get(value, "#dddddd")
            ax.broken_barh([(start, width)], (y + 0.1, 0.8), facecolors=fill)
            if width > (end - t0) / 12 and value in color:
                ax.text(start + width / 2, y + 0.5, value, ha="center", va="center", fontsize=6,
                        color="white")  # fmt: skip
    ax.set_yticks([y + 0.5 for y in range(len(rows))])
    ax.set_yticklabels([label for label, _ in reversed(rows)], fontsize=6)
    ax.set_ylim(0, len(rows))
    ax.set_xlabel(
        "seconds since the probe started (fault window shaded); HAProxy bands: green UP, "
        "red DOWN, grey off/unreadable"
    )


def run_png(entry, path, title):
    """One run's timeline: TTFB above, state bands below."""
    plt = _plt()
    if plt is None:
        return False
    t0 = entry["t0"]
    nbands = 4 + sum(len(s) for s in entry["measured"]["haproxy"]["timeline"].values())
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(10, 3.2 + 0.16 * nbands), dpi=100, sharex=True,
        gridspec_kw={"height_ratios": [3, max(1.5, 0.16 * nbands)]},
    )  # fmt: skip
    _ttfb(top, entry, t0)
    _bands(bottom, entry, t0)
    _shade([top, bottom], entry, t0)
    _healing(top, entry, t0)
    top.set_title(title, fontsize=9)
    top.legend(loc="upper right", fontsize=7)
    bottom.set_xlim(0, entry["end"] - t0)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def summary_png(panels, path, title):
    """``panels``: [(caption, entry)]: a small TTFB timeline per report row."""
    plt = _plt()
    if plt is None or not panels:
        return False
    cols = 3
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(12, 2.4 * rows), dpi=90, squeeze=False)
    for ax, (caption, entry) in zip(axes.flat, panels, strict=False):
        _ttfb(ax, entry, entry["t0"])
        _shade([ax], entry, entry["t0"])
        ax.set_title(caption, fontsize=8)
        ax.tick_params(labelsize=6)
        ax.set_xlim(0, entry["end"] - entry["t0"])
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True
