"""
The cluster model's rules for the self-healing VIP (``vip_heal:``): the beacon's sampling
and thresholds, the runner's margin, cooldown and recovery time, and what they need of
keepalived. ``mode`` is an enum of ``kubeha_rules_strings``; numbers and what goes together
here.

Run by ``kubeha_model.check`` with the other rule sets; messages have the same form
(``kubeha:<key>: <what is wrong>. <the fix>``).

CLI Example:

.. code-block:: bash

    salt-call kubeha_rules_vip.problems "$(cat model.json)"
"""

from __future__ import annotations

__virtualname__ = "kubeha_rules_vip"

# key: (lowest, highest).
LIMITS = {
    "interval": (1, 3600),
    "probes": (1, 20),
    "probe_timeout": (0.05, 5),
    "http_timeout": (0.1, 30),
    "rtt_bad_ms": (1, 10000),
    "rtt_good_ms": (0.1, 10000),
    "loss_bad_pct": (1, 100),
    "loss_good_pct": (0, 99),
    "window": (1, 100),
    "fall": (1, 100),
    "rise": (1, 1000),
    "margin": (1, 240),
    "cooldown": (0, 86400),
    "recover_after": (0, 86400),
    "handover_s": (0, 3600),
}
INTEGERS = {"probes", "window", "fall", "rise"}


def __virtual__():
    return __virtualname__


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _numbers(heal: dict) -> list[str]:
    out = []
    for key, (low, high) in LIMITS.items():
        if key not in heal:
            continue
        value = heal[key]
        whole = key in INTEGERS
        if not _number(value) or (whole and value != int(value)):
            kind = "a whole number" if whole else "a number"
            out.append(f"kubeha:vip_heal:{key}: {value!r} is not {kind}; use {low}-{high}.")
        elif not low <= value <= high:
            why = ""
            if key == "margin":
                why = (" (a node scores at most 240: path 100, HAProxy 100, apiserver 40; a "
                       "higher margin never moves the VIP: use mode observe instead)")  # fmt: skip
            out.append(f"kubeha:vip_heal:{key}: {value} is outside {low}-{high}{why}.")
    return out


def _relations(heal: dict) -> list[str]:
    if not all(_number(heal.get(k)) for k in LIMITS):
        return []
    out = []
    if heal["rtt_good_ms"] >= heal["rtt_bad_ms"]:
        out.append(
            f"kubeha:vip_heal:rtt_good_ms: {heal['rtt_good_ms']} is not below rtt_bad_ms "
            f"{heal['rtt_bad_ms']}; the gap between them is the hysteresis (e.g. 50 and 100)."
        )
    if heal["loss_good_pct"] >= heal["loss_bad_pct"]:
        out.append(
            f"kubeha:vip_heal:loss_good_pct: {heal['loss_good_pct']} is not below "
            f"loss_bad_pct {heal['loss_bad_pct']}; keep a gap (e.g. 5 and 20)."
        )
    if heal["rtt_bad_ms"] >= 1000 * heal["probe_timeout"]:
        out.append(
            f"kubeha:vip_heal:rtt_bad_ms: {heal['rtt_bad_ms']} ms is not below probe_timeout "
            f"({heal['probe_timeout']} s): an answer that slow counts as lost, so that round "
            "trip is never measured. Raise probe_timeout or lower rtt_bad_ms."
        )
    if heal["probe_timeout"] > 0.8 * heal["interval"]:
        out.append(
            f"kubeha:vip_heal:probe_timeout: {heal['probe_timeout']} s leaves no room in an "
            f"interval of {heal['interval']} s (the minion's loop waits for it); keep it "
            "within 80 % of the interval."
        )
    return out


def problems(model: dict) -> list[str]:
    """
    Every problem of the ``vip_heal`` keys.

    CLI Example:

    .. code-block:: bash

        salt-call kubeha_rules_vip.problems "$(cat model.json)"
    """
    heal = model.get("vip_heal")
    if heal is None:
        return []
    if not isinstance(heal, dict):
        return ["kubeha:vip_heal: must be a mapping (docs/pillar.md, Self-healing VIP)."]
    out = _numbers(heal) + _relations(heal)
    if not isinstance(heal.get("move_etcd_leader", False), bool):
        out.append(
            f"kubeha:vip_heal:move_etcd_leader: {heal['move_etcd_leader']!r} is not true or "
            "false; use true to keep etcd's leader off the VIP holder and off impaired nodes."
        )
    vrrp = model.get("vrrp") or {}
    provider = (model.get("vip") or {}).get("provider")
    if (
        heal.get("mode") == "act"
        and provider == "keepalived-haproxy"
        and not vrrp.get("nopreempt", True)
    ):
        out.append(
            "kubeha:vip_heal:mode: act needs kubeha:vrrp:nopreempt: true. With preemption, "
            "undoing an override would move the VIP back to the highest configured priority. "
            "Set nopreempt: true, or kubeha:vip_heal:mode: observe (or off)."
        )
    return out
