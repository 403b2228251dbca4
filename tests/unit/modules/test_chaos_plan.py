"""What a chaos run may do before it does anything (_utils/chaos_plan.py): refusals (chaos
off by pillar, unknown scenario, no probe, no power switch, duration), the target words
resolved against a `kubeha_status.snapshot`, and the etcd quorum refusal."""

import random

import pytest

from tests.unit.modules.khm_load import load

plan = load("_utils", "chaos_plan")

MODEL = {
    "control_plane": [
        {"name": "cp-1", "ip": "198.18.0.11"},
        {"name": "cp-2", "ip": "198.18.0.12"},
        {"name": "cp-3", "ip": "198.18.0.13"},
    ],
    "chaos": {
        "enabled": True,
        "probe_minion": "client",
        "max_duration": 900,
        "power_off": ["/usr/bin/pwr", "{node}", "off"],
        "power_on": ["/usr/bin/pwr", "{node}", "on"],
    },  # fmt: skip
}
SNAPSHOT = {
    "vip": {"holders": ["cp-2"]},
    "etcd": [
        {"endpoint": "https://198.18.0.11:2379", "is_leader": False, "errors": []},
        {"endpoint": "https://198.18.0.12:2379", "is_leader": False, "errors": []},
        {"endpoint": "https://198.18.0.13:2379", "is_leader": True, "errors": []},
    ],
    "leases": [
        {"name": "kube-controller-manager", "holder_node": "cp-1"},
        {"name": "kube-scheduler", "holder_node": "cp-3"},
    ],
}


def _with(**chaos):
    return {**MODEL, "chaos": {**MODEL["chaos"], **chaos}}


def test_chaos_is_refused_unless_the_pillar_allows_it():
    why = plan.refusal("prod", _with(enabled=False), "apiserver-stop", 20)
    assert "not allowed on cluster prod" in why and "kubeha:chaos:enabled" in why


@pytest.mark.parametrize(
    ("model", "scenario", "duration", "words"),
    [
        (MODEL, "meteor-strike", 20, "unknown scenario 'meteor-strike'"),
        (_with(probe_minion=""), "apiserver-stop", 20, "kubeha:chaos:probe_minion"),
        (MODEL, "apiserver-stop", 0, "more than 0"),
        (MODEL, "apiserver-stop", 901, "max_duration (900 s)"),
        (MODEL, "apiserver-stop", "soon", "not a number"),
        (_with(power_off=[], power_on=[]), "power-off", 20, "power-off is not available"),
    ],
)
def test_refusals_name_the_reason(model, scenario, duration, words):
    assert words in plan.refusal("lab", model, scenario, duration)


def test_a_runnable_scenario_is_not_refused():
    for name in plan.SCENARIOS:
        assert plan.refusal("lab", MODEL, name, 20) is None, name


@pytest.mark.parametrize(
    ("target", "component", "nodes"),
    [
        ("vip-holder", "kube-controller-manager", ["cp-2"]),
        ("etcd-leader", "kube-controller-manager", ["cp-3"]),
        ("lease-holder", "kube-controller-manager", ["cp-1"]),
        ("lease-holder", "kube-scheduler", ["cp-3"]),
        ("cp-1", "kube-controller-manager", ["cp-1"]),
        ("cp-1,vip-holder", "kube-controller-manager", ["cp-1", "cp-2"]),
        ("vip-holder,cp-2", "kube-controller-manager", ["cp-2"]),  # no node twice
    ],
)
def test_targets_resolve_to_nodes(target, component, nodes):
    assert plan.resolve(target, SNAPSHOT, MODEL, component) == (nodes, None)


def test_random_picks_a_control_plane():
    nodes, why = plan.resolve("random", SNAPSHOT, MODEL, rng=random.Random(7))
    assert why is None and nodes[0] in {"cp-1", "cp-2", "cp-3"}


@pytest.mark.parametrize(
    ("target", "snapshot", "words"),
    [
        ("cp-9", SNAPSHOT, "neither a control plane"),
        ("vip-holder", {**SNAPSHOT, "vip": {"holders": ["cp-1", "cp-2"]}}, "not by exactly one"),
        ("vip-holder", {**SNAPSHOT, "vip": {"holders": []}}, "not by exactly one"),
        ("etcd-leader", {**SNAPSHOT, "etcd": {"error": "down"}}, "no single etcd leader"),
        ("lease-holder", {**SNAPSHOT, "leases": []}, "has no holder"),
    ],
)
def test_unresolvable_targets_say_why(target, snapshot, words):
    nodes, why = plan.resolve(target, snapshot, MODEL)
    assert nodes == [] and words in why


def test_two_of_three_members_down_is_refused_unless_forced():
    why = plan.quorum_refusal("etcd-stop", ["cp-1", "cp-2"], SNAPSHOT, MODEL)
    assert "leaves 1 of 3 etcd members" in why and "quorum needs 2" in why and "force" in why
    assert plan.quorum_refusal("etcd-stop", ["cp-1", "cp-2"], SNAPSHOT, MODEL, force=True) is None
    assert plan.quorum_refusal("etcd-stop", ["cp-1"], SNAPSHOT, MODEL) is None


def test_a_member_already_down_counts_against_quorum():
    sick = {**SNAPSHOT, "etcd": [{**e, "errors": ["down"]} if e["endpoint"].endswith("11:2379")
                                 else e for e in SNAPSHOT["etcd"]]}  # fmt: skip
    assert plan.quorum_refusal("power-off", ["cp-2"], sick, MODEL) is not None


def test_faults_that_keep_etcd_up_never_hit_the_quorum_rule():
    for name in ("apiserver-stop", "apiserver-hang", "netem", "leader-kill"):
        assert plan.quorum_refusal(name, ["cp-1", "cp-2"], SNAPSHOT, MODEL) is None
