"""
Measure a cluster the way a user feels it, and write the report: a probe on a machine that is
not a control plane sends ``GET /api/v1/namespaces/default/pods`` through the VIP at a steady
rate, each over a fresh TLS connection as kubectl does (``apiserver.ttfb``), while the master
records the cluster's state (``kubeha_status.snapshot``). The report is JSON for machines,
Markdown and a PNG timeline for people, with a verdict per goal.

CLI Example:

.. code-block:: bash

    salt-run kubeha_report.steady_state lab probe=client duration=60 out_dir=/srv/reports
"""

from __future__ import annotations

import datetime
import json
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

# The runbook's goal: kubectl TTFB p95 under 500 ms, on the internal network.
TTFB_P95_GOAL_MS = 500.0


def _probe(minion: str, url: str, duration: float, rate: float, kubeconfig: str) -> dict:
    ok, ret = __utils__["kubeha_minions.ask"](
        __opts__,
        minion,
        "apiserver.ttfb",
        count=max(1, int(duration * rate)),
        interval=1.0 / rate,
        server=url,
        kubeconfig=kubeconfig,
        timeline=True,
        timeout=duration + 120,
    )[minion]
    if not ok:
        raise RuntimeError(f"probe on {minion} failed: {ret}")
    return ret


def verdicts(probe: dict, problems: list[str]) -> list[dict]:
    """
    The goals a steady-state run is judged on, each with what was measured.

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_report.verdicts '{"ttfb_p95_ms": 40, "errors": 0}' '[]'
    """
    p95 = probe.get("ttfb_p95_ms")
    return [
        {
            "goal": f"TTFB p95 through the VIP < {TTFB_P95_GOAL_MS:g} ms (runbook)",
            "measured": f"{p95} ms" if p95 is not None else "no successful request",
            "pass": p95 is not None and p95 < TTFB_P95_GOAL_MS,
        },
        {
            "goal": "no failed request",
            "measured": f"{probe.get('errors')} of {probe.get('count')}",
            "pass": probe.get("errors") == 0,
        },
        {
            "goal": "cluster healthy (VIP, HAProxy, etcd, Nodes, Leases)",
            "measured": "; ".join(problems) or "healthy",
            "pass": not problems,
        },
    ]


def _table(rows: list[list], header: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def markdown(report: dict) -> str:
    """
    The report for people.

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_report.markdown "$(cat report.json)"
    """
    snap, probe = report["snapshot"], report["probe"]
    out = [
        f"# {report['title']}",
        "",
        f"Generated {report['generated_at']} by `salt-run kubeha_report.steady_state`. "
        f"Probe: `{probe['minion']}` -> `{probe['server']}{probe['path']}`, "
        f"{probe['rate']:g} requests/s for {probe['duration']:g} s, a fresh TLS connection each.",
        "",
        "## Verdict",
        "",
        _table(
            [
                [v["goal"], v["measured"], "PASS" if v["pass"] else "FAIL"]
                for v in report["verdicts"]
            ],
            ["goal", "measured", "verdict"],
        ),
        "",
        "## Time to first byte through the VIP",
        "",
        _table(
            [
                [
                    probe.get("count"),
                    probe.get("ok"),
                    probe.get("errors"),
                    probe.get("ttfb_p50_ms"),
                    probe.get("ttfb_p95_ms"),
                    probe.get("ttfb_p99_ms"),
                    probe.get("ttfb_max_ms"),
                    probe.get("longest_stall_ms"),
                ]
            ],
            [
                "requests",
                "ok",
                "errors",
                "p50 ms",
                "p95 ms",
                "p99 ms",
                "max ms",
                "longest stall ms",
            ],
        ),
        "",
    ]
    if report.get("timeline_png"):
        out += [f"![timeline]({Path(report['timeline_png']).name})", ""]
    vip = snap["vip"]
    out += [
        "## VIP",
        "",
        _table(
            [
                [
                    vip["address"],
                    vip["provider"],
                    ", ".join(vip.get("holders", [])) or "-",
                    "yes" if (vip.get("readyz") or {}).get("ok") else "no",
                ]
            ],
            ["address", "provider", "held by", "/readyz 200"],
        ),
        "",
    ]
    nodes = snap["nodes"] if isinstance(snap["nodes"], list) else []
    out += [
        "## Nodes",
        "",
        _table(
            [
                [
                    n["name"],
                    "Ready" if n["ready"] else n["ready_reason"] or "NotReady",
                    n["kubelet_version"],
                    "yes" if n["cordoned"] else "no",
                    ",".join(n["roles"]),
                ]
                for n in nodes
            ],
            ["node", "status", "kubelet", "cordoned", "roles"],
        ),
        "",
    ]
    haproxy = snap.get("haproxy") or {}
    if haproxy:
        rows = [
            [node, s["name"], s["status"], s["check_status"], s["check_duration_ms"]]
            for node, servers in sorted(haproxy.items())
            if isinstance(servers, list)
            for s in servers
        ]
        out += [
            "## HAProxy backends (as each control plane's HAProxy sees them)",
            "",
            _table(rows, ["haproxy on", "server", "status", "last check", "check ms"]),
            "",
        ]
    etcd = snap["etcd"] if isinstance(snap["etcd"], list) else []
    out += [
        "## etcd",
        "",
        _table(
            [
                [
                    e["endpoint"],
                    e["version"],
                    "leader" if e["is_leader"] else "follower",
                    f"{e['db_size'] / 1048576:.1f} MiB",
                    e["raft_term"],
                    e["raft_index"],
                ]
                for e in etcd
            ],
            ["member", "version", "role", "db size", "raft term", "raft index"],
        ),
        "",
    ]
    leases = snap["leases"] if isinstance(snap["leases"], list) else []
    out += [
        "## Leader election",
        "",
        _table(
            [
                [
                    lease["name"],
                    lease["holder_node"],
                    lease["transitions"],
                    lease["renew_time"],
                    lease["lease_duration_s"],
                ]
                for lease in leases
            ],
            ["Lease", "holder", "transitions", "last renew", "duration s"],
        ),
        "",
    ]
    return "\n".join(out)


def _png(report: dict, path: Path) -> bool:
    try:
        import matplotlib  # noqa: PLC0415 - optional: a master without it still gets JSON+MD

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        log.warning("kubeha: matplotlib is not installed on the master; no PNG timeline")
        return False
    timeline = report["probe"].get("timeline") or []
    ok = [(t, ms) for t, ms, _ in timeline if ms is not None]
    bad = [t for t, ms, _ in timeline if ms is None]
    fig, ax = plt.subplots(figsize=(10, 3.6), dpi=100)
    if ok:
        ax.plot([t for t, _ in ok], [ms for _, ms in ok], ".", ms=3, label="TTFB (ms)")
    top = max([ms for _, ms in ok] + [TTFB_P95_GOAL_MS]) * 1.1
    if bad:
        ax.plot(bad, [top] * len(bad), "x", color="red", label=f"failed ({len(bad)})")
    p95 = report["probe"].get("ttfb_p95_ms")
    if p95 is not None:
        ax.axhline(p95, color="orange", lw=1, label=f"p95 {p95:.0f} ms")
    ax.axhline(TTFB_P95_GOAL_MS, color="grey", ls="--", lw=1, label="goal 500 ms")
    ax.set_xlabel("seconds since the probe started")
    ax.set_ylabel("TTFB ms")
    ax.set_ylim(0, top * 1.05)
    ax.set_title(report["title"])
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def steady_state(
    cluster: str,
    probe: str,
    *,
    duration: float = 60,
    rate: float = 5,
    kubeconfig: str = "/root/.kube/config",
    out_dir: str | None = None,
) -> dict:
    """
    Probe the API through the VIP from ``probe`` (a minion that is not a control plane,
    with a kubeconfig for the cluster) for ``duration`` seconds at ``rate`` requests/s, take
    a snapshot of the cluster, and write ``steady-state-<cluster>.{json,md,png}`` into
    ``out_dir`` (default: the master's cachedir/kubeha/reports).

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_report.steady_state lab probe=client duration=60
    """
    model = __salt__["kubeha.model"](cluster)
    vip = model["vip"]
    url = f"https://{vip.get('dns_name') or vip['address']}:{vip['lb_port']}"
    result = _probe(probe, url, float(duration), float(rate), kubeconfig)
    snap = __salt__["kubeha_status.snapshot"](cluster)
    problems = __salt__["kubeha_status.problems"](cluster, snap, model)
    out = Path(out_dir or os.path.join(__opts__["cachedir"], "kubeha", "reports"))
    out.mkdir(parents=True, exist_ok=True)
    base = out / f"steady-state-{cluster}"
    report = {
        "title": f"kubeha {cluster}: steady state, {int(duration)} s",
        "generated_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cluster": cluster,
        "probe": {
            **result,
            "minion": probe,
            "server": url,
            "rate": float(rate),
            "duration": float(duration),
        },
        "snapshot": snap,
        "problems": problems,
    }
    report["verdicts"] = verdicts(result, problems)
    report["pass"] = all(v["pass"] for v in report["verdicts"])
    if _png(report, base.with_suffix(".png")):
        report["timeline_png"] = str(base.with_suffix(".png"))
    base.with_suffix(".json").write_text(json.dumps(report, indent=2, default=str))
    base.with_suffix(".md").write_text(markdown(report))
    summary = {
        k: result.get(k)
        for k in (
            "count",
            "errors",
            "ttfb_p50_ms",
            "ttfb_p95_ms",
            "ttfb_p99_ms",
            "ttfb_max_ms",
            "longest_stall_ms",
        )
    }
    return {
        "result": report["pass"],
        "comment": f"report in {base}.md (.json, .png)",
        "ttfb": summary,
        "verdicts": report["verdicts"],
        "files": [
            str(base.with_suffix(s))
            for s in (".json", ".md", ".png")
            if base.with_suffix(s).exists()
        ],
    }
