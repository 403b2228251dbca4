"""
What a chaos run measured, computed from the raw records of the probe (``chaos_probe``) and
the node watchers (``chaos_watch``); ``chaos_verdicts`` judges them against the SLOs. Pure
functions; the ``kubeha_chaos`` runner calls them through ``__utils__["chaos_analysis.*"]``.

Definitions (docs/pillar.md, ``slo:``):

- **failed**: requests of the open loop that got no 2xx answer, by cause;
- **in flight at a power-off**: failed requests sent before a node lost power and still
  unanswered then; the failed and stall goals judge the others (``requests.judged``);
- **TTFB** p50/p95/p99/max of the successful ones: nearest-rank percentiles (every value is
  a request that was made), over the whole run and over the requests *sent* in the fault
  window [fault, revert];
- **longest stall**: the longest time one request waited without an answer, from when it
  was due (open loop: not when a busy prober got to it) to its first byte or its error;
  **longest gap**: the longest time with no successful answer at all;
- **VIP failover**: from the fault until the VIP answers from another node (the first
  successful first byte after another node holds the VIP); **VIP moved**: until it holds it;
- **leader failover**: from the fault to the new holder's acquire time in the Lease;
- **writes lost**: acknowledged writes missing when read back.
"""

import datetime
import math
from fractions import Fraction

SEQ, DUE, LATE, TTFB, MS, CODE, ERR, MAC, CONNECT = range(9)


def percentile(sorted_values, pct):
    """Nearest rank: the smallest value with at least ``pct`` % of the values at or below it
    (same definition as ``apiserver.ttfb``; Fraction keeps the rank exact)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(Fraction(str(pct)) * len(sorted_values) / 100))
    return sorted_values[rank - 1]


def _wait_s(req):
    """How long a request's user waited: from when it was due to its first byte or error."""
    late = (req[LATE] or 0) / 1000.0
    if not req[ERR] and req[TTFB] is not None:
        return late + req[TTFB] / 1000.0
    return late + (req[MS] or 0) / 1000.0


def _sent(req):
    """When a request left: when it was due, plus how late the probe got to it."""
    return req[DUE] + (req[LATE] or 0) / 1000.0


def _failed(req):
    """Failed as ``request_stats`` counts it: an error, or no first byte."""
    return bool(req[ERR]) or req[TTFB] is None


def request_stats(requests, start=None, end=None):
    """Counts, failures by cause, TTFB percentiles and stalls of the requests due in
    [start, end] (all when None)."""
    chosen = [
        r for r in requests if (start is None or r[DUE] >= start) and (end is None or r[DUE] <= end)
    ]
    ok = sorted(r[TTFB] for r in chosen if not _failed(r))
    causes = {}
    for r in chosen:
        if r[ERR]:
            causes[r[ERR]] = causes.get(r[ERR], 0) + 1
    answers = sorted(r[DUE] + _wait_s(r) for r in chosen if not r[ERR])
    bounds = [start if start is not None else (chosen[0][DUE] if chosen else 0.0)]
    bounds += answers + [end if end is not None else (chosen[-1][DUE] if chosen else 0.0)]
    gap = max((b - a for a, b in zip(bounds, bounds[1:], strict=False)), default=0.0)
    out = {
        "count": len(chosen),
        "ok": len(ok),
        "failed": len(chosen) - len(ok),
        "failed_by_cause": dict(sorted(causes.items())),
        "longest_stall_s": round(max((_wait_s(r) for r in chosen), default=0.0), 3),
        "longest_gap_s": round(max(gap, 0.0), 3),
    }
    for pct in (50, 95, 99):
        value = percentile(ok, pct)
        out[f"ttfb_p{pct}_ms"] = None if value is None else round(value, 1)
    out["ttfb_max_ms"] = round(ok[-1], 1) if ok else None
    return out


def in_flight_at_power_off(requests, dead):
    """The failed requests that were in flight when a node lost power: sent before its
    power-off and still unanswered then. ``dead``: {node: when the power went}, an epoch
    time or the switch's [at, until] when it can only say the power went in between (the
    lab's cut takes an ``ip link`` call; a site's IPMI command takes longer): a request in
    flight at any instant of it counts. Their connection ended on a machine that no longer
    exists (HAProxy on the VIP holder terminates the client's TCP connection; the node's
    kernel may have acknowledged the TLS ClientHello before the cut), so no server can
    answer them: the client waits out its own timeout, or gets a reset if its
    retransmission reaches the VIP's next holder."""
    windows = [w if isinstance(w, (list, tuple)) else (w, w) for w in (dead or {}).values()]
    return [
        r for r in requests
        if _failed(r) and any(_sent(r) <= until and at < r[DUE] + _wait_s(r)
                              for at, until in windows)
    ]  # fmt: skip


def failed_requests(requests, at, limit=5):
    """The first ``limit`` failed requests as [sent s after the fault, cause, waited s]: what
    a failed run's one-line summary shows, so a loss can be placed against the fault."""
    return [
        [round(_sent(r) - at, 3), r[ERR] or "no answer", round(_wait_s(r), 3)]
        for r in requests if _failed(r)
    ][:limit]  # fmt: skip


def keepalive_stats(rows):
    """[sent, ttfb, ms, code, err, new_conn] rows of the keep-alive connection."""
    causes = {}
    for row in rows:
        if row[4]:
            causes[row[4]] = causes.get(row[4], 0) + 1
    return {
        "count": len(rows),
        "failed": sum(causes.values()),
        "failed_by_cause": causes,
        "new_connections": sum(1 for r in rows if r[5]),
        "longest_s": round(max(((r[2] or 0) / 1000.0 for r in rows), default=0.0), 3),
    }


def watch_stats(probe):
    rows = probe.get("watch") or []
    events = [r[0] for r in rows if r[1] == "event"]
    bounds = [probe["t0"], *events, probe["end"]]
    delivery = sorted((probe.get("watch_delivery") or {}).values())
    kinds = {}
    for row in rows:
        kinds[row[1]] = kinds.get(row[1], 0) + 1
    return {
        "events": len(events),
        "opened": kinds.get("open", 0),
        "relists": kinds.get("list", 0),
        "ended": {k: v for k, v in kinds.items() if k not in ("event", "open", "list")},
        "longest_silence_s": round(max(b - a for a, b in zip(bounds, bounds[1:], strict=False)), 3),
        "delivery_p99_s": percentile(delivery, 99),
        "delivery_max_s": delivery[-1] if delivery else None,
        "missed": len(probe.get("watch_missed") or []),
    }


def write_stats(probe):
    rows = probe.get("writes") or []
    back = probe.get("readback") or {}
    causes = {}
    for row in rows:
        if row[4]:
            causes[row[4]] = causes.get(row[4], 0) + 1
    lost = back.get("lost")
    return {
        "sent": len(rows),
        "acknowledged": back.get("acked", len(rows) - sum(causes.values())),
        "refused": sum(causes.values()),
        "refused_by_cause": causes,
        "lost": None if lost is None else len(lost),
        "lost_seqs": lost,
        "readback_error": back.get("error"),
        "unacknowledged_but_applied": len(back.get("unacked_but_applied") or []),
    }


def _series(watch, kind):
    """{node: [[t, value], ...]} of one kind of the node watchers' records."""
    return {n: [[r["t"], r["v"]] for r in recs if r["k"] == kind] for n, recs in watch.items()}


def _last_seen(watch):
    return {n: max((r["t"] for r in recs), default=None) for n, recs in watch.items()}


def vip_timeline(watch, dead=None):
    """[[t, holders]] at every change: who holds the VIP, from every node's own view.
    ``dead``: {node: t} from when a node is off (power-off) whatever it last said."""
    dead = dead or {}
    events = sorted((t, n, v) for n, rows in _series(watch, "vip").items() for t, v in rows)
    events += sorted((t, n, False) for n, t in dead.items())
    state, out = {}, []
    for t, node, value in sorted(events):
        if node in dead and t > dead[node] and value:
            continue  # a record after the power went is the next boot's; not this run's
        state[node] = bool(value)
        holders = sorted(n for n, v in state.items() if v)
        if not out or out[-1][1] != holders:
            out.append([round(t, 4), holders])
    return out


def holders_at(timeline, t):
    current = []
    for when, holders in timeline:
        if when > t:
            break
        current = holders
    return current


def vip_failover(timeline, requests, fault_at, targets, *, hint=(), unwatched=()):
    """When the VIP moved off the targets and when it first answered from its new holder.

    ``hint``: the holders the run's gate saw just before the lead-in, taken as ``before``
    only when no watcher saw a holder at the fault and a node's records are missing
    (``unwatched``): the holder's own view is the only one that shows it (its peers see
    the VIP on no node of theirs), so losing its records must not read as "not expected to
    move"."""
    before = holders_at(timeline, fault_at - 0.001)  # the dead are dead from the fault on
    out = {"before": before, "moved_to": None, "moved_s": None, "failover_s": None}
    if not before and set(hint) & set(unwatched):
        before = out["before"] = sorted(hint)
        out["before_from"] = "the gate's snapshot: the holder's watcher records are missing"
    if not set(before) & set(targets):
        out["note"] = "the VIP was not on a target: it was not expected to move"
        return out
    for t, holders in timeline:
        others = [h for h in holders if h not in targets]
        if t >= fault_at and others:
            out["moved_to"], out["moved_s"] = others, round(t - fault_at, 3)
            # The VIP answers from the new holder when a TLS handshake through it completes
            # (its HAProxy and an apiserver behind it); a request's HTTP answer may wait
            # longer, e.g. for an etcd election when the old holder was the etcd leader.
            shakes = sorted(
                r[DUE] + ((r[LATE] or 0) + r[CONNECT]) / 1000.0
                for r in requests
                if len(r) > CONNECT and r[CONNECT] is not None
            )
            answers = sorted(r[DUE] + _wait_s(r) for r in requests if not r[ERR])
            shake = next((a for a in shakes if a >= t), None)
            first = next((a for a in answers if a >= t), None)
            out["failover_s"] = None if shake is None else round(shake - fault_at, 3)
            out["first_answer_s"] = None if first is None else round(first - fault_at, 3)
            return out
    out["note"] = "the VIP did not move off the target during the run"
    return out


def haproxy_timelines(watch):
    """{haproxy node: {server: [[t, "STATUS/CHECK"], ...]}} at every change."""
    out = {}
    for node, rows in _series(watch, "hap").items():
        servers = {}
        for t, value in rows:
            if not isinstance(value, dict):
                for line in servers.values():
                    if line[-1][1] != "unreadable":
                        line.append([t, "unreadable"])
                continue
            for name, status in value.items():
                line = servers.setdefault(name, [])
                if not line or line[-1][1] != status:
                    line.append([t, status])
        out[node] = servers
    return out


def detection(timelines, fault_at, targets):
    """{haproxy node: {target: seconds from the fault until it took the target out of the
    balance}}: DOWN, or NOLB (a graceful shutdown drains it: haproxy.cfg's check)."""
    out = {}
    for node, servers in timelines.items():
        for target in targets:
            for t, status in servers.get(target, []):
                if t >= fault_at and status.startswith(("DOWN", "NOLB")):
                    out.setdefault(node, {})[target] = round(t - fault_at, 3)
                    break
    return out


def spurious_down(timelines, targets):
    """{haproxy node: {server: times marked DOWN}} for servers the fault did not touch:
    a check too eager for a loaded machine, or a shared dependency (etcd) failing all."""
    out = {}
    for node, servers in timelines.items():
        if node in targets:
            continue  # a target's own HAProxy: cut off or powered off, its view is the fault's
        for server, points in servers.items():
            if server in targets:
                continue
            downs = sum(1 for _, status in points if status.startswith("DOWN"))
            if downs:
                out.setdefault(node, {})[server] = downs
    return out


def _epoch(stamp):
    if not stamp:
        return None
    try:
        return datetime.datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def left_targets(timeline, fault_at, targets) -> int:
    """Holder changes seen after the fault that left a faulted node: the holder could not
    renew from there, which is what leader election is for."""
    pairs = zip(timeline, timeline[1:], strict=False)
    return sum(1 for (_, was, _), (t, now, _) in pairs
               if t >= fault_at and was and now != was and was in targets)  # fmt: skip


def lease_stats(rows, fault_at, end, targets=()):
    """Per Lease: holder timeline, failover after the fault, transitions during the run.

    ``transitions`` counts the Lease's own ``leaseTransitions``; ``off_target`` those the
    probe saw leave a faulted node (``targets``), ``spurious`` the rest (a change the
    probe's 0.5 s polls did not see counts as spurious: nothing says which node it left).
    """
    out = {}
    for name in sorted({r["lease"] for r in rows}):
        seen = [r for r in rows if r["lease"] == name and "holder" in r]
        timeline = [[r["t"], (r["holder"] or "").split("_")[0], r["transitions"]] for r in seen]
        before = next((r for r in reversed(seen) if r["t"] <= fault_at), seen[0] if seen else None)
        new = next((r for r in seen if r["t"] > fault_at and before
                    and r["holder"] != before["holder"]), None)  # fmt: skip
        acquired = _epoch(new["acquire"]) if new else None
        transitions = [r["transitions"] for r in seen if r["transitions"] is not None]
        lease = {
            "before": (before or {}).get("holder", "").split("_")[0] if before else None,
            "after": timeline[-1][1] if timeline else None,
            "failover_s": round(acquired - fault_at, 3) if acquired else None,
            "new_holder_seen_s": round(new["t"] - fault_at, 3) if new else None,
            "transitions": (transitions[-1] - transitions[0]) if transitions else 0,
            "errors": sum(1 for r in rows if r["lease"] == name and "err" in r),
            "timeline": timeline,
        }
        out[name] = split_transitions(lease, fault_at, targets)
    return out


def etcd_timeline(watch):
    """[[t, leader node or None]] from the members' own metrics, at every change."""
    events = sorted((t, n, v) for n, rows in _series(watch, "etcd").items() for t, v in rows)
    state, out = {}, []
    for t, node, value in events:
        state[node] = isinstance(value, dict) and value.get("leader")
        leaders = sorted(n for n, v in state.items() if v)
        leader = leaders[0] if len(leaders) == 1 else None
        if not out or out[-1][1] != leader:
            out.append([round(t, 4), leader])
    return out


def measure(probe, watch, fault, *, vip_before=(), unwatched=None):
    """Everything a run measured. ``fault``: {scenario, targets, at, reverted_at, dead,
    power_went} (``dead``: {node: at}; ``power_went``: {node: [at, until]}, the switch's
    window, ``in_flight_at_power_off``);
    ``vip_before``: the VIP's holders in the run's gate; ``unwatched``: {node: why} for the
    watchers whose records are missing (``vip_failover``)."""
    at, reverted = fault["at"], fault.get("reverted_at") or fault["at"]
    unwatched = dict(unwatched or {})
    requests = probe.get("requests") or []
    timeline = vip_timeline(watch, fault.get("dead"))
    haproxy = haproxy_timelines(watch)
    etcd = etcd_timeline(watch)
    lost = in_flight_at_power_off(requests, fault.get("power_went") or fault.get("dead"))
    lost_ids = {id(r) for r in lost}
    judged = [r for r in requests if id(r) not in lost_ids]
    return {
        "requests": {
            "overall": request_stats(requests),
            "fault_window": request_stats(requests, at, reverted),
            # What the failed-requests and stall goals judge: all but ``lost``.
            "in_flight_at_power_off": len(lost),
            # How long the switch took to be sure the power had gone (its [at, until]).
            "power_off_window_s": max(
                (round(w[1] - w[0], 3) for w in (fault.get("power_went") or {}).values()),
                default=None,
            ),
            "judged": request_stats(judged),
            "judged_failed": failed_requests(judged, at),
        },
        "keepalive": keepalive_stats(probe.get("keepalive") or []),
        "watch": watch_stats(probe),
        "writes": write_stats(probe),
        "vip": {
            **vip_failover(
                timeline,
                requests,
                at,
                fault["targets"],
                hint=vip_before,
                unwatched=unwatched,
            ),
            "timeline": timeline,
        },
        "haproxy": {
            "detection_s": detection(haproxy, at, fault["targets"]),
            "spurious_down": spurious_down(haproxy, fault["targets"]),
            "timeline": haproxy,
        },
        "leases": lease_stats(probe.get("leases") or [], at, probe.get("end"), fault["targets"]),
        "etcd": {"leader_timeline": etcd, "leader_changes": max(0, len(etcd) - 1)},
        "last_seen": _last_seen(watch),
        "unwatched": unwatched,
    }


def split_transitions(lease: dict, fault_at: float, targets) -> dict:
    """The Lease with ``off_target``/``spurious`` from its timeline: ``lease_stats`` uses it,
    and so does a report measured before the split."""
    count = lease.get("transitions", 0)
    off = min(left_targets(lease.get("timeline") or [], fault_at, set(targets)), count)
    return {**lease, "off_target": off, "spurious": max(0, count - off)}
