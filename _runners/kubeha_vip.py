"""
The self-healing VIP, on the master: the ``kubeha_vip`` beacons' reports come in through
``salt/reactor/vip.sls`` (``react``), the decision is made from the latest report of every
control plane (``_utils/kubeha_vip_decide.py``: scores, margin, cooldown, the undo rule)
and carried out through keepalived's tracked files on the nodes (``keepalived_track``):
priorities change without a reload, and a holder hands the VIP over by a short FAULT.

A move: one job to every node but the holder sets its priority (the target 254, nodes
judged bad 1, the rest the model's), holds the other backups in FAULT, has each pass the
holder's connections back to it (``vip_handover``) and the target stop hearing the holder
(``vip_takeover``: it takes the VIP after its master-down timer, without waiting on an
impaired holder); then the holder is released too, the runner waits (bounded) for the VIP
on the target, and lets the old holder run again as a backup; ``nopreempt`` keeps the VIP
where it went.

One decision at a time per cluster (a lock on the master: a report that arrives meanwhile
is kept and looked at right after); every decision is recorded (``history``) and fired as
``kubeha/vip/<cluster>/decision``. Nothing on the nodes waits for the master: without it,
VRRP alone still moves the VIP off a dead holder, and the overrides live in /run.

The runner's own actions cannot loop: the beacons report states, never the overrides, a
move is followed by ``cooldown``, and undoing an override never moves the VIP.

``kubeha:vip_heal:mode``: ``act``; ``observe`` decides and records, changes nothing;
``off`` configures no beacon and ignores reports.

CLI Example:

.. code-block:: bash

    salt-run kubeha_vip.status lab
    salt-run kubeha_vip.history lab
    salt-run kubeha_vip.pin lab cp-2
    salt-run kubeha_vip.unpin lab
"""

from __future__ import annotations

import logging
import time

from salt.exceptions import CommandExecutionError

log = logging.getLogger(__name__)

# The model is compiled from pillar at most once a minute (by tick); a report uses the
# cached one up to an hour old, so no reaction ever waits for a pillar compile.
MODEL_TTL_S = 60
MODEL_STALE_S = 3600
TICK_S = 10
LOCK_WAIT_S = 60


def _s(name: str):
    return __utils__[f"kubeha_vip_store.{name}"]


def _d(name: str):
    return __utils__[f"kubeha_vip_decide.{name}"]


def _a(name: str):
    """An action on the nodes (_utils/kubeha_vip_act.py), given the way to reach them.

    The way is built here, in the runner's loader context: inside a utils function Salt's
    loader globals (``__utils__``, ``__opts__``) are the utils loader's, so the action must
    not call back into this module's globals."""
    fun, ask = __utils__[f"kubeha_vip_act.{name}"], __utils__["kubeha_minions.ask"]
    steps = __utils__["kubeha_minions.ask_steps"]
    opts = {key: __opts__[key] for key in __opts__}  # a plain copy, not the loader's proxy

    def reach(nodes, what, *args, timeout: float = 10, **kwargs):
        if isinstance(what, list):  # [(fun, args, kwargs)]: the steps of one job
            return steps(opts, nodes, what, timeout=timeout)
        return ask(opts, nodes, what, *args, timeout=timeout, **kwargs)

    return lambda *args, **kwargs: fun(reach, *args, **kwargs)


def _ask(nodes, fun: str, *args, timeout: float = 10, **kwargs) -> dict:
    return __utils__["kubeha_minions.ask"](__opts__, nodes, fun, *args, timeout=timeout, **kwargs)


def _settings(cluster: str, max_age: float = MODEL_TTL_S) -> dict:
    """What the runner needs of the cluster's model, from its cache when younger than
    ``max_age`` seconds (0: compile it now)."""
    cached = _s("read")(__opts__, cluster, "model")
    if cached and time.time() - cached.get("at", 0) < max_age:
        return cached
    out = _d("settings")(__salt__["kubeha.model"](cluster), time.time())
    _s("write")(__opts__, cluster, "model", out)
    return out


def react(cluster, minion=None, event=None):
    """
    Take one beacon report (the reactor passes the event) and decide.

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_vip.react lab minion=cp-1 event='{"node": "cp-1", "view": {...}}'
    """
    event = dict(event or {})
    node = event.get("node")
    s = _settings(cluster, MODEL_STALE_S)
    if s["mode"] == "off" or s["provider"] != "keepalived-haproxy":
        return {"result": True, "comment": f"{cluster}: the self-healing VIP is off"}
    if node not in s["nodes"] or (minion and minion != node):
        msg = f"report from minion {minion!r} about {node!r}: not a control plane of {cluster}"
        log.warning("kubeha_vip: %s", msg)
        return {"result": False, "comment": msg}
    now = time.time()
    report = {k: event.get(k) for k in ("seq", "boot", "at", "changed", "view")}
    report["reason"] = event.get("reason") or event.get("tag") or "report"
    _s("append")(__opts__, cluster, "events", {
        "at": event.get("at") or now, "received": round(now, 3), "node": node,
        "reason": report["reason"], "changed": report["changed"], "seq": report["seq"],
        "summary": _s("summary")(report["view"])})  # fmt: skip
    _s("store_view")(__opts__, cluster, node, report, now)
    return _evaluate(
        cluster, s, f"{node} {report['reason']}: {', '.join(event.get('changed') or [])}"
    )


def _evaluate(cluster: str, s: dict, trigger: str, record_none: bool = True) -> dict:
    decisions = []
    for _ in range(3):
        with _s("locked")(__opts__, cluster, "decide") as got:
            if not got:
                busy = "a decision is in progress; it looks at this report next"
                return {"result": True, "decisions": decisions, "comment": busy}
            version = (_s("read")(__opts__, cluster, "views") or {}).get("version")
            decisions.append(_once(cluster, s, trigger, record_none))
        if (_s("read")(__opts__, cluster, "views") or {}).get("version") == version:
            break
        trigger = "a report that arrived during the decision"
    last = decisions[-1]
    return {"result": last.get("result", True), "comment": f"{last['action']}: {last['reason']}",
            "decisions": decisions}  # fmt: skip


def _once(cluster: str, s: dict, trigger: str, record_none: bool) -> dict:
    """One decision under the lock, carried out, recorded."""
    now = time.time()
    nodes, state = s["nodes"], _s("read")(__opts__, cluster, "state", {}) or {}
    views = _s("views")(__opts__, cluster, nodes, state.get("unreachable"))
    served = set(state.get("served") or [])
    served |= {
        n for n, v in views.items() if ((v or {}).get("apiserver") or {}).get("state") == "good"
    }
    state["served"] = sorted(served)
    override = state.get("override")
    due, since = _d("undo_due")(override, views, nodes, s, now, served=state["served"])
    if override:
        override["clear_since"] = since
    decision = _d("decide")(nodes, views, state, s, now)
    if len(decision["holders"]) == 1:
        state["holders_before"] = decision["holders"]
    if decision["action"] in ("no-holder", "split") and s["mode"] == "act":
        # Reports of a move arrive one by one (the old holder's may come before or after
        # the new one's), and a node that died cannot say it lost the VIP: act only on
        # what the nodes say now.
        live = _a("live_holders")(s, state)
        if len(live) == 1:
            decision.update(action="none", reason=f"the reports say {decision['holders']}, "
                            f"but {live} holds the VIP now (reports are on the way)")  # fmt: skip
    if decision["action"] == "none" and due:
        decision.update(action="undo", reason=f"the cause of the {override['kind']} override "
                        f"has been clear for {now - since:.0f} s (recover_after "
                        f"{s['recover_after']} s): priorities back to the model's")  # fmt: skip
    entry = {"at": round(now, 3), "trigger": trigger, "action": decision["action"],
             "reason": decision["reason"], "target": decision.get("target"),
             "holders": decision["holders"],
             "scores": {n: [x["score"], x["available"]]
                        for n, x in decision["scores"].items()}}  # fmt: skip
    if decision["action"] != "none":
        if s["mode"] == "observe":
            entry["observed_only"] = True
        else:
            entry.update(_act(cluster, s, state, decision, now))
        try:
            __salt__["event.send"](f"kubeha/vip/{cluster}/decision", entry)
        except Exception as err:  # noqa: BLE001 - the event is a courtesy; the record stays
            log.warning("kubeha_vip: could not fire the decision event: %s", err)
    if decision["action"] != "none" or record_none:
        _s("append")(__opts__, cluster, "history", entry)
    if decision["action"] == "none" and not due:
        entry["etcd"] = _etcd_leader(cluster, s, state, views, trigger=trigger, now=now)
    _s("write")(__opts__, cluster, "state", state)
    return entry


def _etcd_leader(cluster: str, s: dict, state: dict, views: dict, *, trigger: str, now: float):
    """etcd's leadership off the VIP holder and off an impaired node, when nothing else is
    to be done (``vip_heal:move_etcd_leader``, ``kubeha_vip_decide.etcd_leader_move``);
    recorded and fired like a VIP decision. A handover starts the cooldown whether or not
    it worked, so a failing one is not retried on every report."""
    move = _d("etcd_leader_move")(s["nodes"], views, state, s, now)
    if move is None:
        return None
    entry = {"at": round(now, 3), "trigger": trigger, "action": "etcd-leader", **move}
    if s["mode"] == "observe":
        entry["observed_only"] = True
    else:
        asked = move["leader"] if move.get("ask_leader") else None
        entry.update(_a("move_etcd_leader")(s, move["target"], leader=asked))
    state["last_etcd_move_at"] = now
    try:
        __salt__["event.send"](f"kubeha/vip/{cluster}/etcd-leader", entry)
    except Exception as err:  # noqa: BLE001 - the event is a courtesy; the record stays
        log.warning("kubeha_vip: could not fire the etcd-leader event: %s", err)
    _s("append")(__opts__, cluster, "history", entry)
    return entry


def _act(cluster: str, s: dict, state: dict, decision: dict, now: float) -> dict:
    action, nodes, target = decision["action"], s["nodes"], decision.get("target")
    try:
        if action in ("move", "pin"):
            plan = _d("plan")(nodes, target, decision.get("penalize") or [])
            holders = decision["holders"]
            holder = holders[0] if len(holders) == 1 else None
            out = _a("move")(s, plan, target, state, holder=holder)
            if out.get("moved"):
                state["last_move_at"] = time.time()
            if out["result"]:
                state["override"] = {"kind": decision.get("kind") or action, "target": target,
                                     "penalize": decision.get("penalize") or [],
                                     "since": now, "why": decision["reason"]}  # fmt: skip
            return out
        if action == "split":
            out = _a("split")(s, target, decision["release"], state)
            state["override"] = {"kind": "split", "target": target, "since": now,
                                 "release": decision["release"],
                                 "why": decision["reason"]}  # fmt: skip
            return out
        if action == "no-holder":
            return _a("no_holder")(s, state)
        if action == "undo":
            out = _a("apply")(s, _d("plan")(nodes, None), state)
            state["override"] = None
            return {"result": True, "applied": out}
    except CommandExecutionError as err:
        log.error("kubeha_vip %s: %s failed: %s", cluster, action, err)
        return {"result": False, "error": str(err)}
    return {"result": True}


def _take(cluster: str):
    return _s("locked")(__opts__, cluster, "decide", wait=LOCK_WAIT_S)


def pin(cluster, node):
    """
    Keep the VIP on ``node`` (the runbook's rollback: "keep the VIP on the surviving node
    by giving it a higher keepalived priority"): its priority goes to the top through its
    tracked file and, if another node holds the VIP, that one hands it over. The pin stays
    until ``kubeha_vip.unpin``; the runner moves the VIP back to ``node`` when it returns.

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_vip.pin lab cp-3
    """
    s = _settings(cluster, 0)
    if node not in s["nodes"]:
        raise CommandExecutionError(f"{node} is not a control plane of {cluster}: {s['nodes']}")
    with _take(cluster) as got:
        if not got:
            raise CommandExecutionError(f"a decision for {cluster} is running; try again")
        now = time.time()
        state = _s("read")(__opts__, cluster, "state", {}) or {}
        out = _a("move")(s, _d("plan")(s["nodes"], node), node, state)
        if out.get("moved"):
            state["last_move_at"] = time.time()
        state["override"] = {"kind": "operator", "target": node, "penalize": [], "since": now,
                             "why": "pinned by an operator (kubeha_vip.pin)"}  # fmt: skip
        entry = {"at": round(now, 3), "trigger": "kubeha_vip.pin", "action": "pin",
                 "target": node, "reason": f"an operator pinned the VIP on {node}",
                 **out}  # fmt: skip
        _s("append")(__opts__, cluster, "history", entry)
        _s("write")(__opts__, cluster, "state", state)
    return entry


def unpin(cluster):
    """
    Every override off: each node back to the model's priority, no release; the VIP stays
    where it is (nopreempt), and the runner decides again from the next report.

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_vip.unpin lab
    """
    s = _settings(cluster, 0)
    with _take(cluster) as got:
        if not got:
            raise CommandExecutionError(f"a decision for {cluster} is running; try again")
        state = _s("read")(__opts__, cluster, "state", {}) or {}
        was = state.get("override")
        facts = _a("apply")(s, _d("plan")(s["nodes"], None), state)
        state["override"] = None
        entry = {"at": round(time.time(), 3), "trigger": "kubeha_vip.unpin", "action": "unpin",
                 "reason": f"every override off (was {was and was.get('kind')})",
                 "holders": sorted(n for n, f in facts.items() if f["holds_vip"])}  # fmt: skip
        _s("append")(__opts__, cluster, "history", entry)
        _s("write")(__opts__, cluster, "state", state)
    return entry


def refresh(cluster):
    """
    Ask every control plane for its beacon's last report (after the master was down, its
    reports may have been missed); the views kept afterwards.

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_vip.refresh lab
    """
    s = _settings(cluster, MODEL_STALE_S)
    now = time.time()
    got = {}
    for node, (ok, report) in _ask(s["nodes"], "vip_probe.last_view", timeout=10).items():
        if ok and isinstance(report, dict) and report.get("node") == node:
            _s("store_view")(__opts__, cluster, node, report, now)
            got[node] = report.get("seq")
    return {"result": True, "refreshed": got}


def tick(cluster=None):
    """
    What no report triggers: undo an override whose cause has been clear for
    ``recover_after`` seconds, and after a pause of the master (no tick for three
    periods), fetch every beacon's last report first. The documented master config runs it
    every 10 s from the master's scheduler.

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_vip.tick
    """
    out = {}
    for name in [cluster] if cluster else _s("clusters")(__opts__):
        try:
            s = _settings(name)
            if s["mode"] == "off":
                continue
            state = _s("read")(__opts__, name, "state", {}) or {}
            if time.time() - (state.get("last_tick") or 0) > 3 * TICK_S:
                refresh(name)
            out[name] = _evaluate(name, s, "tick", record_none=False)["comment"]
            state = _s("read")(__opts__, name, "state", {}) or {}
            state["last_tick"] = time.time()
            _s("write")(__opts__, name, "state", state)
        except CommandExecutionError as err:
            out[name] = f"error: {err}"
    return out


def status(cluster):
    """
    The latest report of every control plane, their scores, the override in force and
    the cooldown left.

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_vip.status lab
    """
    s = _settings(cluster)
    state = _s("read")(__opts__, cluster, "state", {}) or {}
    views = _s("views")(__opts__, cluster, s["nodes"], state.get("unreachable"))
    left = max(0.0, (state.get("last_move_at") or 0) + s["cooldown"] - time.time())
    return {"mode": s["mode"], "override": state.get("override"),
            "cooldown_left_s": round(left, 1),
            "scores": _d("scores")(views, s["nodes"]),
            "views": {n: _s("summary")(v) for n, v in views.items()}}  # fmt: skip


def history(cluster, count=20):
    """
    The last ``count`` decisions, newest last.

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_vip.history lab count=50
    """
    return _s("lines")(__opts__, cluster, "history", count=count)


def timeline(cluster, start, end):
    """
    Beacon reports received and decisions made between ``start`` and ``end`` (epoch
    seconds): what a chaos report draws on its timeline.

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_vip.timeline lab 1764300000 1764300090
    """
    window = {"start": start, "end": end}
    return {"events": _s("lines")(__opts__, cluster, "events", **window),
            "decisions": _s("lines")(__opts__, cluster, "history", **window)}  # fmt: skip
