"""vip_handover against a real HAProxy and the kernel: a connection made through the VIP to
the old holder's HAProxy keeps working after the VIP moved, and only with the handover.

Namespaces khm-ho-br (the bridge), khm-ho-c (the client), khm-ho-o (the old holder: HAProxy
binds the VIP ``transparent`` in front of an echo server) and khm-ho-n (the new holder),
198.18.0.221-223, VIP 198.18.0.220: our own namespaces, torn down by name. The module runs
its commands through a ``cmd.run_all`` that enters the node's namespace; systemd-run is
recorded, not run (the clear script it would run is run by the test itself).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from khm_support import netns_delete, netns_exec, sh, stop_pid

from tests.conftest import require_binary
from tests.unit.modules.khm_load import REPO, utils

pytestmark = pytest.mark.root

BR, CLIENT, OLD, NEW = "khm-ho-br", "khm-ho-c", "khm-ho-o", "khm-ho-n"
IPS = {CLIENT: "198.18.0.221", OLD: "198.18.0.222", NEW: "198.18.0.223"}
VIP, PORT, ECHO = "198.18.0.220", 8443, 9000

ECHO_SERVER = """
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(16)
def serve(c):
    while (d := c.recv(100)):
        c.sendall(sys.argv[3].encode() + d)
while True:
    threading.Thread(target=serve, args=(s.accept()[0],), daemon=True).start()
"""

# Connects, sends "a", waits for the go file (the VIP moves meanwhile), sends "b".
CLIENT_SCRIPT = """
import os, socket, sys, time
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
c.sendall(b"a"); print(c.recv(100).decode(), flush=True)
open(sys.argv[3] + ".ready", "w").close()
while not os.path.exists(sys.argv[3] + ".go"):
    time.sleep(0.05)
c.sendall(b"b")
try:
    print(c.recv(100).decode() or "closed", flush=True)
except OSError as err:
    print(type(err).__name__, flush=True)
"""


def _haproxy_cfg(tmp: Path) -> Path:
    path = tmp / "haproxy.cfg"
    path.write_text(
        textwrap.dedent(
            f"""\
            global
                pidfile {tmp}/haproxy.pid
            defaults
                mode tcp
                timeout connect 2s
                timeout client 30s
                timeout server 30s
            frontend kube-apiserver
                bind {VIP}:{PORT} transparent
                default_backend echo
            backend echo
                server echo 127.0.0.1:{ECHO}
            """
        )
    )
    return path


@pytest.fixture
def link(tmp_path):
    haproxy = require_binary("haproxy")
    require_binary("iptables")
    for ns in (BR, CLIENT, OLD, NEW):
        netns_delete(ns)
        sh("ip", "netns", "add", ns)
    procs = []
    try:
        sh("ip", "-n", BR, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", BR, "link", "set", "br0", "up")
        for i, (ns, ip) in enumerate(IPS.items()):
            sh("ip", "link", "add", f"khm-ho{i}", "type", "veth", "peer", "name", "eth0",
               "netns", ns)  # fmt: skip
            sh("ip", "link", "set", f"khm-ho{i}", "netns", BR)
            sh("ip", "-n", BR, "link", "set", f"khm-ho{i}", "master", "br0", "up")
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", OLD, "addr", "add", f"{VIP}/24", "dev", "eth0")
        for ns, tag in ((OLD, "old:"), (NEW, "new:")):
            procs.append(subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c",
                                           ECHO_SERVER, "127.0.0.1", str(ECHO), tag]))  # fmt: skip
        cfg = _haproxy_cfg(tmp_path)
        procs.append(subprocess.Popen(["ip", "netns", "exec", OLD, haproxy, "-db", "-f", str(cfg)]))
        # The new holder's HAProxy: bound to the VIP it does not hold yet, as kubeha binds.
        netns_exec(NEW, "sysctl", "-qw", "net.ipv4.ip_nonlocal_bind=1")
        cfg_new = tmp_path / "new.cfg"
        cfg_new.write_text(cfg.read_text().replace(f"{tmp_path}/haproxy.pid", f"{tmp_path}/n.pid"))
        procs.append(subprocess.Popen(["ip", "netns", "exec", NEW, haproxy, "-db", "-f",
                                       str(cfg_new)]))  # fmt: skip
        time.sleep(1.0)
        yield tmp_path
    finally:
        for proc in procs:
            stop_pid(proc)
        for ns in (CLIENT, OLD, NEW, BR):
            netns_delete(ns)


def _module(ns: str, node: str, armed: list):
    """vip_handover with its commands run in ``ns``; systemd's part recorded. One module
    object per node (each has its own ``__salt__``)."""
    spec = importlib.util.spec_from_file_location(
        f"khm_vip_handover_{node}", REPO / "_modules" / "vip_handover.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)

    def run_all(cmd, **_):
        if cmd[0] in ("systemd-run", "systemctl"):
            armed.append((ns, cmd))
            return {"retcode": 0, "stdout": "", "stderr": ""}
        res = netns_exec(ns, *cmd, check=False)
        return {"retcode": res.returncode, "stdout": res.stdout, "stderr": res.stderr}

    mod.__salt__ = {"cmd.run_all": run_all}
    mod.__utils__ = utils("chaos_revert", "kubeha_timed_chain")
    mod.__grains__ = {"id": node}
    mod._has_systemd = lambda: True
    return mod


def _move_vip():
    sh("ip", "-n", OLD, "addr", "del", f"{VIP}/24", "dev", "eth0")
    sh("ip", "-n", NEW, "addr", "add", f"{VIP}/24", "dev", "eth0")
    mac = sh("ip", "-n", NEW, "-br", "link", "show", "eth0").stdout.split()[2]
    sh("ip", "-n", CLIENT, "neigh", "replace", VIP, "lladdr", mac, "dev", "eth0")  # the GARP


def _move_back():
    sh("ip", "-n", NEW, "addr", "del", f"{VIP}/24", "dev", "eth0")
    sh("ip", "-n", OLD, "addr", "add", f"{VIP}/24", "dev", "eth0")
    sh("ip", "-n", CLIENT, "neigh", "del", VIP, "dev", "eth0")


def _conversation(tmp: Path, move=_move_vip) -> list[str]:
    """A connection made to the old holder, the VIP moved (by ``move``), then its next
    request."""
    flag = tmp / "client"
    for suffix in (".ready", ".go"):
        Path(f"{flag}{suffix}").unlink(missing_ok=True)
    argv = ["ip", "netns", "exec", CLIENT, sys.executable, "-c", CLIENT_SCRIPT, VIP, str(PORT),
            str(flag)]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10
        while not Path(f"{flag}.ready").exists():
            assert proc.poll() is None and time.monotonic() < deadline, "client never connected"
            time.sleep(0.05)
        move()
        Path(f"{flag}.go").touch()
        out, _ = proc.communicate(timeout=15)
    finally:
        stop_pid(proc)
    return out.split()


def _new_connection() -> str:
    code = (f"import socket; c = socket.create_connection(('{VIP}', {PORT}), timeout=3); "
            "c.sendall(b'x'); print(c.recv(100).decode())")  # fmt: skip
    return netns_exec(CLIENT, sys.executable, "-c", code).stdout.strip()


def _mangle(ns: str) -> str:
    return netns_exec(ns, "iptables", "-w", "5", "-t", "mangle", "-S").stdout


def _divert_unit(action: str) -> list[list[str]]:
    """The formula's kubeha-vip-divert unit, rendered for this VIP: its Exec lines for
    ``action`` (start: ExecStartPre and ExecStart; stop: ExecStop), '-' (ignore a failure)
    kept as a flag."""
    import salt.config
    import salt.utils.templates

    opts = salt.config.minion_config(None)
    opts["file_client"] = "local"
    template = REPO / "salt/kubeha/files/haproxy/kubeha-vip-divert.service.jinja"
    text = salt.utils.templates.render_jinja_tmpl(
        template.read_text(),
        {"opts": opts, "saltenv": "base", "kubeha": {"vip": {"address": VIP, "lb_port": PORT}}},
    )
    keys = ("ExecStartPre=", "ExecStart=") if action == "start" else ("ExecStop=",)
    return [line.split("=", 1)[1].split() for line in text.splitlines() if line.startswith(keys)]


def _systemd_runs(ns: str, lines: list[list[str]]) -> None:
    for argv in lines:
        optional = argv[0].startswith("-")
        res = netns_exec(ns, argv[0].lstrip("-"), *argv[1:], check=False)
        assert optional or res.returncode == 0, (argv, res.stderr)


def test_a_connection_to_the_old_holder_survives_the_move_only_with_the_handover(link):
    # Without the handover: the new holder resets the old connection (or the old holder
    # cannot answer from an address it lost): the request fails. The test can fail.
    assert _conversation(link) == ["old:a", "ConnectionResetError"]
    assert _new_connection() == "new:x"
    _move_back()
    # Only the new holder's half: the segments reach the old holder, which without its
    # divert has no local address for them.
    armed: list = []
    new = _module(NEW, "cp-2", armed)

    def forward_only():
        new.forward(VIP, PORT, IPS[OLD], seconds=30)
        _move_vip()

    first, second = _conversation(link, forward_only)
    assert first == "old:a" and second in ("ConnectionResetError", "TimeoutError"), second
    new.clear()
    _move_back()

    # Both halves: the old holder's divert unit (the formula's, always on) and the new
    # holder's forwarding, armed before the move as the runner does.
    _systemd_runs(OLD, _divert_unit("start"))
    _systemd_runs(OLD, _divert_unit("start"))  # a restart of the unit is idempotent

    def move():
        assert new.forward(VIP, PORT, IPS[OLD], seconds=30)["role"] == "new holder"
        _move_vip()

    assert _conversation(link, move) == ["old:a", "old:b"]
    # A new connection after the move is the new holder's (a SYN is never passed on).
    assert _new_connection() == "new:x"
    status = new.status()
    assert any("TEE" in r and IPS[OLD] in r for r in status["forward"]), status
    old = _module(OLD, "cp-1", armed)
    assert "lookup 4843" in old.status()["policy_rule"] and old.status()["divert"]
    # Its policy route delivers the VIP only: nothing that reads as a default route.
    table = netns_exec(OLD, "ip", "route", "show", "table", "4843").stdout.split("\n")
    assert [line.split()[:2] for line in table if line] == [["local", VIP]], table

    # The forwarding's timer was armed before any rule, with the clear script; it removes
    # the forwarding only. The unit's stop removes the divert.
    runs = [cmd for _, cmd in armed if cmd[0] == "systemd-run"]
    assert runs and all("--on-active=30.000s" in cmd for cmd in runs)
    netns_exec(NEW, "/bin/sh", "-c", runs[-1][-1])
    assert "KUBEHA-VIP-HANDOVER" not in _mangle(NEW)
    _systemd_runs(OLD, _divert_unit("stop"))
    assert "KUBEHA" not in _mangle(OLD)
    assert "4843" not in netns_exec(OLD, "ip", "rule").stdout
    routes = netns_exec(OLD, "ip", "route", "show", "table", "4843", check=False)
    assert routes.stdout.strip() == "", routes.stdout  # (an empty table is gone: exit 2)


def test_bad_input_is_refused_before_anything_is_written(link):
    armed: list = []
    mod = _module(NEW, "cp-2", armed)
    for args, match in ((("10.0.0", PORT, IPS[OLD]), "not an IPv4"),
                        ((VIP, 70000, IPS[OLD]), "outside 1-65535"),
                        ((VIP, PORT, "cp-1"), "not an IPv4"),
                        ((VIP, PORT, IPS[OLD], 0), "0 < seconds")):  # fmt: skip
        with pytest.raises(Exception, match=match):
            mod.forward(*args)
    assert armed == [] and "KUBEHA" not in _mangle(NEW)
