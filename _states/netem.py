"""
States over the netem module: ``present`` (a fault on an interface, exactly these
parameters) and ``absent``.

.. code-block:: yaml

    kubeha-chaos-latency:
      netem.present:
        - name: ens160
        - delay: 200ms
        - loss: 20
        - duration: 60
"""

import math

from salt.exceptions import CommandExecutionError

__virtualname__ = "netem"

KEYS = ("delay", "jitter", "loss", "duplicate", "corrupt", "rate")


def __virtual__():
    if "netem.show" in __salt__:
        return __virtualname__
    return (False, "netem state: the netem execution module is not available")


def _current(shown: dict) -> dict:
    if shown.get("qdisc"):
        return {k: v for k, v in shown["qdisc"].items() if k in KEYS and v}
    state = shown.get("state") or {}
    if state.get("backend") == "nfqueue":
        found = {
            "delay": state.get("delay_ms"),
            "jitter": state.get("jitter_ms"),
            "loss": state.get("loss_pct"),
        }
        return {k: v for k, v in found.items() if v}
    return {}


def _same(current: dict, wanted: dict) -> bool:
    if set(current) != set(wanted):
        return False
    for key, want in wanted.items():
        have = current[key]
        if isinstance(want, float):
            if not math.isclose(float(have), want, rel_tol=1e-3, abs_tol=1e-3):
                return False
        elif str(have).lower() != str(want).lower():
            return False
    return True


def present(
    name,
    delay=None,
    jitter=None,
    loss=None,
    *,
    duplicate=None,
    corrupt=None,
    rate=None,
    duration=None,
    backend="auto",
    netns=None,
):
    """
    The interface carries exactly this fault (added, or changed when different).

    Example:

    .. code-block:: yaml

        kubeha-chaos-ens160-slow:
          netem.present:
            - name: ens160
            - delay: 200ms
            - loss: 20%
            - duration: 60
    """
    ret = {"name": name, "result": True, "changes": {}, "comment": ""}
    try:
        wanted = __salt__["netem.normalize"](
            delay, jitter, loss, duplicate=duplicate, corrupt=corrupt, rate=rate
        )
        wanted = {k: v for k, v in wanted.items() if v}
        shown = __salt__["netem.show"](name, netns=netns)
    except CommandExecutionError as err:
        ret.update(result=False, comment=str(err))
        return ret
    current = _current(shown) if shown["active"] else {}
    if shown["active"] and _same(current, wanted):
        ret["comment"] = f"{name} already has {wanted} ({shown['backend']})"
        return ret
    action = "change" if shown["active"] else "add"
    changes = {"old": current or None, "new": wanted}
    if __opts__["test"]:
        ret.update(result=None, changes=changes, comment=f"netem.{action} would run on {name}")
        return ret
    kwargs = {
        "duplicate": duplicate,
        "corrupt": corrupt,
        "rate": rate,
        "duration": duration,
        "netns": netns,
    }
    try:
        if action == "add":
            out = __salt__["netem.add"](name, delay, jitter, loss, backend=backend, **kwargs)
        else:
            out = __salt__["netem.change"](name, delay, jitter, loss, **kwargs)
    except CommandExecutionError as err:
        ret.update(result=False, comment=str(err))
        return ret
    changes["backend"] = out.get("backend")
    if out.get("expires"):
        changes["expires"] = out["expires"]
    ret.update(changes=changes, comment=f"netem.{action} on {name} ({out.get('backend')})")
    return ret


def absent(name, netns=None):
    """
    No fault on the interface (qdisc, nfqueue daemon and rules removed).

    Example:

    .. code-block:: yaml

        kubeha-chaos-ens160-clean:
          netem.absent:
            - name: ens160
    """
    ret = {"name": name, "result": True, "changes": {}, "comment": ""}
    try:
        shown = __salt__["netem.show"](name, netns=netns)
    except CommandExecutionError as err:
        ret.update(result=False, comment=str(err))
        return ret
    if not shown["active"]:
        ret["comment"] = f"{name} has no netem fault"
        return ret
    if __opts__["test"]:
        ret.update(
            result=None,
            changes={"removed": shown["backend"]},
            comment=f"The {shown['backend']} fault on {name} would be removed",
        )
        return ret
    try:
        out = __salt__["netem.clear"](name, netns=netns)
    except CommandExecutionError as err:
        ret.update(result=False, comment=str(err))
        return ret
    ret.update(changes={"removed": out["removed"]}, comment=f"Cleared {name}")
    return ret
