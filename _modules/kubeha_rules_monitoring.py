"""
The cluster model's rules for ``monitoring:`` (kubeha.monitoring, orch.monitoring): the
monitoring host, the certificate's lifetime and the ports the control planes open. The
strings (host, durations, listen address) are checked by ``kubeha_rules_strings``; numbers
and what goes together are checked here.

Run by ``kubeha_model.check`` with the other rule sets; messages have the same form
(``kubeha:<key>: <what is wrong>. <the fix>``).

CLI Example:

.. code-block:: bash

    salt-call kubeha_rules_monitoring.problems "$(cat model.json)"
"""

from __future__ import annotations

import re

__virtualname__ = "kubeha_rules_monitoring"

# host:port, the form of --web.listen-address (its characters: kubeha_rules_strings).
LISTEN = re.compile(r"(?P<host>.*):(?P<port>\d{1,5})")
PORTS = ("node_exporter_port", "haproxy_port")
# Ports a control plane already uses (apiserver, etcd client/peer, kubelet, KCM, scheduler).
TAKEN = {2379: "etcd's client port", 2380: "etcd's peer port", 2381: "etcd's metrics port",
         10250: "the kubelet", 10257: "kube-controller-manager",
         10259: "kube-scheduler"}  # fmt: skip
LIMITS = {"textfile_interval": (1, 3600), "client_cert_days": (2, 3650),
          "renew_before_days": (1, 3649)}  # fmt: skip


def __virtual__():
    return __virtualname__


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _ports(model: dict, mon: dict) -> list[str]:
    out = []
    taken = dict(TAKEN)
    taken[(model.get("apiserver") or {}).get("port")] = "kube-apiserver"
    taken[(model.get("vip") or {}).get("lb_port")] = "HAProxy's API frontend"
    taken[(model.get("haproxy") or {}).get("local_port")] = "HAProxy's local frontend"
    seen: dict = {}
    for key in PORTS:
        port = mon.get(key)
        if not _whole(port) or not 1 <= port <= 65535:
            out.append(f"kubeha:monitoring:{key}: {port!r} is not a port; use 1-65535.")
            continue
        if port in taken:
            out.append(f"kubeha:monitoring:{key}: {port} is {taken[port]}'s; pick a free port.")
        if port in seen:
            out.append(f"kubeha:monitoring:{key}: {port} is also {seen[port]}; use two ports.")
        seen[port] = key
    return out


def _numbers(mon: dict) -> list[str]:
    out = []
    for key, (low, high) in LIMITS.items():
        value = mon.get(key)
        if not _whole(value) or not low <= value <= high:
            out.append(f"kubeha:monitoring:{key}: {value!r} is not a whole number in {low}-{high}.")
    days, before = mon.get("client_cert_days"), mon.get("renew_before_days")
    if _whole(days) and _whole(before) and before >= days:
        out.append(
            f"kubeha:monitoring:renew_before_days: {before} is not below client_cert_days "
            f"{days}; the certificate would be renewed at every run."
        )
    return out


def problems(model: dict) -> list[str]:
    """
    Every problem of ``monitoring:``; nothing is checked while it is off.

    CLI Example:

    .. code-block:: bash

        salt-call kubeha_rules_monitoring.problems "$(cat model.json)"
    """
    mon = model.get("monitoring") or {}
    if not isinstance(mon.get("enabled", False), bool):
        return ["kubeha:monitoring:enabled: must be true or false."]
    if not mon.get("enabled"):
        return []
    out = []
    host = mon.get("host") or ""
    if not host:
        out.append(
            "kubeha:monitoring:host: empty; name the minion that runs Prometheus (outside the "
            "control plane: it must see every node when one of them is down)."
        )
    elif host in {n.get("name") for n in model.get("control_plane") or [] if isinstance(n, dict)}:
        out.append(
            f"kubeha:monitoring:host: {host} is a control plane; Prometheus there goes down "
            "with the node it should report on. Use a machine outside the control plane."
        )
    listen = mon.get("listen_address")
    match = LISTEN.fullmatch(listen) if isinstance(listen, str) else None
    if match and not 1 <= int(match["port"]) <= 65535:
        out.append(f"kubeha:monitoring:listen_address: port {match['port']} is outside 1-65535.")
    return out + _ports(model, mon) + _numbers(mon)
