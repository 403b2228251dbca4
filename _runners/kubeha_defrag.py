"""
Rolling defragmentation of a kubeha cluster's etcd (``orch/etcd_defrag.sls``; weekly from
the master's scheduler, or by the ``kubeha_etcd_frag`` beacon through
``salt/reactor/etcd_defrag.sls``).

Defragmentation blocks the member it runs on (docs/facts.md #13), and with kubeadm's
``--etcd-servers=https://127.0.0.1:2379`` that member's node serves no API request
meanwhile. So, one member at a time, followers first and the leader last (after handing
its leadership to a defragmented follower: one planned leader change, no election):

    out of every HAProxy pool (drain ``defrag:drain`` s) -> ``etcdctl defrag`` on the
    member -> gate: every member healthy, the node's /readyz -> back into the pools ->
    pause ``defrag:pause`` s

Refused, changing nothing, when any member is unhealthy or a defrag would leave less than
a quorum (``etcdctl.defrag_plan``). With a NOSPACE alarm raised, the keyspace is compacted
to the current revision first (etcd's maintenance guide, "Space quota": compact, defrag,
disarm) and the alarm disarmed once every member is below the quota again.

An automatic run (``reason: beacon``) does not start within ``defrag:cooldown`` seconds of
the last success, and never beside another run: the reactor may fire once per control plane.

CLI Example:

.. code-block:: bash

    salt-run kubeha_defrag.plan lab
    salt-run kubeha_defrag.run lab
"""

from __future__ import annotations

import json
import logging
import time

from salt.exceptions import CommandExecutionError

log = logging.getLogger(__name__)

LOCK_STALE_S = 3600
# etcd's default backend quota (--quota-backend-bytes unset: 2 GiB, docs/facts.md #13).
DEFAULT_QUOTA = 2 * 1024**3


def _u(name: str):
    return __utils__[name]


def _ask(node: str, fun: str, *args, timeout: float = 60, **kwargs):
    ok, ret = _u("kubeha_minions.ask")(__opts__, node, fun, *args, timeout=timeout, **kwargs)[node]
    if not ok:
        raise CommandExecutionError(f"{fun} on {node}: {ret}")
    return ret


def _fire(data: dict, tag: str) -> None:
    __salt__["event.send"](tag, data)


def _quota(model: dict) -> int:
    value = (model["etcd"].get("extra_args") or {}).get("quota-backend-bytes")
    try:
        return int(value) if value not in (None, "") else DEFAULT_QUOTA
    except (TypeError, ValueError):
        return DEFAULT_QUOTA


def plan(cluster: str) -> dict:
    """
    The order the rolling defrag would take (followers first, the leader last) with each
    member's node and fragmentation, or why it refuses.

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_defrag.plan lab
    """
    model = __salt__["kubeha.model"](cluster)
    cps = [n["name"] for n in model["control_plane"]]
    errors = {}
    for via in cps:
        try:
            verdict = _ask(via, "etcdctl.defrag_plan", timeout=60)
            members = _ask(via, "etcdctl.member_list", timeout=30)
            status = _ask(via, "etcdctl.endpoint_status", timeout=30)
            alarms = _ask(via, "etcdctl.alarm_list", timeout=30)
        except CommandExecutionError as err:
            errors[via] = str(err)
            continue
        names = {(m.get("client_urls") or [""])[0]: m.get("name") for m in members}
        by_url = {s["endpoint"]: s for s in status}
        order = [
            {
                "node": names.get(ep),
                "endpoint": ep,
                "leader": bool(by_url.get(ep, {}).get("is_leader")),
                "db_size": by_url.get(ep, {}).get("db_size"),
                "fragmented": (by_url.get(ep, {}).get("db_size") or 0)
                - (by_url.get(ep, {}).get("db_size_in_use") or 0),
            }
            for ep in verdict.get("order") or []
        ]
        strangers = [o["endpoint"] for o in order if o["node"] not in cps]
        ok, reason = verdict["ok"], verdict.get("reason", "")
        if ok and strangers:
            ok, reason = False, f"members {strangers} are not control planes of {cluster}"
        return {
            "ok": ok,
            "reason": reason,
            "order": order,
            "alarms": alarms,
            "asked": via,
            "quota": _quota(model),
        }
    return {"ok": False, "reason": f"no control plane answers about etcd: {errors}", "order": []}


def _one(cluster: str, model: dict, member: dict) -> dict:
    node = member["node"]
    cfg = model["defrag"]
    t = time.monotonic()
    # Asked for every member, not only the planned leader: leadership may have moved while
    # the others were defragmented. A no-op for a follower.
    moved = __salt__["kubeha_node.etcd_leader_away"](cluster, node)["comment"]
    steps = {"leader_away": moved}
    __salt__["kubeha_node.lb_out"](cluster, node, wait=cfg["drain"])
    out_at = time.monotonic()
    try:
        before = _ask(node, "etcdctl.endpoint_status", "https://127.0.0.1:2379", False)[0]
        t0 = time.monotonic()
        # One member only, through its own node (kubeadm's local endpoint); etcdctl's
        # command timeout bounds a big database's defrag.
        _ask(node, "etcdctl.run", ["defrag"], "https://127.0.0.1:2379", 330, "300s", timeout=360)
        took = time.monotonic() - t0
        gate = __salt__["kubeha_gate.etcd_healthy"](
            cluster, [n["name"] for n in model["control_plane"]], wait=120
        )
        if not gate.get("result"):
            raise CommandExecutionError(gate.get("comment"))
        ready = __salt__["kubeha_gate.apiservers_ready"](cluster, [node], wait=120)
        if not ready.get("result"):
            raise CommandExecutionError(ready.get("comment"))
        after = _ask(node, "etcdctl.endpoint_status", "https://127.0.0.1:2379", False)[0]
    finally:
        # Back into the pools whatever happened: a node left out is worse than one that is
        # in and failing its own health checks (HAProxy takes it out again).
        try:
            __salt__["kubeha_node.lb_in"](cluster, node)
        except CommandExecutionError as err:
            log.error("kubeha defrag: %s could not go back into the pools: %s", node, err)
            raise
    steps.update(
        {
            "node": node,
            "leader": member["leader"],
            "defrag_s": round(took, 3),
            "out_of_pools_s": round(time.monotonic() - out_at, 2),
            "total_s": round(time.monotonic() - t, 2),
            "db_size_before": before.get("db_size"),
            "db_size_after": after.get("db_size"),
            "in_use_after": after.get("db_size_in_use"),
        }
    )
    return steps


def _compact_for_nospace(node: str) -> dict:
    """etcd's maintenance guide: compact to the current revision before defragmenting."""
    status = _ask(node, "etcdctl.endpoint_status", "https://127.0.0.1:2379", False)[0]
    head = _ask(
        node, "etcdctl.run", ["get", "/", "--prefix", "--keys-only", "--limit=1", "-w", "json"]
    )
    revision = int(json.loads(head)["header"]["revision"])
    _ask(node, "etcdctl.run", ["compact", str(revision), "--physical"], None, 330, "300s",
         timeout=360)  # fmt: skip
    return {"compacted_to": revision, "db_size": status.get("db_size")}


def run(cluster: str, reason: str = "manual", pause=None) -> dict:
    """
    Defragment every member, one at a time (see the module's doc). ``reason`` is
    ``manual``, ``schedule`` or ``beacon`` (the last two honour ``defrag:cooldown``).

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_defrag.run lab
    """
    started = time.time()
    done: list[dict] = []
    try:
        with _u("kubeha_day2.locked")(__opts__, cluster, "defrag", LOCK_STALE_S):
            model = __salt__["kubeha.model"](cluster)
            cfg = model["defrag"]
            if reason != "manual":
                left = _u("kubeha_day2.cooling_down")(__opts__, cluster, "defrag", cfg["cooldown"])
                if left > 0:
                    return {
                        "result": True,
                        "skipped": True,
                        "comment": f"{cluster}: defragmented {cfg['cooldown'] - left:.0f} s "
                        f"ago; the next automatic defrag may start in {left:.0f} s",
                    }
            layout = plan(cluster)
            if not layout["ok"]:
                raise CommandExecutionError(f"refused, nothing was changed: {layout['reason']}")
            nospace = [a for a in layout["alarms"] if a.get("alarm") == "NOSPACE"]
            compacted = _compact_for_nospace(layout["order"][0]["node"]) if nospace else None
            wait = float(cfg["pause"] if pause is None else pause)
            for index, member in enumerate(layout["order"]):
                done.append(_one(cluster, model, member))
                if index < len(layout["order"]) - 1:
                    time.sleep(wait)
            disarmed = None
            via = layout["order"][0]["node"]
            alarms = _ask(via, "etcdctl.alarm_list", timeout=30)
            if any(a.get("alarm") == "NOSPACE" for a in alarms):
                sizes = _ask(via, "etcdctl.endpoint_status", timeout=30)
                full = [s["endpoint"] for s in sizes if (s.get("db_size") or 0) >= layout["quota"]]
                if full:
                    raise CommandExecutionError(
                        f"NOSPACE stays raised: {full} still at or above the quota "
                        f"{layout['quota']} bytes after the defrag; raise the quota or free "
                        "space (delete objects), then run it again"
                    )
                disarmed = _ask(via, "etcdctl.alarm_disarm", timeout=60)
    except CommandExecutionError as err:
        if _u("kubeha_day2.is_busy")(err):
            return _u("kubeha_day2.skipped")(err, reason)
        message = f"rolling defrag of {cluster} failed after {[d['node'] for d in done]}: {err}"
        _u("kubeha_day2.record")(
            __opts__, cluster, "defrag", {"result": False, "error": message, "members": done}
        )
        return _u("kubeha_day2.failed")(_fire, cluster, "defrag", message, members=done)
    freed = sum((d["db_size_before"] or 0) - (d["db_size_after"] or 0) for d in done)
    outcome = {
        "result": True,
        "reason": reason,
        "members": done,
        "freed_bytes": freed,
        "nospace": bool(nospace),
        "compacted": compacted,
        "disarmed": disarmed,
        "total_s": round(time.time() - started, 2),
        "comment": (
            f"{cluster}: defragmented {', '.join(d['node'] for d in done)} (leader last), "
            f"{freed} bytes freed, in {time.time() - started:.1f} s"
            + ("; NOSPACE disarmed" if disarmed else "")
        ),
    }
    _u("kubeha_day2.record")(__opts__, cluster, "defrag", outcome)
    return outcome
