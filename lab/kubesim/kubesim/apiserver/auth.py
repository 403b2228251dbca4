"""Authentication (x509 client certs, bootstrap tokens, anonymous) and a coarse authorizer.

x509: user = CN, groups = O (staging/src/k8s.io/apiserver/pkg/authentication/request/x509).
Bootstrap tokens: `Bearer <id>.<secret>` checked against Secret kube-system/bootstrap-token-<id>
(plugin/pkg/auth/authenticator/token/bootstrap/bootstrap.go): usage-bootstrap-authentication,
expiration, user system:bootstrap:<id>, groups system:bootstrappers + auth-extra-groups.
The Secret is read from the apiserver's informer cache (the authenticator is built on a
SecretLister, pkg/kubeapiserver/authenticator/config.go), so a token keeps working while
etcd is unreachable.
Authorization is a simplification of the RBAC bindings kubeadm creates: admins, nodes and
the control-plane components may do anything; bootstrappers may read what a join reads and
create CSRs; anonymous may read cluster-info and the health/version endpoints.
"""

from __future__ import annotations

import base64
import datetime as dt
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..etcd import EtcdError
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
    user: User, verb: str, resource: str, group: str, namespace: str, name: str, path: str
) -> str:
    if not resource:
        return f'forbidden: User "{user.name}" cannot {verb} path "{path}"'
    what = f'{resource} "{name}"' if name else resource
    scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
    return (
        f'{what} is forbidden: User "{user.name}" cannot {verb} resource "{resource}" '
        f'in API group "{group}" {scope}'
    )


def authenticate(secrets: SecretGetter, authorization: str, cert: dict | None) -> User:
    """The request's user (filters/authentication.go): a bearer token must be valid (401
    otherwise, no fallback), else the client certificate, else anonymous."""
    if authorization.startswith("Bearer "):
        user = from_token(secrets, authorization[7:].strip())
        if user is None:
            raise StatusError(401, "Unauthorized", "Unauthorized")
        return user
    return from_cert(cert) or ANONYMOUS


def authorize(user: User, verb: str, route: Route | None, path: str) -> None:
    """403 with upstream's message unless `user` may do `verb` (filters/authorization.go)."""
    res = route.res if route is not None else None
    if res is None:
        if not allowed(user, verb, "", "", "", path):
            raise StatusError(403, "Forbidden", forbidden_message(user, verb, "", "", "", "", path))
        return
    if allowed(user, verb, res.plural, route.namespace, route.name, path):
        return
    raise StatusError(
        403,
        "Forbidden",
        forbidden_message(user, verb, res.plural, route.group, route.namespace, route.name, path),
        {"name": route.name, "kind": res.plural} if route.name else {"kind": res.plural},
    )


__all__ = [
    "ANONYMOUS",
    "User",
    "allowed",
    "authenticate",
    "authorize",
    "forbidden_message",
    "from_cert",
    "from_token",
    "EtcdError",
]
