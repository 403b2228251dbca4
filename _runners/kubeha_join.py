"""
Join a node to a kubeha cluster, handing the join secrets over through the master sealed
to that one minion (see docs/modules.md, "Join secrets"): the joiner gives its public key,
the init node seals a fresh token (and, for a control plane, the certificate key) for it,
the joiner opens them and runs ``kubeadm join`` from a 0600 config. Job returns, the event
bus and logs only ever carry ciphertext.

Idempotent: a node that already joined is left alone and the return says so.

CLI Example:

.. code-block:: bash

    salt-run kubeha_join.join lab cp-2
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

JOIN_CONFIG = "/etc/kubernetes/kubeadm/join-config.yaml"


def _cmd(node: str, fun: str, *args, timeout: float = 60, **kwargs):
    (ok, ret) = __utils__["kubeha_minions.ask"](
        __opts__, node, fun, *args, timeout=timeout, **kwargs
    )[node]
    if not ok:
        raise _Failed(ret if str(ret).startswith(node) else f"{fun} on {node} failed: {ret}")
    return ret


class _Failed(Exception):
    pass


def _fail(node: str, cluster: str, msg: str, init: str) -> dict:
    text = (
        f"join of {node} stopped: {msg}. The cluster keeps serving on the nodes already "
        f"joined. Look at {node} (journalctl -u kubelet; kubeadm's output above), fix it, "
        f"run `kubeadm reset -f` on {node} if it got half way, then run "
        f'`salt-run state.orch orch.bootstrap pillar=\'{{"cluster": "{cluster}"}}\'` '
        f"again: nodes already joined are skipped. (Init node: {init}.)"
    )
    return {"result": False, "retcode": 1, "Error": text, "comment": text}


def join(cluster: str, node: str, timeout: float = 900) -> dict:
    """
    Join ``node`` to the cluster: as a control plane if pillar lists it in
    ``control_plane``, else as a worker.

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_join.join lab cp-3
    """
    model = __salt__["kubeha.model"](cluster)
    init = model["derived"]["init_node"]
    control_plane = node in [n["name"] for n in model["control_plane"]]
    role = "control plane" if control_plane else "worker"
    if node == init:
        return {"result": True, "comment": f"{node} is the init node; nothing to join"}
    try:
        if _cmd(node, "kubeadm_join.is_joined", control_plane, timeout=30):
            return {"result": True, "comment": f"{node} already joined as a {role}"}
        recipient = _cmd(node, "kubeadm_join.recipient", timeout=30)
        data = _cmd(init, "kubeadm.join_data", recipient, control_plane=control_plane, timeout=180)
        log.info("kubeha: joining %s as a %s through %s", node, role, data.get("endpoint"))
        ret = _cmd(
            node,
            "state.single",
            "kubeadm.joined",
            node,
            sealed=data["sealed"],
            control_plane=control_plane,
            config=JOIN_CONFIG,
            ignore_preflight_errors=",".join(model["kubeadm"]["ignore_preflight_errors"]) or None,
            timeout=timeout,
        )
    except _Failed as err:
        return _fail(node, cluster, str(err), init)
    (state,) = ret.values() if isinstance(ret, dict) and ret else ({"result": False},)
    if not state.get("result"):
        return _fail(node, cluster, state.get("comment", str(ret)), init)
    return {"result": True, "comment": f"{node}: {state.get('comment')}", "role": role}
