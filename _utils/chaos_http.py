"""
HTTPS requests for the chaos probe, each bounded by one deadline, each outcome named.

A request is a fresh TCP connection + TLS handshake + one HTTP/1.1 request (as every
``kubectl`` invocation makes), or a request on a kept-alive connection (``KeepAlive``, as a
controller's client makes). What the probe records for each: when it left, time to first
byte (the status line), total time, HTTP status, and when it failed, the cause in an
operator's words (``CAUSES``): which phase (connect, TLS, response) and how (timeout,
refused, reset, end of stream, HTTP status).

Credentials come from a kubeconfig (CA + client certificate, as kubectl uses them), written
to 0600 temp files for ``ssl`` and removed at once. Loaded as ``__utils__["chaos_http.*"]``.
"""

import base64
import errno
import http.client
import socket
import ssl
import tempfile
import time
import urllib.parse
from pathlib import Path

import yaml

MAX_BODY = 4 << 20
# Causes as the report prints them. A reset before the first byte is what client-go retries
# for a GET (rest/request.go: connection reset and probable EOF); the probe counts it failed.
CAUSES = (
    "connect timeout",
    "connect refused",
    "no route",
    "tls timeout",
    "tls cut",
    "tls error",
    "reset",
    "eof",
    "response timeout",
    "http 429",
    "http 5xx",
    "http other",
    "probe overloaded",
)


def kubeconfig_context(path: str) -> tuple[ssl.SSLContext, str]:
    """(SSL context with the CA and client certificate, server URL) of a kubeconfig."""
    cfg = yaml.safe_load(Path(path).read_text())
    ctx_name = cfg.get("current-context")
    ctx = next((c["context"] for c in cfg["contexts"] if c["name"] == ctx_name),
               cfg["contexts"][0]["context"])  # fmt: skip
    cluster = next(c["cluster"] for c in cfg["clusters"] if c["name"] == ctx["cluster"])
    user = next(u["user"] for u in cfg["users"] if u["name"] == ctx["user"])
    with tempfile.TemporaryDirectory(prefix="kubeha-chaos-") as tmp:

        def material(src: dict, data_key: str, path_key: str, name: str) -> str | None:
            if src.get(data_key):
                out = Path(tmp) / name
                out.write_bytes(base64.b64decode(src[data_key]))
                out.chmod(0o600)
                return str(out)
            return src.get(path_key)

        ssl_ctx = ssl.create_default_context(
            cafile=material(cluster, "certificate-authority-data", "certificate-authority", "ca")
        )
        cert = material(user, "client-certificate-data", "client-certificate", "crt")
        key = material(user, "client-key-data", "client-key", "key")
        if cert and key:
            ssl_ctx.load_cert_chain(cert, key)
    return ssl_ctx, cluster["server"]


def split_server(server: str) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(server)
    return parts.hostname, parts.port or 443


def cause(err: BaseException, phase: str) -> str:
    """The operator's name for an exception raised in ``phase`` (connect, tls, response)."""
    if isinstance(err, (socket.timeout, TimeoutError)):
        return {"connect": "connect timeout", "tls": "tls timeout"}.get(phase, "response timeout")
    if isinstance(err, ConnectionRefusedError):
        return "connect refused"
    if isinstance(err, ConnectionResetError):
        return "reset"
    if isinstance(err, OSError) and err.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return "no route"
    if isinstance(err, (ssl.SSLEOFError, http.client.RemoteDisconnected, BrokenPipeError,
                        http.client.IncompleteRead, ConnectionAbortedError)):  # fmt: skip
        return "eof"
    if isinstance(err, ssl.SSLError):
        if phase == "response":
            return "eof"
        # Cut in the handshake (HAProxy's shutdown-sessions, a closing listener) vs. a real
        # TLS failure (certificate, protocol).
        return "tls cut" if "EOF" in str(err) or "reset" in str(err).lower() else "tls error"
    if isinstance(err, http.client.HTTPException):
        return "eof"
    return "eof" if phase == "response" else f"{phase} error"


def status_cause(status: int) -> str:
    if status == 429:
        return "http 429"
    return "http 5xx" if status >= 500 else "http other"


class Deadline:
    def __init__(self, timeout: float) -> None:
        self.end = time.monotonic() + timeout

    def left(self) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise TimeoutError("deadline")
        return left


def _read_body(conn, resp, deadline: Deadline) -> bytes:
    body = bytearray()
    while True:
        conn.sock.settimeout(deadline.left())
        chunk = resp.read(65536)
        if not chunk:
            return bytes(body)
        body += chunk
        if len(body) > MAX_BODY:
            raise http.client.HTTPException(f"answer larger than {MAX_BODY} bytes")


def connect(ctx, host, port, deadline: Deadline):
    """TCP connect then TLS handshake, each within the deadline; (connection, connect ms)."""
    began = time.monotonic()
    phase = "connect"
    try:
        sock = socket.create_connection((host, port), timeout=deadline.left())
        phase = "tls"
        sock.settimeout(deadline.left())
        tls = ctx.wrap_socket(sock, server_hostname=host)
    except (OSError, ssl.SSLError) as err:
        err.kubeha_phase = phase
        raise
    conn = http.client.HTTPSConnection(host, port, context=ctx)
    conn.sock = tls
    return conn, (time.monotonic() - began) * 1000.0


def exchange(conn, method, path, *, body, headers, deadline: Deadline):
    """One request on an open connection: (status, ms to the status line, body, whether
    the server closes the connection after it)."""
    began = time.monotonic()
    conn.sock.settimeout(deadline.left())
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    first = (time.monotonic() - began) * 1000.0
    return resp.status, first, _read_body(conn, resp, deadline), resp.will_close


def fresh(ctx, host, port, path, timeout, *, method="GET", body=None, headers=None) -> dict:
    """
    One request on a new connection. ``ttfb_ms`` runs from before the TCP connect to the
    status line (what a kubectl user waits for); ``err`` names the cause of a failure.
    """
    deadline = Deadline(timeout)
    began = time.monotonic()
    out = {"ttfb_ms": None, "ms": None, "code": None, "err": "", "connect_ms": None}
    conn = None
    try:
        conn, out["connect_ms"] = connect(ctx, host, port, deadline)
        status, first, data, _ = exchange(
            conn, method, path, body=body, headers=headers, deadline=deadline
        )
        out["code"] = status
        out["ttfb_ms"] = round(out["connect_ms"] + first, 3)
        out["body"] = data
        if not 200 <= status < 300:
            out["err"] = status_cause(status)
    except (OSError, ssl.SSLError, http.client.HTTPException) as err:
        out["err"] = cause(err, getattr(err, "kubeha_phase", "response"))
    finally:
        if conn is not None:
            conn.close()
        out["ms"] = round((time.monotonic() - began) * 1000.0, 3)
    return out


def deadline(timeout: float) -> Deadline:
    """A deadline ``timeout`` seconds from now (``left()`` raises socket.timeout after)."""
    return Deadline(timeout)


def keep_alive(ctx, host, port, timeout: float) -> "KeepAlive":
    """A reused connection (Salt's loader hands out functions, not classes)."""
    return KeepAlive(ctx, host, port, timeout)


class KeepAlive:
    """One connection reused for every request, reopened after a failure (a client-go
    transport keeps its connections the same way)."""

    def __init__(self, ctx, host, port, timeout: float) -> None:
        self.ctx, self.host, self.port, self.timeout = ctx, host, port, timeout
        self.conn = None
        self.connects = 0

    def request(self, method, path, body=None, headers=None) -> dict:
        deadline = Deadline(self.timeout)
        began = time.monotonic()
        out = {"ttfb_ms": None, "ms": None, "code": None, "err": "", "new_conn": False}
        for attempt in (1, 2):
            reused = self.conn is not None
            try:
                if self.conn is None:
                    self.conn, _ = connect(self.ctx, self.host, self.port, deadline)
                    self.connects += 1
                    out["new_conn"] = True
                status, first, data, closing = exchange(
                    self.conn, method, path, body=body, headers=headers, deadline=deadline
                )
                out.update(code=status, ttfb_ms=round(first, 3), body=data, err="")
                if not 200 <= status < 300:
                    out["err"] = status_cause(status)
                if closing:
                    self.close()
                break
            except (OSError, ssl.SSLError, http.client.HTTPException) as err:
                out["err"] = cause(err, getattr(err, "kubeha_phase", "response"))
                self.close()
                # Go's net/http retries an idempotent request once on a new connection when
                # a reused one turns out closed before answering (transport.go
                # shouldRetryRequest); a timeout is not retried.
                if not (
                    attempt == 1 and reused and method == "GET" and out["err"] in ("eof", "reset")
                ):
                    break
                out["retried"] = True
        out["ms"] = round((time.monotonic() - began) * 1000.0, 3)
        return out

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.conn = None
