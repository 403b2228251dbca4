"""
Rules for the security keys of the model (``security:``): the admission policy's
validationActions and its Kubernetes version. Strings are checked by
``kubeha_rules_strings`` (each action a word, each exempt namespace a DNS label); this
module checks what the API server would refuse when the formula applies the objects.

Messages: ``kubeha:<key>: <what is wrong>. <the fix>``.

CLI Example:

.. code-block:: bash

    salt-call kubeha_rules_security.problems "$(cat model.json)"
"""

from __future__ import annotations

__virtualname__ = "kubeha_rules_security"

ACTIONS = ("Deny", "Warn", "Audit")


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


def problems(model: dict) -> list[str]:
    """
    Every problem of the model's ``security:`` keys.

    CLI Example:

    .. code-block:: bash

        salt-call kubeha_rules_security.problems "$(cat model.json)"
    """
    return _admission(model)
