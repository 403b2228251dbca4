"""The API resources the stand-in serves: group, version, kind, scope and etcd key prefix.

Key prefixes follow the real apiserver's storage layout (e.g. nodes live under
/registry/minions, services under /registry/services/specs: pkg/registry/*/storage).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Resource:
    plural: str
    group: str
    version: str
    kind: str
    namespaced: bool
    key: str  # etcd prefix below /registry
    short: tuple[str, ...] = ()
    status: bool = False  # has a /status subresource (main PUT ignores .status)
    verbs: tuple[str, ...] = (
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch",
    )

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """`leases.coordination.k8s.io` as error messages name the resource."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


_ALL = [
    Resource("namespaces", "", "v1", "Namespace", False, "namespaces", ("ns",), True),
    Resource("nodes", "", "v1", "Node", False, "minions", ("no",), True),
    Resource("pods", "", "v1", "Pod", True, "pods", ("po",), True),
    Resource("configmaps", "", "v1", "ConfigMap", True, "configmaps", ("cm",)),
    Resource("secrets", "", "v1", "Secret", True, "secrets"),
    Resource("events", "", "v1", "Event", True, "events", ("ev",)),
    Resource("services", "", "v1", "Service", True, "services/specs", ("svc",), True),
    Resource("endpoints", "", "v1", "Endpoints", True, "services/endpoints", ("ep",)),
    Resource("serviceaccounts", "", "v1", "ServiceAccount", True, "serviceaccounts", ("sa",)),
    Resource("leases", "coordination.k8s.io", "v1", "Lease", True, "leases"),
    Resource(
        "poddisruptionbudgets",
        "policy",
        "v1",
        "PodDisruptionBudget",
        True,
        "poddisruptionbudgets",
        ("pdb",),
        True,
    ),
    Resource("replicasets", "apps", "v1", "ReplicaSet", True, "replicasets", ("rs",), True),
    Resource("deployments", "apps", "v1", "Deployment", True, "deployments", ("deploy",), True),
    Resource("daemonsets", "apps", "v1", "DaemonSet", True, "daemonsets", ("ds",), True),
    Resource("jobs", "batch", "v1", "Job", True, "jobs", (), True),
    Resource(
        "certificatesigningrequests",
        "certificates.k8s.io",
        "v1",
        "CertificateSigningRequest",
        False,
        "certificatesigningrequests",
        ("csr",),
        True,
    ),
    Resource(
        "clusterroles", "rbac.authorization.k8s.io", "v1", "ClusterRole", False, "clusterroles"
    ),
    Resource(
        "clusterrolebindings",
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        False,
        "clusterrolebindings",
    ),
    Resource("roles", "rbac.authorization.k8s.io", "v1", "Role", True, "roles"),
    Resource(
        "rolebindings", "rbac.authorization.k8s.io", "v1", "RoleBinding", True, "rolebindings"
    ),
    # authorization.k8s.io/v1: create only, never stored (sar.py; upstream
    # pkg/registry/authorization/subjectaccessreview/rest.go); key unused.
    Resource(
        "subjectaccessreviews",
        "authorization.k8s.io",
        "v1",
        "SubjectAccessReview",
        False,
        "subjectaccessreviews",
        verbs=("create",),
    ),
    # admissionregistration.k8s.io/v1 admission policies, served from 1.30 (admission.py);
    # etcd keys as pkg/registry/admissionregistration/*/storage (prefix = the resource).
    Resource(
        "validatingadmissionpolicies",
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingAdmissionPolicy",
        False,
        "validatingadmissionpolicies",
        (),
        True,
    ),
    Resource(
        "validatingadmissionpolicybindings",
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingAdmissionPolicyBinding",
        False,
        "validatingadmissionpolicybindings",
    ),
]

BY_GV_PLURAL = {(r.group, r.version, r.plural): r for r in _ALL}
ALL = _ALL


def lookup(group: str, version: str, plural: str) -> Resource | None:
    return BY_GV_PLURAL.get((group, version, plural))


def groups() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for r in _ALL:
        if r.group:
            out.setdefault(r.group, [])
            if r.version not in out[r.group]:
                out[r.group].append(r.version)
    return out


def resource_list(group: str, version: str) -> dict | None:
    items = [r for r in _ALL if r.group == group and r.version == version]
    if not items:
        return None
    resources = []
    for r in items:
        resources.append(
            {
                "name": r.plural,
                "singularName": r.kind.lower(),
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": list(r.verbs),
                **({"shortNames": list(r.short)} if r.short else {}),
            }
        )
        if r.status:
            resources.append(
                {
                    "name": f"{r.plural}/status",
                    "singularName": "",
                    "namespaced": r.namespaced,
                    "kind": r.kind,
                    "verbs": ["get", "patch", "update"],
                }
            )
        if r.plural == "pods":
            resources.append(
                {
                    "name": "pods/eviction",
                    "singularName": "",
                    "namespaced": True,
                    "group": "policy",
                    "version": "v1",
                    "kind": "Eviction",
                    "verbs": ["create"],
                }
            )
            resources.append(
                {
                    "name": "pods/binding",
                    "singularName": "",
                    "namespaced": True,
                    "kind": "Binding",
                    "verbs": ["create"],
                }
            )
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": resources,
    }
