"""
The chaos report's Markdown (``chaos-<cluster>.md``): the verdict table, runbook vs kubeha
side by side, the leader-election profiles, the notes, then each scenario's details.
Pure functions over the report's runs and the rows ``kubeha_chaos_report.rows`` grouped;
the runner calls ``__utils__["chaos_report_md.document"]``.
"""


def _cell(value, unit="") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}{unit}"
    return f"{value}{unit}"


def _table(lines: list[list], header: list[str]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in line) + " |" for line in lines]
    return "\n".join(out)


def _failed_cell(row: dict) -> str:
    lost = row.get("in_flight_at_power_off") or 0
    text = f"{row['failed']} / {row['requests']}"
    return text + (f" ({lost} in flight at the power-off)" if lost else "")


def _stall_cell(row: dict) -> str:
    """The stall the goal judged; the overall one beside it when a request lost with a
    powered-off node waited longer."""
    judged = row.get("judged_stall_s", row["longest_stall_s"])
    if judged == row["longest_stall_s"]:
        return _cell(judged, " s")
    return f"{_cell(judged, ' s')} ({_cell(row['longest_stall_s'], ' s')} in flight)"


def _verdict_table(table_rows: list[dict]) -> str:
    return _table(
        [[r["profile"], r["label"], ", ".join(r["targets"]), r["trials"],
          _failed_cell(r), _stall_cell(r),
          _cell(r["window_ttfb_p95_ms"], " ms"), _cell(r["vip_failover_p95_s"], " s"),
          _cell(r["leader_failover_p95_s"], " s"),
          f"{r['spurious_transitions']} ({r['transitions']})", _cell(r["writes_lost"]),
          "PASS" if r["pass"] else "FAIL: " + "; ".join(r["failed_goals"])]
         for r in table_rows],
        ["profile", "scenario@target", "node(s)", "trials", "failed / requests", "longest stall",
         "TTFB p95 in fault", "VIP failover p95", "KCM leader failover p95",
         "Lease transitions: spurious (all)",
         "writes lost", "verdict"],
    )  # fmt: skip


def _side_by_side(table_rows: list[dict]) -> str | None:
    runbook = {r["label"]: r for r in table_rows if r["profile"] == "runbook"}
    if not runbook:
        return None
    lines = []
    for r in table_rows:
        other = runbook.get(r["label"])
        if r["profile"] == "kubeha" and other:
            lines.append([r["label"]] + [
                f"{x['failed']} failed, stall {_cell(x['longest_stall_s'], ' s')}, VIP "
                f"{_cell(x['vip_failover_p95_s'], ' s')}, lost {_cell(x['writes_lost'])}"
                for x in (other, r)])  # fmt: skip
    return _table(lines, ["scenario@target", "runbook's access layer", "kubeha defaults"])


def _leader_table(report: dict, spurious) -> str | None:
    """Per profile: leader failover after a SIGKILL (KCM, scheduler) and the soak's Lease
    transitions, from the runs themselves (each Lease's own failover)."""
    profiles: dict[str, dict] = {}
    for run in report["runs"]:
        leases = run["measured"]["leases"]
        entry = profiles.setdefault(run["profile"], {"kcm": [], "sched": [], "soak": []})
        if run["scenario"] == "leader-kill":
            key = "sched" if run.get("params", {}).get("component") == "kube-scheduler" else "kcm"
            name = "kube-scheduler" if key == "sched" else "kube-controller-manager"
            value = (leases.get(name) or {}).get("failover_s")
            if value is not None:
                entry[key].append(value)
        elif run["label"].startswith("soak"):
            req = run["measured"]["requests"]["overall"]
            transitions = sum(x["transitions"] for x in leases.values())
            other = sum(spurious(x) for x in leases.values())
            entry["soak"].append(f"{other} spurious, {transitions} in all, in "
                                 f"{run['duration_s']:g} s on {', '.join(run['targets'])} "
                                 f"({req['failed']}/{req['count']} failed)")  # fmt: skip
    lines = [
        [profile, ", ".join(f"{v:.2f}" for v in x["kcm"]) or "-",
         ", ".join(f"{v:.2f}" for v in x["sched"]) or "-", "; ".join(x["soak"]) or "-"]
        for profile, x in profiles.items() if x["kcm"] or x["sched"] or x["soak"]
    ]  # fmt: skip
    if not lines:
        return None
    soak = "soak (C): Lease transitions; spurious: a healthy holder's"
    return _table(lines, ["profile", "KCM failover after SIGKILL (s, per trial)",
                          "scheduler failover (s)", soak])  # fmt: skip


def _details(run: dict, row: dict, png: str | None) -> list[str]:
    m = run["measured"]
    req = m["requests"]
    out = [f"### {row['label']} ({row['profile']})", "",
           f"{run['scenario']} on {', '.join(run['targets'])} for {run['duration_s']:g} s "
           f"(last of {row['trials']} trial(s); run `{run['run_id']}`). "
           f"Failed by cause: {req['overall']['failed_by_cause'] or 'none'}.", ""]  # fmt: skip
    if png:
        out += [f"![{row['label']}]({png})", ""]
    window = req["fault_window"]
    out += [
        f"- fault window: {window['count']} requests, {window['failed']} failed, TTFB p50/p95/p99/"
        f"max {_cell(window['ttfb_p50_ms'])}/{_cell(window['ttfb_p95_ms'])}/"
        f"{_cell(window['ttfb_p99_ms'])}/{_cell(window['ttfb_max_ms'])} ms; overall p95 "
        f"{_cell(req['overall']['ttfb_p95_ms'])} ms, longest gap without an answer "
        f"{_cell(req['overall']['longest_gap_s'], ' s')}",
        f"- VIP: before on {m['vip'].get('before')}, moved to {m['vip'].get('moved_to')} after "
        f"{_cell(m['vip'].get('moved_s'), ' s')}, answered from there after "
        f"{_cell(m['vip'].get('failover_s'), ' s')} {m['vip'].get('note', '')}",
        "- HAProxy marked the target DOWN after (s, per HAProxy): "
        f"{m['haproxy']['detection_s'] or 'never'}; other servers marked DOWN: "
        f"{m['haproxy'].get('spurious_down') or 'none'}",
        "- Leases: " + "; ".join(
            f"{name}: {x['before']} -> {x['after']}, failover {_cell(x['failover_s'], ' s')}, "
            f"{x['transitions']} transition(s), {x.get('off_target', 0)} off the faulted node"
            for name, x in m["leases"].items()),
        f"- etcd leader changes: {m['etcd']['leader_changes']}; keep-alive connection: "
        f"{m['keepalive']['failed']} of {m['keepalive']['count']} failed; watch: "
        f"{m['watch']['events']} events, longest silence "
        f"{_cell(m['watch']['longest_silence_s'], ' s')}, "
        f"re-lists {m['watch']['relists']}, missed {m['watch']['missed']}",
        f"- writes: {m['writes']['acknowledged']} acknowledged, {m['writes']['refused']} refused "
        f"{m['writes']['refused_by_cause'] or ''}, lost {_cell(m['writes']['lost'])}",
        f"- cluster healthy again {_cell(run.get('recovered_s'), ' s')} after the revert", "",
    ]  # fmt: skip
    heal = run.get("healing")
    if heal:
        acted = [d for d in heal.get("decisions") or [] if d.get("action") != "none"]
        nodes = sorted({e.get("node") for e in heal.get("events") or []})
        counts = {n: sum(e.get("node") == n for e in heal["events"]) for n in nodes}
        out.insert(-1, f"- self-healing VIP: {len(heal.get('events') or [])} beacon reports "
                   f"{counts or ''}; decisions that acted: " + ("; ".join(
                       f"+{d['at'] - run['t0']:.1f} s {d['action']} {d.get('target') or ''} "
                       f"({d.get('reason')})" for d in acted) or "none"))  # fmt: skip
    return out


def document(report: dict, table_rows: list[dict], spurious) -> str:
    """The whole Markdown report. ``spurious``: a Lease's spurious transitions
    (``chaos_verdicts.spurious_transitions``)."""
    runs = report["runs"]
    opts = (runs[-1].get("probe_options") or {}) if runs else {}
    out = [f"# kubeha {report['cluster']}: chaos scenarios", "",
           f"Generated {report.get('generated_at')} by `salt-run kubeha_chaos.run` "
           f"({len(runs)} runs). Probe: from a machine outside the control plane through the "
           f"VIP, `GET {opts.get('path')}` at {opts.get('rate')}/s open loop, a fresh TLS "
           f"connection each, client timeout {opts.get('timeout')} s; plus a keep-alive "
           "connection, a watch, a writer whose acknowledged writes are read back, and the "
           "Leases. Percentiles are nearest-rank; a stall is the longest time one request "
           "waited (from when it was due) for its first byte or its error.", "",
           "## Verdicts", "", _verdict_table(table_rows), ""]  # fmt: skip
    side = _side_by_side(table_rows)
    if side:
        out += ["## Runbook vs kubeha (same machine, same run)", "", side, ""]
    leader = _leader_table(report, spurious)
    if leader:
        out += ["## Leader election: failover and spurious transitions", "", leader, ""]
    if report.get("notes"):
        out += ["## Notes", "", *report["notes"], ""]
    out += ["## Scenarios", ""]
    latest = {(r["profile"], r["label"]): r for r in runs}
    for row in table_rows:
        out += _details(latest[(row["profile"], row["label"])], row, row.get("png"))
    return "\n".join(out)
