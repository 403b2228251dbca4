"""kube-apiserver stand-in: the HTTPS server, its request handler and the process's life.

Started by the kubelet from the static pod manifest kubeadm writes, with that manifest's
flags. Serves on --bind-address:--secure-port (0.0.0.0:6443) and keeps every object in the
etcd named by --etcd-servers (kubeadm: the local member only, https://127.0.0.1:2379).

The handler runs upstream's chain in order (server/config.go DefaultBuildHandlerChain):
authentication, authorization, then the REST API (api.py), a watch (watch.py) or a
non-resource path (nonresource.py); metrics and audit record the finished exchange. State
lives in app.py; each job in its own module.
"""

from __future__ import annotations

import json
import signal
import socket
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from .. import flags as flagutil
from .. import klog
from ..versions import Version
from . import audit, auth, nonresource, watch
from .api import parse_path
from .app import Apiserver
from .audit import AuditLog
from .exchange import Exchange
from .store import StatusError


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = ""
    sys_version = ""
    app: Apiserver

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connection.settimeout(120)
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - BaseHTTPRequestHandler API
        return

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (TimeoutError, ssl.SSLError, ConnectionError, OSError):
            self.close_connection = True

    def do_GET(self) -> None:  # noqa: N802
        self.dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self.dispatch("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self.dispatch("PUT")

    def do_PATCH(self) -> None:  # noqa: N802
        self.dispatch("PATCH")

    def do_DELETE(self) -> None:  # noqa: N802
        self.dispatch("DELETE")

    def send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-cache, private")
        self.send_header("X-Content-Type-Options", "nosniff")
        if code == 429:
            self.send_header("Retry-After", "1")
        self.end_headers()
        self.wfile.write(body)

    def read_request(self, method: str) -> Exchange:
        received = AuditLog.now()
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        return Exchange(
            method=method,
            uri=self.path,
            path=split.path,
            query=dict(parse_qsl(split.query, keep_blank_values=True)),
            raw_query=split.query,
            body=self.rfile.read(length) if length else b"",
            source_ip=self.client_address[0],
            user_agent=self.headers.get("User-Agent", ""),
            received=received,
            started=time.monotonic(),
            verb=method.lower(),
        )

    def dispatch(self, method: str) -> None:
        ex = self.read_request(method)
        with self.app.in_flight():
            try:
                if not self.serve(ex):
                    return  # a watch: streamed, not counted nor audited here
            except StatusError as err:
                ex.code, ex.out = err.code, json.dumps(err.status()).encode()
            except (ValueError, KeyError, TypeError) as err:
                ex.code = 400
                ex.out = json.dumps(
                    StatusError(400, "BadRequest", f"kubesim: bad request: {err}").status()
                ).encode()
        try:
            self.send(ex.code, ex.out, ex.ctype)
        finally:
            self.app.metrics.observe_exchange(ex, time.monotonic() - ex.started)
            audit.record(self.app.audit, ex)

    def serve(self, ex: Exchange) -> bool:
        """Authenticate, authorize, route; fill in the answer. False when a watch streamed."""
        app = self.app
        cert = self.connection.getpeercert() if isinstance(self.connection, ssl.SSLSocket) else None
        ex.user = auth.authenticate(app.store, self.headers.get("Authorization", ""), cert)
        if ex.path.startswith(("/api/", "/apis/")):
            ex.route = parse_path(ex.path)
        route = ex.route
        if route is None or route.res is None:
            auth.authorize(ex.user, ex.verb, None, ex.path)
            ex.code, ex.out, ex.ctype = nonresource.handle(app, ex.path, ex.raw_query)
            return True
        ex.verb = app.api.verb(ex.method, route, ex.query)
        auth.authorize(ex.user, ex.verb, route, ex.path)
        if ex.verb == "watch":
            watch.serve(self, app, route, ex.query)
            return False
        ctype = self.headers.get("Content-Type", "application/json")
        ex.code, doc = app.api.handle(ex.method, route, ex.query, ex.body, ctype)
        ex.out = json.dumps(doc).encode()
        return True


def run(argv: list[str], version: Version) -> int:
    flags, _ = flagutil.parse(argv, bools={"allow-privileged", "enable-bootstrap-token-auth"})
    for needed in (
        "etcd-cafile",
        "etcd-certfile",
        "etcd-keyfile",
        "tls-cert-file",
        "tls-private-key-file",
    ):
        if needed not in flags:
            klog.fatal(f"Error: --{needed} is required by kubesim's kube-apiserver", "server.go:1")
    app = Apiserver(flags, version)
    klog.info(f'"Starting" version="{version}"', "options.go:221")
    klog.info("Golang settings GOGC= GOMAXPROCS= GOTRACEBACK=", "server.go:151")
    Handler.app = app
    bind = flags.get("bind-address", "0.0.0.0")
    httpd = Server((bind, app.port), Handler, bind_and_activate=False)
    httpd.socket = app.tls_context().wrap_socket(
        httpd.socket, server_side=True, do_handshake_on_connect=False
    )
    # The handshake runs in the request thread (first read), never in the accept loop.
    httpd.server_bind()
    httpd.server_activate()
    klog.info(f'"Serving securely on {bind}:{app.port}"', "secure_serving.go:213")
    serving = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True
    )
    serving.start()
    threading.Thread(target=app.bootstrap, daemon=True).start()
    stop = threading.Event()

    def on_term(signum, _frame) -> None:
        if stop.is_set():
            klog.info("Received second signal, exiting immediately", "signal.go:39")
            sys.exit(1)
        stop.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    while not stop.wait(1.0):
        pass
    # Graceful termination (genericapiserver.go): readyz fails at once, the server keeps
    # serving for --shutdown-delay-duration, then stops listening and drains in-flight
    # requests (up to 60 s) before the process exits.
    app.health.shutting_down = True
    klog.info(
        '"[graceful-termination] shutdown event" name="ShutdownInitiated"',
        "genericapiserver.go:696",
    )
    time.sleep(app.shutdown_delay)
    klog.info(
        '"[graceful-termination] shutdown event" name="AfterShutdownDelayDuration"',
        "genericapiserver.go:722",
    )
    httpd.shutdown()
    httpd.socket.close()
    deadline = time.monotonic() + 60
    while app.inflight and time.monotonic() < deadline:
        time.sleep(0.05)
    klog.info('"[graceful-termination] apiserver is exiting"', "genericapiserver.go:779")
    return 0
