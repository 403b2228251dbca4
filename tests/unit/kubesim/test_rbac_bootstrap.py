"""The default RBAC policy and its reconciliation, without servers: bootstrappolicy.py
(upstream plugin/pkg/auth/authorizer/rbac/bootstrappolicy/policy.go) and reconcile.py
(pkg/registry/rbac/rest/storage_rbac.go, pkg/registry/rbac/reconciliation,
pkg/registry/rbac/validation/policy_comparator.go) over an in-memory store."""

from __future__ import annotations

import copy
import itertools

import pytest
from kubesim.apiserver import bootstrappolicy as bp
from kubesim.apiserver import reconcile
from kubesim.apiserver.rbac import RBAC, Attributes
from kubesim.apiserver.reconcile import BINDINGS, ROLES, Reconciler, covers
from kubesim.apiserver.store import StatusError, conflict, not_found

from tests.unit.kubesim.test_rbac import FakeCache, binding, group, role


class FakeStore:
    """store.Store's CRUD over a dict, with resourceVersions and its errors; `fail` makes
    the next calls raise (storage down)."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict] = {}
        self.rv = itertools.count(1)
        self.fail = 0
        self.writes: list[tuple[str, str]] = []

    def _check(self) -> None:
        if self.fail:
            self.fail -= 1
            raise StatusError(500, "InternalError", "Internal error occurred: etcd down")

    def get(self, res, namespace, name):
        self._check()
        if (res.plural, name) not in self.objects:
            raise not_found(res, name)
        return copy.deepcopy(self.objects[res.plural, name])

    def list(self, res, namespace):
        self._check()
        return [copy.deepcopy(o) for (p, _), o in self.objects.items() if p == res.plural], 1

    def create(self, res, namespace, obj):
        self._check()
        name = obj["metadata"]["name"]
        if (res.plural, name) in self.objects:
            raise StatusError(409, "AlreadyExists", f'{res.qualified} "{name}" already exists')
        obj["metadata"]["resourceVersion"] = str(next(self.rv))
        self.objects[res.plural, name] = copy.deepcopy(obj)
        self.writes.append(("create", name))
        return obj

    def update(self, res, namespace, obj, expect_rv):
        self._check()
        name = obj["metadata"]["name"]
        old = self.objects.get((res.plural, name))
        if old is None:
            raise not_found(res, name)
        if int(old["metadata"]["resourceVersion"]) != expect_rv:
            raise conflict(res, name)
        obj["metadata"]["resourceVersion"] = str(next(self.rv))
        self.objects[res.plural, name] = copy.deepcopy(obj)
        self.writes.append(("update", name))
        return obj

    def delete(self, res, namespace, name, expect_rv=None):
        self._check()
        self.writes.append(("delete", name))
        return self.objects.pop((res.plural, name), None) is not None


def by_name(objs: list[dict]) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objs}


ROLES_EXPECTED = by_name(bp.cluster_roles())
BINDINGS_EXPECTED = by_name(bp.cluster_role_bindings())


def test_defaults_carry_upstreams_label_annotation_and_rules():
    for obj in [*ROLES_EXPECTED.values(), *BINDINGS_EXPECTED.values()]:
        meta = obj["metadata"]
        assert meta["labels"]["kubernetes.io/bootstrapping"] == "rbac-defaults", meta
        assert meta["annotations"] == {"rbac.authorization.kubernetes.io/autoupdate": "true"}
    monitoring = ROLES_EXPECTED["system:monitoring"]["rules"]
    assert monitoring == [
        {
            "nonResourceURLs": sorted(
                ["/metrics", "/metrics/slis", "/livez", "/readyz", "/healthz"]
                + ["/livez/*", "/readyz/*", "/healthz/*"]
            ),
            "verbs": ["get"],
        }
    ]
    subjects = {n: [s["name"] for s in b["subjects"]] for n, b in BINDINGS_EXPECTED.items()}
    assert subjects == {
        "cluster-admin": ["system:masters"],
        "system:monitoring": ["system:monitoring"],
        "system:discovery": ["system:authenticated"],
        "system:basic-user": ["system:authenticated"],
        "system:public-info-viewer": ["system:authenticated", "system:unauthenticated"],
    }
    for b in BINDINGS_EXPECTED.values():
        assert b["roleRef"]["name"] == b["metadata"]["name"] in ROLES_EXPECTED


def test_aggregated_roles_hold_what_the_aggregation_controller_leaves():
    view, edit, admin = (ROLES_EXPECTED[n] for n in ("view", "edit", "admin"))
    selector = view["aggregationRule"]["clusterRoleSelectors"][0]["matchLabels"]
    assert selector == {"rbac.authorization.k8s.io/aggregate-to-view": "true"}
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-admin"] == "true"
    # view <= edit <= admin, each strictly
    assert covers(edit["rules"], view["rules"])[0] and covers(admin["rules"], edit["rules"])[0]
    assert not covers(view["rules"], edit["rules"])[0]
    assert not covers(edit["rules"], admin["rules"])[0]
    pods_list = [bp.rule(["list"], ("",), ("pods",))]
    pods_create = [bp.rule(["create"], ("",), ("pods",))]
    secrets_get = [bp.rule(["get"], ("",), ("secrets",))]
    assert covers(view["rules"], pods_list)[0] and not covers(view["rules"], pods_create)[0]
    assert not covers(view["rules"], secrets_get)[0] and covers(edit["rules"], secrets_get)[0]
    rb = [bp.rule(["create"], ("rbac.authorization.k8s.io",), ("rolebindings",))]
    assert covers(admin["rules"], rb)[0] and not covers(edit["rules"], rb)[0]


def test_covers_breaks_rules_down_and_knows_wildcards():
    owner = [
        bp.rule(["get", "list"], ("",), ("pods",)),
        bp.rule(["update"], ("apps",), ("*/scale",)),
        bp.rule(["get"], urls=("/healthz/*",)),
    ]
    ok, missing = covers(owner, [bp.rule(["get", "create"], ("",), ("pods",))])
    assert not ok and missing == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["create"]}]
    assert covers(owner, [bp.rule(["update"], ("apps",), ("deployments/scale",))])[0]
    assert not covers(owner, [bp.rule(["update"], ("apps",), ("deployments",))])[0]
    assert covers(owner, [bp.rule(["get"], urls=("/healthz/etcd",))])[0]
    assert not covers(owner, [bp.rule(["get"], urls=("/healthz",))])[0]
    admin = ROLES_EXPECTED["cluster-admin"]["rules"]
    assert covers(admin, ROLES_EXPECTED["admin"]["rules"] + [bp.rule(["get"], urls=("/x",))])[0]


def test_first_start_creates_everything_and_a_second_changes_nothing():
    store = FakeStore()
    assert reconcile.ensure_rbac_policy(store)
    assert {n for (p, n) in store.objects if p == "clusterroles"} == set(ROLES_EXPECTED)
    assert {n for (p, n) in store.objects if p == "clusterrolebindings"} == set(BINDINGS_EXPECTED)
    store.writes.clear()
    assert reconcile.ensure_rbac_policy(store)
    assert store.writes == []


def test_union_reconcile_adds_what_is_missing_and_keeps_the_rest():
    store = FakeStore()
    reconcile.ensure_rbac_policy(store)
    mon = store.objects["clusterroles", "system:monitoring"]
    mon["rules"] = [
        bp.rule(["get"], urls=("/metrics",)),
        bp.rule(["get"], urls=("/debug/pprof/*",)),  # a local addition: kept
    ]
    mon["metadata"]["labels"]["team"] = "sre"
    mon["metadata"]["annotations"]["rbac.authorization.kubernetes.io/autoupdate"] = "yes"
    crb = store.objects["clusterrolebindings", "system:basic-user"]
    crb["subjects"] = [{"kind": "User", "apiGroup": bp.GROUP, "name": "bob"}]
    assert Reconciler(store).run(ROLES_EXPECTED["system:monitoring"]) == "update"
    assert Reconciler(store).run(BINDINGS_EXPECTED["system:basic-user"]) == "update"
    mon = store.objects["clusterroles", "system:monitoring"]
    assert mon["rules"][:2] == [
        bp.rule(["get"], urls=("/metrics",)),
        bp.rule(["get"], urls=("/debug/pprof/*",)),
    ]
    assert covers(mon["rules"], ROLES_EXPECTED["system:monitoring"]["rules"])[0]
    assert {"nonResourceURLs": ["/metrics/slis"], "verbs": ["get"]} in mon["rules"]
    assert mon["metadata"]["labels"]["team"] == "sre"  # existing values win the merge
    assert mon["metadata"]["annotations"]["rbac.authorization.kubernetes.io/autoupdate"] == "yes"
    crb = store.objects["clusterrolebindings", "system:basic-user"]
    assert [s["name"] for s in crb["subjects"]] == ["bob", "system:authenticated"]


def test_autoupdate_false_protects_and_a_changed_role_ref_recreates(capfd):
    store = FakeStore()
    reconcile.ensure_rbac_policy(store)
    view = store.objects["clusterroles", "view"]
    view["rules"] = []
    view["metadata"]["annotations"]["rbac.authorization.kubernetes.io/autoupdate"] = "false"
    store.objects["clusterrolebindings", "system:monitoring"]["roleRef"]["name"] = "view"
    store.writes.clear()
    assert reconcile.ensure_rbac_policy(store)
    assert store.objects["clusterroles", "view"]["rules"] == []
    assert "skipped reconcile-protected clusterrole.rbac.authorization.k8s.io/view" in (
        capfd.readouterr().err
    )
    ref = store.objects["clusterrolebindings", "system:monitoring"]["roleRef"]["name"]
    assert ref == "system:monitoring"
    assert store.writes == [("delete", "system:monitoring"), ("create", "system:monitoring")]


def test_the_hook_polls_until_storage_answers():
    store, fatal = FakeStore(), []
    store.fail = 3  # the first attempts find etcd down: no object written yet
    reconcile.bootstrap_roles(
        store, interval=0.01, timeout=5.0, fatal=lambda *a: fatal.append(a), sleep=lambda s: None
    )
    assert not fatal and store.fail == 0
    assert ("clusterroles", "cluster-admin") in store.objects


def test_the_hook_exits_the_process_when_storage_never_answers(capfd):
    store, fatal = FakeStore(), []
    store.fail = 10**9
    reconcile.bootstrap_roles(store, interval=0.01, timeout=0.1, fatal=lambda *a: fatal.append(a))
    assert fatal == [
        (
            'PostStartHook "rbac/bootstrap-roles" failed: unable to initialize roles: '
            "timed out waiting for the condition",
            "hooks.go:203",
            255,
        )
    ]
    assert "unable to initialize clusterroles: Internal error occurred: etcd down" in (
        capfd.readouterr().err
    )
    assert not store.objects


@pytest.mark.parametrize("res", [ROLES, BINDINGS])
def test_a_conflicting_write_is_retried(res):
    store = FakeStore()
    reconcile.ensure_rbac_policy(store)
    obj = store.objects[res.plural, "system:monitoring"]
    obj["rules" if res is ROLES else "subjects"] = []
    real_update, calls = store.update, []

    def racing_update(r, ns, o, rv):
        calls.append(rv)
        if len(calls) == 1:  # someone else wrote in between
            raise conflict(r, o["metadata"]["name"])
        return real_update(r, ns, o, rv)

    store.update = racing_update
    assert reconcile.ensure_rbac_policy(store)
    assert len(calls) == 2
    fixed = store.objects[res.plural, "system:monitoring"]
    assert fixed.get("rules") or fixed.get("subjects")


def test_rbac_names_the_binding_that_allowed():
    """rbac.go authorizingVisitor: "RBAC: allowed by " + rule.go's describers."""
    cache = FakeCache()
    for plural, obj in [
        role("clusterroles", "pod-reader", [bp.rule(["get", "list"], ("",), ("pods",))]),
        binding("clusterrolebindings", "devs", "ClusterRole", "pod-reader", [group("oidc:devs")]),
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
    r = RBAC(cache)
    ok, why = r.authorize(Attributes("u", ["oidc:devs"], "list", True, "", "pods", namespace="x"))
    assert ok and why == (
        'RBAC: allowed by ClusterRoleBinding "devs" of ClusterRole "pod-reader" '
        'to Group "oidc:devs"'
    )
    bot = "system:serviceaccount:team:bot"
    assert r.authorize(Attributes(bot, [], "get", True, "", "pods", namespace="team")) == (
        True,
        'RBAC: allowed by RoleBinding "sa/team" of ClusterRole "pod-reader" '
        'to ServiceAccount "bot/team"',
    )
    assert r.authorize(Attributes("u", [], "get", True, "", "pods", namespace="x")) == (False, "")
