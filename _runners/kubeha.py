"""
The master's view of a kubeha cluster: which minions belong to it and its validated model.

Orchestration files render on the master, where no minion's pillar is at hand. This runner
compiles the pillar of one of the cluster's minions (pillar.show_pillar, from the master's
grain cache), merges it over the formula's defaults with the same ``kubeha_model.merge``
that ``salt/kubeha/map.jinja`` calls, and validates it with the same ``kubeha_model`` module
the states use: a bad pillar stops an orchestration before its first step, with the same
messages. What it returns is redacted (``kubeha_model.redact``): runner returns land in the
master's job cache and on the event bus.

Needs ``salt-run saltutil.sync_all`` after each update of the checkout (runners and the
modules it calls on the master).

CLI Example:

.. code-block:: bash

    salt-run kubeha.minions lab
    salt-run kubeha.model lab
"""

from __future__ import annotations

import copy
import logging

import salt.fileclient
import salt.loader
import salt.utils.yaml
from salt.exceptions import CommandExecutionError

log = logging.getLogger(__name__)

DEFAULTS = "salt://kubeha/parameters/defaults.yaml"
FAMILY = "salt://kubeha/parameters/os_family/Debian.yaml"


# The minion modules the master needs for the model (synced by salt-run saltutil.sync_all).
MODEL_MODULES = [
    "kubeha_model",
    "kubeha_rules",
    "kubeha_rules_strings",
    "kubeha_rules_timers",
    "kubeha_rules_kubeadm",
    "kubeha_rules_chaos",
    "kubeha_rules_security",
    "kubeha_rules_rbac",
    "kubeha_rules_day2",
    "kubeha_rules_vip",
    "kubeha_rules_monitoring",
]


def _model_functions():
    """The states' own model modules, loaded once per runner process (salt.cmd would load
    every module and the master's grains on every call)."""
    if "kubeha.model_functions" not in __context__:
        opts = copy.deepcopy(__opts__)
        opts.update(grains={}, pillar={})
        utils = salt.loader.utils(opts, whitelist=["kubeha_values"])
        __context__["kubeha.model_functions"] = salt.loader.minion_mods(
            opts, utils=utils, whitelist=MODEL_MODULES
        )
    return __context__["kubeha.model_functions"]


def _parameters(path: str) -> dict:
    client = salt.fileclient.get_file_client(__opts__)
    try:
        local = client.cache_file(path)
    finally:
        client.destroy()
    if not local:
        raise CommandExecutionError(f"kubeha: {path} not found; is file_roots set to the checkout?")
    with open(local, encoding="utf-8") as handle:
        return salt.utils.yaml.safe_load(handle)["values"]


def minions(cluster: str) -> list[str]:
    """
    Minion ids carrying the grain ``kubeha_cluster: <cluster>`` in the master's cache.

    CLI Example:

    .. code-block:: bash

        salt-run kubeha.minions lab
    """
    grains = __salt__["cache.grains"](tgt=f"kubeha_cluster:{cluster}", tgt_type="grain")
    return sorted(grains)


def model(cluster: str, pillar_override=None) -> dict:
    """
    The merged and validated model of a cluster, with the init node's derived values,
    secrets redacted.

    ``pillar_override`` is merged over the compiled pillar (what ``pillar=`` on the
    orchestration's command line carries). Raises CommandExecutionError with every problem
    of a bad model, so an orchestration that renders with it stops before its first step;
    ``kubeha.check`` reports the same problems as plain output.

    CLI Example:

    .. code-block:: bash

        salt-run kubeha.model lab
    """
    members = minions(cluster)
    if not members:
        raise CommandExecutionError(
            f"kubeha: no minion has the grain kubeha_cluster={cluster} in the master's "
            "cache. Set it on the nodes (grains.setval kubeha_cluster ...) and let them "
            "connect, or check the cluster name."
        )
    pillar = __salt__["pillar.show_pillar"](minion=members[0])
    # The states' own merge and validator, loaded on the master (salt-run saltutil.sync_all).
    funcs = _model_functions()
    values = funcs["kubeha_model.merge"](
        _parameters(DEFAULTS),
        _parameters(FAMILY),
        pillar.get("kubeha", {}),
        (pillar_override or {}).get("kubeha", {}),
    )
    init_node = (values.get("control_plane") or [{}])[0].get("name")
    derived = funcs["kubeha_model.derive"](values, init_node)
    listed = {n["name"] for n in values["control_plane"] + (values.get("workers") or [])}
    strays = sorted(set(members) - listed)
    if strays:
        log.warning(
            "kubeha: minions %s carry kubeha_cluster=%s but are not in pillar", strays, cluster
        )
    model = {**values, "derived": derived, "minions": members}
    return funcs["kubeha_model.redact"](model)


def network_problems(cluster: str, pillar_override=None, timeout: float = 15) -> list[str]:
    """
    The VIP against every control plane's real network: each node is asked for its
    interfaces (``network.interfaces``) and judged by ``kubeha_model.network_problems``
    (the VIP inside the node's own subnet on ``vip:interface``, ``vip:prefix`` equal to
    that subnet's). A node that does not answer is not judged here.

    CLI Example:

    .. code-block:: bash

        salt-run kubeha.network_problems lab
        salt-run kubeha.network_problems lab pillar_override='{"kubeha": {"vip": {"prefix": 16}}}'
    """
    cluster_model = model(cluster, pillar_override)
    cps = [n["name"] for n in cluster_model["control_plane"]]
    answers = __utils__["kubeha_minions.ask"](__opts__, cps, "network.interfaces", timeout=timeout)
    judge = _model_functions()["kubeha_model.network_problems"]
    return [
        problem
        for node, (ok, interfaces) in sorted(answers.items())
        if ok and isinstance(interfaces, dict)
        for problem in judge(cluster_model, node, interfaces)
    ]


def check(cluster: str, pillar_override=None) -> dict:
    """
    Validate a cluster's model on the master; exit status 1 and one line per problem when
    it is not usable.

    CLI Example:

    .. code-block:: bash

        salt-run kubeha.check lab
    """
    try:
        result = model(cluster, pillar_override)
    except CommandExecutionError as err:
        # salt-run exits with a returned dict's "retcode".
        return {"result": False, "retcode": 1, "comment": str(err)}
    nodes = [n["name"] for n in result["control_plane"]]
    return {
        "result": True,
        "comment": f"kubeha: cluster {cluster} is valid: control planes {nodes}",
    }
