"""kubectl cordon/uncordon/drain (staging/src/k8s.io/kubectl/pkg/drain/drain.go, filters.go;
pkg/cmd/drain/drain.go; 1.28-1.31).

drain: cordon, then sort the node's pods through upstream's filters in order -- already
deleted, DaemonSet-managed (error unless --ignore-daemonsets), mirror pods (skipped
silently), emptyDir (error unless --delete-emptydir-data), no controller (error unless
--force) -- and stop with every error grouped by message if any. Then every pod is
evicted *concurrently*, each in its own goroutine: a 429 is printed and retried 5 s
later, the global --timeout (0 = none) is checked before each attempt, and each evicted
pod is waited for (polled every second) until it is gone. --disable-eviction deletes
instead of evicting. Errors of all pods are aggregated ("[e1, e2]" when more than one).
"""

from __future__ import annotations

import sys
import threading
import time

from .. import flags as flagutil
from ..kubeclient import ApiError, Client, resource_path

UNMANAGED = "cannot delete Pods that declare no controller (use --force to override)"
DAEMONSET = "cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore)"
LOCAL = "cannot delete Pods with local storage (use --delete-emptydir-data to override)"


def set_unschedulable(c: Client, node: str, value: bool) -> str:
    obj = c.get("nodes", node)
    verb = "cordoned" if value else "uncordoned"
    if bool(obj.get("spec", {}).get("unschedulable")) == value:
        return f"node/{node} already {verb}"
    c.patch("nodes", node, {"spec": {"unschedulable": True if value else None}})
    return f"node/{node} {verb}"


def aggregate(errors: list[str]) -> str:
    """utilerrors.NewAggregate(...).Error()."""
    return errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]"


def classify(c: Client, pods: list[dict], flags: dict) -> tuple[list, dict, dict]:
    """GetPodsForDeletion: (pods to delete, errors by message, warnings by message)."""
    ignore_ds = flagutil.as_bool(flags.get("ignore-daemonsets"))
    force = flagutil.as_bool(flags.get("force"))
    emptydir = flagutil.as_bool(flags.get("delete-emptydir-data"))
    todo, errors, warnings = [], {}, {}
    for p in pods:
        meta = p["metadata"]
        ref = f"{meta['namespace']}/{meta['name']}"
        if meta.get("deletionTimestamp"):
            continue  # skipDeletedFilter (within --skip-wait-for-delete-timeout 0: kept out)
        owners = [o for o in meta.get("ownerReferences") or [] if o.get("controller")]
        if any(o.get("kind") == "DaemonSet" for o in owners):
            if ignore_ds:
                warnings.setdefault("ignoring DaemonSet-managed Pods", []).append(ref)
            else:
                errors.setdefault(DAEMONSET, []).append(ref)
            continue
        if (meta.get("annotations") or {}).get("kubernetes.io/config.mirror"):
            continue  # mirrorPodFilter: skipped without a word
        terminal = p.get("status", {}).get("phase") in ("Succeeded", "Failed")
        if any("emptyDir" in v for v in p.get("spec", {}).get("volumes") or []) and not terminal:
            if not emptydir:
                errors.setdefault(LOCAL, []).append(ref)
                continue
            warnings.setdefault("deleting Pods with local storage", []).append(ref)
        if not owners and not terminal:
            if not force:
                errors.setdefault(UNMANAGED, []).append(ref)
                continue
            warnings.setdefault("deleting Pods that declare no controller", []).append(ref)
        todo.append(p)
    return todo, errors, warnings


def _gone(c: Client, pod: dict) -> bool:
    cur = c.get_or_none("pods", pod["metadata"]["name"], pod["metadata"]["namespace"])
    return cur is None or cur["metadata"]["uid"] != pod["metadata"]["uid"]


def _evict_one(c: Client, pod: dict, flags: dict, deadline: float | None, timeout_text: str):
    ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
    body = {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": name, "namespace": ns},
    }
    if flags.get("grace-period") not in (None, "-1"):
        body["deleteOptions"] = {"gracePeriodSeconds": int(flags["grace-period"])}
    while True:
        print(f"evicting pod {ns}/{name}", flush=True)
        if deadline is not None and time.monotonic() >= deadline:
            return f'error when evicting pods/"{name}" -n "{ns}": global timeout reached: {timeout_text}'  # noqa: E501 - upstream's text
        try:
            c.request("POST", resource_path("pods", ns, name, "eviction"), body)
            break
        except ApiError as err:
            if err.status == 404:
                return None
            if err.status != 429:
                return f'error when evicting pods/"{name}" -n "{ns}": {err}'
            print(
                f'error when evicting pods/"{name}" -n "{ns}" (will retry after 5s): {err}',
                file=sys.stderr,
                flush=True,
            )
            time.sleep(5)
    return _wait_deleted(c, pod, deadline, timeout_text, "evicted")


def _wait_deleted(c: Client, pod: dict, deadline, timeout_text: str, verb: str) -> str | None:
    while True:
        if _gone(c, pod):
            print(f"pod/{pod['metadata']['name']} {verb}", flush=True)
            return None
        if deadline is not None and time.monotonic() >= deadline:
            return (
                f'error when waiting for pod "{pod["metadata"]["name"]}" in namespace '
                f'"{pod["metadata"]["namespace"]}" to terminate: global timeout reached: '
                f"{timeout_text}"
            )
        time.sleep(1)


def drain(c: Client, flags: dict, node: str) -> int:
    print(set_unschedulable(c, node, True))
    timeout = flagutil.duration(flags.get("timeout", "0s"))
    deadline = time.monotonic() + timeout if timeout else None
    timeout_text = flagutil.go_duration(timeout)
    pods = c.list(
        "pods", field_selector=f"spec.nodeName={node}", label_selector=flags.get("pod-selector")
    )["items"]
    todo, errors, warnings = classify(c, pods, flags)
    failures: list[str] = [f"{m}: {', '.join(refs)}" for m, refs in errors.items()]
    if not failures:
        if warnings:
            text = "; ".join(f"{m}: {', '.join(refs)}" for m, refs in warnings.items())
            print(f"Warning: {text}", file=sys.stderr)
        results: list[str | None] = []
        if flagutil.as_bool(flags.get("disable-eviction")):
            for p in todo:  # deletePods: delete every pod, then wait for all of them
                try:
                    grace = (
                        None
                        if flags.get("grace-period") in (None, "-1")
                        else int(flags["grace-period"])
                    )
                    c.delete("pods", p["metadata"]["name"], p["metadata"]["namespace"], grace)
                except ApiError as err:
                    if err.status != 404:
                        results.append(str(err))
            results += [_wait_deleted(c, p, deadline, timeout_text, "deleted") for p in todo]
        else:
            lock = threading.Lock()

            def one(pod: dict) -> None:
                result = _evict_one(c, pod, flags, deadline, timeout_text)
                with lock:
                    results.append(result)

            threads = [threading.Thread(target=one, args=(p,)) for p in todo]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        failures = [r for r in results if r]
    if failures:
        text = aggregate(failures)
        print(
            f'error: unable to drain node "{node}" due to error: {text}, continuing command...',
            file=sys.stderr,
        )
        print(f"There are pending nodes to be drained:\n {node}", file=sys.stderr)
        print(f"error: {text}", file=sys.stderr)
        return 1
    print(f"node/{node} drained")
    return 0
