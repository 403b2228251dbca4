"""
The cluster model's timing rules: VRRP adverts and priorities, HAProxy's health-check
windows against etcd elections and the apiserver's shutdown delay, and the Lease timers
of kube-controller-manager, kube-scheduler and kube-vip against client-go's own checks.

Run by ``kubeha_rules.problems`` in its order; messages have the same form
(``kubeha:<key>: <what is wrong>. <the fix>``).

CLI Example:

.. code-block:: bash

    salt-call kubeha_rules_timers.haproxy "$(cat model.json)"
"""

from __future__ import annotations

__virtualname__ = "kubeha_rules_timers"

# client-go's leaderelection.JitterFactor: a follower waits up to retry*1.2 between tries.
# [client-go/tools/leaderelection/leaderelection.go, NewLeaderElector]
JITTER_FACTOR = 1.2


def __virtual__():
    return __virtualname__


def _seconds(value) -> float:
    return __salt__["kubeha_rules.seconds"](value)


def vrrp(model: dict) -> list[str]:
    """
    keepalived's VRRP settings: router id, version, advert_int, priorities, the secret.

    CLI Example:

    .. code-block:: bash

        salt-call kubeha_rules_timers.vrrp "$(cat model.json)"
    """
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


def haproxy(model: dict) -> list[str]:
    """
    HAProxy's check timings against etcd elections and the apiserver's shutdown delay.

    CLI Example:

    .. code-block:: bash

        salt-call kubeha_rules_timers.haproxy "$(cat model.json)"
    """
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
    except ValueError as err:
        return [f"kubeha:haproxy:check: {err}."]
    fall, rise = check.get("fall"), check.get("rise")
    if not isinstance(fall, int) or not isinstance(rise, int) or fall < 1 or rise < 1:
        return [f"kubeha:haproxy:check: fall ({fall!r}) and rise ({rise!r}) must be >= 1."]
    election = 2 * _etcd_election(model)
    window = (fall - 1) * fastinter
    if window < election:
        out.append(
            f"kubeha:haproxy:check: the fall window (fall-1) x fastinter = {window:g} s is "
            f"shorter than an etcd leader election (~2 x etcd:election_timeout_ms = "
            f"{election:g} s). During an election every apiserver's /readyz fails at once "
            "and HAProxy would mark all of them DOWN together. Raise fall or fastinter "
            "(e.g. fall: 5, fastinter: 500ms)."
        )
    detection = inter + window
    delay = (model.get("apiserver") or {}).get("shutdown_delay_seconds")
    if not isinstance(delay, (int, float)) or delay <= detection:
        out.append(
            f"kubeha:apiserver:shutdown_delay_seconds: {delay!r} must exceed HAProxy's "
            f"detection time inter + (fall-1) x fastinter = {detection:g} s, so /readyz "
            "fails and HAProxy drains the server before its port closes (FACTS 10). Use "
            f"at least {int(detection) + 2}."
        )
    return out


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
            "election. The safe floor is 5/3/1 (lease/renew/retry)."
        )
    return out


def leader_election(model: dict) -> list[str]:
    """
    Lease timers of kube-controller-manager/kube-scheduler (and kube-vip when used).

    CLI Example:

    .. code-block:: bash

        salt-call kubeha_rules_timers.leader_election "$(cat model.json)"
    """
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
