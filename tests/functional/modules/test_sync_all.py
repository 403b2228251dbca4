"""Our modules, states and utils reach a minion the production way: saltutil.sync_all
from file_roots [<repo>/salt, <repo>] on a real salt-master."""

import shutil

import pytest

MODULES = [
    "apiserver",
    "crictl",
    "etcd_snapshot",
    "etcdctl",
    "haproxy_runtime",
    "keepalived",
    "kubeadm",
    "kubeadm_certs",
    "kubeadm_join",
    "kubeadm_upgrade",
    "netem",
]
STATES = ["etcdctl", "keepalived", "kubeadm", "netem"]


@pytest.fixture(scope="package")
def minion(salt_master):
    factory = salt_master.salt_minion_daemon("khm-modules")
    with factory.started(start_timeout=120):
        yield factory


@pytest.fixture(scope="package")
def synced(minion):
    ret = minion.salt_call_cli(timeout=120).run("saltutil.sync_all")
    assert ret.returncode == 0, ret.stderr
    return ret.data


def test_sync_all_delivers_modules_states_and_the_nfqueue_daemon(synced):
    for name in MODULES:
        assert f"modules.{name}" in synced["modules"]
    for name in STATES:
        assert f"states.{name}" in synced["states"]
    assert "utils.netem_nfqueue" in synced["utils"]


def test_loaded_modules_answer_and_missing_tools_say_why(minion, synced):
    cli = minion.salt_call_cli(timeout=60)
    ret = cli.run("netem.tc_command", "add", "ens160", '{"delay": 200.0, "loss": 20.0}')
    assert ret.returncode == 0, ret.stderr
    assert ret.data == [
        "tc",
        "qdisc",
        "add",
        "dev",
        "ens160",
        "root",
        "netem",
        "delay",
        "200ms",
        "loss",
        "20%",
    ]
    ret = cli.run("haproxy_runtime.servers", "sock=/nonexistent/admin.sock")
    assert ret.returncode != 0
    assert "HAProxy runtime socket /nonexistent/admin.sock does not exist" in ret.stderr
    if shutil.which("kubeadm") is None:
        ret = cli.run("kubeadm.version")
        assert ret.returncode != 0
        assert "the kubeadm binary is not installed" in ret.stdout + ret.stderr + str(ret.data)
    if shutil.which("crictl") is None:
        ret = cli.run("crictl.ps")
        assert "crictl (cri-tools) is not installed" in ret.stdout + ret.stderr + str(ret.data)


def test_docs_reach_the_minion(minion, synced):
    ret = minion.salt_call_cli(timeout=60).run("sys.doc", "netem.add")
    assert ret.returncode == 0
    assert "CLI Example" in ret.data["netem.add"]
