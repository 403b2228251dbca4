"""
The teams' RBAC objects built from the model (``security:teams``, issue 16 item 2): for each
team, ClusterRoleBindings to the ClusterRoles it lists under ``cluster_roles``, RoleBindings
in each namespace under ``namespaces`` to the ClusterRoles listed there, and, with ``rules``,
a ClusterRole ``kubeha:team:<team>`` bound cluster-wide (``scope: cluster``) or in each of
the team's namespaces (``scope: namespaces``). Subjects are the team's ``groups`` (as the
authenticator names them, OIDC prefix included) and ``users``.

Names are deterministic (``kubeha:team:<team>:<role>``; the team's own role and its
bindings are ``kubeha:team:<team>``), so a binding never changes its roleRef (immutable in
the API) under the same name, and every object carries ``app.kubernetes.io/managed-by:
kubeha``, ``kubeha.io/part: rbac`` and ``kubeha.io/team: <team>``: ``kubeha.security``
prunes by the first two, so a team removed from pillar loses its objects.

Checked first by ``kubeha_rules_rbac``; this module only shapes objects.

CLI Example:

.. code-block:: bash

    salt cp-1 kubeha_rbac.rbac_objects "$(cat model.json)"
"""

from __future__ import annotations

__virtualname__ = "kubeha_rbac"

GROUP = "rbac.authorization.k8s.io"
API_VERSION = f"{GROUP}/v1"
PART = "rbac"
# The prune selector of kubeha.security: only what this module made (other kubeha objects
# carry the managed-by label too and must not be pruned with the teams' RBAC).
SELECTOR = f"app.kubernetes.io/managed-by=kubeha,kubeha.io/part={PART}"
RESOURCES = ("clusterroles", "clusterrolebindings", "roles", "rolebindings")
# The keys of a PolicyRule, in the order they are rendered (rbac/v1 PolicyRule).
RULE_KEYS = ("apiGroups", "resources", "resourceNames", "nonResourceURLs", "verbs")


def __virtual__():
    return __virtualname__


def teams(kubeha: dict) -> dict:
    """
    The ``security:teams`` mapping of the model (empty when unset).

    CLI Example:

    .. code-block:: bash

        salt-call kubeha_rbac.teams "$(cat model.json)"
    """
    return (kubeha.get("security") or {}).get("teams") or {}


def own_role(team: str) -> str:
    """
    The name of the ClusterRole made from a team's ``rules`` (and of its bindings).

    CLI Example:

    .. code-block:: bash

        salt-call kubeha_rbac.own_role auditors
    """
    return f"kubeha:team:{team}"


def _meta(name: str, team: str, namespace: str = "") -> dict:
    meta: dict = {
        "name": name,
        "labels": {
            "app.kubernetes.io/managed-by": "kubeha",
            "kubeha.io/part": PART,
            "kubeha.io/team": team,
        },
    }
    if namespace:
        meta["namespace"] = namespace
    return meta


def _subjects(conf: dict) -> list[dict]:
    out = [{"kind": "Group", "apiGroup": GROUP, "name": g} for g in conf.get("groups") or []]
    out += [{"kind": "User", "apiGroup": GROUP, "name": u} for u in conf.get("users") or []]
    return out


def _binding(kind: str, name: str, team: str, role: str, subjects, *, ns: str = "") -> dict:
    return {
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": _meta(name, team, ns),
        # Bindings in namespaces refer to ClusterRoles too: the teams name the built-in
        # roles (view, edit, admin) or their own, and no Role is made per namespace.
        "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": role},
        "subjects": subjects,
    }


def _rule(rule: dict) -> dict:
    return {k: list(rule[k]) for k in RULE_KEYS if rule.get(k)}


def team_objects(team: str, conf: dict) -> list[dict]:
    """
    The objects of one team: its ClusterRole (with ``rules``), then its ClusterRoleBindings,
    then its RoleBindings by namespace.

    CLI Example:

    .. code-block:: bash

        salt-call kubeha_rbac.team_objects platform \\
            '{"groups": ["oidc:platform"], "cluster_roles": ["view"]}'
    """
    subjects = _subjects(conf)
    namespaces = conf.get("namespaces") or {}
    roles, cluster_bindings, bindings = [], [], []
    if conf.get("rules"):
        name = own_role(team)
        roles.append(
            {
                "apiVersion": API_VERSION,
                "kind": "ClusterRole",
                "metadata": _meta(name, team),
                "rules": [_rule(r) for r in conf["rules"]],
            }
        )
        if conf.get("scope") == "cluster":
            cluster_bindings.append(_binding("ClusterRoleBinding", name, team, name, subjects))
        else:
            for ns in sorted(namespaces):
                bindings.append(_binding("RoleBinding", name, team, name, subjects, ns=ns))
    for role in sorted(set(conf.get("cluster_roles") or [])):
        name = f"kubeha:team:{team}:{role}"
        cluster_bindings.append(_binding("ClusterRoleBinding", name, team, role, subjects))
    for ns in sorted(namespaces):
        for role in sorted(set(namespaces[ns] or [])):
            name = f"kubeha:team:{team}:{role}"
            bindings.append(_binding("RoleBinding", name, team, role, subjects, ns=ns))
    return roles + cluster_bindings + bindings


def rbac_objects(kubeha: dict) -> list[dict]:
    """
    Every team's RBAC objects, teams in name order; cluster-scoped objects first, so a
    RoleBinding refused for a missing namespace leaves the ClusterRoles and
    ClusterRoleBindings applied. Empty when no team is configured.

    CLI Example:

    .. code-block:: bash

        salt cp-1 kubeha_rbac.rbac_objects "$(cat model.json)"
    """
    objs = [o for team, conf in sorted(teams(kubeha).items()) for o in team_objects(team, conf)]
    order = {"ClusterRole": 0, "ClusterRoleBinding": 1, "RoleBinding": 2}
    return sorted(objs, key=lambda o: order[o["kind"]])  # stable: teams stay in order


def prune(kubeha: dict) -> dict:
    """
    The ``prune`` argument of ``kube_objects.applied`` for the teams' RBAC.

    CLI Example:

    .. code-block:: bash

        salt-call kubeha_rbac.prune "$(cat model.json)"
    """
    return {"selector": SELECTOR, "resources": list(RESOURCES)}
