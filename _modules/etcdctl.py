"""
Operate a kubeadm stacked etcd cluster through ``etcdctl`` (v3 API).

Defaults follow kubeadm's layout: the CA, and the ``healthcheck-client`` certificate
kubeadm creates for exactly this purpose, under ``/etc/kubernetes/pki/etcd``; the
local member at ``https://127.0.0.1:2379``; "every member" means every client URL in
the member list, so one dead member does not hide the others.

Settings (minion config, grains or pillar, read with ``config.get``)::

    etcdctl:
      bin: /usr/bin/etcdctl          # default: etcdctl on PATH
      etcdutl: /usr/bin/etcdutl      # default: etcdutl next to etcdctl, then PATH
      endpoints: [https://127.0.0.1:2379]
      cacert: /etc/kubernetes/pki/etcd/ca.crt
      cert: /etc/kubernetes/pki/etcd/healthcheck-client.crt
      key: /etc/kubernetes/pki/etcd/healthcheck-client.key

Snapshots live in the sibling module ``etcd_snapshot``.
"""

# No `from __future__ import annotations`: Salt's loader execs modules outside
# sys.modules, and dataclasses then fail on string annotations (dataclasses._is_type).
import json
import logging
import shutil
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from salt.exceptions import CommandExecutionError

log = logging.getLogger(__name__)

__virtualname__ = "etcdctl"

PKI = Path("/etc/kubernetes/pki/etcd")
LOCAL_ENDPOINT = "https://127.0.0.1:2379"
DIAL_TIMEOUT = "2s"
# etcd's alarm enum (api/etcdserverpb/rpc.proto: AlarmType NONE=0 NOSPACE=1 CORRUPT=2).
ALARM_NAMES = {0: "NONE", 1: "NOSPACE", 2: "CORRUPT"}


def __virtual__():
    if _setting("bin") or shutil.which("etcdctl"):
        return __virtualname__
    return (False, "etcdctl module: the etcdctl binary is not installed (package etcd-client)")


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


def _setting(name, default=None):
    value = (__salt__["config.get"]("etcdctl", {}) or {}).get(name)
    return default if value in (None, "") else value


def _binary() -> str:
    return _setting("bin") or shutil.which("etcdctl") or "etcdctl"


def _tls_flags(cacert=None, cert=None, key=None) -> list[str]:
    return [
        f"--cacert={cacert or _setting('cacert', str(PKI / 'ca.crt'))}",
        f"--cert={cert or _setting('cert', str(PKI / 'healthcheck-client.crt'))}",
        f"--key={key or _setting('key', str(PKI / 'healthcheck-client.key'))}",
    ]


def _as_list(endpoints) -> list[str]:
    if not endpoints:
        return list(_setting("endpoints", [LOCAL_ENDPOINT]))
    if isinstance(endpoints, str):
        return [e.strip() for e in endpoints.split(",") if e.strip()]
    return list(endpoints)


def _run(args, endpoints=None, tls=None, *, timeout=30, command_timeout="5s", check=True):
    """Run etcdctl; return (stdout, stderr, retcode). Raise with etcdctl's stderr if check."""
    cmd = [
        _binary(),
        *_tls_flags(**(tls or {})),
        f"--endpoints={','.join(_as_list(endpoints))}",
        f"--dial-timeout={DIAL_TIMEOUT}",
        f"--command-timeout={command_timeout}",
        *args,
    ]
    res = __salt__["cmd.run_all"](
        cmd,
        python_shell=False,
        env={"ETCDCTL_API": "3"},
        timeout=timeout,
        ignore_retcode=True,
        output_loglevel="debug",
    )
    if check and res["retcode"] != 0:
        raise CommandExecutionError(
            f"etcdctl {' '.join(args)} failed: {(res['stderr'] or res['stdout']).strip()}"
        )
    return res["stdout"], res["stderr"], res["retcode"]


def _json(stdout: str, what: str):
    try:
        return json.loads(stdout)
    except ValueError as err:
        raise CommandExecutionError(f"etcdctl {what}: unexpected output {stdout[:200]!r}") from err


def _hex(member_id) -> str:
    # etcdctl prints member IDs as hex in tables and as uint64 decimals in JSON.
    return f"{int(member_id):x}"


def _parse_member_list(payload: dict) -> list[Member]:
    return [
        Member(
            id=_hex(m["ID"]),
            # An added-but-not-started member has no name yet (etcdctl shows "unstarted").
            name=m.get("name", ""),
            peer_urls=m.get("peerURLs", []),
            client_urls=m.get("clientURLs", []),
            is_learner=bool(m.get("isLearner", False)),
        )
        for m in payload.get("members", [])
    ]


def _parse_endpoint_health(payload: list) -> list[EndpointHealth]:
    return [
        EndpointHealth(
            endpoint=h["endpoint"],
            healthy=bool(h.get("health")),
            took=h.get("took", ""),
            error=h.get("error", ""),
        )
        for h in payload
    ]


def _parse_endpoint_status(payload: list) -> list[EndpointStatus]:
    out = []
    for entry in payload:
        st = entry["Status"]
        leader = _hex(st.get("leader", 0))
        member_id = _hex(st["header"]["member_id"])
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


def _members(endpoints=None, tls=None) -> list[Member]:
    stdout, _, _ = _run(["member", "list", "-w", "json"], endpoints, tls)
    return _parse_member_list(_json(stdout, "member list"))


def _member_endpoints(endpoints=None, tls=None) -> list[str]:
    """Client URLs of every started member, asking whichever given endpoint answers."""
    urls = [u for m in _members(endpoints, tls) for u in m.client_urls[:1]]
    if not urls:
        raise CommandExecutionError("etcdctl: the member list has no client URLs")
    return urls


def run(
    args, endpoints=None, timeout=30, command_timeout="5s", *, cacert=None, cert=None, key=None
):
    """
    Run any etcdctl command with the kubeadm TLS defaults; return its stdout.

    args
        The etcdctl arguments, as a list or a whitespace-separated string.

    CLI Example:

    .. code-block:: bash

        salt 'cp-1' etcdctl.run "get /registry/namespaces --prefix --keys-only"
    """
    tls = {"cacert": cacert, "cert": cert, "key": key}
    argv = args.split() if isinstance(args, str) else list(args)
    stdout, _, _ = _run(argv, endpoints, tls, timeout=timeout, command_timeout=command_timeout)
    return stdout


def member_list(endpoints=None, *, cacert=None, cert=None, key=None):
    """
    List the cluster's members.

    endpoints
        Where to ask (comma-separated string or list); default the local member.

    CLI Example:

    .. code-block:: bash

        salt 'cp-1' etcdctl.member_list
    """
    tls = {"cacert": cacert, "cert": cert, "key": key}
    return [asdict(m) for m in _members(endpoints, tls)]


def endpoint_health(endpoints=None, all_members=True, *, cacert=None, cert=None, key=None):
    """
    Health of every member (``etcdctl endpoint health``): a quorum read on each.

    all_members
        Resolve every member's client URL from the member list (default); False checks
        only the given endpoints.

    CLI Example:

    .. code-block:: bash

        salt 'cp-1' etcdctl.endpoint_health
    """
    tls = {"cacert": cacert, "cert": cert, "key": key}
    targets = _member_endpoints(endpoints, tls) if all_members else _as_list(endpoints)
    # endpoint health exits 1 when any endpoint is unhealthy but still prints every result.
    stdout, stderr, rc = _run(["endpoint", "health", "-w", "json"], targets, tls, check=False)
    if not stdout.strip():
        raise CommandExecutionError(f"etcdctl endpoint health failed: {stderr.strip()}")
    return [asdict(h) for h in _parse_endpoint_health(_json(stdout, "endpoint health"))]


def endpoint_status(endpoints=None, all_members=True, *, cacert=None, cert=None, key=None):
    """
    Status of every member: version, leader, DB size, raft index and term.

    A member that does not answer is reported with ``reachable: False`` and etcdctl's
    error, instead of failing the whole call.

    CLI Example:

    .. code-block:: bash

        salt 'cp-1' etcdctl.endpoint_status
    """
    tls = {"cacert": cacert, "cert": cert, "key": key}
    targets = _member_endpoints(endpoints, tls) if all_members else _as_list(endpoints)
    # etcdctl prints "Failed to get the status of endpoint X (err)" on stderr per dead
    # endpoint, the rest on stdout, then exits 1 (etcdctl/ctlv3/command/ep_command.go).
    stdout, stderr, _ = _run(["endpoint", "status", "-w", "json"], targets, tls, check=False)
    found = _parse_endpoint_status(_json(stdout, "endpoint status")) if stdout.strip() else []
    out = [dict(asdict(s), reachable=True) for s in found]
    seen = {s.endpoint for s in found}
    for ep in targets:
        if ep not in seen:
            reason = next((ln for ln in stderr.splitlines() if ep in ln), stderr.strip())
            out.append({"endpoint": ep, "reachable": False, "error": reason})
    return out


def leader(endpoints=None, *, cacert=None, cert=None, key=None):
    """
    The current leader: member ID, name and client URL.

    CLI Example:

    .. code-block:: bash

        salt 'cp-1' etcdctl.leader
    """
    tls = {"cacert": cacert, "cert": cert, "key": key}
    members = _members(endpoints, tls)
    for st in endpoint_status(endpoints, True, **tls):
        if st.get("reachable") and st["is_leader"]:
            name = next((m.name for m in members if m.id == st["member_id"]), "")
            return {"id": st["member_id"], "name": name, "endpoint": st["endpoint"]}
    return None


def alarm_list(endpoints=None, *, cacert=None, cert=None, key=None):
    """
    Active alarms (NOSPACE, CORRUPT) with the member that raised each.

    CLI Example:

    .. code-block:: bash

        salt 'cp-1' etcdctl.alarm_list
    """
    tls = {"cacert": cacert, "cert": cert, "key": key}
    stdout, _, _ = _run(["alarm", "list", "-w", "json"], endpoints, tls)
    alarms = _json(stdout, "alarm list").get("alarms") or []
    return [
        {"member_id": _hex(a.get("memberID", 0)), "alarm": ALARM_NAMES.get(a.get("alarm", 0))}
        for a in alarms
    ]


def alarm_disarm(endpoints=None, *, cacert=None, cert=None, key=None):
    """
    Disarm every alarm (after freeing space: compact + defrag first, or it comes back).

    CLI Example:

    .. code-block:: bash

        salt 'cp-1' etcdctl.alarm_disarm
    """
    tls = {"cacert": cacert, "cert": cert, "key": key}
    before = alarm_list(endpoints, **tls)
    _run(["alarm", "disarm"], endpoints, tls)
    return {"disarmed": before, "remaining": alarm_list(endpoints, **tls)}


def _wait_all_healthy(targets, tls, timeout) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        health = endpoint_health(targets, False, **tls)
        if all(h["healthy"] for h in health) or time.monotonic() > deadline:
            return health
        time.sleep(1)


def defrag_plan(endpoints=None, *, cacert=None, cert=None, key=None):
    """
    The order ``defrag`` would use (followers first, leader last), or why it refuses.

    Refuses when a member is unhealthy or unreachable, or when taking one member out
    (defrag blocks it) would leave fewer healthy members than a quorum.

    CLI Example:

    .. code-block:: bash

        salt 'cp-1' etcdctl.defrag_plan
    """
    tls = {"cacert": cacert, "cert": cert, "key": key}
    members = _members(endpoints, tls)
    targets = [u for m in members for u in m.client_urls[:1]]
    quorum = len(members) // 2 + 1
    if len(targets) < len(members):
        return {"ok": False, "reason": "a member has not started (no client URL)", "order": []}
    health = endpoint_health(targets, False, **tls)
    sick = [f"{h['endpoint']} ({h['error'] or 'unhealthy'})" for h in health if not h["healthy"]]
    if sick:
        return {"ok": False, "reason": f"unhealthy member(s): {', '.join(sick)}", "order": []}
    if len(targets) - 1 < quorum:
        return {
            "ok": False,
            "reason": f"defragmenting one of {len(targets)} member(s) leaves fewer than a "
            f"quorum of {quorum} serving",
            "order": [],
        }
    status = {s["endpoint"]: s for s in endpoint_status(targets, False, **tls)}
    order = sorted(targets, key=lambda ep: bool(status.get(ep, {}).get("is_leader")))
    return {"ok": True, "reason": "", "order": order, "quorum": quorum}


def defrag(endpoints=None, wait_healthy=60, *, cacert=None, cert=None, key=None):
    """
    Defragment every member, one at a time, with a health check between.

    Refuses (raises) when ``defrag_plan`` does: an unhealthy member, or quorum at risk.
    Stops at the first member that does not come back healthy within ``wait_healthy``
    seconds.

    CLI Example:

    .. code-block:: bash

        salt 'cp-1' etcdctl.defrag
    """
    tls = {"cacert": cacert, "cert": cert, "key": key}
    plan = defrag_plan(endpoints, **tls)
    if not plan["ok"]:
        raise CommandExecutionError(f"refusing to defragment: {plan['reason']}")
    done = []
    for ep in plan["order"]:
        before = endpoint_status(ep, False, **tls)[0]
        started = time.monotonic()
        # Defrag of a large DB can take minutes; etcdctl's command timeout bounds it.
        _run(["defrag"], ep, tls, timeout=330, command_timeout="300s")
        took = round(time.monotonic() - started, 3)
        health = _wait_all_healthy(plan["order"], tls, wait_healthy)
        after = endpoint_status(ep, False, **tls)[0]
        done.append(
            {
                "endpoint": ep,
                "took_s": took,
                "db_size_before": before.get("db_size"),
                "db_size_after": after.get("db_size"),
            }
        )
        if not all(h["healthy"] for h in health):
            sick = [h["endpoint"] for h in health if not h["healthy"]]
            raise CommandExecutionError(
                f"stopped after defragmenting {ep}: not healthy within {wait_healthy}s: "
                f"{', '.join(sick)} (done: {[d['endpoint'] for d in done]})"
            )
    return done


def move_leader(target, endpoints=None, *, cacert=None, cert=None, key=None):
    """
    Hand leadership to another member (by name or hex ID).

    CLI Example:

    .. code-block:: bash

        salt 'cp-1' etcdctl.move_leader cp-2
    """
    tls = {"cacert": cacert, "cert": cert, "key": key}
    members = _members(endpoints, tls)
    match = [m for m in members if target in (m.name, m.id)]
    if not match:
        raise CommandExecutionError(f"no etcd member named or with ID {target!r}")
    current = leader(endpoints, **tls)
    if current is None:
        raise CommandExecutionError("no etcd leader found (no quorum?)")
    if current["id"] == match[0].id:
        return {"changed": False, "leader": current}
    # MoveLeader must be sent to the current leader (etcdserver: ErrNotLeader otherwise).
    stdout, _, _ = _run(["move-leader", match[0].id], current["endpoint"], tls)
    return {"changed": True, "message": stdout.strip(), "leader": leader(endpoints, **tls)}


def watch(key, prefix=False, timeout=5, max_events=100, *, endpoint=None, values=False):
    """
    Watch a key (or prefix) for ``timeout`` seconds with the ``etcd3`` client.

    Returns the events seen: type, key, mod revision and, with ``values=True``, the value
    (off by default: Kubernetes keeps Secrets in etcd).

    CLI Example:

    .. code-block:: bash

        salt 'cp-1' etcdctl.watch /registry/leases/kube-system/ prefix=True timeout=10
    """
    try:
        import etcd3  # noqa: PLC0415  (optional: only this function needs it)
        import grpc  # noqa: PLC0415
        from etcd3 import etcdrpc, utils  # noqa: PLC0415
    except ImportError as err:
        raise CommandExecutionError("etcdctl.watch needs the etcd3 Python package") from err
    url = _as_list(endpoint)[0]
    host, _, port = url.split("://", 1)[-1].rpartition(":")
    client = etcd3.client(
        host=host,
        port=int(port),
        ca_cert=_setting("cacert", str(PKI / "ca.crt")),
        cert_cert=_setting("cert", str(PKI / "healthcheck-client.crt")),
        cert_key=_setting("key", str(PKI / "healthcheck-client.key")),
        timeout=timeout,
    )
    create = etcdrpc.WatchCreateRequest(key=utils.to_bytes(key))
    if prefix:
        create.range_end = utils.increment_last_byte(utils.to_bytes(key))
    done = threading.Event()

    def requests():
        yield etcdrpc.WatchRequest(create_request=create)
        # Closing our side ends the watch on the server: hold it open until we are done.
        done.wait(float(timeout) + 1)

    # The raw stream with a deadline, not etcd3's Watcher: its background thread never
    # ends and raises "Channel closed" once the client is closed (etcd3 0.12 watch.py).
    stream = etcdrpc.WatchStub(client.channel).Watch(requests(), timeout=float(timeout))
    events = []
    try:
        for response in stream:
            for ev in response.events:
                entry = {
                    "type": "DELETE" if ev.type == ev.DELETE else "PUT",
                    "key": ev.kv.key.decode(errors="replace"),
                    "mod_revision": ev.kv.mod_revision,
                }
                if values:
                    entry["value"] = ev.kv.value.decode(errors="replace")
                events.append(entry)
            if len(events) >= int(max_events):
                break
    except grpc.RpcError as err:
        if err.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
            raise CommandExecutionError(f"etcd watch on {url} failed: {err.details()}") from err
    finally:
        done.set()
        stream.cancel()
        client.close()
    return events[: int(max_events)]
