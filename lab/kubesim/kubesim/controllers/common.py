"""What KCM and the scheduler share: flags, the secure serving port (healthz, /metrics),
the leader-elected main loop.

The port serves /healthz, /livez, /readyz to anyone (--authorization-always-allow-paths
default) and everything else (/metrics) to authorized clients only: the client is
authenticated by its certificate (--client-ca-file, else the client-ca-file of ConfigMap
kube-system/extension-apiserver-authentication: authn.py; none: system:anonymous), then
authorized by delegation to the apiserver, a SubjectAccessReview cached 10 s (delegating.py),
and answered as endpoints/filters/authorization.go WithAuthorization does: 403 with
responsewriters.Forbidden's Status when not allowed, 500 `Internal Server Error` when the
review failed (apiserver unreachable). /metrics carries client-go's
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
from ..apiserver.auth import ANONYMOUS, forbidden_message, from_cert
from ..kubeclient import Client
from ..leaderelection import LeaderElector
from ..prom import Gauge, render
from . import authn, delegating


class ServingTLS:
    """The serving certificate a component makes for itself when given none (in memory, as
    SecureServingOptions.MaybeDefaultWithSelfSignedCerts with an empty --cert-dir), and the
    TLS context of the moment: a client certificate is asked for while there is a client CA
    (tls.RequestClientCert when ClientCA is set) and verified against the current bundle, so
    a CA loaded or changed later (authn.ConfigMapCA) applies to the next connections."""

    def __init__(self, host: str, client_ca: authn.StaticCA | authn.ConfigMapCA | None) -> None:
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
        self.chain = pki.cert_pem(cert) + pki.key_pem(key)
        self.client_ca = client_ca
        self.lock = threading.Lock()
        self._ctx: ssl.SSLContext | None = None
        self._bundle: bytes | None = None

    def _build(self, bundle: bytes | None) -> ssl.SSLContext:
        fd, name = tempfile.mkstemp(prefix="kubesim-serving-", suffix=".pem")
        with os.fdopen(fd, "wb") as fh:
            fh.write(self.chain)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            ctx.load_cert_chain(name)
        finally:
            os.unlink(name)
        if bundle:
            # Python verifies during the handshake: a certificate of another CA fails it
            # (upstream: 401 from the x509 authenticator).
            ctx.load_verify_locations(cadata=bundle.decode())
            ctx.verify_mode = ssl.CERT_OPTIONAL
        return ctx

    def context(self) -> ssl.SSLContext:
        bundle = self.client_ca.current() if self.client_ca is not None else None
        with self.lock:
            if self._ctx is None or bundle != self._bundle:
                self._ctx, self._bundle = self._build(bundle), bundle
            return self._ctx


def serve_healthz(  # noqa: PLR0915 - one handler class, as upstream's mux
    bind: str,
    port: int,
    checks: Callable[[], list[tuple[str, bool]]],
    metrics: Callable[[], str] = lambda: "",
    client_ca: str | authn.StaticCA | authn.ConfigMapCA | None = None,
    *,
    authorizer: delegating.DelegatingAuthorizer | None = None,
) -> None:
    """Serve the secure port in threads. `client_ca` verifies client certificates (a file,
    or a provider from authn.from_flags, started here as secure_serving.go starts it);
    `authorizer` decides every request (none: only system:masters and the always-allow
    paths pass, as without --authorization-kubeconfig)."""
    authz = authorizer or delegating.DelegatingAuthorizer({}, None)
    provider = authn.StaticCA(client_ca) if isinstance(client_ca, str) else client_ca
    if provider is not None:
        provider.start()
    tls = ServingTLS(socket.gethostname(), provider)

    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            self.connection.settimeout(32)  # ReadHeaderTimeout of the secure server
            self.connection.do_handshake()  # here, in the connection's thread
            self.connection.settimeout(None)

        def log_message(self, *args) -> None:
            return

        def reply(self, code: int, body: str, ctype: str = "text/plain; charset=utf-8") -> None:
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def authorized(self, path: str) -> bool:
            """WithAuthentication then WithAuthorization (endpoints/filters): False once
            the refusal is answered."""
            cert = (
                self.connection.getpeercert() if hasattr(self.connection, "getpeercert") else None
            )
            user = from_cert(cert) or ANONYMOUS
            decision = authz.authorize(user, "get", path)
            if decision.allowed:
                return True
            if decision.error:  # responsewriters.InternalError, its sanitizer, http.Error
                text = f"Internal Server Error: {json.dumps(self.path)}: {decision.error}"
                for char, entity in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;")):
                    text = text.replace(char, entity)
                self.reply(500, text + "\n")
                return False
            status = {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": forbidden_message(
                    user, "get", "", "", "", "", path, reason=decision.reason
                ),
                "reason": "Forbidden",
                "details": {},
                "code": 403,
            }
            self.reply(403, json.dumps(status), "application/json")
            return False

        def do_GET(self) -> None:  # noqa: N802
            path, _, query = self.path.partition("?")
            if not self.authorized(path):
                return
            endpoint = path.strip("/") or "healthz"
            if endpoint == "metrics":
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

        def get_request(self) -> tuple[ssl.SSLSocket, tuple]:
            sock, addr = self.socket.accept()
            ctx = tls.context()  # the client CA of now
            return ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

        def handle_error(self, request, client_address) -> None:
            # a failed handshake or a dropped client: logged at V(5) upstream
            # (secure_serving.go tlsHandshakeErrorWriter), so nothing here
            if not isinstance(sys.exc_info()[1], OSError):
                super().handle_error(request, client_address)

    httpd = S((bind, port), H, bind_and_activate=False)
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

    try:  # Authentication.ApplyTo, before Authorization.ApplyTo (options.go ApplyTo)
        client_ca = authn.from_flags(flags, tolerate_default=name == "kube-scheduler")
    except authn.LookupFailed as err:
        klog.error(authn.command_failed(err), "run.go:72")
        return 1
    authorizer = delegating.from_flags(flags)
    serve_healthz(bind, port, checks, metrics, client_ca, authorizer=authorizer)
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
