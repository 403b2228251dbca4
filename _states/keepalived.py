"""
State over the keepalived module: ``priority`` of this node in a VRRP instance, kept in
the grain ``kubeha_vrrp_priority`` and the live config, applied with a reload.

.. code-block:: yaml

    kubeha-lb-keepalived-priority-override:
      keepalived.priority:
        - name: VI_1
        - priority: 150
"""

from salt.exceptions import CommandExecutionError

__virtualname__ = "keepalived"

GRAIN = "kubeha_vrrp_priority"


def __virtual__():
    if "keepalived.set_priority" in __salt__:
        return __virtualname__
    return (False, "keepalived state: the keepalived execution module is not available")


def priority(name="VI_1", priority=None, persist=True):  # noqa: A002 (the operator's word)
    """
    This node's VRRP priority in instance ``name``; a reload, never a restart.

    Example:

    .. code-block:: yaml

        kubeha-vrrp-hand-over-before-maintenance:
          keepalived.priority:
            - name: VI_1
            - priority: 50
    """
    ret = {"name": name, "result": True, "changes": {}, "comment": ""}
    if priority is None:
        ret.update(result=False, comment="priority is required")
        return ret
    wanted = int(priority)
    try:
        configured = __salt__["keepalived.configured_priority"](name)
    except (CommandExecutionError, OSError) as err:
        ret.update(result=False, comment=str(err))
        return ret
    grain = __salt__["grains.get"](GRAIN, None)
    grain_ok = not persist or (grain is not None and int(grain) == wanted)
    if configured == wanted and grain_ok:
        ret["comment"] = f"{name} priority is already {wanted}"
        return ret
    changes = {"old": configured, "new": wanted}
    if persist and not grain_ok:
        changes["grain"] = {"old": grain, "new": wanted}
    if __opts__["test"]:
        ret.update(
            result=None,
            changes=changes,
            comment=f"{name} priority would be set to {wanted} (reload)",
        )
        return ret
    try:
        out = __salt__["keepalived.set_priority"](wanted, name, persist)
    except CommandExecutionError as err:
        ret.update(result=False, comment=str(err))
        return ret
    ret.update(
        changes=changes,
        comment=f"{name} priority set to {wanted}; {out.get('how', 'config unchanged')}",
    )
    return ret
