"""apiserver module against a real TLS server that demands client certificates, the way
kube-apiserver does: /readyz?verbose parsed, TTFB over a fresh connection per request,
errors counted. (The server answers with upstream-shaped bodies; the lab runs the real
probe against kubesim.)"""

import base64
import http.server
import ssl
import threading
from pathlib import Path

import pytest
import yaml
from khm_support import free_port, issue, loaders, make_ca

READYZ = (
    Path(__file__).resolve().parents[2] / "unit" / "modules" / "samples" / "readyz_verbose.txt"
).read_text()


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    base = tmp_path_factory.mktemp("api")
    ca = make_ca(base, "kubernetes")
    crt, key = issue(base, "apiserver", ca, "kube-apiserver", sans=["127.0.0.1"], server=True)
    ccrt, ckey = issue(base, "admin", ca, "kubernetes-admin", client=True, org="system:masters")
    seen = {"peers": set(), "count": 0}

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):  # noqa: N802
            seen["count"] += 1
            seen["peers"].add(self.client_address[1])
            if self.path.startswith("/readyz"):
                status, body = 500, READYZ.encode()
            elif self.path == "/broken":
                status, body = 503, b"overloaded"
            else:
                status, body = 200, b'{"kind":"PodList","apiVersion":"v1","items":[]}'
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    port = free_port()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)
    ctx.load_verify_locations(base / "ca.crt")
    ctx.verify_mode = ssl.CERT_REQUIRED  # like --client-ca-file
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    b64 = lambda p: base64.b64encode(Path(p).read_bytes()).decode()  # noqa: E731
    kubeconfig = base / "admin.conf"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "kubernetes-admin@kubernetes",
                "clusters": [
                    {
                        "name": "kubernetes",
                        "cluster": {
                            "server": f"https://127.0.0.1:{port}",
                            "certificate-authority-data": b64(base / "ca.crt"),
                        },
                    }
                ],
                "contexts": [
                    {
                        "name": "kubernetes-admin@kubernetes",
                        "context": {"cluster": "kubernetes", "user": "kubernetes-admin"},
                    }
                ],
                "users": [
                    {
                        "name": "kubernetes-admin",
                        "user": {
                            "client-certificate-data": b64(ccrt),
                            "client-key-data": b64(ckey),
                        },
                    }
                ],
            }
        )
    )
    salt = loaders(base / "salt", apiserver={"kubeconfig": str(kubeconfig)}).modules
    yield salt, seen
    httpd.shutdown()
    httpd.server_close()


def test_readyz_verbose_over_mutual_tls(api):
    salt, _ = api
    ret = salt.apiserver.readyz()
    assert ret["status"] == 500 and ret["ok"] is False
    assert ret["failed"] == ["etcd"] and ret["passed"] is False


def test_ttfb_uses_a_fresh_connection_per_request(api):
    salt, seen = api
    before = set(seen["peers"])
    out = salt.apiserver.ttfb(count=20, interval=0.02)
    assert out["ok"] == 20 and out["errors"] == 0
    assert 0 < out["ttfb_p50_ms"] <= out["ttfb_p95_ms"] <= out["ttfb_p99_ms"] <= out["ttfb_max_ms"]
    assert len(seen["peers"] - before) == 20  # 20 different client ports: 20 connections
    bad = salt.apiserver.ttfb(path="/broken", count=3, interval=0.01)
    assert bad["errors"] == 3 and bad["last_error"] == "HTTP 503" and "ttfb_p50_ms" not in bad


def test_unreachable_server_is_counted_not_raised(api, tmp_path):
    salt, _ = api
    out = salt.apiserver.ttfb(
        count=2, interval=0.01, server=f"https://127.0.0.1:{free_port()}", timeout=1
    )
    assert out["errors"] == 2 and out["ok"] == 0 and out["last_error"]
