"""
What the ``kubeha_vip`` runner does on the nodes, each step bounded: set every node's
tracked files (``keepalived_track.apply``), hand the VIP over (a short release of the
holder, its connections drained through ``vip_handover``), resolve two holders, lift
releases. ``ask`` is the runner's way to reach minions
(``kubeha_minions.ask`` bound to the master's opts): ``ask(nodes, fun, *args, timeout=,
**kwargs) -> {node: (ok, return)}``. ``s`` is the runner's settings of the cluster (nodes,
VIP, instance, advert_int, down_timer_adverts).

A node that does not answer is recorded in ``state["unreachable"]``: its last report no
longer counts until it sends a new one (a powered-off holder cannot say it lost the VIP).

Loaded as ``__utils__["kubeha_vip_act.<name>"]``.
"""

import time

from salt.exceptions import CommandExecutionError

# MoveLeader calls per node asked in an etcd handover (etcdctl.move_leader's attempts).
ATTEMPTS_ETCD_MOVE = 3


def apply(ask, s: dict, plan: dict, state: dict | None = None, must=()) -> dict:
    """The tracked files of every node in ``plan`` at once (one call, each node takes its
    entry); {node: its facts after the write} for the nodes that answered. A node that did
    not is marked unreachable in ``state`` (its reports no longer count until it sends a new
    one); one of ``must`` not answering fails it all."""
    nodes = [n for n in s["nodes"] if n in plan]
    answers = ask(nodes, "keepalived_track.apply", plan, instance=s["instance"],
                  vip=s["vip"], timeout=10)  # fmt: skip
    return _facts(answers, state, must)


def _facts(answers: dict, state: dict | None, must=()) -> dict:
    """{node: facts} from keepalived_track.apply's answers (see ``apply``)."""
    failed = {n: ret for n, (ok, ret) in answers.items() if not ok}
    if state is not None:
        gone = state.setdefault("unreachable", {})
        gone.update(dict.fromkeys(failed, round(time.time(), 3)))
        for node in set(answers) - set(failed):
            gone.pop(node, None)
    if set(failed) & set(must):
        raise CommandExecutionError(f"keepalived_track.apply: {failed}")
    return {n: {"holds_vip": ret.get("holds_vip"), "state": ret.get("state"), "new": ret["new"]}
            for n, (ok, ret) in answers.items() if ok}  # fmt: skip


def takeover_bound(s: dict) -> float:
    """Seconds a handover may take: the master-down timer (its adverts plus two of slack,
    for a lost priority-0 advert), plus the minion round trips that read it back. Settings
    cached by a runner from before down_timer_adverts lack it: the RFC's 3, as then."""
    return (s.get("down_timer_adverts", 3) + 2) * s["advert_int"] + 3


def _release(ask, s: dict, node: str, value: int) -> dict:
    ok, ret = ask(node, "keepalived_track.write", release=value, instance=s["instance"],
                  timeout=10)[node]  # fmt: skip
    if not ok:
        raise CommandExecutionError(f"release={value} on {node}: {ret}")
    return ret


def wait_holder(ask, s: dict, target: str, bound: float) -> float | None:
    """Seconds until ``target`` holds the VIP (asked of it alone: an impaired node in the
    same call would slow every round), None past ``bound``."""
    start = time.monotonic()
    while time.monotonic() - start < bound:
        ok, held = ask(target, "vip_probe.holds", s["vip"], timeout=3)[target]
        if ok and held:
            return round(time.monotonic() - start, 3)
        time.sleep(0.05)
    return None


def wait_only(ask, s: dict, target: str, bound: float) -> float | None:
    """Seconds until ``target`` is the only holder, None past ``bound``."""
    start = time.monotonic()
    while time.monotonic() - start < bound:
        answers = ask(s["nodes"], "vip_probe.holds", s["vip"], timeout=3)
        if [n for n, (ok, held) in answers.items() if ok and held] == [target]:
            return round(time.monotonic() - start, 3)
        time.sleep(0.1)
    return None


def _steps(s: dict, plan: dict, entries: dict, *, holder: str, target: str, state: dict):
    """What ``prepare`` asks of every node but the holder, in order (see there)."""
    seconds, ips = s.get("handover_s", 0), s.get("ips") or {}
    keepalived = s.get("provider") == "keepalived-haproxy" and holder in ips
    steps = []
    if seconds and keepalived:
        steps.append(("vip_handover.forward", [s["vip"], s["lb_port"], ips[holder]],
                      {"seconds": seconds}))  # fmt: skip
    steps.append(("keepalived_track.apply", [entries], {"instance": s["instance"],
                                                         "vip": s["vip"]}))  # fmt: skip
    # Not when the holder is the last override's target: it may sit at 254 like the new
    # target until its own write lands, and on a tie the higher address keeps the VIP
    # (RFC 5798 6.4.3): the two would trade it until then.
    top = (state.get("override") or {}).get("target") == holder
    priority = (plan.get(target) or {}).get("priority")
    if keepalived and s.get("vrid") and priority is not None and not top:
        steps.append(("vip_takeover.start", [ips[holder], s["vrid"], priority],
                      {"node": target, "seconds": takeover_bound(s),
                       "instance": s["instance"]}))  # fmt: skip
    return steps


def prepare(ask, s: dict, plan: dict, state: dict, *, holder: str, target: str) -> dict:
    """Everything of a move before the holder is asked, in one job to every node but the
    holder, in this order on each: the forwarding of the holder's connections
    (``vip_handover.forward``: on every node, VRRP may elect any of them on its own, seen
    on the lab 0.2 s before the target's forwarding was in place, 11 resets); the node's
    entry of ``plan`` (the bystanders' with ``release=1``: they sit the move out in FAULT,
    else the lossy holder's one priority-0 advert can reach a bystander and miss the target,
    VIP cp-1 -> cp-3 -> cp-2 within 0.3 s on the lab); on the target, once its priority is
    in force, ``vip_takeover.start`` (it stops hearing the holder and takes the VIP after
    its master-down timer, without waiting on the holder). One round trip instead of three
    (0.3-0.5 s each on the lab). {"facts", "handover" (None when off), "takeover"}."""
    others = sorted(n for n in plan if n != holder)
    entries = {n: plan[n] if n == target else {**plan[n], "release": 1} for n in others}
    steps = _steps(s, plan, entries, holder=holder, target=target, state=state)
    answers = ask(others, steps, timeout=10)
    by_fun = {fun: {n: answers[n][i] for n in others} for i, (fun, _, _) in enumerate(steps)}
    out = {"facts": _facts(by_fun["keepalived_track.apply"], state, must=[target]),
           "handover": None, "takeover": None}  # fmt: skip
    if "vip_handover.forward" in by_fun:
        nodes = {n: ret if ok else {"result": False, "error": _brief(str(ret))}
                 for n, (ok, ret) in by_fun["vip_handover.forward"].items()}  # fmt: skip
        out["handover"] = {"result": all(r.get("result") for r in nodes.values()),
                           "seconds": s["handover_s"], "to": holder, "nodes": nodes}  # fmt: skip
    if "vip_takeover.start" in by_fun:
        ok, ret = by_fun["vip_takeover.start"][target]
        out["takeover"] = ret if ok else {"result": False, "error": _brief(str(ret))}
    return out


def _lift(ask, s: dict, state: dict, *, holder, target: str, others: list, prep) -> None:
    """Every release of a move lifted and the target's takeover cleared, whatever
    happened (the holder's only when it was written)."""
    if holder:
        _release(ask, s, holder, 0)
    bystanders = [n for n in others if n != target]
    if bystanders:
        apply(ask, s, {n: {"release": 0} for n in bystanders}, state)
    if prep and (prep.get("takeover") or {}).get("started"):
        ask(target, "vip_takeover.clear", timeout=10)


def move(ask, s: dict, plan: dict, target: str, state: dict, *, holder=None) -> dict:
    """A planned move: ``prepare`` on every node but the holder (forwarding, priorities,
    bystanders in FAULT, the target's takeover), then the holder's priority and a short
    release in one call (whichever of the two moves the VIP first), a bounded wait for the
    VIP on ``target``, every release lifted and the takeover cleared whatever happened.
    Without a known holder the live holders are read first; unless one node other than
    ``target`` holds the VIP, the plan is only applied (VRRP decides)."""
    t0 = time.monotonic()
    out = {"result": True, "moved": False}
    if holder is None:
        live = live_holders(ask, s, state)
        if not live or live == [target] or len(live) > 1:
            apply(ask, s, plan, state, must=[target])
            return {**out, "applied_s": round(time.monotonic() - t0, 3), "live_holders": live,
                    "result": live == [target],
                    "comment": f"{target} holds the VIP; priorities set" if live == [target]
                    else f"not moved: the VIP is on {live}; priorities set, VRRP decides"
                    if live else "no node holds the VIP; priorities set, VRRP decides"}  # fmt: skip
        holder = live[0]
    others = sorted(n for n in plan if n != holder)
    prep, written = None, False
    try:
        prep = prepare(ask, s, plan, state, holder=holder, target=target)
        facts = prep["facts"]
        live = sorted(n for n, f in facts.items() if f["holds_vip"])
        out["applied_s"] = round(time.monotonic() - t0, 3)
        for key in ("handover", "takeover"):
            if prep[key] is not None:
                out[key] = prep[key]
        if live == [target] or live not in ([], [holder]) or facts[target]["state"] != "BACKUP":
            apply(ask, s, {holder: plan[holder]}, state)
            return {**out, "result": live == [target], "live_holders": live,
                    "comment": f"{target} holds the VIP; priorities set" if live == [target]
                    else f"not moved: the VIP is on {live or [holder]}, {target} is "
                    f"{facts[target]['state']}; priorities set, VRRP decides"}  # fmt: skip
        ok, ret = ask(holder, "keepalived_track.write", priority=plan[holder]["priority"],
                      release=1, instance=s["instance"], vip=s["vip"],
                      timeout=10)[holder]  # fmt: skip
        if ok:
            written = True
        else:  # the takeover may move the VIP all the same
            out["holder_release"] = {"result": False, "error": _brief(str(ret))}
        released = round(time.monotonic() - t0, 3)
        took = wait_holder(ask, s, target, takeover_bound(s))
    finally:
        _lift(ask, s, state, holder=holder if written else None, target=target, others=others,
              prep=prep)  # fmt: skip
    return {**out, "moved": took is not None, "result": took is not None, "from": holder,
            "released_s": released, "moved_s": None if took is None else round(released + took, 3),
            "comment": f"VIP {holder} -> {target}" if took is not None
            else f"{target} did not take the VIP within {takeover_bound(s):g} s"}  # fmt: skip


def split(ask, s: dict, keep: str, release: list[str], state: dict) -> dict:
    """Release the extra holders. The other backups first go to priority 1: a released
    node's priority-0 advert makes them take over after their skew time unless the kept
    holder's next advert comes first, and the lowest priority has the longest skew."""
    others = [n for n in s["nodes"] if n != keep and n not in release]
    low = {n: {"priority": -253, "release": 0} for n in others}
    apply(ask, s, {keep: {"priority": 253, "release": 0}, **low}, state, must=[keep])
    apply(ask, s, {n: {"priority": 0, "release": 1} for n in release}, state, must=release)
    took = wait_only(ask, s, keep, takeover_bound(s))
    apply(ask, s, {n: {"priority": 0, "release": 0} for n in others}, state)
    return {"result": took is not None, "released": release, "only_holder_s": took}


def live_holders(ask, s: dict, state: dict | None = None) -> list[str]:
    """The nodes that hold the VIP now, by their own kernel's address table."""
    answers = ask(s["nodes"], "vip_probe.holds", s["vip"], timeout=5)
    if state is not None:
        gone = state.setdefault("unreachable", {})
        for node, (ok, _) in answers.items():
            if ok:
                gone.pop(node, None)
            else:
                gone[node] = round(time.time(), 3)
    return sorted(n for n, (ok, held) in answers.items() if ok and held)


def no_holder(ask, s: dict, state: dict) -> dict:
    """No node holds the VIP: lift the releases the runner made, so VRRP can elect."""
    live = live_holders(ask, s, state)
    if live:
        return {"result": True, "comment": f"{live} hold the VIP again: nothing to do"}
    override = state.get("override") or {}
    if override.get("release"):
        apply(ask, s, {n: {"release": 0} for n in override["release"]}, state)
        override["release"] = []
        return {"result": True, "comment": "no holder: every release lifted"}
    return {
        "result": False,
        "comment": "no holder and no release of ours: keepalived (or "
        "HAProxy's health) fails on every node; see keepalived_track.read, keepalived.state",
    }


def _brief(text: str, head: int = 120, tail: int = 360) -> str:
    """A long error kept readable: its start (what failed) and its end (why; etcdctl's
    gRPC status comes last)."""
    return text if len(text) <= head + tail + 5 else f"{text[:head]} ... {text[-tail:]}"


def move_etcd_leader(ask, s: dict, target: str, leader: str | None = None) -> dict:
    """Hand etcd's leadership to ``target`` (``etcdctl.move_leader``). Bounded; a failure is
    a result, never an exception (the VIP's own decisions must not wait on etcd long).

    Asked of the leader's own node first: there etcdctl reaches its member on the node
    itself, and only raft's message to the target crosses the leader's path, which may be
    the impaired one. Asked of the target when the leader's node does not answer (or
    fails): MoveLeader then crosses that path to reach the leader. Raft drops a transfer
    the target did not take within an election timeout while a call waits on, so each ask
    makes short calls (two election timeouts and a second), up to ``ATTEMPTS_ETCD_MOVE``."""
    per_call = max(2.0, 2 * float(s.get("etcd_election_s", 1.0)) + 1)
    errors = []
    for node in dict.fromkeys(n for n in (leader, target) if n):
        ok, ret = ask([node], "etcdctl.move_leader", target, command_timeout=f"{per_call:g}s",
                      attempts=ATTEMPTS_ETCD_MOVE,
                      timeout=ATTEMPTS_ETCD_MOVE * per_call + 20)[node]  # fmt: skip
        if not ok:
            errors.append(f"{node}: {_brief(str(ret))}")
            continue
        now = (ret.get("leader") or {}).get("name")
        out = {"result": now == target, "moved": bool(ret.get("changed")), "leads": now,
               "asked": node}  # fmt: skip
        if ret.get("failed_attempts"):
            out["failed_attempts"] = len(ret["failed_attempts"])
        if errors:
            out["errors"] = errors
        return out
    return {"result": False, "moved": False, "error": "; ".join(errors)}
