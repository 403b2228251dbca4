"""_utils/kubeha_minions: the LocalClient authenticates as the process that runs it, also
inside an orchestration the reactor started (which sets opts["user"] = "Reactor")."""

import pytest
import salt.utils.user

from tests.unit.modules.khm_load import load

minions = load("_utils", "kubeha_minions")


class FakeClient:
    def __init__(self, mopts):
        self.mopts = mopts

    def cmd(self, nodes, fun, **kwargs):
        return {n: {"ret": True, "retcode": 0} for n in nodes}

    def destroy(self):
        pass


def test_a_reactor_started_orchestration_still_publishes_as_the_master_user(monkeypatch):
    made = []

    def get_local_client(mopts):
        made.append(FakeClient(mopts))
        return made[-1]

    monkeypatch.setattr(minions.salt.client, "get_local_client", get_local_client)
    opts = {"user": "Reactor", "cachedir": "/var/cache/salt/master"}
    assert minions.ask(opts, ["cp-1"], "test.ping") == {"cp-1": (True, True)}
    assert made[0].mopts["user"] == salt.utils.user.get_user()
    assert made[0].mopts["cachedir"] == "/var/cache/salt/master"
    assert opts["user"] == "Reactor"  # the caller's opts are left alone


def test_steps_go_in_one_compound_job_and_come_back_per_step(monkeypatch):
    published = []

    class Compound(FakeClient):
        def cmd(self, nodes, fun, **kwargs):
            published.append((nodes, fun, kwargs))
            return {
                # Salt's multi-function return (salt/minion.py, _thread_multi_return): an
                # exception leaves the step's retcode unset and its return a traceback.
                "cp-2": {"ret": {"a.one": {"x": 1}, "b.two": "Traceback (most recent ..."},
                         "retcode": {"a.one": 0}},
                "cp-3": {"ret": {"a.one": {"x": 2}, "b.two": {"result": False}},
                         "retcode": {"a.one": 0, "b.two": 1}},
            }  # fmt: skip

    monkeypatch.setattr(minions.salt.client, "get_local_client", Compound)
    steps = [("a.one", [1, 2], {"seconds": 3}), ("b.two", [], {})]
    out = minions.ask_steps({"cachedir": "/c"}, ["cp-2", "cp-3", "cp-4"], steps, timeout=7)
    ((nodes, funs, kwargs),) = published
    assert funs == ["a.one", "b.two"] and nodes == ["cp-2", "cp-3", "cp-4"]
    # keyword arguments travel inside each step's argument list (Salt's __kwarg__ marker)
    assert kwargs["arg"] == [[1, 2, {"__kwarg__": True, "seconds": 3}], []]
    assert kwargs["timeout"] == 7 and kwargs["tgt_type"] == "list"
    assert out["cp-2"][0] == (True, {"x": 1}) and out["cp-2"][1][0] is False
    assert out["cp-3"] == [(True, {"x": 2}), (False, {"result": False})]
    assert [ok for ok, _ in out["cp-4"]] == [False, False]
    assert "did not answer a.one within 7 s" in out["cp-4"][0][1]


def test_a_function_twice_in_one_job_is_refused():
    with pytest.raises(ValueError, match="twice"):
        minions.ask_steps({}, ["cp-1"], [("a.one", [], {}), ("a.one", [], {})])
