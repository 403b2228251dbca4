"""
States over the etcdctl / etcd_snapshot modules: ``healthy`` (a check, never a
change), ``snapshot_saved``, ``defragmented``.

.. code-block:: yaml

    kubeha-etcd-snapshot:
      etcdctl.snapshot_saved:
        - name: /var/backups/etcd/before-upgrade.db
"""

import time
from pathlib import Path

from salt.exceptions import CommandExecutionError

__virtualname__ = "etcdctl"


def __virtual__():
    if "etcdctl.member_list" in __salt__:
        return __virtualname__
    return (False, "etcdctl state: the etcdctl execution module is not available")


def _ret(name: str) -> dict:
    return {"name": name, "result": True, "changes": {}, "comment": ""}


def healthy(name="etcd", endpoints=None):
    """
    Every member answers a quorum read; fails (with who and why) otherwise.

    Example:

    .. code-block:: yaml

        kubeha-etcd-healthy:
          etcdctl.healthy
    """
    ret = _ret(name)
    try:
        health = __salt__["etcdctl.endpoint_health"](endpoints)
    except CommandExecutionError as err:
        ret.update(result=False, comment=str(err))
        return ret
    sick = [f"{h['endpoint']}: {h['error'] or 'unhealthy'}" for h in health if not h["healthy"]]
    if sick:
        ret.update(result=False, comment="Unhealthy etcd member(s): " + "; ".join(sick))
    else:
        ret["comment"] = f"All {len(health)} etcd members are healthy"
    return ret


def snapshot_saved(name, max_age=None, endpoint=None):
    """
    A verified snapshot at ``name``; taken again when missing, unreadable or older than
    ``max_age`` seconds.

    Example:

    .. code-block:: yaml

        kubeha-etcd-snapshot-before-upgrade:
          etcdctl.snapshot_saved:
            - name: /var/backups/etcd/before-v1.31.0.db
            - max_age: 3600
    """
    ret = _ret(name)
    path = Path(name)
    if path.is_file():
        age = time.time() - path.stat().st_mtime
        if max_age is None or age <= float(max_age):
            try:
                info = __salt__["etcd_snapshot.status"](name)
                ret["comment"] = (
                    f"Snapshot {name} exists ({info['total_keys']} keys, {int(age)} s old)"
                )
                return ret
            except CommandExecutionError:
                pass  # unreadable: take a new one
    if __opts__["test"]:
        ret.update(
            result=None, changes={"saved": name}, comment=f"A snapshot would be saved to {name}"
        )
        return ret
    try:
        info = __salt__["etcd_snapshot.save"](name, endpoint)
    except CommandExecutionError as err:
        ret.update(result=False, comment=str(err))
        return ret
    ret.update(
        changes={"saved": name, **{k: info[k] for k in ("revision", "total_keys", "sha256")}},
        comment=f"Saved and verified {info['total_keys']} keys at revision {info['revision']}",
    )
    return ret


def defragmented(name="etcd", max_fragmented=0.5, min_db_size=64 * 1024 * 1024, endpoints=None):
    """
    Defragment the members (one at a time, leader last, refusing when quorum would be at
    risk) when a member's DB is bigger than ``min_db_size`` bytes and more than
    ``max_fragmented`` of it is free space.

    Example:

    .. code-block:: yaml

        kubeha-etcd-defragmented:
          etcdctl.defragmented:
            - max_fragmented: 0.5
            - min_db_size: 67108864
    """
    ret = _ret(name)
    try:
        status = __salt__["etcdctl.endpoint_status"](endpoints)
    except CommandExecutionError as err:
        ret.update(result=False, comment=str(err))
        return ret
    down = [s["endpoint"] for s in status if not s.get("reachable")]
    if down:
        ret.update(result=False, comment=f"Unreachable etcd member(s): {', '.join(down)}")
        return ret
    wasteful = [
        s["endpoint"]
        for s in status
        if s["db_size"] >= int(min_db_size)
        and 1 - s["db_size_in_use"] / max(s["db_size"], 1) > float(max_fragmented)
    ]
    if not wasteful:
        ret["comment"] = "No member needs a defragmentation"
        return ret
    if __opts__["test"]:
        try:
            plan = __salt__["etcdctl.defrag_plan"](endpoints)
        except CommandExecutionError as err:
            ret.update(result=False, comment=str(err))
            return ret
        if not plan["ok"]:
            ret.update(result=False, comment=f"Would refuse to defragment: {plan['reason']}")
            return ret
        ret.update(
            result=None,
            changes={"defragment": plan["order"]},
            comment=f"Would defragment {len(plan['order'])} members, leader last",
        )
        return ret
    try:
        done = __salt__["etcdctl.defrag"](endpoints)
    except CommandExecutionError as err:
        ret.update(result=False, comment=str(err))
        return ret
    ret.update(changes={"defragmented": done}, comment=f"Defragmented {len(done)} members")
    return ret
