"""
What a chaos run may do, before it does anything: the scenarios, the refusals (chaos not
allowed by the cluster's pillar, a scenario the site cannot run, a fault that would take
etcd below quorum) and the resolution of a target word to nodes. Pure functions over the
model and a ``kubeha_status.snapshot``; the ``kubeha_chaos`` runner calls them through
``__utils__["chaos_plan.*"]``.
"""

import random
import urllib.parse

# name: (execution function on the node or None for the master's power switch, lasts for
# its duration and is reverted, takes the node's etcd member out, default target, words)
SCENARIOS = {
    "apiserver-stop": ("chaos.apiserver_stop", False, False, "vip-holder",
                       "kube-apiserver stopped with crictl (A)"),
    "apiserver-hang": ("chaos.apiserver_hang", True, False, "vip-holder",
                       "kube-apiserver frozen (SIGSTOP): its port accepts, nothing answers"),
    "node-isolate": ("chaos.isolate", True, True, "vip-holder",
                     "the node's interface down: nothing in or out (B as a site can do it)"),
    "power-off": (None, True, True, "vip-holder",
                  "the node powered off through the site's power switch (B)"),
    "netem": ("chaos.netem", True, False, "vip-holder",
              "delay, jitter and loss on the node's interface (C)"),
    "etcd-stop": ("chaos.etcd_stop", True, True, "etcd-leader",
                  "etcd stopped: its static pod manifest moved away (D)"),
    "leader-kill": ("chaos.leader_kill", False, False, "lease-holder",
                    "SIGKILL of the current kube-controller-manager or kube-scheduler leader"),
}  # fmt: skip
ALIASES = ("vip-holder", "etcd-leader", "lease-holder", "random")
COMPONENTS = ("kube-controller-manager", "kube-scheduler")


def scenario(name):
    """{fun, lasting, member_down, default_target, what} of a scenario, or None."""
    row = SCENARIOS.get(name)
    if row is None:
        return None
    return dict(zip(("fun", "lasting", "member_down", "default_target", "what"), row, strict=False))


def refusal(cluster, model, name, duration, component="kube-controller-manager"):
    """Why a run of scenario ``name`` may not start on this model, or None."""
    chaos = model.get("chaos") or {}
    if not chaos.get("enabled"):
        return (
            f"chaos is not allowed on cluster {cluster}: kubeha:chaos:enabled is false (the "
            "default). Set it to true in that cluster's pillar for clusters you may break."
        )
    found = scenario(name)
    if found is None:
        return f"unknown scenario {name!r}; one of {', '.join(SCENARIOS)}"
    if not chaos.get("probe_minion"):
        return (
            "no probe: set kubeha:chaos:probe_minion to a minion outside the control plane "
            "(with a kubeconfig at kubeha:chaos:probe_kubeconfig) that measures the API."
        )
    try:
        seconds = float(duration)
    except (TypeError, ValueError):
        return f"duration {duration!r} is not a number of seconds"
    limit = float(chaos.get("max_duration") or 0)
    if not 0 < seconds <= limit:
        return (
            f"duration {seconds:g} s: use more than 0 and at most kubeha:chaos:max_duration "
            f"({limit:g} s)"
        )
    if name == "power-off" and not (chaos.get("power_off") and chaos.get("power_on")):
        return (
            "power-off is not available on this cluster: kubeha:chaos:power_off and power_on "
            "(the commands the master runs to switch a node, e.g. an IPMI or hypervisor "
            "call with {node}) are not set."
        )
    if name == "leader-kill" and component not in COMPONENTS:
        return f"component {component!r}: one of {', '.join(COMPONENTS)}"
    return None


def _node_of_endpoint(endpoint, model):
    host = urllib.parse.urlsplit(str(endpoint)).hostname
    return next((n["name"] for n in model["control_plane"] if n["ip"] == host), None)


def resolve(target, snapshot, model, component="kube-controller-manager", rng=None):
    """
    ``(nodes, None)`` for a target: a control plane's name, ``vip-holder``,
    ``etcd-leader``, ``lease-holder`` (of ``component``), ``random``, or several joined by
    commas; ``([], reason)`` when one cannot be resolved.
    """
    cps = [n["name"] for n in model["control_plane"]]
    words = target if isinstance(target, list) else str(target).split(",")
    out = []
    for word in (w.strip() for w in words):
        if word in cps:
            node = word
        elif word == "vip-holder":
            holders = (snapshot.get("vip") or {}).get("holders") or []
            if len(holders) != 1:
                return [], f"vip-holder: the VIP is held by {holders}, not by exactly one node"
            node = holders[0]
        elif word == "etcd-leader":
            etcd = snapshot.get("etcd")
            leaders = (
                [e["endpoint"] for e in etcd if e.get("is_leader")]
                if isinstance(etcd, list)
                else []
            )
            node = _node_of_endpoint(leaders[0], model) if len(leaders) == 1 else None
            if node is None:
                return (
                    [],
                    f"etcd-leader: no single etcd leader among the control planes ({leaders})",
                )
        elif word == "lease-holder":
            leases = snapshot.get("leases")
            held = (
                [x["holder_node"] for x in leases if x["name"] == component]
                if isinstance(leases, list)
                else []
            )
            node = held[0] if held and held[0] in cps else None
            if node is None:
                return [], f"lease-holder: the {component} Lease has no holder among {cps} ({held})"
        elif word == "random":
            node = (rng or random).choice(cps)
        else:
            return [], (
                f"target {word!r} is neither a control plane of this cluster "
                f"({', '.join(cps)}) nor one of {', '.join(ALIASES)}"
            )
        if node not in out:
            out.append(node)
    return (out, None) if out else ([], "no target given")


def quorum_refusal(name, nodes, snapshot, model, force=False):
    """Why taking ``nodes``' etcd members out would break quorum, or None."""
    if not scenario(name)["member_down"]:
        return None
    members = len(model["control_plane"])
    quorum = members // 2 + 1
    etcd = snapshot.get("etcd") if isinstance(snapshot.get("etcd"), list) else []
    healthy = {_node_of_endpoint(e["endpoint"], model) for e in etcd if not e.get("errors")}
    left = len(healthy - set(nodes))
    if left >= quorum or force:
        return None
    return (
        f"{name} on {', '.join(nodes)} leaves {left} of {members} etcd members running; "
        f"quorum needs {quorum}, so every write would stop until they are back. Pass "
        "force=true to run it anyway."
    )
