"""
Join a node to a kubeha cluster, handing the join secrets over through the master sealed
to that one minion (see docs/modules.md, "Join secrets"): the master reads the joiner's
public key from its own PKI (the key it accepted for that minion id, not what the minion
says), the init node seals a fresh token (and, for a control plane, the certificate key)
for that key and id, the joiner opens them and runs ``kubeadm join`` from a 0600 config.
Job returns, the event bus and logs only ever carry ciphertext. After the last join,
``forget`` deletes the token, the uploaded certificates and the stored join data.

Idempotent: a node that already joined is left alone and the return says so.

CLI Example:

.. code-block:: bash

    salt-run kubeha_join.join lab cp-2
    salt-run kubeha_join.forget lab
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)


def _cmd(node: str, fun: str, *args, timeout: float = 60, **kwargs):
    (ok, ret) = __utils__["kubeha_minions.ask"](
        __opts__, node, fun, *args, timeout=timeout, **kwargs
    )[node]
    if not ok:
        raise _Failed(ret if str(ret).startswith(node) else f"{fun} on {node} failed: {ret}")
    return ret


class _Failed(Exception):
    pass


def _accepted_key(node: str) -> str:
    """The public key the master accepted for minion ``node`` (its PKI's minions/ dir)."""
    path = Path(__opts__["pki_dir"]) / "minions" / node
    try:
        return path.read_text()
    except OSError as err:
        raise _Failed(
            f"the master has no accepted key for {node} ({path}: {err.strerror}); "
            f"accept it first (salt-key -a {node})"
        ) from err


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
    join_config = f"{model['kubeadm']['config_dir']}/join-config.yaml"
    control_plane = node in [n["name"] for n in model["control_plane"]]
    role = "control plane" if control_plane else "worker"
    if node == init:
        return {"result": True, "comment": f"{node} is the init node; nothing to join"}
    try:
        if _cmd(node, "kubeadm_join.is_joined", control_plane, timeout=30):
            return {"result": True, "comment": f"{node} already joined as a {role}"}
        data = _cmd(
            init,
            "kubeadm_secrets.join_data",
            _accepted_key(node),
            node,
            control_plane=control_plane,
            timeout=180,
        )
        log.info("kubeha: joining %s as a %s through %s", node, role, data.get("endpoint"))
        ret = _cmd(
            node,
            "state.single",
            "kubeadm.joined",
            node,
            sealed=data["sealed"],
            control_plane=control_plane,
            config=join_config,
            ignore_preflight_errors=",".join(model["kubeadm"]["ignore_preflight_errors"]) or None,
            timeout=timeout,
        )
    except _Failed as err:
        return _fail(node, cluster, str(err), init)
    (state,) = ret.values() if isinstance(ret, dict) and ret else ({"result": False},)
    if not state.get("result"):
        return _fail(node, cluster, state.get("comment", str(ret)), init)
    return {"result": True, "comment": f"{node}: {state.get('comment')}", "role": role}


def forget(cluster: str) -> dict:
    """
    After the last join: delete the join token, the ``kubeadm-certs`` Secret and the
    stored join data on the init node (``kubeadm_secrets.forget``). orch.bootstrap runs it
    once every node has joined; a later join makes fresh ones.

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_join.forget lab
    """
    model = __salt__["kubeha.model"](cluster)
    init = model["derived"]["init_node"]
    try:
        ret = _cmd(init, "kubeadm_secrets.forget", timeout=120)
    except _Failed as err:
        text = (
            f"could not delete the join secrets on {init}: {err}. They expire by themselves "
            f"(token 1 h, uploaded certificates 2 h); run `salt-run kubeha_join.forget "
            f"{cluster}` again once {init} answers."
        )
        return {"result": False, "retcode": 1, "Error": text, "comment": text}
    done = [
        what
        for what, flag in (
            (f"bootstrap token {ret.get('deleted_token')}", ret.get("deleted_token")),
            ("Secret kube-system/kubeadm-certs", ret.get("kubeadm_certs_deleted")),
            ("join-data.json", ret.get("join_data_removed")),
        )
        if flag
    ]
    comment = f"deleted on {init}: {', '.join(done)}" if done else "no join secrets left"
    return {"result": True, "comment": comment, **ret}
