"""
Network faults on one interface's egress: delay, jitter, loss (and, with ``tc``,
duplicate, corrupt, rate), cleared automatically after a duration.

Two backends:

- ``tc``: the kernel's netem qdisc (``tc qdisc add dev IF root netem ...``). Needs the
  ``sch_netem`` module; on Ubuntu's -kvm/-virtual kernels it ships in
  ``linux-modules-extra-$(uname -r)``, and some kernels lack it entirely.
- ``nfqueue``: a small daemon (``_utils/netem_nfqueue.py``, pure Python, the minion's
  own interpreter) holds or drops the packets an iptables NFQUEUE rule scoped to the
  interface hands it. Delay, jitter and loss only.

``backend=auto`` (the default) picks ``tc`` when the kernel has netem, else ``nfqueue``.

The automatic clear must survive the caller dying (a Salt job that times out, a master
that goes away): it runs as a systemd transient unit where systemd runs, else as a
detached process in its own session. The nfqueue daemon removes its own rules when the
duration ends or it is stopped; ``clear`` removes them by their comment even after a
SIGKILL, and the rule fails open (``--queue-bypass``) while no daemon listens.

Helpers (through ``__utils__``): parameters and tc command lines in
``_utils/netem_tc.py``; what gets started and how (systemd-run or detached) in
``_utils/netem_launch.py``; state files and recorded processes in
``_utils/netem_procs.py`` (a PID from a state file is signalled only while its recorded
start time still matches: PIDs get reused).

Settings (``config.get``)::

    netem:
      state_dir: /run/kubeha/netem
"""

import os
import shutil
import sys
import time
import uuid
from pathlib import Path

from salt.exceptions import CommandExecutionError

__virtualname__ = "netem"

NFQUEUE_PARAMS = {"delay", "jitter", "loss"}
QUEUE_BASE = 4200


def __virtual__():
    if shutil.which("tc") or shutil.which("iptables"):
        return __virtualname__
    return (False, "netem module: neither tc (iproute2) nor iptables is installed")


def _u(name: str):
    return __utils__[name]


def _state_dir() -> Path:
    cfg = __salt__["config.get"]("netem", {}) or {}
    return Path(cfg.get("state_dir") or "/run/kubeha/netem")


def _state_file(ifname: str, netns: str) -> Path:
    return _u("netem_procs.state_file")(_state_dir(), ifname, netns)


def _read_state(ifname: str, netns: str) -> dict | None:
    return _u("netem_procs.read_state")(_state_file(ifname, netns))


def _log(ifname: str, netns: str, kind: str) -> Path:
    return _state_dir() / f"{_u('netem_procs.key')(ifname, netns)}.{kind}.log"


def _run(cmd: list[str], timeout: int = 20, check: bool = True) -> dict:
    res = __salt__["cmd.run_all"](
        cmd, python_shell=False, timeout=timeout, ignore_retcode=True, output_loglevel="debug"
    )
    if check and res["retcode"] != 0:
        raise CommandExecutionError(f"{' '.join(cmd)}: {(res['stderr'] or res['stdout']).strip()}")
    return res


def _in_netns(cmd: list[str], netns: str) -> list[str]:
    return ["ip", "netns", "exec", netns, *cmd] if netns else cmd


def _has_systemd(netns: str) -> bool:
    # Transient units run in the host's network namespace: not for a netns target.
    return not netns and Path("/run/systemd/system").is_dir() and bool(shutil.which("systemd-run"))


def _daemon_script() -> str:
    here = Path(__file__).resolve().parent.parent
    found = _u("netem_launch.daemon_script")(__opts__, [here / "utils", here / "_utils"])
    if not found:
        raise CommandExecutionError(
            "netem_nfqueue.py not found: run saltutil.sync_utils (or sync_all) first"
        )
    return found


def _rules_clear_cmd(ifname: str, netns: str) -> list[str]:
    argv = _u("netem_launch.rules_clear_argv")(sys.executable, _daemon_script(), ifname)
    return _in_netns(argv, netns)


def _daemon_alive(state: dict | None) -> bool:
    if not state or state.get("backend") != "nfqueue" or not state.get("pid"):
        return False
    return _u("netem_procs.alive")(state["pid"], state.get("start_time"))


def normalize(delay=None, jitter=None, loss=None, *, duplicate=None, corrupt=None, rate=None):
    """
    Validated fault parameters (ms and %), dropping the ones not asked for.

    CLI Example:

    .. code-block:: bash

        salt 'cp-1' netem.normalize delay=200ms jitter=20ms loss=20%
    """
    return _u("netem_tc.normalize")(
        delay, jitter, loss, duplicate=duplicate, corrupt=corrupt, rate=rate
    )


def tc_command(action, ifname, params, netns=""):
    """
    The tc command line for ``add``/``change`` (netem egress qdisc at the root), without
    running it.

    CLI Example:

    .. code-block:: bash

        salt 'cp-1' netem.tc_command add ens160 '{"delay": 200.0, "loss": 20.0}'
    """
    return _u("netem_tc.command")(action, ifname, params, netns)


def kernel_has_netem():
    """
    Whether the kernel offers the netem qdisc, and why not when it does not.

    CLI Example:

    .. code-block:: bash

        salt 'cp-1' netem.kernel_has_netem
    """
    modprobe = None
    if shutil.which("modprobe"):

        def modprobe():
            res = _run(["modprobe", "sch_netem"], check=False)
            return res["retcode"], (res["stderr"] or res["stdout"]).strip()

    return _u("netem_tc.kernel_netem")(modprobe)


def _pick(backend: str) -> str:
    if backend in ("tc", "nfqueue"):
        return backend
    if backend != "auto":
        raise CommandExecutionError(f"unknown netem backend {backend!r}: tc, nfqueue or auto")
    return "tc" if kernel_has_netem()["available"] else "nfqueue"


# --- tc backend -------------------------------------------------------------------------


def _tc_apply(action: str, ifname: str, params: dict, netns: str) -> list[str]:
    cmd = tc_command(action, ifname, params, netns)
    res = _run(cmd, check=False)
    if res["retcode"] != 0:
        err = (res["stderr"] or res["stdout"]).strip()
        if "qdisc kind is unknown" in err:
            raise CommandExecutionError(_u("netem_tc.no_netem")(f"tc: {err}", os.uname().release))
        raise CommandExecutionError(f"{' '.join(cmd)}: {err}")
    return cmd


def _launch(kind: str, ifname: str, netns: str) -> dict:
    """What every start of a background piece needs (see _utils/netem_launch.py)."""
    return {
        "systemd": _has_systemd(netns),
        "unit": _u("netem_launch.unit_name")(kind, ifname, netns),
        "log": _log(ifname, netns, kind),
        "state": _state_file(ifname, netns),
    }


def _arm_timer(ifname: str, netns: str, token: str, seconds: float, clear_cmd: list[str]):
    where = dict(_launch("clear", ifname, netns), python=sys.executable, script=_daemon_script())
    arm = _u("netem_launch.arm_timer")
    return arm(_run, token=token, seconds=seconds, command=clear_cmd, **where)


# --- nfqueue backend --------------------------------------------------------------------


def _ifindex(ifname: str, netns: str) -> int:
    out = _run(["ip", *(["-n", netns] if netns else []), "-o", "link", "show", "dev", ifname])
    return int(out["stdout"].split(":", 1)[0])


def _nfqueue_start(ifname, params, seconds, netns, token, *, seed=None) -> dict:
    unsupported = set(params) - NFQUEUE_PARAMS
    if unsupported:
        raise CommandExecutionError(
            f"the nfqueue backend does delay, jitter and loss, not {', '.join(sorted(unsupported))}"
        )
    if not shutil.which("iptables"):
        raise CommandExecutionError("the nfqueue backend needs iptables (NFQUEUE target)")
    where = _launch("nfqueue", ifname, netns)
    where["state"].unlink(missing_ok=True)
    spec = {"ifname": ifname, "queue": QUEUE_BASE + _ifindex(ifname, netns) % 10000}
    spec.update(params=params, seconds=seconds, state=where["state"], token=token, seed=seed)
    argv = _u("netem_launch.daemon_argv")(sys.executable, _daemon_script(), **spec)
    start = _u("netem_launch.start_daemon")
    stop_post = _rules_clear_cmd(ifname, netns)
    try:
        return start(_run, argv, stop_post=stop_post, token=token, seconds=seconds,
                     wrap=lambda cmd: _in_netns(cmd, netns), **where)  # fmt: skip
    except CommandExecutionError as err:
        raise CommandExecutionError(f"{ifname}: {err}") from err


def _nfqueue_stop(ifname: str, netns: str, current: dict | None) -> None:
    if _has_systemd(netns):
        unit = _launch("nfqueue", ifname, netns)["unit"]
        _run(["systemctl", "stop", f"{unit}.service"], check=False)
    current = current or {}
    if current.get("pid"):
        # Only the recorded process: a pid from /run can belong to anyone by now.
        _u("netem_procs.terminate")(current["pid"], current.get("start_time"))
    # Even after a SIGKILL: the rules carry our comment.
    _run(_rules_clear_cmd(ifname, netns), check=False)


# --- public API -------------------------------------------------------------------------


def show(ifname, netns=None):
    """
    What is in force on an interface: the netem qdisc (tc) and/or the nfqueue daemon,
    with the parameters and when it will clear itself.

    CLI Example:

    .. code-block:: bash

        salt 'cp-1' netem.show ens160
    """
    netns = netns or ""
    qdisc = None
    if shutil.which("tc"):
        res = _run(_u("netem_tc.show_command")(ifname, netns), check=False)
        if res["retcode"] != 0:
            raise CommandExecutionError(f"tc qdisc show dev {ifname}: {res['stderr'].strip()}")
        qdisc = _u("netem_tc.parse_show")(res["stdout"])
    state = _read_state(ifname, netns)
    daemon_alive = _daemon_alive(state)
    active = qdisc is not None or daemon_alive
    return {
        "ifname": ifname,
        "active": active,
        "backend": "tc" if qdisc else ("nfqueue" if daemon_alive else None),
        "qdisc": qdisc,
        "state": state if active else None,
    }


def add(
    ifname,
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
    seed=None,
):
    """
    Add a fault to an interface's egress; with ``duration`` it clears itself after that
    many seconds (``60``, ``90s``, ``2m`` is not accepted: use seconds), even if the
    caller has gone.

    delay / jitter
        ``200ms``, ``1s`` or a number of milliseconds.
    loss / duplicate / corrupt
        percent (``20`` or ``20%``). duplicate, corrupt and rate need the tc backend.
    backend
        ``auto`` (tc when the kernel has netem, else nfqueue), ``tc`` or ``nfqueue``.
    netns
        Apply inside this network namespace (a node that runs in one).

    CLI Example:

    .. code-block:: bash

        salt 'cp-1' netem.add ens160 delay=200ms loss=20 duration=60
    """
    netns = netns or ""
    params = normalize(delay, jitter, loss, duplicate=duplicate, corrupt=corrupt, rate=rate)
    if show(ifname, netns)["active"]:
        raise CommandExecutionError(
            f"{ifname} already has a netem fault: use netem.change, or netem.clear first"
        )
    seconds = _u("netem_tc.seconds")(duration)
    return _apply("add", ifname, params, seconds, backend=_pick(backend), netns=netns, seed=seed)


def change(
    ifname,
    delay=None,
    jitter=None,
    loss=None,
    *,
    duplicate=None,
    corrupt=None,
    rate=None,
    duration=None,
    netns=None,
    seed=None,
):
    """
    Replace the fault on an interface (same backend), restarting the clear timer.

    CLI Example:

    .. code-block:: bash

        salt 'cp-1' netem.change ens160 delay=100ms duration=30
    """
    netns = netns or ""
    params = normalize(delay, jitter, loss, duplicate=duplicate, corrupt=corrupt, rate=rate)
    current = show(ifname, netns)
    if not current["active"]:
        raise CommandExecutionError(f"{ifname} has no netem fault to change: use netem.add")
    if current["backend"] == "nfqueue":
        _nfqueue_stop(ifname, netns, current["state"])
    seconds = _u("netem_tc.seconds")(duration)
    backend = current["backend"]
    return _apply("change", ifname, params, seconds, backend=backend, netns=netns, seed=seed)


def _apply(action, ifname, params, seconds, *, backend, netns, seed) -> dict:
    token = uuid.uuid4().hex
    if backend != "tc":
        return dict(_nfqueue_start(ifname, params, seconds, netns, token, seed=seed), params=params)
    cmd = _tc_apply(action, ifname, params, netns)
    started = time.time()
    state = {"backend": "tc", "token": token, "ifname": ifname, "params": params, "command": cmd,
             "started": started, "expires": started + seconds if seconds else None}  # fmt: skip
    write, path = _u("netem_procs.write_state"), _state_file(ifname, netns)
    write(path, state)
    if seconds:
        clear_cmd = _u("netem_tc.clear_command")(ifname, netns)
        state["auto_clear"] = _arm_timer(ifname, netns, token, seconds, clear_cmd)
        write(path, state)
    return state


def clear(ifname, netns=None):
    """
    Remove every fault from an interface: the netem qdisc, the nfqueue daemon and its
    iptables rules, and any pending clear timer. Safe to run when nothing is set.

    CLI Example:

    .. code-block:: bash

        salt 'cp-1' netem.clear ens160
    """
    netns = netns or ""
    before = show(ifname, netns)
    removed = []
    if before["qdisc"] is not None:
        _run(_u("netem_tc.clear_command")(ifname, netns))
        removed.append("tc qdisc")
    state = _read_state(ifname, netns)
    if (state and state.get("backend") == "nfqueue") or before["backend"] == "nfqueue":
        _nfqueue_stop(ifname, netns, state)
        removed.append("nfqueue daemon")
    elif shutil.which("iptables"):
        res = _run(_rules_clear_cmd(ifname, netns), check=False)
        if res["stdout"].strip() not in ("", "0"):
            removed.append("stale nfqueue rules")
    if _has_systemd(netns):
        unit = _u("netem_launch.unit_name")("clear", ifname, netns)
        _run(["systemctl", "stop", f"{unit}.timer", f"{unit}.service"], check=False)
    # The detached timer checks the token: removing the state file disarms it.
    _state_file(ifname, netns).unlink(missing_ok=True)
    return {"ifname": ifname, "removed": removed, "changed": bool(removed)}
