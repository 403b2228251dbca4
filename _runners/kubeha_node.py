"""
Operations on one node of a kubeha cluster, from the master: take it out of every HAProxy's
pool and back, move the VIP or etcd leadership away from it, cordon and drain it, and ask
whether it runs a version. The rolling upgrade is built from these (``kubeha_upgrade_node``);
an operator can run each alone before maintenance.

Each function raises ``CommandExecutionError`` with what it saw when it cannot do its job
within its bounds.

CLI Example:

.. code-block:: bash

    salt-run kubeha_node.lb_out lab cp-2          # drain, then out of every pool
    salt-run kubeha_node.vip_away lab cp-1
    salt-run kubeha_node.etcd_leader_away lab cp-1
    salt-run kubeha_node.drain lab cp-2
    salt-run kubeha_node.uncordon lab cp-2
    salt-run kubeha_node.lb_in lab cp-2
"""

from __future__ import annotations

import logging
import time

from salt.exceptions import CommandExecutionError

log = logging.getLogger(__name__)

POLL_S = 2.0
ADMIN = "--kubeconfig=/etc/kubernetes/admin.conf"


def _ask(node: str, fun: str, *args, timeout: float = 60, **kwargs):
    ok, ret = __utils__["kubeha_minions.ask"](
        __opts__, node, fun, *args, timeout=timeout, **kwargs
    )[node]
    if not ok:
        raise CommandExecutionError(f"{fun} on {node}: {ret}")
    return ret


def _each(nodes, fun: str, *args, timeout: float = 60, **kwargs) -> dict:
    answers = __utils__["kubeha_minions.ask"](
        __opts__, nodes, fun, *args, timeout=timeout, **kwargs
    )
    failed = {n: ret for n, (ok, ret) in answers.items() if not ok}
    if failed:
        raise CommandExecutionError(f"{fun}: {failed}")
    return {n: ret for n, (_, ret) in answers.items()}


def _until(what: str, check, wait: float):
    """check() until it returns something true; CommandExecutionError naming `what` at the deadline.
    (A loop of its own in each runner: a check handed to a ``__utils__`` function would run
    in the utils loader's context, where this runner's ``__utils__`` is not packed.)"""
    deadline = time.monotonic() + float(wait)
    last = None
    while time.monotonic() < deadline:
        try:
            got = check()
        except CommandExecutionError as err:
            got, last = None, err
        if got:
            return got
        time.sleep(POLL_S)
    tail = f" (last: {last})" if last else ""
    raise CommandExecutionError(f"{what} not reached within {wait:g} s{tail}")


def _v(text: str) -> str:
    return "v" + str(text).lstrip("v")


def _model(cluster: str) -> dict:
    return __salt__["kubeha.model"](cluster)


def _control_planes(model: dict) -> list[str]:
    return [n["name"] for n in model["control_plane"]]


def _haproxy(model: dict) -> bool:
    return model["vip"]["provider"] == "keepalived-haproxy"


def lb_out(cluster: str, node: str, wait=None) -> dict:
    """
    Take ``node``'s apiserver out of every HAProxy's pool: drain (no new sessions), wait up
    to ``wait`` seconds (``upgrade:lb_drain_seconds``) for its sessions to end, then
    maintenance. Long-lived sessions (watches, kubelets' keep-alive connections) may never
    end by themselves: they are cut when the apiserver shuts down gracefully and the
    clients reconnect through another server. Nothing to do with kube-vip.

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_node.lb_out lab cp-2
    """
    model = _model(cluster)
    if not _haproxy(model):
        return {"result": True, "comment": "kube-vip: no HAProxy pools"}
    cps = _control_planes(model)
    wait = float(model["upgrade"]["lb_drain_seconds"] if wait is None else wait)
    _each(cps, "haproxy_runtime.drain_server", node)

    def drained():
        servers = _each(cps, "haproxy_runtime.server", node, timeout=15)
        return all(s and s.get("sessions_current", 0) == 0 for s in servers.values())

    try:
        _until(f"sessions to {node} ended on every HAProxy", drained, wait)
        ended = "its sessions ended"
    except CommandExecutionError:
        log.warning("kubeha: %s still has sessions after %ss; taking it out anyway", node, wait)
        ended = f"sessions still open after {wait:g} s"
    _each(cps, "haproxy_runtime.disable_server", node)
    return {"result": True, "comment": f"{node} out of {len(cps)} HAProxy pools ({ended})"}


def lb_in(cluster: str, node: str, wait: float = 60) -> dict:
    """
    Put ``node``'s apiserver back into every HAProxy's pool and wait until every HAProxy's
    check sees it UP.

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_node.lb_in lab cp-2
    """
    model = _model(cluster)
    if not _haproxy(model):
        return {"result": True, "comment": "kube-vip: no HAProxy pools"}
    cps = _control_planes(model)
    _each(cps, "haproxy_runtime.enable_server", node)
    # wait_for_status(name, status, backend, timeout): positional, as `timeout=` is ask's.
    _each(cps, "haproxy_runtime.wait_for_status", node, "UP", None, wait, timeout=wait + 30)
    return {"result": True, "comment": f"{node} UP in {len(cps)} HAProxy pools"}


def vip_holders(cluster: str) -> list[str]:
    """
    The control planes that hold the VIP now (one, normally).

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_node.vip_holders lab
    """
    model = _model(cluster)
    vip = model["vip"]["address"]
    answers = __utils__["kubeha_minions.ask"](
        __opts__, _control_planes(model), "network.ip_addrs", timeout=15
    )
    return sorted(n for n, (ok, addrs) in answers.items() if ok and vip in (addrs or []))


def vip_away(cluster: str, node: str, wait: float = 60) -> dict:
    """
    If ``node`` holds the VIP, stop its keepalived: the priority-0 advert of a clean stop
    hands the VIP over after the skew time only (docs/facts.md, Timings), and with
    ``nopreempt`` it stays where it went when keepalived starts again. ``stopped`` says
    whether keepalived was stopped (start it again with ``service.start``).

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_node.vip_away lab cp-1
    """
    model = _model(cluster)
    if not _haproxy(model) or node not in vip_holders(cluster):
        return {"result": True, "stopped": False, "comment": f"{node} does not hold the VIP"}
    _ask(node, "service.stop", "keepalived", timeout=60)
    holders = _until(
        f"the VIP on another node than {node}",
        lambda: (h := vip_holders(cluster)) and node not in h and h,
        wait,
    )
    return {"result": True, "stopped": True, "comment": f"VIP moved to {', '.join(holders)}"}


def etcd_leader_away(cluster: str, node: str) -> dict:
    """
    Hand etcd leadership to another member if ``node``'s member leads (``etcdctl
    move-leader``), so a restart of its etcd does not start an election under load.

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_node.etcd_leader_away lab cp-1
    """
    model = _model(cluster)
    leader = _ask(node, "etcdctl.leader", timeout=30)
    if not leader or leader.get("name") != node:
        return {"result": True, "comment": f"{node} does not lead etcd"}
    other = next(n for n in _control_planes(model) if n != node)
    moved = _ask(node, "etcdctl.move_leader", other, timeout=60)
    now = (moved.get("leader") or {}).get("name")
    return {"result": True, "comment": f"etcd leadership moved from {node} to {now}"}


def kubectl(node: str, *args: str, timeout: float = 120) -> str:
    """
    ``kubectl`` with the admin kubeconfig on ``node``, each request bounded by 30 s and the
    whole command by ``timeout``; its stdout.

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_node.kubectl cp-1 get nodes
    """
    res = _ask(
        node,
        "cmd.run_all",
        ["kubectl", ADMIN, "--request-timeout=30s", *args],
        python_shell=False,
        timeout=timeout,
    )
    if res.get("retcode") != 0:
        raise CommandExecutionError(f"kubectl {' '.join(args)} on {node}: {res.get('stderr')}")
    return res.get("stdout", "")


def drain(cluster: str, node: str, via=None) -> dict:
    """
    Cordon and drain ``node`` through control plane ``via`` (default: another control
    plane), PodDisruptionBudgets honoured (evictions), bounded by ``upgrade:drain_timeout``.

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_node.drain lab cp-2
    """
    model = _model(cluster)
    via = via or next(n for n in _control_planes(model) if n != node)
    timeout = int(model["upgrade"]["drain_timeout"])
    kubectl(via, "cordon", node)
    kubectl(
        via,
        "drain",
        node,
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        f"--timeout={timeout}s",
        timeout=timeout + 60,
    )
    return {"result": True, "comment": f"{node} cordoned and drained"}


def uncordon(cluster: str, node: str, via=None) -> dict:
    """
    Uncordon ``node`` through control plane ``via``.

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_node.uncordon lab cp-2
    """
    model = _model(cluster)
    via = via or next(n for n in _control_planes(model) if n != node)
    kubectl(via, "uncordon", node)
    return {"result": True, "comment": f"{node} uncordoned"}


def ready_at(cluster: str, node: str, version: str, via=None) -> bool:
    """
    Whether Node ``node`` is Ready with kubelet ``version``.

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_node.ready_at lab cp-2 1.31.0
    """
    model = _model(cluster)
    via = via or next(n for n in _control_planes(model) if n != node)
    for item in _ask(via, "apiserver.nodes", timeout=30):
        if item["name"] == node:
            return bool(item["ready"] and item["kubelet_version"] == _v(version))
    return False


def control_plane_at(cluster: str, node: str, version: str) -> bool:
    """
    Whether control plane ``node`` runs its static pods at ``version`` and its own
    kube-apiserver answers ``/readyz``.

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_node.control_plane_at lab cp-2 1.31.0
    """
    model = _model(cluster)
    ip = next(n["ip"] for n in model["control_plane"] if n["name"] == node)
    if _ask(node, "kubeadm_upgrade.node_version", timeout=30) != _v(version):
        return False
    server = f"https://{ip}:{model['apiserver']['port']}"
    return bool(_ask(node, "apiserver.readyz", server=server, timeout=30).get("ok"))
