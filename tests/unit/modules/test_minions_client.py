"""_utils/kubeha_minions: the LocalClient authenticates as the process that runs it, also
inside an orchestration the reactor started (which sets opts["user"] = "Reactor")."""

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
