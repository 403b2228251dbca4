"""
Keep Kubernetes objects as the formula wants them (``kube_objects`` module, kubectl).

.. code-block:: yaml

    kubeha-security-admission-applied:
      kube_objects.applied:
        - objects: [...]                  # full objects (apiVersion, kind, metadata, ...)
        - prune:                          # optional: what the formula made and no longer wants
            selector: app.kubernetes.io/managed-by=kubeha,kubeha.io/part=rbac
            resources: [clusterroles, clusterrolebindings, roles, rolebindings]

Idempotent: an object whose live copy has every field it sets is left alone, so a second
run reports no changes; ``test=True`` reports what would be created, changed or deleted.
"""

from __future__ import annotations

from salt.exceptions import CommandExecutionError

__virtualname__ = "kube_objects"

PLURALS = {
    "ClusterRole": "clusterroles",
    "ClusterRoleBinding": "clusterrolebindings",
    "Role": "roles",
    "RoleBinding": "rolebindings",
    "ValidatingAdmissionPolicy": "validatingadmissionpolicies",
    "ValidatingAdmissionPolicyBinding": "validatingadmissionpolicybindings",
}


def __virtual__():
    return __virtualname__


def _key(resource: str, obj: dict) -> tuple[str, str, str]:
    meta = obj.get("metadata") or {}
    return resource, meta.get("namespace") or "", meta.get("name") or ""


def _stale(objects: list[dict], prune: dict, kubeconfig: str) -> list[tuple[str, str, str]]:
    wanted = {_key(PLURALS.get(o.get("kind"), ""), o) for o in objects}
    out = []
    for resource in prune.get("resources") or []:
        for item in __salt__["kube_objects.managed"](resource, prune["selector"], kubeconfig):
            key = _key(resource, item)
            if key not in wanted:
                out.append(key)
    return sorted(out)


def applied(name, objects, prune=None, kubeconfig="/etc/kubernetes/admin.conf"):
    """
    Every object in ``objects`` exists with the fields it sets; with ``prune``, objects
    matching ``prune:selector`` in ``prune:resources`` that are not in ``objects`` are
    deleted.

    .. code-block:: yaml

        kubeha-security-admission-applied:
          kube_objects.applied:
            - objects: {{ salt['kubeha_security.admission_objects'](kubeha) | json }}
            - prune:
                selector: app.kubernetes.io/managed-by=kubeha
                resources: [validatingadmissionpolicies, validatingadmissionpolicybindings]
            - onlyif: test -e /etc/kubernetes/admin.conf
    """
    ret = {"name": name, "result": True, "changes": {}, "comment": ""}
    describe = __salt__["kube_objects.describe"]
    try:
        pending = {}
        for obj in objects or []:
            why = __salt__["kube_objects.differs"](obj, kubeconfig)
            if why is not None:
                pending[describe(obj)] = (why, obj)
        stale = _stale(objects or [], prune, kubeconfig) if prune else []
        if not pending and not stale:
            ret["comment"] = f"{len(objects or [])} object(s) in sync"
            return ret
        planned = {
            k: ("created" if w == "missing" else "configured") for k, (w, _) in pending.items()
        }
        planned.update({"/".join(p for p in key if p): "deleted" for key in stale})
        if __opts__["test"]:
            ret["result"] = None
            ret["changes"] = planned
            ret["comment"] = f"{len(planned)} object(s) would change"
            return ret
        for _, obj in pending.values():
            __salt__["kube_objects.apply"](obj, kubeconfig)
        for resource, namespace, obj_name in stale:
            __salt__["kube_objects.delete"](resource, obj_name, namespace, kubeconfig)
    except CommandExecutionError as err:
        ret["result"] = False
        ret["comment"] = str(err)
        return ret
    ret["changes"] = planned
    ret["comment"] = f"{len(planned)} object(s) changed"
    return ret
