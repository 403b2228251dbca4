"""
The cluster's security objects built from the model: the admission policy that refuses
unpinned images (the teams' RBAC from ``security:teams`` is ``kubeha_rbac``). The
``kubeha.security`` states apply them with ``kube_objects.applied``; this module only
shapes objects.

The image policy is a ValidatingAdmissionPolicy + binding (admissionregistration.k8s.io/v1,
GA and on by default from Kubernetes 1.30; docs/facts.md, runbook step 11): a Pod, a
workload's pod template (Deployment, ReplicaSet, StatefulSet, DaemonSet, Job, CronJob) or
an ephemeral container added to a Pod is refused when one of its containers,
initContainers or ephemeralContainers uses an image without a tag or with ``:latest``; an
image pinned by digest (``@sha256:...``) is accepted, with or without a tag. Namespaces in
``security:admission:exempt_namespaces`` are left out by the binding's namespaceSelector on
``kubernetes.io/metadata.name`` (the label every Namespace carries since 1.22).
[Validating Admission Policy:
https://kubernetes.io/docs/reference/access-authn-authz/validating-admission-policy/]

CLI Example:

.. code-block:: bash

    salt cp-1 kubeha_security.admission_objects "$(cat model.json)"
"""

from __future__ import annotations

__virtualname__ = "kubeha_security"

POLICY_NAME = "kubeha-image-tag"
MANAGED_BY = {"app.kubernetes.io/managed-by": "kubeha"}
# admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy is served from 1.30.
ADMISSION_SINCE = (1, 30)

# The pod spec of every kind the policy matches (CronJob: two levels of templates).
POD_SPEC = (
    "object.kind == 'Pod' ? object.spec : "
    "object.kind == 'CronJob' ? object.spec.jobTemplate.spec.template.spec : "
    "object.spec.template.spec"
)
CONTAINERS = (
    "variables.podSpec.containers"
    " + (has(variables.podSpec.initContainers) ? variables.podSpec.initContainers : [])"
    " + (has(variables.podSpec.ephemeralContainers)"
    " ? variables.podSpec.ephemeralContainers : [])"
)
# Unpinned: no digest, and either no tag (a ':' after the last '/'; a registry port is
# followed by a '/') or the tag latest. CEL's matches() searches, like RE2's.
UNPINNED = (
    "variables.containers.filter(c, !c.image.contains('@')"
    " && (!c.image.matches(':[^/:]+$') || c.image.endsWith(':latest'))).map(c, c.name)"
)


def __virtual__():
    return __virtualname__


def admission_served(kubeha: dict) -> bool:
    """
    Whether the cluster's version serves admissionregistration.k8s.io/v1 policies (>= 1.30).

    CLI Example:

    .. code-block:: bash

        salt-call kubeha_security.admission_served "$(cat model.json)"
    """
    version = __utils__["kubeha_values.version_tuple"](kubeha["kubernetes"]["version"])
    return version[:2] >= ADMISSION_SINCE


def admission_enabled(kubeha: dict) -> bool:
    """
    Whether the image policy is to be applied: on in the model and Kubernetes >= 1.30.

    CLI Example:

    .. code-block:: bash

        salt-call kubeha_security.admission_enabled "$(cat model.json)"
    """
    conf = (kubeha.get("security") or {}).get("admission") or {}
    return bool(conf.get("enabled")) and admission_served(kubeha)


def _rule(group: str, resources: list[str]) -> dict:
    return {
        "apiGroups": [group],
        "apiVersions": ["v1"],
        "operations": ["CREATE", "UPDATE"],
        "resources": resources,
    }


def admission_objects(kubeha: dict) -> list[dict]:
    """
    The ValidatingAdmissionPolicy and its binding (empty list when disabled).

    CLI Example:

    .. code-block:: bash

        salt-call kubeha_security.admission_objects "$(cat model.json)"
    """
    if not admission_enabled(kubeha):
        return []
    conf = kubeha["security"]["admission"]
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": POLICY_NAME, "labels": dict(MANAGED_BY)},
        "spec": {
            "failurePolicy": conf["failure_policy"],
            "matchConstraints": {
                "resourceRules": [
                    _rule("", ["pods", "pods/ephemeralcontainers"]),
                    _rule("apps", ["deployments", "replicasets", "statefulsets", "daemonsets"]),
                    _rule("batch", ["jobs", "cronjobs"]),
                ]
            },
            "variables": [
                {"name": "podSpec", "expression": POD_SPEC},
                {"name": "containers", "expression": CONTAINERS},
                {"name": "unpinned", "expression": UNPINNED},
            ],
            "validations": [
                {
                    "expression": "size(variables.unpinned) == 0",
                    "message": "an image has no tag or the tag latest; use a version tag "
                    "or a digest",
                    "messageExpression": (
                        "'image without a tag or with the tag latest in container(s) '"
                        " + variables.unpinned.join(', ')"
                        " + '; use a version tag or a digest (@sha256:...)'"
                    ),
                    "reason": "Invalid",
                }
            ],
        },
    }
    binding_spec: dict = {
        "policyName": POLICY_NAME,
        "validationActions": list(conf["validation_actions"]),
    }
    exempt = sorted(conf.get("exempt_namespaces") or [])
    if exempt:
        binding_spec["matchResources"] = {
            "namespaceSelector": {
                "matchExpressions": [
                    {
                        "key": "kubernetes.io/metadata.name",
                        "operator": "NotIn",
                        "values": exempt,
                    }
                ]
            }
        }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": POLICY_NAME, "labels": dict(MANAGED_BY)},
        "spec": binding_spec,
    }
    return [policy, binding]
