"""After `up`: every machine boots real systemd, its minion answers the lab master with its
own identity, and the network is exactly 198.18.0.0/24 and nothing else."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lab import config, network, saltmaster
from lab.run import LabError

pytestmark = [pytest.mark.root, pytest.mark.lab]
CONTROL_PLANES = ["cp-1", "cp-2", "cp-3"]


def test_every_minion_answers_test_ping(lab):
    assert lab.salt("cp-*", "test.ping") == {n: True for n in CONTROL_PLANES}
    assert lab.salt("client", "test.ping") == {"client": True}


def test_each_minion_reports_its_own_hostname_address_and_cluster(lab):
    grains = lab.salt("*", "grains.item", "id", "host", "ipv4", "kubeha_cluster")
    assert set(grains) == {*CONTROL_PLANES, "client"}
    for node, items in grains.items():
        assert items["id"] == node
        assert items["host"] == node
        assert lab.ip(node) in items["ipv4"]
    # The VIP is keepalived's on a control plane once the formula ran (earlier tests may
    # have run it; grains may even be stale about who holds it now): never the client's.
    assert config.VIP not in grains["client"]["ipv4"]
    assert {n: grains[n]["kubeha_cluster"] for n in CONTROL_PLANES} == dict.fromkeys(
        CONTROL_PLANES, "lab"
    )
    assert grains["client"]["kubeha_cluster"] == ""  # the client is not a cluster member


def test_lab_pillar_reaches_cluster_machines_only(lab):
    # Only the keys read here are unmasked (3008 masks pillar.item by default): the whole
    # kubeha tree unmasked would put its secrets (S3 keys, the PKI key) in the master's job
    # cache, which tests/lab/test_day2_backup.py asserts they never reach.
    keys = ["kubeha:cluster:name", "kubeha:packages:repo_base", "kubeha:control_plane"]
    pillar = lab.salt("cp-*", "pillar.item", *keys, "unmask=True")
    for node in CONTROL_PLANES:
        assert pillar[node]["kubeha:cluster:name"] == "lab"
        assert pillar[node]["kubeha:packages:repo_base"] == f"{config.MIRROR_URL}/k8s"
        assert {cp["name"]: cp["ip"] for cp in pillar[node]["kubeha:control_plane"]} == {
            n: lab.ip(n) for n in CONTROL_PLANES
        }
    assert not lab.salt("client", "pillar.item", "kubeha")["client"]["kubeha"]


def test_systemd_is_running_with_no_failed_unit(lab):
    for node in lab.nodes:
        assert lab.system_state(node) == "running", lab.exec(node, "systemctl", "--failed").stdout
        failed = lab.exec(node, "systemctl", "list-units", "--failed", "--plain", "--no-legend")
        assert failed.stdout.strip() == ""
        assert lab.exec(node, "systemctl", "is-active", "salt-minion").stdout.strip() == "active"


def test_salt_call_and_the_minion_python_are_like_the_onedir(lab):
    out = lab.sh("cp-1", "readlink -f $(command -v salt-call); salt-call --version").stdout
    path, version = out.split("\n", 1)
    assert path == "/opt/saltstack/salt/bin/salt-call"
    assert version.startswith("salt-call 3008.4")
    probe = (
        "import etcd3, kubernetes, google.protobuf as pb, salt.version;"
        "print(salt.version.__version__, kubernetes.__version__, pb.__version__)"
    )
    versions = lab.exec("cp-1", "/opt/saltstack/salt/bin/python3", "-c", probe).stdout.split()
    assert versions == ["3008.4", "37.0.2", "3.20.3"]
    # salt-call talks to the lab master like keepalived's notify hook will
    ret = json.loads(lab.exec("cp-2", "salt-call", "--out=json", "test.ping").stdout)
    assert ret == {"local": True}


def test_network_is_only_the_lab_subnet(lab):
    assert set(network.namespaces()) >= {f"kha-{n}" for n in lab.nodes}
    for node in lab.nodes:
        routes = lab.exec(node, "ip", "-j", "route", "show", "table", "all").stdout
        dests = set()
        for r in json.loads(routes):
            if r.get("table") == "local":
                continue
            if r.get("type") == "local":
                # A delivery to this node itself, not a way out: the only one is the
                # formula's kubeha-vip-divert route for the VIP (vip_heal:handover_s).
                assert (r["dst"], r.get("table")) == (lab.vip, "4843"), r
                continue
            dests.add(r["dst"])
        assert "default" not in dests
        assert {d for d in dests if not d.startswith(("fe80", "ff00", "multicast"))} == {
            "198.18.0.0/24"
        }
        assert lab.exec(node, "ip", "-br", "link", "show", "lo").stdout.split()[1] == "UNKNOWN"
        addr = json.loads(lab.exec(node, "ip", "-j", "-4", "addr", "show", "ens160").stdout)
        # Its own address, plus the cluster's VIP where keepalived holds it (a lab the
        # formula already ran on).
        local = [a["local"] for a in addr[0]["addr_info"]]
        assert local[0] == lab.ip(node) and set(local[1:]) <= {lab.vip}, local
        unreachable = lab.exec(node, "ip", "route", "get", "192.0.2.1", check=False)
        assert unreachable.returncode != 0 and "unreachable" in unreachable.stderr
    # the machines reach each other and the host over the bridge
    assert lab.exec("client", "ping", "-c1", "-W2", lab.ip("cp-3")).returncode == 0
    assert lab.exec("cp-1", "ping", "-c1", "-W2", config.HOST_IP).returncode == 0


def test_master_serves_the_formula_and_accepts_only_lab_keys(lab):
    cfg = saltmaster.config()
    assert cfg["interface"] == config.HOST_IP
    assert cfg["file_roots"] == {"base": [str(config.REPO / "salt")]}
    assert cfg["pillar_roots"] == {"base": [str(config.REPO / "pillar")]}
    # a stranger's minion (a fresh key, id "intruder") gets no further than "pending"
    minion = (
        "id: intruder\nmaster: 198.18.0.1\npki_dir: /tmp/intruder/pki\n"
        "cachedir: /tmp/intruder/cache\nacceptance_wait_time: 1\n"
    )
    lab.sh("client", "mkdir -p /tmp/intruder && cat > /tmp/intruder/minion", input=minion)
    lab.sh(
        "client",
        "timeout 15 salt-call -c /tmp/intruder test.ping >/dev/null 2>&1; true",
        timeout=60,
    )
    try:
        keys = json.loads(lab.salt_cli("salt-key", "-L", "--out=json").stdout)
        assert "intruder" not in keys["minions"]
        assert "intruder" in keys["minions_pre"]
        assert sorted(keys["minions"]) == sorted(lab.nodes)
    finally:
        lab.salt_cli("salt-key", "-y", "-d", "intruder")
        lab.sh("client", "rm -rf /tmp/intruder")


def test_cli_exec_salt_and_status(lab):
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "lab", *args],
            cwd=config.REPO,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    assert cli("exec", "cp-2", "--", "hostname").stdout.strip() == "cp-2"
    assert cli("exec", "cp-2", "--", "false").returncode == 1
    ping = cli("salt", "cp-3", "test.ping", "--out=json")
    assert json.loads(ping.stdout) == {"cp-3": True}
    status = json.loads(cli("status", "--json").stdout)
    assert {n: m["systemd"] for n, m in status["machines"].items()} == dict.fromkeys(
        lab.nodes, "running"
    )
    assert all(s["alive"] for s in status["services"].values())
    # The unit's own journal, limited as asked (earlier tests may have restarted the
    # minion or filled its journal, so no particular line is looked for).
    logs = cli("logs", "cp-1", "salt-minion", "-n", "5")
    lines = logs.stdout.splitlines()
    assert logs.returncode == 0 and 1 <= len(lines) <= 5, logs
    assert all(" cp-1 " in line and ("salt-minion" in line or "systemd" in line) for line in lines)


def test_a_timed_out_exec_leaves_nothing_running_in_the_machine(lab):
    """What a command started in a machine dies with it on timeout, also a child in a
    session of its own (apt-get runs dpkg so); otherwise it would hold, say, the dpkg lock
    for the next test. PIDs are the machine's own, read inside it."""
    pids = "/run/kha-lab-test-timeout"
    script = f"setsid sleep 600 & echo $! > {pids}; sleep 600 & echo $! >> {pids}; wait"
    try:
        with pytest.raises(LabError, match="timed out after 2s"):
            lab.sh("client", script, timeout=2)
        left = lab.sh(
            "client",
            f"for p in $(cat {pids}); do [ -e /proc/$p ] && ! grep -q '^State:.*Z' "
            "/proc/$p/status && echo $p; done; true",
        )
        assert left.stdout.split() == []
        assert len(lab.exec("client", "cat", pids).stdout.split()) == 2
    finally:
        lab.sh("client", f"kill -9 $(cat {pids}) 2>/dev/null; rm -f {pids}", check=False)
