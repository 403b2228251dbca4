"""vip_probe's packet handling (_utils/vip_paths.py): ICMP echo requests that the kernel
would accept (checksum), replies matched to our identifier only, VRRP adverts of our VRID
only, and the local-address reading of /proc/net/fib_trie. A loopback ICMP round trip runs
where raw sockets are allowed (root)."""

from __future__ import annotations

import os
import socket
import struct

import pytest

from tests.unit.modules.khm_load import load, utils

probe = load("_modules", "vip_probe")
probe.__utils__ = utils("kubeha_fib", "vip_paths")
paths = load("_utils", "vip_paths")
FIB = """Main:
  +-- 0.0.0.0/0 3 0 5
     +-- 198.18.0.0/24 2 0 2
        |-- 198.18.0.0
           /24 link UNICAST
        +-- 198.18.0.8/29 2 0 2
           |-- 198.18.0.10
              /32 host LOCAL
           |-- 198.18.0.11
              /32 host LOCAL
        |-- 198.18.0.255
           /32 link BROADCAST
"""


def test_fib_trie_lists_local_addresses_only():
    assert probe._holds("198.18.0.10", FIB) is True
    assert probe._holds("198.18.0.255", FIB) is False
    assert probe._holds("198.18.0.12", FIB) is False


def test_another_tables_local_route_is_not_an_address():
    # kubeha-vip-divert's policy route (`local <VIP>/32 dev lo table 4843`) sits in its own
    # table; once a rule exists the kernel prints "Main:" and "Local:" apart, and the
    # node's own addresses under "Local:" (read from a lab control plane).
    fib = (
        "Id 4843:\n  |-- 198.18.0.10\n     /32 host LOCAL\n"
        "Main:\n  |-- 198.18.0.0\n     /24 link UNICAST\n"
        "Local:\n  +-- 0.0.0.0/0 2 0 2\n     +-- 198.18.0.0/24 2 0 2\n"
        "        |-- 198.18.0.12\n           /32 host LOCAL\n"
        "        |-- 198.18.0.255\n           /32 link BROADCAST\n"
    )
    assert probe._holds("198.18.0.10", fib) is False
    assert probe._holds("198.18.0.12", fib) is True
    held = fib.replace(
        "|-- 198.18.0.12\n", "|-- 198.18.0.10\n           /32 host LOCAL\n        |-- 198.18.0.12\n"
    )
    assert probe._holds("198.18.0.10", held) is True


def test_echo_request_has_a_valid_checksum_and_carries_the_send_time():
    packet = paths._echo_request(0x1234, 7, 1_700_000_000_123_456_789)
    assert paths._checksum(packet) == 0  # a correct ICMP checksum sums to zero
    kind, code, _sum, ident, seq = struct.unpack("!BBHHH", packet[:8])
    assert (kind, code, ident, seq) == (8, 0, 0x1234, 7)
    # The reply the peer sends back (type 0, same id, seq, payload) behind an IP header.
    reply = b"\x45" + b"\0" * 19 + bytes([0, 0]) + packet[2:]
    assert paths._parse_reply(reply, 0x1234) == (7, 1_700_000_000_123_456_789)
    assert paths._parse_reply(reply, 0x4321) is None  # another process's ping
    assert paths._parse_reply(b"\x45" + b"\0" * 19 + packet, 0x1234) is None  # a request


def test_vrrp_adverts_of_our_vrid_only_are_heard():
    heard: dict = {}
    handle = paths._vrrp_handler(heard, 51)
    ip = b"\x45" + b"\0" * 19
    handle(ip + bytes([0x31, 51, 254, 1]), 5_000_000_000, "198.18.0.11")  # v3 advert
    handle(ip + bytes([0x31, 52, 200, 1]), 5_000_000_000, "198.18.0.13")  # another VRID
    handle(ip + bytes([0x32, 51, 200, 1]), 5_000_000_000, "198.18.0.12")  # not an advert
    assert heard == {"198.18.0.11": {"at": 5.0, "priority": 254}}


@pytest.mark.skipif(os.geteuid() != 0, reason="raw sockets need root (CAP_NET_RAW)")
def test_a_real_round_trip_over_loopback():
    probe.__context__ = {}
    ctx = probe._ctx()
    icmp = paths.open_socket(ctx, "icmp", socket.IPPROTO_ICMP)
    out = paths.measure(ctx, (icmp, None), {"self": "127.0.0.1"}, 3, 0.3)
    assert out["self"]["sent"] == 3 and out["self"]["answered"] == 3
    assert all(0 <= rtt < 50 for rtt in out["self"]["rtt_ms"]), out


def test_background_probes_keep_salts_loader_context(tmp_path):
    """HAProxy's view is read in a worker thread through __salt__: Salt keeps loader
    globals in context variables, which a bare thread would not see."""
    import salt.config
    import salt.loader

    from tests.conftest import REPO

    opts = salt.config.minion_config(None)
    opts.update(file_client="local", cachedir=str(tmp_path), grains={},
                extension_modules=str(tmp_path / "extmods"),
                module_dirs=[str(REPO / "_modules")], utils_dirs=[str(REPO / "_utils")],
                haproxy_runtime={"socket": str(tmp_path / "no.sock")})  # fmt: skip
    funcs = salt.loader.minion_mods(opts, utils=salt.loader.utils(opts))
    out = funcs["vip_probe.sample"]({}, vip="127.0.0.1", lb_port=1, apiserver_port=1,
                                    http_timeout=1.0, wait=True)  # fmt: skip
    assert "no.sock does not exist" in out["haproxy"]["error"], out["haproxy"]
    assert out["vip"]["ok"] is False and out["apiserver"]["ok"] is False


def test_etcd_leadership_is_read_from_the_metrics_listener(tmp_path):
    """etcd_server_is_leader from an HTTP metrics page (the listener kubeadm configures);
    a page without it, or no listener, is no answer rather than a guess."""
    import http.server
    import threading

    pages = {"/lead": b"etcd_debugging_x 1\netcd_server_is_leader 1\ngo_goroutines 9\n",
             "/follow": b"etcd_server_has_leader 1\netcd_server_is_leader 0\n",
             "/none": b"go_goroutines 9\n"}  # fmt: skip

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(pages[self.path])

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert probe.etcd_leader(base + "/lead") == {"leader": True, "error": ""}
        assert probe.etcd_leader(base + "/follow")["leader"] is False
        assert probe.etcd_leader(base + "/none")["leader"] is None
    finally:
        server.shutdown()
    assert probe.etcd_leader(base + "/lead", timeout=0.5)["leader"] is None  # nothing listens


def test_readyz_goes_through_curl_and_checks_the_chain_and_the_name_kubernetes(
    tmp_path, monkeypatch
):
    """TLS through curl, never OpenSSL in the minion's threads (a fork of the minion while a
    thread holds an OpenSSL lock hangs the forked job: measured on the lab). The serving
    certificate is checked against the cluster CA and the name kubernetes, whatever the
    address: 200 is ok, 500 says so, another CA's certificate fails the handshake."""
    import http.server
    import ssl
    import sys
    import threading

    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parents[2] / "root/modules"))
    from khm_support import issue, make_ca

    ca = make_ca(tmp_path / "a", "kubernetes")
    make_ca(tmp_path / "b", "another cluster")
    crt, key = issue(tmp_path / "a", "apiserver", ca, "kube-apiserver",
                     sans=["kubernetes"], server=True)  # fmt: skip
    status = {"code": 200}

    class Readyz(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(status["code"] if self.path == "/readyz" else 404)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Readyz)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(crt, key)
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    calls = []
    real_run = probe.subprocess.run
    monkeypatch.setattr(probe.subprocess, "run",
                        lambda argv, **kw: calls.append(argv) or real_run(argv, **kw))  # fmt: skip
    try:
        monkeypatch.setattr(probe, "CA", str(tmp_path / "a" / "ca.crt"))
        good = probe.readyz("127.0.0.1", port, timeout=5)
        assert good["ok"] and good["code"] == 200 and good["error"] == "", good
        assert calls[-1][0] == probe.CURL and f"kubernetes:{port}:127.0.0.1" in calls[-1]
        status["code"] = 500
        assert probe.readyz("127.0.0.1", port, timeout=5)["error"] == "http 500"
        monkeypatch.setattr(probe, "CA", str(tmp_path / "b" / "ca.crt"))
        wrong = probe.readyz("127.0.0.1", port, timeout=5)
        assert not wrong["ok"] and wrong["code"] is None and "certificate" in wrong["error"]
    finally:
        server.shutdown()
    assert probe.readyz("127.0.0.1", port, timeout=1)["code"] is None  # nothing listens
