"""ValidatingAdmissionPolicy (admissionregistration.k8s.io/v1, GA and on by default from
1.30) evaluated on every write, as upstream's plugin does.

Upstream: staging/src/k8s.io/apiserver/pkg/admission/plugin/policy/validating/
(dispatcher.go Dispatch, validator.go Validate) and policy/generic + predicates
(matching.go, rules/rules.go, namespace/matcher.go, object/matcher.go):

- a policy applies when its `matchConstraints` match the request (resourceRules with
  operations, apiGroups, apiVersions, resources incl. `pods/*` and `*/status`, scope and
  resourceNames; excludeResourceRules; namespaceSelector -- cluster-scoped objects other
  than Namespaces always pass it, a Namespace is judged by its own labels; objectSelector
  on the object or the old object), and each binding naming it (`policyName`) whose
  `matchResources` also match (unset: everything the policy matches);
- `matchConditions` must all be true, else the binding is skipped; an error in one is a
  failure handled by `failurePolicy`;
- each validation is a CEL expression that must be exactly `true`; when it is not, the
  message is `messageExpression`'s value (a single line of at most 5000 bytes, trimmed),
  else `message`, else `failed expression: <expression>`, and the reason is `reason` or
  Invalid; an expression that errors counts as a failure under `failurePolicy: Fail`
  (the default) and is ignored under `Ignore`;
- the binding's `validationActions` decide what a failure does: Deny refuses the request
  (the first denial: `ValidatingAdmissionPolicy '<p>' with binding '<b>' denied request:
  <message>`, HTTP code per reason, 422 for Invalid, in admission.NewForbidden's shape);
  Warn adds a `Warning: 299 - "Validation failed for ValidatingAdmissionPolicy '<p>' with
  binding '<b>': <message>"` header; Audit adds the audit annotation
  `validation.policy.admission.k8s.io/validation_failure`;
- `apiserver_validating_admission_policy_check_total{policy,policy_binding,
  enforcement_action}` counts deny/warn/audit and errors ignored (allow), as 1.30-1.31's
  validating/metrics/metrics.go.

Policies and bindings are read from the watch cache (upstream: informers). Not covered:
paramKind/paramRef (a binding with paramRef is a configuration error), auditAnnotations,
matchPolicy Equivalent's conversion between versions, type checking.
"""

from __future__ import annotations

import contextvars
import json
from dataclasses import dataclass, field

from ..labelsel import match_label_selector
from .resources import Resource, lookup
from .store import StatusError, key_of


def _cel():
    """The CEL evaluator, imported when a policy is first evaluated: an apiserver without
    admission policies (and a Python without the vendored cel-python) never needs it."""
    from . import celeval  # noqa: PLC0415

    return celeval


POLICIES = lookup("admissionregistration.k8s.io", "v1", "validatingadmissionpolicies")
BINDINGS = lookup("admissionregistration.k8s.io", "v1", "validatingadmissionpolicybindings")
SINCE = (1, 30)  # admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy: GA in 1.30
MAX_MESSAGE = 5000  # celconfig.MaxEvaluatedMessageExpressionSizeBytes
FAILURE_ANNOTATION = "validation.policy.admission.k8s.io/validation_failure"
CODES = {"Unauthorized": 401, "Forbidden": 403, "Invalid": 422, "RequestEntityTooLarge": 413}


@dataclass
class RequestNotes:
    """What admission adds to one request's answer and audit event."""

    warnings: list[str] = field(default_factory=list)
    annotations: dict[str, str] = field(default_factory=dict)
    user: dict = field(default_factory=dict)


CURRENT: contextvars.ContextVar[RequestNotes | None] = contextvars.ContextVar(
    "kubesim_admission", default=None
)


@dataclass
class Attributes:
    """admission.Attributes of one write."""

    operation: str  # CREATE, UPDATE, DELETE
    res: Resource
    namespace: str
    name: str
    subresource: str
    obj: dict | None
    old: dict | None


def served(res: Resource | None, version) -> bool:
    """Whether the apiserver of `version` serves `res` (the v1 policy API from 1.30)."""
    if res is None or res.group != "admissionregistration.k8s.io":
        return True
    return (version.major, version.minor) >= SINCE


def _rule_matches(rule: dict, a: Attributes) -> bool:
    """rules.Matcher.Matches: scope, operation, group, version, resource/subresource, names."""
    scope = rule.get("scope") or "*"
    namespaced = bool(a.namespace) and a.res.plural != "namespaces"
    if scope == "Cluster" and namespaced or scope == "Namespaced" and not namespaced:
        return False
    ops = rule.get("operations") or []
    if "*" not in ops and a.operation not in ops:
        return False
    groups, versions = rule.get("apiGroups") or [], rule.get("apiVersions") or []
    if "*" not in groups and a.res.group not in groups:
        return False
    if "*" not in versions and a.res.version not in versions:
        return False
    for wanted in rule.get("resources") or []:
        res, _, sub = wanted.partition("/")
        if res in ("*", a.res.plural) and sub in ("*", a.subresource):
            names = rule.get("resourceNames") or []
            return not names or a.name in names
    return False


class Admission:
    def __init__(self, cache, metrics_check=None, namespace_labels=None) -> None:
        self.cache = cache  # the watch cache: policies, bindings, namespaces
        self.count = metrics_check  # callable(policy, binding, action) or None
        self.namespace_labels = namespace_labels or self._namespace_labels

    # -- matching (generic/policy_matcher.go) ---------------------------------------------------
    def _namespace_labels(self, name: str) -> dict | None:
        ns = self.cache.get(key_of(lookup("", "v1", "namespaces"), None, name))
        return None if ns is None else (ns.get("metadata", {}).get("labels") or {})

    def _resources_match(self, match: dict | None, a: Attributes) -> bool:
        if match is None:
            return True
        rules = match.get("resourceRules")
        if rules is not None and not any(_rule_matches(r, a) for r in rules):
            return False
        if any(_rule_matches(r, a) for r in match.get("excludeResourceRules") or []):
            return False
        selector = match.get("namespaceSelector")
        is_namespace = a.res.plural == "namespaces"
        # namespace/matcher.go: cluster-scoped objects (but Namespaces) always pass; a
        # Namespace is judged by its own labels
        if selector is not None and (a.namespace or is_namespace):
            if is_namespace:
                labels = ((a.obj or a.old or {}).get("metadata") or {}).get("labels")
            else:
                labels = self.namespace_labels(a.namespace)
            if not match_label_selector(selector, labels or {}):
                return False
        selector = match.get("objectSelector")
        if selector and (selector.get("matchLabels") or selector.get("matchExpressions")):
            # object/matcher.go: the object or the old object (a missing one never matches)
            objects = [o for o in (a.obj, a.old) if o is not None]
            labels = [(o.get("metadata") or {}).get("labels") or {} for o in objects]
            if not any(match_label_selector(selector, ls) for ls in labels):
                return False
        return True

    def _request(self, a: Attributes, notes: RequestNotes) -> dict:
        kind = (a.obj or a.old or {}).get("kind") or a.res.kind
        gvk = {"group": a.res.group, "version": a.res.version, "kind": kind}
        gvr = {"group": a.res.group, "version": a.res.version, "resource": a.res.plural}
        return {
            "kind": gvk,
            "resource": gvr,
            "subResource": a.subresource,
            "requestKind": gvk,
            "requestResource": gvr,
            "requestSubResource": a.subresource,
            "name": a.name,
            "namespace": a.namespace,
            "operation": a.operation,
            "userInfo": notes.user,
            "dryRun": False,
        }

    # -- evaluation (validator.go) -----------------------------------------------------------
    def _decisions(self, policy: dict, a: Attributes, notes: RequestNotes) -> list[tuple]:
        """(action, message, reason, index) per validation: action allow|deny|error."""
        spec = policy.get("spec") or {}
        ns = None
        if a.namespace and a.res.plural != "namespaces":
            ns = self.cache.get(key_of(lookup("", "v1", "namespaces"), None, a.namespace))
        act = _cel().activation(
            a.obj, a.old, self._request(a, notes), ns, spec.get("variables") or []
        )
        for cond in spec.get("matchConditions") or []:
            try:
                value = _cel().evaluate(cond["expression"], act)
            except _cel().CelError as err:
                return [("error", str(err), "", 0)]
            if not _cel().truthy(value):
                return []
        out = []
        for index, validation in enumerate(spec.get("validations") or []):
            try:
                value = _cel().evaluate(validation["expression"], act)
            except _cel().CelError as err:
                out.append(("error", str(err), "", index))
                continue
            if _cel().truthy(value):
                out.append(("allow", "", "", index))
                continue
            message = ""
            if validation.get("messageExpression"):
                try:
                    text = _cel().string_or_none(
                        _cel().evaluate(validation["messageExpression"], act)
                    )
                except _cel().CelError:
                    text = None
                text = (text or "").strip()
                if len(text) <= MAX_MESSAGE and "\n" not in text:
                    message = text
            message = message or (validation.get("message") or "").strip()
            message = message or f"failed expression: {validation['expression'].strip()}"
            out.append(("deny", message, validation.get("reason") or "Invalid", index))
        return out

    def validate(self, a: Attributes) -> None:
        """Raise the first denial as the StatusError upstream returns (dispatcher.go)."""
        notes = CURRENT.get() or RequestNotes()
        policies = {p["metadata"]["name"]: p for p in self.cache.list(key_of(POLICIES, None))[0]}
        bindings = self.cache.list(key_of(BINDINGS, None))[0]
        denied: list[tuple] = []
        for pname, policy in sorted(policies.items()):
            spec = policy.get("spec") or {}
            if not self._resources_match(spec.get("matchConstraints") or {}, a):
                continue
            fail = (spec.get("failurePolicy") or "Fail") != "Ignore"
            for binding in bindings:
                bspec = binding.get("spec") or {}
                if bspec.get("policyName") != pname:
                    continue
                bname = binding["metadata"]["name"]
                if bspec.get("paramRef"):
                    if fail:
                        message = "failed to configure binding: paramRef is not supported"
                        denied.append((pname, bname, message, "Invalid"))
                    continue
                if not self._resources_match(bspec.get("matchResources"), a):
                    continue
                actions = bspec.get("validationActions") or []
                for action, message, reason, index in self._decisions(policy, a, notes):
                    if action == "allow":
                        continue
                    if action == "error" and not fail:
                        self._count(pname, bname, "allow")
                        continue
                    self._act(
                        actions, pname, bname, message, reason or "Invalid", index, notes, denied
                    )
        if denied:
            pname, bname, message, reason = denied[0]
            raise self.refusal(a, f"ValidatingAdmissionPolicy '{pname}' with binding "
                               f"'{bname}' denied request: {message}", reason)  # fmt: skip

    def _act(  # noqa: PLR0917 - one failed validation and where it goes
        self, actions, pname, bname, message, reason, index, notes, denied
    ) -> None:
        for action in actions:
            if action == "Deny":
                denied.append((pname, bname, message, reason))
                self._count(pname, bname, "deny")
            elif action == "Warn":
                notes.warnings.append(
                    f"Validation failed for ValidatingAdmissionPolicy '{pname}' with binding "
                    f"'{bname}': {message}"
                )
                self._count(pname, bname, "warn")
            elif action == "Audit":
                value = [
                    {
                        "message": message,
                        "policy": pname,
                        "binding": bname,
                        "expressionIndex": index,
                        "validationActions": actions,
                    }
                ]
                notes.annotations[FAILURE_ANNOTATION] = json.dumps(value, separators=(",", ":"))
                self._count(pname, bname, "audit")

    def _count(self, policy: str, binding: str, action: str) -> None:
        if self.count is not None:
            self.count(policy, binding, action)

    @staticmethod
    def refusal(a: Attributes, message: str, reason: str) -> StatusError:
        """admission.NewForbidden's Status with the decision's reason and code."""
        name = a.name or ((a.obj or {}).get("metadata") or {}).get("name", "")
        what = a.res.qualified
        details = {"name": name, "group": a.res.group, "kind": a.res.plural}
        if not a.res.group:
            del details["group"]  # metav1.StatusDetails: group is omitempty
        details["causes"] = [{"message": message}]
        return StatusError(
            CODES.get(reason, 422), reason, f'{what} "{name}" is forbidden: {message}', details
        )
