"""kube-apiserver stand-in: HTTPS, authentication, discovery, health, audit, metrics, shutdown.

Started by the kubelet from the static pod manifest kubeadm writes, with that manifest's
flags. Serves on --bind-address:--secure-port (0.0.0.0:6443) and keeps every object in the
etcd named by --etcd-servers (kubeadm: the local member only, https://127.0.0.1:2379).
"""

from __future__ import annotations

import contextlib
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
from .. import klog, labelsel, volumes
from ..etcd import EtcdClient, EtcdError
from ..versions import Version, git_commit
from . import auth, resources
from .api import Api, parse_path
from .audit import AuditLog
from .health import Health
from .metrics import Metrics
from .store import StatusError, Store, key_of

# The verb label of apiserver_request_* (endpoints/metrics: LIST and WATCH split from GET).
METRIC_VERB = {
    "get": "GET",
    "list": "LIST",
    "watch": "WATCH",
    "create": "POST",
    "update": "PUT",
    "patch": "PATCH",
    "delete": "DELETE",
}


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


class Apiserver:
    def __init__(self, flags: dict[str, str], version: Version) -> None:
        self.flags = flags
        self.version = version
        endpoints = flags.get("etcd-servers", "https://127.0.0.1:2379").split(",")
        self.etcd = EtcdClient(
            endpoints,
            flags["etcd-cafile"],
            flags["etcd-certfile"],
            flags["etcd-keyfile"],
            timeout=10.0,
        )
        self.store = Store(self.etcd)
        self.api = Api(self.store)
        self.health = Health(
            self.etcd,
            flagutil.duration(flags.get("etcd-healthcheck-timeout", "2s")),
            flagutil.duration(flags.get("etcd-readycheck-timeout", "2s")),
            lambda m: klog.warning(m, "healthz.go:261"),
        )
        policy = flags.get("audit-policy-file")
        if policy and not volumes.visible(policy):
            klog.fatal(
                f'"command failed" err="loading audit policy file: failed to read file '
                f'path \\"{policy}\\": open {policy}: no such file or directory"',
                "run.go:74",
            )
        log_path = flags.get("audit-log-path")
        if log_path and log_path != "-":
            log_path = volumes.container_path(log_path, "kube-apiserver")
        self.audit = AuditLog(
            policy,
            log_path,
            int(flags.get("audit-log-maxsize", "0") or 0),
            int(flags.get("audit-log-maxbackup", "0") or 0),
        )
        self.metrics = Metrics()
        self.shutdown_delay = flagutil.duration(flags.get("shutdown-delay-duration", "0s"))
        self.inflight = 0
        self.inflight_lock = threading.Lock()
        self.advertise = flags.get("advertise-address", "")
        self.port = int(flags.get("secure-port", "6443"))

    def version_info(self) -> dict:
        return {
            "major": str(self.version.major),
            "minor": str(self.version.minor),
            "gitVersion": str(self.version),
            "gitCommit": git_commit(self.version),
            "gitTreeState": "clean",
            "buildDate": "2024-04-17T17:27:03Z",
            "goVersion": "go1.22.2",
            "compiler": "gc",
            "platform": "linux/amd64",
        }

    def tls_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.flags["tls-cert-file"], self.flags["tls-private-key-file"])
        if self.flags.get("client-ca-file"):
            ctx.load_verify_locations(self.flags["client-ca-file"])
            ctx.verify_mode = ssl.CERT_OPTIONAL
        return ctx

    # -- startup work (post-start hooks) ----------------------------------------------------
    def bootstrap(self) -> None:
        """Create the system namespaces (start-system-namespaces-controller), then ready."""
        while True:
            try:
                for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
                    self.api.ensure_namespace(ns)
                break
            except StatusError as err:
                klog.warning(
                    f"unable to create system namespaces: {err.message}", "controller.go:96"
                )
                time.sleep(1)
        self.health.hooks_done = True
        klog.info("All post-start hooks are done", "genericapiserver.go:533")


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

    def watch(self, route, query: dict) -> None:
        """A watch stream: chunked JSON lines {"type": ADDED|MODIFIED|DELETED, "object": ...}.

        resourceVersion "" or "0" starts with synthetic ADDED events for what exists
        (storage/cacher semantics), then follows etcd's watch from the list revision;
        timeoutSeconds ends the stream (default 30 min, as the apiserver's min-request-timeout
        randomisation would).
        """
        res = route.res
        ns = route.namespace if res.namespaced else None
        timeout = float(query.get("timeoutSeconds") or 1800)
        try:
            labels = labelsel.parse_labels(query.get("labelSelector"))
            fields = labelsel.parse_fields(query.get("fieldSelector"))
        except ValueError as err:
            raise StatusError(400, "BadRequest", str(err)) from err
        prefix = key_of(res, ns)

        def wanted(obj: dict) -> bool:
            return labelsel.match_labels(
                labels, obj.get("metadata", {}).get("labels")
            ) and labelsel.match_fields(fields, obj)

        rv = query.get("resourceVersion") or ""
        initial: list[dict] = []
        if rv in ("", "0"):
            items, revision = self.app.store.list(res, ns)
            initial = [o for o in items if wanted(o)]
        else:
            revision = int(rv)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()

        def emit(kind: str, obj: dict) -> None:
            obj.setdefault("kind", res.kind)
            obj.setdefault("apiVersion", res.group_version)
            data = json.dumps({"type": kind, "object": obj}).encode() + b"\n"
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        try:
            for obj in initial:
                emit("ADDED", obj)
            for kind, kv, prev in self.app.etcd.watch(prefix, revision + 1, timeout):
                if kind == "DELETE":
                    if prev is None:
                        continue
                    obj = json.loads(prev.value)
                    obj.setdefault("metadata", {})["resourceVersion"] = str(kv.mod_revision)
                    if wanted(obj):
                        emit("DELETED", obj)
                    continue
                obj = json.loads(kv.value)
                obj.setdefault("metadata", {})["resourceVersion"] = str(kv.mod_revision)
                if wanted(obj):
                    emit("ADDED" if kv.create_revision == kv.mod_revision else "MODIFIED", obj)
            self.wfile.write(b"0\r\n\r\n")
        except (OSError, ValueError):
            pass
        except EtcdError as err:
            status = StatusError(410, "Expired", str(err)).status()
            with contextlib.suppress(OSError):
                emit("ERROR", status)
        self.close_connection = True

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

    def user(self) -> auth.User | None:
        header = self.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            return auth.from_token(self.app.store, header[7:].strip())  # None -> 401
        cert = self.connection.getpeercert() if isinstance(self.connection, ssl.SSLSocket) else None
        return auth.from_cert(cert) or auth.ANONYMOUS

    def dispatch(self, method: str) -> None:
        app = self.app
        start = time.monotonic()
        received = AuditLog.now()
        split = urlsplit(self.path)
        path, query = split.path, dict(parse_qsl(split.query, keep_blank_values=True))
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        with app.inflight_lock:
            app.inflight += 1
        code, out, ctype = 500, b"", "application/json"
        verb, route, user = method.lower(), None, None
        try:
            user = self.user()
            if user is None:
                raise StatusError(401, "Unauthorized", "Unauthorized")
            route = parse_path(path) if path.startswith(("/api/", "/apis/")) else None
            if route is not None and route.res is not None:
                verb = app.api.verb(method, route, query)
                if not auth.allowed(
                    user, verb, route.res.plural, route.namespace, route.name, path
                ):
                    raise StatusError(
                        403,
                        "Forbidden",
                        auth.forbidden_message(
                            user,
                            verb,
                            route.res.plural,
                            route.group,
                            route.namespace,
                            route.name,
                            path,
                        ),
                        {"name": route.name, "kind": route.res.plural}
                        if route.name
                        else {"kind": route.res.plural},
                    )
                if verb == "watch":
                    self.watch(route, query)
                    return
                code, doc = app.api.handle(
                    method, route, query, body, self.headers.get("Content-Type", "application/json")
                )
                out = json.dumps(doc).encode()
            else:
                if not auth.allowed(user, verb, "", "", "", path):
                    raise StatusError(
                        403, "Forbidden", auth.forbidden_message(user, verb, "", "", "", "", path)
                    )
                code, out, ctype = self.non_resource(path, split.query)
        except StatusError as err:
            code, out = err.code, json.dumps(err.status()).encode()
        except (ValueError, KeyError, TypeError) as err:
            code = 400
            out = json.dumps(
                StatusError(400, "BadRequest", f"kubesim: bad request: {err}").status()
            ).encode()
        finally:
            with app.inflight_lock:
                app.inflight -= 1
        try:
            self.send(code, out, ctype)
        finally:
            elapsed = time.monotonic() - start
            res = route.res if route is not None else None
            scope = (
                (
                    "resource"
                    if route and route.name
                    else "namespace"
                    if route and route.namespace
                    else "cluster"
                )
                if res
                else ""
            )
            app.metrics.observe(
                METRIC_VERB.get(verb, verb.upper()) if res else method,
                res.group if res else "",
                res.version if res else "",
                res.plural if res else "",
                route.subresource if route else "",
                scope,
                code,
                elapsed,
            )
            self.audit(method, verb, route, user, code, body, out, received)

    def audit(  # noqa: PLR0917 - mirrors the upstream call's parameters
        self, method: str, verb: str, route, user, code: int, body: bytes, out: bytes, received: str
    ) -> None:
        log = self.app.audit
        if not log.enabled or user is None:
            return
        res = route.res if route is not None else None
        level, omit = log.level(
            user.name,
            user.groups,
            verb,
            route.namespace if route else "",
            res.group if res else "",
            res.plural if res else "",
            route.subresource if route else "",
            route.name if route else "",
            urlsplit(self.path).path,
            res is not None,
        )
        if level == "None":
            return
        omit = set(omit) | set(log.omit_stages)
        ref = None
        if res is not None:
            ref = {"resource": res.plural, "apiVersion": res.version}
            if route.namespace:
                ref["namespace"] = route.namespace
            if route.name:
                ref["name"] = route.name
            if res.group:
                ref["apiGroup"] = res.group
            if route.subresource:
                ref["subresource"] = route.subresource
        audit_id = AuditLog.new_id()
        common = dict(
            audit_id=audit_id,
            verb=verb,
            uri=self.path,
            user=user.name,
            groups=user.groups,
            source_ip=self.client_address[0],
            user_agent=self.headers.get("User-Agent", ""),
            obj_ref=ref,
            received=received,
        )
        req_obj = _json_or_none(body) if level in ("Request", "RequestResponse") else None
        if "RequestReceived" not in omit:
            log.event(
                "RequestReceived", level, code=None, request_obj=None, response_obj=None, **common
            )
        if "ResponseComplete" not in omit:
            log.event(
                "ResponseComplete",
                level,
                code=code,
                request_obj=req_obj,
                response_obj=_json_or_none(out) if level == "RequestResponse" else None,
                **common,
            )

    def non_resource(self, path: str, query: str) -> tuple[int, bytes, str]:
        app = self.app
        text = "text/plain; charset=utf-8"
        if path in ("/livez", "/readyz", "/healthz") or path.startswith(
            ("/livez/", "/readyz/", "/healthz/")
        ):
            code, body = app.health.handle(path, query)
            return code, body.encode(), text
        if path == "/version":
            return 200, json.dumps(app.version_info(), indent=2).encode(), "application/json"
        if path == "/metrics":
            return 200, app.metrics.render().encode(), "text/plain; version=0.0.4; charset=utf-8"
        if path == "/api":
            addr = f"{app.advertise}:{app.port}"
            return (
                200,
                json.dumps(
                    {
                        "kind": "APIVersions",
                        "versions": ["v1"],
                        "serverAddressByClientCIDRs": [
                            {"clientCIDR": "0.0.0.0/0", "serverAddress": addr}
                        ],
                    }
                ).encode(),
                "application/json",
            )
        if path == "/apis":
            groups = [
                {
                    "name": g,
                    "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs],
                    "preferredVersion": {"groupVersion": f"{g}/{vs[0]}", "version": vs[0]},
                }
                for g, vs in resources.groups().items()
            ]
            return (
                200,
                json.dumps({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}).encode(),
                "application/json",
            )
        parts = [p for p in path.split("/") if p]
        if len(parts) == 2 and parts[0] == "api":
            doc = resources.resource_list("", parts[1])
        elif len(parts) == 3 and parts[0] == "apis":
            doc = resources.resource_list(parts[1], parts[2])
        else:
            doc = None
        if doc is None:
            return 404, b"404 page not found\n", text
        return 200, json.dumps(doc).encode(), "application/json"


def _json_or_none(data: bytes) -> dict | None:
    try:
        return json.loads(data) if data else None
    except ValueError:
        return None


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
