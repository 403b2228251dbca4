"""The fault switches on real machines: power, cable, freezer. Each test leaves every machine
healthy again (fixture lab_healthy); the VRRP test runs its own keepalived beside the
cluster's and stops it after."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from lab import cgroups, config, faults, hostlayout

pytestmark = [pytest.mark.root, pytest.mark.lab]
CONTROL_PLANES = ["cp-1", "cp-2", "cp-3"]
APT = "DEBIAN_FRONTEND=noninteractive apt-get -q -y -o Dpkg::Use-Pty=0"
# This test's own VRRP instance and VIP, beside the cluster's (config.VIP, VRID 51).
TEST_VIP = "198.18.0.90"
TEST_UNIT = "kha-test-vrrp"
TEST_DIR = "/run/kha-test-vrrp"
VRRP = """\
vrrp_instance kha_lab_test {{
    state BACKUP
    interface ens160
    virtual_router_id 201
    priority {priority}
    version 3
    advert_int 0.5
    virtual_ipaddress {{
        {vip}/24
    }}
}}
"""


def wait(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def vip_holders(lab) -> list[str]:
    held = []
    for node in CONTROL_PLANES:
        if lab.machine_state(node)["power"] != "on":
            continue
        addrs = json.loads(lab.exec(node, "ip", "-j", "-4", "addr", "show", "ens160").stdout)
        if any(a["local"] == TEST_VIP for a in addrs[0]["addr_info"]):
            held.append(node)
    return held


def journaled(event: faults.FaultEvent) -> dict:
    last = faults.journal()[-1]
    assert (last["node"], last["kind"], last["at"]) == (event.node, event.kind, event.at)
    assert event.started <= event.at <= event.started + event.took_s + 0.001
    return last


@pytest.fixture
def keepalived_on_control_planes(lab_healthy):
    """A second keepalived on each control plane, as a transient unit with its own config,
    pid files, VRID and VIP (TEST_VIP): the cluster's keepalived, the formula's, holding
    config.VIP, keeps running untouched. (This fixture once wrote its config over the
    formula's and purged keepalived after: every later test on the shared cluster found no
    VIP holder until a highstate put keepalived back, 7 minutes in one CI run.) keepalived
    is installed from the lab mirror only where it is missing (a lab with no cluster yet),
    and purged afterwards only there."""
    lab = lab_healthy
    installed_here: list[str] = []

    def start(node: str) -> None:
        if lab.exec(node, "sh", "-c", "command -v keepalived", check=False).returncode != 0:
            lab.sh(node, f"{APT} update && {APT} install keepalived", timeout=600)
            installed_here.append(node)
        lab.exec(node, "mkdir", "-p", TEST_DIR)
        lab.exec(node, "tee", f"{TEST_DIR}/keepalived.conf",
                 input=VRRP.format(priority=100 + int(node[-1]), vip=TEST_VIP))  # fmt: skip
        lab.exec(node, "systemd-run", f"--unit={TEST_UNIT}", "--collect", "keepalived",
                 "--dont-fork", "--log-console", "--vrrp", "-f", f"{TEST_DIR}/keepalived.conf",
                 "-p", f"{TEST_DIR}/keepalived.pid", "-r", f"{TEST_DIR}/vrrp.pid")  # fmt: skip

    with ThreadPoolExecutor(len(CONTROL_PLANES)) as pool:
        list(pool.map(start, CONTROL_PLANES))
    yield lab
    lab.restore(*CONTROL_PLANES)  # a powered-off node is back before it is cleaned

    def stop(node: str) -> None:
        lab.exec(node, "systemctl", "stop", TEST_UNIT, check=False)
        lab.exec(node, "rm", "-rf", TEST_DIR)
        if node in installed_here:
            lab.sh(node, f"{APT} purge keepalived && {APT} autoremove --purge", timeout=300)

    with ThreadPoolExecutor(len(CONTROL_PLANES)) as pool:
        list(pool.map(stop, CONTROL_PLANES))


def test_vrrp_elects_one_vip_holder_and_power_off_moves_it(keepalived_on_control_planes):
    lab = keepalived_on_control_planes
    holders = wait(lambda: vip_holders(lab), 30, "a VIP holder")
    time.sleep(2)  # several advert intervals: the election has settled
    holders = vip_holders(lab)
    assert len(holders) == 1, holders
    old = holders[0]

    event = lab.fault(old, "power-off")
    last = journaled(event)
    # The cut is one `ip link` call: the power went within [at, until], a few ms wide.
    assert event.at <= event.until <= event.started + event.took_s, event
    assert event.until - event.at < 0.5 and last["until"] == event.until, event
    assert lab.machine_state(old)["power"] == "off"
    polls: list[float] = []  # when each look at the holders ended

    def holders_now() -> list[str]:
        found = vip_holders(lab)
        polls.append(time.time())
        return found

    new = wait(holders_now, 30, "another node to take the VIP", interval=0.05)
    assert len(new) == 1 and new[0] != old
    # RFC 5798 6.1: a backup takes over after Master_Down_Interval = 3 x Advertisement_Interval
    # + Skew_Time, Skew_Time = (256 - Priority) x Advertisement_Interval / 256; power-off sends
    # no priority-0 advert, so the full interval runs. advert_int 0.5 s, priority 100 + n.
    master_down = 3 * 0.5 + (256 - (100 + int(new[0][-1]))) * 0.5 / 256
    takeover = polls[-1] - event.at  # at the latest: the look that saw the new holder ended
    look = max(b - a for a, b in zip(polls, polls[1:], strict=False)) if len(polls) > 1 else 0
    print(f"[measured] VIP takeover <= {takeover:.2f}s (master down {master_down:.2f}s, "
          f"one look {look:.2f}s)")  # fmt: skip
    # The timer runs from the last advert heard, up to 0.5 s before the power-off, so the
    # takeover comes 1.3-1.8 s after it (measured here: 1.65 s, a look 0.07 s); 1 s margin
    # for the look and a loaded 2-core host.
    assert takeover < master_down + 1.0, f"VIP takeover took {takeover:.2f}s"
    ping = lab.exec("client", "ping", "-c1", "-W2", TEST_VIP, check=False)
    assert ping.returncode == 0, ping.stdout

    event = lab.fault(old, "power-on")
    journaled(event)
    assert event.detail["system_state"] == "running"
    assert lab.system_state(old) == "running"
    lab.wait_minions([old], timeout=90)
    assert lab.salt(old, "test.ping") == {old: True}
    time.sleep(2)
    assert len(vip_holders(lab)) == 1


def test_cable_cut_isolates_a_machine_that_keeps_running(lab_healthy):
    lab = lab_healthy

    def cli_fault(kind: str) -> dict:
        out = subprocess.run(
            [sys.executable, "-m", "lab", "fault", "cp-2", kind],
            cwd=config.REPO,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return json.loads(out.stdout)  # the CLI prints the fault as one JSON line

    assert lab.exec("cp-1", "ping", "-c1", "-W2", lab.ip("cp-2")).returncode == 0
    cut = cli_fault("cable-cut")
    assert cut["kind"] == "cable-cut" and cut["at"] >= cut["started"]
    assert faults.journal()[-1]["at"] == cut["at"]
    assert lab.exec("cp-1", "ping", "-c1", "-W2", lab.ip("cp-2"), check=False).returncode != 0
    assert lab.exec("cp-2", "ping", "-c1", "-W2", config.HOST_IP, check=False).returncode != 0
    link = lab.exec("cp-2", "ip", "-br", "link", "show", "ens160").stdout
    assert "NO-CARRIER" in link
    assert lab.system_state("cp-2") == "running"  # still alive behind the pulled cable
    pinged = lab.salt("cp-*", "test.ping", "--timeout=3")
    assert pinged.get("cp-2") is not True and pinged["cp-1"] is True

    restored = cli_fault("cable-restore")
    assert restored["at"] > cut["at"]

    def reachable() -> bool:
        return lab.exec("cp-1", "ping", "-c1", "-W1", lab.ip("cp-2"), check=False).returncode == 0

    wait(reachable, 30, "cp-2 reachable again")
    lab.wait_minions(["cp-2"], timeout=60)


def test_freeze_stops_every_process_and_thaw_resumes_them(lab_healthy):
    lab = lab_healthy
    port = 9077
    lab.exec(
        "cp-3",
        "systemd-run",
        "--unit=kha-lab-test-http",
        "python3",
        "-m",
        "http.server",
        "--bind",
        lab.ip("cp-3"),
        str(port),
    )
    try:
        wait(lambda: _http_ok(lab.ip("cp-3"), port), 20, "the test HTTP server")
        event = lab.fault("cp-3", "freeze")
        journaled(event)
        # The kernel still completes the TCP handshake into the listen backlog, but no
        # process runs to answer: the request hangs.
        conn = socket.create_connection((lab.ip("cp-3"), port), timeout=5)
        conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
        conn.settimeout(3)
        with pytest.raises(TimeoutError):
            conn.recv(64)
        assert _kernel_says_frozen("kha-cp-3")

        event = lab.fault("cp-3", "thaw")
        journaled(event)
        assert not _kernel_says_frozen("kha-cp-3")
        conn.settimeout(15)
        assert conn.recv(64).startswith(b"HTTP/1.0 200")  # the request left hanging is served
        conn.close()
        assert lab.system_state("cp-3") == "running"
        lab.wait_minions(["cp-3"], timeout=60)
    finally:
        if lab.machine_state("cp-3")["frozen"]:
            lab.fault("cp-3", "thaw")
        lab.exec("cp-3", "systemctl", "stop", "kha-lab-test-http", check=False)


def _kernel_says_frozen(group: str) -> bool:
    """The kernel's own file for the layout: the v1 freezer's state, or on a systemd host
    `frozen 1` in the scope's cgroup v2 cgroup.events (read here, not through lab.cgroups)."""
    if cgroups.layout().name == hostlayout.V1:
        return Path(f"/sys/fs/cgroup/freezer/{group}/freezer.state").read_text().strip() == "FROZEN"
    events = Path(f"/sys/fs/cgroup/kha.slice/{group}.scope/cgroup.events").read_text()
    return "frozen 1" in events.splitlines()


def _http_ok(ip: str, port: int) -> bool:
    try:
        with socket.create_connection((ip, port), timeout=2) as conn:
            conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
            return conn.recv(16).startswith(b"HTTP/1.0 200")
    except OSError:
        return False


def test_faults_refuse_impossible_transitions(lab_healthy):
    lab = lab_healthy
    with pytest.raises(faults.LabError, match="powered on"):
        lab.fault("cp-1", "power-on")
    with pytest.raises(faults.LabError, match="not frozen"):
        lab.fault("cp-1", "thaw")
    with pytest.raises(faults.LabError, match="unknown fault"):
        lab.fault("cp-1", "meteor-strike")
    with pytest.raises(faults.LabError, match="not a lab machine"):
        lab.fault("w-9", "power-off")


def test_power_cycle_resets_the_kernel_side_but_keeps_the_disk(lab_healthy):
    lab = lab_healthy
    node = "client"
    lab.exec(node, "sysctl", "-w", "net.ipv4.ip_forward=1")
    lab.exec(node, "ip", "addr", "add", "198.18.0.199/24", "dev", "ens160")
    lab.sh(node, "echo kept > /root/kha-disk-marker")
    lab.fault(node, "power-off")
    assert lab.exec("cp-1", "ping", "-c1", "-W1", "198.18.0.199", check=False).returncode != 0
    lab.fault(node, "power-on")
    assert lab.exec(node, "sysctl", "-n", "net.ipv4.ip_forward").stdout.strip() == "0"
    addrs = json.loads(lab.exec(node, "ip", "-j", "-4", "addr", "show", "ens160").stdout)
    assert [a["local"] for a in addrs[0]["addr_info"]] == [lab.ip(node)]
    assert lab.exec(node, "cat", "/root/kha-disk-marker").stdout == "kept\n"
    lab.exec(node, "rm", "/root/kha-disk-marker")
