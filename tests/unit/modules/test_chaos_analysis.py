"""What a chaos run measured (_utils/chaos_analysis.py), from records shaped as the probe
and the node watchers write them: failures by cause, nearest-rank TTFB percentiles, stalls
counted from when a request was due, VIP failover from the watchers' VIP timeline, HAProxy
detection, Lease failover, and which failed requests were in flight at a power-off
(test_chaos_verdicts.py judges them)."""

import pytest

from tests.unit.modules.khm_load import load

analysis = load("_utils", "chaos_analysis")
T0 = 1_000_000.0


def req(seq, due, ttfb=20.0, err="", *, late=0.0, ms=None, connect=None):
    """[seq, due, late_ms, ttfb_ms, ms, code, err, mac, connect_ms] as chaos_probe records it
    (connect_ms: TCP + TLS handshake; by default most of the TTFB)."""
    shake = connect if connect is not None else (None if err else ttfb * 0.8)
    return [seq, due, late, None if err else ttfb, ms if ms is not None else (ttfb or 0) + 5,
            None if err else 200, err, "02:00:00:00:00:0b", shake]  # fmt: skip


def test_percentiles_are_nearest_rank_samples():
    values = sorted(float(v) for v in range(1, 101))
    assert analysis.percentile(values, 50) == 50.0
    assert analysis.percentile(values, 95) == 95.0
    assert analysis.percentile(values, 99) == 99.0
    assert analysis.percentile([3.0, 7.0], 50) == 3.0  # not the mean of the two
    assert analysis.percentile([], 95) is None


def test_failures_are_counted_by_cause_and_excluded_from_ttfb():
    rows = [req(i, T0 + i * 0.1, ttfb=10.0 + i) for i in range(20)]
    rows[5] = req(5, T0 + 0.5, err="reset", ms=300)
    rows[6] = req(6, T0 + 0.6, err="response timeout", ms=10_000)
    rows[7] = req(7, T0 + 0.7, err="reset", ms=200)
    stats = analysis.request_stats(rows)
    assert (stats["count"], stats["ok"], stats["failed"]) == (20, 17, 3)
    assert stats["failed_by_cause"] == {"reset": 2, "response timeout": 1}
    assert stats["ttfb_max_ms"] == 29.0 and stats["ttfb_p50_ms"] == 21.0  # 9th of 17
    # The longest wait is the timed-out request: 10 s from when it was due.
    assert stats["longest_stall_s"] == 10.0


def test_stall_counts_from_when_a_request_was_due_not_when_it_left():
    """A prober that fell behind (late) must not shorten what the user waited."""
    rows = [req(0, T0, ttfb=100.0, late=1400.0)]
    assert analysis.request_stats(rows)["longest_stall_s"] == 1.5


def test_fault_window_selects_requests_by_due_time():
    rows = [req(i, T0 + i, ttfb=10.0 if i < 5 else 900.0) for i in range(10)]
    window = analysis.request_stats(rows, T0 + 5, T0 + 9)
    assert window["count"] == 5 and window["ttfb_p95_ms"] == 900.0


def test_longest_gap_is_the_time_without_any_successful_answer():
    rows = [req(i, T0 + i * 0.1) for i in range(10)]
    rows += [req(10 + i, T0 + 1.0 + i * 0.1, err="connect timeout", ms=50) for i in range(12)]
    rows += [req(30, T0 + 2.3)]
    gap = analysis.request_stats(rows)["longest_gap_s"]
    assert 1.3 < gap < 1.45


def _vip(node, *points):
    return [{"t": t, "k": "vip", "v": v} for t, v in points]


def test_vip_failover_is_the_first_answer_after_another_node_holds_it():
    watch = {
        "cp-1": _vip("cp-1", (T0, True)),
        "cp-2": _vip("cp-2", (T0, False), (T0 + 10.6, True)),
        "cp-3": _vip("cp-3", (T0, False)),
    }
    timeline = analysis.vip_timeline(watch, dead={"cp-1": T0 + 10.0})
    assert analysis.holders_at(timeline, T0 + 9.9) == ["cp-1"]
    assert analysis.holders_at(timeline, T0 + 10.3) == []
    assert analysis.holders_at(timeline, T0 + 10.7) == ["cp-2"]
    # A request sent in the gap is answered once the VIP answers again (SYN retransmit): its
    # TLS handshake ends at +11.0, its HTTP answer waits for an etcd election (+11.5).
    rows = [req(i, T0 + 9.0 + i * 0.1) for i in range(10)]
    rows += [req(20, T0 + 10.2, ttfb=1300.0, connect=800.0), req(21, T0 + 10.8, ttfb=900.0)]
    got = analysis.vip_failover(timeline, rows, T0 + 10.0, ["cp-1"])
    assert got["before"] == ["cp-1"] and got["moved_to"] == ["cp-2"]
    assert got["moved_s"] == 0.6
    assert got["failover_s"] == pytest.approx(1.0, abs=1e-3)  # the VIP answered (TLS)
    assert got["first_answer_s"] == pytest.approx(1.5, abs=1e-3)  # the API answered


def test_vip_on_another_node_is_not_expected_to_move():
    watch = {"cp-1": _vip("cp-1", (T0, True)), "cp-2": _vip("cp-2", (T0, False))}
    got = analysis.vip_failover(analysis.vip_timeline(watch), [], T0 + 1, ["cp-2"])
    assert got["failover_s"] is None and "not expected to move" in got["note"]


def test_the_gates_holder_stands_in_only_for_a_holder_whose_records_are_lost():
    # node-isolate on the holder cp-1 whose records were lost: its peers never saw the VIP
    # before the fault, cp-2 took it at +0.6 s.
    watch = {"cp-1": [], "cp-2": _vip("cp-2", (T0, False), (T0 + 10.6, True))}
    timeline = analysis.vip_timeline(watch)
    rows = [req(1, T0 + 10.7)]
    lost = analysis.vip_failover(
        timeline, rows, T0 + 10.0, ["cp-1"], hint=["cp-1"], unwatched={"cp-1": "no answer"}
    )
    assert lost["before"] == ["cp-1"] and lost["moved_to"] == ["cp-2"]
    assert "missing" in lost["before_from"]
    assert lost["failover_s"] == pytest.approx(0.716, abs=1e-3)  # its TLS handshake (16 ms)
    # Every record in: the snapshot is not used, whatever it says.
    got = analysis.vip_failover(timeline, rows, T0 + 10.0, ["cp-1"], hint=["cp-1"], unwatched={})
    assert got["before"] == [] and "not expected to move" in got["note"]
    seen = analysis.vip_timeline({**watch, "cp-3": _vip("cp-3", (T0, True))})
    got = analysis.vip_failover(
        seen, rows, T0 + 10.0, ["cp-1"], hint=["cp-1"], unwatched={"cp-1": "no answer"}
    )
    assert got["before"] == ["cp-3"] and "before_from" not in got


def test_measure_passes_the_gates_holder_and_the_missing_records_on():
    watch = {"cp-1": [], "cp-2": _vip("cp-2", (T0, False), (T0 + 10.6, True))}
    fault = {"scenario": "node-isolate", "targets": ["cp-1"], "at": T0 + 10.0}
    probe = {"requests": [req(1, T0 + 10.7)], "t0": T0, "end": T0 + 20}
    got = analysis.measure(probe, watch, fault, vip_before=["cp-1"], unwatched={"cp-1": "lost"})
    assert got["vip"]["moved_to"] == ["cp-2"] and got["unwatched"] == {"cp-1": "lost"}
    assert analysis.measure(probe, watch, fault)["vip"]["failover_s"] is None


def test_haproxy_detection_per_load_balancer():
    watch = {
        "cp-2": [
            {"t": T0, "k": "hap", "v": {"cp-1": "UP/L7OK", "cp-2": "UP/L7OK"}},
            {"t": T0 + 2.4, "k": "hap", "v": {"cp-1": "DOWN/L4TOUT", "cp-2": "UP/L7OK"}},
        ],
        "cp-3": [{"t": T0, "k": "hap", "v": "unreadable: CommandExecutionError"}],
    }
    timelines = analysis.haproxy_timelines(watch)
    assert timelines["cp-2"]["cp-1"] == [[T0, "UP/L7OK"], [T0 + 2.4, "DOWN/L4TOUT"]]
    assert analysis.detection(timelines, T0 + 1.0, ["cp-1"]) == {"cp-2": {"cp-1": 1.4}}
    # A graceful shutdown drains the server (NOLB) before its port closes (DOWN).
    watch["cp-2"][1:1] = [{"t": T0 + 1.2, "k": "hap", "v": {"cp-1": "NOLB/L7OKC"}}]
    drained = analysis.detection(analysis.haproxy_timelines(watch), T0 + 1.0, ["cp-1"])
    assert drained == {"cp-2": {"cp-1": 0.2}}


def test_leader_failover_is_the_new_holders_acquire_time():
    rows = [
        {"t": T0, "lease": "kube-controller-manager", "holder": "cp-1_a", "transitions": 4,
         "acquire": "1970-01-12T13:46:40.000000Z"},
        {"t": T0 + 7.0, "lease": "kube-controller-manager", "holder": "cp-3_b", "transitions": 5,
         "acquire": "1970-01-12T13:46:46.250000Z"},
        {"t": T0 + 3.0, "lease": "kube-controller-manager", "err": "response timeout"},
    ]  # fmt: skip
    got = analysis.lease_stats(rows, T0 + 1.0, T0 + 30)["kube-controller-manager"]
    assert (got["before"], got["after"]) == ("cp-1", "cp-3")
    assert got["failover_s"] == 5.25 and got["new_holder_seen_s"] == 6.0
    assert got["transitions"] == 1 and got["errors"] == 1
    assert got["spurious"] == 1  # no targets given: nothing says the change was expected


def test_a_lease_leaving_the_faulted_node_is_not_spurious():
    """The 2026-11-30 soak with C on cp-3: the KCM left cp-3 (off the target), the
    scheduler left cp-1, a healthy node (spurious)."""

    def row(t, lease, holder, n):
        return {"t": T0 + t, "lease": lease, "holder": f"{holder}_x", "transitions": n,
                "acquire": None}  # fmt: skip

    kcm, sched = "kube-controller-manager", "kube-scheduler"
    rows = [row(0, kcm, "cp-3", 26), row(15, kcm, "cp-3", 26), row(20, kcm, "cp-1", 27),
            row(0, sched, "cp-1", 20), row(12, sched, "cp-2", 21)]  # fmt: skip
    got = analysis.lease_stats(rows, T0 + 5.0, T0 + 600, ["cp-3"])
    assert (got[kcm]["transitions"], got[kcm]["off_target"], got[kcm]["spurious"]) == (1, 1, 0)
    assert (got[sched]["transitions"], got[sched]["off_target"], got[sched]["spurious"]) == (
        1, 0, 1)  # fmt: skip
    # Two changes between polls (cp-3 -> cp-2 -> cp-3): the counter sees them, the
    # timeline does not, so they count as spurious.
    rows = [row(0, kcm, "cp-3", 26), row(20, kcm, "cp-3", 28)]
    assert analysis.lease_stats(rows, T0 + 5.0, T0 + 600, ["cp-3"])[kcm]["spurious"] == 2


def test_a_request_in_flight_at_the_power_off_is_told_apart():
    dead = {"cp-1": T0 + 5.0}
    requests = [
        req(0, T0 + 4.9),  # answered before the power-off
        req(1, T0 + 4.98, err="timeout", ms=10_000.0),  # sent 20 ms before it, never answered
        req(2, T0 + 5.1, err="reset", ms=300.0),  # sent after it: judged like any other
        req(3, T0 + 4.99, late=20.0, err="reset", ms=50.0),  # left 10 ms after it (late)
        req(4, T0 + 4.97, ttfb=1040.0),  # in flight but answered (SYN retransmitted)
    ]
    lost = analysis.in_flight_at_power_off(requests, dead)
    assert [r[0] for r in lost] == [1]
    assert analysis.in_flight_at_power_off(requests, {}) == []
    fault = {"scenario": "power-off", "targets": ["cp-1"], "at": T0 + 5.0,
             "reverted_at": T0 + 13.0, "dead": dead}  # fmt: skip
    probe = {"t0": T0, "end": T0 + 20, "requests": requests, "watch": []}
    got = analysis.measure(probe, {}, fault)["requests"]
    assert got["in_flight_at_power_off"] == 1
    assert (got["overall"]["failed"], got["judged"]["failed"]) == (3, 2)
    assert got["overall"]["longest_stall_s"] == 10.0
    assert got["judged"]["longest_stall_s"] == 1.04


def test_the_power_off_is_a_window_when_the_switch_can_only_bound_it():
    # The switch began at T0+5.0 and was sure the power had gone at T0+5.03 (the lab's
    # `ip link` call). A request opened inside the window was acknowledged by the dying
    # node's kernel and waited out its timeout (CI, 2026-11-30): in flight at the power-off.
    went = {"cp-1": [T0 + 5.0, T0 + 5.03]}
    requests = [
        req(0, T0 + 5.01, err="timeout", ms=10_000.0),  # opened inside the window
        req(1, T0 + 5.04, err="timeout", ms=10_000.0),  # after it: judged
        req(2, T0 + 4.5, err="reset", ms=400.0),  # answered (a reset) before it: judged
        req(3, T0 + 5.02, ttfb=1050.0),  # inside it and answered: not failed
    ]
    assert [r[0] for r in analysis.in_flight_at_power_off(requests, went)] == [0]
    # A bare time is a window of no width: only request 0's send before T0+5.0 would count.
    assert analysis.in_flight_at_power_off(requests, {"cp-1": T0 + 5.0}) == []
    fault = {"scenario": "power-off", "targets": ["cp-1"], "at": T0 + 5.0,
             "reverted_at": T0 + 13.0, "dead": {"cp-1": T0 + 5.0}, "power_went": went}  # fmt: skip
    probe = {"t0": T0, "end": T0 + 20, "requests": requests, "watch": []}
    got = analysis.measure(probe, {}, fault)["requests"]
    assert (got["in_flight_at_power_off"], got["power_off_window_s"]) == (1, 0.03)
    assert (got["overall"]["failed"], got["judged"]["failed"]) == (3, 2)
    # The judged losses, placed against the fault for the run's one-line summary.
    assert got["judged_failed"] == [[0.04, "timeout", 10.0], [-0.5, "reset", 0.4]]
    # No power-off, no window.
    fault = {**fault, "scenario": "netem", "dead": {}, "power_went": {}}
    assert analysis.measure(probe, {}, fault)["requests"]["power_off_window_s"] is None
