"""A refused chaos run changes nothing and says why (runner kubeha_chaos): chaos not allowed
by the cluster's pillar, an unhealthy cluster (the final gate), a fault below etcd quorum,
an unresolvable target, a bad pillar. Nothing is started on any minion in each case."""

import copy

import pytest

from tests.unit.modules.khm_load import load, utils

runner = load("_runners", "kubeha_chaos")

MODEL = {
    "control_plane": [{"name": f"cp-{i}", "ip": f"198.18.0.1{i}"} for i in (1, 2, 3)],
    "vip": {"address": "198.18.0.10", "lb_port": 8443, "interface": "ens160"},
    "vrrp": {"instance": "VI_1"},
    "chaos": {"enabled": True, "probe_minion": "client", "max_duration": 900, "lead_in": 5,
              "settle": 15, "power_off": [], "power_on": [],
              "probe_kubeconfig": "/root/.kube/config"},
    "probe": {"rate": 10, "timeout": 10},
}  # fmt: skip
SNAPSHOT = {
    "vip": {"holders": ["cp-1"]},
    "etcd": [{"endpoint": f"https://198.18.0.1{i}:2379", "is_leader": i == 2, "errors": []}
             for i in (1, 2, 3)],
    "leases": [{"name": "kube-controller-manager", "holder_node": "cp-3"}],
}  # fmt: skip


@pytest.fixture
def calls(monkeypatch):
    """Every minion call the runner makes; none may happen in a refused run."""
    made = []

    def forbidden(*args, **kwargs):
        made.append((args, kwargs))
        raise AssertionError(f"a refused run reached a minion: {args}")

    monkeypatch.setattr(runner, "_start", forbidden)
    monkeypatch.setattr(runner, "_ask", forbidden)
    runner.__utils__ = utils("chaos_plan")
    return made


def _salt(model=None, gate=None):
    model = copy.deepcopy(MODEL if model is None else model)
    gate = gate or {"result": True, "snapshot": SNAPSHOT, "comment": "healthy"}

    def kubeha_model(cluster):
        if isinstance(model, Exception):
            raise model
        return model

    return {"kubeha.model": kubeha_model, "kubeha_gate.final": lambda cluster, wait: gate}


def _refused(ret):
    assert ret["result"] is False and ret["retcode"] == 1 and ret["changed"] is False
    assert ret["Error"].startswith("chaos run refused, nothing was changed: ")
    return ret["Error"]


def test_not_allowed_by_pillar(calls):
    model = copy.deepcopy(MODEL)
    model["chaos"]["enabled"] = False
    runner.__salt__ = _salt(model)
    assert "kubeha:chaos:enabled is false" in _refused(runner.run("prod", "apiserver-stop"))
    assert calls == []


def test_unhealthy_cluster(calls):
    gate = {"result": False, "comment": "final: HAProxy on cp-1 sees backends not UP: [...]"}
    runner.__salt__ = _salt(gate=gate)
    why = _refused(runner.run("lab", "apiserver-hang", "vip-holder", 20))
    assert "must be healthy first" in why and "not UP" in why
    assert calls == []


def test_below_quorum_unless_forced(calls):
    runner.__salt__ = _salt()
    why = _refused(runner.run("lab", "etcd-stop", "cp-1,cp-2", 15))
    assert "leaves 1 of 3 etcd members" in why and "force=true" in why
    assert calls == []


def test_every_control_plane_at_once(calls):
    runner.__salt__ = _salt()
    why = _refused(runner.run("lab", "apiserver-hang", "cp-1,cp-2,cp-3", 15))
    assert "every control plane" in why


def test_unknown_target_and_bad_pillar(calls):
    runner.__salt__ = _salt()
    assert "neither a control plane" in _refused(runner.run("lab", "netem", "cp-7"))
    runner.__salt__ = _salt(RuntimeError("kubeha: the cluster model in pillar has 1 problem(s)"))
    assert "the cluster model in pillar" in _refused(runner.run("lab", "netem"))
    assert calls == []


def test_plan_says_what_would_be_hit(calls):
    runner.__salt__ = _salt()
    ret = runner.plan("lab", "etcd-stop")
    assert ret["result"] and ret["targets"] == ["cp-2"]
    assert "etcd stopped" in ret["comment"]
    ret = runner.plan("lab", "leader-kill")
    assert ret["targets"] == ["cp-3"]


def test_watchers_that_lose_an_answer_are_asked_again_and_nothing_is_discarded_early(
    monkeypatch,
):
    """A node back from isolation may drop its first answer: its records stay on the node
    (fetched with remove=False) and it is asked again; they go only once every answer is
    in. A node that never answers is reported missing, not read as an empty view."""
    made = []
    answers = {"cp-1": [(False, "cp-1 did not answer within 30 s"), (True, [{"t": 1.0}])],
               "cp-2": [(True, [{"t": 2.0}])], "cp-3": [(False, "no answer")] * 99}  # fmt: skip

    def ask(nodes, fun, *args, timeout=60, **kwargs):
        nodes = [nodes] if isinstance(nodes, str) else list(nodes)
        made.append((fun, sorted(nodes), kwargs))
        if fun == "chaos_watch.discard":
            return {n: (True, True) for n in nodes}
        return {n: answers[n].pop(0) for n in nodes}

    clock = {"now": 1000.0}
    monkeypatch.setattr(runner, "_ask", ask)
    monkeypatch.setattr(runner.time, "time", lambda: clock["now"])
    monkeypatch.setattr(runner.time, "sleep", lambda s: clock.update(now=clock["now"] + s))
    watch, missing = runner._fetch_watchers("run-1", ["cp-1", "cp-2", "cp-3"], deadline_s=12)
    assert watch == {"cp-1": [{"t": 1.0}], "cp-2": [{"t": 2.0}], "cp-3": []}
    assert list(missing) == ["cp-3"]
    fetches = [m for m in made if m[0] == "chaos_watch.fetch"]
    assert fetches[0] == ("chaos_watch.fetch", ["cp-1", "cp-2", "cp-3"], {"remove": False})
    assert fetches[1][1] == ["cp-1", "cp-3"] and all(f[1] == ["cp-3"] for f in fetches[2:])
    assert made[-1] == ("chaos_watch.discard", ["cp-1", "cp-2"], {})
    assert [m[0] for m in made].count("chaos_watch.discard") == 1


def test_the_summary_places_each_judged_loss_against_the_fault():
    # What CI prints when a run fails: enough to tell a request lost with a powered-off
    # node from one that failed after it.
    stats = {"failed": 2, "count": 190, "longest_stall_s": 10.008}
    entry = {"scenario": "power-off", "targets": ["cp-2"], "duration_s": 8.0, "run_id": "r",
             "pass": False, "verdicts": [{"goal": "failed requests <= 0", "measured": "1",
                                          "pass": False}],
             "measured": {"requests": {"overall": stats, "judged": {**stats, "failed": 1},
                                       "in_flight_at_power_off": 1, "power_off_window_s": 0.004,
                                       "judged_failed": [[0.012, "timeout", 10.008]]},
                          "vip": {"failover_s": 0.8}, "writes": {"lost": 0},
                          "leases": {}}}  # fmt: skip
    out = runner._summary(entry, [])
    assert "2 of 190 requests failed (1 in flight at the power-off, whose switch took 0.004 s)" in (
        out["comment"])  # fmt: skip
    assert "failed: sent +0.012 s, timeout, waited 10.008 s" in out["comment"]
    assert out["comment"].endswith("FAILED: failed requests <= 0 (measured 1)")
    assert (out["in_flight_at_power_off"], out["power_off_window_s"]) == (1, 0.004)
    assert out["retcode"] == 1
