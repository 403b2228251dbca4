"""
The default RBAC roles, SubjectAccessReview and delegated authorization on a running kubesim
kube-apiserver (real etcd on loopback, not the lab), users being client certificates of the
cluster CA (user = CN, groups = O):

- the rbac/bootstrap-roles post-start hook stores cluster-admin, admin, edit, view,
  system:monitoring... (storage_rbac.go, bootstrappolicy/policy.go): a member of
  system:monitoring reads /metrics, a user with no group gets 403; a group bound to `view`
  lists pods but cannot create them; /readyz waits for the hook; a restart reconciles by
  union and leaves an `autoupdate: "false"` role alone, and the hook waits for an etcd that
  is down when the apiserver starts;
- POST /apis/authorization.k8s.io/v1/subjectaccessreviews answers with the request chain's
  decision (subjectaccessreview/rest.go), for its callers only;
- KCM's secure port (controllers/common.py serve_healthz) authorizes /metrics by a review to
  this apiserver through an --authorization-kubeconfig, 500 when it is unreachable.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import time

import pytest
from kubesim import kubeconfig, pki
from kubesim.controllers import delegating
from kubesim.controllers.common import serve_healthz
from kubesim.pki import CertSpec

from lab.kubesim.loopback import Loopback, free_port

RBAC = "/apis/rbac.authorization.k8s.io/v1"
SAR = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
PODS = "/api/v1/namespaces/default/pods"
USERS = {  # cert base: (CN, O)
    "mon": ("prometheus", ["system:monitoring"]),
    "nobody": ("nobody", []),
    "alice": ("alice", ["team-a"]),
    "kcm": ("system:kube-controller-manager", []),
}


@pytest.fixture(scope="module")
def lo(tmp_path_factory):
    root = tmp_path_factory.mktemp("rbacboot")
    with Loopback(root, members=1) as cluster:
        ca = pki.load_pair(cluster.pki, "ca")
        for base, (cn, orgs) in USERS.items():
            spec = CertSpec(base, base, "ca", cn, orgs, client=True)
            pki.write_pair(cluster.pki, base, *pki.sign_leaf(spec, *ca))
        cluster.api = cluster.apiserver([0])
        cluster.wait_ready(cluster.api)
        yield cluster


def call(lo, method: str, path: str, body=None, user: str | None = "admin", *, api=None):
    code, out, _, _ = lo.call(api or lo.api, method, path, body, user)
    try:
        return code, json.loads(out)
    except ValueError:
        return code, out.decode()


def until(fn, within: float = 15.0):
    """fn() until truthy (the RBAC authorizer reads the watch cache: a write shows soon)."""
    deadline = time.monotonic() + within
    while not (got := fn()):
        assert time.monotonic() < deadline, "never"
        time.sleep(0.1)
    return got


def bind(lo, name: str, role: str, group: str) -> None:
    crb = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}],
    }
    assert call(lo, "POST", f"{RBAC}/clusterrolebindings", crb)[0] == 201


def test_the_hook_stores_the_default_roles_before_readyz(lo):
    code, body = call(lo, "GET", "/readyz?verbose", user=None)
    assert code == 200 and "[+]poststarthook/rbac/bootstrap-roles ok" in body.splitlines()
    code, role = call(lo, "GET", f"{RBAC}/clusterroles/system:monitoring")
    assert code == 200, role
    assert role["metadata"]["labels"] == {"kubernetes.io/bootstrapping": "rbac-defaults"}
    assert role["metadata"]["annotations"] == {
        "rbac.authorization.kubernetes.io/autoupdate": "true"
    }
    assert "/metrics" in role["rules"][0]["nonResourceURLs"]
    code, view = call(lo, "GET", f"{RBAC}/clusterroles/view")
    assert view["aggregationRule"]["clusterRoleSelectors"] == [
        {"matchLabels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}}
    ]
    _, crbs = call(lo, "GET", f"{RBAC}/clusterrolebindings")
    subjects = {b["metadata"]["name"]: b["subjects"] for b in crbs["items"]}
    assert subjects["cluster-admin"] == [
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:masters"}
    ]
    assert [s["name"] for s in subjects["system:public-info-viewer"]] == [
        "system:authenticated",
        "system:unauthenticated",
    ]


def test_metrics_are_for_system_monitoring(lo):
    code, text = call(lo, "GET", "/metrics", user="mon")
    assert code == 200 and "apiserver_request_total" in text
    code, status = call(lo, "GET", "/metrics", user="nobody")
    assert code == 403, status
    assert status["message"] == 'forbidden: User "nobody" cannot get path "/metrics"'
    code, status = call(lo, "GET", "/metrics", user=None)
    assert code == 403 and '"system:anonymous"' in status["message"]
    assert call(lo, "GET", "/version", user="nobody")[0] == 200


def test_a_group_bound_to_view_reads_pods_but_does_not_write_them(lo):
    code, status = call(lo, "GET", PODS, user="alice")
    assert code == 403, status
    bind(lo, "team-a-view", "view", "team-a")
    until(lambda: call(lo, "GET", PODS, user="alice")[0] == 200)
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}}
    code, status = call(lo, "POST", PODS, pod, user="alice")
    assert code == 403, status
    assert status["message"] == (
        'pods is forbidden: User "alice" cannot create resource "pods" in API group "" '
        'in the namespace "default"'
    )
    assert call(lo, "GET", "/api/v1/namespaces/default/secrets", user="alice")[0] == 403


def review(user: str = "", groups=(), **attrs) -> dict:
    spec: dict = {"user": user, "groups": list(groups)} if groups else {"user": user}
    key = "nonResourceAttributes" if "path" in attrs else "resourceAttributes"
    return {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview"} | {
        "spec": spec | {key: attrs}
    }


def test_subject_access_review_answers_with_the_request_chains_decision(lo):
    _, groups = call(lo, "GET", "/apis")
    assert "authorization.k8s.io" in [g["name"] for g in groups["groups"]]
    _, found = call(lo, "GET", "/apis/authorization.k8s.io/v1")
    assert {r["name"]: r["verbs"] for r in found["resources"]} == {
        "subjectaccessreviews": ["create"]
    }
    bind(lo, "team-b-view", "view", "team-b")
    ask = review("bob", ["team-b"], verb="list", resource="pods", namespace="default")
    code, got = until(lambda: (r := call(lo, "POST", SAR, ask))[1]["status"]["allowed"] and r)
    assert code == 201 and got["kind"] == "SubjectAccessReview" and got["spec"] == ask["spec"]
    assert got["status"] == {
        "allowed": True,
        "reason": 'RBAC: allowed by ClusterRoleBinding "team-b-view" of ClusterRole "view" '
        'to Group "team-b"',
    }
    ask = review("bob", ["team-b"], verb="create", resource="pods", namespace="default")
    assert call(lo, "POST", SAR, ask)[1]["status"] == {"allowed": False}
    ask = review("p", ["system:monitoring"], path="/metrics", verb="get")
    assert call(lo, "POST", SAR, ask)[1]["status"]["reason"] == (
        'RBAC: allowed by ClusterRoleBinding "system:monitoring" of ClusterRole '
        '"system:monitoring" to Group "system:monitoring"'
    )
    ask = review("root", ["system:masters"], verb="delete", resource="nodes", name="n")
    assert call(lo, "POST", SAR, ask)[1]["status"] == {"allowed": True}
    assert call(lo, "POST", SAR, review("", path="/metrics", verb="get"), user="kcm")[0] == 422


def test_subject_access_review_refusals(lo):
    code, status = call(lo, "POST", SAR, review("", path="/metrics", verb="get"))
    assert code == 422 and status["message"] == (
        'SubjectAccessReview.authorization.k8s.io "" is invalid: spec.user: Invalid value: "": '
        "at least one of user or group must be specified"
    )
    code, status = call(lo, "POST", SAR, review("x", path="/metrics", verb="get"), user="nobody")
    assert code == 403 and status["message"] == (
        'subjectaccessreviews.authorization.k8s.io is forbidden: User "nobody" cannot create '
        'resource "subjectaccessreviews" in API group "authorization.k8s.io" at the cluster scope'
    )
    assert call(lo, "GET", SAR)[0] == 405


def get_port(lo, port: int, path: str, user: str | None) -> tuple[int, str]:
    ctx = ssl._create_unverified_context()  # the port's self-signed serving cert
    if user:
        ctx.load_cert_chain(lo.pki / f"{user}.crt", lo.pki / f"{user}.key")
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=20)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def secure_port(lo, server: str) -> tuple[int, delegating.DelegatingAuthorizer]:
    """KCM's serving port as run_component builds it, its authorizer from a kubeconfig."""
    conf = lo.root / f"kcm-{free_port()}.conf"
    ca, crt, key = ((lo.pki / f).read_bytes() for f in ("ca.crt", "kcm.crt", "kcm.key"))
    conf.write_text(kubeconfig.render("lo", server, ca, "kcm", crt, key))
    authz = delegating.from_flags({"authorization-kubeconfig": str(conf)})
    port = free_port()
    serve_healthz(
        "127.0.0.1",
        port,
        lambda: [("ping", True)],
        lambda: "leader_election_master_status 1\n",
        str(lo.pki / "ca.crt"),
        authorizer=authz,
    )
    return port, authz


def test_kcm_metrics_are_authorized_by_the_apiserver(lo):
    port, authz = secure_port(lo, f"https://127.0.0.1:{lo.api.port}")
    assert get_port(lo, port, "/healthz", None) == (200, "ok")
    code, body = get_port(lo, port, "/metrics", "mon")
    assert code == 200 and "leader_election_master_status 1" in body
    code, body = get_port(lo, port, "/metrics", "nobody")
    assert code == 403
    assert json.loads(body)["message"] == 'forbidden: User "nobody" cannot get path "/metrics"'
    assert get_port(lo, port, "/metrics", None)[0] == 403
    sent = authz.webhook.reviews
    assert sent == 3
    get_port(lo, port, "/metrics", "mon")  # within 10 s: the cached answer
    get_port(lo, port, "/metrics", "nobody")
    assert authz.webhook.reviews == sent


def test_kcm_metrics_fail_with_500_when_the_apiserver_is_unreachable(lo):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]  # nothing listens once closed
    port, _ = secure_port(lo, f"https://127.0.0.1:{closed}")
    code, body = get_port(lo, port, "/metrics", "mon")
    assert code == 500
    assert body == (
        'Internal Server Error: "/metrics": Post "https://127.0.0.1:'
        f'{closed}/apis/authorization.k8s.io/v1/subjectaccessreviews?timeout=10s": '
        f"dial tcp 127.0.0.1:{closed}: connect: connection refused\n"
    )
    assert get_port(lo, port, "/readyz", None) == (200, "ok")


def test_a_restart_reconciles_and_waits_for_etcd(lo):
    """Last: it edits the defaults and stops etcd."""
    path = f"{RBAC}/clusterroles/system:monitoring"
    mon = call(lo, "GET", path)[1]
    mon["rules"] = [{"nonResourceURLs": ["/metrics", "/debug/*"], "verbs": ["get"]}]
    assert call(lo, "PUT", path, mon)[0] == 200
    view = call(lo, "GET", f"{RBAC}/clusterroles/view")[1]
    view["metadata"]["annotations"]["rbac.authorization.kubernetes.io/autoupdate"] = "false"
    view["rules"] = []
    assert call(lo, "PUT", f"{RBAC}/clusterroles/view", view)[0] == 200
    assert call(lo, "DELETE", f"{RBAC}/clusterrolebindings/system:public-info-viewer")[0] == 200
    lo.stop_member(0)
    try:
        api = lo.apiserver([0], "--request-timeout=2s")
        code, body = call(
            lo, "GET", "/readyz/poststarthook/rbac/bootstrap-roles", None, None, api=api
        )
        assert (code, body) == (500, "internal server error: not finished\n")
        time.sleep(3.5)  # the hook's first attempt finds etcd down (2 s deadline)
    finally:
        lo.start_member(0)
    lo.wait_ready(api, timeout=45)
    assert api.proc.poll() is None
    log = api.log.read_text()
    assert "storage_rbac.go:187] unable to initialize clusterroles: Timeout: " in log, log[-3000:]
    assert "skipped reconcile-protected clusterrole.rbac.authorization.k8s.io/view with " in log
    assert "missing permissions: [{[get] [] [configmaps] [] []} {[list] [] [configmaps]" in log
    rules = call(lo, "GET", path, api=api)[1]["rules"]
    assert rules[0] == {"nonResourceURLs": ["/metrics", "/debug/*"], "verbs": ["get"]}
    urls = {u for r in rules for u in r["nonResourceURLs"]}
    assert {"/metrics/slis", "/livez/*", "/readyz", "/healthz/*"} <= urls
    assert call(lo, "GET", f"{RBAC}/clusterroles/view", api=api)[1]["rules"] == []
    code, crb = call(lo, "GET", f"{RBAC}/clusterrolebindings/system:public-info-viewer", api=api)
    assert code == 200 and len(crb["subjects"]) == 2
    api.proc.terminate()
    api.proc.wait(timeout=30)
