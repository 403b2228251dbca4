"""
Leadership for the ``etcdctl`` execution module: who leads (by the leader's own status, or
as a member sees it), which member a move is for, and how many MoveLeader calls to make.
Raft drops a leader transfer that the target did not take within one election timeout
[etcd raft/raft.go, tickHeartbeat: abortLeaderTransfer], while etcdserver's MoveLeader
keeps waiting for the caller's deadline [etcd server/etcdserver/server.go,
EtcdServer.MoveLeader]: on a lossy path to the leader short calls, several of them, each
start a new transfer.

The functions take etcdctl's answers and calls as arguments: utils modules have no
``__salt__``.
"""

from salt.exceptions import CommandExecutionError


def member_id(members, target):
    """The hex ID of the member named ``target`` or with that ID."""
    match = [m for m in members if target in (m["name"], m["id"])]
    if not match:
        raise CommandExecutionError(f"no etcd member named or with ID {target!r}")
    return match[0]["id"]


def leading_member(statuses, members):
    """The member whose own answering status says it leads, as {"id", "name", "endpoint"}
    (the endpoint that answered), or None."""
    for st in statuses:
        if st.get("reachable") and st["is_leader"]:
            name = next((m["name"] for m in members if m["id"] == st["member_id"]), "")
            return {"id": st["member_id"], "name": name, "endpoint": st["endpoint"]}
    return None


def leader_as_seen(statuses, members):
    """The leader named by the first answering status (its ``leader`` field), as
    {"id", "name", "endpoint"}, or None (an election under way, no status answered)."""
    for st in statuses:
        lead = st.get("leader") if st.get("reachable") else None
        member = next((m for m in members if lead and m["id"] == lead), None)
        if member and member["client_urls"]:
            return {"id": member["id"], "name": member["name"],
                    "endpoint": member["client_urls"][0]}  # fmt: skip
    return None


def transfer_timed_out(message: str) -> bool:
    """The call's deadline, or etcdserver's ErrTimeoutLeaderTransfer ("leader transfer took
    too long"): a dropped transfer, worth another call. Anything else is not retried."""
    text = message.lower()
    return "deadline exceeded" in text or "leader transfer took too long" in text


def move(want, name, *, attempts, current, move_once, settled):
    """Up to ``attempts`` MoveLeader calls until member ``want`` leads.

    current() -> the leader now (or None: no quorum); move_once(endpoint) -> etcdctl's
    output, raising CommandExecutionError; settled() -> the leader after a call returned.
    """
    failures = []
    for _ in range(max(1, int(attempts))):
        lead = current()
        if lead is None:
            raise CommandExecutionError("no etcd leader found (no quorum?)")
        if lead["id"] == want:  # a timed-out call's transfer may still have gone through
            return {"changed": bool(failures), "leader": lead, "failed_attempts": failures}
        try:
            stdout = move_once(lead["endpoint"])
        except CommandExecutionError as err:
            if not transfer_timed_out(str(err)):
                raise
            failures.append(str(err).strip().splitlines()[-1])
            continue
        return {"changed": True, "message": stdout.strip(), "leader": settled(),
                "failed_attempts": failures}  # fmt: skip
    raise CommandExecutionError(
        f"etcd leadership did not move to {name} in {len(failures)} attempt(s): {failures}"
    )
