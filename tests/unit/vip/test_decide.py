"""The self-healing VIP's decisions (_utils/kubeha_vip_decide.py): scores from every node's
report, the margin, the cooldown and the undo rule, on a fake clock (no sleeps)."""

from __future__ import annotations

import copy

import pytest

from tests.unit.modules.khm_load import load

d = load("_utils", "kubeha_vip_decide")
NODES = ["cp-1", "cp-2", "cp-3"]
CFG = {"margin": 50, "cooldown": 60, "recover_after": 30}
T0 = 1_000_000.0


def view(node: str, *, holds=False, bad_peers=(), api="good", hap=True, ka=None, heard=()):
    peers = {p: {"state": "bad" if p in bad_peers else "good", "rtt_ms": 0.4, "loss_pct": 0}
             for p in NODES if p != node}  # fmt: skip
    return {"holds_vip": holds, "keepalived": ka or ("MASTER" if holds else "BACKUP"),
            "apiserver": {"state": api}, "vip": {"state": "good"}, "haproxy": {"ok": hap},
            "peers": peers, "vrrp_from": list(heard)}  # fmt: skip


def healthy(holder="cp-1") -> dict:
    return {n: view(n, holds=n == holder, heard=[] if n == holder else [holder]) for n in NODES}


def impaired(holder="cp-1") -> dict:
    """C on the holder: its peers see it bad, and it sees both of them bad."""
    views = healthy(holder)
    for n in NODES:
        views[n] = view(n, holds=n == holder, bad_peers=[p for p in NODES if p != n]
                        if n == holder else [holder])  # fmt: skip
    return views


def test_all_well_decides_nothing():
    out = d.decide(NODES, healthy(), {}, CFG, T0)
    assert out["action"] == "none" and "margin" in out["reason"]
    assert {n: s["score"] for n, s in out["scores"].items()} == {n: 0 for n in NODES}


def test_an_impaired_holder_moves_to_the_best_candidate_and_is_penalised():
    out = d.decide(NODES, impaired(), {}, CFG, T0)
    assert out["action"] == "move" and out["target"] == "cp-2", out
    assert out["penalize"] == ["cp-1"]
    assert out["scores"]["cp-1"]["score"] == 100 and out["scores"]["cp-2"]["score"] == 0
    # The holder accuses everyone, but a node that sees most peers bad accuses itself.
    assert d.path_votes(impaired(), NODES) == {"cp-1": ["self", "cp-2", "cp-3"], "cp-2": [],
                                                "cp-3": []}  # fmt: skip
    assert d.plan(NODES, "cp-2", ["cp-1"]) == {
        "cp-1": {"priority": -253, "release": 0}, "cp-2": {"priority": 253, "release": 0},
        "cp-3": {"priority": 0, "release": 0}}  # fmt: skip


def test_one_voice_is_not_enough_but_one_voice_and_a_self_isolated_holder_is():
    views = healthy()
    views["cp-2"] = view("cp-2", bad_peers=["cp-1"], heard=["cp-1"])
    assert d.decide(NODES, views, {}, CFG, T0)["action"] == "none"
    views["cp-1"] = view("cp-1", holds=True, bad_peers=["cp-2", "cp-3"])
    assert d.decide(NODES, views, {}, CFG, T0)["target"] in ("cp-2", "cp-3")


def test_an_impaired_non_holder_does_not_move_the_vip():
    views = impaired("cp-1")
    for n in NODES:  # the impairment is on cp-3; cp-1 holds
        views[n] = view(n, holds=n == "cp-1", bad_peers=["cp-1", "cp-2"] if n == "cp-3"
                        else ["cp-3"])  # fmt: skip
    out = d.decide(NODES, views, {}, CFG, T0)
    assert out["action"] == "none" and out["scores"]["cp-3"]["score"] == 100


def test_one_apiserver_down_on_the_holder_is_below_the_margin():
    views = healthy()
    views["cp-1"] = view("cp-1", holds=True, api="bad")
    out = d.decide(NODES, views, {}, CFG, T0)
    assert out["action"] == "none" and out["scores"]["cp-1"]["score"] == 40


def test_no_apiserver_behind_the_holders_haproxy_moves_it():
    views = healthy()
    views["cp-1"] = view("cp-1", holds=True, hap=False)
    assert d.decide(NODES, views, {}, CFG, T0)["action"] == "move"


def test_cooldown_holds_a_second_move_back_on_a_fake_clock():
    state = {"last_move_at": T0}
    early = d.decide(NODES, impaired("cp-2"), state, CFG, T0 + 59)
    assert early["action"] == "none" and "cooling down" in early["reason"]
    later = d.decide(NODES, impaired("cp-2"), state, CFG, T0 + 60)
    assert later["action"] == "move" and later["target"] == "cp-1"


def test_a_candidate_must_be_alive_in_vrrp():
    views = impaired()
    views["cp-2"]["keepalived"] = "FAULT"
    assert d.decide(NODES, views, {}, CFG, T0)["target"] == "cp-3"
    views["cp-3"] = None
    out = d.decide(NODES, views, {}, CFG, T0)
    assert out["action"] == "none" and "no candidate" in out["reason"]


def test_two_holders_keep_the_earlier_one_and_release_the_other():
    views = healthy()
    views["cp-2"] = view("cp-2", holds=True)
    out = d.decide(NODES, views, {"holders_before": ["cp-1"]}, CFG, T0)
    assert out["action"] == "split" and out["target"] == "cp-1" and out["release"] == ["cp-2"]
    out = d.decide(NODES, views, {"holders_before": ["cp-2"]}, CFG, T0)
    assert out["target"] == "cp-2" and out["release"] == ["cp-1"]


def test_no_holder_is_said_only_when_every_node_says_so():
    views = healthy()
    views["cp-1"] = view("cp-1", holds=False, ka="FAULT")
    assert d.decide(NODES, views, {}, CFG, T0)["action"] == "no-holder"
    views["cp-3"]["holds_vip"] = None
    assert d.decide(NODES, views, {}, CFG, T0)["action"] == "none"


def test_two_apiservers_down_pin_the_vip_on_the_survivor():
    views = healthy("cp-1")
    views["cp-1"] = view("cp-1", holds=True, api="bad")
    views["cp-2"] = view("cp-2", api="bad", heard=["cp-1"])
    out = d.decide(NODES, views, {}, CFG, T0)
    assert out["action"] == "pin" and out["target"] == "cp-3", out
    assert "only cp-3 of 3 apiservers ready" in out["reason"]
    # Once pinned and holding, nothing more; the pin is undone when half are ready again.
    pinned = copy.deepcopy(views)
    pinned["cp-1"]["holds_vip"], pinned["cp-3"]["holds_vip"] = False, True
    state = {"override": {"kind": "pin", "target": "cp-3"}}
    assert d.decide(NODES, pinned, state, CFG, T0)["action"] == "none"
    assert d.cause_active(state["override"], pinned, NODES, CFG)
    pinned["cp-2"]["apiserver"]["state"] = "good"
    assert not d.cause_active(state["override"], pinned, NODES, CFG)


def test_the_only_ready_apiserver_on_an_impaired_node_gets_no_pin():
    """Measured on the lab: C on a non-holder that led etcd; its own /readyz stayed fast
    while the others' timed out. Pinning the VIP there moved it onto the impaired node."""
    views = healthy("cp-1")
    views["cp-1"] = view("cp-1", holds=True, bad_peers=["cp-2"], api="bad")
    views["cp-2"] = view("cp-2", bad_peers=["cp-1", "cp-3"], heard=["cp-1"])
    views["cp-3"] = view("cp-3", bad_peers=["cp-2"], api="bad", heard=["cp-1"])
    out = d.decide(NODES, views, {"served": NODES}, CFG, T0)
    assert out["scores"]["cp-2"]["score"] == 100, out["scores"]
    assert out["action"] == "none", out
    # The same minority on a node whose paths are fine is pinned as before.
    views["cp-2"] = view("cp-2", heard=["cp-1"])
    views["cp-1"]["peers"]["cp-2"]["state"] = views["cp-3"]["peers"]["cp-2"]["state"] = "good"
    out = d.decide(NODES, views, {"served": NODES}, CFG, T0)
    assert out["action"] == "pin" and out["target"] == "cp-2", out


def test_survivor_holding_already_is_pinned_without_a_move():
    views = healthy("cp-3")
    views["cp-1"] = view("cp-1", api="bad")
    views["cp-2"] = view("cp-2", api="bad")
    out = d.decide(NODES, views, {}, CFG, T0)
    assert out["action"] == "pin" and out["target"] == "cp-3" and out["holders"] == ["cp-3"]


def test_an_operators_pin_brings_the_vip_back_even_in_cooldown():
    state = {"override": {"kind": "operator", "target": "cp-3", "why": "runbook"},
             "last_move_at": T0}  # fmt: skip
    out = d.decide(NODES, healthy("cp-1"), state, CFG, T0 + 1)
    assert out["action"] == "move" and out["target"] == "cp-3" and out["kind"] == "operator"
    # ... and is never undone by the runner, nor overruled by scores.
    assert d.undo_due(state["override"], healthy("cp-3"), NODES, CFG, T0 + 10**6) == (False, None)
    assert d.decide(NODES, impaired("cp-3"), state, CFG, T0 + 10**6)["action"] == "none"


@pytest.mark.parametrize("elapsed", [0, 29.9, 30])
def test_an_override_is_undone_after_its_cause_is_clear_for_recover_after(elapsed):
    override = {"kind": "move", "target": "cp-2", "penalize": ["cp-1"]}
    assert d.undo_due(override, impaired("cp-1"), NODES, CFG, T0) == (False, None)
    views = healthy("cp-2")
    due, since = d.undo_due(override, views, NODES, CFG, T0)
    assert (due, since) == (False, T0)
    override["clear_since"] = since
    assert d.undo_due(override, views, NODES, CFG, T0 + elapsed) == (elapsed >= 30, T0)


def test_the_clock_restarts_when_the_cause_comes_back():
    override = {"kind": "move", "target": "cp-2", "penalize": ["cp-1"], "clear_since": T0}
    views = healthy("cp-2")
    views["cp-2"] = view("cp-2", holds=True, bad_peers=["cp-1"])
    views["cp-3"] = view("cp-3", bad_peers=["cp-1"], heard=["cp-2"])
    assert d.undo_due(override, views, NODES, CFG, T0 + 100) == (False, None)


def test_a_split_release_ends_only_when_the_released_node_hears_the_holder():
    override = {"kind": "split", "target": "cp-1", "release": ["cp-2"]}
    views = healthy("cp-1")
    views["cp-2"] = view("cp-2", ka="FAULT", heard=[])
    assert d.cause_active(override, views, NODES, CFG)
    views["cp-2"]["vrrp_from"] = ["cp-1"]
    assert not d.cause_active(override, views, NODES, CFG)


def test_apiservers_not_built_yet_are_not_failed_ones():
    """Between kubeadm init and the joins only the first apiserver is ready: no pin (a VIP
    move then could cut a join that goes through the VIP)."""
    views = healthy("cp-2")
    views["cp-2"] = view("cp-2", holds=True, api="bad")
    views["cp-3"] = view("cp-3", api="bad", heard=["cp-2"])
    state = {"served": ["cp-1"]}
    assert d.decide(NODES, views, state, CFG, T0)["action"] == "none"
    state["served"] = NODES
    assert d.decide(NODES, views, state, CFG, T0)["target"] == "cp-1"


def _etcd(views: dict, leader: str | None) -> dict:
    out = copy.deepcopy(views)
    for n in NODES:
        out[n]["etcd_leader"] = None if leader is None else n == leader
    return out


ON = {**CFG, "move_etcd_leader": True, "etcd_cooldown": 60}


def test_etcds_leader_leaves_the_holder_and_an_impaired_node_for_a_healthy_non_holder():
    assert d.etcd_leader_move(NODES, _etcd(healthy(), "cp-1"), {}, CFG, T0) is None  # off
    move = d.etcd_leader_move(NODES, _etcd(healthy(), "cp-1"), {}, ON, T0)
    assert move["leader"] == "cp-1" and move["target"] == "cp-2", move
    assert "holds the VIP" in move["reason"]
    # C on cp-2, a non-holder that leads etcd: its writes cross the impaired link
    views = healthy("cp-1")
    views["cp-1"] = view("cp-1", holds=True, bad_peers=["cp-2"])
    views["cp-3"] = view("cp-3", bad_peers=["cp-2"], heard=["cp-1"])
    views["cp-2"] = view("cp-2", bad_peers=["cp-1", "cp-3"], heard=["cp-1"])
    move = d.etcd_leader_move(NODES, _etcd(views, "cp-2"), {}, ON, T0)
    assert move["leader"] == "cp-2" and move["target"] == "cp-3", move
    assert "impaired" in move["reason"]
    assert move["ask_leader"] is True  # slow but answering: it moves its own leadership
    for n in ("cp-1", "cp-3"):  # nobody hears cp-2 any more (off, cut): ask the target
        views[n]["peers"]["cp-2"].update(rtt_ms=None, loss_pct=100)
    assert d.etcd_leader_move(NODES, _etcd(views, "cp-2"), {}, ON, T0)["ask_leader"] is False


def test_etcds_leader_stays_where_it_is_fine_or_nowhere_is_better():
    assert d.etcd_leader_move(NODES, _etcd(healthy(), "cp-2"), {}, ON, T0) is None
    assert d.etcd_leader_move(NODES, _etcd(healthy(), None), {}, ON, T0) is None  # unknown
    recent = {"last_etcd_move_at": T0 - 10}
    assert d.etcd_leader_move(NODES, _etcd(healthy(), "cp-1"), recent, ON, T0) is None
    assert d.etcd_leader_move(NODES, _etcd(healthy(), "cp-1"), recent, ON, T0 + 51) is not None
    views = _etcd(healthy(), "cp-1")
    for n in ("cp-2", "cp-3"):  # every other node's apiserver is down: no fit target
        views[n]["apiserver"] = {"state": "bad"}
    assert d.etcd_leader_move(NODES, views, {}, ON, T0) is None
