"""
The formula's own apiserver check (haproxy.cfg.jinja's backend, rendered from the model's
defaults) in a real HAProxy, against TLS servers answering /readyz like kube-apiserver:

- a graceful shutdown (/readyz 500 with "[-]shutdown failed", the apiserver still serving
  for --shutdown-delay-duration) drains the server (NOLB): the request it is answering
  finishes, new ones go elsewhere. Measured on the lab before: `on-marked-down
  shutdown-sessions` cut such a request when the server went DOWN (A, 1 of 190);
- a real failure (/readyz 500 for etcd) still marks it DOWN and its sessions are cut (by the
  formula's Lua task, cut_sessions_after_down after DOWN).
"""

from __future__ import annotations

import ssl
import threading
import time
from pathlib import Path

import pytest
from khm_haproxy import Servers, get, listen_and_close, start_lb
from khm_support import free_port, stop_pid

from tests.unit.formula.test_haproxy_check_kinds import _backend, _model, _render

pytestmark = pytest.mark.root

NODES = {"cp-1": "127.0.0.41", "cp-2": "127.0.0.42"}


@pytest.fixture(params=["tcp-check", "http-check"])
def lb(request, tmp_path):
    port, etcd_port = free_port(NODES["cp-1"]), free_port(NODES["cp-1"])
    model = _model(
        apiserver__port=port, check__etcd_port=etcd_port, apiserver__etcd_servers="local"
    )
    if request.param == "http-check":
        model["apiserver"]["etcd_servers"] = "all"
    model["control_plane"] = [{"name": n, "ip": ip} for n, ip in NODES.items()]
    assert request.param + " expect !string" in _backend(_render(tmp_path, model))
    stop = threading.Event()
    request.addfinalizer(stop.set)
    servers = Servers(tmp_path, NODES, port, request.addfinalizer)
    for ip in NODES.values():
        request.addfinalizer(listen_and_close(ip, etcd_port, stop).close)
    procs: list = []
    request.addfinalizer(lambda: [stop_pid(p) for p in procs])
    salt, front = start_lb(tmp_path, model, NODES, procs)
    return salt, front, servers.flags


def _slow_on_cp2(salt, front: int) -> tuple[threading.Thread, dict]:
    """A 1.5 s request in flight on cp-2 (cp-1 held in MAINT while it connects)."""
    out: dict = {}

    def run():
        try:
            out["answer"] = get(front, "/slow")
        except (OSError, ssl.SSLError, StopIteration, IndexError) as err:
            out["error"] = repr(err)

    salt.haproxy_runtime.disable_server("cp-1")
    try:
        thread = threading.Thread(target=run)
        thread.start()
        time.sleep(0.3)  # connected and sent
    finally:
        salt.haproxy_runtime.enable_server("cp-1")
    return thread, out


def test_a_graceful_shutdown_drains_and_a_failure_cuts(lb):
    salt, front, flags = lb
    shutdown = Path(str(flags["cp-2"]) + ".shutdown")
    thread, out = _slow_on_cp2(salt, front)
    shutdown.touch()
    try:
        drained = salt.haproxy_runtime.wait_for_status("cp-2", "NOLB", timeout=5)
        assert drained["check_status"] == "L7OKC", drained
        thread.join(10)
        assert out == {"answer": (200, "cp-2")}, out  # answered, not cut
        assert {get(front, "/readyz")[1] for _ in range(6)} == {"cp-1"}
        assert salt.haproxy_runtime.server("cp-2")["status"] == "NOLB"
    finally:
        shutdown.unlink()
    salt.haproxy_runtime.wait_for_status("cp-2", "UP", timeout=10)

    thread, out = _slow_on_cp2(salt, front)
    flags["cp-2"].touch()
    try:
        down = salt.haproxy_runtime.wait_for_status("cp-2", "DOWN", timeout=5)
        assert down["check_status"] in ("L7RSP", "L7STS"), down  # the answer, not a timeout
        thread.join(10)
        assert "error" in out or out["answer"][0] != 200, out  # cut (kubeha-cut-down-sessions.lua)
    finally:
        flags["cp-2"].unlink()
