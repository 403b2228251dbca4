"""
States over the kubeadm modules: ``initialized``, ``joined``, ``upgraded``,
``certs_fresh``. Each reads first, reports what it would do under ``test=True``, and
never puts a join secret in its return.

.. code-block:: yaml

    kubeha-kubeadm-init:
      kubeadm.initialized:
        - name: /etc/kubernetes/kubeadm/kubeadm-config.yaml

    kubeha-kubeadm-certs-fresh:
      kubeadm.certs_fresh:
        - min_days: 30
"""

from salt.exceptions import CommandExecutionError

__virtualname__ = "kubeadm"


def __virtual__():
    if "kubeadm.version" in __salt__:
        return __virtualname__
    return (False, "kubeadm state: the kubeadm execution module is not available")


def _ret(name: str) -> dict:
    return {"name": name, "result": True, "changes": {}, "comment": ""}


def initialized(
    name="/etc/kubernetes/kubeadm/kubeadm-config.yaml",
    upload_certs=True,
    ignore_preflight_errors=None,
):
    """
    ``kubeadm init`` with this config, once: nothing to do when the node already runs a
    control plane.

    Example:

    .. code-block:: yaml

        kubeha-kubeadm-initialized:
          kubeadm.initialized:
            - name: /etc/kubernetes/kubeadm/kubeadm-config.yaml
            - upload_certs: true
    """
    ret = _ret(name)
    if __salt__["kubeadm.is_initialized"]():
        ret["comment"] = "The control plane is already initialized"
        return ret
    if __opts__["test"]:
        ret.update(
            result=None,
            comment=f"kubeadm init --config {name} would run",
            changes={"initialized": True},
        )
        return ret
    try:
        out = __salt__["kubeadm.init"](name, upload_certs, ignore_preflight_errors)
    except CommandExecutionError as err:
        ret.update(result=False, comment=str(err))
        return ret
    out.pop("output", None)
    ret.update(
        changes={"initialized": True, **out},
        comment=f"Initialized; join data kept in {out['join_data_file']} (0600)",
    )
    return ret


def joined(
    name,
    sealed=None,
    control_plane=False,
    *,
    join_file=None,
    config=None,
    advertise_address=None,
    bind_port=None,
    cri_socket=None,
    ignore_preflight_errors=None,
):
    """
    ``kubeadm join`` this node (``name`` is its node name), once. The secrets come
    ``sealed`` by ``kubeadm_secrets.join_data`` (or from a 0600 ``join_file``); the orchestration
    (``kubeha_join.join``) passes the sealed blob, never the token in clear.

    Example:

    .. code-block:: yaml

        kubeha-kubeadm-joined:
          kubeadm.joined:
            - name: cp-4
            - join_file: /etc/kubernetes/kubeadm/join-data.json
            - control_plane: true
            - config: /etc/kubernetes/kubeadm/join-config.yaml
    """
    ret = _ret(name)
    if __salt__["kubeadm_join.is_joined"](control_plane):
        ret["comment"] = "The node has already joined"
        return ret
    role = "control plane" if control_plane else "worker"
    if __opts__["test"]:
        ret.update(result=None, comment=f"{name} would join as a {role}", changes={"joined": role})
        return ret
    try:
        out = __salt__["kubeadm_join.join"](
            sealed,
            control_plane,
            join_file=join_file,
            config=config,
            advertise_address=advertise_address,
            bind_port=bind_port,
            node_name=name,
            cri_socket=cri_socket,
            ignore_preflight_errors=ignore_preflight_errors,
        )
    except CommandExecutionError as err:
        ret.update(result=False, comment=str(err))
        return ret
    ret.update(changes={"joined": role, "endpoint": out["endpoint"]}, comment=f"Joined as a {role}")
    return ret


def _v(version: str) -> tuple:
    return tuple(int(x) for x in str(version).lstrip("v").split("-")[0].split(".")[:3])


def upgraded(name, first=False, config=None):
    """
    This node at Kubernetes ``name`` (e.g. ``v1.31.0``): ``kubeadm upgrade apply`` when
    ``first`` (the first control plane), else ``kubeadm upgrade node``. The kubeadm
    package must already be at the target version.

    Example:

    .. code-block:: yaml

        kubeha-kubeadm-upgraded:
          kubeadm.upgraded:
            - name: v1.31.0
            - first: true
            - config: /etc/kubernetes/kubeadm/upgrade-config.yaml
    """
    ret = _ret(name)
    target = "v" + str(name).lstrip("v")
    try:
        current = __salt__["kubeadm_upgrade.node_version"]()
        tool = __salt__["kubeadm.version"]()
    except CommandExecutionError as err:
        ret.update(result=False, comment=str(err))
        return ret
    if current and _v(current) >= _v(target):
        ret["comment"] = f"The node already runs {current}"
        return ret
    if _v(tool)[:2] != _v(target)[:2] or _v(tool) < _v(target):
        ret.update(
            result=False, comment=f"kubeadm is {tool}: install the {target} kubeadm package first"
        )
        return ret
    action = "kubeadm upgrade apply" if first else "kubeadm upgrade node"
    changes = {"old": current, "new": target, "action": action}
    if __opts__["test"]:
        ret.update(result=None, changes=changes, comment=f"{action} {target} would run")
        return ret
    try:
        if first:
            __salt__["kubeadm_upgrade.apply"](target, config=config)
        else:
            __salt__["kubeadm_upgrade.node"](target, config=config)
    except CommandExecutionError as err:
        ret.update(result=False, comment=str(err))
        return ret
    ret.update(changes=changes, comment=f"Upgraded to {target} with {action}")
    return ret


def certs_fresh(name="kubeadm-certs", min_days=30, restart_static_pods=True):
    """
    Renew every kubeadm certificate with fewer than ``min_days`` days left, then restart
    the control-plane static pods so they load the new ones.

    Example:

    .. code-block:: yaml

        kubeha-kubeadm-certs-fresh:
          kubeadm.certs_fresh:
            - min_days: 30
    """
    ret = _ret(name)
    try:
        stale = __salt__["kubeadm_certs.expiring"](min_days)
    except CommandExecutionError as err:
        ret.update(result=False, comment=str(err))
        return ret
    if not stale:
        ret["comment"] = f"Every certificate has at least {min_days} days left"
        return ret
    if __opts__["test"]:
        ret.update(
            result=None,
            changes={"renew": stale},
            comment=f"{len(stale)} certificate(s) would be renewed",
        )
        return ret
    try:
        __salt__["kubeadm_certs.renew"](stale)
        restarted = __salt__["kubeadm_certs.restart_static_pods"]() if restart_static_pods else []
        left = __salt__["kubeadm_certs.expiring"](min_days)
    except CommandExecutionError as err:
        ret.update(result=False, comment=str(err))
        return ret
    ret["changes"] = {"renewed": stale, "restarted": [r["name"] for r in restarted]}
    if left:
        ret.update(result=False, comment=f"Still expiring after renewal: {', '.join(left)}")
    else:
        ret["comment"] = f"Renewed {len(stale)} certificate(s)"
    return ret
