"""
The formula's own apiserver check (haproxy.cfg.jinja's backend, rendered from the model's
defaults) in a real HAProxy, against TLS servers answering /readyz like kube-apiserver:

- a graceful shutdown (/readyz 500 with "[-]shutdown failed", the apiserver still serving
  for --shutdown-delay-duration) drains the server (NOLB): the request it is answering
  finishes, new ones go elsewhere. Measured on the lab before: `on-marked-down
  shutdown-sessions` cut such a request when the server went DOWN (A, 1 of 190);
- a real failure (/readyz 500 for etcd) still marks it DOWN and cuts its sessions.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from khm_support import free_port, issue, make_ca, start_haproxy, stop_pid, wait_port

from tests.conftest import require_binary
from tests.unit.formula.test_haproxy_check_kinds import _backend, _model, _render

pytestmark = pytest.mark.root

HERE = Path(__file__).resolve().parent
NODES = {"cp-1": "127.0.0.41", "cp-2": "127.0.0.42"}


def _listen_and_close(ip: str, port: int, stop: threading.Event) -> socket.socket:
    """etcd's client port for the tcp-check form's first step: accepts and closes."""
    sock = socket.create_server((ip, port))
    sock.settimeout(0.2)

    def serve():
        while not stop.is_set():
            with contextlib.suppress(OSError):
                conn, _ = sock.accept()
                conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return sock


@pytest.fixture(params=["tcp-check", "http-check"])
def lb(request, tmp_path):
    haproxy = require_binary("haproxy")
    ca = make_ca(tmp_path, "kubernetes")
    port, etcd_port = free_port(NODES["cp-1"]), free_port(NODES["cp-1"])
    model = _model(apiserver__port=port, check__etcd_port=etcd_port)
    if request.param == "http-check":
        model["apiserver"]["etcd_servers"] = "all"
    model["control_plane"] = [{"name": n, "ip": ip} for n, ip in NODES.items()]
    backend = _backend(_render(tmp_path, model))
    assert request.param + " expect !string" in backend, backend
    procs: list[subprocess.Popen] = []
    stop = threading.Event()
    request.addfinalizer(lambda: (stop.set(), [stop_pid(p) for p in procs]))
    flags = {}
    for name, ip in NODES.items():
        crt, key = issue(tmp_path, name, ca, "kube-apiserver", sans=[ip], server=True)
        flags[name] = tmp_path / f"{name}.fail"
        server = [sys.executable, str(HERE / "khm_readyz_server.py"), ip, str(port), str(crt),
                  str(key), str(flags[name]), name]  # fmt: skip
        procs.append(subprocess.Popen(server))
        request.addfinalizer(_listen_and_close(ip, etcd_port, stop).close)
    for ip in NODES.values():
        wait_port(ip, port)
    sock, front = tmp_path / "admin.sock", free_port()
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(
        textwrap.dedent(f"""\
            global
                stats socket {sock} mode 600 level admin
                log stdout format raw local0 notice
            defaults
                mode tcp
                timeout connect 1s
                timeout client 60s
                timeout server 60s
                retries 3
                option redispatch 1
            frontend kube-apiserver
                bind 127.0.0.1:{front}
                default_backend kube-apiserver
            backend kube-apiserver""")
        + backend.split("\n", 1)[1]
        + "\n"
    )
    return start_haproxy(haproxy, cfg, sock, NODES, procs), front, flags


def _get(front: int, path: str) -> tuple[int, str]:
    """(status, server) of GET ``path`` through HAProxy on a fresh TLS connection."""
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", front), timeout=10) as raw,
        ctx.wrap_socket(raw) as tls,
    ):
        tls.sendall(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode()
    server = next(x.split(": ", 1)[1] for x in head.splitlines() if x.startswith("X-Server"))
    return int(head.split()[1]), server


def _slow_on_cp2(salt, front: int) -> tuple[threading.Thread, dict]:
    """A 1.5 s request in flight on cp-2 (cp-1 held in MAINT while it connects)."""
    out: dict = {}

    def run():
        try:
            out["answer"] = _get(front, "/slow")
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
        assert {_get(front, "/readyz")[1] for _ in range(6)} == {"cp-1"}
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
        assert "error" in out or out["answer"][0] != 200, out  # on-marked-down shutdown-sessions
    finally:
        flags["cp-2"].unlink()
