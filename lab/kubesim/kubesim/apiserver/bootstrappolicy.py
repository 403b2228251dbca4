"""The default ClusterRoles and ClusterRoleBindings kube-apiserver keeps in storage.

Emulates plugin/pkg/auth/authorizer/rbac/bootstrappolicy/policy.go (ClusterRoles,
ClusterRoleBindings) as of v1.30 with the default feature gates, for the roles a kubeadm
cluster's users meet: cluster-admin, admin, edit, view (and the system:aggregate-to-*
roles they aggregate), system:discovery, system:basic-user, system:public-info-viewer,
system:monitoring, system:auth-delegator. Every object carries the label
`kubernetes.io/bootstrapping: rbac-defaults` and the annotation
`rbac.authorization.kubernetes.io/autoupdate: "true"` (policy.go addDefaultMetadata).
Rules are built as rbacv1helpers.NewRule(...).RuleOrDie() builds them: every list sorted
(pkg/apis/rbac/v1/helpers.go PolicyRuleBuilder.Rule).

admin, edit and view carry their aggregationRule as upstream, but policy.go gives them no
rules: kube-controller-manager's clusterrole-aggregation controller
(pkg/controller/clusterroleaggregation/clusterroleaggregation_controller.go) fills them
with the union of the rules of the ClusterRoles their selectors match, in name order. kubesim
runs no such controller, so the rules it would leave are stored here directly: view = the
rules of system:aggregate-to-view; edit = system:aggregate-to-edit's then view's; admin =
edit's then system:aggregate-to-admin's. ClusterRoles a user labels aggregate-to-* later are
not folded in.

Not created (kubesim's coarse authorizer, auth.py allowed(), stands in for them): the
node, controller and component roles (system:node*, system:kube-controller-manager,
system:kube-scheduler, system:controller:* of controller_policy.go...) and their bindings.
"""

from __future__ import annotations

import copy

GROUP = "rbac.authorization.k8s.io"
AUTOUPDATE = "rbac.authorization.kubernetes.io/autoupdate"
LABELS = {"kubernetes.io/bootstrapping": "rbac-defaults"}
ANNOTATIONS = {AUTOUPDATE: "true"}

WRITE = ["create", "update", "patch", "delete", "deletecollection"]
READ_WRITE = ["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"]
READ = ["get", "list", "watch"]

AGGREGATE_TO = "rbac.authorization.k8s.io/aggregate-to-"


def rule(
    verbs: list[str],
    groups: tuple[str, ...] = (),
    resources: tuple[str, ...] = (),
    urls: tuple[str, ...] = (),
) -> dict:
    """rbacv1helpers.NewRule(verbs...).Groups(...).Resources(...)|.URLs(...).RuleOrDie()."""
    out: dict = {}
    if resources:
        out["apiGroups"] = sorted(groups)
        out["resources"] = sorted(resources)
    if urls:
        out["nonResourceURLs"] = sorted(urls)
    out["verbs"] = sorted(verbs)
    return out


# -- policy.go ClusterRoles: the aggregated roles' sources -----------------------------------
AGGREGATE_TO_ADMIN = [
    rule(["create"], ("authorization.k8s.io",), ("localsubjectaccessreviews",)),
    rule(READ_WRITE, (GROUP,), ("roles", "rolebindings")),
]

AGGREGATE_TO_EDIT = [
    # Allow read on escalating resources
    rule(
        READ,
        ("",),
        ("pods/attach", "pods/proxy", "pods/exec", "pods/portforward", "secrets", "services/proxy"),
    ),
    rule(["impersonate"], ("",), ("serviceaccounts",)),
    rule(WRITE, ("",), ("pods", "pods/attach", "pods/proxy", "pods/exec", "pods/portforward")),
    rule(["create"], ("",), ("pods/eviction",)),
    rule(
        WRITE,
        ("",),
        (
            "replicationcontrollers",
            "replicationcontrollers/scale",
            "serviceaccounts",
            "services",
            "services/proxy",
            "persistentvolumeclaims",
            "configmaps",
            "secrets",
            "events",
        ),
    ),
    rule(["create"], ("",), ("serviceaccounts/token",)),
    rule(
        WRITE,
        ("apps",),
        (
            "statefulsets",
            "statefulsets/scale",
            "daemonsets",
            "deployments",
            "deployments/scale",
            "deployments/rollback",
            "replicasets",
            "replicasets/scale",
        ),
    ),
    rule(WRITE, ("autoscaling",), ("horizontalpodautoscalers",)),
    rule(WRITE, ("batch",), ("jobs", "cronjobs")),
    rule(
        WRITE,
        ("extensions",),
        (
            "daemonsets",
            "deployments",
            "deployments/scale",
            "deployments/rollback",
            "ingresses",
            "replicasets",
            "replicasets/scale",
            "replicationcontrollers/scale",
            "networkpolicies",
        ),
    ),
    rule(WRITE, ("policy",), ("poddisruptionbudgets",)),
    rule(WRITE, ("networking.k8s.io",), ("networkpolicies", "ingresses")),
    # kubernetes/kubernetes#111472 (1.25): namespace editors may use Leases for leader election
    rule(READ_WRITE, ("coordination.k8s.io",), ("leases",)),
]

AGGREGATE_TO_VIEW = [
    rule(
        READ,
        ("",),
        (
            "pods",
            "replicationcontrollers",
            "replicationcontrollers/scale",
            "serviceaccounts",
            "services",
            "services/status",
            "endpoints",
            "persistentvolumeclaims",
            "persistentvolumeclaims/status",
            "configmaps",
        ),
    ),
    rule(
        READ,
        ("",),
        (
            "limitranges",
            "resourcequotas",
            "bindings",
            "events",
            "pods/status",
            "resourcequotas/status",
            "namespaces/status",
            "replicationcontrollers/status",
            "pods/log",
        ),
    ),
    # read access to namespaces at the namespace scope means you can read *this* namespace
    rule(READ, ("",), ("namespaces",)),
    rule(READ, ("discovery.k8s.io",), ("endpointslices",)),
    rule(
        READ,
        ("apps",),
        (
            "controllerrevisions",
            "statefulsets",
            "statefulsets/status",
            "statefulsets/scale",
            "daemonsets",
            "daemonsets/status",
            "deployments",
            "deployments/status",
            "deployments/scale",
            "replicasets",
            "replicasets/status",
            "replicasets/scale",
        ),
    ),
    rule(READ, ("autoscaling",), ("horizontalpodautoscalers", "horizontalpodautoscalers/status")),
    rule(READ, ("batch",), ("jobs", "cronjobs", "cronjobs/status", "jobs/status")),
    rule(
        READ,
        ("extensions",),
        (
            "daemonsets",
            "daemonsets/status",
            "deployments",
            "deployments/scale",
            "deployments/status",
            "ingresses",
            "ingresses/status",
            "replicasets",
            "replicasets/scale",
            "replicasets/status",
            "replicationcontrollers/scale",
            "networkpolicies",
        ),
    ),
    rule(READ, ("policy",), ("poddisruptionbudgets", "poddisruptionbudgets/status")),
    rule(READ, ("networking.k8s.io",), ("networkpolicies", "ingresses", "ingresses/status")),
]


def aggregate(*sources: list[dict]) -> list[dict]:
    """clusterroleaggregation_controller.go syncClusterRole: the matched roles' rules in
    order, a rule already present (ruleExists: deep equality) not repeated."""
    out: list[dict] = []
    for rules in sources:
        for r in rules:
            if r not in out:
                out.append(copy.deepcopy(r))
    return out


VIEW = aggregate(AGGREGATE_TO_VIEW)
EDIT = aggregate(AGGREGATE_TO_EDIT, VIEW)  # matched: system:aggregate-to-edit, view
ADMIN = aggregate(EDIT, AGGREGATE_TO_ADMIN)  # matched: edit, system:aggregate-to-admin


def _selector(to: str) -> dict:
    return {"clusterRoleSelectors": [{"matchLabels": {AGGREGATE_TO + to: "true"}}]}


def _role(name: str, rules: list[dict], labels: dict | None = None, to: str = "") -> dict:
    obj = {
        "apiVersion": f"{GROUP}/v1",
        "kind": "ClusterRole",
        "metadata": {
            "name": name,
            "labels": (labels or {}) | LABELS,
            "annotations": dict(ANNOTATIONS),
        },
        "rules": copy.deepcopy(rules),
    }
    if to:
        obj["aggregationRule"] = _selector(to)
    return obj


def cluster_roles() -> list[dict]:
    """policy.go ClusterRoles(), the subset kubesim keeps (see the module docstring)."""
    monitoring = ("/metrics", "/metrics/slis", "/livez", "/readyz", "/healthz")
    return [
        # a "root" role which can do absolutely anything
        _role("cluster-admin", [rule(["*"], ("*",), ("*",)), rule(["*"], urls=("*",))]),
        # just enough power to determine if the server is ready and discover API versions
        _role(
            "system:discovery",
            [
                rule(
                    ["get"],
                    urls=(
                        "/livez",
                        "/readyz",
                        "/healthz",
                        "/version",
                        "/version/",
                        "/openapi",
                        "/openapi/*",
                        "/api",
                        "/api/*",
                        "/apis",
                        "/apis/*",
                    ),
                )
            ],
        ),
        # minimal read access to the monitoring endpoints
        _role(
            "system:monitoring",
            [rule(["get"], urls=(*monitoring, "/livez/*", "/readyz/*", "/healthz/*"))],
        ),
        _role(
            "system:basic-user",
            [
                rule(
                    ["create"],
                    ("authorization.k8s.io",),
                    ("selfsubjectaccessreviews", "selfsubjectrulesreviews"),
                ),
                rule(["create"], ("authentication.k8s.io",), ("selfsubjectreviews",)),
            ],
        ),
        _role(
            "system:public-info-viewer",
            [rule(["get"], urls=("/livez", "/readyz", "/healthz", "/version", "/version/"))],
        ),
        _role("admin", ADMIN, to="admin"),
        _role("edit", EDIT, {AGGREGATE_TO + "admin": "true"}, to="edit"),
        _role("view", VIEW, {AGGREGATE_TO + "edit": "true"}, to="view"),
        _role("system:aggregate-to-admin", AGGREGATE_TO_ADMIN, {AGGREGATE_TO + "admin": "true"}),
        _role("system:aggregate-to-edit", AGGREGATE_TO_EDIT, {AGGREGATE_TO + "edit": "true"}),
        _role("system:aggregate-to-view", AGGREGATE_TO_VIEW, {AGGREGATE_TO + "view": "true"}),
        # allowing authentication and authorization delegation (TokenReview, SAR)
        _role(
            "system:auth-delegator",
            [
                rule(["create"], ("authentication.k8s.io",), ("tokenreviews",)),
                rule(["create"], ("authorization.k8s.io",), ("subjectaccessreviews",)),
            ],
        ),
    ]


def _binding(role: str, *groups: str) -> dict:
    """rbacv1helpers.NewClusterBinding(role).Groups(...).BindingOrDie()."""
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": role, "labels": dict(LABELS), "annotations": dict(ANNOTATIONS)},
        "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": role},
        "subjects": [{"kind": "Group", "apiGroup": GROUP, "name": g} for g in groups],
    }


def cluster_role_bindings() -> list[dict]:
    """policy.go ClusterRoleBindings(), for the roles above (user.SystemPrivilegedGroup,
    user.MonitoringGroup, user.AllAuthenticated, user.AllUnauthenticated)."""
    return [
        _binding("cluster-admin", "system:masters"),
        _binding("system:monitoring", "system:monitoring"),
        _binding("system:discovery", "system:authenticated"),
        _binding("system:basic-user", "system:authenticated"),
        _binding("system:public-info-viewer", "system:authenticated", "system:unauthenticated"),
    ]


__all__ = ["cluster_roles", "cluster_role_bindings", "rule", "AUTOUPDATE", "ADMIN", "EDIT", "VIEW"]
