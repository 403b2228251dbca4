"""
Health gates for orchestrations: each one asks the nodes (through the master) whether the
cluster is where the next step needs it, polls until a deadline, and fails with a message
that says which node, what was seen and what to do.

A gate returns ``{"result": True, "comment": ...}`` or, when it gives up,
``{"result": False, "Error": ..., "retcode": 1}``: the ``Error`` key fails a ``salt.runner``
orchestration step, ``retcode`` the ``salt-run`` exit status.

CLI Example:

.. code-block:: bash

    salt-run kubeha_gate.reachable lab
    salt-run kubeha_gate.etcd_healthy lab nodes='[cp-1, cp-2, cp-3]'
    salt-run kubeha_gate.final lab
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger(__name__)

POLL_S = 2.0


class GateFailed(Exception):
    """The gate's condition did not hold before its deadline."""


def _model(cluster: str) -> dict:
    return __salt__["kubeha.model"](cluster)


def _call(nodes, fun: str, *args, timeout: float = 30, **kwargs) -> dict:
    """{node: (ok, return)} for every node asked (kubeha_minions.ask)."""
    return __utils__["kubeha_minions.ask"](__opts__, nodes, fun, *args, timeout=timeout, **kwargs)


def _poll(check, wait: float) -> dict:
    """Call check() until it returns a dict or the deadline passes; keep the last failure."""
    deadline = time.monotonic() + float(wait)
    while True:
        try:
            return check()
        except GateFailed as err:
            if time.monotonic() >= deadline:
                raise
            log.debug("gate not yet: %s", err)
            time.sleep(POLL_S)


def _outcome(name: str, check, wait: float) -> dict:
    started = time.monotonic()
    try:
        detail = _poll(check, wait)
    except GateFailed as err:
        msg = f"{name}: {err}"
        return {"result": False, "retcode": 1, "Error": msg, "comment": msg}
    took = time.monotonic() - started
    return {"result": True, "comment": f"{name}: {detail.pop('comment')} ({took:.1f} s)", **detail}


def reachable(cluster: str, wait: float = 30) -> dict:
    """
    Every node of the cluster answers its minion, and the VIP fits every control plane's
    real network (``kubeha.network_problems``).

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_gate.reachable lab
    """
    model = _model(cluster)
    nodes = [n["name"] for n in model["control_plane"] + (model.get("workers") or [])]

    def check():
        answers = _call(nodes, "test.ping", timeout=10)
        silent = [n for n, (ok, ret) in answers.items() if not (ok and ret is True)]
        if silent:
            raise GateFailed(
                f"{', '.join(silent)} did not answer test.ping. Check that the machine is "
                "up, its salt-minion runs and its key is accepted (salt-key -L), then run "
                "the orchestration again."
            )
        return {"comment": f"all {len(nodes)} nodes answer", "nodes": nodes}

    outcome = _outcome("reachable", check, wait)
    if not outcome["result"]:
        return outcome
    # The pillar's VIP and prefix against each control plane's real network: a VIP that
    # VRRP cannot move, found before any change rather than by keepalived at runtime.
    problems = __salt__["kubeha.network_problems"](cluster)
    if problems:
        listing = "\n".join(f"  - {p}" for p in problems)
        msg = f"reachable: the nodes' networks disagree with the pillar:\n{listing}"
        return {"result": False, "retcode": 1, "Error": msg, "comment": msg}
    return outcome


def existing_cluster(cluster: str, adopt: bool = False) -> dict:
    """
    Refuse to bootstrap over a cluster this pillar does not describe: a node that already
    runs kubeadm with another cluster name or endpoint, or a joined node beside a fresh init
    node. A cluster matching the pillar passes (re-runs only verify); ``adopt=True`` passes
    anyway.

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_gate.existing_cluster lab
    """
    model = _model(cluster)
    init = model["derived"]["init_node"]
    cps = [n["name"] for n in model["control_plane"]]
    # A node that runs a cluster has the kubelet's kubeconfig that kubeadm init/join writes.
    # Asked with the file module: on bare nodes kubeadm (and our kubeadm modules) are not
    # installed yet.
    members = _call(cps, "file.file_exists", "/etc/kubernetes/kubelet.conf", timeout=30)
    joined = sorted(n for n, (ok, ret) in members.items() if ok and ret)
    failed = {n: ret for n, (ok, ret) in members.items() if not ok}
    if failed:
        return _refuse(f"could not ask {sorted(failed)} about kubeadm: {failed}")
    if not joined:
        return {"result": True, "comment": f"no node of {cluster} runs a cluster yet: bootstrap"}
    if init not in joined:
        return _refuse(
            f"{', '.join(joined)} already belong to a cluster but the init node {init} does "
            f"not: they are left over from another cluster. Run `kubeadm reset -f` on them "
            "(and clean /etc/cni/net.d), or list the right init node first in pillar."
        )
    ok, cfg = _call(
        init,
        "cmd.run_all",
        [
            "kubectl",
            "--kubeconfig=/etc/kubernetes/admin.conf",
            "-n",
            "kube-system",
            "get",
            "configmap",
            "kubeadm-config",
            "-o",
            "jsonpath={.data.ClusterConfiguration}",
        ],
        python_shell=False,
        timeout=60,
    )[init]
    if not ok or cfg.get("retcode") != 0:
        detail = cfg if not ok else cfg.get("stderr")
        return _refuse(
            f"{init} has a kubeadm cluster whose kubeadm-config cannot be read: {detail}"
        )
    text = cfg["stdout"]
    want = {
        "clusterName": model["cluster"]["name"],
        "controlPlaneEndpoint": model["derived"]["control_plane_endpoint"],
    }
    seen = {k: _yaml_field(text, k) for k in want}
    if seen != want and not adopt:
        return _refuse(
            f"{init} already runs a cluster {seen} that is not this pillar's {want}. "
            "Pass pillar adopt=true to manage it as it is, or reset the nodes first."
        )
    note = "adopted" if seen != want else "matches the pillar"
    return {
        "result": True,
        "comment": f"cluster {cluster} already exists on {', '.join(joined)} and {note}: "
        "this run checks and completes it",
        "joined": joined,
    }


def _yaml_field(text: str, key: str) -> str | None:
    for line in text.splitlines():
        if line.startswith(f"{key}:"):
            return line.split(":", 1)[1].strip().strip("\"'")
    return None


def _refuse(msg: str) -> dict:
    msg = f"existing cluster: {msg}"
    return {"result": False, "retcode": 1, "Error": msg, "comment": msg}


def etcd_healthy(cluster: str, nodes, wait: float = 180, via: str | None = None) -> dict:
    """
    Every listed node is a started etcd member, and every member (listed or not) is started
    and healthy, asked from ``via`` (default: the first listed node). A half-joined member
    left by a failed join fails this gate instead of hiding behind the count.

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_gate.etcd_healthy lab nodes='[cp-1, cp-2, cp-3]'
    """
    nodes = [nodes] if isinstance(nodes, str) else list(nodes)
    via = via or nodes[0]

    def check():
        ok, listed = _call(via, "etcdctl.member_list", timeout=30)[via]
        if not ok:
            raise GateFailed(f"etcd member list on {via} failed: {listed}")
        # kubeadm names each stacked member after its node; an unstarted member has no name.
        names = [m.get("name") or "(unstarted)" for m in listed]
        missing = [n for n in nodes if n not in names]
        if missing or "(unstarted)" in names:
            raise GateFailed(f"etcd members are {names}; expected started members for {nodes}")
        ok, health = _call(via, "etcdctl.endpoint_health", timeout=30)[via]
        if not ok:
            raise GateFailed(f"etcd endpoint health on {via} failed: {health}")
        sick = [f"{h.get('endpoint')} ({h.get('error')})" for h in health if not h.get("healthy")]
        if sick:
            raise GateFailed(f"etcd members not healthy: {sick}")
        return {"comment": f"etcd members {names} started and healthy", "etcd": listed}

    return _outcome("etcd", check, wait)


def apiservers_ready(cluster: str, nodes, wait: float = 180) -> dict:
    """
    ``GET /readyz`` answers 200 on each listed node's own apiserver (its IP and port).

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_gate.apiservers_ready lab nodes='[cp-1, cp-2]'
    """
    model = _model(cluster)
    port = model["apiserver"]["port"]
    ips = {n["name"]: n["ip"] for n in model["control_plane"]}
    nodes = [nodes] if isinstance(nodes, str) else list(nodes)

    def check():
        not_ready = {}
        for node in nodes:
            ok, ret = _call(node, "apiserver.readyz", server=f"https://{ips[node]}:{port}")[node]
            if not ok or not ret.get("ok"):
                failing = ret.get("failed") if isinstance(ret, dict) else ret
                not_ready[node] = failing
        if not_ready:
            raise GateFailed(f"/readyz not ready on {not_ready}")
        return {"comment": f"/readyz 200 on {', '.join(nodes)}"}

    return _outcome("apiservers", check, wait)


def control_plane_ready(cluster: str, nodes, wait: float = 300) -> dict:
    """
    The gate between joins: etcd has one started, healthy member per listed node, and
    every listed node's apiserver is ready.

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_gate.control_plane_ready lab nodes='[cp-1, cp-2]'
    """
    nodes = [nodes] if isinstance(nodes, str) else list(nodes)
    etcd = etcd_healthy(cluster, nodes, wait=wait)
    if not etcd["result"]:
        return etcd
    api = apiservers_ready(cluster, nodes, wait=wait)
    if not api["result"]:
        return api
    return {"result": True, "comment": f"{etcd['comment']}; {api['comment']}"}


def final(cluster: str, wait: float = 300) -> dict:
    """
    The cluster as the pillar describes it: the API answers through the VIP, one node holds
    the VIP, every HAProxy sees every apiserver UP, etcd has all members and a leader, all
    Nodes are Ready at the version each should run (pillar's, or the newer one an upgrade
    recorded on the node: kubeha_status.wanted_versions), and the controller-manager and
    scheduler Leases have holders. Returns the snapshot it passed on.

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_gate.final lab
    """
    model = _model(cluster)

    def check():
        snap = __salt__["kubeha_status.snapshot"](cluster)
        missing = __salt__["kubeha_status.problems"](cluster, snap, model)
        if missing:
            raise GateFailed("; ".join(missing))
        holders = {lease["name"]: lease["holder_node"] for lease in snap["leases"]}
        wanted = __salt__["kubeha_status.wanted_versions"](model, snap)
        versions = ", ".join(sorted(set(wanted.values())))
        return {
            "comment": f"cluster {cluster} healthy: VIP answers, "
            f"{len(model['control_plane'])} etcd members, all Nodes Ready at "
            f"{versions}, Lease holders {holders}",
            "snapshot": snap,
        }

    return _outcome("final", check, wait)
