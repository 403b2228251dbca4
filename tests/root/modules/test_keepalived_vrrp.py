"""keepalived module against three real keepalived peers in network namespaces.

Namespaces khm-ka-br (the bridge), khm-ka-1..3 (one peer each, eth0 on the bridge),
198.18.0.211-213, VIP 198.18.0.210: all inside our own namespaces, torn down by name.
Each keepalived gets a private /tmp (its JSON dump lands in the test's directory).
"""

import json
import os
import shutil
import subprocess
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
from khm_support import loaders, netns_delete, sh, stop_pid

from tests.conftest import require_binary
from tests.keepalived_notify import wrapper

pytestmark = pytest.mark.root

BR = "khm-ka-br"
PEERS = {1: "198.18.0.211", 2: "198.18.0.212", 3: "198.18.0.213"}
VIP = "198.18.0.210"
PRIORITIES = {1: 100, 2: 90, 3: 80}


def _conf(i: int, notify: Path) -> str:
    # One peer per line: "a b" on one line is read as an address with a value (keepalived).
    peers = "\n                ".join(ip for j, ip in PEERS.items() if j != i)
    return textwrap.dedent(
        f"""\
        global_defs {{
            router_id khm-ka-{i}
            enable_script_security
            script_user root
        }}
        vrrp_instance VI_1 {{
            state BACKUP
            interface eth0
            virtual_router_id 51
            priority {PRIORITIES[i]}
            advert_int 1
            unicast_src_ip {PEERS[i]}
            unicast_peer {{
                {peers}
            }}
            authentication {{
                auth_type PASS
                auth_pass khmtest
            }}
            virtual_ipaddress {{
                {VIP}/24 dev eth0
            }}
            notify {notify}
        }}
        """
    )


@pytest.fixture(scope="module")
def vrrp(tmp_path_factory, request):
    require_binary("keepalived")
    # Outside /tmp: each peer gets its own /tmp bind-mounted over the real one.
    base = Path(tempfile.mkdtemp(prefix="khm-vrrp-", dir="/var/tmp"))
    names = [BR] + [f"khm-ka-{i}" for i in PEERS]
    procs: list[subprocess.Popen] = []

    def teardown():
        for p in procs:
            stop_pid(p)
        for ns in names:
            netns_delete(ns)
        if not os.environ.get("KHM_KEEP"):  # keep logs for debugging: KHM_KEEP=1
            shutil.rmtree(base, ignore_errors=True)

    request.addfinalizer(teardown)
    for ns in names:
        netns_delete(ns)  # leftovers of an interrupted run
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
    sh("ip", "-n", BR, "link", "add", "br0", "type", "bridge")
    sh("ip", "-n", BR, "link", "set", "br0", "up")
    nodes = {}
    for i, ip in PEERS.items():
        ns = f"khm-ka-{i}"
        sh(
            "ip",
            "-n",
            BR,
            "link",
            "add",
            f"p{i}",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            ns,
        )
        sh("ip", "-n", BR, "link", "set", f"p{i}", "master", "br0", "up")
        sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
        d = base / f"node{i}"
        (d / "tmp").mkdir(parents=True)
        notify = wrapper(d)  # the formula's kubeha-notify.sh, recording under d/run
        conf = d / "keepalived.conf"
        conf.write_text(_conf(i, notify))
        pid = d / "keepalived.pid"
        log = (d / "keepalived.log").open("wb")
        # A private /tmp per peer: keepalived always dumps to /tmp/keepalived.json.
        script = (
            f"mount --bind {d / 'tmp'} /tmp && exec keepalived -n -l -D -P -f {conf} "
            f"-p {pid} -r {d / 'vrrp.pid'}"
        )
        procs.append(
            subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    ns,
                    "unshare",
                    "-m",
                    "--propagation",
                    "private",
                    "sh",
                    "-c",
                    script,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        settings = {
            "config": str(conf),
            "pid_file": str(pid),
            "dump_dir": str(d / "tmp"),
            "notify_dir": str(d / "run/keepalived"),
            "netns": ns,
        }
        both = loaders(d / "salt", keepalived=settings)
        nodes[i] = both.modules
        nodes[i].states = both.states
        nodes[i].dir = d
        nodes[i].settings = settings
    assert _wait_holder(nodes, 1, timeout=20) is not None, "no VIP holder after 20 s"
    return nodes


def _holders(nodes) -> list[int]:
    return [i for i, salt in nodes.items() if salt.keepalived.holds_vip(VIP)]


def _wait_holder(nodes, want: int, timeout: float) -> float | None:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if _holders(nodes) == [want]:
            return time.monotonic() - started
        time.sleep(0.05)
    return None


def test_states_and_vip_holder_read_from_keepalived(vrrp):
    states = {i: salt.keepalived.state("VI_1") for i, salt in vrrp.items()}
    assert states == {1: "MASTER", 2: "BACKUP", 3: "BACKUP"}
    inst = vrrp[1].keepalived.instances()[0]
    assert inst["source"] == "keepalived.json"
    assert inst["vrid"] == 51 and inst["interface"] == "eth0"
    assert inst["effective_priority"] == 100 and VIP in inst["vips"][0]
    # the dump carries the VRRP password in clear: read, then removed
    assert not (vrrp[1].dir / "tmp" / "keepalived.json").exists()
    assert _holders(vrrp) == [1]
    # The notify script saw the same transitions.
    notified = json.loads((vrrp[1].dir / "run/keepalived/VI_1.json").read_text())
    assert notified["instance"] == "VI_1" and notified["state"] == "MASTER"
    assert notified["priority"] == 100


def test_raising_a_backup_above_the_master_moves_the_vip(vrrp, record_property):
    prio = vrrp[2].keepalived.get_priority()
    assert prio["configured"] == 90 and prio["effective"] == 90
    started = time.monotonic()
    ret = vrrp[2].keepalived.set_priority(150)
    assert ret["old"] == 90 and ret["new"] == 150 and ret["config_changed"]
    assert ret["how"].startswith("SIGHUP")
    moved = _wait_holder(vrrp, 2, timeout=15)
    total = time.monotonic() - started
    assert moved is not None, f"VIP still on {_holders(vrrp)} 15 s after the priority change"
    record_property("vip_move_s", round(total, 3))
    print(f"\nVIP moved cp-1 -> cp-2 {total:.2f} s after set_priority(150)")
    assert vrrp[2].keepalived.state() == "MASTER"
    assert vrrp[1].keepalived.state() == "BACKUP"
    after = vrrp[2].keepalived.get_priority()
    assert after == {"instance": "VI_1", "configured": 150, "effective": 150, "override_grain": 150}
    assert vrrp[2].keepalived.set_priority(150)["config_changed"] is False

    cleared = vrrp[2].keepalived.clear_priority(priority=90)
    assert cleared["cleared_override"] == 150 and cleared["config_changed"]
    assert vrrp[2].keepalived.get_priority()["override_grain"] is None
    assert _wait_holder(vrrp, 1, timeout=15) is not None


def test_priority_state_is_idempotent(vrrp):
    st = vrrp[3].states.keepalived
    try:
        first = st.priority(name="VI_1", priority=85)
        assert first["result"] is True, first["comment"]
        assert first["changes"]["new"] == 85
        assert first["changes"]["grain"] == {"old": None, "new": 85}
        # A second state.apply is a new job: grains come from the grains file again.
        fresh = loaders(vrrp[3].dir / "salt", keepalived=vrrp[3].settings).states
        again = fresh.keepalived.priority(name="VI_1", priority=85)
        assert again["result"] is True and again["changes"] == {}
        deadline = time.monotonic() + 10
        while vrrp[3].keepalived.get_priority()["effective"] != 85:
            assert time.monotonic() < deadline, "keepalived did not reload the priority"
            time.sleep(0.2)
        assert _holders(vrrp) == [1]  # 85 < 100: the VIP stays where it is
    finally:
        vrrp[3].keepalived.clear_priority(priority=80)


def test_notify_files_are_the_fallback_when_keepalived_is_down(vrrp, tmp_path):
    # Same node, but the pid file names no live keepalived: only the notify files remain.
    settings = dict(vrrp[3].settings, pid_file=str(tmp_path / "gone.pid"))
    salt = loaders(tmp_path / "salt", keepalived=settings).modules
    inst = salt.keepalived.instances()
    assert [(i["name"], i["state"], i["effective_priority"]) for i in inst] == [
        ("VI_1", "BACKUP", 80)
    ]
    assert inst[0]["source"].endswith("run/keepalived/VI_1.json")
