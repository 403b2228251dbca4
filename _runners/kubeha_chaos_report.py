"""
The chaos report of a cluster: ``chaos-<cluster>.json`` (every run, for machines),
``chaos-<cluster>.md`` (one row per scenario and profile, verdicts against the SLOs,
runbook vs kubeha side by side, leader-election profiles, then each scenario's details)
and ``chaos-<cluster>.png`` (a small timeline per row), plus one timeline picture per row
(``chaos-<cluster>-<row>.png``). ``kubeha_chaos.run`` adds each run; trials with the same
profile and label are one row.

CLI Example:

.. code-block:: bash

    salt-run kubeha_chaos_report.render lab out_dir=/srv/reports
    salt-run kubeha_chaos_report.reset lab out_dir=/srv/reports
"""

from __future__ import annotations

import datetime
import json
import re
from pathlib import Path

# A long run (a soak) keeps its measurements but not every request in the JSON.
RAW_KEEP_MAX_S = 180


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _paths(cluster: str, out_dir: str) -> dict:
    base = Path(out_dir) / f"chaos-{cluster}"
    return {k: base.with_suffix(f".{k}") for k in ("json", "md", "png")}


def _load(path: Path, cluster: str) -> dict:
    if path.exists():
        return json.loads(path.read_text())
    return {"cluster": cluster, "runs": []}


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def rows(report: dict) -> list[dict]:
    """
    Runs grouped by (profile, label), in the order first seen, with aggregated numbers:
    failures summed, stalls and lost writes at their worst, VIP and leader failover as
    the nearest-rank p95 over the trials; a row passes when every trial passed.

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_chaos_report.rows "$(cat reports/chaos-lab.json)"
    """
    pct = __utils__["chaos_analysis.percentile"]
    spurious = __utils__["chaos_verdicts.spurious_transitions"]
    groups: dict[tuple, list] = {}
    for run in report["runs"]:
        groups.setdefault((run["profile"], run["label"]), []).append(run)
    out = []
    for (profile, label), runs in groups.items():
        req = [r["measured"]["requests"] for r in runs]
        vip = sorted(v for r in runs if (v := r["measured"]["vip"].get("failover_s")) is not None)
        kcm = sorted(v for r in runs if (v := (r["measured"]["leases"].get(
            "kube-controller-manager") or {}).get("failover_s")) is not None)  # fmt: skip
        lost = [r["measured"]["writes"]["lost"] for r in runs]
        window_p95 = [
            x["fault_window"]["ttfb_p95_ms"] for x in req if x["fault_window"]["ttfb_p95_ms"]
        ]
        out.append({
            "profile": profile, "label": label, "scenario": runs[0]["scenario"],
            "targets": sorted({t for r in runs for t in r["targets"]}), "trials": len(runs),
            "duration_s": runs[0]["duration_s"],
            "requests": sum(x["overall"]["count"] for x in req),
            "failed": sum(x["overall"]["failed"] for x in req),
            "failed_per_trial": [x["overall"]["failed"] for x in req],
            "in_flight_at_power_off": sum(x.get("in_flight_at_power_off") or 0 for x in req),
            "longest_stall_s": max(x["overall"]["longest_stall_s"] for x in req),
            "judged_stall_s": max((x.get("judged") or x["overall"])["longest_stall_s"]
                                  for x in req),
            "window_ttfb_p95_ms": max(window_p95) if window_p95 else None,
            "vip_failover_p95_s": pct(vip, 95), "vip_failover_s": vip,
            "leader_failover_p95_s": pct(kcm, 95), "leader_failover_s": kcm,
            "transitions": max(max((x["transitions"] for x in r["measured"]["leases"].values()),
                                   default=0) for r in runs),
            "spurious_transitions": max(max((spurious(x) for x in r["measured"]["leases"].values()),
                                            default=0) for r in runs),
            "writes_lost": None if None in lost else max(lost),
            "pass": all(r["pass"] for r in runs),
            "failed_goals": sorted({v["goal"] for r in runs for v in r["verdicts"]
                                    if not v["pass"]}),
            "slug": _slug(f"{profile}-{label}"),
        })  # fmt: skip
    return out


def markdown(report: dict) -> str:
    """
    The report for people (its rows from ``rows``, or the ones ``_write`` gave PNG names);
    written by ``chaos_report_md.document``.

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_chaos_report.markdown "$(cat reports/chaos-lab.json)"
    """
    return __utils__["chaos_report_md.document"](
        report, report.get("rows") or rows(report), __utils__["chaos_verdicts.spurious_transitions"]
    )


def _png_path(paths: dict, profile: str, label: str) -> Path:
    return paths["png"].with_name(f"{paths['png'].stem}-{_slug(f'{profile}-{label}')}.png")


def _write(report: dict, paths: dict) -> list[str]:
    table_rows = rows(report)
    latest = {(r["profile"], r["label"]): r for r in report["runs"]}
    panels = []
    for row in table_rows:
        run = latest[(row["profile"], row["label"])]
        png = _png_path(paths, row["profile"], row["label"])
        title = f"{row['profile']}: {row['label']}"
        if (run.get("raw") or {}).get("requests"):
            __utils__["chaos_plot.run_png"](run, png, title)
            panels.append((title, run))
        if png.exists():
            row["png"] = png.name
    __utils__["chaos_plot.summary_png"](panels, paths["png"], f"kubeha {report['cluster']}: chaos")
    report["rows"] = table_rows
    paths["json"].write_text(json.dumps(report, indent=1, default=str))
    paths["md"].write_text(markdown(report))
    return [str(p) for p in paths.values() if p.exists()]


def add(cluster, entry, out_dir, slo=None):
    """
    Add one run to ``<out_dir>/chaos-<cluster>.json`` and render the report again; the
    files written.

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_chaos_report.add lab "$(cat run.json)" /srv/reports
    """
    paths = _paths(cluster, out_dir)
    paths["json"].parent.mkdir(parents=True, exist_ok=True)
    report = _load(paths["json"], cluster)
    if entry.get("end", 0) - entry.get("t0", 0) > RAW_KEEP_MAX_S:
        # A soak: its picture now, from every request; the JSON keeps the measurements.
        png = _png_path(paths, entry["profile"], entry["label"])
        __utils__["chaos_plot.run_png"](entry, png, f"{entry['profile']}: {entry['label']}")
        entry = {**entry, "raw": {k: v for k, v in entry["raw"].items() if k != "requests"}}
    report["runs"].append(entry)
    report["generated_at"] = _now()
    if slo is not None:
        report["slo"] = slo
    return _write(report, paths)


def render(cluster, out_dir):
    """
    Render the Markdown and PNGs again from ``chaos-<cluster>.json``.

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_chaos_report.render lab out_dir=/srv/reports
    """
    paths = _paths(cluster, out_dir)
    return _write(_load(paths["json"], cluster), paths)


def split_transitions(cluster, out_dir):
    """
    Tell, in a report measured before the split, the Lease transitions off the faulted
    node from the spurious ones (``chaos_analysis.lease_stats``), from each run's stored
    Lease timelines, and judge the soak goal again on the spurious ones. Nothing else
    changes; a note says it was done.

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_chaos_report.split_transitions lab /srv/reports
    """
    paths = _paths(cluster, out_dir)
    report = _load(paths["json"], cluster)
    split = __utils__["chaos_analysis.split_transitions"]
    spurious = __utils__["chaos_verdicts.spurious_transitions"]
    changed = 0
    for run in report["runs"]:
        leases = run["measured"]["leases"]
        if all("spurious" in x for x in leases.values()):
            continue
        leases.update({n: split(x, run["fault"]["at"], run["targets"]) for n, x in leases.items()})
        for verdict in run.get("verdicts") or []:
            if verdict["goal"].startswith("leader transitions (spurious)"):
                worst = max((spurious(x) for x in leases.values()), default=0)
                limit = float(verdict["goal"].rsplit("<=", 1)[1])
                verdict.update(measured=f"{worst:g}", **{"pass": worst <= limit})
        run["pass"] = all(v["pass"] for v in run.get("verdicts") or [])
        changed += 1
    if changed:
        report.setdefault("notes", []).append(
            f"Lease transitions split on {_now()[:10]} (kubeha_chaos_report.split_transitions): "
            f"in {changed} run(s) measured before the split, those off the faulted node were "
            "told from the spurious ones by the stored Lease timelines; the soak goal judged "
            "again on the spurious ones. No other number changed."
        )
    return _write(report, paths)


def note(cluster, out_dir, text):
    """
    Add a paragraph to the report's Notes (what was tuned, how the runs were made).

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_chaos_report.note lab /srv/reports "B: 5 trials of power-off"
    """
    paths = _paths(cluster, out_dir)
    report = _load(paths["json"], cluster)
    report.setdefault("notes", []).append(str(text))
    return _write(report, paths)


def reset(cluster, out_dir):
    """
    Start a new report: remove ``chaos-<cluster>.*`` in ``out_dir``.

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_chaos_report.reset lab out_dir=/srv/reports
    """
    removed = [str(p) for p in Path(out_dir).glob(f"chaos-{cluster}*") if p.is_file()]
    for path in removed:
        Path(path).unlink()
    return {"removed": removed}
