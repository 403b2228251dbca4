"""What KCM and the scheduler share: flags, the secure serving port (healthz, /metrics),
the leader-elected main loop.

The port serves /healthz, /livez, /readyz to anyone (--authorization-always-allow-paths
default) and /metrics to authorized clients only (delegated authorization; here: a client
certificate of the cluster CA whose user may read the path, else 403 as
responsewriters.Forbidden answers). /metrics carries client-go's
leader_election_master_status{name=<lease name>}: 1 while this instance leads, 0 otherwise
(component-base/metrics/prometheus/clientgo/leaderelection/metrics.go, set by
leaderelection.go on acquire, loss and release).
"""

from __future__ import annotations

import datetime as dt
import json
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
from ..apiserver.auth import ANONYMOUS, allowed, forbidden_message, from_cert
from ..kubeclient import Client
from ..leaderelection import LeaderElector
from ..prom import Gauge, render


def self_signed_context(host: str, client_ca: str | None = None) -> ssl.SSLContext:
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
    if client_ca and os.path.exists(client_ca):
        ctx.load_verify_locations(client_ca)
        ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


def serve_healthz(  # noqa: PLR0915 - one handler class, as upstream's mux
    bind: str,
    port: int,
    checks: Callable[[], list[tuple[str, bool]]],
    metrics: Callable[[], str] = lambda: "",
    client_ca: str | None = None,
) -> None:
    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            return

        def reply(self, code: int, body: str, ctype: str = "text/plain; charset=utf-8") -> None:
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802
            path, _, query = self.path.partition("?")
            endpoint = path.strip("/") or "healthz"
            if endpoint == "metrics":
                cert = (
                    self.connection.getpeercert()
                    if hasattr(self.connection, "getpeercert")
                    else None
                )
                user = from_cert(cert) or ANONYMOUS
                if not allowed(user, "get", "", "", "", path):
                    status = {
                        "kind": "Status",
                        "apiVersion": "v1",
                        "metadata": {},
                        "status": "Failure",
                        "message": forbidden_message(user, "get", "", "", "", "", path),
                        "reason": "Forbidden",
                        "details": {},
                        "code": 403,
                    }
                    self.reply(403, json.dumps(status), "application/json")
                    return
                self.reply(200, metrics(), "text/plain; version=0.0.4; charset=utf-8")
                return
            results = checks()
            failed = [n for n, ok in results if not ok]
            lines = [
                f"[{'-' if not ok else '+'}]{n} {'failed: reason withheld' if not ok else 'ok'}"
                for n, ok in results
            ]
            if endpoint not in ("healthz", "livez", "readyz"):
                self.reply(404, "404 page not found\n")
            elif failed:
                self.reply(500, "\n".join(lines) + f"\n{endpoint} check failed\n")
            elif "verbose" in query:
                self.reply(200, "\n".join(lines) + f"\n{endpoint} check passed\n")
            else:
                self.reply(200, "ok")

    class S(ThreadingHTTPServer):
        daemon_threads = True
        allow_reuse_address = True

    httpd = S((bind, port), H, bind_and_activate=False)
    httpd.socket = self_signed_context(socket.gethostname(), client_ca).wrap_socket(
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
    flags: dict[str, str],
    default_port: int,
    release_on_cancel: bool,
    work: Callable[[Client, dict, threading.Event], None],
) -> int:
    """Serve healthz and /metrics, elect a leader on Lease kube-system/<name>, do `work`."""
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
        Client.from_kubeconfig(kubeconfig, timeout=renew),
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

    master = Gauge(
        "leader_election_master_status",
        "Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, "
        "1 indicates master. 'name' is the string used to identify the lease. Please make sure "
        "to group by name.",
        ("name",),
        "ALPHA",
    )

    def metrics() -> str:
        if leader_elect:
            master.set(elector.name, value=1 if elector.leading_since is not None else 0)
        return render([master])

    serve_healthz(bind, port, checks, metrics, flags.get("client-ca-file"))
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
