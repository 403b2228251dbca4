"""
Parsers of ``etcdctl -w json`` output for the ``etcdctl`` execution module (same shapes
in etcd 3.4 and 3.5: etcdctl/ctlv3/command/printer_json.go prints the gRPC responses).

etcdctl prints member IDs as hex in tables and as uint64 decimals in JSON; everything
here speaks hex, as ``etcdctl member list`` does.
"""

# No `from __future__ import annotations`: Salt's loader execs modules outside
# sys.modules, and dataclasses then fail on string annotations (dataclasses._is_type).
import json
from dataclasses import asdict, dataclass, field

from salt.exceptions import CommandExecutionError

# etcd's alarm enum (api/etcdserverpb/rpc.proto: AlarmType NONE=0 NOSPACE=1 CORRUPT=2).
ALARM_NAMES = {0: "NONE", 1: "NOSPACE", 2: "CORRUPT"}


@dataclass
class Member:
    id: str
    name: str
    peer_urls: list[str]
    client_urls: list[str]
    is_learner: bool = False


@dataclass
class EndpointHealth:
    endpoint: str
    healthy: bool
    took: str = ""
    error: str = ""


@dataclass
class EndpointStatus:
    endpoint: str
    member_id: str
    version: str
    db_size: int
    db_size_in_use: int
    leader: str
    is_leader: bool
    raft_index: int
    raft_term: int
    raft_applied_index: int
    errors: list[str] = field(default_factory=list)


def loads(stdout, what):
    """JSON from etcdctl, or an error that quotes what came instead."""
    try:
        return json.loads(stdout)
    except ValueError as err:
        raise CommandExecutionError(f"etcdctl {what}: unexpected output {stdout[:200]!r}") from err


def hex_id(member_id):
    return f"{int(member_id):x}"


def member_list(payload):
    """``member list -w json`` -> [Member]."""
    return [
        Member(
            id=hex_id(m["ID"]),
            # An added-but-not-started member has no name yet (etcdctl shows "unstarted").
            name=m.get("name", ""),
            peer_urls=m.get("peerURLs", []),
            client_urls=m.get("clientURLs", []),
            is_learner=bool(m.get("isLearner", False)),
        )
        for m in payload.get("members", [])
    ]


def endpoint_health(payload):
    """``endpoint health -w json`` -> [EndpointHealth]."""
    return [
        EndpointHealth(
            endpoint=h["endpoint"],
            healthy=bool(h.get("health")),
            took=h.get("took", ""),
            error=h.get("error", ""),
        )
        for h in payload
    ]


def endpoint_status(payload):
    """``endpoint status -w json`` -> [EndpointStatus]."""
    out = []
    for entry in payload:
        st = entry["Status"]
        leader = hex_id(st.get("leader", 0))
        member_id = hex_id(st["header"]["member_id"])
        out.append(
            EndpointStatus(
                endpoint=entry["Endpoint"],
                member_id=member_id,
                version=st.get("version", ""),
                db_size=int(st.get("dbSize", 0)),
                db_size_in_use=int(st.get("dbSizeInUse", 0)),
                leader=leader,
                is_leader=leader == member_id,
                raft_index=int(st.get("raftIndex", 0)),
                raft_term=int(st.get("raftTerm", 0)),
                raft_applied_index=int(st.get("raftAppliedIndex", 0)),
                errors=list(st.get("errors", [])),
            )
        )
    return out


def status_with_unreachable(stdout, stderr, targets):
    """
    Status dicts for every target: answered ones with ``reachable: True``, the others
    with ``reachable: False`` and etcdctl's error. etcdctl prints "Failed to get the
    status of endpoint X (err)" on stderr per dead endpoint, the rest on stdout, then
    exits 1 (etcdctl/ctlv3/command/ep_command.go).
    """
    found = endpoint_status(loads(stdout, "endpoint status")) if stdout.strip() else []
    out = [dict(asdict(s), reachable=True) for s in found]
    seen = {s.endpoint for s in found}
    for ep in targets:
        if ep not in seen:
            reason = next((ln for ln in stderr.splitlines() if ep in ln), stderr.strip())
            out.append({"endpoint": ep, "reachable": False, "error": reason})
    return out


def alarms(payload):
    """``alarm list -w json`` -> [{"member_id", "alarm"}]."""
    return [
        {"member_id": hex_id(a.get("memberID", 0)), "alarm": ALARM_NAMES.get(a.get("alarm", 0))}
        for a in payload.get("alarms") or []
    ]


def as_dicts(items):
    return [asdict(i) for i in items]
