"""
The monitoring host of a kubeha cluster (runbook step 12): Prometheus set up from the
cluster's model, its client certificate, and what it sees.

``setup`` (``orch/monitoring.sls`` calls it), in order:

1. the model (``kubeha.model``): ``monitoring:enabled`` and ``monitoring:host`` required;
2. Prometheus' client certificate: if the host has none usable (missing, for another key,
   or within ``renew_before_days`` of its end), the host makes a request from its own key
   (``kubeha_prometheus.client_csr``; the key never leaves it), the init node signs it with
   the cluster CA (``kubeha_pki_sign.sign_client``: O ``system:monitoring`` only) and the
   host stores it (``install_client_cert``);
3. ``state.apply kubeha.monitoring.server`` on the host with the scrape configuration, the
   rules (``kubeha_monitoring.render_rules``) and the arguments rendered here, on the master;
4. wait until every target answers its scrape (or ``wait`` seconds) and report them.

The control planes' side (node exporter, the textfile metrics, HAProxy's exporter port,
etcd's metrics listener, the KCM/scheduler bind address) comes with their highstate and
build when ``monitoring:enabled`` is true.

CLI Example:

.. code-block:: bash

    salt-run state.orch orch.monitoring pillar='{"cluster": "lab"}'
    salt-run kubeha_monitoring.setup lab
    salt-run kubeha_monitoring.targets lab
    salt-run kubeha_monitoring.query lab 'sum(kubeha_vip_holder)'
"""

from __future__ import annotations

import copy
import time

import salt.loader
from salt.exceptions import CommandExecutionError

# The minion modules that render the host's files, loaded on the master.
RENDER_MODULES = ["kubeha_prometheus", "kubeha_monitoring"]


def _render_functions():
    if "kubeha_monitoring.render" not in __context__:
        opts = copy.deepcopy(__opts__)
        opts.update(grains={}, pillar={})
        # With the utils: kubeha_monitoring builds its rules in _utils/kubeha_prom_rules.py
        # (minion_mods alone packs an empty __utils__).
        __context__["kubeha_monitoring.render"] = salt.loader.minion_mods(
            opts, utils=salt.loader.utils(opts), whitelist=RENDER_MODULES
        )
    return __context__["kubeha_monitoring.render"]


def _ask(node: str, fun: str, *args, timeout: float = 60, **kwargs):
    ok, ret = __utils__["kubeha_minions.ask"](__opts__, [node], fun, *args, timeout=timeout,
                                              **kwargs)[node]  # fmt: skip
    if not ok:
        raise CommandExecutionError(f"{node}: {fun}: {ret}")
    return ret


def _monitoring(cluster: str) -> tuple[dict, dict]:
    model = __salt__["kubeha.model"](cluster)
    mon = model["monitoring"]
    if not mon["enabled"] or not mon["host"]:
        raise CommandExecutionError(
            f"kubeha_monitoring: {cluster} has no monitoring host; set kubeha:monitoring:enabled "
            "true and kubeha:monitoring:host to the Prometheus minion in the cluster's pillar."
        )
    return model, mon


def _certificate(model: dict, mon: dict) -> dict:
    host = mon["host"]
    status = _ask(host, "kubeha_prometheus.client_status",
                  renew_before_days=mon["renew_before_days"])  # fmt: skip
    if status["usable"]:
        return {"signed": False, **status}
    csr = _ask(host, "kubeha_prometheus.client_csr")
    signed = _ask(model["derived"]["init_node"], "kubeha_pki_sign.sign_client", csr,
                  mon["client_cert_days"])  # fmt: skip
    installed = _ask(host, "kubeha_prometheus.install_client_cert", signed["cert"], signed["ca"])
    if not installed["usable"]:
        raise CommandExecutionError(f"{host}: the signed certificate is not usable: {installed}")
    return {"signed": True, "subject": signed["subject"], "not_after": signed["not_after"],
            "because": status["reason"], **installed}  # fmt: skip


def _failed_states(ret) -> list[str]:
    if not isinstance(ret, dict):
        return [str(ret)]
    return [f"{v.get('__id__', k)}: {v.get('comment')}" for k, v in ret.items()
            if isinstance(v, dict) and v.get("result") is False]  # fmt: skip


def targets(cluster: str) -> list[dict]:
    """
    The monitoring host's scrape targets: job, instance, health, last error.

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_monitoring.targets lab
    """
    _, mon = _monitoring(cluster)
    return _ask(mon["host"], "kubeha_prometheus.targets", mon["listen_address"])


def query(cluster: str, expr: str) -> list[dict]:
    """
    An instant PromQL query on the cluster's Prometheus.

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_monitoring.query lab 'sum(kubeha_vip_holder)'
    """
    _, mon = _monitoring(cluster)
    return _ask(mon["host"], "kubeha_prometheus.query", expr, mon["listen_address"])


def alerts(cluster: str) -> list[dict]:
    """
    The alerts the cluster's Prometheus holds (pending and firing).

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_monitoring.alerts lab
    """
    _, mon = _monitoring(cluster)
    return _ask(mon["host"], "kubeha_prometheus.alerts", mon["listen_address"])


def setup(cluster: str, wait: float = 180) -> dict:
    """
    Prometheus on ``monitoring:host`` for ``cluster``: certificate, configuration, rules,
    then every target up (or ``wait`` seconds). ``result`` is False when a step failed or a
    target is still down; the targets say which and why.

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_monitoring.setup lab
    """
    started = time.monotonic()
    try:
        model, mon = _monitoring(cluster)
        host = mon["host"]
        cert = _certificate(model, mon)
        funcs = _render_functions()
        data = {"config": funcs["kubeha_prometheus.render_config"](model),
                "rules": funcs["kubeha_monitoring.render_rules"](),
                "args": funcs["kubeha_prometheus.args"](model)}  # fmt: skip
        ok, ret = __utils__["kubeha_minions.ask"](
            __opts__, [host], "state.apply", "kubeha.monitoring.server", timeout=900,
            pillar={"kubeha_prometheus": data},
        )[host]  # fmt: skip
        if not ok or _failed_states(ret):
            failed = _failed_states(ret) if ok else [str(ret)]
            raise CommandExecutionError(f"{host}: kubeha.monitoring.server: {failed}")
        deadline = time.monotonic() + float(wait)
        while True:
            try:
                found = _ask(host, "kubeha_prometheus.targets", mon["listen_address"])
            except CommandExecutionError:  # Prometheus (re)starting
                found = []
            down = [t for t in found if t["health"] != "up"]
            if (found and not down) or time.monotonic() > deadline:
                break
            time.sleep(5)
    except CommandExecutionError as err:
        return {"result": False, "comment": f"monitoring of {cluster}: {err}"}
    up = len(found) - len(down)
    comment = (f"Prometheus on {host}: {up}/{len(found)} targets up after "
               f"{time.monotonic() - started:.0f} s")  # fmt: skip
    if down:
        comment += "; down: " + ", ".join(f"{t['job']}/{t['instance']} ({t['error']})"
                                          for t in down)  # fmt: skip
    return {"result": bool(found) and not down, "comment": comment, "certificate": cert,
            "targets": found}  # fmt: skip
