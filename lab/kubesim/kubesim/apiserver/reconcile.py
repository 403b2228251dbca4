"""The `rbac/bootstrap-roles` post-start hook: the default ClusterRoles and ClusterRoleBindings
(bootstrappolicy.py) reconciled into storage each time the apiserver starts.

Emulates pkg/registry/rbac/rest/storage_rbac.go (PolicyData.EnsureRBACPolicy,
ensureRBACPolicy), pkg/registry/rbac/reconciliation/reconcile_role.go and
reconcile_rolebindings.go (computeReconciledRole, computeReconciledRoleBinding, run) and
pkg/registry/rbac/validation/policy_comparator.go (Covers, BreakdownRule, ruleCovers):

- the hook polls every second for 30 s (wait.Poll(1*time.Second, 30*time.Second)); an
  attempt first lists clusterroles and clusterrolebindings ("Make sure etcd is responding")
  and is retried at the next tick while storage fails; if no attempt succeeds in time the
  hook fails and genericapiserver's runPostStartHook kills the process (klog.Fatalf
  "PostStartHook \"rbac/bootstrap-roles\" failed: unable to initialize roles: timed out
  waiting for the condition"): with etcd down at start, kube-apiserver exits and its
  kubelet restarts it;
- a missing object is created; an existing one is reconciled by union (Confirm, not
  RemoveExtraPermissions): expected labels/annotations merged under the existing ones,
  rules the existing role does not cover appended (broken down into one verb/group/
  resource each), missing aggregation selectors and binding subjects appended; a binding
  whose roleRef differs is deleted and recreated; an object annotated
  `rbac.authorization.kubernetes.io/autoupdate: "false"` is left alone (reconcile-protected,
  a warning names what it lacks);
- each write is retried on a Conflict or ServiceUnavailable (retry.DefaultBackoff: 4 steps
  from 10 ms, factor 5); one object failing does not stop the others, the attempt is then
  retried at the next tick.

The loopback client of upstream is the apiserver's own store here: the same etcd keys,
quorum reads, compare-and-swap updates. The readyz check `poststarthook/rbac/bootstrap-roles`
fails until the hook is done.
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Callable

from .. import klog
from ..etcdgrpc import request_deadline
from . import bootstrappolicy, objects
from .resources import lookup
from .store import RequestTimeout, StatusError, Store

NAME = "rbac/bootstrap-roles"
GROUP = bootstrappolicy.GROUP
ROLES = lookup(GROUP, "v1", "clusterroles")
BINDINGS = lookup(GROUP, "v1", "clusterrolebindings")


# -- policy_comparator.go ------------------------------------------------------------------------
def breakdown(rule: dict) -> list[dict]:
    """BreakdownRule: one rule per group x resource x verb (x name), one per URL x verb."""
    out = []
    names = rule.get("resourceNames") or []
    for group in rule.get("apiGroups") or []:
        for resource in rule.get("resources") or []:
            for verb in rule.get("verbs") or []:
                base = {"apiGroups": [group], "resources": [resource], "verbs": [verb]}
                out += [base | {"resourceNames": [n]} for n in names] if names else [base]
    for url in rule.get("nonResourceURLs") or []:
        for verb in rule.get("verbs") or []:
            out.append({"nonResourceURLs": [url], "verbs": [verb]})
    return out


def _has_all(have: list[str], want: list[str]) -> bool:
    return all(w in have for w in want)


def _resources_cover(have: list[str], want: list[str]) -> bool:
    """resourceCoversAll: "*", exact, or "*/<subresource>"."""
    if "*" in have or _has_all(have, want):
        return True
    for path in want:
        if path in have:
            continue
        if "/" not in path or "*/" + path.split("/", 1)[1] not in have:
            return False
    return True


def _urls_cover(have: list[str], want: list[str]) -> bool:
    """nonResourceURLsCoversAll / nonResourceURLCovers: exact, or a "prefix*" owner."""
    return all(
        any(o == p or (o.endswith("*") and p.startswith(o.rstrip("*"))) for o in have) for p in want
    )


def rule_covers(owner: dict, sub: dict) -> bool:
    """ruleCovers(ownerRule, subRule)."""
    verbs, groups = owner.get("verbs") or [], owner.get("apiGroups") or []
    names, sub_names = owner.get("resourceNames") or [], sub.get("resourceNames") or []
    names_ok = not names if not sub_names else (not names or _has_all(names, sub_names))
    return (
        ("*" in verbs or _has_all(verbs, sub.get("verbs") or []))
        and ("*" in groups or _has_all(groups, sub.get("apiGroups") or []))
        and _resources_cover(owner.get("resources") or [], sub.get("resources") or [])
        and _urls_cover(owner.get("nonResourceURLs") or [], sub.get("nonResourceURLs") or [])
        and names_ok
    )


def covers(owner: list[dict], servant: list[dict]) -> tuple[bool, list[dict]]:
    """Covers: whether `owner` grants every rule of `servant`; the uncovered subrules."""
    uncovered = [
        sub
        for rule in servant
        for sub in breakdown(rule)
        if not any(rule_covers(o, sub) for o in owner)
    ]
    return not uncovered, uncovered


# -- reconcile_role.go / reconcile_rolebindings.go -----------------------------------------------
def _merge(expected: dict | None, existing: dict | None) -> dict:
    """merge(expected, existing): the existing values win."""
    return (expected or {}) | (existing or {})


def _merge_meta(result: dict, expected: dict, existing: dict) -> bool:
    changed = False
    for field in ("annotations", "labels"):
        merged = _merge(expected["metadata"].get(field), existing["metadata"].get(field))
        if merged != (existing["metadata"].get(field) or {}):
            changed = True
        result["metadata"][field] = merged
    return changed


def protected(existing: dict) -> bool:
    annotations = existing["metadata"].get("annotations") or {}
    return annotations.get(bootstrappolicy.AUTOUPDATE) == "false"


def reconcile_role(existing: dict, expected: dict) -> tuple[str, dict, list[dict]]:
    """computeReconciledRole in the union case: (operation, role, missing rules)."""
    result = copy.deepcopy(existing)
    op = "update" if _merge_meta(result, expected, existing) else "none"
    _, missing = covers(existing.get("rules") or [], expected.get("rules") or [])
    if missing:
        result["rules"] = (existing.get("rules") or []) + missing
        op = "update"
    want, have = expected.get("aggregationRule"), existing.get("aggregationRule")
    if want is None and have is not None:
        result.pop("aggregationRule", None)  # not expected to aggregate at all
        op = "update"
    elif want is not None:
        have_sel = (have or {}).get("clusterRoleSelectors") or []
        absent = [s for s in want.get("clusterRoleSelectors") or [] if s not in have_sel]
        if absent:
            result["aggregationRule"] = {"clusterRoleSelectors": have_sel + absent}
            op = "update"
    return op, result, missing


def reconcile_binding(existing: dict, expected: dict) -> tuple[str, dict, list[dict]]:
    """computeReconciledRoleBinding in the union case: (operation, binding, missing
    subjects); a different roleRef means recreate (a roleRef is immutable)."""
    if existing.get("roleRef") != expected.get("roleRef"):
        return "recreate", copy.deepcopy(expected), []
    result = copy.deepcopy(existing)
    op = "update" if _merge_meta(result, expected, existing) else "none"
    have = existing.get("subjects") or []
    missing = [s for s in expected.get("subjects") or [] if s not in have]
    if missing:
        result["subjects"] = have + missing
        op = "update"
    return op, result, missing


class Reconciler:
    """ReconcileRoleOptions / ReconcileRoleBindingOptions .Run with Confirm over `store`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def _get(self, res, name: str) -> dict | None:
        try:
            return self.store.get(res, None, name)
        except StatusError as err:
            if err.code == 404:
                return None
            raise

    def run(self, expected: dict, attempts: int = 0) -> str:
        """One object: the operation done ("create", "update", "recreate", "none",
        "protected"); raises StatusError/RequestTimeout when storage fails."""
        # reconcile_role.go: "keeps us from retrying forever if a role keeps appearing and
        # disappearing as we reconcile"
        if attempts > 2:
            raise StatusError(500, "InternalError", "exceeded maximum attempts")
        binding = expected["kind"] == "ClusterRoleBinding"
        res, name = (BINDINGS if binding else ROLES), expected["metadata"]["name"]
        existing = self._get(res, name)
        if existing is None:
            op, obj, missing = "create", copy.deepcopy(expected), []
        elif binding:
            op, obj, missing = reconcile_binding(existing, expected)
        else:
            op, obj, missing = reconcile_role(existing, expected)
        if existing is not None and protected(existing):
            if op != "none":
                what = "subjects" if binding else "permissions"
                kind = "clusterrolebinding" if binding else "clusterrole"
                klog.warning(
                    f"skipped reconcile-protected {kind}.{GROUP}/{name} with missing "
                    f"{what}: {go_list(missing, binding)}",
                    "storage_rbac.go:219",
                )
            return "protected"
        if op == "recreate":
            try:
                self.store.delete(res, None, name, int(existing["metadata"]["resourceVersion"]))
            except StatusError as err:
                if err.code != 404:
                    raise
            op = "create"
        if op == "create":
            try:
                self.store.create(res, None, objects.prepare_create(res, obj, None))
            except StatusError as err:
                if err.code == 409:  # created since we started: re-run
                    return self.run(expected, attempts + 1)
                raise
            return "recreate" if existing is not None else "create"
        if op == "update":
            rv = int(existing["metadata"]["resourceVersion"])
            try:
                self.store.update(res, None, objects.prepare_update(res, existing, obj, ""), rv)
            except StatusError as err:
                if err.code == 404:  # deleted since we started: re-run
                    return self.run(expected, attempts + 1)
                raise
        return op


def go_list(items: list[dict], subjects: bool) -> str:
    """fmt's %v of []rbacv1.PolicyRule / []rbacv1.Subject, as the warning prints them."""
    fields = ("kind", "apiGroup", "name", "namespace") if subjects else RULE_FIELDS

    def value(v) -> str:  # a rule's fields are slices (nil prints []), a subject's strings
        return str(v or "") if subjects else "[" + " ".join(v or []) + "]"

    structs = ["{" + " ".join(value(i.get(f)) for f in fields) + "}" for i in items]
    return "[" + " ".join(structs) + "]"


RULE_FIELDS = ("verbs", "apiGroups", "resources", "resourceNames", "nonResourceURLs")


def _retry_on_conflict(fn: Callable[[], str]) -> str:
    """retryOnConflictOrServiceUnavailable(retry.DefaultBackoff, fn)."""
    delay = 0.01
    for step in range(4):
        try:
            return fn()
        except StatusError as err:
            if err.reason not in ("Conflict", "ServiceUnavailable") or step == 3:
                raise
        time.sleep(delay * (1 + 0.1 * random.random()))
        delay *= 5
    raise AssertionError("unreachable")


def ensure_rbac_policy(store: Store) -> bool:
    """ensureRBACPolicy: True once every default object is reconciled."""
    for res, what in ((ROLES, "clusterroles"), (BINDINGS, "clusterrolebindings")):
        try:
            store.list(res, None)
        except Exception as err:  # noqa: BLE001 - any storage failure: next tick
            klog.error(f"unable to initialize {what}: {_message(err)}", "storage_rbac.go:187")
            return False
    reconciler, failed = Reconciler(store), False
    expected = bootstrappolicy.cluster_roles() + bootstrappolicy.cluster_role_bindings()
    for obj in expected:
        try:
            _retry_on_conflict(lambda obj=obj: reconciler.run(obj))
        except Exception as err:  # noqa: BLE001 - any storage failure: next tick
            # "don't fail on failures, try to create as many as you can"
            kind = obj["kind"].lower()
            klog.error(
                f"unable to reconcile {kind}.{GROUP}/{obj['metadata']['name']}: {_message(err)}",
                "storage_rbac.go:230",
            )
            failed = True
    return not failed


def _message(err: Exception) -> str:
    if isinstance(err, RequestTimeout):
        return "Timeout: request did not complete within the allotted timeout"
    return err.message if isinstance(err, StatusError) else str(err)


def bootstrap_roles(
    store: Store,
    request_timeout: float = 60.0,
    *,
    interval: float = 1.0,
    timeout: float = 30.0,
    fatal: Callable[[str, str, int], None] = klog.fatal,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """EnsureRBACPolicy's hook: wait.Poll(interval, timeout, ensureRBACPolicy). Each
    attempt is bounded like a loopback request (--request-timeout); past `timeout` the
    hook fails and runPostStartHook (server/hooks.go) exits the process with klog.Fatalf."""
    started = time.monotonic()
    while True:
        sleep(interval)  # wait.Poll checks the condition after the first interval
        with request_deadline(time.monotonic() + request_timeout):
            if ensure_rbac_policy(store):
                return
        if time.monotonic() - started >= timeout:
            fatal(
                f'PostStartHook "{NAME}" failed: unable to initialize roles: '
                "timed out waiting for the condition",
                "hooks.go:203",
                255,
            )
            return


__all__ = ["NAME", "bootstrap_roles", "ensure_rbac_policy", "covers", "Reconciler"]
