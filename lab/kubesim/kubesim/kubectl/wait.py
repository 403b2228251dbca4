"""kubectl wait --for=condition=...|delete|jsonpath=... (k8s.io/kubectl/pkg/cmd/wait)."""

from __future__ import annotations

import sys
import time

from .. import flags as flagutil
from ..kubeclient import RESOURCES, Client
from .common import SINGULAR, KubectlError, resolve
from .get import jsonpath


def _condition_met(obj: dict | None, want: str) -> bool:
    """--for=condition=Ready[=True], --for=delete, --for=jsonpath={.path}=value."""
    if want == "delete":
        return obj is None
    if obj is None:
        return False
    if want.startswith("condition="):
        name, _, value = want[len("condition=") :].partition("=")
        conds = obj.get("status", {}).get("conditions") or []
        return any(
            c.get("type", "").lower() == name.lower()
            and c.get("status", "").lower() == (value or "True").lower()
            for c in conds
        )
    if want.startswith("jsonpath="):
        expr, _, value = want[len("jsonpath=") :].strip("'").rpartition("=")
        return jsonpath(expr, obj).strip() == value
    raise KubectlError(f"error: unrecognized condition: {want!r}")


def wait(c: Client, flags: dict, args: list[str]) -> int:
    """kubectl wait (k8s.io/kubectl/pkg/cmd/wait): poll until each object meets --for."""
    want = flags.get("for")
    if not want:
        raise KubectlError("error: --for must be specified")
    timeout = flagutil.duration(flags.get("timeout", "30s"))
    targets: list[tuple[str, str]] = []
    for arg in args:
        kind, _, name = arg.partition("/")
        targets.append((resolve(kind), name))
    if len(args) >= 1 and "/" not in args[0]:
        resource = resolve(args[0])
        ns = (
            (flags.get("n") or flags.get("namespace") or "default")
            if RESOURCES[resource][2]
            else None
        )
        if args[1:]:
            targets = [(resource, n) for n in args[1:]]
        else:
            items = c.list(resource, ns, label_selector=flags.get("l") or flags.get("selector"))[
                "items"
            ]
            targets = [(resource, i["metadata"]["name"]) for i in items]
            if not targets:
                raise KubectlError("error: no matching resources found")
    deadline = time.monotonic() + timeout
    code = 0
    for resource, name in targets:
        ns = (
            (flags.get("n") or flags.get("namespace") or "default")
            if RESOURCES[resource][2]
            else None
        )
        label = f"{SINGULAR.get(resource, resource)}/{name}"
        while True:
            obj = c.get_or_none(resource, name, ns)
            if _condition_met(obj, want):
                print(f"{label} {'deleted' if want == 'delete' else 'condition met'}")
                break
            if time.monotonic() >= deadline:
                print(
                    f"error: timed out waiting for the condition on {resource}/{name}",
                    file=sys.stderr,
                )
                code = 1
                break
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
    return code
