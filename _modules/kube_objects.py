"""
Kubernetes objects through kubectl: read what is live, tell what differs from what the
formula wants, apply, and prune what the formula made and no longer wants.

Every call is bounded twice: kubectl's ``--request-timeout`` for each request and the
command's own timeout. Objects travel on stdin (``-f -``), never on a command line.
"What differs" is judged on the fields the formula sets: the server adds defaults
(e.g. a ValidatingAdmissionPolicy's ``matchPolicy: Equivalent``), so a desired object that
is a subset of the live one is in sync.

CLI Example:

.. code-block:: bash

    salt cp-1 kube_objects.live "$(cat namespace.json)"
"""

from __future__ import annotations

import json
import shutil

from salt.exceptions import CommandExecutionError

__virtualname__ = "kube_objects"

KUBECONFIG = "/etc/kubernetes/admin.conf"
REQUEST_TIMEOUT = "30s"
COMMAND_TIMEOUT = 90


def __virtual__():
    # Loaded even before kubectl is installed: the highstate that installs the kube packages
    # also holds the states that use this module (guarded by the kubeconfig existing), and a
    # module missing at load time would fail that highstate. A missing kubectl is an error
    # at call time instead.
    return __virtualname__


def _kubectl(args: list[str], kubeconfig: str, stdin: str | None = None) -> dict:
    if shutil.which("kubectl") is None:
        raise CommandExecutionError("kube_objects: kubectl is not installed on this node")
    cmd = ["kubectl", f"--kubeconfig={kubeconfig}", f"--request-timeout={REQUEST_TIMEOUT}", *args]
    return __salt__["cmd.run_all"](
        cmd, python_shell=False, stdin=stdin, timeout=COMMAND_TIMEOUT, output_loglevel="quiet"
    )


def _fail(what: str, ret: dict) -> CommandExecutionError:
    detail = (ret.get("stderr") or ret.get("stdout") or "").strip()
    return CommandExecutionError(f"kubectl {what} failed (exit {ret.get('retcode')}): {detail}")


def describe(obj: dict) -> str:
    """
    ``Kind/name`` or ``Kind/namespace/name`` of an object, for messages.

    CLI Example:

    .. code-block:: bash

        salt-call kube_objects.describe '{"kind": "Role", "metadata": {"name": "r"}}'
    """
    meta = obj.get("metadata") or {}
    where = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj.get('kind')}/{where}{meta.get('name')}"


def live(obj: dict, kubeconfig: str = KUBECONFIG) -> dict | None:
    """
    The live object named like ``obj``, or None when it does not exist.

    CLI Example:

    .. code-block:: bash

        salt cp-1 kube_objects.live "$(cat object.json)"
    """
    ret = _kubectl(["get", "-f", "-", "-o", "json"], kubeconfig, json.dumps(obj))
    if ret["retcode"] == 0:
        return json.loads(ret["stdout"])
    if "NotFound" in (ret.get("stderr") or ""):
        return None
    raise _fail(f"get {describe(obj)}", ret)


def subset(want, have) -> bool:
    """
    Whether every field of ``want`` is in ``have`` with the same value (lists in order,
    each item a subset): what the server defaults does not count as a difference.

    CLI Example:

    .. code-block:: bash

        salt-call kube_objects.subset '{"a": 1}' '{"a": 1, "b": 2}'
    """
    if isinstance(want, dict):
        return isinstance(have, dict) and all(
            k in have and subset(v, have[k]) for k, v in want.items()
        )
    if isinstance(want, list):
        return (
            isinstance(have, list)
            and len(want) == len(have)
            and all(subset(w, h) for w, h in zip(want, have, strict=True))
        )
    return want == have


def differs(obj: dict, kubeconfig: str = KUBECONFIG) -> str | None:
    """
    None when the live object has every field ``obj`` sets, else why not ("missing" or
    "changed").

    CLI Example:

    .. code-block:: bash

        salt cp-1 kube_objects.differs "$(cat object.json)"
    """
    current = live(obj, kubeconfig)
    if current is None:
        return "missing"
    want = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "status")}
    want["metadata"] = {
        k: v for k, v in (obj.get("metadata") or {}).items() if k in ("labels", "annotations")
    }
    return None if subset(want, current) else "changed"


def apply(obj: dict, kubeconfig: str = KUBECONFIG) -> str:
    """
    ``kubectl apply -f -`` of one object; kubectl's line (``... created|configured``).

    CLI Example:

    .. code-block:: bash

        salt cp-1 kube_objects.apply "$(cat object.json)"
    """
    ret = _kubectl(["apply", "-f", "-"], kubeconfig, json.dumps(obj))
    if ret["retcode"] != 0:
        raise _fail(f"apply {describe(obj)}", ret)
    return ret["stdout"].strip()


def managed(resource: str, selector: str, kubeconfig: str = KUBECONFIG) -> list[dict]:
    """
    Every ``resource`` object (all namespaces) whose labels match ``selector``.

    CLI Example:

    .. code-block:: bash

        salt cp-1 kube_objects.managed clusterroles app.kubernetes.io/managed-by=kubeha
    """
    ret = _kubectl(["get", resource, "-A", "-l", selector, "-o", "json"], kubeconfig)
    if ret["retcode"] != 0:
        raise _fail(f"get {resource} -l {selector}", ret)
    return json.loads(ret["stdout"]).get("items") or []


def delete(resource: str, name: str, namespace: str = "", kubeconfig: str = KUBECONFIG) -> str:
    """
    ``kubectl delete`` of one object (gone already is fine).

    CLI Example:

    .. code-block:: bash

        salt cp-1 kube_objects.delete clusterroles kubeha-team-old
    """
    args = ["delete", resource, name, "--ignore-not-found"]
    if namespace:
        args += ["-n", namespace]
    ret = _kubectl(args, kubeconfig)
    if ret["retcode"] != 0:
        raise _fail(f"delete {resource}/{name}", ret)
    return ret["stdout"].strip()
