"""vip_takeover against the kernel: while it is in force the target stops hearing the old
holder's adverts of its VRID, except the priority-0 one that says the holder is leaving;
other VRIDs and other senders still arrive; ``clear`` and the timer's script undo it.

Namespaces khm-to-o (the old holder, 198.18.0.231, and a second address .233 standing for
another node) and khm-to-n (the target, .232) on a veth pair: our own, torn down by name.
The adverts are raw IP protocol 112 packets (RFC 5798 5.1 header: version/type, VRID,
priority, ...); the target counts what a raw socket, as keepalived's, receives. The module
runs its commands through a ``cmd.run_all`` that enters the target's namespace; systemd-run
is recorded, not run.
"""

from __future__ import annotations

import importlib.util
import os
import select
import subprocess
import sys
import time

import pytest
from khm_support import netns_delete, netns_exec, sh, stop_pid
from salt.exceptions import CommandExecutionError

from tests.conftest import require_binary
from tests.unit.modules.khm_load import REPO, utils

pytestmark = pytest.mark.root

OLD, NEW = "khm-to-o", "khm-to-n"
HOLDER, TARGET, OTHER = "198.18.0.231", "198.18.0.232", "198.18.0.233"

# Prints "<vrid>/<priority>" for every VRRP packet it receives, until killed.
LISTEN = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 112)
print("ready", flush=True)
while True:
    data, (src, _) = s.recvfrom(100)
    head = (data[0] & 0x0F) * 4
    print(f"{src} {data[head + 1]}/{data[head + 2]}", flush=True)
"""

# Sends one advert per argument "<source>:<vrid>/<priority>".
SEND = """
import socket, sys
for spec in sys.argv[2:]:
    src, rest = spec.split(":")
    vrid, prio = (int(x) for x in rest.split("/"))
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 112)
    s.bind((src, 0))
    s.sendto(bytes([0x31, vrid, prio, 1, 0, 20, 0, 0]) + socket.inet_aton(sys.argv[1]),
             (sys.argv[1], 0))
"""


@pytest.fixture
def pair():
    require_binary("iptables")
    for ns in (OLD, NEW):
        netns_delete(ns)
        sh("ip", "netns", "add", ns)
    listener = None
    try:
        sh("ip", "link", "add", "eth0", "netns", OLD, "type", "veth", "peer", "name", "eth0",
           "netns", NEW)  # fmt: skip
        for ns, ips in ((OLD, (HOLDER, OTHER)), (NEW, (TARGET,))):
            for ip in ips:
                sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
        listener = subprocess.Popen(["ip", "netns", "exec", NEW, sys.executable, "-c", LISTEN],
                                    stdout=subprocess.PIPE)  # fmt: skip
        ready = b""
        while not ready.endswith(b"\n"):
            chunk = os.read(listener.stdout.fileno(), 100)
            assert chunk, f"the listener ended before it was ready: {ready!r}"
            ready += chunk
        assert ready == b"ready\n"
        yield listener
    finally:
        if listener:
            stop_pid(listener)
        for ns in (OLD, NEW):
            netns_delete(ns)


def _heard(pair, *specs: str) -> list[str]:
    """Send the adverts, then one marker that always passes; what arrived before it."""
    marker = f"{OTHER}:99/99"
    netns_exec(OLD, sys.executable, "-c", SEND, TARGET, *specs, marker)
    # Read the pipe itself: select() cannot see lines a buffered reader already holds.
    fd, text, deadline = pair.stdout.fileno(), "", time.monotonic() + 5
    while time.monotonic() < deadline:
        if select.select([fd], [], [], 0.2)[0]:
            text += os.read(fd, 4096).decode()
        lines = text.splitlines()
        if f"{OTHER} 99/99" in lines:
            return lines[: lines.index(f"{OTHER} 99/99")]
    got = text.splitlines()
    raise AssertionError(f"the marker advert never arrived (heard {got})")


def _module(armed: list, override: dict):
    spec = importlib.util.spec_from_file_location("khm_vip_takeover", REPO / "_modules" /
                                                  "vip_takeover.py")  # fmt: skip
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)

    def run_all(cmd, **_):
        if cmd[0] in ("systemd-run", "systemctl"):
            armed.append(cmd)
            return {"retcode": 0, "stdout": "", "stderr": ""}
        res = netns_exec(NEW, *cmd, check=False)
        return {"retcode": res.returncode, "stdout": res.stdout, "stderr": res.stderr}

    mod.__salt__ = {"cmd.run_all": run_all, "keepalived_track.read": lambda instance: override}
    mod.__utils__ = {**utils("chaos_revert", "kubeha_timed_chain"),
                     "chaos_revert.has_systemd": lambda: True}  # fmt: skip
    mod.__grains__ = {"id": "cp-2"}
    return mod


def test_the_holders_adverts_are_dropped_but_its_leaving_one(pair):
    armed: list = []
    mod = _module(armed, {"instance": "VI_1", "priority": 253, "release": 0})
    adverts = (f"{HOLDER}:51/150", f"{HOLDER}:51/0", f"{HOLDER}:52/150", f"{OTHER}:51/150")
    assert _heard(pair, *adverts) == [f"{HOLDER} 51/150", f"{HOLDER} 51/0",
                                      f"{HOLDER} 52/150", f"{OTHER} 51/150"]  # fmt: skip

    # A bystander of the job changes nothing.
    assert mod.start(HOLDER, 51, 0, node="cp-3")["role"] == "bystander"
    assert armed == [] and mod.status()["drop"] == []

    ret = mod.start(HOLDER, 51, 253, seconds=4, node="cp-2")
    assert ret["started"] and ret["timer"]["clears_in_s"] == 4.0
    # Its timer was armed before any rule: the clear script, after 4 s.
    runs = [cmd for cmd in armed if cmd[0] == "systemd-run"]
    assert len(runs) == 1 and "--on-active=4.000s" in runs[0]
    assert _heard(pair, *adverts) == [f"{HOLDER} 51/0", f"{HOLDER} 52/150", f"{OTHER} 51/150"]
    assert len(mod.status()["drop"]) == 1

    # Again (the next move): still one rule.
    mod.start(HOLDER, 51, 253, seconds=4, node="cp-2")
    assert len(mod.status()["drop"]) == 1

    # The timer's script removes it all, as clear does.
    netns_exec(NEW, "/bin/sh", "-c", runs[0][-1])
    assert mod.status()["drop"] == [] and "KUBEHA" not in netns_exec(NEW, "iptables", "-S").stdout
    assert _heard(pair, f"{HOLDER}:51/150") == [f"{HOLDER} 51/150"]
    mod.start(HOLDER, 51, 253, node="cp-2")
    mod.clear()
    assert _heard(pair, f"{HOLDER}:51/150") == [f"{HOLDER} 51/150"]


def test_it_refuses_unless_the_plans_priority_is_in_force(pair):
    armed: list = []
    mod = _module(armed, {"instance": "VI_1", "priority": 0, "release": 0})
    with pytest.raises(CommandExecutionError, match="not taking over"):
        mod.start(HOLDER, 51, 253, node="cp-2")
    released = _module(armed, {"instance": "VI_1", "priority": 253, "release": 1})
    with pytest.raises(CommandExecutionError, match="not taking over"):
        released.start(HOLDER, 51, 253)
    for args, match in (((f"{HOLDER}0", 51, 253), "not an IPv4"),
                        ((HOLDER, 256, 253), "outside 1-255"),
                        ((HOLDER, "x", 253), "numbers")):  # fmt: skip
        with pytest.raises(CommandExecutionError, match=match):
            mod.start(*args)
    with pytest.raises(CommandExecutionError, match="seconds"):
        mod.start(HOLDER, 51, 253, seconds=0)
    assert armed == [] and mod.status()["drop"] == []
