"""
The teams' RBAC on a running kubesim kube-apiserver (real etcd on loopback, not the lab):
applied by the `kube_objects` state through kubectl (kubesim's), a second run changes
nothing, a team removed from pillar loses its RoleBindings in every namespace, and the
prune-only run with no team (what every lab bootstrap does) is a no-op on a fresh cluster.
Names with ':' (kubeha:team:...) are read back by name: kubesim's kubectl percent-encodes
them and its apiserver decodes the path as kube-apiserver does (server.py read_request).
"""

from __future__ import annotations

import json

import pytest

from lab.kubesim.loopback import Loopback
from tests.unit.kubesim.test_admission_apiserver import (
    formula_loaders,
    kubeconfig,
    kubesim_kubectl,
)

RBAC = "/apis/rbac.authorization.k8s.io/v1"
TEAMS = {
    "platform": {"groups": ["oidc:platform"], "cluster_roles": ["view"]},
    "app-a": {"groups": ["oidc:app-a"], "namespaces": {"app-a": ["edit"], "app-a-ci": ["view"]}},
    "auditors": {
        "groups": ["oidc:auditors"],
        "rules": [{"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get"]}],
        "scope": "cluster",
    },
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("rbac")
    with Loopback(root, members=1) as lo:
        lo.api = lo.apiserver([0])
        lo.wait_ready(lo.api)
        lo.kubeconfig = kubeconfig(lo, lo.api.port, root / "admin.conf")
        lo.bindir = kubesim_kubectl(root)
        for ns in ("app-a", "app-a-ci"):
            doc = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
            assert lo.call(lo.api, "POST", "/api/v1/namespaces", doc)[0] in (201, 409)
        yield lo


@pytest.fixture(scope="module")
def loaders(cluster, tmp_path_factory):
    for _opts, funcs, states in formula_loaders(tmp_path_factory.mktemp("cache"), cluster.bindir):
        yield funcs, states


def apply(loaders, cluster, teams) -> dict:
    funcs, states = loaders
    model = {"security": {"teams": teams}}
    return states["kube_objects.applied"](
        "rbac",
        funcs["kubeha_rbac.rbac_objects"](model),
        prune=funcs["kubeha_rbac.prune"](model),
        kubeconfig=str(cluster.kubeconfig),
    )


def names(cluster, path: str) -> list[str]:
    status, body = cluster.call(cluster.api, "GET", path)[:2]
    assert status == 200, body
    return sorted(i["metadata"]["name"] for i in json.loads(body)["items"])


def test_no_team_on_a_fresh_cluster_changes_nothing(loaders, cluster):
    ret = apply(loaders, cluster, {})
    assert ret["result"] is True and ret["changes"] == {}, ret


def test_teams_applied_kept_and_pruned_across_namespaces(loaders, cluster):
    first = apply(loaders, cluster, TEAMS)
    assert first["result"] is True, first
    assert len(first["changes"]) == 5 and set(first["changes"].values()) == {"created"}
    again = apply(loaders, cluster, TEAMS)
    assert again["result"] is True and again["changes"] == {}, again
    assert "kubeha:team:auditors" in names(cluster, f"{RBAC}/clusterroles")
    assert names(cluster, f"{RBAC}/namespaces/app-a-ci/rolebindings") == ["kubeha:team:app-a:view"]
    # app-a leaves pillar: its bindings go from both namespaces, the others stay.
    rest = {k: v for k, v in TEAMS.items() if k != "app-a"}
    gone = apply(loaders, cluster, rest)
    assert gone["result"] is True, gone
    assert gone["changes"] == {
        "rolebindings/app-a/kubeha:team:app-a:edit": "deleted",
        "rolebindings/app-a-ci/kubeha:team:app-a:view": "deleted",
    }, gone
    assert names(cluster, f"{RBAC}/rolebindings") == []
    # The last teams leave: the prune-only run removes the rest, then nothing changes.
    last = apply(loaders, cluster, {})
    assert last["result"] is True, last
    assert set(last["changes"]) == {
        "clusterroles/kubeha:team:auditors",
        "clusterrolebindings/kubeha:team:auditors",
        "clusterrolebindings/kubeha:team:platform:view",
    }, last
    final = apply(loaders, cluster, {})
    assert final["result"] is True and final["changes"] == {}, final


def test_missing_namespace_fails_naming_it(loaders, cluster):
    teams = {"late": {"groups": ["oidc:late"], "namespaces": {"not-yet": ["view"]}}}
    ret = apply(loaders, cluster, teams)
    assert ret["result"] is False, ret
    assert 'namespaces "not-yet" not found' in ret["comment"], ret
    apply(loaders, cluster, {})
