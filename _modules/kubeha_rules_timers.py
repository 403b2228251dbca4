"""
The cluster model's timing rules: VRRP adverts and priorities, HAProxy's health-check
windows against etcd elections and the apiserver's shutdown delay, and the Lease timers
of kube-controller-manager, kube-scheduler and kube-vip against client-go's own checks.

Run by ``kubeha_model.check`` with the other rule sets; messages have the same form
(``kubeha:<key>: <what is wrong>. <the fix>``).

CLI Example:

.. code-block:: bash

    salt-call kubeha_rules_timers.problems "$(cat model.json)"
"""

from __future__ import annotations

__virtualname__ = "kubeha_rules_timers"

# client-go's leaderelection.JitterFactor: a follower waits up to retry*1.2 between tries.
# [client-go/tools/leaderelection/leaderelection.go, NewLeaderElector]
JITTER_FACTOR = 1.2


def __virtual__():
    return __virtualname__


def _seconds(value) -> float:
    return __utils__["kubeha_values.seconds"](value)


def _vrrp(model: dict) -> list[str]:
    """keepalived's VRRP settings: router id, version, advert_int, priorities, the secret."""
    if (model.get("vip") or {}).get("provider") != "keepalived-haproxy":
        return []
    conf = model.get("vrrp") or {}
    out = []
    router_id = conf.get("router_id")
    if not isinstance(router_id, int) or not 1 <= router_id <= 255:
        out.append(
            f"kubeha:vrrp:router_id: {router_id!r}; virtual_router_id is 1-255 and must be "
            "unique on the segment."
        )
    version, advert = conf.get("version"), conf.get("advert_int")
    if version not in (2, 3):
        out.append(f"kubeha:vrrp:version: {version!r}; use 2 or 3.")
    elif not isinstance(advert, (int, float)) or isinstance(advert, bool):
        out.append(f"kubeha:vrrp:advert_int: {advert!r} is not a number of seconds.")
    elif version == 2 and (advert != int(advert) or not 1 <= advert <= 255):
        out.append(
            f"kubeha:vrrp:advert_int: {advert} with VRRPv2, which carries whole seconds "
            "(1-255) in its header (RFC 3768). Use an integer, or kubeha:vrrp:version: 3 for "
            "sub-second adverts (10 ms steps)."
        )
    elif version == 3 and (
        not 0.01 <= advert <= 40.95 or abs(round(advert * 100) - advert * 100) > 1e-6
    ):
        out.append(
            f"kubeha:vrrp:advert_int: {advert} with VRRPv3, which counts centiseconds "
            "(RFC 5798): use 0.01-40.95 in steps of 0.01."
        )
    down = conf.get("down_timer_adverts", 3)
    if not isinstance(down, int) or isinstance(down, bool) or not 1 <= down <= 100:
        out.append(
            f"kubeha:vrrp:down_timer_adverts: {down!r}; the adverts a backup misses before "
            "it takes over are a whole number 1-100 (keepalived.conf(5)); the RFC's is 3."
        )
    secret = str(conf.get("auth_pass") or "")
    if version == 2 and not secret:
        out.append(
            "kubeha:vrrp:auth_pass: missing. VRRPv2 peers authenticate with a shared "
            "secret; set it in a secret pillar (e.g. pillar/kubeha/<cluster>-secrets.sls, "
            "gpg-encrypted), at most 8 characters."
        )
    elif version == 2 and len(secret) > 8:
        out.append(
            f"kubeha:vrrp:auth_pass: {len(secret)} characters; keepalived's PASS "
            "authentication uses only the first 8, so peers with different tails would "
            "still match. Use at most 8 characters."
        )
    try:
        base, step = int(conf.get("priority_base")), int(conf.get("priority_step"))
    except (TypeError, ValueError):
        return [*out, "kubeha:vrrp:priority_base/priority_step: must be integers."]
    lowest = base - step * (len(model.get("control_plane") or []) - 1)
    if base > 254 or lowest < 1 or step < 1:
        out.append(
            f"kubeha:vrrp:priority_base: {base} with step {step} gives priorities up to "
            f"{base} and down to {lowest}; keep them within 1-254 (255 is the address owner) "
            "with a step of at least 1."
        )
    return out


def _haproxy(model: dict) -> list[str]:
    """HAProxy's check timings against etcd elections and the apiserver's shutdown delay."""
    if (model.get("vip") or {}).get("provider") != "keepalived-haproxy":
        return []
    check = (model.get("haproxy") or {}).get("check") or {}
    out = []
    try:
        inter, fastinter = (
            _seconds(check.get("inter")),
            _seconds(check.get("fastinter")),
        )
        _seconds(check.get("downinter"))
        _seconds(check.get("timeout"))
    except ValueError:
        return []  # kubeha_rules_strings names the key that is not a duration
    fall, rise = check.get("fall"), check.get("rise")
    if not isinstance(fall, int) or not isinstance(rise, int) or fall < 1 or rise < 1:
        return [f"kubeha:haproxy:check: fall ({fall!r}) and rise ({rise!r}) must be >= 1."]
    election = 2 * _etcd_election(model)
    window = (fall - 1) * fastinter
    excluded = set(check.get("exclude") or [])
    etcd_servers = (model.get("apiserver") or {}).get("etcd_servers", "local")
    port = check.get("etcd_port", 0)
    pre_check = isinstance(port, int) and not isinstance(port, bool) and port > 0
    if excluded & {"etcd", "etcd-readiness"} and etcd_servers == "local" and not pre_check:
        out.append(
            f"kubeha:haproxy:check:exclude: {sorted(excluded)} leaves etcd out of HAProxy's "
            "check while each apiserver uses only its local etcd member "
            "(kubeha:apiserver:etcd_servers: local) and no etcd_port step checks that member: "
            "an apiserver whose member is down would stay UP (docs/facts.md #9). Set "
            "kubeha:haproxy:check:etcd_port: 2379, or keep etcd in the check."
        )
    # The check sees etcd elections only when it reads /readyz with the etcd checks in.
    sees_etcd = check.get("kind", "readyz") == "readyz" and not excluded & {
        "etcd",
        "etcd-readiness",
    }
    # /readyz's etcd checks fail only once their read has waited --etcd-healthcheck-timeout
    # (2 s; rate limited, the last result is shared meanwhile: storage/storagebackend/
    # factory/etcd3.go newETCD3Check), so an election shorter than that plus HAProxy's fall
    # window never marks the apiservers DOWN.
    tolerated = window + _etcd_check_timeout(model)
    if sees_etcd and tolerated < election:
        out.append(
            f"kubeha:haproxy:check: the fall window (fall-1) x fastinter = {window:g} s plus "
            f"/readyz's etcd read timeout ({_etcd_check_timeout(model):g} s) is shorter than an "
            f"etcd leader election (~2 x etcd:election_timeout_ms = {election:g} s). During an "
            "election every apiserver's /readyz fails at once and HAProxy would mark all of "
            "them DOWN together. Raise fall or fastinter, or with "
            "kubeha:apiserver:etcd_servers: all or local-first leave etcd out of the check "
            "(kubeha:haproxy:check:exclude: [etcd, etcd-readiness])."
        )
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        out.append(f"kubeha:haproxy:check:etcd_port: {port!r}; a port 1-65535, or 0 for none.")
    detection = inter + window
    delay = (model.get("apiserver") or {}).get("shutdown_delay_seconds")
    # Only a /readyz check sees the delay (readyz fails at SIGTERM); a TCP check passes
    # until the port closes, whatever the delay.
    if check.get("kind", "readyz") == "readyz" and (
        not isinstance(delay, (int, float)) or delay <= detection
    ):
        out.append(
            f"kubeha:apiserver:shutdown_delay_seconds: {delay!r} must exceed HAProxy's "
            f"detection time inter + (fall-1) x fastinter = {detection:g} s, so /readyz "
            "fails and HAProxy drains the server before its port closes (docs/facts.md #10). Use "
            f"at least {int(detection) + 2}."
        )
    return out


def _session_cut(model: dict) -> list[str]:
    """The delay before a DOWN server's sessions are cut against HAProxy's connect timeout."""
    if (model.get("vip") or {}).get("provider") != "keepalived-haproxy":
        return []
    haproxy = model.get("haproxy") or {}
    try:
        cut = _seconds(haproxy.get("cut_sessions_after_down", 0))
        connect = _seconds((haproxy.get("timeouts") or {}).get("connect"))
    except (TypeError, ValueError):
        return []  # kubeha_rules_strings names the key that is not a duration
    if 0 < cut < connect:
        return [
            f"kubeha:haproxy:cut_sessions_after_down: {cut:g} s is shorter than HAProxy's "
            f"connect timeout (haproxy:timeouts:connect = {connect:g} s): a connect still "
            "pending to the server when it went DOWN would be cut instead of retried on "
            f"another server. Use at least {connect + 0.05:g}s, or 0s for HAProxy's own "
            "immediate cut (on-marked-down shutdown-sessions)."
        ]
    return []


def _etcd_proxy(model: dict) -> list[str]:
    """apiserver:etcd_servers: local-first needs this node's HAProxy and a free local port."""
    if (model.get("apiserver") or {}).get("etcd_servers") != "local-first":
        return []
    if (model.get("vip") or {}).get("provider") != "keepalived-haproxy":
        return [
            "kubeha:apiserver:etcd_servers: local-first reaches etcd through each node's "
            "HAProxy, which vip:provider kube-vip does not run. Use local (kubeadm's) or all."
        ]
    haproxy = model.get("haproxy") or {}
    proxy = haproxy.get("etcd_proxy") or {}
    port, member = proxy.get("port"), proxy.get("member_port")
    out = [
        f"kubeha:haproxy:etcd_proxy:{key}: {value!r}; a port 1-65535."
        for key, value in (("port", port), ("member_port", member))
        if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= 65535
    ]
    taken = {
        member: "etcd's client port (etcd_proxy:member_port)",
        2380: "etcd's peer port",
        2381: "etcd's metrics port",
        (model.get("apiserver") or {}).get("port"): "kube-apiserver's port",
        (model.get("vip") or {}).get("lb_port"): "HAProxy's kube-apiserver frontend",
        haproxy.get("local_port"): "HAProxy's local frontend (haproxy:local_port)",
    }
    if not out and port in taken:
        out.append(
            f"kubeha:haproxy:etcd_proxy:port: {port} is {taken[port]}; the apiservers' etcd "
            "proxy needs a port of its own on 127.0.0.1."
        )
    check = proxy.get("check") or {}
    for key in ("fall", "rise"):
        value = check.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            out.append(f"kubeha:haproxy:etcd_proxy:check:{key}: {value!r}; a whole number >= 1.")
    return out


def _probe(model: dict) -> list[str]:
    """The chaos probe's client timeout against HAProxy's connect timeout."""
    haproxy = model.get("haproxy") or {}
    timeout = (model.get("probe") or {}).get("timeout")
    try:
        connect = _seconds((haproxy.get("timeouts") or {}).get("connect"))
    except (TypeError, ValueError):
        return []
    number = isinstance(timeout, (int, float)) and not isinstance(timeout, bool)
    if number and timeout <= connect:
        return [
            f"kubeha:probe:timeout: {timeout} s is not longer than HAProxy's connect timeout "
            f"(haproxy:timeouts:connect = {connect:g} s): the probe would give up on a request "
            "before HAProxy could even try another apiserver. Use more."
        ]
    return []


def _etcd_check_timeout(model: dict) -> float:
    """kube-apiserver's --etcd-healthcheck-timeout (default 2 s), from extra_args if set."""
    value = ((model.get("apiserver") or {}).get("extra_args") or {}).get(
        "etcd-healthcheck-timeout", "2s"
    )
    text = str(value)
    try:
        return _seconds(text if text[-1:].isalpha() else f"{text}s")
    except ValueError:
        return 2.0


def _etcd_election(model: dict) -> float:
    return float((model.get("etcd") or {}).get("election_timeout_ms", 1000)) / 1000.0


def _lease_timers(where: str, lease, renew, retry, election: float) -> list[str]:
    try:
        lease_s, renew_s, retry_s = float(lease), float(renew), float(retry)
    except (TypeError, ValueError):
        return [f"kubeha:{where}: lease_duration, renew_deadline, retry_period must be numbers."]
    out = []
    if lease_s != int(lease_s) or lease_s < 1:
        out.append(
            f"kubeha:{where}:lease_duration: {lease}; the Lease object stores whole seconds "
            "(leaseDurationSeconds), so a fraction is silently dropped. Use an integer."
        )
    # client-go refuses these orders at start-up: the controller-manager/scheduler would
    # crash-loop. [client-go/tools/leaderelection/leaderelection.go, NewLeaderElector]
    if renew_s >= lease_s:
        out.append(
            f"kubeha:{where}:renew_deadline: {renew} must be shorter than lease_duration "
            f"{lease} (client-go: 'leaseDuration must be greater than renewDeadline')."
        )
    if retry_s * JITTER_FACTOR >= renew_s:
        out.append(
            f"kubeha:{where}:retry_period: {retry} x {JITTER_FACTOR} must be shorter than "
            f"renew_deadline {renew} (client-go: 'renewDeadline must be greater than "
            "retryPeriod*JitterFactor')."
        )
    if renew_s <= 2 * election:
        out.append(
            f"kubeha:{where}:renew_deadline: {renew} s does not outlast an etcd leader "
            f"election (~{2 * election:g} s): the leader would lose its lease during every "
            "election. The fastest measured without spurious transitions is 5/3/1 "
            "(lease/renew/retry, the default; docs/chaos.md)."
        )
    return out


def _leader_election(model: dict) -> list[str]:
    """Lease timers of kube-controller-manager/kube-scheduler (and kube-vip when used)."""
    election = _etcd_election(model)
    conf = model.get("leader_election") or {}
    out = _lease_timers(
        "leader_election",
        conf.get("lease_duration"),
        conf.get("renew_deadline"),
        conf.get("retry_period"),
        election,
    )
    if (model.get("vip") or {}).get("provider") == "kube-vip":
        kv = model.get("kube_vip") or {}
        out += _lease_timers(
            "kube_vip",
            kv.get("lease_duration"),
            kv.get("renew_deadline"),
            kv.get("retry_period"),
            election,
        )
    return out


def problems(model: dict) -> list[str]:
    """
    VRRP, HAProxy check and Lease timer problems of a model.

    CLI Example:

    .. code-block:: bash

        salt-call kubeha_rules_timers.problems "$(cat model.json)"
    """
    # Not a shared helper in _utils: a util calling back into this module would run the
    # rule in the utils loader's context, where __utils__ is not packed.
    out: list[str] = []
    for rule in (_vrrp, _haproxy, _session_cut, _etcd_proxy, _leader_election, _probe):
        try:
            out += rule(model)
        except (KeyError, TypeError, AttributeError) as err:
            out.append(
                f"kubeha:{rule.__name__.lstrip('_')}: malformed section ({err!r}); "
                "see docs/pillar.md."
            )
    return out
