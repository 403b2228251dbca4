"""A TLS server answering GET /readyz like kube-apiserver: 200 "ok", 500 while a flag file exists.

Usage: python khm_readyz_server.py IP PORT CERT KEY FAIL_FLAG
"""

import http.server
import ssl
import sys
from pathlib import Path


def main() -> None:
    ip, port, cert, key, flag = sys.argv[1:6]
    fail_flag = Path(flag)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            failing = fail_flag.exists()
            body = b"[-]etcd failed: reason withheld\nreadyz check failed\n" if failing else b"ok"
            self.send_response(500 if failing and self.path.startswith("/readyz") else 200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
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
