"""kubectl cordon/uncordon/drain (k8s.io/kubectl/pkg/drain): cordon, filter the node's
pods, evict each (retrying every 5 s while a PodDisruptionBudget answers 429), wait for
them to go."""

from __future__ import annotations

import sys
import time

from .. import flags as flagutil
from ..kubeclient import ApiError, Client, resource_path


def set_unschedulable(c: Client, node: str, value: bool) -> str:
    obj = c.get("nodes", node)
    verb = "cordoned" if value else "uncordoned"
    if bool(obj.get("spec", {}).get("unschedulable")) == value:
        return f"node/{node} already {verb}"
    c.patch("nodes", node, {"spec": {"unschedulable": True if value else None}})
    return f"node/{node} {verb}"


def drain(c: Client, flags: dict, node: str) -> int:
    """k8s.io/kubectl/pkg/drain: cordon, filter pods, evict with retry on 429, wait for deletion."""
    print(set_unschedulable(c, node, True))
    timeout = flagutil.duration(flags.get("timeout", "0s"))
    deadline = time.monotonic() + timeout if timeout else None
    pods = c.list("pods", field_selector=f"spec.nodeName={node}")["items"]
    errors, warnings, todo = [], [], []
    for p in pods:
        meta = p["metadata"]
        ref = f"{meta['namespace']}/{meta['name']}"
        if (meta.get("annotations") or {}).get("kubernetes.io/config.mirror"):
            continue
        if p.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            todo.append(p)
            continue
        owners = [o for o in meta.get("ownerReferences") or [] if o.get("controller")]
        if any(o.get("kind") == "DaemonSet" for o in owners):
            if "ignore-daemonsets" in flags:
                warnings.append(f"ignoring DaemonSet-managed Pods: {ref}")
                continue
            errors.append(
                ("cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore)", ref)
            )
            continue
        if not owners:
            if "force" not in flags:
                errors.append(
                    ("cannot delete Pods declare no controller (use --force to override)", ref)
                )
                continue
            warnings.append(f"deleting Pods that declare no controller: {ref}")
        if (
            any("emptyDir" in v for v in p.get("spec", {}).get("volumes") or [])
            and "delete-emptydir-data" not in flags
        ):
            errors.append(
                (
                    "cannot delete Pods with local storage (use --delete-emptydir-data to override)",  # noqa: E501 - upstream's text
                    ref,
                )
            )
            continue
        todo.append(p)
    if errors:
        grouped: dict[str, list[str]] = {}
        for msg, ref in errors:
            grouped.setdefault(msg, []).append(ref)
        text = ", ".join(f"{m}: {', '.join(refs)}" for m, refs in grouped.items())
        print(
            f'error: unable to drain node "{node}" due to error: {text}, continuing command...',
            file=sys.stderr,
        )
        print(f"There are pending nodes to be drained:\n {node}", file=sys.stderr)
        print(f"error: {text}", file=sys.stderr)
        return 1
    for w in warnings:
        print(f"Warning: {w}", file=sys.stderr)
    pending = {p["metadata"]["uid"]: p for p in todo}
    failures = []
    for p in todo:
        meta = p["metadata"]
        ns, name = meta["namespace"], meta["name"]
        print(f"evicting pod {ns}/{name}")
        while True:
            try:
                c.request(
                    "POST",
                    resource_path("pods", ns, name, "eviction"),
                    {
                        "apiVersion": "policy/v1",
                        "kind": "Eviction",
                        "metadata": {"name": name, "namespace": ns},
                        **(
                            {"deleteOptions": {"gracePeriodSeconds": int(flags["grace-period"])}}
                            if flags.get("grace-period") not in (None, "-1")
                            else {}
                        ),
                    },
                )
                break
            except ApiError as err:
                if err.status == 404:
                    break
                if err.status == 429:
                    if deadline and time.monotonic() + 5 > deadline:
                        failures.append(
                            f'error when evicting pods/"{name}" -n "{ns}": global timeout '
                            f"reached: {flagutil.go_duration(timeout)}"
                        )
                        break
                    print(
                        f'error when evicting pods/"{name}" -n "{ns}" (will retry after 5s): {err}',
                        file=sys.stderr,
                    )
                    time.sleep(5)
                    continue
                failures.append(f'error when evicting pods/"{name}" -n "{ns}": {err}')
                break
    if failures:
        print(
            f'error: unable to drain node "{node}" due to error: [{", ".join(failures)}], '
            "continuing command...",
            file=sys.stderr,
        )
        print(f"There are pending nodes to be drained:\n {node}", file=sys.stderr)
        for f in failures:
            print(f, file=sys.stderr)
        return 1
    while pending:
        for uid, p in list(pending.items()):
            cur = c.get_or_none("pods", p["metadata"]["name"], p["metadata"]["namespace"])
            if cur is None or cur["metadata"]["uid"] != uid:
                print(f"pod/{p['metadata']['name']} evicted")
                pending.pop(uid)
        if deadline and time.monotonic() > deadline:
            print(
                f'error: unable to drain node "{node}" due to error: global timeout reached',
                file=sys.stderr,
            )
            return 1
        if pending:
            time.sleep(1)
    print(f"node/{node} drained")
    return 0
