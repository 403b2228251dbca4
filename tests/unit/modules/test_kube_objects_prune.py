"""kube_objects.applied with the teams' RBAC: RoleBindings in several namespaces are
applied, a second run changes nothing, and a team removed from pillar loses its objects in
every namespace (prune lists all namespaces, deletes each object in its own); objects not
carrying the selector's labels are never listed, so never deleted."""

from __future__ import annotations

import copy
import json
from unittest.mock import MagicMock, patch

import pytest

from tests.unit.modules.khm_load import load

state = load("_states", "kube_objects")
module = load("_modules", "kube_objects")
rbac = load("_modules", "kubeha_rbac")

TEAMS = {
    "app-a": {"groups": ["oidc:app-a"], "namespaces": {"app-a": ["edit"], "app-a-ci": ["view"]}},
    "platform": {"groups": ["oidc:platform"], "cluster_roles": ["view"]},
}


class FakeApi:
    """The API as kubectl sees it: objects by (resource, namespace, name), label selection
    by equality requirements (comma = and), as the apiserver's labels.Parse does for these."""

    def __init__(self):
        self.store: dict[tuple[str, str, str], dict] = {}
        self.deleted: list[tuple[str, str, str]] = []

    def key(self, obj):
        meta = obj["metadata"]
        return state.PLURALS[obj["kind"]], meta.get("namespace", ""), meta["name"]

    def differs(self, obj, kubeconfig):
        have = self.store.get(self.key(obj))
        if have is None:
            return "missing"
        want = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
        want["metadata"] = {"labels": obj["metadata"]["labels"]}
        return None if module.subset(want, have) else "changed"

    def apply(self, obj, kubeconfig):
        self.store[self.key(obj)] = copy.deepcopy(obj)

    def managed(self, resource, selector, kubeconfig):
        reqs = [r.split("=", 1) for r in selector.split(",")]
        return [
            o
            for (res, _, _), o in sorted(self.store.items())
            if res == resource and all(o["metadata"].get("labels", {}).get(k) == v for k, v in reqs)
        ]

    def delete(self, resource, name, namespace, kubeconfig):
        self.deleted.append((resource, namespace, name))
        self.store.pop((resource, namespace, name), None)


@pytest.fixture
def api():
    return FakeApi()


@pytest.fixture
def configure_loader_modules(api):
    return {
        state: {
            "__salt__": {
                "kube_objects.describe": module.describe,
                "kube_objects.differs": api.differs,
                "kube_objects.apply": api.apply,
                "kube_objects.managed": api.managed,
                "kube_objects.delete": api.delete,
            },
            "__opts__": {"test": False},
        }
    }


def run(teams, test=False):
    model = {"security": {"teams": teams}}
    with patch.dict(state.__opts__, {"test": test}):
        return state.applied(
            "rbac", rbac.rbac_objects(model), prune=rbac.prune(model), kubeconfig="/k"
        )


def test_teams_applied_idempotent_and_pruned_across_namespaces(api):
    # Someone else's binding in app-a, kubeha-labelled but not RBAC of the teams: kept.
    other = {
        "kind": "RoleBinding",
        "metadata": {
            "name": "kubeha:team:app-a:edit-by-hand",
            "namespace": "app-a",
            "labels": {"app.kubernetes.io/managed-by": "kubeha"},
        },
    }
    api.apply(other, "/k")
    dry = run(TEAMS, test=True)
    assert dry["result"] is None and set(dry["changes"].values()) == {"created"}
    assert len(api.store) == 1
    first = run(TEAMS)
    assert first["result"] is True
    assert first["changes"] == {
        "ClusterRoleBinding/kubeha:team:platform:view": "created",
        "RoleBinding/app-a/kubeha:team:app-a:edit": "created",
        "RoleBinding/app-a-ci/kubeha:team:app-a:view": "created",
    }
    again = run(TEAMS)
    assert again["changes"] == {} and again["comment"] == "3 object(s) in sync"
    # Drift: a subject removed by hand is put back.
    api.store[("rolebindings", "app-a", "kubeha:team:app-a:edit")]["subjects"] = []
    assert run(TEAMS)["changes"] == {"RoleBinding/app-a/kubeha:team:app-a:edit": "configured"}
    # app-a leaves pillar: its bindings go from both namespaces, platform's stays.
    gone = run({"platform": TEAMS["platform"]})
    assert gone["changes"] == {
        "rolebindings/app-a/kubeha:team:app-a:edit": "deleted",
        "rolebindings/app-a-ci/kubeha:team:app-a:view": "deleted",
    }
    assert sorted(api.deleted) == [
        ("rolebindings", "app-a", "kubeha:team:app-a:edit"),
        ("rolebindings", "app-a-ci", "kubeha:team:app-a:view"),
    ]
    # The last team leaves: the prune-only run (no objects) removes the rest.
    last = run({})
    assert last["changes"] == {"clusterrolebindings/kubeha:team:platform:view": "deleted"}
    assert list(api.store) == [("rolebindings", "app-a", "kubeha:team:app-a:edit-by-hand")]
    assert run({})["changes"] == {}


def test_managed_lists_every_namespace_with_the_selector():
    run_all = MagicMock(return_value={"retcode": 0, "stdout": json.dumps({"items": []})})
    with (
        patch.dict(module.__dict__, {"__salt__": {"cmd.run_all": run_all}}, clear=False),
        patch.object(module.shutil, "which", return_value="/usr/bin/kubectl"),
    ):
        assert module.managed("rolebindings", rbac.SELECTOR, "/k") == []
    cmd = run_all.call_args.args[0]
    assert cmd[3:] == ["get", "rolebindings", "-A", "-l", rbac.SELECTOR, "-o", "json"]
