"""
HTTPS requests to kube-apiserver with a kubeconfig's credentials, each bounded by one
deadline: the plumbing under ``apiserver.readyz``/``livez`` (``get``) and ``apiserver.ttfb``
(``first_byte_ms``). No Salt settings here: the ``apiserver`` module resolves the kubeconfig
path and the server and passes them in.

Every request opens a fresh TCP + TLS connection, as each ``kubectl`` invocation does. The
timeout bounds the whole request (connect, headers and body), not each socket read.

Loaded as ``__utils__["apiserver_http.*"]``.
"""

import base64
import http.client
import ssl
import tempfile
import time
import urllib.parse
from pathlib import Path

import yaml
from salt.exceptions import CommandExecutionError

# Health and probe answers are a few KiB; more means something else answers.
MAX_BODY = 1 << 20


def credentials(kubeconfig: str) -> "_Creds":
    """The CA and client certificate of the kubeconfig at ``kubeconfig``; call ``close()``
    on the result when done (Salt's loader hands out functions, not classes)."""
    return _Creds(kubeconfig)


class _Creds:
    """CA and client cert of a kubeconfig, as files ssl can load (0600, removed on close)."""

    def __init__(self, kubeconfig: str):
        self.path = kubeconfig
        try:
            cfg = yaml.safe_load(Path(self.path).read_text())
        except OSError as err:
            raise CommandExecutionError(f"cannot read kubeconfig {self.path}: {err}") from err
        ctx_name = cfg.get("current-context")
        ctx = next(
            (c["context"] for c in cfg["contexts"] if c["name"] == ctx_name),
            cfg["contexts"][0]["context"],
        )
        self.cluster = next(c["cluster"] for c in cfg["clusters"] if c["name"] == ctx["cluster"])
        self.user = next(u["user"] for u in cfg["users"] if u["name"] == ctx["user"])
        self.tmp = tempfile.TemporaryDirectory(prefix="kubeha-apiserver-")

    def _file(self, name: str, data_key: str, path_key: str) -> str | None:
        src = self.cluster if name == "ca" else self.user
        if src.get(data_key):
            path = Path(self.tmp.name) / name
            path.write_bytes(base64.b64decode(src[data_key]))
            path.chmod(0o600)
            return str(path)
        return src.get(path_key)

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(
            cafile=self._file("ca", "certificate-authority-data", "certificate-authority")
        )
        cert = self._file("crt", "client-certificate-data", "client-certificate")
        key = self._file("key", "client-key-data", "client-key")
        if cert and key:
            ctx.load_cert_chain(cert, key)
        return ctx

    @property
    def server(self) -> str:
        """The kubeconfig's server (the ``apiserver:server`` setting overrides it)."""
        return self.cluster["server"]

    def close(self) -> None:
        self.tmp.cleanup()


def _remaining(deadline: float, what: str, timeout: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError(f"{what}: no complete answer within {timeout:g} s")
    return left


def _read_body(conn, resp, deadline: float, what: str, timeout: float) -> bytes:
    """The response body, read against the request's deadline and at most MAX_BODY bytes:
    the socket timeout alone bounds each read, not a trickle of small ones."""
    body = bytearray()
    while True:
        conn.sock.settimeout(_remaining(deadline, what, timeout))
        chunk = resp.read(65536)
        if not chunk:
            return bytes(body)
        body += chunk
        if len(body) > MAX_BODY:
            raise OSError(f"{what}: answer larger than {MAX_BODY} bytes")


def _exchange(conn, target: str, deadline: float, what: str, timeout: float):
    """Connect ``conn``, GET ``target``: (status, perf_counter at the status line, body)."""
    conn.connect()
    conn.sock.settimeout(_remaining(deadline, what, timeout))
    conn.request("GET", target)
    resp = conn.getresponse()  # returns once the status line has arrived
    first_byte = time.perf_counter()
    return resp.status, first_byte, _read_body(conn, resp, deadline, what, timeout)


def get(url: str, ctx: ssl.SSLContext, timeout: float) -> tuple[int, bytes]:
    """GET ``url``; ``timeout`` bounds the whole request: connect, headers and body."""
    deadline = time.monotonic() + timeout
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPSConnection(
        parts.hostname, parts.port or 443, context=ctx, timeout=timeout
    )
    try:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        status, _, body = _exchange(conn, target, deadline, url, timeout)
        return status, body
    finally:
        conn.close()


def first_byte_ms(
    ctx: ssl.SSLContext, host: str, port: int, path: str, timeout: float
) -> tuple[int, float]:
    """
    GET ``path`` on a new connection to ``host:port``: (HTTP status, ms from before the TCP
    connect to the status line). The body is read and dropped, within the same ``timeout``:
    a request whose body never ends is an error, not a fast answer. Errors (timeouts,
    resets, TLS) are raised for the caller to count.
    """
    began = time.perf_counter()
    conn = http.client.HTTPSConnection(host, port, context=ctx, timeout=timeout)
    deadline = time.monotonic() + timeout
    try:
        status, first_byte, _ = _exchange(conn, path, deadline, path, timeout)
    finally:
        conn.close()
    return status, (first_byte - began) * 1000.0
