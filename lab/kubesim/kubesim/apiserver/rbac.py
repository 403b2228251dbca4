"""RBAC authorizer over the apiserver's watch cache (informer-like, as upstream's listers).

Emulates plugin/pkg/auth/authorizer/rbac/rbac.go (RBACAuthorizer.Authorize, RuleAllows),
pkg/registry/rbac/validation/rule.go (VisitRulesFor, appliesToUser, GetRoleReferenceRules)
and pkg/apis/rbac/v1/evaluation_helpers.go (VerbMatches, APIGroupMatches, ResourceMatches,
ResourceNameMatches, NonResourceURLMatches).

The default roles (cluster-admin, admin, edit, view, system:monitoring...) are stored by the
rbac/bootstrap-roles post-start hook (reconcile.py, bootstrappolicy.py), so bindings to them
work as upstream. Not emulated: aggregation itself (aggregationRule; upstream's
clusterrole-aggregation controller in kube-controller-manager fills the rules; here only the
rules stored in the object count: the bootstrap admin/edit/view are stored already filled).
A binding to a missing role grants nothing: the 403 then says
`RBAC: clusterrole.rbac.authorization.k8s.io "x" not found`, as upstream's does.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from .resources import lookup
from .store import key_of

GROUP = "rbac.authorization.k8s.io"


@dataclass
class Attributes:
    """authorizer.AttributesRecord: what RBAC sees of a request."""

    user: str
    groups: list[str]
    verb: str
    resource_request: bool
    api_group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""


# -- evaluation_helpers.go ---------------------------------------------------------------------
def verb_matches(rule: dict, verb: str) -> bool:
    return any(v in ("*", verb) for v in rule.get("verbs") or [])


def api_group_matches(rule: dict, group: str) -> bool:
    return any(g in ("*", group) for g in rule.get("apiGroups") or [])


def resource_matches(rule: dict, combined: str, subresource: str) -> bool:
    """An exact match of resource[/subresource], "*", or "*/<subresource>"."""
    for res in rule.get("resources") or []:
        if res in ("*", combined):
            return True
        if not subresource:
            continue
        if len(res) == len(subresource) + 2 and res.startswith("*/") and res.endswith(subresource):
            return True
    return False


def resource_name_matches(rule: dict, name: str) -> bool:
    names = rule.get("resourceNames") or []
    return not names or name in names


def non_resource_url_matches(rule: dict, path: str) -> bool:
    for url in rule.get("nonResourceURLs") or []:
        if url in ("*", path):
            return True
        if url.endswith("*") and path.startswith(url.rstrip("*")):
            return True
    return False


def rule_allows(attrs: Attributes, rule: dict) -> bool:
    """rbac.go RuleAllows."""
    if attrs.resource_request:
        combined = attrs.resource
        if attrs.subresource:
            combined += "/" + attrs.subresource
        return (
            verb_matches(rule, attrs.verb)
            and api_group_matches(rule, attrs.api_group)
            and resource_matches(rule, combined, attrs.subresource)
            and resource_name_matches(rule, attrs.name)
        )
    return verb_matches(rule, attrs.verb) and non_resource_url_matches(rule, attrs.path)


# -- rule.go --------------------------------------------------------------------------------------
def applies_to_user(attrs: Attributes, subject: dict, namespace: str) -> bool:
    """appliesToUser: User by name, Group by membership, ServiceAccount by its username
    (a RoleBinding's subject namespace defaults to the binding's)."""
    kind, name = subject.get("kind"), subject.get("name")
    if kind == "User":
        return attrs.user == name
    if kind == "Group":
        return name in attrs.groups
    if kind == "ServiceAccount":
        sa_ns = subject.get("namespace") or namespace
        return bool(sa_ns) and attrs.user == f"system:serviceaccount:{sa_ns}:{name}"
    return False


def describe(binding: dict, subject: dict, namespace: str) -> str:
    """rule.go clusterRoleBindingDescriber / roleBindingDescriber .String, describeSubject."""
    ref = binding.get("roleRef") or {}
    name = binding["metadata"]["name"]
    kind = "RoleBinding" if namespace else "ClusterRoleBinding"
    if namespace:
        name += "/" + namespace
    who = subject.get("name", "")
    if subject.get("kind") == "ServiceAccount":
        who += "/" + (subject.get("namespace") or namespace)
    return (
        f'{kind} "{name}" of {ref.get("kind")} "{ref.get("name")}" to {subject.get("kind")} "{who}"'
    )


class RBAC:
    """Reads roles and bindings from `cache` (cacher.Cache: list(prefix), get(key))."""

    def __init__(self, cache) -> None:
        self.cache = cache
        self.res = {p: lookup(GROUP, "v1", p) for p in ("clusterroles", "clusterrolebindings")}
        self.res |= {p: lookup(GROUP, "v1", p) for p in ("roles", "rolebindings")}

    def _list(self, plural: str, namespace: str | None) -> list[dict]:
        items, _ = self.cache.list(key_of(self.res[plural], namespace))
        return items

    def _role_rules(self, ref: dict, namespace: str) -> list[dict]:
        """GetRoleReferenceRules; a missing role is an error the 403 reason reports."""
        kind, name = ref.get("kind"), ref.get("name", "")
        if kind == "ClusterRole":
            role = self.cache.get(key_of(self.res["clusterroles"], None, name))
            if role is None:
                raise LookupError(f'clusterrole.{GROUP} "{name}" not found')
        elif kind == "Role":
            role = self.cache.get(key_of(self.res["roles"], namespace, name))
            if role is None:
                raise LookupError(f'role.{GROUP} "{name}" not found')
        else:
            raise LookupError(f"unsupported role reference kind: {kind!r}")
        return role.get("rules") or []

    def visit_rules(self, attrs: Attributes, errors: list[str]) -> Iterator[tuple[str, dict]]:
        """VisitRulesFor: ClusterRoleBindings first, then the RoleBindings of the request's
        namespace (which may reference a Role there or a ClusterRole); each rule with its
        source as rule.go's clusterRoleBindingDescriber / roleBindingDescriber name it."""
        scopes = [("clusterrolebindings", None)]
        if attrs.namespace:
            scopes.append(("rolebindings", attrs.namespace))
        for plural, namespace in scopes:
            for binding in self._list(plural, namespace):
                subjects = binding.get("subjects") or []
                subject = next(
                    (s for s in subjects if applies_to_user(attrs, s, namespace or "")), None
                )
                if subject is None:
                    continue
                ref = binding.get("roleRef") or {}
                try:
                    rules = self._role_rules(ref, namespace or "")
                except LookupError as err:
                    errors.append(str(err))
                    continue
                source = describe(binding, subject, namespace or "")
                for rule in rules:
                    yield source, rule

    def authorize(self, attrs: Attributes) -> tuple[bool, str]:
        """(allowed, reason) as rbac.go's authorizingVisitor: allowed with
        "RBAC: allowed by <source>", else the lookup errors ("RBAC: ...") or ""."""
        errors: list[str] = []
        for source, rule in self.visit_rules(attrs, errors):
            if rule_allows(attrs, rule):
                return True, f"RBAC: allowed by {source}"
        if not errors:
            return False, ""
        # utilerrors.NewAggregate(...).Error(): one message alone, several in brackets
        joined = errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]"
        return False, f"RBAC: {joined}"


__all__ = ["RBAC", "Attributes", "rule_allows", "applies_to_user"]
