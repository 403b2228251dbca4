"""
What the ``kubeha_vip`` runner does on the nodes, each step bounded: set every node's
tracked files (``keepalived_track.apply``), hand the VIP over (a short release of the
holder), resolve two holders, lift releases. ``ask`` is the runner's way to reach minions
(``kubeha_minions.ask`` bound to the master's opts): ``ask(nodes, fun, *args, timeout=,
**kwargs) -> {node: (ok, return)}``. ``s`` is the runner's settings of the cluster (nodes,
VIP, instance, advert_int, down_timer_adverts).

A node that does not answer is recorded in ``state["unreachable"]``: its last report no
longer counts until it sends a new one (a powered-off holder cannot say it lost the VIP).

Loaded as ``__utils__["kubeha_vip_act.<name>"]``.
"""

import time

from salt.exceptions import CommandExecutionError


def apply(ask, s: dict, plan: dict, state: dict | None = None, must=()) -> dict:
    """The tracked files of every node in ``plan`` at once (one call, each node takes its
    entry); {node: its facts after the write} for the nodes that answered. A node that did
    not is marked unreachable in ``state`` (its reports no longer count until it sends a new
    one); one of ``must`` not answering fails it all."""
    nodes = [n for n in s["nodes"] if n in plan]
    answers = ask(nodes, "keepalived_track.apply", plan, instance=s["instance"],
                  vip=s["vip"], timeout=10)  # fmt: skip
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


def move(ask, s: dict, plan: dict, target: str, state: dict, *, holder=None) -> dict:
    """Priorities first on every node but the holder (they answer fast; the target's must
    be in force before the holder lets go), then the holder's priority and a short release
    in one call, a bounded wait for the VIP on ``target``, the release lifted whatever
    happened. Without a known holder the live holders are read back first."""
    t0 = time.monotonic()
    others = {n: e for n, e in plan.items() if n != holder}
    facts = apply(ask, s, others, state, must=[target])
    live = sorted(n for n, f in facts.items() if f["holds_vip"])
    out = {"result": True, "moved": False, "applied_s": round(time.monotonic() - t0, 3)}
    if live == [target] or holder is None and not live:
        if holder:
            apply(ask, s, {holder: plan[holder]}, state)
        return {**out, "live_holders": live, "result": live == [target],
                "comment": f"{target} holds the VIP; priorities set" if live
                else "no node holds the VIP; priorities set, VRRP decides"}  # fmt: skip
    holder = holder or live[0]
    if live not in ([], [holder]) or facts[target]["state"] != "BACKUP":
        apply(ask, s, {holder: plan[holder]}, state)
        return {**out, "result": False, "live_holders": live, "comment": f"not moved: the VIP "
                f"is on {live or [holder]}, {target} is {facts[target]['state']}; priorities "
                "set, VRRP decides"}  # fmt: skip
    ok, ret = ask(holder, "keepalived_track.write", priority=plan[holder]["priority"], release=1,
                  instance=s["instance"], vip=s["vip"], timeout=10)[holder]  # fmt: skip
    if not ok:
        raise CommandExecutionError(f"release on {holder}: {ret}")
    released = round(time.monotonic() - t0, 3)
    try:
        took = wait_holder(ask, s, target, takeover_bound(s))
    finally:
        _release(ask, s, holder, 0)
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


def move_etcd_leader(ask, s: dict, target: str) -> dict:
    """Hand etcd's leadership to ``target`` (``etcdctl.move_leader``,
    asked of the target: it finds the leader's endpoint itself, and the target is the
    healthy end). Bounded; a failure is a result, never an exception (the VIP's own
    decisions must not wait on etcd long). The leader to move off may be the impaired one,
    and MoveLeader goes to it: 10 s for the call rather than etcdctl's 5."""
    ok, ret = ask([target], "etcdctl.move_leader", target, command_timeout="10s",
                  timeout=30)[target]  # fmt: skip
    if not ok:
        return {"result": False, "moved": False, "error": _brief(str(ret))}
    now = (ret.get("leader") or {}).get("name")
    return {"result": now == target, "moved": bool(ret.get("changed")), "leads": now}
