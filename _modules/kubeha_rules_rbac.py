"""
Rules for the teams' RBAC in the model (``security:teams``): what the API server would
refuse when ``kubeha.security`` applies the objects (rbac/v1 validation), and what it would
accept but hand a team more than the pillar reads like (cluster-admin, or rules that let a
team grant itself anything), which needs ``allow_cluster_admin: true`` in the team.

Messages: ``kubeha:<key>: <what is wrong>. <the fix>``.

CLI Example:

.. code-block:: bash

    salt-call kubeha_rules_rbac.problems "$(cat model.json)"
"""

from __future__ import annotations

import re

__virtualname__ = "kubeha_rules_rbac"

KEYS = ("groups", "users", "cluster_roles", "namespaces", "rules", "scope", "allow_cluster_admin")
SCOPES = ("cluster", "namespaces")
RULE_KEYS = ("apiGroups", "resources", "resourceNames", "nonResourceURLs", "verbs")
# The verbs the authorizer checks: the API's request verbs (apiserver's request info), the
# RBAC escalation checks' escalate/bind, impersonation's impersonate, PodSecurityPolicy-era
# and other admission's use, and the certificate signers' approve/sign
# (pkg/registry/rbac/escalation_check.go, staging/src/k8s.io/apiserver/pkg/endpoints/filters/
# impersonation.go, pkg/registry/certificates/certificates/strategy.go).
VERBS = (
    "get", "list", "watch", "create", "update", "patch", "delete", "deletecollection",
    "*", "escalate", "bind", "impersonate", "use", "approve", "sign",
)  # fmt: skip
# Verbs that let a team with them at cluster scope become cluster-admin: impersonate a
# member of system:masters, or grant itself (bind/escalate) any role.
ESCALATING = {"impersonate", "escalate", "bind"}
# Resources whose '*' verbs include the escalating ones.
ESCALATING_RESOURCES = {"*", "clusterroles", "clusterrolebindings", "roles", "rolebindings",
                        "users", "groups", "serviceaccounts"}  # fmt: skip
# A role name the API accepts (a path segment: no '/', '%', not '.' or '..';
# pkg/apis/rbac/validation/validation.go uses path.ValidatePathSegmentName), kept to the
# characters role names use in practice.
ROLE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9:._-]{0,252}")
# A subject name: any printable text without surrounding spaces (the authenticator's
# strings), at most 253 characters.
SUBJECT = re.compile(r"[^\s\x00-\x1f\x7f](?:[^\x00-\x1f\x7f]{0,251}[^\s\x00-\x1f\x7f])?")
CLUSTER_ADMIN_WHY = (
    "cluster-admin (or rules equal to it) gives every member full control of the cluster, "
    "kube-system and its secrets included, and survives any later pillar review only as a "
    "name; a team must ask for it in so many words"
)


def __virtual__():
    return __virtualname__


def _label(value) -> bool:
    return __utils__["kubeha_values.matches"]("dns_label", value)


def _strings(value) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _subjects(key: str, conf: dict) -> list[str]:
    out = []
    for field in ("groups", "users"):
        names = conf.get(field)
        if names is None:
            continue
        if not _strings(names):
            out.append(f"{key}:{field}: {names!r}; list the {field} as strings.")
            continue
        for name in names:
            if not SUBJECT.fullmatch(name):
                out.append(
                    f"{key}:{field}: {name!r} is empty, has control characters or spaces "
                    "around it, or is over 253 characters; write the name as the "
                    "authenticator gives it (with the OIDC prefix, e.g. oidc:platform)."
                )
            elif name.startswith("system:"):
                out.append(
                    f"{key}:{field}: {name!r} is one of Kubernetes' own subjects "
                    "(system:authenticated is every user, system:unauthenticated anyone); "
                    "kubeha binds teams, not these. Use the team's own group."
                )
    if not (conf.get("groups") or conf.get("users")):
        out.append(f"{key}: no groups or users; name who is in the team (groups: [oidc:team]).")
    return out


def _role_names(key: str, roles, admin_ok: bool) -> list[str]:
    if not _strings(roles):
        return [f"{key}: {roles!r}; list ClusterRole names, e.g. [view]."]
    out = []
    for role in roles:
        if not ROLE_NAME.fullmatch(role):
            out.append(
                f"{key}: {role!r} is not a role name (letters, digits, ':', '.', '_', '-'); "
                "name an existing ClusterRole such as view, edit or admin."
            )
        elif role == "cluster-admin" and not admin_ok:
            out.append(
                f"{key}: cluster-admin refused: {CLUSTER_ADMIN_WHY}. Set "
                "allow_cluster_admin: true in the team if that is meant."
            )
    return out


def _escalates(rule: dict) -> bool:
    verbs = set(rule.get("verbs") or [])
    resources = set(rule.get("resources") or [])
    if verbs & ESCALATING:
        return True
    return "*" in verbs and bool(resources & ESCALATING_RESOURCES)


def _rule(key: str, rule, scope, admin_ok: bool) -> list[str]:
    # rbac/v1 PolicyRule validation: pkg/apis/rbac/validation/validation.go ValidatePolicyRule.
    if not isinstance(rule, dict):
        return [f"{key}: {rule!r}; a rule is a mapping of apiGroups, resources, verbs."]
    unknown = sorted(set(rule) - set(RULE_KEYS))
    if unknown:
        return [f"{key}: {unknown!r} unknown; a rule has {', '.join(RULE_KEYS)}."]
    bad = [k for k in RULE_KEYS if k in rule and not _strings(rule[k])]
    if bad:
        return [f"{key}: {bad!r} must be lists of strings."]
    out = []
    verbs = rule.get("verbs") or []
    if not verbs:
        out.append(f"{key}: no verbs; list what the team may do, e.g. [get, list, watch].")
    unknown_verbs = [v for v in verbs if v not in VERBS]
    if unknown_verbs:
        out.append(f"{key}:verbs: {unknown_verbs!r} unknown; use {', '.join(VERBS)}.")
    urls = rule.get("nonResourceURLs") or []
    if urls:
        if rule.get("apiGroups") or rule.get("resources") or rule.get("resourceNames"):
            out.append(
                f"{key}: nonResourceURLs with apiGroups/resources: the API refuses a rule "
                "for both; split it into two rules."
            )
        if scope != "cluster":
            out.append(
                f"{key}: nonResourceURLs ({urls!r}) are only granted cluster-wide (a "
                "RoleBinding ignores them); use scope: cluster or drop them."
            )
        for url in urls:
            if not url.startswith("/") or "*" in url[:-1]:
                out.append(
                    f"{key}:nonResourceURLs: {url!r}; a path like /healthz or /metrics, "
                    "'*' only at the end (/logs/*)."
                )
    else:
        if not rule.get("apiGroups"):
            out.append(f"{key}: no apiGroups; list them ('' is the core group: apiGroups: ['']).")
        if not rule.get("resources"):
            out.append(f"{key}: no resources; list them, e.g. [pods, pods/log].")
    if scope == "cluster" and not admin_ok and _escalates(rule):
        out.append(
            f"{key}: grants {sorted(set(verbs))!r} on {rule.get('resources')!r} cluster-wide, "
            "which lets the team impersonate or bind its way to cluster-admin; "
            f"{CLUSTER_ADMIN_WHY}. Narrow the rule, or set allow_cluster_admin: true."
        )
    return out


def _team(team, conf) -> list[str]:
    key = f"kubeha:security:teams:{team}"
    if not _label(team):
        return [
            f"{key}: the team name must be a DNS label (lowercase, digits, '-', at most 63), "
            "as it names and labels the team's objects; rename it, e.g. app-a."
        ]
    if not isinstance(conf, dict):
        return [f"{key}: {conf!r}; a team is a mapping (groups, cluster_roles, namespaces...)."]
    unknown = sorted(set(conf) - set(KEYS))
    if unknown:
        return [f"{key}: {unknown!r} unknown; a team has {', '.join(KEYS)}."]
    admin_ok = conf.get("allow_cluster_admin", False)
    out = []
    if not isinstance(admin_ok, bool):
        out.append(f"{key}:allow_cluster_admin: {admin_ok!r}; true or false.")
        admin_ok = False
    out += _subjects(key, conf)
    if conf.get("cluster_roles") is not None:
        out += _role_names(f"{key}:cluster_roles", conf["cluster_roles"], admin_ok)
    namespaces = conf.get("namespaces") or {}
    if not isinstance(namespaces, dict):
        out.append(f"{key}:namespaces: a mapping of namespace: [ClusterRole, ...].")
        namespaces = {}
    scope, rules = conf.get("scope"), conf.get("rules")
    for ns, roles in namespaces.items():
        if not _label(ns):
            out.append(
                f"{key}:namespaces: {ns!r} is not a namespace name (a DNS label: lowercase, "
                "digits, '-', at most 63)."
            )
        if roles:
            out += _role_names(f"{key}:namespaces:{ns}", roles, admin_ok)
        elif not (rules and scope == "namespaces"):
            out.append(
                f"{key}:namespaces:{ns}: no roles; list ClusterRoles for it (e.g. [edit]) "
                "or give the team rules with scope: namespaces."
            )
    if rules is not None:
        if not isinstance(rules, list) or not rules:
            out.append(f"{key}:rules: a non-empty list of rules, or leave it out.")
            rules = []
        if scope not in SCOPES:
            out.append(
                f"{key}:scope: {scope!r}; with rules, say where they apply: scope: cluster "
                "(a ClusterRoleBinding) or scope: namespaces (a RoleBinding in each namespace "
                "under namespaces)."
            )
        elif scope == "namespaces" and not namespaces:
            out.append(f"{key}:scope: namespaces, but the team lists no namespaces; add them.")
        for i, rule in enumerate(rules):
            out += _rule(f"{key}:rules[{i}]", rule, scope, admin_ok)
    elif scope is not None:
        out.append(f"{key}:scope: set without rules (it only places them); drop it.")
    if not (conf.get("cluster_roles") or namespaces or rules):
        out.append(f"{key}: grants nothing; add cluster_roles, namespaces or rules.")
    return out


def problems(model: dict) -> list[str]:
    """
    Every problem of the model's ``security:teams``.

    CLI Example:

    .. code-block:: bash

        salt-call kubeha_rules_rbac.problems "$(cat model.json)"
    """
    teams = (model.get("security") or {}).get("teams")
    if teams is None or teams == {}:
        return []
    if not isinstance(teams, dict):
        return ["kubeha:security:teams: a mapping of team name: {groups, cluster_roles, ...}."]
    out: list[str] = []
    for team in sorted(teams, key=str):
        out += _team(team, teams[team])
    return out
