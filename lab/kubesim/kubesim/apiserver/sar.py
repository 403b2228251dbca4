"""POST /apis/authorization.k8s.io/v1/subjectaccessreviews: may this user do that?

Emulates pkg/registry/authorization/subjectaccessreview/rest.go (REST.Create),
pkg/apis/authorization/validation/validation.go (ValidateSubjectAccessReview) and
pkg/registry/authorization/util/helpers.go (AuthorizationAttributesFrom): the review is
validated (exactly one of resourceAttributes / nonResourceAttributes, a user or a group,
empty metadata: else 422 Invalid), its spec turned into authorizer attributes and asked of
the same authorizer chain the apiserver's requests go through (auth.decide: the coarse
rules, then RBAC over the watch cache). The answer is the review with its status:
`allowed` (DecisionAllow), `denied` (DecisionDeny: none of kubesim's authorizers denies,
as Node and RBAC never do) and `reason`; 201 Created, nothing stored. The caller needs
`create` on subjectaccessreviews (checked before, as for any request: upstream's
system:auth-delegator, system:kube-controller-manager and system:kube-scheduler roles
grant it; here auth.py's COMPONENT_USERS and admins).

Not emulated: spec.uid and spec.extra are carried in the review but no authorizer reads them;
Go's %#v rendering of a non-empty metadata in the Invalid message is approximated by JSON.
"""

from __future__ import annotations

import json

from .auth import decide
from .rbac import RBAC, Attributes
from .store import StatusError

KIND = "SubjectAccessReview"
GROUP = "authorization.k8s.io"


def _invalid(errors: list[tuple[str, str, str]]) -> StatusError:
    """apierrors.NewInvalid(authorization.Kind(...), "", errs)."""
    causes = [
        {"reason": "FieldValueInvalid", "message": f"Invalid value: {v}: {m}", "field": f}
        for f, v, m in errors
    ]
    parts = [f"{c['field']}: {c['message']}" for c in causes]
    joined = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    return StatusError(
        422,
        "Invalid",
        f'{KIND}.{GROUP} "" is invalid: {joined}',
        {"group": GROUP, "kind": KIND, "causes": causes},
    )


def _go(value: object) -> str:
    """The %q / %#v field.Invalid prints: strings quoted, a nil pointer "null"."""
    if value is None:
        return '"null"'
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, dict):
        fields = ", ".join(f"{k[:1].upper() + k[1:]}:{json.dumps(v)}" for k, v in value.items())
        return f"authorization.NonResourceAttributes{{{fields}}}"
    return json.dumps(value)


def validate(review: dict) -> None:
    """ValidateSubjectAccessReview: ValidateSubjectAccessReviewSpec, then empty metadata."""
    spec = review.get("spec") or {}
    res, nonres = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
    errors = []
    if res is not None and nonres is not None:
        errors.append(
            (
                "spec.nonResourceAttributes",
                _go(nonres),
                "cannot be specified in combination with resourceAttributes",
            )
        )
    if res is None and nonres is None:
        errors.append(
            (
                "spec.resourceAttributes",
                _go(nonres),
                "exactly one of nonResourceAttributes or resourceAttributes must be specified",
            )
        )
    if not spec.get("user") and not spec.get("groups"):
        user = _go(spec.get("user", ""))
        errors.append(("spec.user", user, "at least one of user or group must be specified"))
    meta = {k: v for k, v in (review.get("metadata") or {}).items() if k != "managedFields"}
    meta = {k: v for k, v in meta.items() if v not in (None, "", {}, [])}
    if meta:
        errors.append(("metadata", json.dumps(meta), "must be empty"))
    if errors:
        raise _invalid(errors)


def attributes(spec: dict) -> Attributes:
    """AuthorizationAttributesFrom: ResourceAttributesFrom / NonResourceAttributesFrom."""
    user, groups = spec.get("user", ""), list(spec.get("groups") or [])
    res = spec.get("resourceAttributes")
    if res is not None:
        return Attributes(
            user,
            groups,
            res.get("verb", ""),
            True,
            res.get("group", ""),
            res.get("resource", ""),
            res.get("subresource", ""),
            res.get("namespace", ""),
            res.get("name", ""),
        )
    nonres = spec.get("nonResourceAttributes") or {}
    return Attributes(user, groups, nonres.get("verb", ""), False, path=nonres.get("path", ""))


def create(body: bytes, rbac: RBAC | None) -> tuple[int, dict]:
    """REST.Create: (201, the review with its status)."""
    try:
        review = json.loads(body) if body else {}
    except ValueError as err:
        raise StatusError(400, "BadRequest", f"error decoding the request body: {err}") from err
    if not isinstance(review, dict):
        raise StatusError(400, "BadRequest", f"not a {KIND}: {review!r}")
    validate(review)
    spec = review.get("spec") or {}
    allowed, reason = decide(attributes(spec), rbac, reason=True)
    status: dict = {"allowed": allowed}
    if reason:
        status["reason"] = reason
    return 201, {
        "kind": KIND,
        "apiVersion": f"{GROUP}/v1",
        "metadata": {"creationTimestamp": None},
        "spec": spec,
        "status": status,
    }


__all__ = ["create", "validate", "attributes"]
