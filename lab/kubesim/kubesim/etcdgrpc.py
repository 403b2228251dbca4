"""The kube-apiserver's etcd client, behaving as clientv3 over gRPC does.

kubesim talks to etcd's JSON gateway (etcd.py explains why), but what a fault makes
visible is the gRPC client's behaviour, so that is what this reproduces:

- **every endpoint of --etcd-servers is used**: clientv3 3.5 resolves all endpoints and
  balances with gRPC's `round_robin` policy (client/v3/client.go dialWithBalancer,
  internal/resolver); an endpoint whose connection breaks leaves the rotation and the
  others carry the calls;
- **connectivity per endpoint** as grpc-go's addrConn: a broken READY connection is
  redialled at once; failed dials wait 1 s, then x1.6 per failure with +-20 % jitter, up
  to 120 s (grpc-go backoff.DefaultConfig); a successful dial resets the back-off. So an
  apiserver whose only etcd came back is not served again until its next redial;
- **calls wait for a ready connection** (clientv3 options.go defaultWaitForReady =
  grpc.WaitForReady(true)) until the caller's deadline, then fail with
  `context deadline exceeded`; the apiserver's deadline is the request's (60 s), so a
  request whose etcd is gone hangs rather than failing fast;
- **retries** (client/v3/retry_interceptor.go isSafeRetry): a call that never reached a
  server is retried on another connection; a read (`repeatable`) that broke mid-flight or
  got codes.Unavailable from etcd is retried after 25 ms; a write (`nonRepeatable`) that
  broke mid-flight fails with `Unavailable`;
- **keepalive**: a connection that carries calls or watches and has received nothing for
  30 s is pinged and closed 10 s later without an answer
  (storage/storagebackend/factory/etcd3.go keepaliveTime, keepaliveTimeout), which is how a
  frozen member is left;
- **watches resume**: a broken watch stream is re-created on another ready connection
  from the revision after the last one delivered (client/v3/watch.go resuming), so the
  watcher sees no gap and no error.
"""

from __future__ import annotations

import contextlib
import contextvars
import http.client
import json
import random
import socket
import ssl
import threading
import time
import weakref
from collections.abc import Iterator
from urllib.parse import urlparse

from .etcd import REPEATABLE, EtcdError, KeyValue, KVOps, _b64, prefix_end
from .etcdstream import Broken as _Broken
from .etcdstream import ChunkedLines

BACKOFF_BASE, BACKOFF_MULTIPLIER, BACKOFF_JITTER, BACKOFF_MAX = 1.0, 1.6, 0.2, 120.0
DIAL_TIMEOUT = 20.0  # factory/etcd3.go dialTimeout
KEEPALIVE_TIME, KEEPALIVE_TIMEOUT = 30.0, 10.0
RETRY_WAIT = 0.025  # clientv3 defaultBackoffWaitBetween
IDLE, CONNECTING, READY, TRANSIENT_FAILURE = "IDLE", "CONNECTING", "READY", "TRANSIENT_FAILURE"

_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("deadline", default=None)


class DeadlineExceeded(EtcdError):
    """The caller's deadline passed before etcd answered (context.DeadlineExceeded)."""


class Unavailable(EtcdError):
    """A non-repeatable call whose connection broke after it was sent (codes.Unavailable)."""


class Compacted(EtcdError):
    """The watch's start revision has been compacted away."""


@contextlib.contextmanager
def request_deadline(when: float | None) -> Iterator[None]:
    """Bound every etcd call made in this thread by `when` (monotonic), like a request ctx."""
    token = _deadline.set(when)
    try:
        yield
    finally:
        _deadline.reset(token)


def current_deadline() -> float | None:
    return _deadline.get()


def backoff(retries: int) -> float:
    """grpc-go internal/backoff Exponential.Backoff for the n-th consecutive failure."""
    delay = BACKOFF_BASE
    for _ in range(retries):
        delay = min(delay * BACKOFF_MULTIPLIER, BACKOFF_MAX)
    return delay * (1 + BACKOFF_JITTER * (random.random() * 2 - 1))


class _NotSent(Exception):
    pass


class Endpoint:
    def __init__(self, url: str) -> None:
        parsed = urlparse(url)
        self.url = url
        self.host, self.port = parsed.hostname or "127.0.0.1", parsed.port or 2379
        self.state = IDLE
        self.failures = 0  # consecutive failed dials: the back-off index
        self.retry_at = 0.0
        self.last_heard = time.monotonic()
        self.busy = 0  # calls and watches on the connection
        self.socks: weakref.WeakSet = weakref.WeakSet()


class BalancedClient(KVOps):
    """clientv3's behaviour over the JSON gateway (see the module docstring)."""

    def __init__(  # noqa: PLR0917 - mirrors the upstream call's parameters
        self,
        endpoints: list[str],
        cacert: str,
        cert: str,
        key: str,
        timeout: float = 60.0,
        on_request=None,
    ) -> None:
        self.endpoints = [Endpoint(u) for u in endpoints if u]
        self.timeout = timeout  # bound of a call made outside any request
        self.context = ssl.create_default_context(cafile=cacert)
        self.context.check_hostname = False  # kubeadm's etcd certs carry the IP SANs; CA pins
        self.context.load_cert_chain(cert, key)
        self.cond = threading.Condition()
        self.next = 0
        self._local = threading.local()
        self.closed = False
        threading.Thread(target=self._maintain, daemon=True, name="etcd-conn").start()

    # -- connectivity ------------------------------------------------------------------------
    def states(self) -> dict[str, str]:
        with self.cond:
            return {e.url: e.state for e in self.endpoints}

    def _dial(self, ep: Endpoint, timeout: float) -> ssl.SSLSocket:
        raw = socket.create_connection((ep.host, ep.port), timeout=timeout)
        try:
            sock = self.context.wrap_socket(raw, server_hostname=ep.host)
        except BaseException:
            raw.close()
            raise
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        ep.socks.add(sock)
        return sock

    def _try_connect(self, ep: Endpoint) -> None:
        try:
            self._dial(ep, DIAL_TIMEOUT).close()
            ok = True
        except OSError:
            ok = False
        with self.cond:
            if ok:
                ep.state, ep.failures, ep.last_heard = READY, 0, time.monotonic()
            else:
                ep.state, ep.retry_at = TRANSIENT_FAILURE, time.monotonic() + backoff(ep.failures)
                ep.failures += 1
            self.cond.notify_all()

    def _fail(self, ep: Endpoint) -> None:
        """The connection broke: leave the rotation, close its sockets, redial at once."""
        with self.cond:
            if ep.state == READY:
                ep.state, ep.retry_at, ep.failures = TRANSIENT_FAILURE, time.monotonic(), 0
            self.cond.notify_all()
        for sock in list(ep.socks):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _maintain(self) -> None:
        while not self.closed:
            now = time.monotonic()
            for ep in self.endpoints:
                with self.cond:
                    due = ep.state in (IDLE, TRANSIENT_FAILURE) and ep.retry_at <= now
                    if due:
                        ep.state = CONNECTING
                    silent = (
                        ep.state == READY
                        and ep.busy > 0
                        and now - ep.last_heard > KEEPALIVE_TIME + KEEPALIVE_TIMEOUT
                    )
                if due:
                    threading.Thread(target=self._try_connect, args=(ep,), daemon=True).start()
                if silent:
                    self._fail(ep)
            time.sleep(0.05)

    def _pick(self, deadline: float | None, stop: threading.Event | None = None) -> Endpoint:
        """round_robin over READY connections, waiting for one (WaitForReady)."""
        with self.cond:
            while True:
                ready = [e for e in self.endpoints if e.state == READY]
                if ready:
                    ep = ready[self.next % len(ready)]
                    self.next += 1
                    ep.busy += 1
                    return ep
                if stop is not None and stop.is_set():
                    raise DeadlineExceeded("context canceled")
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise DeadlineExceeded("context deadline exceeded")
                self.cond.wait(0.2 if remaining is None else min(remaining, 0.2))

    def _release(self, ep: Endpoint) -> None:
        with self.cond:
            ep.busy -= 1

    # -- unary calls -------------------------------------------------------------------------
    def _conn(self, ep: Endpoint) -> http.client.HTTPSConnection:
        pool = getattr(self._local, "pool", None)
        if pool is None:
            pool = self._local.pool = {}
        conn = pool.get(ep.url)
        if conn is None:
            conn = pool[ep.url] = http.client.HTTPSConnection(
                ep.host, ep.port, context=self.context
            )
        return conn

    def _drop(self, ep: Endpoint) -> None:
        conn = getattr(self._local, "pool", {}).pop(ep.url, None)
        if conn is not None:
            conn.close()

    def _roundtrip(self, ep: Endpoint, path: str, payload: bytes, deadline: float) -> tuple:
        for attempt in range(2):
            conn = self._conn(ep)
            reused = conn.sock is not None
            remaining = max(0.001, deadline - time.monotonic())
            try:
                if conn.sock is None:
                    conn.sock = self._dial(ep, min(remaining, DIAL_TIMEOUT))
                conn.sock.settimeout(remaining)
            except TimeoutError as err:
                self._drop(ep)
                raise DeadlineExceeded("context deadline exceeded") from err
            except OSError as err:
                self._drop(ep)
                raise _NotSent(str(err)) from err
            try:
                conn.request(
                    "POST", path, body=payload, headers={"Content-Type": "application/json"}
                )
                resp = conn.getresponse()
                data = resp.read()
            except TimeoutError as err:
                self._drop(ep)
                raise DeadlineExceeded("context deadline exceeded") from err
            except (OSError, http.client.HTTPException) as err:
                self._drop(ep)
                if reused and attempt == 0:
                    continue  # an idle keep-alive connection the server had closed
                raise _Broken(str(err) or type(err).__name__) from err
            ep.last_heard = time.monotonic()
            return resp.status, data
        raise _Broken("connection closed")

    def call(
        self, path: str, body: dict, timeout: float | None = None, retry: str = REPEATABLE
    ) -> dict:
        now = time.monotonic()
        bounds = [b for b in (_deadline.get(), now + timeout if timeout else None) if b]
        deadline = min(bounds) if bounds else now + self.timeout
        payload = json.dumps(body).encode()
        while True:
            ep = self._pick(deadline)
            try:
                status, data = self._roundtrip(ep, path, payload, deadline)
            except _NotSent:
                self._fail(ep)
                continue
            except _Broken as err:
                self._fail(ep)
                if retry == REPEATABLE:
                    continue
                raise Unavailable(
                    f"rpc error: code = Unavailable desc = error reading from server: {err}"
                ) from err
            finally:
                self._release(ep)
            try:
                doc = json.loads(data or b"{}")
            except ValueError:
                doc = {"error": data.decode(errors="replace")}
            if status == 200:
                return doc
            message = doc.get("message") or doc.get("error") or str(doc)
            unavailable = doc.get("code") == 14 or status == 503
            if unavailable and retry == REPEATABLE and time.monotonic() + RETRY_WAIT < deadline:
                time.sleep(RETRY_WAIT)
                continue
            raise EtcdError(
                f"etcdserver: {message}".replace("etcdserver: etcdserver", "etcdserver")
            )

    # -- watch ---------------------------------------------------------------------------------
    def watch(
        self, prefix: str | bytes, start_revision: int, stop: threading.Event
    ) -> Iterator[tuple[int, list[tuple[str, KeyValue, KeyValue | None]]]]:
        """(revision, events) batches under `prefix` from `start_revision` until `stop`.

        Progress notifications arrive as empty batches carrying the current revision
        (the cacher's bookmarks). A broken stream resumes on another ready connection.
        """
        raw = prefix.encode() if isinstance(prefix, str) else prefix
        rev = start_revision
        while not stop.is_set():
            try:
                ep = self._pick(None, stop)
            except DeadlineExceeded:
                return
            try:
                for batch_rev, events in self._stream(ep, raw, rev, stop):
                    # resume after the last event delivered (or the last progress notify)
                    rev = events[-1][1].mod_revision + 1 if events else max(rev, batch_rev + 1)
                    yield batch_rev, events
                return
            except (_Broken, OSError):
                self._fail(ep)
            finally:
                self._release(ep)

    def _stream(self, ep: Endpoint, raw: bytes, rev: int, stop: threading.Event):
        body = json.dumps(
            {
                "create_request": {
                    "key": _b64(raw),
                    "range_end": _b64(prefix_end(raw)),
                    "start_revision": str(rev),
                    "prev_kv": True,
                    "progress_notify": True,
                }
            }
        ).encode()
        try:
            sock = self._dial(ep, DIAL_TIMEOUT)
        except OSError as err:
            raise _Broken(str(err)) from err
        reader = ChunkedLines(sock, stop)
        try:
            sock.sendall(
                f"POST /v3/watch HTTP/1.1\r\nHost: {ep.host}:{ep.port}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            for line in reader.lines():
                ep.last_heard = time.monotonic()
                doc = json.loads(line).get("result") or {}
                if doc.get("compact_revision") or doc.get("canceled"):
                    raise Compacted("etcdserver: mvcc: required revision has been compacted")
                batch = []
                for ev in doc.get("events") or []:
                    prev = ev.get("prev_kv")
                    batch.append(
                        (
                            ev.get("type", "PUT"),
                            KeyValue.from_json(ev.get("kv") or {}),
                            KeyValue.from_json(prev) if prev else None,
                        )
                    )
                yield int((doc.get("header") or {}).get("revision", 0)), batch
            if not stop.is_set():
                raise _Broken("watch stream closed")
        finally:
            sock.close()
