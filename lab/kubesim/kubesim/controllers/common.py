"""What KCM and the scheduler share: flags, healthz server, leader-elected main loop."""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import ssl
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .. import flags as flagutil
from .. import klog, pki
from ..kubeclient import Client
from ..leaderelection import LeaderElector


def self_signed_context(host: str) -> ssl.SSLContext:
    """The serving cert a component makes for itself when given none (cert dir or in memory)."""
    ca, ca_key = pki.make_ca(f"{host}-ca@kubesim")
    cert, key = pki.sign_leaf(
        pki.CertSpec(
            "serving",
            "serving",
            "",
            f"{host}@kubesim",
            server=True,
            dns_names=["localhost", host],
            ips=["127.0.0.1"],
        ),
        ca,
        ca_key,
    )
    fd, name = tempfile.mkstemp(prefix="kubesim-serving-", suffix=".pem")
    with os.fdopen(fd, "wb") as fh:
        fh.write(pki.cert_pem(cert) + pki.key_pem(key))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(name)
    os.unlink(name)
    return ctx


def serve_healthz(bind: str, port: int, checks: Callable[[], list[tuple[str, bool]]]) -> None:
    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            return

        def do_GET(self) -> None:  # noqa: N802
            path, _, query = self.path.partition("?")
            endpoint = path.strip("/") or "healthz"
            results = checks()
            failed = [n for n, ok in results if not ok]
            lines = [
                f"[{'-' if not ok else '+'}]{n} {'failed: reason withheld' if not ok else 'ok'}"
                for n, ok in results
            ]
            if endpoint not in ("healthz", "livez", "readyz"):
                code, body = 404, "404 page not found\n"
            elif failed:
                code, body = 500, "\n".join(lines) + f"\n{endpoint} check failed\n"
            elif "verbose" in query:
                code, body = 200, "\n".join(lines) + f"\n{endpoint} check passed\n"
            else:
                code, body = 200, "ok"
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    class S(ThreadingHTTPServer):
        daemon_threads = True
        allow_reuse_address = True

    httpd = S((bind, port), H, bind_and_activate=False)
    httpd.socket = self_signed_context(socket.gethostname()).wrap_socket(
        httpd.socket, server_side=True
    )
    try:
        httpd.server_bind()
        httpd.server_activate()
    except OSError as err:
        klog.fatal(f'"failed to listen on {bind}:{port}" err="{err}"', "serve.go:64")
    klog.info(f'"Serving securely on {bind}:{port}"', "secure_serving.go:213")
    threading.Thread(target=httpd.serve_forever, daemon=True).start()


def run_component(
    name: str,
    argv: list[str],
    default_port: int,
    release_on_cancel: bool,
    work: Callable[[Client, dict, threading.Event], None],
) -> int:
    """Parse flags, serve healthz, elect a leader on Lease kube-system/<name>, do `work`."""
    flags, _ = flagutil.parse(argv, bools={"leader-elect", "use-service-account-credentials"})
    kubeconfig = flags.get("kubeconfig") or flags.get("authentication-kubeconfig")
    if not kubeconfig:
        klog.fatal("--kubeconfig is required", "options.go:1")
    client = Client.from_kubeconfig(kubeconfig, timeout=10)
    bind = flags.get("bind-address", "0.0.0.0")
    port = int(flags.get("secure-port", str(default_port)))
    leader_elect = flagutil.as_bool(flags.get("leader-elect"), True)
    lease = flagutil.duration(flags.get("leader-elect-lease-duration", "15s"))
    renew = flagutil.duration(flags.get("leader-elect-renew-deadline", "10s"))
    retry = flagutil.duration(flags.get("leader-elect-retry-period", "2s"))
    identity = f"{socket.gethostname()}_{uuid.uuid4()}"
    elector = LeaderElector(
        Client.from_kubeconfig(kubeconfig, timeout=max(1.0, renew / 2)),
        flags.get("leader-elect-resource-namespace", "kube-system"),
        flags.get("leader-elect-resource-name", name),
        identity,
        lease,
        renew,
        retry,
        release_on_cancel,
    )

    def checks() -> list[tuple[str, bool]]:
        out = [("ping", True)]
        if leader_elect:
            out.append(("leaderElection", elector.healthy()))
        return out

    serve_healthz(bind, port, checks)
    stop = threading.Event()

    def on_term(signum, _frame) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    if not leader_elect:
        work(client, flags, stop)
        return 0
    lost = elector.run(stop, lambda leading: work(client, flags, leading))
    if lost:
        klog.error('"leaderelection lost"', "server.go:304")
        sys.stderr.flush()
        os._exit(1)
    klog.info('"Requested to terminate, exiting"', "server.go:268")
    return 0


def parse_time(text: str | None) -> float:
    if not text:
        return 0.0
    text = text.replace("Z", "+00:00")
    return dt.datetime.fromisoformat(text).timestamp()


def now_str() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
