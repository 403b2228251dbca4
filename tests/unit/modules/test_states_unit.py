"""State modules: read -> diff -> test=True -> write -> changes, with __salt__ mocked."""

from unittest.mock import MagicMock, patch

import pytest
from salt.exceptions import CommandExecutionError

from tests.unit.modules.khm_load import load, utils

kubeadm_st = load("_states", "kubeadm")
keepalived_st = load("_states", "keepalived")
netem_st = load("_states", "netem")
etcd_st = load("_states", "etcdctl")
netem_mod = load("_modules", "netem")


@pytest.fixture
def configure_loader_modules():
    out = {
        mod: {"__salt__": {}, "__opts__": {"test": False}}
        for mod in (kubeadm_st, keepalived_st, netem_st, etcd_st)
    }
    out[netem_mod] = {"__utils__": utils("netem_tc")}  # netem.normalize, used as is
    return out


def test_certs_fresh_noop_test_and_renew():
    expiring = MagicMock(side_effect=[[], ["apiserver", "admin.conf"], ["apiserver", "admin.conf"],
                                      []])  # fmt: skip
    renew, restart = MagicMock(), MagicMock(return_value=[{"name": "kube-apiserver"}])
    salt = {"kubeadm_certs.expiring": expiring, "kubeadm_certs.renew": renew,
            "kubeadm_certs.restart_static_pods": restart}  # fmt: skip
    with patch.dict(kubeadm_st.__salt__, salt):
        assert kubeadm_st.certs_fresh(min_days=30)["changes"] == {}
        with patch.dict(kubeadm_st.__opts__, {"test": True}):
            ret = kubeadm_st.certs_fresh(min_days=30)
        assert ret["result"] is None and ret["changes"] == {"renew": ["apiserver", "admin.conf"]}
        renew.assert_not_called()
        ret = kubeadm_st.certs_fresh(min_days=30)
    assert ret["result"] is True
    assert ret["changes"] == {
        "renewed": ["apiserver", "admin.conf"],
        "restarted": ["kube-apiserver"],
    }
    renew.assert_called_once_with(["apiserver", "admin.conf"])


def test_certs_fresh_fails_when_renewal_did_not_help():
    salt = {
        "kubeadm_certs.expiring": MagicMock(return_value=["etcd-server"]),
        "kubeadm_certs.renew": MagicMock(),
        "kubeadm_certs.restart_static_pods": MagicMock(return_value=[]),
    }
    with patch.dict(kubeadm_st.__salt__, salt):
        ret = kubeadm_st.certs_fresh(min_days=400)
    assert ret["result"] is False and "etcd-server" in ret["comment"]


@pytest.mark.parametrize(
    ("node", "tool", "first", "result", "action"),
    [
        ("v1.31.0", "v1.31.0", True, True, None),
        ("v1.30.0", "v1.30.0", True, False, None),  # kubeadm package not upgraded yet
        ("v1.30.0", "v1.31.0", True, True, "kubeadm_upgrade.apply"),
        ("v1.30.0", "v1.31.0", False, True, "kubeadm_upgrade.node"),
    ],
)
def test_upgraded(node, tool, first, result, action):
    apply_, node_ = MagicMock(), MagicMock()
    salt = {"kubeadm_upgrade.node_version": lambda: node, "kubeadm.version": lambda: tool,
            "kubeadm_upgrade.apply": apply_, "kubeadm_upgrade.node": node_}  # fmt: skip
    with patch.dict(kubeadm_st.__salt__, salt):
        ret = kubeadm_st.upgraded("v1.31.0", first=first)
    assert ret["result"] is result
    called = {"kubeadm_upgrade.apply": apply_, "kubeadm_upgrade.node": node_}
    for name, mock in called.items():
        assert mock.called == (name == action)
    if action:
        assert ret["changes"]["old"] == "v1.30.0" and ret["changes"]["new"] == "v1.31.0"
    if result is False:
        assert "install the v1.31.0 kubeadm package first" in ret["comment"]


def test_initialized_is_idempotent_and_returns_no_secret():
    done = {"endpoint": "198.18.0.10:8443", "token_id": "abcdef", "join_data_file": "/x"}
    init = MagicMock(return_value=dict(done, output="kubeadm join ..."))
    state = {"done": False}
    salt = {"kubeadm.is_initialized": lambda: state["done"], "kubeadm.init": init}
    with patch.dict(kubeadm_st.__salt__, salt):
        ret = kubeadm_st.initialized()
        state["done"] = True
        again = kubeadm_st.initialized()
    assert ret["changes"]["initialized"] is True and "output" not in ret["changes"]
    assert again["changes"] == {} and again["result"] is True


def test_keepalived_priority_idempotent():
    grains = {}
    configured = {"VI_1": 90}

    def set_priority(prio, inst, persist):
        configured[inst] = prio
        grains["kubeha_vrrp_priority"] = prio
        return {"how": "SIGHUP to 1"}

    salt = {
        "keepalived.configured_priority": lambda inst: configured[inst],
        "grains.get": lambda k, d=None: grains.get(k, d),
        "keepalived.set_priority": set_priority,
    }
    with patch.dict(keepalived_st.__salt__, salt):
        with patch.dict(keepalived_st.__opts__, {"test": True}):
            dry = keepalived_st.priority("VI_1", 150)
        assert dry["result"] is None and configured["VI_1"] == 90
        ret = keepalived_st.priority("VI_1", 150)
        again = keepalived_st.priority("VI_1", 150)
    assert ret["changes"]["old"] == 90 and ret["changes"]["new"] == 150
    assert again["changes"] == {}


def test_netem_present_compares_parameters():
    nfq = {"backend": "nfqueue", "delay_ms": 200.0, "jitter_ms": 0.0, "loss_pct": 20.0}
    shown = {"active": True, "backend": "nfqueue", "qdisc": None, "state": nfq}
    add, change = MagicMock(), MagicMock(return_value={"backend": "nfqueue"})
    salt = {"netem.normalize": netem_mod.normalize, "netem.show": lambda n, netns=None: shown,
            "netem.add": add, "netem.change": change}  # fmt: skip
    with patch.dict(netem_st.__salt__, salt):
        same = netem_st.present("ens160", delay="200ms", loss=20)
        different = netem_st.present("ens160", delay="100ms", loss=20)
    assert same["changes"] == {} and same["result"] is True
    assert different["changes"]["old"] == {"delay": 200.0, "loss": 20.0}
    assert different["changes"]["new"] == {"delay": 100.0, "loss": 20.0}
    add.assert_not_called()
    change.assert_called_once()


def test_etcd_defragmented_threshold_and_refusal():
    status = [
        {"endpoint": "a", "reachable": True, "db_size": 200 << 20, "db_size_in_use": 50 << 20},
        {"endpoint": "b", "reachable": True, "db_size": 200 << 20, "db_size_in_use": 190 << 20},
    ]
    salt = {
        "etcdctl.endpoint_status": lambda e=None: status,
        "etcdctl.defrag_plan": lambda e=None: {"ok": False, "reason": "unhealthy member(s): c"},
        "etcdctl.defrag": MagicMock(side_effect=CommandExecutionError("refusing")),
    }
    with patch.dict(etcd_st.__salt__, salt):
        with patch.dict(etcd_st.__opts__, {"test": True}):
            dry = etcd_st.defragmented()
        ret = etcd_st.defragmented()
        calm = etcd_st.defragmented(max_fragmented=0.9)
    assert dry["result"] is False and "unhealthy member(s): c" in dry["comment"]
    assert ret["result"] is False and "refusing" in ret["comment"]
    assert calm["result"] is True and calm["changes"] == {}
