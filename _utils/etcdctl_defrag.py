"""
Defragmentation policy for the ``etcdctl`` execution module: which order, and whether
at all. Defrag blocks the member it runs on (docs/facts.md #13): one member at a time, followers
first and the leader last (one leader change at most), a health check between, and
never when taking one member out would leave fewer healthy members than a quorum.

The functions take etcdctl calls as arguments: utils modules have no ``__salt__``.
"""

import time

from salt.exceptions import CommandExecutionError


def plan(members, health_of, status_of):
    """
    members: member dicts (``etcdctl.member_list``); health_of(targets) and
    status_of(targets) answer like ``endpoint_health``/``endpoint_status`` for exactly
    those endpoints. Returns {"ok", "reason", "order", "quorum"}.
    """
    targets = [u for m in members for u in m["client_urls"][:1]]
    quorum = len(members) // 2 + 1
    refuse = {"ok": False, "order": [], "quorum": quorum}
    if len(targets) < len(members):
        return dict(refuse, reason="a member has not started (no client URL)")
    sick = [
        f"{h['endpoint']} ({h['error'] or 'unhealthy'})"
        for h in health_of(targets)
        if not h["healthy"]
    ]
    if sick:
        return dict(refuse, reason=f"unhealthy member(s): {', '.join(sick)}")
    if len(targets) - 1 < quorum:
        return dict(
            refuse,
            reason=f"defragmenting one of {len(targets)} member(s) leaves fewer than a "
            f"quorum of {quorum} serving",
        )
    status = {s["endpoint"]: s for s in status_of(targets)}
    order = sorted(targets, key=lambda ep: bool(status.get(ep, {}).get("is_leader")))
    return {"ok": True, "reason": "", "order": order, "quorum": quorum}


def wait_all_healthy(health_of, targets, timeout, interval=1.0):
    """Health of targets once all are healthy, or as it is when timeout runs out."""
    deadline = time.monotonic() + timeout
    while True:
        health = health_of(targets)
        if all(h["healthy"] for h in health) or time.monotonic() > deadline:
            return health
        time.sleep(interval)


def run(order, *, defrag_one, status_one, health_of, wait_healthy):
    """Defragment the members in order; stop at the first that does not come back."""
    done = []
    for ep in order:
        before = status_one(ep)
        started = time.monotonic()
        defrag_one(ep)
        took = round(time.monotonic() - started, 3)
        health = wait_all_healthy(health_of, order, wait_healthy)
        after = status_one(ep)
        done.append(
            {
                "endpoint": ep,
                "took_s": took,
                "db_size_before": before.get("db_size"),
                "db_size_after": after.get("db_size"),
            }
        )
        sick = [h["endpoint"] for h in health if not h["healthy"]]
        if sick:
            raise CommandExecutionError(
                f"stopped after defragmenting {ep}: not healthy within {wait_healthy}s: "
                f"{', '.join(sick)} (done: {[d['endpoint'] for d in done]})"
            )
    return done
