"""apiserver module against a real TLS server that demands client certificates, the way
kube-apiserver does: /readyz?verbose parsed, TTFB over a fresh connection per request,
errors counted. (The server answers with upstream-shaped bodies; the lab runs the real
probe against kubesim.)"""

import base64
import http.server
import json
import ssl
import threading
from pathlib import Path

import pytest
import yaml
from khm_support import free_port, issue, loaders, make_ca

LEASE = {
    "kind": "Lease",
    "apiVersion": "coordination.k8s.io/v1",
    "metadata": {
        "name": "{name}",
        "namespace": "kube-system",
        "resourceVersion": "4711",
        "uid": "5f1e0d2c-6a7b-4c8d-9e0f-1a2b3c4d5e6f",
        "creationTimestamp": "2024-07-02T14:45:01Z",
    },
    "spec": {
        "holderIdentity": "cp-2_7a3e5c1b-9d2f-4e6a-8b0c-1d2e3f4a5b6c",
        "leaseDurationSeconds": 15,
        "acquireTime": "2024-07-02T14:45:01.000000Z",
        "renewTime": "2024-07-02T15:02:11.123456Z",
        "leaseTransitions": 4,
    },
}
NODES = {
    "kind": "NodeList",
    "apiVersion": "v1",
    "metadata": {"resourceVersion": "4712"},
    "items": [
        {
            "metadata": {
                "name": f"cp-{i}",
                "labels": {"node-role.kubernetes.io/control-plane": ""},
            },
            "spec": {"unschedulable": i == 3},
            "status": {
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True" if i != 2 else "Unknown",
                        "reason": "KubeletReady" if i != 2 else "NodeStatusUnknown",
                        "lastHeartbeatTime": "2024-07-02T15:02:11Z",
                        "lastTransitionTime": "2024-07-02T14:45:01Z",
                    }
                ],
                "nodeInfo": {
                    "machineID": f"{i:032x}",
                    "systemUUID": f"{i:08x}-0000-0000-0000-000000000000",
                    "bootID": f"b0{i:030x}",
                    "kernelVersion": "5.15.0-105-generic",
                    "osImage": "Ubuntu 22.04.4 LTS",
                    "containerRuntimeVersion": "containerd://1.7.12",
                    "kubeletVersion": "v1.30.0" if i != 1 else "v1.31.0",
                    "kubeProxyVersion": "v1.30.0",
                    "operatingSystem": "linux",
                    "architecture": "amd64",
                },
            },
        }
        for i in (1, 2, 3)
    ],
}
SAMPLES = Path(__file__).resolve().parents[2] / "unit" / "modules" / "samples"
READYZ = (SAMPLES / "readyz_verbose.txt").read_text()
LIVEZ = (SAMPLES / "livez_verbose.txt").read_text()


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    base = tmp_path_factory.mktemp("api")
    ca = make_ca(base, "kubernetes")
    crt, key = issue(base, "apiserver", ca, "kube-apiserver", sans=["127.0.0.1"], server=True)
    ccrt, ckey = issue(base, "admin", ca, "kubernetes-admin", client=True, org="system:masters")
    seen = {"connections": 0, "count": 0, "paths": []}

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: one handler serves a whole connection

        def setup(self):
            seen["connections"] += 1  # once per accepted connection
            super().setup()

        def do_GET(self):  # noqa: N802
            seen["count"] += 1
            seen["paths"].append(self.path)
            if self.path.startswith("/readyz"):
                status, body = 500, READYZ.encode()
            elif self.path.startswith("/livez"):
                status, body = 200, LIVEZ.encode()
            elif self.path == "/broken":
                status, body = 503, b"overloaded"
            elif self.path.startswith(
                "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/"
            ):
                name = self.path.rsplit("/", 1)[1]
                obj = json.loads(json.dumps(LEASE).replace("{name}", name))
                status, body = 200, json.dumps(obj).encode()
            elif self.path.startswith("/api/v1/nodes"):
                status, body = 200, json.dumps(NODES).encode()
            else:
                status, body = 200, b'{"kind":"PodList","apiVersion":"v1","items":[]}'
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
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


def test_livez_verbose_over_mutual_tls(api):
    salt, seen = api
    ret = salt.apiserver.livez()
    assert seen["paths"][-1] == "/livez?verbose"
    assert ret["status"] == 200 and ret["ok"] is True and ret["passed"] is True
    assert ret["failed"] == [] and len(ret["checks"]) == 18
    assert [c["name"] for c in ret["checks"][:3]] == ["ping", "log", "etcd"]
    assert ret["server"] == salt.apiserver.livez(server=ret["server"] + "/")["server"]


def test_ttfb_uses_a_fresh_connection_per_request(api):
    salt, seen = api
    before = seen["connections"], seen["count"]
    out = salt.apiserver.ttfb(count=20, interval=0.02)
    assert out["ok"] == 20 and out["errors"] == 0
    assert 0 < out["ttfb_p50_ms"] <= out["ttfb_p95_ms"] <= out["ttfb_p99_ms"] <= out["ttfb_max_ms"]
    # 20 requests on 20 connections (not client ports: loopback may reuse one in TIME_WAIT)
    assert (seen["connections"] - before[0], seen["count"] - before[1]) == (20, 20)
    bad = salt.apiserver.ttfb(path="/broken", count=3, interval=0.01)
    assert bad["errors"] == 3 and bad["last_error"] == "HTTP 503" and "ttfb_p50_ms" not in bad


def test_ttfb_timeline_and_longest_stall(api):
    salt, _ = api
    out = salt.apiserver.ttfb(count=10, interval=0.05, timeline=True)
    times = [t for t, _, _ in out["timeline"]]
    assert len(times) == 10 and times == sorted(times)
    assert all(ms is not None and err == "" for _, ms, err in out["timeline"])
    # Answers every 50 ms: no stall much longer than the interval plus one answer.
    assert 0 < out["longest_stall_ms"] < 1000
    # Failures are recorded with their reason, and a run with no answer stalls throughout.
    bad = salt.apiserver.ttfb(path="/broken", count=4, interval=0.05, timeline=True)
    assert [ms for _, ms, _ in bad["timeline"]] == [None] * 4
    assert {err for _, _, err in bad["timeline"]} == {"HTTP 503"}
    assert bad["longest_stall_ms"] >= 150


def test_unreachable_server_is_counted_not_raised(api, tmp_path):
    salt, _ = api
    out = salt.apiserver.ttfb(
        count=2, interval=0.01, server=f"https://127.0.0.1:{free_port()}", timeout=1
    )
    assert out["errors"] == 2 and out["ok"] == 0 and out["last_error"]


def test_leases_and_nodes_through_the_kubernetes_client(api):
    salt, _ = api
    leases = salt.apiserver.leases()
    assert [lease["name"] for lease in leases] == ["kube-controller-manager", "kube-scheduler"]
    assert all(lease["holder_node"] == "cp-2" and lease["transitions"] == 4 for lease in leases)
    assert leases[0]["lease_duration_s"] == 15
    nodes = {n["name"]: n for n in salt.apiserver.nodes()}
    assert nodes["cp-1"]["ready"] and nodes["cp-1"]["kubelet_version"] == "v1.31.0"
    assert not nodes["cp-2"]["ready"] and nodes["cp-2"]["ready_reason"] == "NodeStatusUnknown"
    assert nodes["cp-3"]["cordoned"] and nodes["cp-3"]["roles"] == ["control-plane"]
