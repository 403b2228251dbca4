"""Verdicts of a chaos run (_utils/chaos_verdicts.py) against pillar SLOs: one per goal of
the scenario, a missed goal failing its verdict, null goals reported and not judged, only
spurious Lease transitions counted, and requests in flight at a power-off left out of the
failed and stall goals (and said)."""

import pytest

from tests.unit.modules.khm_load import load

verdicts_util = load("_utils", "chaos_verdicts")


def test_the_soak_goal_counts_only_spurious_transitions():
    leases = {"kube-controller-manager": {"transitions": 1, "off_target": 1, "spurious": 0},
              "kube-scheduler": {"transitions": 1, "off_target": 0, "spurious": 1}}  # fmt: skip
    measured = {**_measured(), "leases": leases}
    (verdict,) = [
        v for v in verdicts_util.verdicts(measured, SLO, "netem") if "transitions" in v["goal"]
    ]
    assert verdict["measured"] == "1" and verdict["pass"] is False
    leases["kube-scheduler"].update(transitions=0, spurious=0)
    (verdict,) = [
        v for v in verdicts_util.verdicts(measured, SLO, "netem") if "transitions" in v["goal"]
    ]
    assert verdict["measured"] == "0" and verdict["pass"] is True


def _measured(failed=0, stall=0.4, failover=0.6, lost=0, transitions=0):
    return {
        "requests": {"overall": {"failed": failed, "longest_stall_s": stall},
                     "fault_window": {"ttfb_p95_ms": 40.0}},
        "vip": {"failover_s": failover},
        "leases": {"kube-controller-manager": {"failover_s": 5.5, "transitions": transitions}},
        "writes": {"lost": lost},
    }  # fmt: skip


SLO = {
    "writes_lost": 0,
    "power-off": {"failed": 0, "stall_s": 1.5, "vip_failover_s": 1},
    "netem": {"ttfb_p95_ms": None, "transitions": 0},
}


def test_verdicts_follow_the_scenarios_slo():
    got = {v["goal"]: v for v in verdicts_util.verdicts(_measured(), SLO, "power-off")}
    assert set(got) == {
        "failed requests <= 0",
        "longest stall <= 1.5 s",
        "VIP failover <= 1 s",
        "acknowledged writes lost <= 0",
    }
    assert all(v["pass"] for v in got.values())


@pytest.mark.parametrize(
    ("measured", "failing"),
    [
        (_measured(failed=1), "failed requests <= 0"),
        (_measured(stall=1.51), "longest stall <= 1.5 s"),
        (_measured(failover=None), "VIP failover <= 1 s"),  # never moved: fails, not skipped
        (_measured(lost=1), "acknowledged writes lost <= 0"),
        (_measured(lost=None), "acknowledged writes lost <= 0"),  # no read-back: not a pass
    ],
)
def test_a_missed_goal_fails_its_verdict(measured, failing):
    bad = [v["goal"] for v in verdicts_util.verdicts(measured, SLO, "power-off") if not v["pass"]]
    assert bad == [failing]


def test_null_goals_are_reported_not_judged():
    goals = [v["goal"] for v in verdicts_util.verdicts(_measured(transitions=2), SLO, "netem")]
    assert goals == ["leader transitions (spurious) <= 0", "acknowledged writes lost <= 0"]


def test_requests_in_flight_at_a_power_off_are_left_out_and_said():
    measured = _measured(failed=1, stall=10.0)
    measured["requests"]["in_flight_at_power_off"] = 1
    measured["requests"]["judged"] = {"failed": 0, "longest_stall_s": 1.04}
    got = {v["goal"]: v for v in verdicts_util.verdicts(measured, SLO, "power-off")}
    failed, stall = got["failed requests <= 0"], got["longest stall <= 1.5 s"]
    assert failed["pass"] and stall["pass"]
    assert failed["measured"] == "0 (1 more in flight at the power-off, lost with the node)"
    assert stall["measured"].startswith("1.04 s (1 more")
    # One failure beyond the one in flight still fails the goal.
    measured["requests"]["judged"] = {"failed": 1, "longest_stall_s": 1.04}
    bad = [v["goal"] for v in verdicts_util.verdicts(measured, SLO, "power-off") if not v["pass"]]
    assert bad == ["failed requests <= 0"]
