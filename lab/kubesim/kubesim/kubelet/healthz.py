"""The kubelet's healthz endpoint (127.0.0.1:10248): kubeadm's wait-control-plane polls it."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .. import klog


def serve_healthz(addr: str, port: int, healthy) -> None:
    class H(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            return

        def do_GET(self) -> None:  # noqa: N802
            ok = healthy()
            body = b"ok" if ok else b"[-]syncloop failed: reason withheld\nhealthz check failed\n"
            self.send_response(200 if ok else 500)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    class S(ThreadingHTTPServer):
        daemon_threads = True
        allow_reuse_address = True

    try:
        httpd = S((addr, port), H)
    except OSError as err:
        klog.fatal(f'"Failed to start healthz server" err="{err}"', "server.go:176")
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
