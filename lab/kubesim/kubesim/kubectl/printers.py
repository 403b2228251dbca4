"""kubectl's table columns for the kinds the runbook checks (pkg/printers/internalversion)."""

from __future__ import annotations

from .. import tabwriter
from ..humanize import age_seconds, human_duration


def _age(obj: dict) -> str:
    return human_duration(age_seconds(obj.get("metadata", {}).get("creationTimestamp")))


def node_row(n: dict, wide: bool) -> list[str]:
    conds = {c["type"]: c.get("status") for c in n.get("status", {}).get("conditions") or []}
    status = (
        "Ready"
        if conds.get("Ready") == "True"
        else ("NotReady" if conds.get("Ready") else "Unknown")
    )
    if conds.get("Ready") == "Unknown":
        status = "NotReady"
    if n.get("spec", {}).get("unschedulable"):
        status += ",SchedulingDisabled"
    labels = n["metadata"].get("labels") or {}
    roles = sorted(k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/"))
    info = n.get("status", {}).get("nodeInfo", {})
    row = [
        n["metadata"]["name"],
        status,
        ",".join(roles) or "<none>",
        _age(n),
        info.get("kubeletVersion", ""),
    ]
    if wide:
        addrs = {a["type"]: a["address"] for a in n.get("status", {}).get("addresses") or []}
        row += [
            addrs.get("InternalIP", "<none>"),
            addrs.get("ExternalIP", "<none>"),
            info.get("osImage", ""),
            info.get("kernelVersion", ""),
            info.get("containerRuntimeVersion", ""),
        ]
    return row


def pod_row(p: dict, wide: bool) -> list[str]:
    st = p.get("status", {})
    cs = st.get("containerStatuses") or []
    total = len(p.get("spec", {}).get("containers") or [])
    ready = sum(1 for c in cs if c.get("ready"))
    restarts = sum(int(c.get("restartCount", 0)) for c in cs)
    reason = st.get("phase", "Pending")
    for c in cs:
        waiting = (c.get("state") or {}).get("waiting")
        if waiting and waiting.get("reason"):
            reason = waiting["reason"]
    if p["metadata"].get("deletionTimestamp"):
        reason = "Terminating"
    last = ""
    finished = [((c.get("lastState") or {}).get("terminated") or {}).get("finishedAt") for c in cs]
    finished = [f for f in finished if f]
    if restarts and finished:
        last = f" ({human_duration(age_seconds(max(finished)))} ago)"
    row = [p["metadata"]["name"], f"{ready}/{total}", reason, f"{restarts}{last}", _age(p)]
    if wide:
        row += [
            st.get("podIP") or "<none>",
            p.get("spec", {}).get("nodeName") or "<none>",
            "<none>",
            "<none>",
        ]
    return row


def lease_row(lease: dict, wide: bool) -> list[str]:
    return [
        lease["metadata"]["name"],
        lease.get("spec", {}).get("holderIdentity") or "",
        _age(lease),
    ]


def pdb_row(pdb: dict, wide: bool) -> list[str]:
    spec = pdb.get("spec", {})
    return [
        pdb["metadata"]["name"],
        str(spec.get("minAvailable", "N/A")),
        str(spec.get("maxUnavailable", "N/A")),
        str(pdb.get("status", {}).get("disruptionsAllowed", 0)),
        _age(pdb),
    ]


def generic_row(obj: dict, wide: bool) -> list[str]:
    return [obj["metadata"]["name"], _age(obj)]


COLUMNS = {
    "nodes": (
        ["NAME", "STATUS", "ROLES", "AGE", "VERSION"],
        ["INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME"],
        node_row,
    ),
    "pods": (
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
        ["IP", "NODE", "NOMINATED NODE", "READINESS GATES"],
        pod_row,
    ),
    "leases": (["NAME", "HOLDER", "AGE"], [], lease_row),
    "poddisruptionbudgets": (
        ["NAME", "MIN AVAILABLE", "MAX UNAVAILABLE", "ALLOWED DISRUPTIONS", "AGE"],
        [],
        pdb_row,
    ),
    "configmaps": (
        ["NAME", "DATA", "AGE"],
        [],
        lambda o, w: [o["metadata"]["name"], str(len(o.get("data") or {})), _age(o)],
    ),
    "secrets": (
        ["NAME", "TYPE", "DATA", "AGE"],
        [],
        lambda o, w: [
            o["metadata"]["name"],
            o.get("type", "Opaque"),
            str(len(o.get("data") or {})),
            _age(o),
        ],
    ),
    "namespaces": (
        ["NAME", "STATUS", "AGE"],
        [],
        lambda o, w: [o["metadata"]["name"], o.get("status", {}).get("phase", "Active"), _age(o)],
    ),
    "replicasets": (
        ["NAME", "DESIRED", "CURRENT", "READY", "AGE"],
        [],
        lambda o, w: [
            o["metadata"]["name"],
            str(o.get("spec", {}).get("replicas", 1)),
            str(o.get("status", {}).get("replicas", 0)),
            str(o.get("status", {}).get("readyReplicas", 0)),
            _age(o),
        ],
    ),
}


def render(
    resource: str, items: list[dict], wide: bool, all_namespaces: bool, no_headers: bool = False
) -> str:
    head, extra, row = COLUMNS.get(resource, (["NAME", "AGE"], [], generic_row))
    headers = head + (extra if wide else [])
    rows = [] if no_headers else [(["NAMESPACE"] if all_namespaces else []) + headers]
    for obj in items:
        rows.append(
            ([obj["metadata"].get("namespace", "")] if all_namespaces else []) + row(obj, wide)
        )
    return tabwriter.table(rows, 6, 3)
