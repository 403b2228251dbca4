"""
kubesim's ValidatingAdmissionPolicy (lab/kubesim/kubesim/apiserver/admission.py, celeval.py)
against upstream's documented behaviour, and the formula's image policy
(_modules/kubeha_security.py) evaluated by it: the accepted/refused table the lab test
repeats through the VIP.

Upstream sources: the Validating Admission Policy page
(https://kubernetes.io/docs/reference/access-authn-authz/validating-admission-policy/:
its demo policy, variable composition, messageExpression, validationActions, failurePolicy
and matchConditions examples) and admission/plugin/policy/validating/{dispatcher,validator}.go
for the message formats.
"""

from __future__ import annotations

import copy
import json

import pytest
import salt.config
import salt.loader
from kubesim.apiserver import admission as adm
from kubesim.apiserver.resources import lookup
from kubesim.apiserver.store import StatusError, key_of

from tests.conftest import REPO

NS = lookup("", "v1", "namespaces")
PODS = lookup("", "v1", "pods")
DEPLOY = lookup("apps", "v1", "deployments")
LEASES = lookup("coordination.k8s.io", "v1", "leases")


class Cache:
    """The watch cache as admission reads it: policies, bindings, namespaces."""

    def __init__(self, objects: list[dict], namespaces: dict[str, dict]) -> None:
        self.objects: dict[str, dict] = {}
        for name, labels in namespaces.items():
            meta = {"name": name, "labels": {"kubernetes.io/metadata.name": name, **labels}}
            self.objects[key_of(NS, None, name)] = {"kind": "Namespace", "metadata": meta}
        for obj in objects:
            res = adm.POLICIES if obj["kind"] == "ValidatingAdmissionPolicy" else adm.BINDINGS
            self.objects[key_of(res, None, obj["metadata"]["name"])] = copy.deepcopy(obj)

    def get(self, key: str) -> dict | None:
        return self.objects.get(key)

    def list(self, prefix: str) -> tuple[list[dict], int]:
        return [v for k, v in sorted(self.objects.items()) if k.startswith(prefix)], 1


class Counted:
    def __init__(self) -> None:
        self.seen: list[tuple] = []

    def __call__(self, *labels) -> None:
        self.seen.append(labels)


def admit(objects, attrs: adm.Attributes, namespaces=None, user=None):
    """(status or None, notes, counted) of one request through admission."""
    counted = Counted()
    admission = adm.Admission(Cache(objects, namespaces or {"default": {}}), counted)
    notes = adm.RequestNotes(user=user or {"username": "alice", "groups": ["devs"]})
    token = adm.CURRENT.set(notes)
    try:
        admission.validate(attrs)
        return None, notes, counted.seen
    except StatusError as err:
        return err.status(), notes, counted.seen
    finally:
        adm.CURRENT.reset(token)


def pod(images: dict[str, list[str]], name: str = "p", ns: str = "default") -> adm.Attributes:
    spec = {
        key: [{"name": f"{key[0]}{i}", "image": image} for i, image in enumerate(listed)]
        for key, listed in images.items()
    }
    obj = {"kind": "Pod", "metadata": {"name": name, "namespace": ns}, "spec": spec}
    return adm.Attributes("CREATE", PODS, ns, name, "", obj, None)


# -- the formula's image policy -------------------------------------------------------------
@pytest.fixture(scope="module")
def security(tmp_path_factory):
    opts = salt.config.minion_config(None)
    cache = tmp_path_factory.mktemp("cache")
    opts.update(
        {
            "file_client": "local",
            "cachedir": str(cache),
            "extension_modules": str(cache / "extmods"),
            "module_dirs": [str(REPO / "_modules")],
            "utils_dirs": [str(REPO / "_utils")],
            "grains": {},
        }
    )
    return salt.loader.minion_mods(opts, utils=salt.loader.utils(opts))


def formula_objects(security, **admission) -> list[dict]:
    conf = {
        "enabled": True,
        "validation_actions": ["Deny"],
        "failure_policy": "Fail",
        "exempt_namespaces": ["kube-system"],
        **admission,
    }
    model = {"kubernetes": {"version": "1.30.0"}, "security": {"admission": conf}}
    return security["kubeha_security.admission_objects"](model)


IMAGES = [
    # (image, accepted)
    ("nginx", False),
    ("nginx:latest", False),
    ("docker.io/library/nginx:latest", False),
    ("registry.example.com:5000/team/app", False),  # a registry port is not a tag
    ("registry.example.com:5000/team/app:latest", False),
    ("nginx:1.27.2", True),
    ("registry.example.com:5000/team/app:v1.2.3", True),
    ("nginx@sha256:" + "a" * 64, True),
    ("nginx:latest@sha256:" + "b" * 64, True),  # a digest pins whatever the tag says
    ("registry.k8s.io/pause:3.9", True),
]


@pytest.mark.parametrize(("image", "accepted"), IMAGES)
@pytest.mark.parametrize("where", ["containers", "initContainers", "ephemeralContainers"])
def test_formula_policy_table(security, image, accepted, where):
    images = {"containers": ["busybox:1.36"]} if where != "containers" else {}
    images.setdefault(where, []).append(image)
    status, _, counted = admit(formula_objects(security), pod(images))
    if accepted:
        assert status is None, status
        assert counted == []
        return
    assert status["code"] == 422 and status["reason"] == "Invalid", status
    name = f"{where[0]}{len(images[where]) - 1}"
    assert status["message"] == (
        "pods \"p\" is forbidden: ValidatingAdmissionPolicy 'kubeha-image-tag' with binding "
        "'kubeha-image-tag' denied request: image without a tag or with the tag latest in "
        f"container(s) {name}; use a version tag or a digest (@sha256:...)"
    )
    assert counted == [("kubeha-image-tag", "kubeha-image-tag", "deny")]


def test_formula_policy_covers_workload_templates_and_exempts_namespaces(security):
    objects = formula_objects(security, exempt_namespaces=["kube-system", "legacy"])
    template = {"template": {"spec": {"containers": [{"name": "app", "image": "app"}]}}}
    for kind, res, spec in (
        ("Deployment", DEPLOY, template),
        ("CronJob", lookup("batch", "v1", "jobs"), {"jobTemplate": {"spec": template}}),
    ):
        obj = {"kind": kind, "metadata": {"name": "w", "namespace": "default"}, "spec": spec}
        status, _, _ = admit(objects, adm.Attributes("CREATE", res, "default", "w", "", obj, None))
        assert status is not None and "container(s) app" in status["message"], (kind, status)
    namespaces = {"default": {}, "legacy": {}, "kube-system": {}}
    for ns, refused in (("default", True), ("legacy", False), ("kube-system", False)):
        status, _, _ = admit(objects, pod({"containers": ["nginx"]}, ns=ns), namespaces)
        assert (status is not None) == refused, (ns, status)
    # Status updates (a subresource the rules do not name) and deletes are not judged.
    attrs = pod({"containers": ["nginx"]})
    attrs.operation, attrs.subresource, attrs.old = "UPDATE", "status", attrs.obj
    assert admit(objects, attrs)[0] is None


def test_formula_policy_warn_and_audit_only(security):
    objects = formula_objects(security, validation_actions=["Warn", "Audit"])
    status, notes, counted = admit(objects, pod({"containers": ["nginx:latest"]}))
    assert status is None
    assert notes.warnings == [
        "Validation failed for ValidatingAdmissionPolicy 'kubeha-image-tag' with binding "
        "'kubeha-image-tag': image without a tag or with the tag latest in container(s) c0; "
        "use a version tag or a digest (@sha256:...)"
    ]
    failure = json.loads(notes.annotations[adm.FAILURE_ANNOTATION])
    assert failure == [
        {
            "message": notes.warnings[0].split(": ", 1)[1],
            "policy": "kubeha-image-tag",
            "binding": "kubeha-image-tag",
            "expressionIndex": 0,
            "validationActions": ["Warn", "Audit"],
        }
    ]
    assert [c[2] for c in counted] == ["warn", "audit"]


# -- upstream's documented examples ---------------------------------------------------------
DEMO_POLICY = {
    "apiVersion": "admissionregistration.k8s.io/v1",
    "kind": "ValidatingAdmissionPolicy",
    "metadata": {"name": "demo-policy.example.com"},
    "spec": {
        "failurePolicy": "Fail",
        "matchConstraints": {
            "resourceRules": [
                {
                    "apiGroups": ["apps"],
                    "apiVersions": ["v1"],
                    "operations": ["CREATE", "UPDATE"],
                    "resources": ["deployments"],
                }
            ]
        },
        "validations": [{"expression": "object.spec.replicas <= 5"}],
    },
}
DEMO_BINDING = {
    "apiVersion": "admissionregistration.k8s.io/v1",
    "kind": "ValidatingAdmissionPolicyBinding",
    "metadata": {"name": "demo-binding-test.example.com"},
    "spec": {
        "policyName": "demo-policy.example.com",
        "validationActions": ["Deny"],
        "matchResources": {"namespaceSelector": {"matchLabels": {"environment": "test"}}},
    },
}


def deployment(replicas: int, ns: str = "default", labels=None) -> adm.Attributes:
    obj = {
        "kind": "Deployment",
        "metadata": {"name": "nginx", "namespace": ns, "labels": labels or {}},
        "spec": {
            "replicas": replicas,
            "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"}]}},
        },
    }
    return adm.Attributes("CREATE", DEPLOY, ns, "nginx", "", obj, None)


def test_docs_demo_policy_message_and_namespace_selector():
    namespaces = {"default": {"environment": "test"}, "prod": {}}
    status, _, _ = admit([DEMO_POLICY, DEMO_BINDING], deployment(6), namespaces)
    # The docs' kubectl output: `deployments.apps "nginx" is forbidden: ...`
    assert status["message"] == (
        'deployments.apps "nginx" is forbidden: ValidatingAdmissionPolicy '
        "'demo-policy.example.com' with binding 'demo-binding-test.example.com' denied "
        "request: failed expression: object.spec.replicas <= 5"
    )
    assert status["code"] == 422 and status["reason"] == "Invalid"
    assert status["details"]["causes"] == [{"message": status["message"].split(": ", 1)[1]}]
    assert admit([DEMO_POLICY, DEMO_BINDING], deployment(5), namespaces)[0] is None
    # The binding selects namespaces labelled environment=test only.
    assert admit([DEMO_POLICY, DEMO_BINDING], deployment(6, "prod"), namespaces)[0] is None
    # A policy without a binding does nothing.
    assert admit([DEMO_POLICY], deployment(6), namespaces)[0] is None


def test_message_expression_reason_and_fallbacks():
    policy = copy.deepcopy(DEMO_POLICY)
    binding = {**DEMO_BINDING, "spec": {**DEMO_BINDING["spec"], "matchResources": None}}
    validation = policy["spec"]["validations"][0]
    validation["messageExpression"] = "'replicas ' + string(object.spec.replicas) + ' > 5'"
    validation["reason"] = "Forbidden"
    status, _, _ = admit([policy, binding], deployment(7))
    assert status["message"].endswith("denied request: replicas 7 > 5")
    assert status["code"] == 403 and status["reason"] == "Forbidden"
    # A message over one line, or an expression that errors, falls back to `message`.
    validation["message"] = "too many replicas"
    for broken in ("'a\\nb'", "object.spec.nope"):
        validation["messageExpression"] = broken
        status, _, _ = admit([policy, binding], deployment(7))
        assert status["message"].endswith("denied request: too many replicas"), broken


def test_failure_policy_on_an_expression_error():
    policy = copy.deepcopy(DEMO_POLICY)
    policy["spec"]["validations"] = [{"expression": "object.spec.paused == false"}]
    binding = {**DEMO_BINDING, "spec": {**DEMO_BINDING["spec"], "matchResources": None}}
    status, _, counted = admit([policy, binding], deployment(1))
    assert status["message"].endswith(
        "denied request: expression 'object.spec.paused == false' resulted in error: "
        "no such key: paused"
    )
    policy["spec"]["failurePolicy"] = "Ignore"
    status, _, counted = admit([policy, binding], deployment(1))
    assert status is None
    assert counted == [("demo-policy.example.com", "demo-binding-test.example.com", "allow")]


def test_docs_variable_composition_example():
    """The docs' image-matches-namespace-environment policy (variables, namespaceObject)."""
    policy = {
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": "image-matches-namespace-environment.policy.example.com"},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": ["apps"],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE", "UPDATE"],
                        "resources": ["deployments"],
                    }
                ]
            },
            "variables": [
                {
                    "name": "environment",
                    "expression": "'environment' in namespaceObject.metadata.labels ? "
                    "namespaceObject.metadata.labels['environment'] : 'prod'",
                },
                {
                    "name": "exempt",
                    "expression": "'exempt' in object.metadata.labels && "
                    "object.metadata.labels['exempt'] == 'true'",
                },
                {"name": "containers", "expression": "object.spec.template.spec.containers"},
                {
                    "name": "containersToCheck",
                    "expression": "variables.containers.filter(c, "
                    "c.image.contains('example.com/'))",
                },
            ],
            "validations": [
                {
                    "expression": "variables.exempt || variables.containersToCheck.all(c, "
                    "c.image.startsWith(variables.environment + '.'))",
                    "messageExpression": "'only ' + variables.environment + ' images are "
                    "allowed in namespace ' + namespaceObject.metadata.name",
                }
            ],
        },
    }
    binding = {
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": "b"},
        "spec": {"policyName": policy["metadata"]["name"], "validationActions": ["Deny"]},
    }
    namespaces = {"default": {"environment": "staging"}}
    attrs = deployment(1)
    attrs.obj["spec"]["template"]["spec"]["containers"][0]["image"] = "prod.example.com/nginx"
    status, _, _ = admit([policy, binding], attrs, namespaces)
    assert status["message"].endswith(
        "denied request: only staging images are allowed in namespace default"
    )
    attrs.obj["spec"]["template"]["spec"]["containers"][0]["image"] = "staging.example.com/x"
    assert admit([policy, binding], attrs, namespaces)[0] is None
    attrs.obj["metadata"]["labels"] = {"exempt": "true"}
    attrs.obj["spec"]["template"]["spec"]["containers"][0]["image"] = "prod.example.com/nginx"
    assert admit([policy, binding], attrs, namespaces)[0] is None


def test_docs_match_conditions_example():
    """The docs' matchConditions: leases excluded, node users excluded."""
    policy = {
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": "demo-policy.example.com"},
        "spec": {
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": ["*"],
                        "apiVersions": ["*"],
                        "operations": ["CREATE", "UPDATE"],
                        "resources": ["*"],
                    }
                ]
            },
            "matchConditions": [
                {
                    "name": "exclude-leases",
                    "expression": "!(request.resource.group == 'coordination.k8s.io' && "
                    "request.resource.resource == 'leases')",
                },
                {
                    "name": "exclude-kubelet-requests",
                    "expression": "!('system:nodes' in request.userInfo.groups)",
                },
            ],
            "validations": [
                {
                    "expression": "!object.metadata.name.contains('demo') || "
                    "object.metadata.namespace == 'demo'"
                }
            ],  # fmt: skip
        },
    }
    binding = {
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": "b"},
        "spec": {"policyName": "demo-policy.example.com", "validationActions": ["Deny"]},
    }
    lease = {"kind": "Lease", "metadata": {"name": "demo-x", "namespace": "default"}}
    lease_attrs = adm.Attributes("CREATE", LEASES, "default", "demo-x", "", lease, None)
    assert admit([policy, binding], lease_attrs)[0] is None
    attrs = pod({"containers": ["nginx:1"]}, name="demo-x")
    assert admit([policy, binding], attrs)[0] is not None
    node = {"username": "system:node:cp-1", "groups": ["system:nodes"]}
    assert admit([policy, binding], attrs, user=node)[0] is None


def test_rules_subresources_scope_and_exclusions():
    rule = {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["UPDATE"]}
    attrs = pod({"containers": ["x"]})
    attrs.operation, attrs.subresource = "UPDATE", "status"
    cases = ((["pods"], False), (["pods/*"], True), (["*/status"], True), (["*"], False))
    for resources, matched in (*cases, (["*/*"], True), (["pods/status"], True)):
        assert adm._rule_matches({**rule, "resources": resources}, attrs) == matched, resources
    attrs.subresource = ""
    assert not adm._rule_matches({**rule, "resources": ["pods"], "scope": "Cluster"}, attrs)
    assert adm._rule_matches({**rule, "resources": ["pods"], "scope": "Namespaced"}, attrs)
    assert not adm._rule_matches({**rule, "resources": ["pods"], "resourceNames": ["q"]}, attrs)
    policy = copy.deepcopy(DEMO_POLICY)
    policy["spec"]["matchConstraints"]["excludeResourceRules"] = [
        {**policy["spec"]["matchConstraints"]["resourceRules"][0], "resourceNames": ["nginx"]}
    ]
    binding = {**DEMO_BINDING, "spec": {**DEMO_BINDING["spec"], "matchResources": None}}
    assert admit([policy, binding], deployment(9))[0] is None


def test_policy_api_is_served_from_1_30():
    from kubesim.versions import Version

    assert adm.served(adm.POLICIES, Version(1, 30, 0))
    assert adm.served(adm.BINDINGS, Version(1, 31, 0))
    assert not adm.served(adm.POLICIES, Version(1, 29, 15))
    assert adm.served(PODS, Version(1, 28, 15))
