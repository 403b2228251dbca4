"""kube-apiserver stand-in: the HTTPS server, its request handler and the process's life.

Started by the kubelet from the static pod manifest kubeadm writes, with that manifest's
flags. Serves on --bind-address:--secure-port (0.0.0.0:6443) and keeps every object in the
etcd named by --etcd-servers (kubeadm: the local member only, https://127.0.0.1:2379).

The handler runs upstream's chain in order (server/config.go DefaultBuildHandlerChain):
request deadline, authentication, authorization, then the REST API (api.py), a watch
(watch.py) or a non-resource path (nonresource.py); metrics and audit record the finished
exchange. A non-long-running request gets a deadline of --request-timeout (1m0s) or its
`?timeout=`, whichever is shorter (endpoints/filters/request_deadline.go); when it passes
while etcd has not answered, the client gets what the timeout filter writes
(server/filters/timeout.go): 504 with the Status "Timeout: request did not complete
within the allotted timeout", and apiserver_request_terminations_total counts it.
The process's shutdown is lifecycle.py; state lives in app.py.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, unquote, urlsplit

from .. import flags as flagutil
from .. import klog
from ..etcdgrpc import request_deadline
from ..versions import Version
from . import admission, audit, auth, lifecycle, nonresource, sar, watch
from .api import parse_path
from .app import Apiserver
from .audit import AuditLog
from .exchange import Exchange
from .store import RequestTimeout, StatusError

TIMEOUT_STATUS = {
    "metadata": {},
    "status": "Failure",
    "message": "Timeout: request did not complete within the allotted timeout",
    "reason": "Timeout",
    "details": {},
    "code": 504,
}


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = ""
    sys_version = ""
    app: Apiserver
    life: lifecycle.Lifecycle

    def setup(self) -> None:
        super().setup()
        self.busy = False
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connection.settimeout(120)
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()
        self.life.connections.add(self)

    def finish(self) -> None:
        self.life.connections.discard(self)
        super().finish()

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - BaseHTTPRequestHandler API
        return

    def handle_one_request(self) -> None:
        self.busy = False
        try:
            super().handle_one_request()
        except (TimeoutError, ssl.SSLError, ConnectionError, OSError):
            self.close_connection = True
        if self.life.closing_connections():
            # net/http Server.Shutdown: no keep-alive once the listener is closed
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

    def send(self, code: int, body: bytes, ctype: str = "application/json", headers=()) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-cache, private")
        self.send_header("X-Content-Type-Options", "nosniff")
        for name, value in headers:
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def read_request(self, method: str) -> Exchange:
        received = AuditLog.now()
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        return Exchange(
            method=method,
            uri=self.path,
            # decoded, as Go's url.URL.Path that requestinfo.go splits: client-go sends
            # "system:..." as is, a percent-encoding client (kubesim's kubectl) %3A
            path=unquote(split.path),
            query=dict(parse_qsl(split.query, keep_blank_values=True)),
            raw_query=split.query,
            body=self.rfile.read(length) if length else b"",
            source_ip=self.client_address[0],
            user_agent=self.headers.get("User-Agent", ""),
            received=received,
            started=time.monotonic(),
            verb=method.lower(),
        )

    def deadline(self, ex: Exchange) -> float:
        timeout = self.app.request_timeout
        if ex.query.get("timeout"):
            try:
                asked = flagutil.duration(ex.query["timeout"])
            except ValueError as err:
                raise StatusError(
                    400, "BadRequest", "invalid timeout specified in the request URL"
                ) from err
            if 0 < asked < timeout:
                timeout = asked
        return ex.started + timeout

    def dispatch(self, method: str) -> None:
        self.busy = True
        ex = self.read_request(method)
        if ex.path.startswith(("/api/", "/apis/")):
            try:
                ex.route = parse_path(ex.path)
            except StatusError:
                ex.route = None
        watching = (
            method == "GET"
            and ex.route is not None
            and ex.route.res is not None
            and "watch" in ex.route.res.verbs
            and not ex.route.name
            and ex.query.get("watch") in ("true", "1")
        )
        refusal = self.life.refuse(ex, watching)
        if refusal is not None:
            code, body, ctype, headers = refusal
            self.close_connection = True
            self.send(code, body, ctype, headers)
            return
        if watching:
            self.serve_watch(ex)
            return
        mutating = method != "GET"
        timed_out, retry_after = None, 0
        with self.app.in_flight(mutating):
            try:
                with request_deadline(self.deadline(ex)):
                    self.serve(ex)
            except RequestTimeout as err:
                timed_out = err
                ex.code, ex.out = 504, (json.dumps(TIMEOUT_STATUS) + "\n").encode()
                ex.ctype = "text/plain; charset=utf-8"
            except StatusError as err:
                ex.code, ex.out = err.code, json.dumps(err.status()).encode()
                retry_after = int((err.details or {}).get("retryAfterSeconds") or 0)
            except (ValueError, KeyError, TypeError) as err:
                ex.code = 400
                ex.out = json.dumps(
                    StatusError(400, "BadRequest", f"kubesim: bad request: {err}").status()
                ).encode()
        try:
            # responsewriters.ErrorNegotiated: Retry-After only when the Status asks for it
            headers = [("Retry-After", str(retry_after))] if retry_after > 0 else []
            # warning.AddWarning -> `Warning: 299 - "<text>"` (endpoints/handlers/warning)
            headers += [("Warning", f'299 - "{w}"') for w in ex.warnings or []]
            self.send(ex.code, ex.out, ex.ctype, headers)
        finally:
            seconds = time.monotonic() - ex.started
            if timed_out is not None:
                # the handler behind the timeout filter finishes with the storage error:
                # reads as a 500, writes as their own 504 (rest.go finishRequest)
                self.app.metrics.observe_exchange(ex, seconds, 504 if timed_out.write else 500)
                self.app.metrics.terminated(ex, 504)
            else:
                self.app.metrics.observe_exchange(ex, seconds)
            audit.record(self.app.audit, ex)

    def serve_watch(self, ex: Exchange) -> None:
        app = self.app
        try:
            self.authenticate(ex)
            ex.verb = "watch"
            auth.authorize(ex.user, ex.verb, ex.route, ex.path, app.rbac)
            app.metrics.longrunning_delta(ex, 1)
            self.life.watches_delta(1)
            try:
                watch.serve(self, app, ex.route, ex.query)
                ex.code = 200
            finally:
                self.life.watches_delta(-1)
                app.metrics.longrunning_delta(ex, -1)
        except StatusError as err:
            ex.code, ex.out = err.code, json.dumps(err.status()).encode()
            retry = int((err.details or {}).get("retryAfterSeconds") or 0)
            headers = [("Retry-After", str(retry))] if retry > 0 else []
            self.send(ex.code, ex.out, "application/json", headers)
        app.metrics.observe_exchange(ex, time.monotonic() - ex.started)

    def authenticate(self, ex: Exchange) -> None:
        cert = self.connection.getpeercert() if isinstance(self.connection, ssl.SSLSocket) else None
        ex.user = auth.authenticate(
            self.app.token_secret, self.headers.get("Authorization", ""), cert, self.app.oidc
        )

    def serve(self, ex: Exchange) -> None:
        """Authenticate, authorize, route; fill in the answer."""
        app = self.app
        self.authenticate(ex)
        if ex.path.startswith(("/api/", "/apis/")):
            ex.route = parse_path(ex.path)
        route = ex.route
        if route is None or route.res is None:
            auth.authorize(ex.user, ex.verb, None, ex.path, app.rbac)
            ex.code, ex.out, ex.ctype = nonresource.handle(app, ex.path, ex.raw_query)
            return
        if not admission.served(route.res, app.version):
            raise StatusError(404, "NotFound", "the server could not find the requested resource")
        ex.verb = app.api.verb(ex.method, route, ex.query)
        auth.authorize(ex.user, ex.verb, route, ex.path, app.rbac)
        if route.res.plural == "subjectaccessreviews":  # create only, not stored
            if ex.method != "POST" or route.name:
                raise StatusError(
                    405,
                    "MethodNotAllowed",
                    "the server does not allow this method on the requested resource",
                )
            ex.code, doc = sar.create(ex.body, app.rbac)
            ex.out = json.dumps(doc).encode()
            return
        ctype = self.headers.get("Content-Type", "application/json")
        notes = admission.RequestNotes(user={"username": ex.user.name, "groups": ex.user.groups})
        token = admission.CURRENT.set(notes)
        try:
            ex.code, doc = app.api.handle(ex.method, route, ex.query, ex.body, ctype)
        finally:
            admission.CURRENT.reset(token)
            ex.warnings, ex.annotations = notes.warnings, notes.annotations
        ex.out = json.dumps(doc).encode()


def run(flags: dict[str, str], version: Version) -> int:
    for needed in ("etcd-cafile", "etcd-certfile", "etcd-keyfile"):
        if needed not in flags:
            klog.fatal(f"Error: --{needed} is required by kubesim's kube-apiserver", "server.go:1")
    for needed in ("tls-cert-file", "tls-private-key-file"):
        if needed not in flags:  # upstream would generate a self-signed pair in --cert-dir
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
    Handler.life = lifecycle.Lifecycle(app, httpd)
    klog.info(f'"Serving securely on {bind}:{app.port}"', "secure_serving.go:213")
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
    threading.Thread(target=app.bootstrap, daemon=True).start()
    return Handler.life.run()
