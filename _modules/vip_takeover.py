"""
Let the node chosen for the VIP take it without waiting on the old holder (the moves of
``kubeha_vip``: off an impaired holder, onto a pinned node).

A planned move used to wait on the old holder twice: the master's call that releases it
(about 1 s over an impaired holder's link on the lab) and then its one priority-0 advert,
which a lossy link drops (20 % loss: the VIP sat on no node for 0.73 s while the new holder
ran out its master-down timer). ``start`` takes both out of the path: for ``seconds`` the
new holder stops hearing the old holder's adverts, so its master-down timer
(``down_timer_adverts`` x ``advert_int`` + skew: 0.6 s with the lab's 0.2 s adverts) runs
out and it becomes master; the old holder, hearing an advert with a higher priority, steps
down (RFC 5798 6.4.3; keepalived logs "Master received advert from ... with higher
priority"). The runner still releases the old holder as before: whichever comes first
moves the VIP, so the old holder's priority-0 advert is let through (a u32 match on the
advert's VRID and priority byte), and nothing is slower than before with long adverts.

Only the VRRP instance's own adverts are dropped (``vrid``), from the old holder only.

The node's priority must already be above the old holder's (the runner's plan gives it 254
in the same job, just before): a master that hears a lower priority forces a new election
and keeps the VIP, and the two would trade it until the timer. ``start`` refuses unless
this node's tracked priority override is the one the plan wrote.

The drop undoes itself after ``seconds`` (a systemd timer armed before the rule), so
nothing stays when the master goes away; ``clear`` undoes it at once.

CLI Example:

.. code-block:: bash

    salt cp-2 vip_takeover.start 198.18.0.11 51 priority=114 seconds=4
    salt 'cp-*' vip_takeover.status
"""

from __future__ import annotations

import functools
import ipaddress
import shutil

from salt.exceptions import CommandExecutionError

__virtualname__ = "vip_takeover"

CHAIN = "KUBEHA-VIP-TAKEOVER"
UNIT = "kubeha-vip-takeover-clear"
VRRP = "112"  # IANA protocol number (RFC 5798 5.1.1.4)


def __virtual__():
    if shutil.which("iptables"):
        return __virtualname__
    return False, "vip_takeover needs iptables"


def _t(name: str):
    """A step of the timer-bounded chain (_utils/kubeha_timed_chain.py), run here."""
    return functools.partial(__utils__[f"kubeha_timed_chain.{name}"], __salt__["cmd.run_all"])


IPT = ["iptables", "-w", "5"]


def _drop_rule(holder: str, vrid: int) -> list[str]:
    """The old holder's adverts of this VRID with a priority of 1-255, dropped. The u32
    expression reads the VRRP header after the IP header (``0>>22&0x3C`` is its length):
    its second and third bytes are the VRID and the priority (RFC 5798 5.1, the same in
    VRRPv2, RFC 3768), so 0x<vrid>01-0x<vrid>FF is "this instance, priority not 0"."""
    low, high = vrid << 8 | 0x01, vrid << 8 | 0xFF
    return ["-s", f"{holder}/32", "-p", VRRP, "-m", "u32", "--u32",
            f"0>>22&0x3C@0>>8&0xFFFF={low:#06x}:{high:#06x}", "-j", "DROP"]  # fmt: skip


def _teardown() -> list[list[str]]:
    return __utils__["kubeha_timed_chain.teardown"](IPT, "INPUT", CHAIN)


def _checked(holder, vrid, seconds) -> tuple[str, int, float]:
    try:
        holder = str(ipaddress.IPv4Address(str(holder)))
    except ValueError as err:
        raise CommandExecutionError(f"holder {holder!r} is not an IPv4 address") from err
    try:
        vrid, seconds = int(vrid), float(seconds)
    except (TypeError, ValueError) as err:
        raise CommandExecutionError(f"vrid {vrid!r} and seconds {seconds!r}: numbers") from err
    if not 1 <= vrid <= 255:
        raise CommandExecutionError(f"vrid {vrid} is outside 1-255")
    if not 0 < seconds <= 60:
        raise CommandExecutionError(f"seconds {seconds:g}: use 0 < seconds <= 60")
    return holder, vrid, seconds


def start(holder, vrid, priority, *, seconds=5, node=None, instance="VI_1"):
    """
    Stop hearing the old holder ``holder``'s adverts of VRID ``vrid`` (but its priority-0
    one) for ``seconds``, so this node's VRRP elects it. ``priority`` is the tracked
    priority override the runner's plan wrote on this node; anything else refuses. With
    ``node`` (one job to every node, as ``keepalived_track.apply``) only that minion acts;
    the others answer ``role: bystander`` and change nothing.

    CLI Example:

    .. code-block:: bash

        salt cp-2 vip_takeover.start 198.18.0.11 51 priority=114 seconds=4
    """
    holder, vrid, seconds = _checked(holder, vrid, seconds)
    if node is not None and str(node) != __grains__["id"]:
        return {"result": True, "role": "bystander", "started": False}
    mine = __salt__["keepalived_track.read"](instance)
    if mine["priority"] != int(priority) or mine["release"]:
        raise CommandExecutionError(
            f"not taking over: this node's override is {mine}, the plan's priority is "
            f"{priority} (a lower priority than the holder's would trade the VIP back and forth)"
        )
    if not __utils__["chaos_revert.has_systemd"]():
        raise CommandExecutionError("vip_takeover needs systemd (systemd-run) for its timer")
    # The timer first: a rule must never outlive its bound.
    timer = _t("arm")(UNIT, seconds, _teardown(), __utils__["chaos_revert.systemd_timer_argv"])
    try:
        _t("install")(IPT, "INPUT", CHAIN, [_drop_rule(holder, vrid)], flush=True)
    except CommandExecutionError:
        clear()
        raise
    return {"result": True, "role": "takes over", "started": True, "from": holder,
            "vrid": vrid, "timer": timer}  # fmt: skip


def clear():
    """
    The drop removed now (the timer's job, early).

    CLI Example:

    .. code-block:: bash

        salt 'cp-*' vip_takeover.clear
    """
    _t("clear")(UNIT, _teardown())
    return {"result": True, "cleared": True}


def status():
    """
    The drop in force on this node, if any, and whether its timer still waits.

    CLI Example:

    .. code-block:: bash

        salt 'cp-*' vip_takeover.status
    """
    return {"drop": _t("rules")(IPT, CHAIN), "timer_active": _t("timer_active")(UNIT)}
