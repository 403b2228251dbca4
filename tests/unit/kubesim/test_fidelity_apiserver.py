"""kube-apiserver fidelity where etcd faults, graceful shutdown, eviction and metrics show:
real etcd 3.5 members and kubesim apiservers on loopback (lab/kubesim/loopback.py), no root.

Each test names the upstream source it holds kubesim to. The apiservers run with
--request-timeout=4s (upstream default 1m0s; the flag is upstream's) to keep them short.
"""

from __future__ import annotations

import base64
import json
import re
import signal
import socket
import ssl
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))

from lab.kubesim.loopback import Loopback  # noqa: E402

DEADLINE = 4.0
MARGIN = 1.5  # scheduling and TLS on a loaded 2-core machine
CM = "/api/v1/namespaces/default/configmaps"
TOKEN = "abcdef.0123456789abcdef"


@pytest.fixture(scope="module")
def lo(tmp_path_factory):
    with Loopback(tmp_path_factory.mktemp("fidelity"), members=3) as cluster:
        cluster.local = cluster.apiserver([0], f"--request-timeout={DEADLINE:g}s")
        cluster.all = cluster.apiserver([0, 1, 2], f"--request-timeout={DEADLINE:g}s")
        cluster.wait_ready(cluster.local)
        cluster.wait_ready(cluster.all)
        cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "fid"}}
        assert cluster.call(cluster.all, "POST", CM, cm)[0] == 201
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "bootstrap.kubernetes.io/token",
            "metadata": {"name": "bootstrap-token-abcdef", "namespace": "kube-system"},
            "data": {
                k: base64.b64encode(v.encode()).decode()
                for k, v in {
                    "token-id": "abcdef",
                    "token-secret": "0123456789abcdef",
                    "usage-bootstrap-authentication": "true",
                }.items()
            },
        }
        path = "/api/v1/namespaces/kube-system/secrets"
        assert cluster.call(cluster.all, "POST", path, secret)[0] == 201
        yield cluster


def _names(body: bytes) -> set[str]:
    return {i["metadata"]["name"] for i in json.loads(body)["items"]}


def _metric(text: str, name: str, **labels: str) -> float | None:
    """The value of the series `name` whose labels include `labels`."""
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}", 1)[0]))
        if all(have.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_local_etcd_stopped_get_waits_for_the_deadline_then_504_while_the_cache_answers(lo):
    """Upstream, with --etcd-servers naming only the stopped member: clientv3 waits for a
    ready connection (client/v3/options.go defaultWaitForReady), so a GET hangs until the
    request deadline (endpoints/filters/request_deadline.go: --request-timeout, or a shorter
    ?timeout=) and the timeout filter answers 504 "Timeout: request did not complete within
    the allotted timeout" (server/filters/timeout.go), counted in
    apiserver_request_terminations_total; a resourceVersion=0 list is served by the watch
    cache (storage/cacher/cacher.go) and bootstrap tokens by the informer cache
    (pkg/kubeapiserver/authenticator/config.go), so both keep answering; /readyz fails."""
    api = lo.local
    deadline = time.monotonic() + 30
    while "fid" not in _names(lo.call(api, "GET", CM + "?resourceVersion=0")[1]):
        assert time.monotonic() < deadline, "the cache never saw the ConfigMap"
        time.sleep(0.2)
    lo.stop_member(0)
    try:
        hung: list = []
        getter = threading.Thread(
            target=lambda: hung.append(lo.call(api, "GET", f"{CM}/fid", timeout=20))
        )
        getter.start()
        time.sleep(1.5)
        metrics = lo.call(api, "GET", "/metrics")[1].decode()
        getter.join()
        code, body, _, took = hung[0]
        assert code == 504, body
        assert DEADLINE * 0.9 <= took <= DEADLINE + MARGIN, took
        status = json.loads(body)
        assert status["reason"] == "Timeout" and status["code"] == 504
        assert status["message"] == "Timeout: request did not complete within the allotted timeout"
        # the gauge is the highest count of the last whole second: the hanging GET
        assert _metric(metrics, "apiserver_current_inflight_requests", request_kind="readOnly") >= 1
        assert _metric(metrics, "apiserver_current_inflight_requests", request_kind="mutating") == 0
        code, _, _, took = lo.call(api, "GET", f"{CM}/fid?timeout=1s")
        assert code == 504 and 0.9 <= took <= 1 + MARGIN, took
        code, body, _, took = lo.call(api, "GET", CM + "?resourceVersion=0")
        assert code == 200 and "fid" in _names(body) and took < 1.0, (code, took)
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        code, body, _, _ = lo.call(
            api,
            "GET",
            "/api/v1/namespaces/kube-system/configmaps?resourceVersion=0",
            None,
            None,
            bearer,
        )
        assert code == 200, body  # authenticated from the informer cache, etcd down
        code, body, _, took = lo.call(api, "GET", "/readyz?verbose", user=None)
        assert code == 500 and "[-]etcd failed: reason withheld" in body.decode()
        text = lo.call(api, "GET", "/metrics")[1].decode()
        assert (
            _metric(
                text,
                "apiserver_request_terminations_total",
                code="504",
                verb="GET",
                resource="configmaps",
                scope="resource",
                component="apiserver",
            )
            >= 2
        )
        assert _metric(text, "etcd_request_errors_total", operation="get", type="configmaps") >= 2
    finally:
        lo.start_member(0)
    lo.wait_ready(api, timeout=60)  # after gRPC's redial back-off (1 s x 1.6^n)


def test_apiserver_given_every_member_keeps_serving_when_one_stops(lo):
    """clientv3 balances over every --etcd-servers endpoint (client/v3/client.go,
    round_robin) and leaves a broken one: listing all three members keeps reads, writes and
    /readyz working while one member is down (the other two keep quorum)."""
    api = lo.all
    lo.stop_member(0)
    try:
        for i in range(6):  # enough calls to reach every endpoint of the rotation
            code, _, _, took = lo.call(api, "GET", f"{CM}/fid")
            assert code == 200 and took < 2.0, (i, code, took)
        cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "during-outage"}}
        code, body, _, _ = lo.call(api, "POST", CM, cm)
        assert code == 201, body
        time.sleep(1.2)  # past timeout/2 of the health checks' limiter: fresh reads
        code, body, _, _ = lo.call(api, "GET", "/readyz?verbose", user=None)
        assert code == 200, body
    finally:
        lo.start_member(0)
    assert lo.call(api, "DELETE", f"{CM}/during-outage")[0] == 200


def test_metrics_carry_upstream_names_and_labels(lo):
    """endpoints/metrics/metrics.go: WATCH recorded when it ends, a create is
    resource-scoped (CleanScope), the health endpoints are labelled subresource=<path> with
    no component (healthz.go InstallPathHandler), apiserver_request_sli_duration_seconds
    without dry_run; storage/etcd3/metrics: etcd_request_duration_seconds{operation,type}."""
    api = lo.all
    lo.call(api, "GET", CM + "?watch=true&timeoutSeconds=1")
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "metrics-probe"}}
    assert lo.call(api, "POST", CM, cm)[0] == 201
    lo.call(api, "GET", "/readyz", user=None)
    text = lo.call(api, "GET", "/metrics")[1].decode()
    assert "# TYPE apiserver_request_sli_duration_seconds histogram" in text
    assert "# HELP apiserver_current_inflight_requests [STABLE]" in text
    common = {"group": "", "version": "v1", "resource": "configmaps", "component": "apiserver"}
    watch = _metric(
        text, "apiserver_request_duration_seconds_count", verb="WATCH", scope="namespace", **common
    )
    assert watch and watch >= 1
    assert _metric(
        text, "apiserver_request_total", verb="POST", scope="resource", code="201", **common
    )
    assert _metric(
        text,
        "apiserver_request_total",
        verb="GET",
        subresource="/readyz",
        component="",
        scope="",
        resource="",
        code="200",
    )
    sli = [
        ln for ln in text.splitlines() if ln.startswith("apiserver_request_sli_duration_seconds")
    ]
    assert sli and not any("dry_run=" in ln for ln in sli)
    assert _metric(
        text, "etcd_request_duration_seconds_count", operation="create", type="configmaps"
    )
    lease = _metric(text, "etcd_requests_total", type="secrets")
    assert lease is not None or _metric(text, "etcd_requests_total", operation="create")
    assert lo.call(api, "DELETE", f"{CM}/metrics-probe")[0] == 200


def _pod(name: str, ready: bool) -> tuple[dict, dict]:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "evict"}},
        "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.9"}]},
    }
    status = {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
    }
    return pod, status


def test_eviction_follows_the_pdb_rules(lo):
    """pkg/registry/core/pod/storage/eviction.go: a not-Ready pod is evicted without using
    the budget when currentHealthy >= desiredHealthy > 0; a Ready pod with no disruption
    allowed gets 429 without Retry-After; a PDB not yet observed at its generation gets 429
    with Retry-After: 10 (createTooManyRequestsError)."""
    api = lo.all
    pods = "/api/v1/namespaces/default/pods"
    for name, ready in (("unready", False), ("ready", True)):
        pod, status = _pod(name, ready)
        code, body, _, _ = lo.call(api, "POST", pods, pod)
        assert code == 201, body
        obj = json.loads(body)
        obj["status"] = status
        assert lo.call(api, "PUT", f"{pods}/{name}/status", obj)[0] == 200
    pdbs = "/apis/policy/v1/namespaces/default/poddisruptionbudgets"
    pdb = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "evict"},
        "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "evict"}}},
    }
    code, body, _, _ = lo.call(api, "POST", pdbs, pdb)
    assert code == 201, body
    obj = json.loads(body)
    gen = obj["metadata"].get("generation", 1)
    obj["status"] = {
        "observedGeneration": gen,
        "currentHealthy": 2,
        "desiredHealthy": 2,
        "expectedPods": 3,
        "disruptionsAllowed": 0,
    }
    code, body, _, _ = lo.call(api, "PUT", f"{pdbs}/evict/status", obj)
    assert code == 200, body

    def evict(name: str):
        body = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name}}
        return lo.call(api, "POST", f"{pods}/{name}/eviction", body)

    code, body, headers, _ = evict("ready")
    assert code == 429 and "Retry-After" not in headers, (code, headers)
    assert "needs 2 healthy pods and has 2 currently" in body.decode()
    code, body, _, _ = evict("unready")
    assert code == 201, body
    assert lo.call(api, "GET", f"{pods}/unready")[0] == 404
    obj = json.loads(lo.call(api, "GET", f"{pdbs}/evict")[1])
    obj["status"]["observedGeneration"] = gen - 1
    assert lo.call(api, "PUT", f"{pdbs}/evict/status", obj)[0] == 200
    code, body, headers, _ = evict("ready")
    assert code == 429 and headers.get("Retry-After") == "10", (code, headers)
    assert "is still being processed by the server" in body.decode()
    lo.call(api, "DELETE", f"{pdbs}/evict")
    lo.call(api, "DELETE", f"{pods}/ready?gracePeriodSeconds=0")


def _keepalive(lo, api) -> ssl.SSLSocket:
    """A TLS connection that has answered one request and is now idle (kept alive)."""
    sock = lo.context("admin").wrap_socket(
        socket.create_connection(("127.0.0.1", api.port), timeout=10), server_hostname="localhost"
    )
    sock.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
    answer = b""
    while not answer.endswith(b"\r\n\r\nok"):  # headers, then the 2-byte body
        answer += sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 200"), answer
    return sock


def _watch(lo, api) -> ssl.SSLSocket:
    sock = lo.context("admin").wrap_socket(
        socket.create_connection(("127.0.0.1", api.port), timeout=10), server_hostname="localhost"
    )
    sock.sendall(f"GET {CM}?watch=true HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert sock.recv(4096).startswith(b"HTTP/1.1 200")
    return sock


def test_shutdown_closes_idle_keepalive_and_does_not_wait_for_watches(lo):
    """genericapiserver.go: after --shutdown-delay-duration the listener closes and
    net/http's Shutdown closes idle keep-alive connections; watches are long-running and,
    with --shutdown-watch-termination-grace-period=0 (default), not waited for."""
    api = lo.apiserver([1, 2], "--shutdown-delay-duration=1s")
    lo.wait_ready(api)
    idle = _keepalive(lo, api)
    watch = _watch(lo, api)
    sent = time.monotonic()
    api.proc.send_signal(signal.SIGTERM)
    idle.settimeout(5)
    assert idle.recv(4096) == b""  # closed by the server, not answered again
    closed = time.monotonic() - sent
    assert 1.0 <= closed <= 1.0 + MARGIN, closed
    assert api.proc.wait(timeout=10) == 0
    assert time.monotonic() - sent <= 1.0 + 2 * MARGIN  # the open watch did not hold it
    watch.close()


def test_shutdown_send_retry_after_answers_429_until_drained(lo):
    """--shutdown-send-retry-after (genericapiserver.go, server/filters/with_retry_after.go):
    after the delay the listener stays open until the in-flight requests have drained, and
    meanwhile every new request but /readyz, /livez, /healthz, /metrics gets 429 "The
    apiserver is shutting down, please try again later." with Retry-After: 5 and
    Connection: close. A GET waiting on a frozen etcd member keeps a request in flight."""
    api = lo.apiserver(
        [2],
        f"--request-timeout={DEADLINE:g}s",
        "--shutdown-delay-duration=1s",
        "--shutdown-send-retry-after=true",
    )
    lo.wait_ready(api)
    lo.stop_member(2, signal.SIGSTOP)
    try:
        held: list = []
        hold = threading.Thread(target=lambda: held.append(lo.call(api, "GET", f"{CM}/fid")))
        hold.start()
        time.sleep(0.3)
        api.proc.send_signal(signal.SIGTERM)
        time.sleep(1.3)
        code, body, headers, _ = lo.call(api, "GET", f"{CM}/fid")
        assert code == 429, body
        assert headers.get("Retry-After") == "5" and headers.get("Connection") == "close"
        assert body == b"The apiserver is shutting down, please try again later.\n"
        code, body, _, _ = lo.call(api, "GET", "/readyz?verbose", user=None)
        assert code == 500 and "[-]shutdown failed" in body.decode()
        hold.join()
        assert held[0][0] == 504  # the in-flight request ended at its deadline
    finally:
        lo.stop_member(2, signal.SIGCONT)
    assert api.proc.wait(timeout=10) == 0
