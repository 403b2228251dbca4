"""
What a kubeha cluster looks like right now, gathered through the master from its nodes:
API through the VIP, who holds the VIP, HAProxy's view of every apiserver, etcd members
with leader and size, Nodes with Ready and version, Lease holders. The final gate of
orch.bootstrap and the reports read the same snapshot.

CLI Example:

.. code-block:: bash

    salt-run kubeha_status.snapshot lab
"""

from __future__ import annotations

import time


def _ask(nodes, fun: str, *args, timeout: float = 30, **kwargs) -> dict:
    """{node: return, or {"error": ...} when it did not answer or failed}."""
    answers = __utils__["kubeha_minions.ask"](
        __opts__, nodes, fun, *args, timeout=timeout, **kwargs
    )
    return {node: ret if ok else {"error": str(ret)} for node, (ok, ret) in answers.items()}


def _first_answer(nodes: list[str], fun: str, *args, **kwargs):
    """The first control plane that answers ``fun`` without error (the init node may be down)."""
    errors = {}
    for node in nodes:
        ret = _ask(node, fun, *args, **kwargs)[node]
        if not (isinstance(ret, dict) and "error" in ret):
            return node, ret
        errors[node] = ret["error"]
    return None, {"error": errors}


def snapshot(cluster: str) -> dict:
    """
    The cluster as its nodes report it, one section per layer; a section that could not be
    read holds ``{"error": ...}`` instead of failing the whole snapshot.

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_status.snapshot lab
    """
    model = __salt__["kubeha.model"](cluster)
    vip = model["vip"]
    cps = [n["name"] for n in model["control_plane"]]
    vip_url = f"https://{vip.get('dns_name') or vip['address']}:{vip['lb_port']}"
    asked_from, vip_ready = _first_answer(cps, "apiserver.readyz", server=vip_url)
    out = {
        "cluster": cluster,
        "taken_at": time.time(),
        "version": model["kubernetes"]["version"],
        "vip": {
            "address": vip["address"],
            "url": vip_url,
            "provider": vip["provider"],
            "readyz": vip_ready,
            "asked_from": asked_from,
        },
    }
    if vip["provider"] == "keepalived-haproxy":
        holds = _ask(cps, "keepalived.holds_vip", vip["address"])
        out["vip"]["holders"] = sorted(n for n, held in holds.items() if held is True)
        out["vip"]["unknown"] = {n: h["error"] for n, h in holds.items() if isinstance(h, dict)}
        out["haproxy"] = _ask(cps, "haproxy_runtime.servers")
    _, out["etcd"] = _first_answer(cps, "etcdctl.endpoint_status")
    _, out["nodes"] = _first_answer(cps, "apiserver.nodes")
    _, out["leases"] = _first_answer(cps, "apiserver.leases")
    # The version an upgrade recorded on each node (orch.upgrade sets it as the node's
    # kubelet moves): a node upgraded ahead of pillar is where it should be.
    nodes = cps + [n["name"] for n in model.get("workers") or []]
    recorded = _ask(nodes, "grains.get", "kubeha_kubernetes_version", timeout=15)
    out["upgraded"] = {n: v for n, v in recorded.items() if v and isinstance(v, str)}
    out["day2"] = day2(cluster, model)
    return out


def wanted_versions(model: dict, snap: dict) -> dict:
    """
    The kubelet version each node should run: pillar's ``kubernetes:version``, or the newer
    one the upgrade recorded on the node (its ``kubeha_kubernetes_version`` grain, in the
    snapshot's ``upgraded``), as ``kubeha_model.derive`` picks the node's packages.

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_status.wanted_versions "$(salt-run kubeha.model lab --out=json)" \
            "$(salt-run kubeha_status.snapshot lab --out=json)"
    """
    as_tuple = __utils__["kubeha_values.version_tuple"]
    pillar_version = str(model["kubernetes"]["version"]).lstrip("v")
    out = {}
    for node in model["control_plane"] + (model.get("workers") or []):
        name, version = node["name"], pillar_version
        recorded = (snap.get("upgraded") or {}).get(name)
        try:
            if recorded and as_tuple(recorded) > as_tuple(pillar_version):
                version = str(recorded).lstrip("v")
        except ValueError:
            pass  # not a version: pillar's stands (kubeha_model warns about it)
        out[name] = f"v{version}"
    return out


def day2(cluster: str, model: dict | None = None) -> dict:
    """
    The day-2 jobs of a cluster as the master recorded them (no node is asked): the last
    backup, prune, restore drill, defrag and certificate renewal, each with its last
    success, and ``problems``: a failed last run, no verified backup within
    ``backup:max_age_hours``, no successful drill within ``drill:max_age_hours``.

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_status.day2 lab
    """
    model = model or __salt__["kubeha.model"](cluster)
    day2_utils = "kubeha_day2."
    now = time.time()
    out: dict = {"problems": []}
    for job in ("backup", "prune", "drill", "defrag", "certs"):
        last = __utils__[day2_utils + "last"](__opts__, cluster, job)
        ok = __utils__[day2_utils + "last"](__opts__, cluster, job, ok=True)
        out[job] = {
            "last": {k: last.get(k) for k in ("at", "result", "comment", "error") if k in last}
            if last
            else None,
            "last_success_at": ok.get("at") if ok else None,
        }
        if last and not last.get("result"):
            out["problems"].append(
                f"the last {job} failed: {last.get('error') or last.get('comment')}"
            )
    for job, key in (("backup", "backup"), ("drill", "drill")):
        if not (model.get(key) or {}).get("max_age_hours"):
            continue
        if not model["backup"]["s3"].get("bucket"):
            continue  # no object storage configured: backups and drills are not expected
        limit = float(model[key]["max_age_hours"]) * 3600
        since = out[job]["last_success_at"]
        if since is None or now - float(since) > limit:
            age = "never" if since is None else f"{(now - float(since)) / 3600:.1f} h ago"
            out["problems"].append(
                f"no successful {job} within kubeha:{key}:max_age_hours "
                f"({model[key]['max_age_hours']} h): last {age}"
            )
    return out


def problems(cluster: str, snap: dict, model: dict) -> list[str]:
    """
    What in a snapshot falls short of a healthy cluster of this model (empty = healthy).

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_status.problems lab "$(salt-run kubeha_status.snapshot lab --out=json)"
    """
    out = []
    cps = [n["name"] for n in model["control_plane"]]
    want_nodes = cps + [n["name"] for n in model.get("workers") or []]
    ready = snap["vip"]["readyz"]
    if not (isinstance(ready, dict) and ready.get("ok")):
        out.append(f"the API does not answer /readyz through the VIP {snap['vip']['url']}: {ready}")
    if "holders" in snap["vip"] and len(snap["vip"]["holders"]) != 1:
        out.append(
            f"VIP {model['vip']['address']} held by {snap['vip']['holders']}, expected one node"
        )
    for node, servers in (snap.get("haproxy") or {}).items():
        if isinstance(servers, dict):
            out.append(f"HAProxy on {node} cannot be read: {servers.get('error')}")
            continue
        down = [
            f"{s['name']} {s['status']} ({s['check_status']})" for s in servers if not s["is_up"]
        ]
        if down:
            out.append(f"HAProxy on {node} sees backends not UP: {down}")
    etcd = snap["etcd"]
    if isinstance(etcd, dict):
        out.append(f"etcd status cannot be read: {etcd.get('error')}")
    else:
        failing = [e["endpoint"] for e in etcd if e.get("errors")]
        if len(etcd) != len(cps) or failing:
            out.append(
                f"etcd has {len(etcd)} answering members (want {len(cps)}); errors at {failing}"
            )
        if not any(e.get("is_leader") for e in etcd):
            out.append("etcd reports no leader")
    nodes = snap["nodes"]
    if isinstance(nodes, dict):
        out.append(f"Nodes cannot be listed: {nodes.get('error')}")
    else:
        wanted = wanted_versions(model, snap)
        seen = {n["name"]: n for n in nodes}
        for name in want_nodes:
            node = seen.get(name)
            version = wanted[name]
            if node is None:
                out.append(f"Node {name} is not registered")
            elif not node["ready"] or node["kubelet_version"] != version:
                out.append(
                    f"Node {name}: Ready={node['ready']} ({node['ready_reason']}), "
                    f"kubelet {node['kubelet_version']} (want {version})"
                )
    leases = snap["leases"]
    if isinstance(leases, dict):
        out.append(f"Leases cannot be read: {leases.get('error')}")
    else:
        out += [f"Lease {lease['name']} has no holder" for lease in leases if not lease["holder"]]
    return out
