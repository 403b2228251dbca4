"""Our modules, states and utils reach a minion the production way: saltutil.sync_all
from file_roots [<repo>/salt] (the documented master config) on a real salt-master."""

import os
from pathlib import Path

import pytest

from lab.kubesim.hostnode import write_launchers

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


def test_loaded_modules_answer_and_missing_tools_say_why(minion, synced, tmp_path):
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
    # Both ways, whatever this host has: salt-call gets a PATH without kubeadm and crictl,
    # then one with kubesim's stand-ins first (the binaries the lab's packages install).
    bare = os.pathsep.join(
        d
        for d in os.environ["PATH"].split(os.pathsep)
        if d and not any((Path(d) / tool).exists() for tool in ("kubeadm", "crictl"))
    )
    ret = cli.run("kubeadm.version", env={"PATH": bare})
    assert ret.returncode != 0
    assert "the kubeadm binary is not installed" in ret.stdout + ret.stderr + str(ret.data)
    ret = cli.run("crictl.ps", env={"PATH": bare})
    assert ret.returncode != 0
    assert "crictl (cri-tools) is not installed" in ret.stdout + ret.stderr + str(ret.data)
    write_launchers(tmp_path / "bin", "v1.31.0")
    tools = {
        "PATH": f"{tmp_path / 'bin'}{os.pathsep}{bare}",
        "KUBESIM_CRI_ROOT": str(tmp_path / "cri"),  # kubesim's container records: none yet
    }
    ret = cli.run("kubeadm.version", env=tools)
    assert ret.returncode == 0, ret.stdout + ret.stderr
    assert ret.data == "v1.31.0"
    # config_validate hands kubeadm's own verdict through: v1beta4 is v1.31's API, v1beta2
    # one that kubeadm no longer reads (its wording is kubeadm's, not asserted here).
    good = tmp_path / "v1beta4.yaml"
    good.write_text(
        "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\n"
        "kubernetesVersion: v1.31.0\ncontrolPlaneEndpoint: 198.18.0.10:8443\n"
    )
    old = tmp_path / "v1beta2.yaml"
    old.write_text(good.read_text().replace("v1beta4", "v1beta2"))
    ret = cli.run("kubeadm.config_validate", str(good), env=tools)
    assert ret.returncode == 0, ret.stdout + ret.stderr
    assert ret.data == {"valid": True, "config": str(good), "output": "ok"}
    ret = cli.run("kubeadm.config_validate", str(old), env=tools)
    assert ret.returncode != 0
    assert "kubeadm config validate failed: " in ret.stdout + ret.stderr + str(ret.data)
    ret = cli.run("crictl.ps", env=tools)
    assert ret.returncode == 0, ret.stdout + ret.stderr
    assert ret.data == []


def test_docs_reach_the_minion(minion, synced):
    ret = minion.salt_call_cli(timeout=60).run("sys.doc", "netem.add")
    assert ret.returncode == 0
    assert "CLI Example" in ret.data["netem.add"]
