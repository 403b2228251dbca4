"""Per-kind rules the registry applies on create/update: defaults, generation, status split.

Pod defaults follow pkg/apis/core/v1/defaults.go; generation bumps on spec changes as the
registry strategies do (e.g. pkg/registry/policy/poddisruptionbudget/strategy.go).
"""

from __future__ import annotations

import copy
import datetime as dt
import secrets

from .resources import Resource
from .store import StatusError


def merge_patch(target: object, patch: object) -> object:
    """RFC 7386 JSON merge patch (strategic merge patch is treated the same way)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def json_patch(doc: dict, ops: list[dict]) -> dict:
    """RFC 6902 add/replace/remove/test on a copy of `doc`."""
    doc = copy.deepcopy(doc)
    for op in ops:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        parent = doc
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent.setdefault(part, {})
        last = parts[-1]
        kind = op["op"]
        if kind in ("add", "replace"):
            if isinstance(parent, list):
                if last == "-":
                    parent.append(op["value"])
                elif kind == "add":
                    parent.insert(int(last), op["value"])
                else:
                    parent[int(last)] = op["value"]
            else:
                parent[last] = op["value"]
        elif kind == "remove":
            if isinstance(parent, list):
                parent.pop(int(last))
            else:
                parent.pop(last, None)
        elif kind == "test":
            have = parent[int(last)] if isinstance(parent, list) else parent.get(last)
            if have != op.get("value"):
                raise StatusError(
                    422,
                    "Invalid",
                    f"the server rejected our request due to an "
                    f"error in our request: test failed at {op['path']}",
                )
    return doc


def default_pod(pod: dict) -> None:
    spec = pod.setdefault("spec", {})
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("priority", 0)
    for c in spec.get("containers") or []:
        c.setdefault(
            "imagePullPolicy",
            "Always"
            if c.get("image", "").endswith(":latest") or ":" not in c.get("image", "")
            else "IfNotPresent",
        )
        c.setdefault("terminationMessagePath", "/dev/termination-log")
        c.setdefault("terminationMessagePolicy", "File")
        c.setdefault("resources", {})
    status = pod.setdefault("status", {})
    status.setdefault("phase", "Pending")
    status.setdefault("qosClass", "BestEffort")


def prepare_create(res: Resource, obj: dict, namespace: str | None) -> dict:
    """Validate and default a new object; returns it ready to store."""
    obj = copy.deepcopy(obj)
    obj["kind"] = res.kind
    obj["apiVersion"] = res.group_version
    meta = obj.setdefault("metadata", {})
    if not meta.get("name"):
        if meta.get("generateName"):
            alphabet = "bcdfghjklmnpqrstvwxz2456789"
            meta["name"] = meta["generateName"] + "".join(
                secrets.choice(alphabet) for _ in range(5)
            )
        else:
            raise StatusError(
                422,
                "Invalid",
                f'{res.kind} "" is invalid: metadata.name: '
                "Required value: name or generateName is required",
            )
    if res.namespaced:
        if meta.get("namespace") and namespace and meta["namespace"] != namespace:
            raise StatusError(
                400,
                "BadRequest",
                "the namespace of the provided object does not "
                "match the namespace sent on the request",
            )
        meta["namespace"] = namespace
    if "spec" in obj or res.plural in (
        "poddisruptionbudgets",
        "replicasets",
        "deployments",
        "daemonsets",
    ):
        meta["generation"] = 1
    if res.plural == "pods":
        default_pod(obj)
    if res.plural == "namespaces":
        obj.setdefault("spec", {"finalizers": ["kubernetes"]})
        obj["status"] = {"phase": "Active"}
        meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
    if res.plural == "poddisruptionbudgets":
        obj["status"] = {
            "disruptionsAllowed": 0,
            "currentHealthy": 0,
            "desiredHealthy": 0,
            "expectedPods": 0,
            "observedGeneration": 0,
        }
    if res.plural == "secrets":
        obj.setdefault("type", "Opaque")
    if res.plural == "nodes":
        obj.setdefault("spec", {})
        meta.pop("generation", None)
    return obj


def prepare_update(res: Resource, old: dict, new: dict, subresource: str) -> dict:
    """Carry over what an update may not change; split spec and status like the strategies."""
    new = copy.deepcopy(new)
    new["kind"] = res.kind
    new["apiVersion"] = res.group_version
    meta, old_meta = new.setdefault("metadata", {}), old["metadata"]
    for keep in (
        "uid",
        "creationTimestamp",
        "namespace",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    ):
        if keep in old_meta:
            meta[keep] = old_meta[keep]
    if res.status and subresource != "status" and "status" in old:
        new["status"] = old["status"]
    if res.status and subresource == "status":
        for field in ("spec",):
            if field in old:
                new[field] = old[field]
        meta["labels"] = old_meta.get("labels", meta.get("labels"))
    if "generation" in old_meta:
        meta["generation"] = old_meta["generation"]
        if subresource != "status" and new.get("spec") != old.get("spec"):
            meta["generation"] = old_meta["generation"] + 1
    if res.plural == "pods" and subresource != "status":
        old_node = old.get("spec", {}).get("nodeName")
        if old_node and new.get("spec", {}).get("nodeName") != old_node:
            raise StatusError(
                422,
                "Invalid",
                f'Pod "{meta.get("name")}" is invalid: spec: '
                "Forbidden: pod updates may not change fields other than "
                "`spec.containers[*].image`,`spec.initContainers[*].image`,"
                "`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions "
                "to existing tolerations),`spec.terminationGracePeriodSeconds` "
                "(allow it to be set to 1 if it was previously negative)",
            )
    return new


def deletion_timestamp(grace: int) -> str:
    when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=grace)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")
