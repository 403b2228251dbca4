"""
Certificate renewal before expiry (``orch/certs_renew.sls``; started by the ``kubeha_certs``
beacon through ``salt/reactor/certs.sls``, or by hand).

kubeadm's leaf certificates last a year and are renewed only by ``kubeadm upgrade`` or
``kubeadm certs renew``; the components load them at start, so the static pods must restart
(docs/facts.md #8, #18). Per control plane whose certificates are below
``certs:renew_before_days``, one at a time, in the upgrade order:

    etcd leadership handed away -> out of every HAProxy pool (drain ``certs:drain`` s) ->
    ``kubeadm certs renew all`` -> static pods restarted (etcd first) -> gate: every etcd
    member healthy, the node's /readyz, the new expiry on disk and on the wire (the
    certificate kube-apiserver serves has the new serial) -> back into the pools -> pause

then the master's copy of the admin kubeconfig is refreshed (``<cachedir>/kubeha/
<cluster>/admin.conf``, 0600). A CA below the threshold is reported (event
``kubeha/certs/<cluster>/ca-expiring``), never renewed: rotating a CA is a planned change.

Loop guards (docs/facts.md #16): the beacon reports changes only (and again after its
``renotify``); CA-only expiry has its own tag no reactor acts on; one renewal per cluster at
a time (the reactor fires once per control plane); an automatic renewal does not start
within ``certs:cooldown_hours`` of the last; and the threshold cannot exceed the leaf
certificates' year, so a renewal always ends the condition that started it, unless the
threshold is the whole year, which then renews once per cooldown.

CLI Example:

.. code-block:: bash

    salt-run kubeha_certs.plan lab
    salt-run kubeha_certs.renew lab
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

from salt.exceptions import CommandExecutionError

log = logging.getLogger(__name__)

LOCK_STALE_S = 2 * 3600
RESTART_ORDER = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
ADMIN_CONF = "/etc/kubernetes/admin.conf"


def _u(name: str):
    return __utils__[name]


def _ask(node: str, fun: str, *args, timeout: float = 60, **kwargs):
    ok, ret = _u("kubeha_minions.ask")(__opts__, node, fun, *args, timeout=timeout, **kwargs)[node]
    if not ok:
        raise CommandExecutionError(f"{fun} on {node}: {ret}")
    return ret


def _fire(data: dict, tag: str) -> None:
    __salt__["event.send"](tag, data)


def plan(cluster: str, renew_before_days=None) -> dict:
    """
    Per control plane: its renewable certificates below the threshold, CAs below it, and
    the fewest days any renewable certificate has left; which nodes a renewal would touch.

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_certs.plan lab
    """
    model = __salt__["kubeha.model"](cluster)
    days = float(renew_before_days or model["certs"]["renew_before_days"])
    cps = [n["name"] for n in model["control_plane"]]
    answers = _u("kubeha_minions.ask")(__opts__, cps, "kubeha_pki.expiring", days, timeout=60)
    nodes, unreachable = {}, {}
    for node in cps:
        ok, ret = answers[node]
        if not ok:
            unreachable[node] = ret
            continue
        nodes[node] = {
            "renewable": [c["name"] for c in ret["renewable"]],
            "ca": ret["ca"],
            "kubelet": ret["kubelet"],
            "min_days_left": ret["min_days_left"],
        }
    order = [n for n in model["derived"]["upgrade_order"] if nodes.get(n, {}).get("renewable")]
    return {
        "renew_before_days": days,
        "renew": order,
        "nodes": nodes,
        "ca_expiring": {n: v["ca"] for n, v in nodes.items() if v["ca"]},
        "unreachable": unreachable,
    }


def _node_ip(model: dict, node: str) -> str:
    return next(n["ip"] for n in model["control_plane"] if n["name"] == node)


def _served(model: dict, node: str) -> dict:
    return _ask(node, "kubeha_pki.served", _node_ip(model, node), model["apiserver"]["port"])


def _apiserver_on_disk(node: str) -> dict:
    inv = _ask(node, "kubeha_pki.inventory")
    return next(c for c in inv["certificates"] if c["name"] == "apiserver")


def _renew_node(cluster: str, model: dict, node: str) -> dict:
    cfg = model["certs"]
    started = time.monotonic()
    before = _ask(node, "kubeha_pki.expiring", cfg["renew_before_days"])
    served_before = _served(model, node)
    leader = __salt__["kubeha_node.etcd_leader_away"](cluster, node)["comment"]
    __salt__["kubeha_node.lb_out"](cluster, node, wait=cfg["drain"])
    out_at = time.monotonic()
    try:
        _ask(node, "kubeadm_certs.renew", "all", timeout=360)
        restarted = _ask(node, "kubeadm_certs.restart_static_pods", list(RESTART_ORDER),
                         timeout=900)  # fmt: skip
        cps = [n["name"] for n in model["control_plane"]]
        for gate in (
            __salt__["kubeha_gate.etcd_healthy"](cluster, cps, wait=180),
            __salt__["kubeha_gate.apiservers_ready"](cluster, [node], wait=180),
        ):
            if not gate.get("result"):
                raise CommandExecutionError(gate.get("comment"))
        after = _ask(node, "kubeha_pki.expiring", cfg["renew_before_days"])
        disk = _apiserver_on_disk(node)
        served = _served(model, node)
        if (after["min_days_left"] or 0) <= (before["min_days_left"] or 0):
            raise CommandExecutionError(
                f"{node}: certificates not renewed on disk (fewest days left "
                f"{before['min_days_left']} before, {after['min_days_left']} after)"
            )
        if served["serial"] != disk["serial"]:
            raise CommandExecutionError(
                f"{node}: kube-apiserver serves serial {served['serial']} (until "
                f"{served['not_after']}), the renewed file has {disk['serial']}: the pod did "
                "not restart onto it"
            )
    finally:
        try:
            __salt__["kubeha_node.lb_in"](cluster, node)
        except CommandExecutionError as err:
            log.error("kubeha certs: %s could not go back into the pools: %s", node, err)
            raise
    return {
        "node": node,
        "etcd_leader": leader,
        "min_days_left_before": before["min_days_left"],
        "min_days_left_after": after["min_days_left"],
        "served_before": {k: served_before[k] for k in ("serial", "not_after")},
        "served_after": {k: served[k] for k in ("serial", "not_after")},
        "on_disk": {k: disk[k] for k in ("serial", "not_after")},
        "restarted": [r["name"] for r in restarted],
        "out_of_pools_s": round(time.monotonic() - out_at, 2),
        "total_s": round(time.monotonic() - started, 2),
    }


def refresh_admin(cluster: str, node: str | None = None) -> dict:
    """
    Copy the (renewed) admin kubeconfig of ``node`` (default: the init node) to the
    master's ``<cachedir>/kubeha/<cluster>/admin.conf``, 0600.

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_certs.refresh_admin lab
    """
    model = __salt__["kubeha.model"](cluster)
    node = node or model["derived"]["init_node"]
    if not _ask(node, "cp.push", ADMIN_CONF, timeout=120):
        raise CommandExecutionError(f"cp.push {ADMIN_CONF} from {node} was refused (file_recv)")
    pushed = Path(__opts__["cachedir"]) / "minions" / node / "files" / ADMIN_CONF.lstrip("/")
    target = Path(__opts__["cachedir"]) / "kubeha" / cluster / "admin.conf"
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    pushed.chmod(0o600)
    shutil.move(str(pushed), str(target))
    os.chmod(target, 0o600)
    return {"result": True, "path": str(target), "comment": f"admin kubeconfig of {node}"}


def renew(cluster: str, reason: str = "manual", trigger: str | None = None) -> dict:
    """
    Renew the control planes whose certificates are below the threshold, one at a time
    (see the module's doc). ``reason`` is ``manual`` or ``beacon`` (the latter honours
    ``certs:cooldown_hours``); ``trigger`` names the node whose beacon fired.

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_certs.renew lab
    """
    started = time.time()
    done: list[dict] = []
    try:
        with _u("kubeha_day2.locked")(__opts__, cluster, "certs", LOCK_STALE_S):
            model = __salt__["kubeha.model"](cluster)
            cfg = model["certs"]
            if reason != "manual":
                cooldown = float(cfg["cooldown_hours"]) * 3600
                left = _u("kubeha_day2.cooling_down")(__opts__, cluster, "certs", cooldown)
                if left > 0:
                    return {
                        "result": True,
                        "skipped": True,
                        "comment": f"{cluster}: certificates renewed "
                        f"{(cooldown - left) / 3600:.1f} h ago; the next automatic renewal "
                        f"may start in {left / 3600:.1f} h",
                    }
            todo = plan(cluster)
            if todo["ca_expiring"]:
                _fire(
                    {"cluster": cluster, "ca": todo["ca_expiring"]},
                    f"kubeha/certs/{cluster}/ca-expiring",
                )
            if todo["unreachable"]:
                raise CommandExecutionError(
                    f"cannot read the certificates of {sorted(todo['unreachable'])}: "
                    f"{todo['unreachable']}"
                )
            for index, node in enumerate(todo["renew"]):
                done.append(_renew_node(cluster, model, node))
                if index < len(todo["renew"]) - 1:
                    time.sleep(float(cfg["pause"]))
            admin = refresh_admin(cluster) if done else None
    except CommandExecutionError as err:
        if _u("kubeha_day2.is_busy")(err):
            return _u("kubeha_day2.skipped")(err, reason)
        message = (
            f"certificate renewal of {cluster} failed after {[d['node'] for d in done]}: {err}"
        )
        _u("kubeha_day2.record")(
            __opts__, cluster, "certs", {"result": False, "error": message, "nodes": done}
        )
        return _u("kubeha_day2.failed")(_fire, cluster, "certs", message, nodes=done)
    ca_note = f"; CA expiring (not renewed): {todo['ca_expiring']}" if todo["ca_expiring"] else ""
    outcome = {
        "result": True,
        "reason": reason,
        "trigger": trigger,
        "renew_before_days": todo["renew_before_days"],
        "nodes": done,
        "ca_expiring": todo["ca_expiring"],
        "admin_kubeconfig": admin and admin["path"],
        "total_s": round(time.time() - started, 2),
        "comment": (
            f"{cluster}: renewed the certificates of {', '.join(d['node'] for d in done)} "
            f"in {time.time() - started:.1f} s{ca_note}"
            if done
            else f"{cluster}: every certificate has at least {todo['renew_before_days']:g} days "
            f"left{ca_note}"
        ),
    }
    if done:
        _u("kubeha_day2.record")(__opts__, cluster, "certs", outcome)
    return outcome


def cooldown_clear(cluster: str) -> dict:
    """
    Forget the last renewal, so the next automatic one may start at once.

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_certs.cooldown_clear lab
    """
    had = _u("kubeha_day2.forget")(__opts__, cluster, "certs")
    return {"result": True, "comment": f"{cluster}: cooldown {'cleared' if had else 'not set'}"}
