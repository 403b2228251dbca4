"""The kubeha_vip runner on a simulated cluster: three nodes whose keepalived follows the
tracked files (the highest effective priority takes a released VIP, nopreempt otherwise),
reports as the beacons send them, a fake clock. It checks the order of a move (priorities
first, then the release, then the release lifted), one decision at a time, observe mode,
refusals, pin/unpin and the undo rule through tick."""

from __future__ import annotations

import copy

import pytest

from tests.unit.modules.khm_load import load, utils
from tests.unit.vip.test_decide import NODES, healthy, impaired

BASE = {"cp-1": 150, "cp-2": 140, "cp-3": 130}


class Clock:
    def __init__(self):
        self.now = 1_000_000.0

    def time(self):
        return self.now

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


class Cluster:
    """keepalived on three nodes as far as the runner can tell."""

    def __init__(self, holder="cp-1"):
        self.nodes = {n: {"priority": 0, "release": 0, "holds": n == holder} for n in NODES}
        self.calls: list[tuple] = []
        self.etcd_leader = holder
        self.handover: dict[str, dict] = {}  # node -> its part in force (vip_handover)
        self.takeover: dict[str, dict] = {}  # node -> its drop in force (vip_takeover)

    def effective(self, node):
        return min(254, max(1, BASE[node] + self.nodes[node]["priority"]))

    def _vrrp(self):
        if not any(x["holds"] for x in self.nodes.values()):
            live = [n for n in NODES if not self.nodes[n]["release"]]
            if live:
                self.nodes[max(live, key=self.effective)]["holds"] = True

    def _take(self):
        """A node that stopped hearing the holder becomes master after its down timer,
        and the holder steps down on hearing a higher priority (vip_takeover)."""
        for node in self.takeover:
            holder = next((n for n in NODES if self.nodes[n]["holds"]), None)
            if holder and holder != node and self.effective(node) > self.effective(holder):
                self.nodes[holder]["holds"], self.nodes[node]["holds"] = False, True

    def _write(self, node, entry):
        x = self.nodes[node]
        old = {"priority": x["priority"], "release": x["release"]}
        x.update({k: v for k, v in entry.items() if v is not None})
        if x["release"]:
            x["holds"] = False
        self._vrrp()
        state = "FAULT" if x["release"] else ("MASTER" if x["holds"] else "BACKUP")
        return {"old": old, "new": {k: x[k] for k in old}, "holds_vip": x["holds"],
                "state": state}  # fmt: skip

    def ask(self, opts, nodes, fun, *args, timeout=30, **kwargs):
        nodes = [nodes] if isinstance(nodes, str) else list(nodes)
        self.calls.append((fun, tuple(nodes), args, kwargs))
        out = {}
        for node in nodes:
            if self.nodes[node].get("off"):
                out[node] = (False, f"{node} did not answer {fun}")
            elif fun == "keepalived_track.apply":
                out[node] = (True, self._write(node, args[0].get(node) or {}))
            elif fun == "keepalived_track.write" and self.nodes[node].get("mute_write"):
                out[node] = (False, f"{node} did not answer {fun} within {timeout:g} s")
            elif fun == "keepalived_track.write":
                entry = {k: kwargs.get(k) for k in ("priority", "release")}
                out[node] = (True, self._write(node, entry))
            elif fun == "vip_probe.holds":
                self._take()
                out[node] = (True, self.nodes[node]["holds"])
            elif fun == "vip_probe.last_view":
                out[node] = (True, None)  # no newer report than what the master has
            elif fun == "vip_handover.forward":
                if self.nodes[node].get("no_handover"):
                    out[node] = (False, "iptables: No chain/target/match by that name")
                    continue
                self.handover[node] = {"forward_to": args[2], "vip": args[0], "port": args[1],
                                       **kwargs}  # fmt: skip
                out[node] = (True, {"result": True, "role": "new holder"})
            elif fun == "vip_handover.clear":
                self.handover.pop(node, None)
                out[node] = (True, {"result": True, "cleared": True})
            elif fun == "vip_takeover.start":
                if kwargs["node"] != node:
                    out[node] = (True, {"result": True, "role": "bystander", "started": False})
                elif self.nodes[node]["priority"] != args[2]:
                    out[node] = (False, "ERROR: not taking over: this node's override is ...")
                else:
                    self.takeover[node] = {"from": args[0], "vrid": args[1], **kwargs}
                    out[node] = (True, {"result": True, "role": "takes over", "started": True})
            elif fun == "vip_takeover.clear":
                self.takeover.pop(node, None)
                out[node] = (True, {"result": True, "cleared": True})
            elif fun == "etcdctl.move_leader":
                changed = self.etcd_leader != args[0]
                self.etcd_leader = args[0]
                out[node] = (True, {"changed": changed, "leader": {"name": args[0]}})
            else:
                raise AssertionError(fun)
        return out

    def ask_steps(self, opts, nodes, steps, timeout=30):
        """Salt's compound job: the steps in order on each node (here: step by step)."""
        out = {n: [] for n in nodes}
        for fun, args, kwargs in steps:
            for node, answer in self.ask(opts, nodes, fun, *args, **kwargs).items():
                out[node].append(answer)
        return out

    def holders(self):
        return [n for n in NODES if self.nodes[n]["holds"]]


@pytest.fixture
def rig(tmp_path, monkeypatch):
    runner = load("_runners", "kubeha_vip")
    clock, cluster, fired = Clock(), Cluster(), []
    heal = {"mode": "act", "margin": 50, "cooldown": 60, "recover_after": 30, "handover_s": 30}
    model = {"control_plane": [{"name": n, "ip": f"198.18.0.1{i}"} for i, n in
                               enumerate(NODES, 1)],
             "vip": {"address": "198.18.0.10", "provider": "keepalived-haproxy",
                     "lb_port": 8443},
             "vrrp": {"instance": "VI_1", "advert_int": 0.2, "down_timer_adverts": 3,
                      "router_id": 51},
             "vip_heal": heal}  # fmt: skip
    monkeypatch.setattr(runner, "time", clock)
    runner.__opts__ = {"cachedir": str(tmp_path)}
    monkeypatch.setattr(load("_utils", "kubeha_vip_act"), "time", clock)
    runner.__utils__ = {**utils("kubeha_vip_store", "kubeha_vip_decide", "kubeha_vip_act"),
                        "kubeha_minions.ask": cluster.ask,
                        "kubeha_minions.ask_steps": cluster.ask_steps}  # fmt: skip
    runner.__salt__ = {"kubeha.model": lambda c: copy.deepcopy(model),
                       "event.send": lambda tag, data: fired.append((tag, data))}  # fmt: skip
    runner.clock, runner.cluster, runner.fired, runner.heal = clock, cluster, fired, heal
    store = load("_utils", "kubeha_vip_store")
    runner.store = store
    return runner


def report(rig, views: dict, node: str, seq: int, reason="change") -> dict:
    event = {
        "cluster": "lab",
        "node": node,
        "seq": seq,
        "boot": f"{node}-1",
        "at": rig.clock.now,
        "reason": reason,
        "changed": ["peers"],
        "view": views[node],
    }
    return rig.react("lab", minion=node, event=event)


def test_an_impaired_holder_is_moved_priorities_first_then_released(rig):
    for seq, node in enumerate(NODES, 1):
        assert report(rig, healthy(), node, seq, "first")["decisions"][0]["action"] == "none"
    rig.cluster.calls.clear()
    views = impaired("cp-1")
    report(rig, views, "cp-2", 10)  # one voice: not yet
    assert rig.cluster.calls == []
    out = report(rig, views, "cp-1", 11)  # the holder sees everyone bad: a second voice
    (decision,) = out["decisions"]
    assert decision["action"] == "move" and decision["target"] == "cp-2", decision
    assert decision["moved"] and decision["from"] == "cp-1"
    funs = [(c[0], c[1], c[3].get("release")) for c in rig.cluster.calls]
    # One job to every other node first, in order on each: the forwarding of the holder's
    # connections (VRRP may elect any of them on its own), the priorities with the
    # bystander held in FAULT, the target's takeover once its priority is in force. Then
    # the holder's priority and release in one call (its half of the handover is its
    # divert unit); every release lifted and the takeover cleared after.
    assert funs[0][:2] == ("vip_handover.forward", ("cp-2", "cp-3"))
    assert rig.cluster.handover == {
        n: {"forward_to": "198.18.0.11", "vip": "198.18.0.10", "port": 8443, "seconds": 30.0}
        for n in ("cp-2", "cp-3")
    }
    assert funs[1][:2] == ("keepalived_track.apply", ("cp-2", "cp-3"))
    assert rig.cluster.calls[1][2][0] == {"cp-2": {"priority": 253, "release": 0},
                                          "cp-3": {"priority": 0, "release": 1}}  # fmt: skip
    assert funs[2][:2] == ("vip_takeover.start", ("cp-2", "cp-3"))
    assert rig.cluster.calls[2][2] == ("198.18.0.11", 51, 253)
    assert rig.cluster.calls[2][3] == {"node": "cp-2", "seconds": 4.0, "instance": "VI_1"}
    assert decision["takeover"]["started"] is True
    assert funs[3] == ("keepalived_track.write", ("cp-1",), 1)
    assert rig.cluster.calls[3][3]["priority"] == -253
    assert decision["handover"]["result"] is True and decision["handover"]["to"] == "cp-1"
    lifted = funs[funs.index(("keepalived_track.write", ("cp-1",), 1)) + 1 :]
    assert [f[:2] for f in lifted if f[0] != "vip_probe.holds"] == [
        ("keepalived_track.write", ("cp-1",)),
        ("keepalived_track.apply", ("cp-3",)),
        ("vip_takeover.clear", ("cp-2",)),
    ]
    assert lifted[-3][2] == 0 and rig.cluster.calls[-2][2][0] == {"cp-3": {"release": 0}}
    assert rig.cluster.takeover == {}
    assert rig.cluster.nodes["cp-3"]["release"] == 0
    assert rig.cluster.holders() == ["cp-2"]
    assert {n: rig.cluster.effective(n) for n in NODES} == {"cp-1": 1, "cp-2": 254, "cp-3": 130}
    assert rig.cluster.nodes["cp-1"]["release"] == 0
    assert rig.fired[-1][0] == "kubeha/vip/lab/decision"
    history = rig.history("lab")
    assert [h["action"] for h in history] == ["none"] * 4 + ["move"]
    assert rig.status("lab")["override"]["kind"] == "move"


def test_a_failed_handover_is_recorded_and_the_vip_still_moves(rig):
    rig.cluster.nodes["cp-3"]["no_handover"] = True
    out = rig.pin("lab", "cp-3")  # no holder given: read back, then the forwarding
    assert out["moved"] and rig.cluster.holders() == ["cp-3"]
    assert out["handover"]["result"] is False and out["handover"]["to"] == "cp-1"
    assert "No chain" in out["handover"]["nodes"]["cp-3"]["error"]
    assert set(out["handover"]["nodes"]) == {"cp-2", "cp-3"}  # never the holder itself
    assert set(rig.cluster.handover) == {"cp-2"}


def test_the_target_takes_the_vip_when_the_holder_does_not_answer_its_release(rig):
    rig.cluster.nodes["cp-1"]["mute_write"] = True  # an impaired holder: its call is lost
    out = rig.pin("lab", "cp-2")
    assert out["moved"] and rig.cluster.holders() == ["cp-2"], out
    assert out["takeover"]["started"] and out["holder_release"]["result"] is False
    # Its release was never written, so none is lifted; the takeover is cleared.
    writes = [c for c in rig.cluster.calls if c[0] == "keepalived_track.write"]
    assert [(c[1], c[3].get("release")) for c in writes] == [(("cp-1",), 1)]
    assert rig.cluster.takeover == {}


def test_a_refused_takeover_is_recorded_and_the_release_still_moves_the_vip(rig):
    rig.heal["handover_s"] = 0
    rig.cluster.nodes["cp-2"]["priority"] = 5  # the plan's 253 "not in force" on the target
    real = rig.cluster.ask

    def keep_offset(opts, nodes, fun, *args, **kwargs):
        if fun == "keepalived_track.apply":
            args = ({n: {k: v for k, v in e.items() if not (n == "cp-2" and k == "priority")}
                     for n, e in args[0].items()},)  # fmt: skip
        return real(opts, nodes, fun, *args, **kwargs)

    rig.cluster.ask = rig.__utils__["kubeha_minions.ask"] = keep_offset
    out = rig.pin("lab", "cp-2")
    assert out["takeover"]["result"] is False and "not taking over" in out["takeover"]["error"]
    assert out["moved"] and rig.cluster.holders() == ["cp-2"]
    assert "vip_takeover.clear" not in [c[0] for c in rig.cluster.calls]


def test_no_takeover_off_the_last_overrides_target(rig):
    rig.pin("lab", "cp-3")  # cp-3 at 254 until its own write lands: a tie would trade
    rig.clock.sleep(120)
    rig.cluster.calls.clear()
    out = rig.pin("lab", "cp-2")
    assert out["moved"] and rig.cluster.holders() == ["cp-2"] and "takeover" not in out
    assert "vip_takeover.start" not in [c[0] for c in rig.cluster.calls]


def test_no_handover_when_it_is_off(rig):
    rig.heal["handover_s"] = 0
    out = rig.pin("lab", "cp-2")
    assert out["moved"] and "handover" not in out
    assert not [c for c in rig.cluster.calls if c[0].startswith("vip_handover.")]
    assert ("keepalived_track.write", ("cp-1",)) in [c[:2] for c in rig.cluster.calls]


def test_the_moves_own_reports_do_not_trigger_another(rig):
    views = impaired("cp-1")
    for seq, node in enumerate(NODES, 1):
        report(rig, views, node, seq)
    assert rig.cluster.holders() == ["cp-2"]
    moved = copy.deepcopy(views)
    moved["cp-1"]["holds_vip"], moved["cp-1"]["keepalived"] = False, "BACKUP"
    moved["cp-2"]["holds_vip"], moved["cp-2"]["keepalived"] = True, "MASTER"
    rig.cluster.calls.clear()
    for seq, node in enumerate(NODES, 10):
        out = report(rig, moved, node, seq)
        assert out["decisions"][0]["action"] == "none", out
    # The old holder reported first: for a moment no report said who holds the VIP; a
    # read of the live holders settles it, and nothing is written.
    assert {c[0] for c in rig.cluster.calls} <= {"vip_probe.holds"}
    assert "holds the VIP now" in rig.history("lab")[-3]["reason"]


def test_a_report_during_a_decision_is_kept_and_looked_at_after_it(rig):
    for seq, node in enumerate(NODES, 1):
        report(rig, healthy(), node, seq, "first")
    views = impaired("cp-1")
    report(rig, views, "cp-2", 10)
    with rig.store.locked(rig.__opts__, "lab", "decide") as got:
        assert got
        busy = report(rig, views, "cp-3", 11)
    assert "in progress" in busy["comment"] and rig.cluster.holders() == ["cp-1"]
    assert rig.tick("lab")["lab"].startswith("move")
    assert rig.cluster.holders() == ["cp-2"]


def test_observe_mode_decides_and_records_but_changes_nothing(rig):
    rig.heal["mode"] = "observe"
    views = impaired("cp-1")
    for seq, node in enumerate(NODES, 1):
        report(rig, views, node, seq)
    last = rig.history("lab")[-1]
    assert last["action"] == "move" and last["observed_only"] is True
    assert rig.cluster.calls == [] and rig.cluster.holders() == ["cp-1"]


def test_a_report_about_another_node_or_a_stranger_is_refused(rig):
    out = rig.react("lab", minion="cp-2", event={"node": "cp-1", "view": {}})
    assert out["result"] is False and "not a control plane" in out["comment"]
    assert rig.react("lab", minion="w-1", event={"node": "w-1"})["result"] is False
    assert rig.history("lab") == []


def test_an_override_is_undone_by_tick_once_clear_for_recover_after(rig):
    views = impaired("cp-1")
    for seq, node in enumerate(NODES, 1):
        report(rig, views, node, seq)
    good = healthy("cp-2")
    for seq, node in enumerate(NODES, 10):
        report(rig, good, node, seq)
    assert rig.status("lab")["override"]["clear_since"] == rig.clock.now
    rig.clock.now += 29
    rig.tick("lab")
    assert rig.status("lab")["override"] is not None
    rig.clock.now += 2
    assert rig.tick("lab")["lab"].startswith("undo")
    assert rig.status("lab")["override"] is None
    assert {n: rig.cluster.nodes[n]["priority"] for n in NODES} == dict.fromkeys(NODES, 0)
    assert rig.cluster.holders() == ["cp-2"]  # undoing never moves the VIP


def test_pin_moves_the_vip_and_unpin_lifts_every_override(rig):
    out = rig.pin("lab", "cp-3")
    assert out["moved"] and rig.cluster.holders() == ["cp-3"]
    # The holder is read, not found by applying the plan: the plan reaches each node once,
    # in the move's own job (the holder's entry with its release).
    funs = [c[0] for c in rig.cluster.calls]
    before_release = funs[: funs.index("keepalived_track.write")]
    assert before_release == ["vip_probe.holds", "vip_handover.forward",
                              "keepalived_track.apply", "vip_takeover.start"], funs  # fmt: skip
    assert rig.status("lab")["override"]["kind"] == "operator"
    out = rig.unpin("lab")
    assert out["holders"] == ["cp-3"] and rig.status("lab")["override"] is None
    assert {n: rig.cluster.nodes[n]["priority"] for n in NODES} == dict.fromkeys(NODES, 0)
    with pytest.raises(Exception, match="not a control plane"):
        rig.pin("lab", "w-9")


def test_a_split_keeps_one_holder_and_releases_the_other_until_it_hears_it(rig):
    for seq, node in enumerate(NODES, 1):
        report(rig, healthy("cp-1"), node, seq, "first")
    rig.cluster.nodes["cp-2"]["holds"] = True  # VRRP between cp-1 and cp-2 is cut
    split = healthy("cp-1")
    split["cp-2"] = {**split["cp-2"], "holds_vip": True, "keepalived": "MASTER", "vrrp_from": []}
    (decision,) = report(rig, split, "cp-2", 10)["decisions"]
    assert decision["action"] == "split" and decision["target"] == "cp-1"
    assert rig.cluster.holders() == ["cp-1"] and rig.cluster.nodes["cp-2"]["release"] == 1
    assert rig.cluster.nodes["cp-3"]["priority"] == 0  # lowered only during the release
    released = copy.deepcopy(split)
    released["cp-2"].update(holds_vip=False, keepalived="FAULT")
    report(rig, released, "cp-2", 11)
    rig.clock.now += 100
    rig.tick("lab")
    assert rig.cluster.nodes["cp-2"]["release"] == 1  # still deaf to cp-1: stays released
    released["cp-2"]["vrrp_from"] = ["cp-1"]
    report(rig, released, "cp-2", 12)
    rig.clock.now += 31
    assert rig.tick("lab")["lab"].startswith("undo")
    assert rig.cluster.nodes["cp-2"]["release"] == 0 and rig.cluster.holders() == ["cp-1"]


def test_a_dead_nodes_last_report_stops_counting_once_it_does_not_answer(rig):
    for seq, node in enumerate(NODES, 1):
        report(rig, healthy("cp-1"), node, seq, "first")
    # cp-1 loses its power: VRRP moves the VIP to cp-2, whose report says so; cp-1's last
    # report still says it holds the VIP.
    rig.cluster.nodes["cp-1"].update(off=True, holds=False)
    rig.cluster.nodes["cp-2"]["holds"] = True
    moved = healthy("cp-2")
    moved["cp-2"]["peers"]["cp-1"]["state"] = "bad"
    (decision,) = report(rig, moved, "cp-2", 10)["decisions"]
    assert decision["action"] == "none" and "holds the VIP now" in decision["reason"]
    status = rig.status("lab")
    assert status["scores"]["cp-1"]["score"] is None  # no longer counted, no candidate
    assert status["views"]["cp-1"]["holds"] is None
    # It comes back and reports: counted again.
    rig.cluster.nodes["cp-1"].update(off=False)
    rig.clock.now += 5
    report(rig, healthy("cp-2"), "cp-1", 2, "first")
    assert rig.status("lab")["scores"]["cp-1"]["score"] == 0


def _with_etcd(views: dict, leader: str) -> dict:
    out = copy.deepcopy(views)
    for n in NODES:
        out[n]["etcd_leader"] = n == leader
    return out


def test_etcds_leader_leaves_the_vip_holder_once_per_cooldown(rig):
    """vip_heal:move_etcd_leader: the leader on the holder is handed to a healthy node that
    does not hold the VIP, asked of the leader's own node (its member is local there);
    recorded, fired, and not repeated within the cooldown; off by default."""
    views = _with_etcd(healthy("cp-1"), "cp-1")
    assert report(rig, views, "cp-1", 1, "first")["decisions"][0]["etcd"] is None  # off
    rig.heal["move_etcd_leader"] = True
    rig.store.write(rig.__opts__, "lab", "model", {})  # compile the model again
    for seq, node in enumerate(NODES, 2):
        out = report(rig, views, node, seq)
    moves = [h for h in rig.history("lab") if h["action"] == "etcd-leader"]
    assert len(moves) == 1, moves
    assert moves[0]["leader"] == "cp-1" and moves[0]["target"] == "cp-2" and moves[0]["result"]
    assert rig.cluster.etcd_leader == "cp-2"
    calls = [c for c in rig.cluster.calls if c[0] == "etcdctl.move_leader"]
    assert [(c[1], c[2]) for c in calls] == [(("cp-1",), ("cp-2",))]
    assert moves[0]["asked"] == "cp-1"
    # Raft drops a transfer not taken within an election timeout (1 s here) while a call
    # waits on: short calls, several of them.
    assert (calls[0][3]["command_timeout"], calls[0][3]["attempts"]) == ("3s", 3)
    assert rig.fired[-1][0] == "kubeha/vip/lab/etcd-leader"
    assert out["decisions"][0]["action"] == "none"
    # a stale report that still says cp-1 leads, inside the cooldown: nothing more
    report(rig, views, "cp-1", 9)
    assert len([h for h in rig.history("lab") if h["action"] == "etcd-leader"]) == 1
    rig.clock.now += 61
    report(rig, _with_etcd(views, "cp-2"), "cp-2", 10)  # cp-2 leads, holds nothing: stays
    assert len([h for h in rig.history("lab") if h["action"] == "etcd-leader"]) == 1


def test_etcds_leader_is_moved_through_the_target_when_its_own_node_does_not_answer(rig):
    """Heard by its peers but its minion silent: asked, then the target asked."""
    rig.heal["move_etcd_leader"] = True
    rig.store.write(rig.__opts__, "lab", "model", {})
    rig.cluster.nodes["cp-1"]["off"] = True  # its minion does not answer; etcd still leads
    views = _with_etcd(healthy("cp-1"), "cp-1")
    for seq, node in enumerate(NODES, 1):
        report(rig, views, node, seq)
    (move,) = [h for h in rig.history("lab") if h["action"] == "etcd-leader"]
    calls = [c[1] for c in rig.cluster.calls if c[0] == "etcdctl.move_leader"]
    assert calls == [("cp-1",), ("cp-2",)]
    assert move["result"] and move["asked"] == "cp-2" and move["errors"][0].startswith("cp-1:")
    assert rig.cluster.etcd_leader == "cp-2"


def test_the_handover_wait_follows_the_master_down_timer():
    """The runner waits for a handover as long as VRRP may take (the master-down timer, two
    adverts of slack for a lost priority-0 advert) plus the minion round trips."""
    act = load("_utils", "kubeha_vip_act")
    assert act.takeover_bound({"advert_int": 0.2, "down_timer_adverts": 3}) == pytest.approx(4.0)
    assert act.takeover_bound({"advert_int": 0.1, "down_timer_adverts": 6}) == pytest.approx(3.8)
    assert act.takeover_bound({"advert_int": 1.0, "down_timer_adverts": 3}) == pytest.approx(8.0)


def test_a_long_etcdctl_error_keeps_its_end():
    """etcdctl's gRPC status comes last: a long error keeps its start and its end."""
    act = load("_utils", "kubeha_vip_act")
    text = "ERROR: etcdctl move-leader failed: " + "x" * 600 + " context deadline exceeded"
    brief = act._brief(text)
    assert brief.startswith("ERROR: etcdctl move-leader failed")
    assert brief.endswith("context deadline exceeded") and len(brief) < 500
    assert act._brief("short") == "short"
