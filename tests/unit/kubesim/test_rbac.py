"""kubesim's RBAC authorizer (upstream plugin/pkg/auth/authorizer/rbac/rbac.go and
pkg/apis/rbac/v1/evaluation_helpers.go) over a watch-cache stand-in, through auth.authorize
(the coarse rules first, then RBAC; 403 with upstream's message)."""

from __future__ import annotations

import json

import pytest
from kubesim.apiserver import auth
from kubesim.apiserver.api import parse_path
from kubesim.apiserver.rbac import RBAC
from kubesim.apiserver.resources import lookup
from kubesim.apiserver.store import StatusError, key_of

G = "rbac.authorization.k8s.io"


class FakeCache:
    """cacher.Cache's read side: objects by etcd key."""

    def __init__(self) -> None:
        self.objects: dict[str, dict] = {}

    def add(self, plural: str, obj: dict) -> None:
        res = lookup(G, "v1", plural)
        meta = obj["metadata"]
        self.objects[key_of(res, meta.get("namespace"), meta["name"])] = json.loads(json.dumps(obj))

    def list(self, prefix: str):
        return [v for k, v in sorted(self.objects.items()) if k.startswith(prefix)], 1

    def get(self, key: str):
        return self.objects.get(key)


def role(kind: str, name: str, rules: list[dict], ns: str | None = None) -> tuple[str, dict]:
    meta = {"name": name} | ({"namespace": ns} if ns else {})
    return kind, {"metadata": meta, "rules": rules}


def binding(plural, name, ref_kind, ref_name, subjects, *, ns=None) -> tuple[str, dict]:
    meta = {"name": name} | ({"namespace": ns} if ns else {})
    return plural, {
        "metadata": meta,
        "roleRef": {"apiGroup": G, "kind": ref_kind, "name": ref_name},
        "subjects": subjects,
    }


def group(name: str) -> dict:
    return {"kind": "Group", "apiGroup": G, "name": name}


@pytest.fixture
def rbac():
    cache = FakeCache()
    for plural, obj in [
        role(
            "clusterroles",
            "pod-reader",
            [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}],
        ),
        role(
            "clusterroles",
            "log-reader",
            [{"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]}],
        ),
        role(
            "clusterroles",
            "scaler",
            [{"apiGroups": ["apps"], "resources": ["*/scale"], "verbs": ["update", "patch"]}],
        ),
        role(
            "clusterroles",
            "one-cm",
            [
                {
                    "apiGroups": [""],
                    "resources": ["configmaps"],
                    "resourceNames": ["app"],
                    "verbs": ["get"],
                }
            ],
        ),
        role(
            "clusterroles",
            "metrics",
            [{"nonResourceURLs": ["/metrics", "/debug/*"], "verbs": ["get"]}],
        ),
        role(
            "roles",
            "secrets",
            [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["*"]}],
            "team",
        ),
        binding(
            "clusterrolebindings", "devs-read", "ClusterRole", "pod-reader", [group("oidc:devs")]
        ),
        binding(
            "clusterrolebindings", "m", "ClusterRole", "metrics", [{"kind": "User", "name": "mon"}]
        ),
        binding(
            "rolebindings", "ops-logs", "ClusterRole", "log-reader", [group("oidc:ops")], ns="team"
        ),
        binding(
            "rolebindings", "ops-scale", "ClusterRole", "scaler", [group("oidc:ops")], ns="team"
        ),
        binding("rolebindings", "ops-cm", "ClusterRole", "one-cm", [group("oidc:ops")], ns="team"),
        binding("rolebindings", "ops-sec", "Role", "secrets", [group("oidc:ops")], ns="team"),
        binding(
            "rolebindings",
            "sa",
            "ClusterRole",
            "pod-reader",
            [{"kind": "ServiceAccount", "name": "bot"}],
            ns="team",
        ),
    ]:
        cache.add(plural, obj)
    return RBAC(cache), cache


def check(rbac: RBAC, user: auth.User, method_verb: str, path: str) -> None:
    route = parse_path(path)
    auth.authorize(user, method_verb, route, path, rbac)


def denied(rbac: RBAC, user: auth.User, verb: str, path: str) -> StatusError:
    with pytest.raises(StatusError) as err:
        check(rbac, user, verb, path)
    assert err.value.code == 403
    return err.value


DEV = auth.User("https://issuer#alice", ["oidc:devs", "system:authenticated"])
OPS = auth.User("https://issuer#bob", ["oidc:ops", "system:authenticated"])


def test_group_bound_by_cluster_role_binding(rbac):
    r, _ = rbac
    check(r, DEV, "list", "/api/v1/pods")
    check(r, DEV, "get", "/api/v1/namespaces/x/pods/p")
    check(r, DEV, "watch", "/api/v1/namespaces/x/pods")
    err = denied(r, DEV, "delete", "/api/v1/namespaces/x/pods/p")
    assert err.message == (
        'pods "p" is forbidden: User "https://issuer#alice" cannot delete resource "pods" '
        'in API group "" in the namespace "x"'
    )


def test_role_binding_to_cluster_role_allows_only_its_namespace(rbac):
    r, _ = rbac
    check(r, OPS, "get", "/api/v1/namespaces/team/pods/p/log")
    denied(r, OPS, "get", "/api/v1/namespaces/other/pods/p/log")
    check(r, OPS, "create", "/api/v1/namespaces/team/secrets")  # a Role in the namespace
    denied(r, OPS, "list", "/api/v1/secrets")  # cluster-wide list: no RoleBinding applies


def test_subresources(rbac):
    r, _ = rbac
    err = denied(r, OPS, "get", "/api/v1/namespaces/team/pods/p")  # pods/log is not pods
    assert 'cannot get resource "pods" in API group ""' in err.message
    check(r, OPS, "update", "/apis/apps/v1/namespaces/team/deployments/d/scale")  # */scale
    err = denied(r, OPS, "update", "/apis/apps/v1/namespaces/team/deployments/d")
    assert err.message.startswith('deployments.apps "d" is forbidden: ')
    assert err.details == {"name": "d", "group": "apps", "kind": "deployments"}
    err = denied(r, DEV, "get", "/api/v1/namespaces/x/pods/p/log")
    assert 'cannot get resource "pods/log" in API group "" in the namespace "x"' in err.message


def test_resource_names(rbac):
    r, _ = rbac
    check(r, OPS, "get", "/api/v1/namespaces/team/configmaps/app")
    denied(r, OPS, "get", "/api/v1/namespaces/team/configmaps/other")
    denied(r, OPS, "list", "/api/v1/namespaces/team/configmaps")  # a list has no name


def test_non_resource_urls(rbac):
    r, _ = rbac
    mon = auth.User("mon", ["system:authenticated"])
    check(r, mon, "get", "/metrics")
    check(r, mon, "get", "/debug/pprof/heap")
    err = denied(r, mon, "get", "/logs")
    assert err.message == 'forbidden: User "mon" cannot get path "/logs"'
    denied(r, mon, "post", "/metrics")


def test_service_account_subject_defaults_to_binding_namespace(rbac):
    r, _ = rbac
    bot = auth.User("system:serviceaccount:team:bot", ["system:serviceaccounts"])
    check(r, bot, "list", "/api/v1/namespaces/team/pods")
    other = auth.User("system:serviceaccount:other:bot", [])
    denied(r, other, "list", "/api/v1/namespaces/team/pods")


def test_no_binding_is_forbidden_with_upstream_message(rbac):
    r, _ = rbac
    nobody = auth.User("carol", ["system:authenticated"])
    err = denied(r, nobody, "list", "/apis/rbac.authorization.k8s.io/v1/clusterroles")
    assert err.message == (
        'clusterroles.rbac.authorization.k8s.io is forbidden: User "carol" cannot list '
        'resource "clusterroles" in API group "rbac.authorization.k8s.io" at the cluster scope'
    )


def test_missing_role_is_the_reason(rbac):
    r, cache = rbac
    cache.add(*binding("clusterrolebindings", "v", "ClusterRole", "view", [group("g")]))
    err = denied(r, auth.User("u", ["g"]), "get", "/api/v1/namespaces/x/pods/p")
    assert err.message.endswith(
        'in the namespace "x": RBAC: clusterrole.rbac.authorization.k8s.io "view" not found'
    )


def test_coarse_rules_still_first(rbac):
    r, _ = rbac
    check(r, auth.User("kubernetes-admin", ["kubeadm:cluster-admins"]), "delete", "/api/v1/nodes/n")
    check(r, auth.ANONYMOUS, "get", "/healthz")
    denied(r, auth.ANONYMOUS, "list", "/api/v1/pods")


def test_verbs_as_requestinfo_derives_them():
    from kubesim.apiserver.api import Api

    api = object.__new__(Api)  # verb() reads no state
    pods, pod = parse_path("/api/v1/namespaces/x/pods"), parse_path("/api/v1/namespaces/x/pods/p")
    assert api.verb("GET", pods, {}) == "list"
    assert api.verb("GET", pods, {"watch": "true"}) == "watch"
    assert api.verb("GET", pod, {"watch": "1"}) == "watch"
    assert api.verb("HEAD", pod, {}) == "get"
    assert api.verb("DELETE", pods, {}) == "deletecollection"
    assert api.verb("DELETE", pod, {}) == "delete"


def test_a_namespace_is_in_itself(rbac):
    r, cache = rbac
    rules = [{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get"]}]
    cache.add(*role("roles", "ns-get", rules, "team"))
    cache.add(*binding("rolebindings", "b", "Role", "ns-get", [group("g")], ns="team"))
    user = auth.User("u", ["g"])
    check(r, user, "get", "/api/v1/namespaces/team")  # requestinfo: namespace = name
    err = denied(r, user, "get", "/api/v1/namespaces/other")
    assert err.message == (
        'namespaces "other" is forbidden: User "u" cannot get resource "namespaces" '
        'in API group "" in the namespace "other"'
    )
