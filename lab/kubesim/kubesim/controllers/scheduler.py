"""kube-scheduler stand-in: binds pending pods to feasible nodes while it leads.

Feasibility follows the default plugins that matter here: NodeUnschedulable (cordon),
TaintToleration (NoSchedule/NoExecute), NodeName, NodeSelector; scoring spreads pods to the
node with the fewest (NodeResourcesFit LeastAllocated in spirit). A pod that fits nowhere
gets PodScheduled=False/Unschedulable with upstream's "0/N nodes are available" message.
The scheduler releases its Lease on SIGTERM (ReleaseOnCancel, cmd/kube-scheduler/app/server.go).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading

from .. import klog
from ..kubeclient import ApiError, Client
from ..versions import Version
from .common import run_component


def tolerates(pod: dict, taint: dict) -> bool:
    if taint.get("effect") == "PreferNoSchedule":
        return True
    for tol in pod.get("spec", {}).get("tolerations") or []:
        if tol.get("effect") and tol["effect"] != taint.get("effect"):
            continue
        if tol.get("operator") == "Exists" and (
            not tol.get("key") or tol["key"] == taint.get("key")
        ):
            return True
        if tol.get("key") == taint.get("key") and tol.get("value", "") == taint.get("value", ""):
            return True
    return False


def reasons_for(pod: dict, node: dict) -> str | None:
    spec = node.get("spec", {})
    if spec.get("unschedulable"):
        return "node(s) were unschedulable"
    for taint in spec.get("taints") or []:
        if not tolerates(pod, taint):
            value = taint.get("value", "")
            return f"node(s) had untolerated taint {{{taint.get('key')}: {value}}}"
    selector = pod.get("spec", {}).get("nodeSelector") or {}
    labels = node["metadata"].get("labels") or {}
    if any(labels.get(k) != v for k, v in selector.items()):
        return "node(s) didn't match Pod's node affinity/selector"
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in node.get("status", {}).get("conditions") or []
    )
    if not ready:
        return "node(s) were not ready"
    return None


def schedule_once(c: Client) -> None:
    pods = c.list("pods")["items"]
    pending = [
        p
        for p in pods
        if not p.get("spec", {}).get("nodeName")
        and p.get("spec", {}).get("schedulerName", "default-scheduler") == "default-scheduler"
        and not p["metadata"].get("deletionTimestamp")
    ]
    if not pending:
        return
    nodes = c.list("nodes")["items"]
    load: dict[str, int] = {n["metadata"]["name"]: 0 for n in nodes}
    for p in pods:
        node = p.get("spec", {}).get("nodeName")
        if node in load:
            load[node] += 1
    for pod in pending:
        ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        fits, why = [], {}
        for node in nodes:
            reason = reasons_for(pod, node)
            if reason is None:
                fits.append(node["metadata"]["name"])
            else:
                why[reason] = why.get(reason, 0) + 1
        if not fits:
            detail = ", ".join(f"{n} {r}" for r, n in sorted(why.items()))
            message = (
                f"0/{len(nodes)} nodes are available: {detail}. preemption: 0/{len(nodes)} "
                "nodes are available: " + f"{len(nodes)} Preemption is not helpful for "
                "scheduling."
            )
            conds = pod.get("status", {}).get("conditions") or []
            if not any(
                c.get("type") == "PodScheduled" and c.get("message") == message for c in conds
            ):
                with contextlib.suppress(ApiError):
                    c.patch(
                        "pods",
                        name,
                        {
                            "status": {
                                "conditions": [
                                    {
                                        "type": "PodScheduled",
                                        "status": "False",
                                        "reason": "Unschedulable",
                                        "message": message,
                                        "lastProbeTime": None,
                                        "lastTransitionTime": dt.datetime.now(dt.UTC).strftime(
                                            "%Y-%m-%dT%H:%M:%SZ"
                                        ),
                                    }
                                ]
                            }
                        },
                        ns,
                        subresource="status",
                    )
            continue
        target = min(fits, key=lambda n: (load[n], n))
        try:
            c.request(
                "POST",
                f"/api/v1/namespaces/{ns}/pods/{name}/binding",
                {
                    "apiVersion": "v1",
                    "kind": "Binding",
                    "metadata": {"name": name, "namespace": ns},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": target},
                },
            )
            load[target] += 1
            klog.info(
                f'"Successfully bound pod to node" pod="{ns}/{name}" node="{target}" '
                f"evaluatedNodes={len(nodes)} feasibleNodes={len(fits)}",
                "schedule_one.go:302",
            )
        except ApiError as err:
            klog.warning(f'"Error scheduling pod" pod="{ns}/{name}" err="{err}"')


def work(client: Client, flags: dict, leading: threading.Event) -> None:
    while not leading.is_set():
        try:
            schedule_once(client)
        except Exception as err:  # noqa: BLE001 - retried on the next pass
            klog.warning(f"scheduling pass failed: {err}")
        leading.wait(0.5)


def run(flags: dict[str, str], version: Version) -> int:
    klog.info(f'"Starting Kubernetes Scheduler" version="{version}"', "server.go:154")
    return run_component("kube-scheduler", flags, 10259, True, work)
