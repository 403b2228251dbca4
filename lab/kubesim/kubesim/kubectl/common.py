"""What every kubectl command shares: resource names and aliases, the client from the
kubeconfig (client-go's loading rules, first file of $KUBECONFIG), error texts, manifests."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import yaml

from .. import flags as flagutil
from ..kubeclient import RESOURCES, ApiError, Client

ALIASES = {
    "no": "nodes",
    "node": "nodes",
    "po": "pods",
    "pod": "pods",
    "lease": "leases",
    "pdb": "poddisruptionbudgets",
    "poddisruptionbudget": "poddisruptionbudgets",
    "cm": "configmaps",
    "configmap": "configmaps",
    "secret": "secrets",
    "ns": "namespaces",
    "namespace": "namespaces",
    "rs": "replicasets",
    "replicaset": "replicasets",
    "deploy": "deployments",
    "deployment": "deployments",
    "ds": "daemonsets",
    "daemonset": "daemonsets",
    "csr": "certificatesigningrequests",
    "ev": "events",
    "event": "events",
    "svc": "services",
    "service": "services",
    "ep": "endpoints",
    "sa": "serviceaccounts",
    "clusterrolebinding": "clusterrolebindings",
    "clusterrole": "clusterroles",
    "role": "roles",
    "rolebinding": "rolebindings",
    "validatingadmissionpolicy": "validatingadmissionpolicies",
    "validatingadmissionpolicybinding": "validatingadmissionpolicybindings",
}
KIND_TO_RESOURCE = {
    "Pod": "pods",
    "PodDisruptionBudget": "poddisruptionbudgets",
    "ConfigMap": "configmaps",
    "Secret": "secrets",
    "Namespace": "namespaces",
    "ReplicaSet": "replicasets",
    "Deployment": "deployments",
    "DaemonSet": "daemonsets",
    "Lease": "leases",
    "Node": "nodes",
    "Service": "services",
    "ServiceAccount": "serviceaccounts",
    "ClusterRole": "clusterroles",
    "ClusterRoleBinding": "clusterrolebindings",
    "Role": "roles",
    "RoleBinding": "rolebindings",
    "ValidatingAdmissionPolicy": "validatingadmissionpolicies",
    "ValidatingAdmissionPolicyBinding": "validatingadmissionpolicybindings",
}
SINGULAR = {
    "poddisruptionbudgets": "poddisruptionbudget.policy",
    "pods": "pod",
    "nodes": "node",
    "configmaps": "configmap",
    "secrets": "secret",
    "namespaces": "namespace",
    "replicasets": "replicaset.apps",
    "deployments": "deployment.apps",
    "daemonsets": "daemonset.apps",
    "leases": "lease.coordination.k8s.io",
    "clusterroles": "clusterrole.rbac.authorization.k8s.io",
    "clusterrolebindings": "clusterrolebinding.rbac.authorization.k8s.io",
    "roles": "role.rbac.authorization.k8s.io",
    "rolebindings": "rolebinding.rbac.authorization.k8s.io",
    "validatingadmissionpolicies": "validatingadmissionpolicy.admissionregistration.k8s.io",
    "validatingadmissionpolicybindings": (
        "validatingadmissionpolicybinding.admissionregistration.k8s.io"
    ),
}


class KubectlError(Exception):
    pass


def resolve(name: str) -> str:
    name = name.lower().split(".")[0]
    name = ALIASES.get(name, name)
    if name not in RESOURCES:
        raise KubectlError(f'error: the server doesn\'t have a resource type "{name}"')
    return name


def client_for(flags: dict) -> Client:
    path = (
        flags.get("kubeconfig") or os.environ.get("KUBECONFIG") or str(Path.home() / ".kube/config")
    )
    path = path.split(":")[0]
    if not Path(path).exists():
        raise KubectlError(
            "The connection to the server localhost:8080 was refused - did you specify "
            "the right host or port?"
        )
    timeout = flagutil.duration(flags.get("request-timeout", "0")) or 60.0
    return Client.from_kubeconfig(path, timeout=timeout, keepalive=False)


def server_error(err: ApiError) -> str:
    reason = err.reason or "InternalError"
    if isinstance(err.body, dict) and err.body.get("kind") == "Status":
        return f"Error from server ({reason}): {err}"
    return f'Error from server ({reason}): an error on the server ("{err}") has prevented the request from succeeding'  # noqa: E501 - upstream's text


def load_manifests(path: str) -> list[dict]:
    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    docs = []
    for d in yaml.safe_load_all(text):
        if not d:
            continue
        docs += d.get("items", []) if d.get("kind") == "List" else [d]
    return docs
