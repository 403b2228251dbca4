"""
The self-healing VIP's decisions, from the latest report of every control plane's
``kubeha_vip`` beacon: pure functions of the views, the runner's state and the time, so
every rule is tested with a fake clock. The ``kubeha_vip`` runner stores the views, calls
``decide`` and ``undo_due`` under its lock, and carries the decisions out.

**Scores** (lower is better; a node without a report, or whose keepalived is not MASTER or
BACKUP, is no candidate):

- ``path`` 100: a majority of the other control planes' evidence says the paths to this
  node are bad. Each other node whose report sees this node bad is one voice; a node that
  sees most of its own peers bad is likely the impaired one itself, so its accusations do
  not count and its report counts as one voice against itself;
- ``lb`` 100: its HAProxy sees no apiserver UP (keepalived's own check FAULTs it soon);
- ``apiserver`` 40: its own apiserver's ``/readyz`` fails (its HAProxy still reaches the
  others: alone, not worth a move).

**Rules**, in this order:

1. a pin in force whose node is available but does not hold the VIP: move it there;
2. two or more holders (VRRP between them broken): keep the best (ties: the earlier
   holder, then the model's priority order) and release the others until each hears the
   kept holder's adverts again;
3. no holder: the runner confirms it live and lifts every release it made;
4. fewer than half of the apiservers ready, at least one ready, and every other one failed
   after it had served (a node still being built has not failed): pin the VIP on a ready
   one that scores below ``margin`` (the holder if it is one), as the runbook's rollback
   asks. A ready node with a bad path or no apiserver behind its HAProxy is no place for
   the VIP: an impaired etcd leader keeps its own ``/readyz`` fast while the others' time
   out (measured on the lab: C on a non-holder that led etcd pinned the VIP on it);
5. the holder scores ``margin`` or more above the best candidate: move the VIP there,
   unless a move happened less than ``cooldown`` seconds ago.

**Undo**: an override the runner made (a move's priorities, an automatic pin, a split's
releases) is undone once its cause has been clear in every report for ``recover_after``
seconds: the penalised nodes score below ``margin`` again; the apiservers ready are half or
more again; each released node hears a holder's adverts. An operator's pin stays until
``kubeha_vip.unpin``. Undoing never moves the VIP (nopreempt keeps it where it is).
"""

WEIGHTS = {"path": 100, "lb": 100, "apiserver": 40}
LIVE_STATES = ("MASTER", "BACKUP")


def settings(model: dict, now: float) -> dict:
    """What the runner and these rules need of the cluster's model (``kubeha.model``),
    stamped ``now``: the runner caches it (``model.json``) so no report waits on a pillar
    compile."""
    heal = model["vip_heal"]
    return {
        "at": now,
        "nodes": [n["name"] for n in model["control_plane"]],
        "vip": model["vip"]["address"],
        "provider": model["vip"]["provider"],
        "instance": model["vrrp"]["instance"],
        "vrid": int(model["vrrp"]["router_id"]),
        "advert_int": float(model["vrrp"]["advert_int"]),
        "down_timer_adverts": int(model["vrrp"]["down_timer_adverts"]),
        "mode": heal["mode"],
        "margin": heal["margin"],
        "cooldown": heal["cooldown"],
        "recover_after": heal["recover_after"],
        "move_etcd_leader": bool(heal.get("move_etcd_leader")),
        "etcd_cooldown": heal["cooldown"],
        "etcd_election_s": int((model.get("etcd") or {}).get("election_timeout_ms", 1000)) / 1000,
        "lb_port": int(model["vip"]["lb_port"]),
        "ips": {n["name"]: n["ip"] for n in model["control_plane"]},
        "handover_s": float(heal["handover_s"]),
    }


def _peers_bad(view: dict) -> list[str]:
    return sorted(n for n, p in (view.get("peers") or {}).items() if p.get("state") == "bad")


def isolated(view: dict) -> bool:
    """The node sees most of its own peers bad: the trouble is likely its own."""
    peers = view.get("peers") or {}
    return bool(peers) and 2 * len(_peers_bad(view)) > len(peers)


def path_votes(views: dict, nodes: list[str]) -> dict:
    """{node: [voices]}: credible observers that see it bad, and ``self`` when the node
    sees most of its own peers bad."""
    votes = {n: [] for n in nodes}
    for observer in nodes:
        view = views.get(observer)
        if not view:
            continue
        if isolated(view):
            votes[observer].append("self")
            continue
        for peer in _peers_bad(view):
            if peer in votes:
                votes[peer].append(observer)
    return votes


def scores(views: dict, nodes: list[str]) -> dict:
    """{node: {score, why, available, holds}} (``score`` None without a report)."""
    votes = path_votes(views, nodes)
    out = {}
    for node in nodes:
        view = views.get(node)
        if not view:
            out[node] = {"score": None, "why": ["no report"], "available": False, "holds": None}
            continue
        why, score = [], 0
        if 2 * len(votes[node]) > len(nodes) - 1:
            score += WEIGHTS["path"]
            why.append(f"path bad ({', '.join(votes[node])})")
        if (view.get("haproxy") or {}).get("ok") is False:
            score += WEIGHTS["lb"]
            why.append("its HAProxy sees no apiserver UP")
        if (view.get("apiserver") or {}).get("state") == "bad":
            score += WEIGHTS["apiserver"]
            why.append("its apiserver is not ready")
        out[node] = {
            "score": score,
            "why": why,
            "available": view.get("keepalived") in LIVE_STATES,
            "holds": view.get("holds_vip"),
        }
    return out


def _rank(node: str, table: dict, nodes: list[str], before: list) -> tuple:
    return (table[node]["score"], node not in before, nodes.index(node))


def best(candidates: list[str], table: dict, nodes: list[str], before=()) -> str | None:
    ok = [n for n in candidates if table[n]["available"] and table[n]["score"] is not None]
    return min(ok, key=lambda n: _rank(n, table, nodes, list(before))) if ok else None


def _api(views: dict, node: str):
    return ((views.get(node) or {}).get("apiserver") or {}).get("state")


def ready_minority(views: dict, nodes: list[str], served=None) -> tuple[list[str], bool]:
    """(ready nodes, whether they are fewer than half while every other apiserver has
    failed): the runbook's rollback case. ``served``: the nodes whose apiserver has been
    seen ready before; one that never was (a node still being built) has not failed."""
    ready = [n for n in nodes if _api(views, n) == "good"]
    failed = [n for n in nodes if _api(views, n) == "bad" and (served is None or n in served)]
    return ready, bool(ready) and 2 * len(ready) < len(nodes) and len(ready) + len(failed) == len(
        nodes
    )


def _pin(state: dict) -> dict:
    override = state.get("override") or {}
    return override if override.get("kind") in ("pin", "operator") else {}


def decide(nodes: list[str], views: dict, state: dict, cfg: dict, now: float) -> dict:
    """The one decision for these views: ``action`` is none, move, pin, split or
    no-holder, with ``target``/``release``/``penalize`` and the ``reason``."""
    table = scores(views, nodes)
    holders = [n for n in nodes if table[n]["holds"]]
    out = {"scores": table, "holders": holders}
    pin = _pin(state)
    pinned = pin.get("target") if pin.get("target") in nodes else None
    cooling = _cooling(state, cfg, now)
    if pinned and pinned not in holders and table[pinned]["available"] and len(holders) < 2:
        if cooling and pin.get("kind") != "operator":
            return {**out, "action": "none", "reason": f"pinned on {pinned}; {cooling}"}
        return {**out, "action": "move", "target": pinned, "penalize": pin.get("penalize") or [],
                "kind": pin["kind"], "reason": f"pinned on {pinned}: {pin.get('why')}"}  # fmt: skip
    if len(holders) > 1:
        keep = (
            pinned
            if pinned in holders
            else best(holders, table, nodes, state.get("holders_before") or [])
        )
        keep = keep or holders[0]
        return {**out, "action": "split", "target": keep,
                "release": [h for h in holders if h != keep],
                "reason": f"the VIP is on {', '.join(holders)}: VRRP between them is broken; "
                          f"{keep} keeps it"}  # fmt: skip
    if not holders:
        if all(table[n]["holds"] is False for n in nodes):
            return {**out, "action": "no-holder", "reason": "no control plane holds the VIP"}
        return {**out, "action": "none", "reason": "who holds the VIP is not known yet"}
    holder = holders[0]
    ready, minority = ready_minority(views, nodes, state.get("served"))
    if minority and pinned not in ready:
        fit = [n for n in ready if table[n]["score"] is not None
               and table[n]["score"] < cfg["margin"]]  # fmt: skip
        target = holder if holder in fit else best(fit, table, nodes)
        why = f"only {', '.join(ready)} of {len(nodes)} apiservers ready"
        if target and target != holder and cooling:
            return {**out, "action": "none", "reason": f"{why}; {cooling}"}
        if target:
            return {**out, "action": "pin", "target": target, "penalize": [],
                    "reason": f"{why}: the VIP is pinned on {target}"}  # fmt: skip
    if pinned == holder:
        return {**out, "action": "none", "reason": f"pinned on {holder}, which holds the VIP"}
    candidate = best([n for n in nodes if n != holder], table, nodes)
    if candidate is None or table[holder]["score"] is None:
        return {**out, "action": "none", "reason": "no candidate to move the VIP to"}
    gap = table[holder]["score"] - table[candidate]["score"]
    if gap < cfg["margin"]:
        reason = f"{holder} holds the VIP; no candidate better by the margin ({gap} < "
        return {**out, "action": "none", "reason": reason + f"{cfg['margin']})"}
    if cooling:
        return {**out, "action": "none", "reason": f"{holder} is worse by {gap}, but {cooling}"}
    penalize = [n for n in nodes if table[n]["score"] is not None
                and table[n]["score"] >= cfg["margin"] and n != candidate]  # fmt: skip
    why = (
        f"{holder} scores {table[holder]['score']} ({'; '.join(table[holder]['why'])}), "
        f"{candidate} {table[candidate]['score']}: worse by {gap} >= {cfg['margin']}"
    )
    return {
        **out,
        "action": "move",
        "target": candidate,
        "penalize": penalize,
        "kind": "move",
        "reason": why,
    }


def _cooling(state: dict, cfg: dict, now: float) -> str:
    last = state.get("last_move_at")
    if last is None or now - last >= cfg["cooldown"]:
        return ""
    return f"cooling down: the last move was {now - last:.0f} s ago (cooldown {cfg['cooldown']} s)"


def plan(nodes: list[str], target: str | None, penalize=(), release=()) -> dict:
    """The tracked-file values for every node: the target at the top (+253, clamped to
    254), penalised nodes at the bottom (-253, clamped to 1: still a last resort), the
    rest at the model's priority; ``release`` nodes held in FAULT."""
    out = {}
    for node in nodes:
        offset = 253 if node == target else (-253 if node in penalize else 0)
        out[node] = {"priority": offset, "release": 1 if node in release else 0}
    return out


def cause_active(override: dict, views: dict, nodes: list[str], cfg: dict, served=None) -> bool:
    """Whether what made ``override`` still holds in the latest reports."""
    kind = override.get("kind")
    if kind == "move":
        table = scores(views, nodes)
        return any((table.get(n) or {}).get("score") is None
                   or table[n]["score"] >= cfg["margin"]
                   for n in override.get("penalize") or [])  # fmt: skip
    if kind == "pin":
        return ready_minority(views, nodes, served)[1]
    if kind == "split":
        holders = {n for n in nodes if (views.get(n) or {}).get("holds_vip")}
        return any(not holders & set((views.get(n) or {}).get("vrrp_from") or [])
                   for n in override.get("release") or [])  # fmt: skip
    return True  # an operator's pin, or an unknown kind: only a person undoes it


def undo_due(
    override: dict | None, views: dict, nodes: list[str], cfg: dict, now: float, *, served=None
):
    """(due, clear_since): whether to undo ``override`` now, and since when its cause has
    been clear (None while it is not)."""
    if not override or override.get("kind") == "operator":
        return False, None
    if cause_active(override, views, nodes, cfg, served):
        return False, None
    since = override.get("clear_since") or now
    return now - since >= cfg["recover_after"], since


def etcd_leader_move(nodes: list[str], views: dict, state: dict, cfg: dict, now: float):
    """Where etcd's leadership should go, or None (``vip_heal:move_etcd_leader``).

    Every write waits for the leader: when the leader is the VIP holder and the holder dies
    (B), every apiserver waits for etcd's election (1-2 s) before it answers; when the leader
    is an impaired node (C), every write crosses the impaired link even after the VIP left
    it. So the leader belongs on a node that scores 0 (nothing wrong seen) and does not hold
    the VIP; with no such node, or inside ``etcd_cooldown`` of the last handover, it stays.
    ``views[n]["etcd_leader"]``: the beacon's reading of etcd_server_is_leader (None where
    not known). Returns {"leader", "target", "reason"}.
    """
    if not cfg.get("move_etcd_leader"):
        return None
    table = scores(views, nodes)
    leaders = [n for n in nodes if (views.get(n) or {}).get("etcd_leader") is True]
    if len(leaders) != 1:
        return None  # no leader known (an election, an external etcd) or stale reports
    leader = leaders[0]
    holds = bool((views.get(leader) or {}).get("holds_vip"))
    impaired = table.get(leader, {}).get("score") not in (0, None)
    if not holds and not impaired:
        return None
    last = state.get("last_etcd_move_at")
    if last is not None and now - last < cfg.get("etcd_cooldown", 60):
        return None
    fit = [n for n in nodes if n != leader and table.get(n, {}).get("score") == 0
           and table[n]["available"] and not (views.get(n) or {}).get("holds_vip")
           and (views.get(n) or {}).get("etcd_leader") is False]  # fmt: skip
    if not fit:
        return None
    target = min(fit, key=nodes.index)
    why = "holds the VIP" if holds else f"is impaired ({', '.join(table[leader]['why'])})"
    return {"leader": leader, "target": target, "ask_leader": _heard(views, nodes, leader),
            "reason": f"etcd's leader {leader} {why}: leadership to {target}"}  # fmt: skip


def _heard(views: dict, nodes: list[str], node: str) -> bool:
    """Whether another node's latest probes got answers from ``node``: a slow, lossy node
    can still be asked to move etcd's leadership itself; one nobody hears (powered off,
    cut off) would hold the runner for the ask's whole timeout."""
    return any(
        ((views.get(o) or {}).get("peers") or {}).get(node, {}).get("rtt_ms") is not None
        for o in nodes
        if o != node
    )
