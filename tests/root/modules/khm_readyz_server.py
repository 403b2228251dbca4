"""A TLS server answering like kube-apiserver: GET /readyz 200 "ok"; 500 while a flag file
exists ("[-]etcd failed"); 500 "[-]shutdown failed" while ``<flag>.shutdown`` exists (a
graceful shutdown: everything else is still served, upstream's --shutdown-delay-duration).
GET /slow answers after 1.5 s; every answer names the server (``X-Server``).

Usage: python khm_readyz_server.py IP PORT CERT KEY FAIL_FLAG [NAME]
"""

import http.server
import ssl
import sys
import time
from pathlib import Path


def main() -> None:
    ip, port, cert, key, flag = sys.argv[1:6]
    name = sys.argv[6] if len(sys.argv) > 6 else ip
    fail_flag = Path(flag)
    shutdown_flag = Path(flag + ".shutdown")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            status, body = 200, b"ok"
            if self.path.startswith("/readyz") and fail_flag.exists():
                status, body = 500, b"[-]etcd failed: reason withheld\nreadyz check failed\n"
            elif self.path.startswith("/readyz") and shutdown_flag.exists():
                status = 500
                body = b"[+]ping ok\n[-]shutdown failed: reason withheld\nreadyz check failed\n"
            elif self.path == "/slow":
                time.sleep(1.5)
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Server", name)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    class Server(http.server.ThreadingHTTPServer):
        def handle_error(self, request, client_address):
            pass  # HAProxy's checks close TLS without a close_notify: not worth a traceback

    httpd = Server((ip, int(port)), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    httpd.serve_forever()


if __name__ == "__main__":
    main()
