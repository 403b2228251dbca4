"""
Rules for the security keys of the model (``security:``): the admission policy's
validationActions and its Kubernetes version; and the API server's OIDC flags
(``apiserver:oidc``), as kube-apiserver would refuse them at start (a crash-looping
apiserver on every control plane) or accept them in a way that lets an identity provider
name Kubernetes' own users and groups. The teams' RBAC is ``kubeha_rules_rbac``. Strings are
checked by
``kubeha_rules_strings`` (each action a word, each exempt namespace a DNS label); this
module checks what the API server would refuse when the formula applies the objects.

Messages: ``kubeha:<key>: <what is wrong>. <the fix>``.

CLI Example:

.. code-block:: bash

    salt-call kubeha_rules_security.problems "$(cat model.json)"
"""

from __future__ import annotations

from urllib.parse import urlsplit

__virtualname__ = "kubeha_rules_security"

ACTIONS = ("Deny", "Warn", "Audit")
# The directories kubeadm mounts into the kube-apiserver pod (Debian: k8s-certs, ca-certs,
# etc-ca-certificates, usr-share-ca-certificates, usr-local-share-ca-certificates;
# cmd/kubeadm/app/phases/controlplane/volumes.go): an --oidc-ca-file elsewhere is not in
# the pod, and the apiserver exits at start ("failed to read the CA file").
CA_DIRS = (
    "/etc/kubernetes/pki/",
    "/etc/ssl/certs/",
    "/etc/ca-certificates/",
    "/usr/share/ca-certificates/",
    "/usr/local/share/ca-certificates/",
)


def __virtual__():
    return __virtualname__


def _admission(model: dict) -> list[str]:
    conf = (model.get("security") or {}).get("admission") or {}
    if not conf.get("enabled"):
        return []
    key = "kubeha:security:admission:validation_actions"
    actions = conf.get("validation_actions")
    if not isinstance(actions, list) or not actions:
        return [
            f"{key}: {actions!r}; a binding needs at least one action "
            "(ValidatingAdmissionPolicyBinding validation). Use [Deny], or [Warn, Audit] to "
            "watch before enforcing."
        ]
    out = []
    unknown = [a for a in actions if a not in ACTIONS]
    if unknown:
        out.append(f"{key}: {unknown!r} unknown; use {', '.join(ACTIONS)}.")
    if len(set(actions)) != len(actions):
        out.append(f"{key}: {actions!r} lists an action twice; list each once.")
    if "Deny" in actions and "Warn" in actions:
        # admissionregistration validation: "Deny and Warn may not be used together"
        # (pkg/apis/admissionregistration/validation/validation.go).
        out.append(
            f"{key}: Deny and Warn together are refused by the API server (a denied request "
            "gets the message already). Use [Deny] or [Deny, Audit]."
        )
    exempt = conf.get("exempt_namespaces")
    if exempt is not None and not isinstance(exempt, list):
        out.append("kubeha:security:admission:exempt_namespaces: must be a list of namespaces.")
    return out


def _issuer(url: str, model: dict) -> list[str]:
    # kube-apiserver's issuer URL validation, the same for --oidc-issuer-url and the
    # structured AuthenticationConfiguration: https only, no user info, no query, no
    # fragment, not the service-account issuer
    # (staging/src/k8s.io/apiserver/pkg/apis/apiserver/validation/validation.go,
    # validateIssuerURL / validateURL).
    key = "kubeha:apiserver:oidc:issuer_url"
    try:
        parts = urlsplit(url)
    except ValueError:
        return [f"{key}: {url!r} is not a URL; use the issuer's https:// URL."]
    out = []
    if parts.scheme != "https" or not parts.hostname:
        out.append(f"{key}: {url!r}; kube-apiserver accepts only https:// issuers with a host.")
    if parts.username is not None or parts.password is not None:
        out.append(f"{key}: {url!r} holds a user name or password; the API server refuses it.")
    if parts.query or url.endswith("?"):
        out.append(f"{key}: {url!r} has a query; the issuer URL may not (drop ?...).")
    if parts.fragment or "#" in url:
        out.append(f"{key}: {url!r} has a fragment; the issuer URL may not (drop #...).")
    # The service-account issuer kubeadm sets (--service-account-issuer): a token issuer
    # may not be configured twice ("URL must not overlap with disallowed issuers").
    sa_issuer = f"https://kubernetes.default.svc.{(model.get('network') or {}).get('dns_domain')}"
    if url.rstrip("/") == sa_issuer:
        out.append(
            f"{key}: {url!r} is the cluster's service-account issuer; OIDC needs the "
            "identity provider's issuer."
        )
    return out


def _oidc(model: dict) -> list[str]:
    oidc = (model.get("apiserver") or {}).get("oidc") or {}
    issuer = oidc.get("issuer_url")
    key = "kubeha:apiserver:oidc"
    if not issuer:
        if oidc.get("client_id"):
            # pkg/kubeapiserver/options/authentication.go: the issuer and the client id
            # "must be specified together"; kubeha renders neither without the issuer.
            return [f"{key}:client_id: set but issuer_url is empty, so OIDC is off; set "
                    "issuer_url too, or clear client_id."]  # fmt: skip
        return []
    out = _issuer(str(issuer), model)
    if not oidc.get("client_id"):
        # authentication.go: "oidc-issuer-url and oidc-client-id must be specified together".
        out.append(f"{key}:client_id: required when issuer_url is set (the token audience).")
    if not oidc.get("username_claim"):
        # validation.go validatePrefixClaimOrExpression: the username claim is required.
        out.append(f"{key}:username_claim: required with issuer_url; use sub (or email).")
    # An empty (or '-', upstream's "no prefix") prefix lets the identity provider mint
    # Kubernetes' own names: a user system:kube-scheduler (bound to the scheduler's role by
    # kubeadm) or a group system:masters (cluster-admin, past RBAC). Upstream prefixes
    # non-email usernames with the issuer URL by default for the same reason
    # (pkg/kubeapiserver/options/authentication.go, --oidc-username-prefix).
    for claim, prefix in (("username_claim", "username_prefix"),
                          ("groups_claim", "groups_prefix")):  # fmt: skip
        if oidc.get(claim) and oidc.get(prefix) in ("", "-", None):
            out.append(
                f"{key}:{prefix}: {oidc.get(prefix)!r} leaves the identity provider's names "
                "unprefixed, so it could name system:masters or system:kube-scheduler; use "
                "a prefix such as 'oidc:' (teams then name groups as oidc:<group>)."
            )
    ca_file = oidc.get("ca_file")
    if ca_file and not str(ca_file).startswith(CA_DIRS):
        out.append(
            f"{key}:ca_file: {ca_file!r} is not in a directory kubeadm mounts into the "
            f"kube-apiserver pod ({', '.join(CA_DIRS)}); put the CA under /etc/kubernetes/pki."
        )
    return out


def problems(model: dict) -> list[str]:
    """
    Every problem of the model's ``security:`` keys.

    CLI Example:

    .. code-block:: bash

        salt-call kubeha_rules_security.problems "$(cat model.json)"
    """
    return _admission(model) + _oidc(model)
