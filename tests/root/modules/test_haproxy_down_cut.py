"""
A server that stops answering SYNs (powered off, cut off) while clients keep coming, in a
real HAProxy with the formula's backend: connects pending to it when its check marks it DOWN.

- kubeha's cut (kubeha-cut-down-sessions.lua, cut_sessions_after_down after DOWN; the
  model's timeout connect and delay, 150 and 200 ms): each
  pending connect times out (timeout connect) and is retried on the other server: every
  request is answered.
- HAProxy's own `on-marked-down shutdown-sessions` (cut_sessions_after_down: 0) kills them
  mid-connect (srv_shutdown_streams, src/server.c): the client sees a reset. Measured on the
  lab first (C's "TLS cuts", docs/chaos.md); this shows the test tells the two apart.
"""

from __future__ import annotations

import ssl
import threading
import time

import pytest
from khm_haproxy import Servers, get, listen_and_close, start_lb
from khm_support import free_port, private_netns, sh, stop_pid

from tests.unit.formula.test_haproxy_check_kinds import _model

pytestmark = pytest.mark.root

NODES = {"cp-1": "127.0.0.51", "cp-2": "127.0.0.52"}
INTERVAL, DURATION = 0.04, 2.0  # a request every 40 ms; cp-2 goes dark 0.3 s in


def _go_dark(ip: str, port: int) -> None:
    """From now on SYNs to ip:port are dropped, as a dead or cut-off host's; connections
    already established keep working (no in-flight request is cut by the test itself)."""
    sh("iptables", "-w", "5", "-I", "INPUT", "-d", ip, "-p", "tcp", "--dport", str(port),
       "--syn", "-j", "DROP")  # fmt: skip


def _stream(front: int) -> list:
    """Requests every INTERVAL for DURATION, each on its own thread and TLS connection:
    (sent at, server or error)."""
    results: list = []
    threads = []

    def one(at: float):
        try:
            status, server = get(front, "/readyz", timeout=5)
            results.append((at, server if status == 200 else f"HTTP {status}"))
        except (OSError, ssl.SSLError, StopIteration, IndexError) as err:
            results.append((at, f"error {err!r}"))

    start = time.monotonic()
    while (at := time.monotonic() - start) < DURATION:
        thread = threading.Thread(target=one, args=(at,))
        thread.start()
        threads.append(thread)
        time.sleep(INTERVAL)
    for thread in threads:
        thread.join(10)
    return sorted(results)


@pytest.mark.parametrize("cut", ["lua", "haproxy"])
def test_connects_pending_to_a_server_going_down_are_retried_not_cut(request, tmp_path, cut):
    with private_netns():  # the iptables rule below stays in it
        down, results, log = _pending_connects(request, tmp_path, cut)
    assert down["check_status"] == "L4TOUT", down  # its connects time out
    failed = [(round(at, 2), what) for at, what in results if what not in NODES]
    served = {what for _, what in results} & set(NODES)
    assert len(results) >= DURATION / INTERVAL / 2 and served == set(NODES), results
    if cut == "lua":
        assert failed == [], failed
    else:
        # HAProxy's own cut: at least one connect pending to cp-2 when it went DOWN is
        # killed ("D" in the log's termination state) instead of retried.
        assert failed, results
        assert " D-" in log or " DC" in log, log[-2000:]


def _pending_connects(request, tmp_path, cut) -> tuple[dict, list, str]:
    """cp-2 goes dark while requests stream through HAProxy: cp-2's state once DOWN, the
    requests' outcomes and HAProxy's log."""
    port, etcd_port = free_port(NODES["cp-1"]), free_port(NODES["cp-1"])
    model = _model(
        apiserver__port=port, check__etcd_port=etcd_port, apiserver__etcd_servers="local"
    )
    model["control_plane"] = [{"name": n, "ip": ip} for n, ip in NODES.items()]
    if cut == "haproxy":  # cut_sessions_after_down: 0s
        model["derived"]["haproxy_cut_after_ms"] = 0
    stop = threading.Event()
    request.addfinalizer(stop.set)
    Servers(tmp_path, NODES, port, request.addfinalizer)
    for ip in NODES.values():
        request.addfinalizer(listen_and_close(ip, etcd_port, stop).close)
    procs: list = []
    request.addfinalizer(lambda: [stop_pid(p) for p in procs])
    # roundrobin: every other request goes to cp-2 until it is DOWN, so some connect is
    # pending to it at that moment (leastconn's ties would make that a matter of luck).
    salt, front = start_lb(tmp_path, model, NODES, procs, balance="roundrobin")

    def go_dark():
        time.sleep(0.3)
        _go_dark(NODES["cp-2"], port)

    dark = threading.Thread(target=go_dark)
    dark.start()
    results = _stream(front)
    dark.join()
    down = salt.haproxy_runtime.wait_for_status("cp-2", "DOWN", timeout=5)
    return down, results, (tmp_path / "haproxy.log").read_text()
