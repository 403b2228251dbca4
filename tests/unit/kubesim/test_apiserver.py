"""kube-apiserver stand-in over real etcd 3.5, both on loopback, no root: authentication
(x509, bearer, anonymous), authorization, routing, discovery, health, metrics, audit, watch
and graceful shutdown, as a client sees them over TLS."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from kubesim import pki
from kubesim.pki import CertSpec

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))

from lab.kubesim.build import etcd_binaries  # noqa: E402

POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  nonResourceURLs: ["/readyz*", "/livez*"]
- level: RequestResponse
  resources: [{group: "", resources: [configmaps]}]
- level: Metadata
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def issue(pki_dir: Path, base: str, ca: tuple, spec: CertSpec) -> None:
    cert, key = pki.sign_leaf(spec, *ca)
    pki.write_pair(pki_dir, base, cert, key)


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"{proc.args[0]} exited with {proc.returncode}"
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"port {port} never opened")


class Cluster:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.pki = root / "pki"
        self.port = free_port()
        self.audit_log = root / "audit.log"
        self.procs: list[subprocess.Popen] = []

    def start(self) -> None:
        ca = pki.make_ca("kubernetes")
        etcd_ca = pki.make_ca("etcd-ca")
        pki.write_pair(self.pki, "ca", *ca)
        pki.write_pair(self.pki, "etcd/ca", *etcd_ca)
        lo = {"dns_names": ["localhost"], "ips": ["127.0.0.1"]}
        issue(
            self.pki,
            "etcd/server",
            etcd_ca,
            CertSpec("s", "", "", "etcd", server=True, client=True, **lo),
        )
        issue(self.pki, "etcd-client", etcd_ca, CertSpec("c", "", "", "apiserver", client=True))
        issue(self.pki, "apiserver", ca, CertSpec("a", "", "", "kube-apiserver", server=True, **lo))
        admin = CertSpec("adm", "", "", "kubernetes-admin", ["kubeadm:cluster-admins"], client=True)
        issue(self.pki, "admin", ca, admin)
        issue(self.pki, "nobody", ca, CertSpec("n", "", "", "jane", ["devs"], client=True))
        (self.root / "policy.yaml").write_text(POLICY)
        client_port, peer_port = free_port(), free_port()
        etcd = subprocess.Popen(
            [
                str(etcd_binaries()["etcd"]),
                f"--data-dir={self.root / 'etcd'}",
                "--name=default",
                f"--listen-client-urls=https://127.0.0.1:{client_port}",
                f"--advertise-client-urls=https://127.0.0.1:{client_port}",
                f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-cluster=default=http://127.0.0.1:{peer_port}",
                f"--cert-file={self.pki}/etcd/server.crt",
                f"--key-file={self.pki}/etcd/server.key",
                f"--trusted-ca-file={self.pki}/etcd/ca.crt",
                "--client-cert-auth=true",
                "--listen-metrics-urls=",
            ],
            stdout=subprocess.DEVNULL,
            stderr=(self.root / "etcd.log").open("w"),
        )
        self.procs.append(etcd)
        wait_port(client_port, etcd)
        env = dict(os.environ, PYTHONPATH=str(REPO / "lab" / "kubesim"))
        env.pop("KUBESIM_POD_MOUNTS", None)
        self.apiserver = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kubesim.component",
                "kube-apiserver",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.port}",
                "--advertise-address=127.0.0.1",
                f"--etcd-servers=https://127.0.0.1:{client_port}",
                f"--etcd-cafile={self.pki}/etcd/ca.crt",
                f"--etcd-certfile={self.pki}/etcd-client.crt",
                f"--etcd-keyfile={self.pki}/etcd-client.key",
                f"--tls-cert-file={self.pki}/apiserver.crt",
                f"--tls-private-key-file={self.pki}/apiserver.key",
                f"--client-ca-file={self.pki}/ca.crt",
                f"--audit-policy-file={self.root / 'policy.yaml'}",
                f"--audit-log-path={self.audit_log}",
                "--shutdown-delay-duration=2s",
                "--enable-bootstrap-token-auth=true",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=(self.root / "apiserver.log").open("w"),
        )
        self.procs.append(self.apiserver)
        wait_port(self.port, self.apiserver)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)

    def context(self, user: str | None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        if user:
            ctx.load_cert_chain(self.pki / f"{user}.crt", self.pki / f"{user}.key")
        return ctx

    def call(
        self,
        method: str,
        path: str,
        body: dict | None = None,
        *,
        user: str | None = "admin",
        headers: dict | None = None,
        ctype: str = "application/json",
    ) -> tuple[int, bytes, http.client.HTTPResponse]:
        conn = http.client.HTTPSConnection(
            "127.0.0.1", self.port, context=self.context(user), timeout=20
        )
        data = json.dumps(body).encode() if body is not None else None
        hdrs = {"Content-Type": ctype, **(headers or {})}
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        out = resp.read()
        conn.close()
        return resp.status, out, resp


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    cluster = Cluster(tmp_path_factory.mktemp("apiserver"))
    try:
        cluster.start()
        deadline = time.monotonic() + 60
        while cluster.call("GET", "/readyz")[0] != 200:
            assert time.monotonic() < deadline, (cluster.root / "apiserver.log").read_text()
            time.sleep(0.2)
        yield cluster
    finally:
        cluster.stop()


CM = "/api/v1/namespaces/default/configmaps"


def test_health_version_and_discovery(api):
    code, body, _ = api.call("GET", "/readyz?verbose", user=None)
    assert code == 200 and "[+]etcd ok" in body.decode() and "readyz check passed" in body.decode()
    code, body, _ = api.call("GET", "/version", user=None)
    assert code == 200 and json.loads(body)["gitVersion"] == "v1.30.0"
    code, body, _ = api.call("GET", "/api")
    assert json.loads(body)["serverAddressByClientCIDRs"][0]["serverAddress"] == (
        f"127.0.0.1:{api.port}"
    )
    code, body, _ = api.call("GET", "/apis")
    assert "coordination.k8s.io" in {g["name"] for g in json.loads(body)["groups"]}
    code, body, _ = api.call("GET", "/apis/coordination.k8s.io/v1")
    assert {r["name"] for r in json.loads(body)["resources"]} >= {"leases"}
    assert api.call("GET", "/nowhere")[:2] == (404, b"404 page not found\n")


def test_authentication_and_authorization(api):
    code, body, _ = api.call("GET", CM, user=None)
    assert code == 403
    assert json.loads(body)["message"] == (
        'configmaps is forbidden: User "system:anonymous" cannot list resource "configmaps" '
        'in API group "" in the namespace "default"'
    )
    code, body, _ = api.call("GET", CM + "/x", user="nobody")
    assert (
        code == 403
        and 'User "jane" cannot get resource "configmaps"' in json.loads(body)["message"]
    )
    code, body, _ = api.call("GET", "/metrics", user="nobody")
    assert code == 403 and json.loads(body)["message"] == (
        'forbidden: User "jane" cannot get path "/metrics"'
    )
    code, _, _ = api.call("GET", CM, user=None, headers={"Authorization": "Bearer abcdef.0123"})
    assert code == 401


def test_crud_conflict_and_bad_request(api):
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c1"}, "data": {"a": "1"}}
    code, body, _ = api.call("POST", CM, cm)
    assert code == 201
    created = json.loads(body)
    assert api.call("POST", CM, cm)[0] == 409
    stale = dict(created, data={"a": "2"})
    assert api.call("PUT", f"{CM}/c1", stale)[0] == 200
    code, body, _ = api.call("PUT", f"{CM}/c1", dict(created, data={"a": "3"}))
    assert code == 409 and json.loads(body)["reason"] == "Conflict"
    code, body, _ = api.call(
        "PATCH", f"{CM}/c1", {"data": {"b": "2"}}, ctype="application/merge-patch+json"
    )
    assert code == 200 and json.loads(body)["data"] == {"a": "2", "b": "2"}
    code, body, _ = api.call("GET", CM + "?labelSelector=%3D%3D%3D")
    assert code == 400
    assert api.call("DELETE", f"{CM}/c1")[0] == 200
    assert api.call("GET", f"{CM}/c1")[0] == 404


def test_metrics_count_requests_by_verb_resource_scope_and_code(api):
    api.call("GET", f"{CM}/absent")
    api.call("GET", CM)
    _, body, _ = api.call("GET", "/metrics")
    text = body.decode()
    get = (
        'apiserver_request_total{code="404",component="apiserver",dry_run="",group="",'
        'resource="configmaps",scope="resource",subresource="",verb="GET",version="v1"}'
    )
    lst = (
        'apiserver_request_duration_seconds_count{component="apiserver",dry_run="",group="",'
        'resource="configmaps",scope="namespace",subresource="",verb="LIST",version="v1"}'
    )
    assert get in text and lst in text
    assert 'apiserver_request_total{code="200",component="apiserver",dry_run="",group="",' in text


def test_audit_follows_the_policy(api):
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "audited"}, "data": {}}
    assert api.call("POST", CM, cm)[0] == 201
    api.call("GET", "/readyz", user=None)
    events = [json.loads(line) for line in api.audit_log.read_text().splitlines()]
    assert events and all(e["stage"] == "ResponseComplete" for e in events)
    assert not any(e["requestURI"].startswith("/readyz") for e in events)
    created = [
        e
        for e in events
        if e["verb"] == "create"
        and (e.get("objectRef") or {}).get("name") == "audited"
        and e["user"]["username"] == "kubernetes-admin"
    ]
    assert created and created[-1]["level"] == "RequestResponse"
    assert created[-1]["requestObject"]["metadata"]["name"] == "audited"
    assert created[-1]["responseObject"]["metadata"]["name"] == "audited"
    assert created[-1]["responseStatus"]["code"] == 201
    # A create's objectRef names the object sent (audit.LogRequestObject).
    assert created[-1]["objectRef"] == {
        "resource": "configmaps",
        "apiVersion": "v1",
        "namespace": "default",
        "name": "audited",
    }
    meta = [e for e in events if e["requestURI"] == "/api"]
    assert meta and meta[-1]["level"] == "Metadata" and "responseObject" not in meta[-1]


def test_watch_streams_events_for_matching_objects(api):
    seen: list[tuple[str, str]] = []
    ready = threading.Event()

    def follow() -> None:
        ctx = api.context("admin")
        conn = http.client.HTTPSConnection("127.0.0.1", api.port, context=ctx, timeout=20)
        conn.request("GET", CM + "?watch=true&labelSelector=w%3D1&timeoutSeconds=5")
        resp = conn.getresponse()
        assert resp.status == 200
        ready.set()
        for line in resp:
            ev = json.loads(line)
            seen.append((ev["type"], ev["object"]["metadata"]["name"]))
        conn.close()

    t = threading.Thread(target=follow)
    t.start()
    assert ready.wait(10)  # headers sent: the etcd watch starts from the list revision
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "w", "labels": {"w": "1"}}}
    other = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "o"}}
    assert api.call("POST", CM, cm)[0] == 201
    assert api.call("POST", CM, other)[0] == 201
    api.call("PATCH", f"{CM}/w", {"data": {"x": "1"}}, ctype="application/merge-patch+json")
    assert api.call("DELETE", f"{CM}/w")[0] == 200
    t.join(15)
    assert seen == [("ADDED", "w"), ("MODIFIED", "w"), ("DELETED", "w")]


def test_sigterm_fails_readyz_then_closes_the_port_after_the_delay(api):
    api.apiserver.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    while (answer := api.call("GET", "/readyz?verbose", user=None))[0] == 200:
        # within the 2 s shutdown delay, with slack for a loaded 2-core machine
        assert time.monotonic() - sent < 1.5, "readyz still passes 1.5 s after SIGTERM"
    code, body, _ = answer
    assert code == 500 and "[-]shutdown failed: reason withheld" in body.decode()
    assert api.call("GET", "/livez", user=None)[0] == 200
    assert api.apiserver.wait(timeout=30) == 0
    # the port stays open for --shutdown-delay-duration (2 s) after the signal
    assert time.monotonic() - sent >= 2.0
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", api.port)) != 0
