"""Graceful termination of the apiserver (server/genericapiserver.go
preparedGenericAPIServer.RunWithContext, lifecycle_signals.go), signal by signal:

1. SIGTERM -> ShutdownInitiated: /readyz's `shutdown` check fails at once; everything
   else is served as before.
2. --shutdown-delay-duration later -> AfterShutdownDelayDuration, NotAcceptingNewRequest:
   - default (--shutdown-send-retry-after=false): the listener closes (net/http
     Server.Shutdown: idle keep-alive connections are closed, busy ones close after their
     response); a request that still arrives on an open connection gets 503 "apiserver is
     shutting down" with Retry-After: 1 (filters/waitgroup.go), health and /metrics
     excepted;
   - --shutdown-send-retry-after=true: the listener stays open until the in-flight
     requests have drained; meanwhile every new request gets 429 "The apiserver is
     shutting down, please try again later." with Retry-After: 5 and Connection: close
     (filters/with_retry_after.go), except /readyz /livez /healthz /metrics and the
     apiserver's own loopback client; then the listener closes.
3. InFlightRequestsDrained: non-long-running requests in flight have finished (each is
   bounded by its deadline). Watches are long-running and not waited for unless
   --shutdown-watch-termination-grace-period > 0 (default 0s); they end with the process.
4. The process exits 0. A second signal exits 1 at once (signal.go).
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import sys
import threading
import time

from .. import klog

EXEMPT = ("/metrics", "/readyz", "/livez", "/healthz")


def _event(name: str, line: str) -> None:
    klog.info(f'"[graceful-termination] shutdown event" name="{name}"', line)


class Lifecycle:
    def __init__(self, app, httpd) -> None:
        self.app, self.httpd = app, httpd
        self.connections: set = set()
        self.not_accepting = False
        self.listener_closed = False
        self.watches = 0
        self.lock = threading.Lock()

    def watches_delta(self, delta: int) -> None:
        with self.lock:
            self.watches += delta

    def closing_connections(self) -> bool:
        return self.listener_closed

    def refuse(self, ex, long_running: bool = False) -> tuple | None:
        """The answer of WithRetryAfter / WithWaitGroup once new requests are refused
        (WithWaitGroup lets long-running requests through, WithRetryAfter does not)."""
        if not self.not_accepting or (long_running and not self.app.send_retry_after):
            return None
        if ex.path.startswith(EXEMPT) or ex.user_agent.startswith("kube-apiserver/"):
            return None
        if self.app.send_retry_after:
            body = b"The apiserver is shutting down, please try again later.\n"
            return 429, body, "text/plain; charset=utf-8", [("Retry-After", "5")]
        status = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": "apiserver is shutting down",
            "reason": "ServiceUnavailable",
            "code": 503,
        }
        return 503, (json.dumps(status) + "\n").encode(), "application/json", [("Retry-After", "1")]

    def close_listener(self) -> None:
        self.listener_closed = True
        self.httpd.shutdown()
        self.httpd.socket.close()
        for conn in list(self.connections):
            if not conn.busy:  # idle keep-alive connections go at once
                with contextlib.suppress(OSError):
                    conn.connection.shutdown(socket.SHUT_RDWR)

    def _wait(self, done, limit: float) -> bool:
        deadline = time.monotonic() + limit
        while not done():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def run(self) -> int:
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
        app = self.app
        app.health.shutting_down = True
        _event("ShutdownInitiated", "genericapiserver.go:696")
        time.sleep(app.shutdown_delay)
        _event("AfterShutdownDelayDuration", "genericapiserver.go:722")
        self.not_accepting = True
        _event("NotAcceptingNewRequest", "genericapiserver.go:749")
        if not app.send_retry_after:
            self.close_listener()
        self._wait(lambda: app.inflight == 0, app.request_timeout + 5)
        _event("InFlightRequestsDrained", "genericapiserver.go:866")
        if app.watch_grace > 0:
            self._wait(lambda: self.watches == 0, app.watch_grace)
        else:
            klog.info(
                '"[graceful-termination] not going to wait for active watch request(s) to drain"',
                "genericapiserver.go:828",
            )
        if app.send_retry_after:
            self.close_listener()
        klog.info('"[graceful-termination] apiserver is exiting"', "genericapiserver.go:779")
        return 0
