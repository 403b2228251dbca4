"""The formula's HAProxy backend (rendered from the model's defaults) in a real HAProxy,
in front of TLS servers answering /readyz like kube-apiserver (khm_readyz_server.py), with
the Lua task that cuts a DOWN server's sessions loaded as haproxy.cfg.jinja loads it."""

from __future__ import annotations

import contextlib
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

from khm_support import free_port, issue, make_ca, start_haproxy, stop_pid, wait_port

from tests.conftest import require_binary
from tests.unit.formula.test_haproxy_check_kinds import _backend, _render, render_cut

HERE = Path(__file__).resolve().parent


def listen_and_close(ip: str, port: int, stop: threading.Event) -> socket.socket:
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


class Servers:
    """One khm_readyz_server per node, stopped by the finalizer; ``flags`` make /readyz fail."""

    def __init__(self, tmp_path: Path, nodes: dict, port: int, finalizer):
        ca = make_ca(tmp_path, "kubernetes")
        self.flags = {n: tmp_path / f"{n}.fail" for n in nodes}
        procs = []
        finalizer(lambda: [stop_pid(p) for p in procs])
        for name, ip in nodes.items():
            crt, key = issue(tmp_path, name, ca, "kube-apiserver", sans=[ip], server=True)
            procs.append(subprocess.Popen([
                sys.executable, str(HERE / "khm_readyz_server.py"), ip, str(port), str(crt),
                str(key), str(self.flags[name]), name]))  # fmt: skip
        for ip in nodes.values():
            wait_port(ip, port)


def prelude(sock: Path, model: dict, lua: str = "") -> str:
    """haproxy.cfg's global and defaults sections for a test HAProxy: the runtime socket,
    logs to stdout, and the model's connect timeout, retries and redispatch."""
    h = model["haproxy"]
    return (
        textwrap.dedent(f"""\
            global
                stats socket {sock} mode 600 level admin
                log stdout format raw local0 info
            """)
        + lua
        + textwrap.dedent(f"""\
            defaults
                mode tcp
                log global
                option tcplog
                timeout connect {h["timeouts"]["connect"]}
                timeout client 60s
                timeout server 60s
                retries {h["retries"]}
                option redispatch {h["redispatch"]}
            """)
    )


def start_lb(tmp_path: Path, model: dict, nodes: dict, procs: list, *, balance=None):
    """HAProxy with the model's backend (``balance`` overrides its algorithm), the model's
    connect timeout, retries and redispatch, and the Lua task when the model has it: the
    haproxy_runtime modules on its socket and the frontend's port."""
    haproxy_cfg = _render(tmp_path, model)
    backend = _backend(haproxy_cfg)
    if balance:
        backend = backend.replace(f"balance {model['haproxy']['balance']}", f"balance {balance}")
    lua = (f"    lua-load {render_cut(tmp_path, model)}\n"
           if "lua-load" in haproxy_cfg else "")  # fmt: skip
    sock, front = tmp_path / "admin.sock", free_port()
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(
        prelude(sock, model, lua)
        + textwrap.dedent(f"""\
            frontend kube-apiserver
                bind 127.0.0.1:{front}
                default_backend kube-apiserver
            backend kube-apiserver""")
        + backend.split("\n", 1)[1]
        + "\n"
    )
    return start_haproxy(require_binary("haproxy"), cfg, sock, nodes, procs), front


def get(front: int, path: str, timeout: float = 10) -> tuple[int, str]:
    """(status, server) of GET ``path`` through HAProxy on a fresh TLS connection."""
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", front), timeout=timeout) as raw,
        ctx.wrap_socket(raw) as tls,
    ):
        tls.sendall(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode()
    server = next(x.split(": ", 1)[1] for x in head.splitlines() if x.startswith("X-Server"))
    return int(head.split()[1]), server
