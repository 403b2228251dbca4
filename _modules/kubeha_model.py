"""
The kubeha cluster model: one merge, one validation, the per-node values, what may be shown.

``salt/kubeha/map.jinja`` (on a node) and the ``kubeha`` runner (on the master) both build
the model with :py:func:`merge` (``parameters/defaults.yaml`` < ``parameters/os_family`` <
pillar ``kubeha`` < an orchestration's pillar override) and then call :py:func:`derive`,
which refuses a bad model before any state renders. Every refusal names the pillar key and
the fix; all problems are reported at once. What leaves the node or the master (template
context, ``state.show_sls``, runner returns, events) is :py:func:`redact`-ed first.

The rules live in the rule sets of ``RULE_SETS`` (one module per concern, each with a
``problems(model)``) so this module stays about the model's shape and what follows from it.

CLI Example:

.. code-block:: bash

    salt 'cp-*' state.apply kubeha._mapdata        # the merged, derived model per node
    salt-call kubeha_model.check '{"vip": {...}}'   # problems of an explicit model
"""

from __future__ import annotations

import copy
import ipaddress
import logging

import salt.utils.dictupdate
from salt.exceptions import CommandExecutionError

log = logging.getLogger(__name__)

__virtualname__ = "kubeha_model"

# The pause image kubeadm expects per minor (kubeadm's constants.PauseVersion), so containerd's
# sandbox_image matches and kubeadm's preflight stays quiet.
# [kubernetes/cmd/kubeadm/app/constants/constants.go, PauseVersion, per release branch]
PAUSE_VERSION = {"1.27": "3.9", "1.28": "3.9", "1.29": "3.9", "1.30": "3.9", "1.31": "3.10"}
KUBEADM_V1BETA4_SINCE = (1, 31)
# The packages whose version is the Kubernetes version (pkgs.k8s.io).
VERSIONED_PACKAGES = ("kubeadm", "kubelet", "kubectl")
# Every rule set the model must pass, in the order their messages are listed.
RULE_SETS = (
    "kubeha_rules_strings",
    "kubeha_rules",
    "kubeha_rules_timers",
    "kubeha_rules_kubeadm",
    "kubeha_rules_chaos",
    "kubeha_rules_security",
    "kubeha_rules_rbac",
    "kubeha_rules_day2",
    "kubeha_rules_vip",
    "kubeha_rules_monitoring",
)
# Secret values of the model: never in template context, state output, returns or events.
SECRETS = (
    ("vrrp", "auth_pass"),
    ("backup", "s3", "access_key"),
    ("backup", "s3", "secret_key"),
    ("backup", "pki_key"),
)
REDACTED = "<redacted>"


def __virtual__():
    return __virtualname__


class ModelError(CommandExecutionError):
    """The cluster model in pillar is not usable; the message lists every problem.

    Not a SaltInvocationError: Salt treats those as wrong CLI arguments and prints usage.
    """


def merge(defaults: dict, family: dict, pillar: dict, override: dict | None = None) -> dict:
    """
    The model: ``defaults`` < ``family`` (os_family values) < ``pillar`` (the ``kubeha``
    key) < ``override`` (an orchestration's ``pillar=``). Mappings merge key by key, lists
    and scalars replace (Salt's ``slsutil.merge`` with strategy recurse, merge_lists False).

    CLI Example:

    .. code-block:: bash

        salt-call kubeha_model.merge "$(cat defaults.json)" '{}' "$(cat pillar.json)"
    """
    out: dict = {}
    for layer in (defaults, family, pillar, override):
        # merge() deep-copies its first argument only: copy each layer so the merged model
        # never shares a dict with the caller's pillar.
        out = salt.utils.dictupdate.merge(
            out, copy.deepcopy(layer or {}), strategy="recurse", merge_lists=False
        )
    return out


def redact(model: dict) -> dict:
    """
    A copy of the model with every secret value (``SECRETS``) replaced by ``<redacted>``
    (an unset secret stays empty, so "missing" is still visible).

    CLI Example:

    .. code-block:: bash

        salt-call kubeha_model.redact "$(cat model.json)"
    """
    out = copy.deepcopy(model)
    for path in SECRETS:
        parent = out
        for key in path[:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None
        if isinstance(parent, dict) and parent.get(path[-1]):
            parent[path[-1]] = REDACTED
    return out


def _version(text) -> tuple[int, int, int]:
    return __utils__["kubeha_values.version_tuple"](text)


def _seconds(value) -> float:
    return __utils__["kubeha_values.seconds"](value)


def kubeadm_api(model: dict) -> str:
    """
    The kubeadm config API the model resolves to: ``v1beta3`` before 1.31, ``v1beta4`` from
    1.31, unless ``kubernetes:kubeadm_api`` names one.

    CLI Example:

    .. code-block:: bash

        salt-call kubeha_model.kubeadm_api '{"kubernetes": {"version": "1.31.0"}}'
    """
    kube = model.get("kubernetes", {})
    wanted = str(kube.get("kubeadm_api", "auto"))
    if wanted != "auto":
        return wanted
    return "v1beta4" if _version(kube["version"])[:2] >= KUBEADM_V1BETA4_SINCE else "v1beta3"


def check(model: dict) -> list[str]:
    """
    Every problem of a merged model (``values`` of map.jinja), as messages naming the pillar
    key and the fix. An empty list means the model is usable.

    CLI Example:

    .. code-block:: bash

        salt-call kubeha_model.check "$(cat model.json)"
    """
    return [msg for rules in RULE_SETS for msg in __salt__[f"{rules}.problems"](model)]


def validate(model: dict) -> bool:
    """
    Raise :py:class:`ModelError` listing every problem, or return True.

    CLI Example:

    .. code-block:: bash

        salt-call kubeha_model.validate "$(cat model.json)"
    """
    _refuse(check(model))
    return True


def _refuse(problems: list[str]) -> None:
    if problems:
        listing = "\n".join(f"  - {p}" for p in problems)
        raise ModelError(
            f"kubeha: the cluster model in pillar has {len(problems)} problem(s); "
            f"nothing was changed:\n{listing}"
        )


def _find_node(model: dict, node_id: str) -> dict | None:
    for role, key in (("control-plane", "control_plane"), ("worker", "workers")):
        for index, node in enumerate(model.get(key) or []):
            if node.get("name") == node_id:
                return {**node, "role": role, "index": index}
    return None


def _priority(model: dict, node: dict | None, override) -> int | None:
    if node is None or node["role"] != "control-plane":
        return None
    if override not in (None, ""):
        return int(override)
    vrrp = model["vrrp"]
    return int(vrrp["priority_base"]) - node["index"] * int(vrrp["priority_step"])


def _upgrade_order(model: dict) -> list[str]:
    order = list(model.get("upgrade", {}).get("order") or [])
    if order:
        return order
    names = [n["name"] for n in model["control_plane"]]
    # The runbook's order: every other control plane first, the init node last (cp-2, cp-3,
    # cp-1), so the node that holds the original kubeadm-config upgrades once the rest proved
    # the new version.
    return names[1:] + names[:1]


def network_problems(model: dict, node_id: str, interfaces: dict) -> list[str]:
    """
    Problems of the VIP against a control plane's real network: ``interfaces`` is what
    ``network.interfaces`` returns on that node. The pillar's ``vip:prefix`` is only a
    claim; the node's own address and netmask on ``vip:interface`` decide where VRRP and
    ARP can move the VIP. Nothing when the node's address is not on this host (the model
    is rendered elsewhere; the bootstrap precheck asks every node itself).

    CLI Example:

    .. code-block:: bash

        salt-call kubeha_model.network_problems "$(cat model.json)" cp-1 "$(cat ifaces.json)"
    """
    node = _find_node(model, node_id)
    if node is None or node["role"] != "control-plane":
        return []
    vip = model["vip"]
    carriers = {
        name: ipaddress.IPv4Interface(f"{a['address']}/{a['netmask']}")
        for name, iface in (interfaces or {}).items()
        for a in iface.get("inet") or []
        if a.get("address") == node["ip"] and a.get("netmask")
    }
    if not carriers:
        return []
    wanted = vip["interface"]
    if wanted not in carriers:
        have = ", ".join(sorted(carriers))
        return [
            f"kubeha:vip:interface: {wanted} does not carry {node_id}'s address {node['ip']} "
            f"(it is on {have}): keepalived would hold the VIP on another link. Set "
            f"kubeha:vip:interface: {sorted(carriers)[0]}."
        ]
    real = carriers[wanted]
    out = []
    address = ipaddress.IPv4Address(vip["address"])
    if address not in real.network:
        out.append(
            f"kubeha:vip:address: {address} is outside {node_id}'s network {real.network} "
            f"({wanted} is {real.with_prefixlen}); VRRP and ARP move the VIP only inside it. "
            f"Use a free address in {real.network}."
        )
    if int(vip["prefix"]) != real.network.prefixlen:
        out.append(
            f"kubeha:vip:prefix: {vip['prefix']}, but {node_id}'s {wanted} is "
            f"{real.with_prefixlen}; keepalived adds the VIP with this prefix, so a different "
            f"one adds a wrong route. Use kubeha:vip:prefix: {real.network.prefixlen}."
        )
    return out


def _running_version(model: dict, upgraded) -> str:
    """The version this node runs: pillar's ``kubernetes:version``, or the newer one the
    upgrade recorded in the node's ``kubeha_kubernetes_version`` grain. A highstate after an
    upgrade must never downgrade the node because pillar was not updated yet."""
    pillar_version = str(model["kubernetes"]["version"])
    if upgraded in (None, ""):
        return pillar_version
    try:
        newer = _version(upgraded) > _version(pillar_version)
    except ValueError:
        log.warning("kubeha: ignoring grain kubeha_kubernetes_version=%r", upgraded)
        return pillar_version
    return str(upgraded).lstrip("v") if newer else pillar_version


def derive(
    model: dict, node_id: str, priority_override=None, interfaces=None, upgraded=None
) -> dict:
    """
    Validate the model, then compute what states and templates need for one node.

    ``priority_override`` is the node's ``kubeha_vrrp_priority`` grain (set by
    ``keepalived.set_priority``), which wins over the model's priority. ``interfaces``
    (``network.interfaces`` of this node) adds the checks of :py:func:`network_problems`.
    ``upgraded`` is the node's ``kubeha_kubernetes_version`` grain (set by the upgrade):
    when newer than pillar's version, the node's packages and configs follow it
    (``version``; ``pillar_behind`` says pillar needs updating).

    CLI Example:

    .. code-block:: bash

        salt-call kubeha_model.derive "$(cat model.json)" cp-1
    """
    validate(model)
    if interfaces:
        _refuse(network_problems(model, node_id, interfaces))
    kube = model["kubernetes"]
    running = _running_version(model, upgraded)
    version = _version(running)
    minor = f"{version[0]}.{version[1]}"
    node = _find_node(model, node_id)
    vip = model["vip"]
    cps = model["control_plane"]
    revision = str(kube["package_revision"])
    versions = dict(model["packages"].get("versions") or {})
    # kubeadm, kubelet and kubectl carry the Kubernetes version; the other packages of a
    # minor's repository have their own (cri-tools 1.31.1 beside kubeadm 1.31.0 on
    # pkgs.k8s.io): unpinned (None) unless packages:versions names one.
    packages = {
        name: str(versions[name])
        if versions.get(name)
        else (f"{running}-{revision}" if name in VERSIONED_PACKAGES else None)
        for name in model["packages"]["names"]
    }
    # The apt source follows the newest minor asked of any package: an upgrade installs the
    # next kubeadm first, from the next minor's repository (docs/facts.md #3).
    repo_minor = max(
        [_version(v.split("-")[0])[:2] for v in packages.values() if v] or [version[:2]]
    )
    endpoint_host = vip.get("dns_name") or vip["address"]
    bind_address = model["apiserver"]["bind_address"]
    if bind_address == "node" and node is not None:
        bind_address = node["ip"]
    sandbox = model["containerd"].get("sandbox_image") or (
        f"registry.k8s.io/pause:{PAUSE_VERSION.get(minor, '3.10')}"
    )
    target = model.get("upgrade", {}).get("target_version") or ""
    return {
        "node": node,
        "is_control_plane": bool(node and node["role"] == "control-plane"),
        "is_init_node": bool(node and node["role"] == "control-plane" and node["index"] == 0),
        "init_node": cps[0]["name"],
        "priority": _priority(model, node, priority_override),
        "peers": [n["ip"] for n in cps if node is None or n["name"] != node["name"]],
        "kubeadm_api": kubeadm_api({**model, "kubernetes": {**kube, "version": running}}),
        "version": running,
        "pillar_behind": running != str(kube["version"]),
        "minor": minor,
        "repo_minor": f"v{repo_minor[0]}.{repo_minor[1]}",
        "packages": packages,
        "control_plane_endpoint": f"{endpoint_host}:{vip['lb_port']}",
        "apiserver_bind_address": bind_address,
        "lb_bind_address": vip["address"] if vip["lb_bind"] == "vip" else "*",
        # The Lua task that cuts a DOWN server's sessions counts in milliseconds.
        "haproxy_cut_after_ms": round(
            _seconds((model.get("haproxy") or {}).get("cut_sessions_after_down") or 0) * 1000
        ),
        "sandbox_image": sandbox,
        "upgrade_target": target,
        "upgrade_order": _upgrade_order(model),
    }
