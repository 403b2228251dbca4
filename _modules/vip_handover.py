"""
Hand a planned VIP move over without resetting the connections in flight (the moves of
``kubeha_vip``: off an impaired holder, onto a pinned node).

When keepalived moves the VIP from the old holder to the new one, the clients' packets
follow the VIP. A connection made to the old holder's HAProxy before the move is unknown to
the new holder, which answers its next segment with a reset; and the old holder, whose VIP
address keepalived has removed, cannot send from it any more (the kernel routes a socket's
packets from an address that is not local only for a transparent socket). Every request in
flight at the move failed: 11-23 per move on the lab with C on the holder (docs/chaos.md).

Two halves keep them alive:

- on every control plane, always (the formula's ``kubeha-vip-divert`` unit, with
  ``vip_heal:handover_s``): a packet to the VIP's port that belongs to one of the node's
  transparent sockets (HAProxy binds with ``transparent``) is marked and routed to the
  local stack by a policy rule, the recipe of the kernel's
  Documentation/networking/tproxy.rst (``-m socket`` ... ``ip route add local 0.0.0.0/0 dev
  lo table 100``, narrowed to the VIP's /32). The old holder's sockets answer from the VIP
  after the address is gone, and the runner's move waits on no extra call to an impaired
  holder;
- on the new holder, for ``seconds`` from just before the move (``forward``, this module):
  a TCP segment to the VIP's port that is not a SYN and belongs to no connection the node
  knows (conntrack NEW or INVALID) was sent on a connection made to the old holder: ``TEE
  --gateway <old holder>`` copies it there across the link and the original is dropped
  instead of answered with a reset. New connections (SYN) stay on the new holder.

The forwarding undoes itself after ``seconds`` (a systemd timer armed before any rule is
written), so nothing stays when the master goes away; ``clear`` undoes it at once. Nothing
here touches keepalived or the VIP address, so every reader of "who holds the VIP" sees
what it saw before. The two holders must share a link (VRRP needs one anyway).

CLI Example:

.. code-block:: bash

    salt cp-2 vip_handover.forward 198.18.0.10 8443 198.18.0.11 seconds=30
    salt 'cp-*' vip_handover.status
"""

from __future__ import annotations

import functools
import ipaddress
import shutil

from salt.exceptions import CommandExecutionError

__virtualname__ = "vip_handover"

CHAIN = "KUBEHA-VIP-HANDOVER"
UNIT = "kubeha-vip-handover-clear"
# The divert unit's (salt/kubeha/files/haproxy/kubeha-vip-divert.service.jinja), read by
# ``status``: its chain and its policy rule's priority (= its table).
DIVERT_CHAIN = "KUBEHA-VIP-DIVERT"
TABLE = 4843


def __virtual__():
    if shutil.which("iptables") and shutil.which("ip"):
        return __virtualname__
    return False, "vip_handover needs iptables and ip (iproute2)"


def _t(name: str):
    """A step of the timer-bounded chain (_utils/kubeha_timed_chain.py), run here."""
    return functools.partial(__utils__[f"kubeha_timed_chain.{name}"], __salt__["cmd.run_all"])


IPT = ["iptables", "-w", "5", "-t", "mangle"]


def _address(value, what: str) -> str:
    try:
        return str(ipaddress.IPv4Address(str(value).split("/")[0]))
    except ValueError as err:
        raise CommandExecutionError(f"{what} {value!r} is not an IPv4 address") from err


def _checked(vip, port, seconds) -> tuple[str, int, float]:
    vip = _address(vip, "vip")
    try:
        port, seconds = int(port), float(seconds)
    except (TypeError, ValueError) as err:
        raise CommandExecutionError(f"port {port!r} and seconds {seconds!r}: numbers") from err
    if not 0 < port < 65536:
        raise CommandExecutionError(f"port {port} is outside 1-65535")
    if not 0 < seconds <= 3600:
        raise CommandExecutionError(f"seconds {seconds:g}: use 0 < seconds <= 3600")
    return vip, port, seconds


def _forward_rules(vip: str, port: int, to: str) -> list[list[str]]:
    """Copy a segment of a connection this node never saw to ``to``, then drop the original
    (not answered with a reset)."""
    match = ["-d", f"{vip}/32", "-p", "tcp", "--dport", str(port), "!", "--syn",
             "-m", "conntrack", "--ctstate", "NEW,INVALID"]  # fmt: skip
    return [[*match, "-j", "TEE", "--gateway", to], [*match, "-j", "DROP"]]


def _teardown() -> list[list[str]]:
    """Everything ``forward`` adds, removed; each step may find nothing to remove."""
    return __utils__["kubeha_timed_chain.teardown"](IPT, "PREROUTING", CHAIN)


def _has_systemd() -> bool:
    return __utils__["chaos_revert.has_systemd"]()


def _arm(seconds: float) -> dict:
    """The timer that clears the forwarding after ``seconds``, armed (or re-armed: the
    latest move's drain counts) before a rule is written."""
    if not _has_systemd():
        raise CommandExecutionError("vip_handover needs systemd (systemd-run) for its timer")
    return _t("arm")(UNIT, seconds, _teardown(), __utils__["chaos_revert.systemd_timer_argv"])


def forward(vip, port, to, seconds=30):
    """
    On the new holder, before it takes the VIP: segments of connections made to the old
    holder ``to`` (its address on the shared link) go there for ``seconds``. Rules for an
    earlier old holder stay until the timer (re-armed here) clears them all.

    CLI Example:

    .. code-block:: bash

        salt cp-2 vip_handover.forward 198.18.0.10 8443 198.18.0.11 seconds=30
    """
    vip, port, seconds = _checked(vip, port, seconds)
    to = _address(to, "to")
    timer = _arm(seconds)
    try:
        added = _t("install")(IPT, "PREROUTING", CHAIN, _forward_rules(vip, port, to))
    except CommandExecutionError:
        clear()
        raise
    return {"result": True, "role": "new holder", "to": to, "rules_added": added,
            "timer": timer}  # fmt: skip


def clear():
    """
    The forwarding rules removed now (the timer's job, early). The divert unit stays.

    CLI Example:

    .. code-block:: bash

        salt 'cp-*' vip_handover.clear
    """
    _t("clear")(UNIT, _teardown())
    return {"result": True, "cleared": True}


def status():
    """
    What this node has of a handover: the forwarding rules in force and whether their timer
    still waits; the divert unit's rule and policy rule (always there with the formula's
    ``vip_heal:handover_s``).

    CLI Example:

    .. code-block:: bash

        salt 'cp-*' vip_handover.status
    """

    policy = _t("run")(["ip", "rule", "list", "pref", str(TABLE)], check=False)
    return {
        "forward": _t("rules")(IPT, CHAIN),
        "forward_timer_active": _t("timer_active")(UNIT),
        "divert": _t("rules")(IPT, DIVERT_CHAIN),
        "policy_rule": policy["stdout"].strip() or None,
    }
