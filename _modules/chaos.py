"""
Faults on one control-plane node, each undone by the node itself after its duration.

The runbook's chaos scenarios (step 8) and the faults around them, as a site can make them
on its own machines:

- ``apiserver_stop``: ``crictl stop`` of kube-apiserver (the kubelet starts a new one);
- ``apiserver_hang``: kube-apiserver SIGSTOPped: its port still accepts (the kernel
  completes handshakes into the listen backlog) but nothing answers -- the runbook's
  "lagging apiserver";
- ``isolate``: the node's interface taken down, as a pulled cable or a shut switch port
  looks from the node: nothing in or out, ARP and VRRP included (an iptables DROP would
  let keepalived's gratuitous ARPs out through its packet socket);
- ``netem``: delay, jitter and loss on the interface (the ``netem`` module, self-clearing);
- ``etcd_stop``: the etcd static pod manifest moved away (docs/facts.md #7);
- ``leader_kill``: SIGKILL of a component's container process (the current leader of
  kube-controller-manager or kube-scheduler when the caller picked its node).

Every fault that lasts is armed before it is injected: its undo actions are recorded in a
state file and a timer on the node runs them after the duration (``_utils/chaos_revert.py``:
a systemd transient timer, or a detached process without systemd), so it ends even if the
master, the orchestration or the network dies. ``chaos.revert`` undoes it earlier.

Settings (``config.get``)::

    kubeha_chaos:
      state_dir: /var/lib/kubeha/chaos     # survives a reboot: `chaos.revert` still knows
      manifests_dir: /etc/kubernetes/manifests
"""

import os
import signal
import sys
import time
import uuid
from pathlib import Path

from salt.exceptions import CommandExecutionError

__virtualname__ = "chaos"

REVERT_SCRIPT = "chaos_revert.py"
LASTING = ("apiserver-hang", "isolate", "netem", "etcd-stop")


def __virtual__():
    return __virtualname__


def _setting(name, default):
    return (__salt__["config.get"]("kubeha_chaos", {}) or {}).get(name) or default


def _state_dir() -> Path:
    return Path(_setting("state_dir", "/var/lib/kubeha/chaos"))


def _state_path(fault: str) -> Path:
    return _state_dir() / f"{fault}.json"


def _u(name: str):
    return __utils__[f"chaos_revert.{name}"]


def _run(cmd: list[str], timeout: int = 30, check: bool = True) -> dict:
    res = __salt__["cmd.run_all"](
        cmd, python_shell=False, timeout=timeout, ignore_retcode=True, output_loglevel="debug"
    )
    if check and res["retcode"] != 0:
        raise CommandExecutionError(f"{' '.join(cmd)}: {(res['stderr'] or res['stdout']).strip()}")
    return res


def _script() -> str:
    """Where _utils/chaos_revert.py is on this minion (synced, or next to this file)."""
    here = Path(__file__).resolve().parent.parent
    candidates = [Path(__opts__.get("extension_modules", "")) / "utils" / REVERT_SCRIPT]
    candidates += [Path(d) / REVERT_SCRIPT for d in __opts__.get("utils_dirs", [])]
    candidates += [here / "utils" / REVERT_SCRIPT, here / "_utils" / REVERT_SCRIPT]
    for path in candidates:
        if path.is_file():
            return str(path)
    raise CommandExecutionError(f"{REVERT_SCRIPT} not found: run saltutil.sync_utils first")


def _has_systemd() -> bool:
    return __utils__["chaos_revert.has_systemd"]()


def _arm(fault: str, duration: float, actions: list[dict], **extra) -> dict:
    """Record the undo actions and start the timer that runs them after ``duration``."""
    duration = float(duration)
    if not 0 < duration <= 3600:
        raise CommandExecutionError(f"duration {duration:g} s: use 0 < duration <= 3600")
    path = _state_path(fault)
    current = _u("read")(path)
    if current and current.get("revert_at", 0) < time.time() - 5:
        # Left by a reboot (its timer died with it) or a dead timer: undo it first.
        _u("revert")(path)
        current = None
    if current:
        raise CommandExecutionError(
            f"a {fault} fault is already in force on this node (reverts at "
            f"{time.ctime(current.get('revert_at', 0))}): run chaos.revert {fault} first"
        )
    token = uuid.uuid4().hex
    now = time.time()
    state = {"fault": fault, "token": token, "armed_at": now, "revert_at": now + duration,
             "actions": actions, **extra}  # fmt: skip
    _u("write")(path, state)
    argv = _u("timer_argv")(sys.executable, _script(), path, token)
    unit = f"kubeha-chaos-revert-{fault}"
    if _has_systemd():
        # A timer left from an earlier fault of this kind would collide with the name.
        _run(["systemctl", "stop", f"{unit}.timer", f"{unit}.service"], check=False)
        _run(["systemctl", "reset-failed", f"{unit}.timer", f"{unit}.service"], check=False)
        _run(_u("systemd_timer_argv")(unit, duration, argv))
        state["timer"] = {"how": "systemd-run", "unit": unit}
    else:
        log = _state_dir() / f"{fault}.timer.log"
        pid = _u("detach")([*argv, "--after", f"{duration:.3f}"], log)
        state["timer"] = {"how": "detached process", "pid": pid}
    _u("write")(path, state)
    return state


def _disarm_after_failure(fault: str, err: Exception):
    _u("revert")(_state_path(fault))
    raise CommandExecutionError(f"{fault}: {err}; nothing is left in force") from err


def _report(state: dict, at: float, **detail) -> dict:
    """What a lasting fault did. ``at``: when its action started, not when it returned (a
    watcher on the node may see its effect while the command still runs: the VIP's local
    route goes with the link before ``ip link set down`` exits); ``applied_at``: when it
    returned."""
    return {
        "fault": state["fault"],
        "node": __grains__.get("id"),
        "at": at,
        "applied_at": time.time(),
        "revert_at": state["revert_at"],
        "timer": state["timer"],
        **detail,
    }


def _container_pid(name: str) -> int:
    info = __salt__["crictl.inspect"](name)
    if info.get("state") != "RUNNING" or not info.get("pid"):
        raise CommandExecutionError(f"{name} is not running here ({info.get('state')})")
    return int(info["pid"])


def _process_tree(root: int) -> list[int]:
    """``root`` and every descendant (from /proc's parent links)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def apiserver_stop(timeout=30):
    """
    ``crictl stop`` kube-apiserver: SIGTERM, its graceful shutdown
    (``--shutdown-delay-duration``), SIGKILL after ``timeout``; the kubelet starts a new
    container. Nothing to revert.

    CLI Example:

    .. code-block:: bash

        salt cp-1 chaos.apiserver_stop
    """
    started = time.time()
    stopped = __salt__["crictl.stop"]("kube-apiserver", timeout=int(timeout))
    return {"fault": "apiserver-stop", "node": __grains__.get("id"), "at": started,
            "stop_returned": time.time(), **stopped}  # fmt: skip


def apiserver_hang(duration):
    """
    SIGSTOP kube-apiserver (and its children) for ``duration`` seconds: connections are
    still accepted, nothing is answered. A timer on the node sends SIGCONT.

    CLI Example:

    .. code-block:: bash

        salt cp-1 chaos.apiserver_hang 20
    """
    pids = _process_tree(_container_pid("kube-apiserver"))
    recorded = [[pid, _u("start_ticks")(pid)] for pid in pids]
    state = _arm("apiserver-hang", duration, [{"do": "cont", "pids": recorded}], pids=pids)
    started = time.time()
    try:
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
    except OSError as err:
        _disarm_after_failure("apiserver-hang", err)
    return _report(state, started, pids=pids)


def _link_restore_actions(ifname: str) -> list[dict]:
    """Bring the link up, then put back what a link-down loses: routes other than the
    kernel's own (a default route, static ones) and static global IPv6 addresses
    (dropped on link down unless keep_addr_on_down)."""
    actions = [{"do": "run", "argv": ["ip", "link", "set", "dev", ifname, "up"]}]
    routes = __salt__["cmd.run_all"](["ip", "-4", "-o", "route", "show", "dev", ifname],
                                     python_shell=False, output_loglevel="debug")  # fmt: skip
    for line in routes["stdout"].splitlines():
        words = line.split()
        if "proto" in words and words[words.index("proto") + 1] == "kernel":
            continue
        if words:
            dev = [] if "dev" in words else ["dev", ifname]
            argv = ["ip", "-4", "route", "replace", *words, *dev]
            actions.append({"do": "run", "argv": argv})
    addrs = __salt__["cmd.run_all"](["ip", "-6", "-o", "addr", "show", "dev", ifname, "scope",
                                     "global", "permanent"], python_shell=False,
                                    output_loglevel="debug")  # fmt: skip
    for line in addrs["stdout"].splitlines():
        words = line.split()
        if "inet6" in words:
            cidr = words[words.index("inet6") + 1]
            actions.append(
                {"do": "run", "argv": ["ip", "-6", "addr", "replace", cidr, "dev", ifname]}
            )
    return actions


def isolate(duration, interface="ens160"):
    """
    Take ``interface`` down for ``duration`` seconds (nothing in or out: the node looks
    powered off to the others while it keeps running). The timer brings it back up with
    its routes.

    CLI Example:

    .. code-block:: bash

        salt cp-1 chaos.isolate 20 interface=ens160
    """
    if not Path(f"/sys/class/net/{interface}").exists():
        raise CommandExecutionError(f"no interface {interface} on this node")
    state = _arm("isolate", duration, _link_restore_actions(interface), interface=interface)
    started = time.time()
    try:
        _run(["ip", "link", "set", "dev", interface, "down"])
    except CommandExecutionError as err:
        _disarm_after_failure("isolate", err)
    return _report(state, started, interface=interface)


def netem(duration, interface="ens160", delay="200ms", jitter="20ms", loss=20):
    """
    Delay, jitter and loss on ``interface``'s egress for ``duration`` seconds, through the
    ``netem`` module (which clears itself: tc netem, or its NFQUEUE daemon).

    CLI Example:

    .. code-block:: bash

        salt cp-1 chaos.netem 60 delay=200ms jitter=20ms loss=20
    """
    state = _arm("netem", duration, [], interface=interface)
    started = time.time()
    try:
        applied = __salt__["netem.add"](
            interface, delay=delay, jitter=jitter, loss=loss, duration=int(round(float(duration)))
        )
    except CommandExecutionError as err:
        _disarm_after_failure("netem", err)
    return _report(state, started, interface=interface, params=applied.get("params"),
                   backend=applied.get("backend"))  # fmt: skip


def etcd_stop(duration):
    """
    Move the etcd static pod manifest out of the kubelet's manifest directory for
    ``duration`` seconds: the kubelet stops etcd (docs/facts.md #7); the timer moves it back
    and the kubelet starts it again.

    CLI Example:

    .. code-block:: bash

        salt cp-2 chaos.etcd_stop 30
    """
    manifest = Path(_setting("manifests_dir", "/etc/kubernetes/manifests")) / "etcd.yaml"
    if not manifest.exists():
        raise CommandExecutionError(f"{manifest} does not exist: is etcd stacked here?")
    stash = _state_dir() / "etcd.yaml"
    state = _arm("etcd-stop", duration, [{"do": "move", "src": str(stash), "dst": str(manifest)}],
                 manifest=str(manifest))  # fmt: skip
    started = time.time()
    try:
        os.replace(manifest, stash)
    except OSError as err:
        _disarm_after_failure("etcd-stop", err)
    return _report(state, started, manifest=str(manifest))


def leader_kill(component="kube-controller-manager"):
    """
    SIGKILL the running ``component`` container's process (no graceful release of its
    Lease); the kubelet starts a new one. Nothing to revert.

    CLI Example:

    .. code-block:: bash

        salt cp-1 chaos.leader_kill kube-scheduler
    """
    if component not in ("kube-controller-manager", "kube-scheduler"):
        raise CommandExecutionError(f"{component}: kube-controller-manager or kube-scheduler")
    pid = _container_pid(component)
    started = time.time()
    os.kill(pid, signal.SIGKILL)
    return {"fault": "leader-kill", "node": __grains__.get("id"), "at": started,
            "component": component, "pid": pid}  # fmt: skip


def active():
    """
    Faults in force on this node, with when their timer reverts them.

    CLI Example:

    .. code-block:: bash

        salt 'cp-*' chaos.active
    """
    out = []
    for fault in LASTING:
        state = _u("read")(_state_path(fault))
        if state:
            out.append({k: state.get(k) for k in ("fault", "armed_at", "revert_at", "timer")})
    return out


def revert(fault=None):
    """
    Undo a fault now (or every fault in force), and stop its timer.

    CLI Example:

    .. code-block:: bash

        salt cp-1 chaos.revert
        salt cp-1 chaos.revert etcd-stop
    """
    faults = [fault] if fault else list(LASTING)
    unknown = [f for f in faults if f not in LASTING]
    if unknown:
        raise CommandExecutionError(f"unknown fault {unknown}: one of {', '.join(LASTING)}")
    done, last = {}, {}
    for name in faults:
        state = _u("read")(_state_path(name))
        if name == "netem" and state:
            __salt__["netem.clear"](state.get("interface") or "ens160")
        result = _u("revert")(_state_path(name))
        if result:
            done[name] = {"reverted_at": result["reverted_at"], "log": result["log"]}
        if _has_systemd():
            unit = f"kubeha-chaos-revert-{name}"
            _run(["systemctl", "stop", f"{unit}.timer"], check=False)
        previous = _u("read")(_state_path(name).with_suffix(".reverted"))
        if previous:
            last[name] = {k: previous.get(k) for k in ("reverted_at", "by", "log", "armed_at")}
    # `last`: the latest revert of each fault, whoever did it (this call or the timer).
    return {"reverted": done, "last": last, "node": __grains__.get("id"), "at": time.time()}
