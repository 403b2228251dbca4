"""Authentication (x509 client certs, bootstrap tokens, anonymous) and a coarse authorizer.

x509: user = CN, groups = O (staging/src/k8s.io/apiserver/pkg/authentication/request/x509).
Bootstrap tokens: `Bearer <id>.<secret>` checked against Secret kube-system/bootstrap-token-<id>
(plugin/pkg/auth/authenticator/token/bootstrap/bootstrap.go): usage-bootstrap-authentication,
expiration, user system:bootstrap:<id>, groups system:bootstrappers + auth-extra-groups.
The Secret is read from the apiserver's informer cache (the authenticator is built on a
SecretLister, pkg/kubeapiserver/authenticator/config.go), so a token keeps working while
etcd is unreachable.
OIDC ID tokens (--oidc-issuer-url set): oidc.py, tried after bootstrap tokens as in the
union config.go builds (pkg/kubeapiserver/authenticator/config.go).
Authorization is a simplification of the RBAC bindings kubeadm creates: admins, nodes and
the control-plane components may do anything; bootstrappers may read what a join reads and
create CSRs; anonymous may read cluster-info and the health/version endpoints. Anything else
goes to the RBAC authorizer (rbac.py) over the roles and bindings in the watch cache (the
default ones stored by reconcile.py). `decide` is that chain; requests (`authorize`) and
SubjectAccessReviews (sar.py) both go through it.
"""

from __future__ import annotations

import base64
import datetime as dt
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .. import klog
from ..etcd import EtcdError
from .oidc import OIDCAuthenticator, TokenError
from .rbac import RBAC, Attributes
from .store import StatusError

if TYPE_CHECKING:
    from .api import Route

ADMIN_GROUPS = {"system:masters", "kubeadm:cluster-admins"}
COMPONENT_USERS = {
    "system:kube-controller-manager",
    "system:kube-scheduler",
    "kube-apiserver-kubelet-client",
    "system:kube-proxy",
}
PUBLIC_PATHS = ("/healthz", "/livez", "/readyz", "/version")


@dataclass
class User:
    name: str
    groups: list[str] = field(default_factory=list)


ANONYMOUS = User("system:anonymous", ["system:unauthenticated"])


def from_cert(cert: dict | None) -> User | None:
    if not cert:
        return None
    cn, orgs = "", []
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                cn = value
            elif key == "organizationName":
                orgs.append(value)
    return User(cn, orgs + ["system:authenticated"])


SecretGetter = Callable[[str], dict | None]  # name in kube-system -> Secret (a lister)


def from_token(secrets: SecretGetter, token: str) -> User | None:
    if "." not in token:
        return None
    token_id, secret = token.split(".", 1)
    obj = secrets(f"bootstrap-token-{token_id}")
    if obj is None:
        return None
    data = {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}
    if obj.get("type") != "bootstrap.kubernetes.io/token":
        return None
    if not hmac.compare_digest(data.get("token-secret", ""), secret):
        return None
    if data.get("usage-bootstrap-authentication") != "true":
        return None
    exp = data.get("expiration")
    if exp:
        when = dt.datetime.strptime(exp.replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S%z")
        if when < dt.datetime.now(dt.UTC):
            return None
    groups = ["system:bootstrappers"] + [
        g for g in data.get("auth-extra-groups", "").split(",") if g
    ]
    return User(f"system:bootstrap:{token_id}", groups + ["system:authenticated"])


def allowed(user: User, verb: str, resource: str, namespace: str, name: str, path: str) -> bool:  # noqa: PLR0917 - mirrors the upstream call's parameters
    groups = set(user.groups)
    if groups & ADMIN_GROUPS or user.name in COMPONENT_USERS:
        return True
    if user.name.startswith("system:node:") or "system:nodes" in groups:
        return True
    if (
        path.startswith(PUBLIC_PATHS)
        or path in ("/api", "/apis")
        or path.startswith(("/api/v1?", "/openapi"))
    ):
        return True
    if (
        resource == "configmaps"
        and namespace == "kube-public"
        and name == "cluster-info"
        and verb == "get"
    ):
        return True
    if "system:bootstrappers" in groups:
        if verb in ("get", "list") and resource in ("configmaps", "nodes", "pods"):
            return True
        if resource == "secrets" and name == "kubeadm-certs" and verb == "get":
            return True
        if resource == "certificatesigningrequests" and verb in ("create", "get", "list"):
            return True
    return False


def forbidden_message(  # noqa: PLR0917 - mirrors the upstream call's parameters
    user: User,
    verb: str,
    resource: str,
    group: str,
    namespace: str,
    name: str,
    path: str,
    subresource: str = "",
    reason: str = "",
) -> str:
    """responsewriters.Forbidden (endpoints/handlers/responsewriters/errors.go): the
    NewForbidden message over forbiddenMessage, then ": <reason>" when the authorizer
    gave one; the qualified resource is `resource.group`, the verb's is resource/sub."""
    suffix = f": {reason}" if reason else ""
    if not resource:
        return f'forbidden: User "{user.name}" cannot {verb} path "{path}"{suffix}'
    qualified = f"{resource}.{group}" if group else resource
    what = f'{qualified} "{name}"' if name else qualified
    scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
    full = f"{resource}/{subresource}" if subresource else resource
    return (
        f'{what} is forbidden: User "{user.name}" cannot {verb} resource "{full}" '
        f'in API group "{group}" {scope}{suffix}'
    )


def from_oidc(oidc: OIDCAuthenticator | None, token: str) -> User | None:
    """An ID token's user (oidc.py) plus system:authenticated (AuthenticatedGroupAdder);
    None when it is not this issuer's JWT; a rejected one is logged as upstream does."""
    if oidc is None:
        return None
    try:
        found = oidc.authenticate(token)
    except TokenError as err:
        klog.error(f'"Unable to authenticate the request" err="{err}"', "authentication.go:73")
        return None
    if found is None:
        return None
    name, groups = found
    return User(name, groups + ["system:authenticated"])


def authenticate(
    secrets: SecretGetter,
    authorization: str,
    cert: dict | None,
    oidc: OIDCAuthenticator | None = None,
) -> User:
    """The request's user (filters/authentication.go): a bearer token must be valid for
    one of the token authenticators, bootstrap then OIDC (401 otherwise, no fallback), else
    the client certificate, else anonymous."""
    if authorization.startswith("Bearer "):
        token = authorization[7:].strip()
        user = from_token(secrets, token) or from_oidc(oidc, token)
        if user is None:
            raise StatusError(401, "Unauthorized", "Unauthorized")
        return user
    return from_cert(cert) or ANONYMOUS


def decide(attrs: Attributes, rbac: RBAC | None = None, reason: bool = False) -> tuple[bool, str]:
    """The apiserver's authorizer chain on `attrs` (pkg/kubeapiserver/authorizer/config.go:
    the system:masters authorizer, then Node, then RBAC, in a union.New): the coarse rules
    above stand for the first two and for the bindings kubeadm and the component roles
    give; then RBAC. (allowed, reason) as the union answers: no authorizer denies, so a
    refusal is NoOpinion with RBAC's reason. Requests and SubjectAccessReviews share it.

    With `reason` (a SubjectAccessReview shows it), a coarse allow other than
    system:masters' (whose authorizer answers first, with no reason) asks RBAC too, so a
    bootstrap role that grants it is named as upstream's RBAC would ("RBAC: allowed by
    ..."); requests skip that second evaluation."""
    user = User(attrs.user, list(attrs.groups))
    resource = attrs.resource if attrs.resource_request else ""
    if allowed(user, attrs.verb, resource, attrs.namespace, attrs.name, attrs.path):
        if not reason or rbac is None or "system:masters" in user.groups:
            return True, ""
        ok, why = rbac.authorize(attrs)
        return True, why if ok else ""
    if rbac is None:
        return False, ""
    return rbac.authorize(attrs)


def authorize(
    user: User, verb: str, route: Route | None, path: str, rbac: RBAC | None = None
) -> None:
    """403 with upstream's message unless `user` may do `verb` (filters/authorization.go):
    the coarse rules above first, then RBAC when the app has it."""
    res = route.res if route is not None else None
    if res is None:
        ok, reason = decide(Attributes(user.name, user.groups, verb, False, path=path), rbac)
        if not ok:
            message = forbidden_message(user, verb, "", "", "", "", path, reason=reason)
            raise StatusError(403, "Forbidden", message)
        return
    # request/requestinfo.go: /api/v1/namespaces/<name> is in the namespace <name>
    namespace = route.namespace if res.namespaced else ""
    if res.plural == "namespaces" and route.name:
        namespace = route.name
    attrs = Attributes(
        user.name,
        user.groups,
        verb,
        True,
        route.group,
        res.plural,
        route.subresource,
        namespace,
        route.name,
        path,
    )
    ok, reason = decide(attrs, rbac)
    if ok:
        return
    details = {"name": route.name} if route.name else {}
    details |= {"group": route.group} if route.group else {}
    details["kind"] = res.plural
    raise StatusError(
        403,
        "Forbidden",
        forbidden_message(
            user,
            verb,
            res.plural,
            route.group,
            namespace,
            route.name,
            path,
            route.subresource,
            reason,
        ),
        details,
    )


__all__ = [
    "ANONYMOUS",
    "User",
    "allowed",
    "authenticate",
    "authorize",
    "decide",
    "forbidden_message",
    "from_cert",
    "from_oidc",
    "from_token",
    "EtcdError",
]
