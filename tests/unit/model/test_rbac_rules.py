"""The teams' RBAC (security:teams) and the API server's OIDC flags: refused before anything
renders, each message with the key and the fix; the objects are deterministic, labelled for
the prune, and follow the pillar."""

from __future__ import annotations

import copy
import json

import pytest

TEAMS = {
    "platform": {"groups": ["oidc:platform"], "cluster_roles": ["view"]},
    "app-a": {
        "groups": ["oidc:app-a"],
        "users": ["oidc:alice@example.com"],
        "namespaces": {"app-a": ["edit"], "app-a-ci": ["view"]},
    },
    "auditors": {
        "groups": ["oidc:auditors"],
        "rules": [
            {"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list"]},
            {"nonResourceURLs": ["/metrics", "/logs/*"], "verbs": ["get"]},
        ],
        "scope": "cluster",
    },
}
RULE = {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}
T = "kubeha:security:teams"
# team config -> words that must all be in one message.
REFUSED = {
    "team name not a label": ({"App_A": {"groups": ["g"], "cluster_roles": ["view"]}},
                              [f"{T}:App_A", "DNS label"]),
    "team not a mapping": ({"a": ["view"]}, [f"{T}:a", "a team is a mapping"]),
    "unknown key (typo)": ({"a": {"groups": ["g"], "namespace": {"x": ["view"]}}},
                           [f"{T}:a", "['namespace'] unknown"]),
    "no subjects": ({"a": {"cluster_roles": ["view"]}}, [f"{T}:a", "no groups or users"]),
    "empty group": ({"a": {"groups": [""], "cluster_roles": ["view"]}},
                    [f"{T}:a:groups", "is empty"]),
    "group with spaces around": ({"a": {"groups": [" g"], "cluster_roles": ["view"]}},
                                [f"{T}:a:groups", "spaces around"]),
    "group not a string": ({"a": {"groups": [3], "cluster_roles": ["view"]}},
                           [f"{T}:a:groups", "as strings"]),
    "system group": ({"a": {"groups": ["system:authenticated"], "cluster_roles": ["view"]}},
                     [f"{T}:a:groups", "Kubernetes' own subjects"]),
    "system user": ({"a": {"users": ["system:admin"], "cluster_roles": ["view"]}},
                    [f"{T}:a:users", "Kubernetes' own subjects"]),
    "grants nothing": ({"a": {"groups": ["g"]}}, [f"{T}:a", "grants nothing"]),
    "cluster-admin": ({"a": {"groups": ["g"], "cluster_roles": ["cluster-admin"]}},
                      [f"{T}:a:cluster_roles", "cluster-admin refused", "allow_cluster_admin"]),
    "cluster-admin in a namespace": (
        {"a": {"groups": ["g"], "namespaces": {"x": ["cluster-admin"]}}},
        [f"{T}:a:namespaces:x", "cluster-admin refused"]),
    "role name": ({"a": {"groups": ["g"], "cluster_roles": ["my/role"]}},
                  [f"{T}:a:cluster_roles", "'my/role' is not a role name"]),
    "cluster_roles not a list": ({"a": {"groups": ["g"], "cluster_roles": "view"}},
                                 [f"{T}:a:cluster_roles", "list ClusterRole names"]),
    "namespace not a label": ({"a": {"groups": ["g"], "namespaces": {"App": ["view"]}}},
                              [f"{T}:a:namespaces", "'App' is not a namespace name"]),
    "namespace without roles": ({"a": {"groups": ["g"], "namespaces": {"x": []}}},
                                [f"{T}:a:namespaces:x", "no roles"]),
    "namespaces not a mapping": ({"a": {"groups": ["g"], "namespaces": ["x"]}},
                                 [f"{T}:a:namespaces", "a mapping of namespace"]),
    "rules without scope": ({"a": {"groups": ["g"], "rules": [RULE]}},
                            [f"{T}:a:scope", "scope: cluster", "scope: namespaces"]),
    "scope namespaces without namespaces": (
        {"a": {"groups": ["g"], "rules": [RULE], "scope": "namespaces"}},
        [f"{T}:a:scope", "lists no namespaces"]),
    "scope without rules": ({"a": {"groups": ["g"], "cluster_roles": ["view"],
                                   "scope": "cluster"}}, [f"{T}:a:scope", "without rules"]),
    "empty rules": ({"a": {"groups": ["g"], "rules": [], "scope": "cluster"}},
                    [f"{T}:a:rules", "non-empty list"]),
    "unknown verb": ({"a": {"groups": ["g"], "scope": "cluster",
                            "rules": [dict(RULE, verbs=["read"])]}},
                     [f"{T}:a:rules[0]:verbs", "['read'] unknown", "deletecollection"]),
    "no verbs": ({"a": {"groups": ["g"], "scope": "cluster", "rules": [dict(RULE, verbs=[])]}},
                 [f"{T}:a:rules[0]", "no verbs"]),
    "no apiGroups": ({"a": {"groups": ["g"], "scope": "cluster",
                            "rules": [{"resources": ["pods"], "verbs": ["get"]}]}},
                     [f"{T}:a:rules[0]", "no apiGroups", "apiGroups: ['']"]),
    "no resources": ({"a": {"groups": ["g"], "scope": "cluster",
                            "rules": [{"apiGroups": [""], "verbs": ["get"]}]}},
                     [f"{T}:a:rules[0]", "no resources"]),
    "unknown rule key": ({"a": {"groups": ["g"], "scope": "cluster",
                                "rules": [dict(RULE, resource=["pods"])]}},
                         [f"{T}:a:rules[0]", "['resource'] unknown"]),
    "rule not a mapping": ({"a": {"groups": ["g"], "scope": "cluster", "rules": ["get pods"]}},
                           [f"{T}:a:rules[0]", "a rule is a mapping"]),
    "rule field not a list": ({"a": {"groups": ["g"], "scope": "cluster",
                                     "rules": [dict(RULE, verbs="get")]}},
                              [f"{T}:a:rules[0]", "must be lists of strings"]),
    "urls with resources": ({"a": {"groups": ["g"], "scope": "cluster",
                                   "rules": [dict(RULE, nonResourceURLs=["/healthz"])]}},
                            [f"{T}:a:rules[0]", "split it into two rules"]),
    "urls in namespaces": ({"a": {"groups": ["g"], "scope": "namespaces",
                                  "namespaces": {"x": []},
                                  "rules": [{"nonResourceURLs": ["/healthz"], "verbs": ["get"]}]}},
                           [f"{T}:a:rules[0]", "only granted cluster-wide"]),
    "url not a path": ({"a": {"groups": ["g"], "scope": "cluster",
                              "rules": [{"nonResourceURLs": ["healthz"], "verbs": ["get"]}]}},
                       [f"{T}:a:rules[0]:nonResourceURLs", "'healthz'"]),
    "url star inside": ({"a": {"groups": ["g"], "scope": "cluster",
                               "rules": [{"nonResourceURLs": ["/*/x"], "verbs": ["get"]}]}},
                        [f"{T}:a:rules[0]:nonResourceURLs", "only at the end"]),
    "rules equal to cluster-admin": (
        {"a": {"groups": ["g"], "scope": "cluster",
               "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]}},
        [f"{T}:a:rules[0]", "cluster-admin", "allow_cluster_admin: true"]),
    "impersonate cluster-wide": (
        {"a": {"groups": ["g"], "scope": "cluster",
               "rules": [{"apiGroups": [""], "resources": ["groups"], "verbs": ["impersonate"]}]}},
        [f"{T}:a:rules[0]", "impersonate or bind"]),
    "allow_cluster_admin not a bool": (
        {"a": {"groups": ["g"], "cluster_roles": ["view"], "allow_cluster_admin": "yes"}},
        [f"{T}:a:allow_cluster_admin", "true or false"]),
    "teams not a mapping": (["a"], [T, "a mapping of team name"]),
}  # fmt: skip


def _with_teams(example: dict, teams) -> dict:
    model = copy.deepcopy(example)
    model["security"]["teams"] = copy.deepcopy(teams)
    return model


def _with_oidc(example: dict, **oidc) -> dict:
    model = copy.deepcopy(example)
    model["apiserver"]["oidc"].update(
        {"issuer_url": "https://idp.example.com/realms/k8s", "client_id": "kubernetes", **oidc}
    )
    return model


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_bad_teams_are_refused_with_key_and_fix(salt_funcs, example, case):
    teams, words = REFUSED[case]
    problems = salt_funcs["kubeha_model.check"](_with_teams(example, teams))
    assert any(all(w in p for w in words) for p in problems), problems


def test_good_teams_and_explicit_cluster_admin_pass(salt_funcs, example):
    assert salt_funcs["kubeha_model.check"](_with_teams(example, TEAMS)) == []
    allowed = {
        "root": {
            "groups": ["oidc:sre"],
            "cluster_roles": ["cluster-admin"],
            "allow_cluster_admin": True,
            "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}],
            "scope": "cluster",
        },
        # In a namespace, escalate/bind/'*' stay in the namespace: no refusal.
        "ns-admin": {
            "groups": ["oidc:ns"],
            "namespaces": {"ns-a": []},
            "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}],
            "scope": "namespaces",
        },
    }
    assert salt_funcs["kubeha_model.check"](_with_teams(example, allowed)) == []


def test_rbac_objects_structure(salt_funcs, example):
    objs = salt_funcs["kubeha_rbac.rbac_objects"](_with_teams(example, TEAMS))
    ids = [(o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]) for o in objs]
    assert ids == [
        ("ClusterRole", "", "kubeha:team:auditors"),
        ("ClusterRoleBinding", "", "kubeha:team:auditors"),
        ("ClusterRoleBinding", "", "kubeha:team:platform:view"),
        ("RoleBinding", "app-a", "kubeha:team:app-a:edit"),
        ("RoleBinding", "app-a-ci", "kubeha:team:app-a:view"),
    ]
    for obj in objs:
        assert obj["apiVersion"] == "rbac.authorization.k8s.io/v1"
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "kubeha"
        assert labels["kubeha.io/part"] == "rbac"
    role, auditors, platform, edit, _ = objs
    assert role["rules"] == TEAMS["auditors"]["rules"]
    assert auditors["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "kubeha:team:auditors",
    }
    assert platform["roleRef"]["name"] == "view"
    assert platform["metadata"]["labels"]["kubeha.io/team"] == "platform"
    assert edit["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "edit",
    }
    assert edit["subjects"] == [
        {"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "oidc:app-a"},
        {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "oidc:alice@example.com"},
    ]


def test_rbac_objects_are_deterministic_and_follow_scope(salt_funcs, example):
    build = salt_funcs["kubeha_rbac.rbac_objects"]
    first = json.dumps(build(_with_teams(example, TEAMS)), sort_keys=True)
    shuffled = {k: TEAMS[k] for k in reversed(list(TEAMS))}
    shuffled["app-a"] = dict(
        shuffled["app-a"], namespaces={"app-a-ci": ["view"], "app-a": ["edit"]}
    )
    assert json.dumps(build(_with_teams(example, shuffled)), sort_keys=True) == first
    # scope: namespaces puts the team's own role in a RoleBinding in each namespace.
    scoped = {"auditors": dict(TEAMS["auditors"], scope="namespaces",
                               namespaces={"b": [], "a": ["view"]})}  # fmt: skip
    scoped["auditors"]["rules"] = TEAMS["auditors"]["rules"][:1]
    ids = [(o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"])
           for o in build(_with_teams(example, scoped))]  # fmt: skip
    assert ids == [
        ("ClusterRole", "", "kubeha:team:auditors"),
        ("RoleBinding", "a", "kubeha:team:auditors"),
        ("RoleBinding", "b", "kubeha:team:auditors"),
        ("RoleBinding", "a", "kubeha:team:auditors:view"),
    ]
    assert build(example) == []
    assert salt_funcs["kubeha_rbac.prune"](example) == {
        "selector": "app.kubernetes.io/managed-by=kubeha,kubeha.io/part=rbac",
        "resources": ["clusterroles", "clusterrolebindings", "roles", "rolebindings"],
    }


OIDC_REFUSED = {
    "plain http": ({"issuer_url": "http://idp.example.com"}, ["issuer_url", "only https://"]),
    "query": ({"issuer_url": "https://idp.example.com/?realm=k8s"}, ["issuer_url", "a query"]),
    "fragment": ({"issuer_url": "https://idp.example.com/#k8s"}, ["issuer_url", "a fragment"]),
    "user info": ({"issuer_url": "https://bob:pw@idp.example.com"}, ["issuer_url", "password"]),
    "service-account issuer": (
        {"issuer_url": "https://kubernetes.default.svc.cluster.local"},
        ["issuer_url", "service-account issuer"],
    ),
    "no client id": ({"client_id": ""}, ["client_id", "required when issuer_url"]),
    "no username claim": ({"username_claim": ""}, ["username_claim", "required"]),
    "empty username prefix": ({"username_prefix": ""}, ["username_prefix", "system:masters"]),
    "dash groups prefix": ({"groups_prefix": "-"}, ["groups_prefix", "unprefixed"]),
    "ca not mounted": ({"ca_file": "/opt/idp/ca.pem"}, ["ca_file", "/etc/kubernetes/pki"]),
}


@pytest.mark.parametrize("case", sorted(OIDC_REFUSED))
def test_bad_oidc_is_refused_with_key_and_fix(salt_funcs, example, case):
    change, words = OIDC_REFUSED[case]
    problems = salt_funcs["kubeha_model.check"](_with_oidc(example, **change))
    words = [f"kubeha:apiserver:oidc:{words[0]}", *words[1:]]
    assert any(all(w in p for w in words) for p in problems), problems


def test_good_oidc_passes_and_client_id_alone_is_refused(salt_funcs, example):
    good = _with_oidc(example, ca_file="/etc/kubernetes/pki/oidc-ca.crt", groups_claim="")
    assert salt_funcs["kubeha_model.check"](good) == []
    # groups_claim off: an empty groups_prefix is harmless then.
    assert salt_funcs["kubeha_model.check"](_with_oidc(example, groups_claim="",
                                                       groups_prefix="")) == []  # fmt: skip
    alone = copy.deepcopy(example)
    alone["apiserver"]["oidc"]["client_id"] = "kubernetes"
    problems = salt_funcs["kubeha_model.check"](alone)
    assert any("kubeha:apiserver:oidc:client_id" in p and "OIDC is off" in p for p in problems)
