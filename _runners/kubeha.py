"""
The master's view of a kubeha cluster: which minions belong to it and its validated model.

Orchestration files render on the master, where no minion's pillar is at hand. This runner
compiles the pillar of one of the cluster's minions (pillar.show_pillar, from the master's
grain cache), merges it over the formula's defaults exactly like ``salt/kubeha/map.jinja``,
and validates it with the same ``kubeha_model`` module the states use: a bad pillar stops an
orchestration before its first step, with the same messages.

Needs ``salt-run saltutil.sync_all`` after each update of the checkout (runners and the
modules it calls on the master).

CLI Example:

.. code-block:: bash

    salt-run kubeha.minions lab
    salt-run kubeha.model lab
"""

from __future__ import annotations

import logging

import salt.fileclient
import salt.utils.dictupdate
import salt.utils.yaml
from salt.exceptions import CommandExecutionError

log = logging.getLogger(__name__)

DEFAULTS = "salt://kubeha/parameters/defaults.yaml"
FAMILY = "salt://kubeha/parameters/os_family/Debian.yaml"


def _merge(base: dict, extra: dict) -> dict:
    """map.jinja's merge (slsutil.merge, strategy recurse): dicts recurse, lists replace."""
    return salt.utils.dictupdate.merge(base, extra or {}, strategy="recurse", merge_lists=False)


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
    The merged and validated model of a cluster, with the init node's derived values.

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
    values = _merge(_merge(_parameters(DEFAULTS), _parameters(FAMILY)), pillar.get("kubeha", {}))
    values = _merge(values, (pillar_override or {}).get("kubeha", {}))
    init_node = (values.get("control_plane") or [{}])[0].get("name")
    # The states' own validator, loaded on the master (salt-run saltutil.sync_all).
    derived = __salt__["salt.cmd"]("kubeha_model.derive", values, init_node)
    listed = {n["name"] for n in values["control_plane"] + (values.get("workers") or [])}
    strays = sorted(set(members) - listed)
    if strays:
        log.warning(
            "kubeha: minions %s carry kubeha_cluster=%s but are not in pillar", strays, cluster
        )
    return {**values, "derived": derived, "minions": members}


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
