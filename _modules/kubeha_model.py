"""
The kubeha cluster model: one place that validates it and derives per-node values.

``salt/kubeha/map.jinja`` merges ``parameters/defaults.yaml`` with pillar ``kubeha`` and then
calls :py:func:`derive`, which refuses a bad model before any state renders. Every refusal
names the pillar key and the fix; all problems are reported at once.

The rules themselves live in ``kubeha_rules`` (one function per concern) so this module
stays about the model's shape and what follows from it.

CLI Example:

.. code-block:: bash

    salt 'cp-*' state.apply kubeha._mapdata        # the merged, derived model per node
    salt-call kubeha_model.check '{"vip": {...}}'   # problems of an explicit model
"""

from __future__ import annotations

import logging

from salt.exceptions import CommandExecutionError

log = logging.getLogger(__name__)

__virtualname__ = "kubeha_model"

# The pause image kubeadm expects per minor (kubeadm's constants.PauseVersion), so containerd's
# sandbox_image matches and kubeadm's preflight stays quiet.
# [kubernetes/cmd/kubeadm/app/constants/constants.go, PauseVersion, per release branch]
PAUSE_VERSION = {"1.27": "3.9", "1.28": "3.9", "1.29": "3.9", "1.30": "3.9", "1.31": "3.10"}
KUBEADM_V1BETA4_SINCE = (1, 31)


def __virtual__():
    return __virtualname__


class ModelError(CommandExecutionError):
    """The cluster model in pillar is not usable; the message lists every problem.

    Not a SaltInvocationError: Salt treats those as wrong CLI arguments and prints usage.
    """


def version_tuple(version: str) -> tuple[int, int, int]:
    """
    Parse ``1.30.0`` or ``v1.30.0`` into ``(1, 30, 0)``; raise ValueError otherwise.

    CLI Example:

    .. code-block:: bash

        salt-call kubeha_model.version_tuple v1.30.0
    """
    text = str(version).strip().lstrip("v")
    parts = text.split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ValueError(f"{version!r} is not a MAJOR.MINOR.PATCH version")
    return int(parts[0]), int(parts[1]), int(parts[2])


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
    return "v1beta4" if version_tuple(kube["version"])[:2] >= KUBEADM_V1BETA4_SINCE else "v1beta3"


def check(model: dict) -> list[str]:
    """
    Every problem of a merged model (``values`` of map.jinja), as messages naming the pillar
    key and the fix. An empty list means the model is usable.

    CLI Example:

    .. code-block:: bash

        salt-call kubeha_model.check "$(cat model.json)"
    """
    return __salt__["kubeha_rules.problems"](model)


def validate(model: dict) -> bool:
    """
    Raise :py:class:`ModelError` listing every problem, or return True.

    CLI Example:

    .. code-block:: bash

        salt-call kubeha_model.validate "$(cat model.json)"
    """
    problems = check(model)
    if problems:
        listing = "\n".join(f"  - {p}" for p in problems)
        raise ModelError(
            f"kubeha: the cluster model in pillar has {len(problems)} problem(s); "
            f"nothing was changed:\n{listing}"
        )
    return True


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


def derive(model: dict, node_id: str, priority_override=None) -> dict:
    """
    Validate the model, then compute what states and templates need for one node.

    ``priority_override`` is the node's ``kubeha_vrrp_priority`` grain (set by
    ``keepalived.set_priority``), which wins over the model's priority.

    CLI Example:

    .. code-block:: bash

        salt-call kubeha_model.derive "$(cat model.json)" cp-1
    """
    validate(model)
    kube = model["kubernetes"]
    version = version_tuple(kube["version"])
    minor = f"{version[0]}.{version[1]}"
    node = _find_node(model, node_id)
    vip = model["vip"]
    cps = model["control_plane"]
    revision = str(kube["package_revision"])
    versions = dict(model["packages"].get("versions") or {})
    packages = {
        name: str(versions.get(name) or f"{kube['version']}-{revision}")
        for name in model["packages"]["names"]
    }
    # The apt source follows the newest minor asked of any package: an upgrade installs the
    # next kubeadm first, from the next minor's repository (FACTS 3).
    repo_minor = max(version_tuple(v.split("-")[0])[:2] for v in packages.values())
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
        "kubeadm_api": kubeadm_api(model),
        "minor": minor,
        "repo_minor": f"v{repo_minor[0]}.{repo_minor[1]}",
        "packages": packages,
        "control_plane_endpoint": f"{endpoint_host}:{vip['lb_port']}",
        "apiserver_bind_address": bind_address,
        "lb_bind_address": vip["address"] if vip["lb_bind"] == "vip" else "*",
        "sandbox_image": sandbox,
        "upgrade_target": target,
        "upgrade_order": _upgrade_order(model),
    }
