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

Snapshots live in the sibling module ``etcd_snapshot``. Through ``__utils__``: the
command line and its defaults in ``_utils/etcdctl_cli.py``, output parsers in
``_utils/etcdctl_parse.py``, the defragmentation policy in ``_utils/etcdctl_defrag.py``,
leadership and its moves in ``_utils/etcdctl_move.py``, the watch in
``_utils/etcdctl_watch.py``.
"""

import shutil

from salt.exceptions import CommandExecutionError

__virtualname__ = "etcdctl"


def __virtual__():
    if _settings().get("bin") or shutil.which("etcdctl"):
        return __virtualname__
    return (False, "etcdctl module: the etcdctl binary is not installed (package etcd-client)")


_RESOLVED: dict = {}
# What defrag's and move's callbacks use. A policy util calls etcdctl back
# from its own loader context, where __utils__ is not packed: resolve these beforehand.
_CALLBACK_UTILS = (
    "etcdctl_cli.run",
    "etcdctl_cli.endpoint_list",
    "etcdctl_cli.client_urls",
    "etcdctl_parse.loads",
    "etcdctl_parse.as_dicts",
    "etcdctl_parse.endpoint_health",
    "etcdctl_parse.status_with_unreachable",
    "etcdctl_parse.member_list",
    "etcdctl_move.leader_as_seen",
    "etcdctl_move.leading_member",
)


def _u(name: str):
    """A function of _utils/etcdctl_*.py, looked up once."""
    if name not in _RESOLVED:
        _RESOLVED[name] = __utils__[name]
    return _RESOLVED[name]


def _resolve_callback_utils() -> None:
    for name in _CALLBACK_UTILS:
        _u(name)


def _settings() -> dict:
    """The ``etcdctl:`` settings (minion config, grains or pillar)."""
    return __salt__["config.get"]("etcdctl", {}) or {}


def _as_list(endpoints) -> list[str]:
    return _u("etcdctl_cli.endpoint_list")(endpoints, _settings())


def _run(args, endpoints=None, tls=None, *, timeout=30, command_timeout="5s", check=True):
    """Run etcdctl; return (stdout, stderr, retcode). Raise with etcdctl's stderr if check."""
    return _u("etcdctl_cli.run")(__salt__["cmd.run_all"], _settings(), args, endpoints, tls,
                                 timeout=timeout, command_timeout=command_timeout,
                                 check=check)  # fmt: skip


def _members(endpoints=None, tls=None) -> list[dict]:
    stdout, _, _ = _run(["member", "list", "-w", "json"], endpoints, tls)
    parsed = _u("etcdctl_parse.member_list")(_u("etcdctl_parse.loads")(stdout, "member list"))
    return _u("etcdctl_parse.as_dicts")(parsed)


def _member_endpoints(endpoints=None, tls=None) -> list[str]:
    """Client URLs of every started member, asking whichever given endpoint answers."""
    return _u("etcdctl_cli.client_urls")(_members(endpoints, tls))


def _health(targets, tls) -> list[dict]:
    # endpoint health exits 1 when any endpoint is unhealthy but still prints every result.
    stdout, stderr, _ = _run(["endpoint", "health", "-w", "json"], targets, tls, check=False)
    if not stdout.strip():
        raise CommandExecutionError(f"etcdctl endpoint health failed: {stderr.strip()}")
    payload = _u("etcdctl_parse.loads")(stdout, "endpoint health")
    return _u("etcdctl_parse.as_dicts")(_u("etcdctl_parse.endpoint_health")(payload))


def _status(targets, tls) -> list[dict]:
    stdout, stderr, _ = _run(["endpoint", "status", "-w", "json"], targets, tls, check=False)
    return _u("etcdctl_parse.status_with_unreachable")(stdout, stderr, targets)


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
    return _members(endpoints, {"cacert": cacert, "cert": cert, "key": key})


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
    return _health(targets, tls)


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
    return _status(targets, tls)


def leader(endpoints=None, *, cacert=None, cert=None, key=None):
    """
    The current leader: member ID, name and client URL.

    CLI Example:

    .. code-block:: bash

        salt 'cp-1' etcdctl.leader
    """
    tls = {"cacert": cacert, "cert": cert, "key": key}
    members = _members(endpoints, tls)  # once: names and endpoints come from one list
    statuses = _status(_u("etcdctl_cli.client_urls")(members), tls)
    return _u("etcdctl_move.leading_member")(statuses, members)


def alarm_list(endpoints=None, *, cacert=None, cert=None, key=None):
    """
    Active alarms (NOSPACE, CORRUPT) with the member that raised each.

    CLI Example:

    .. code-block:: bash

        salt 'cp-1' etcdctl.alarm_list
    """
    tls = {"cacert": cacert, "cert": cert, "key": key}
    stdout, _, _ = _run(["alarm", "list", "-w", "json"], endpoints, tls)
    return _u("etcdctl_parse.alarms")(_u("etcdctl_parse.loads")(stdout, "alarm list"))


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
    _resolve_callback_utils()
    return _u("etcdctl_defrag.plan")(
        _members(endpoints, tls),
        health_of=lambda targets: _health(targets, tls),
        status_of=lambda targets: _status(targets, tls),
    )


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
    _resolve_callback_utils()
    return _u("etcdctl_defrag.run")(
        plan["order"],
        # Defrag of a large DB can take minutes; etcdctl's command timeout bounds it.
        defrag_one=lambda ep: _run(["defrag"], ep, tls, timeout=330, command_timeout="300s"),
        status_one=lambda ep: _status([ep], tls)[0],
        health_of=lambda targets: _health(targets, tls),
        wait_healthy=wait_healthy,
    )


def _leader_as_seen(endpoints, tls, members: list[dict]) -> dict | None:
    """The leader as the given endpoints see it (their own status), without asking every
    member: when the leader sits on a slow, lossy path, asking it is the slow part."""
    return _u("etcdctl_move.leader_as_seen")(_status(_as_list(endpoints), tls), members)


def move_leader(
    target, endpoints=None, command_timeout="5s", attempts=1, *, cacert=None, cert=None, key=None
):
    """
    Hand leadership to another member (by name or hex ID).

    The leader is read from the given endpoints' own view (their status), and only the
    MoveLeader call itself goes to the leader. Run on the leader's own node, nothing but
    raft's message to the target crosses the leader's path (the VIP runner does that
    first); run elsewhere, the call crosses it once (etcdctl's ``endpoint status`` of every
    member, before and after, used to cross it twice more).

    command_timeout
        How long one MoveLeader call may take (etcdctl's ``--command-timeout``). The leader
        answers it only once the target has won (etcdserver's MoveLeader waits on the
        caller's deadline).

    attempts
        MoveLeader calls before giving up (``_utils/etcdctl_move.py``). The leader starts
        one transfer per call and raft drops it after an election timeout if the target
        has not caught up, while the call waits out its deadline: on the lab (200 ms, 20 %
        loss on the leader) one 10 s call waited 8.4 s on a dropped transfer and the next
        call moved the leader in 0.5 s.

    CLI Example:

    .. code-block:: bash

        salt 'cp-1' etcdctl.move_leader cp-2
        salt 'cp-1' etcdctl.move_leader cp-2 command_timeout=3s attempts=4
    """
    tls = {"cacert": cacert, "cert": cert, "key": key}
    members = _members(endpoints, tls)
    want = _u("etcdctl_move.member_id")(members, target)

    def current():
        return _leader_as_seen(endpoints, tls, members) or leader(endpoints, **tls)

    def settled():
        # MoveLeader returns once the old leader has seen the target lead, so the
        # endpoints' view is current; a bystander's may lag a heartbeat.
        now = _leader_as_seen(endpoints, tls, members)
        return now if now and now["id"] == want else (leader(endpoints, **tls) or now)

    def move_once(leader_endpoint):
        # MoveLeader must be sent to the leader (etcdserver: ErrNotLeader otherwise). The
        # process limit only backs up etcdctl's own deadline.
        return _run(["move-leader", want], leader_endpoint, tls, timeout=90,
                    command_timeout=command_timeout)[0]  # fmt: skip

    _resolve_callback_utils()
    return _u("etcdctl_move.move")(want, target, attempts=attempts, current=current,
                                   move_once=move_once, settled=settled)  # fmt: skip


def watch(
    key,
    prefix=False,
    timeout=5,
    max_events=100,
    *,
    endpoint=None,
    values=False,
    start_revision=None,
):
    """
    Watch a key (or prefix) for ``timeout`` seconds with the ``etcd3`` client.

    Returns the events seen: type, key, mod revision and, with ``values=True``, the value
    (off by default: Kubernetes keeps Secrets in etcd). With ``start_revision``, events
    from that revision on are replayed first, so nothing between reading a revision and
    the watch being established is missed.

    CLI Example:

    .. code-block:: bash

        salt 'cp-1' etcdctl.watch /registry/leases/kube-system/ prefix=True timeout=10
    """
    files = _u("etcdctl_cli.tls_files")(_settings())  # the settings' or kubeadm's
    return _u("etcdctl_watch.watch")(
        _as_list(endpoint)[0],
        key,
        ca=files["cacert"],
        cert=files["cert"],
        cert_key=files["key"],
        prefix=prefix,
        timeout=timeout,
        max_events=max_events,
        values=values,
        start_revision=start_revision,
    )
