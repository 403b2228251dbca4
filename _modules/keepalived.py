"""
VRRP instances of a running keepalived: state, VIP holder, priority.

Sources, freshest first:

- keepalived's own JSON dump: ``SIGJSON`` (the number from ``keepalived --signum=JSON``)
  makes it write ``/tmp/keepalived.json`` (keepalived(8), SIGNALS);
- the formula's notify files ``/run/kubeha/keepalived/<instance>.json``
  (``{"instance", "state", "priority", "time"}``, written on every transition);
- the interface itself: whoever has the VIP configured holds it.

Signals (SIGJSON, SIGHUP) go only to a process that is keepalived: the pid file is
checked against ``/proc/<pid>/comm`` and ``exe`` through a pidfd, so a stale pid file
after PID reuse signals nobody (``_utils/keepalived_proc.py``). The dump holds the VRRP
password in clear: removed once read, and by a detached reaper when keepalived answers
after the wait. A keepalived built without JSON support (``--signum=JSON`` fails) is read
from the notify files instead.

Priority is persisted twice, so that a later ``state.apply`` keeps it: in the grain
``kubeha_vrrp_priority`` (the formula's template prefers it to the model's priority) and
in the live config's ``priority`` line; keepalived then reloads (SIGHUP, or
``systemctl reload``), never restarts: a restart drops the VIP and forces an election.

Settings (``config.get``)::

    keepalived:
      config: /etc/keepalived/keepalived.conf
      pid_file: /run/keepalived.pid
      dump_dir: /tmp                       # where keepalived writes keepalived.json
      notify_dir: /run/kubeha/keepalived
      netns: ""                            # keepalived's network namespace, if any
"""

import json
import re
import shutil
import signal
from dataclasses import asdict, dataclass
from pathlib import Path

from salt.exceptions import CommandExecutionError

__virtualname__ = "keepalived"

PRIORITY_GRAIN = "kubeha_vrrp_priority"
# vrrp_t state values (keepalived/include/vrrp.h: VRRP_STATE_INIT 0, BACK 1, MAST 2, FAULT 3).
STATES = {0: "INIT", 1: "BACKUP", 2: "MASTER", 3: "FAULT"}
DEFAULTS = {
    "config": "/etc/keepalived/keepalived.conf",
    "pid_file": "/run/keepalived.pid",
    "dump_dir": "/tmp",
    "notify_dir": "/run/kubeha/keepalived",
    "netns": "",
}


def __virtual__():
    if shutil.which("keepalived"):
        return __virtualname__
    return (False, "keepalived module: keepalived is not installed")


@dataclass
class Instance:
    name: str
    state: str
    effective_priority: int | None
    base_priority: int | None
    vrid: int | None
    interface: str
    vips: list[str]
    last_transition: float | None
    source: str


def _setting(name):
    value = (__salt__["config.get"]("keepalived", {}) or {}).get(name)
    return DEFAULTS[name] if value in (None, "") else value


def _run(cmd: list[str], timeout: int = 15) -> str:
    res = __salt__["cmd.run_all"](
        cmd, python_shell=False, timeout=timeout, ignore_retcode=True, output_loglevel="debug"
    )
    if res["retcode"] != 0:
        raise CommandExecutionError(
            f"{' '.join(cmd[:3])} failed: {(res['stderr'] or res['stdout']).strip()}"
        )
    return res["stdout"]


def _u(name: str):
    """A helper of _utils/keepalived_proc.py or keepalived_conf.py (via __utils__)."""
    return __utils__[name]


def _pid() -> int | None:
    return _u("keepalived_proc.read_pid")(_setting("pid_file"))


def _json_signal() -> int | None:
    # The JSON signal number is chosen at build time (SIGRTMIN+2 usually); ask the binary.
    # A keepalived built without JSON support answers "Unknown sigfunc JSON" (exit 1).
    try:
        return int(_run(["keepalived", "--signum=JSON"]).strip())
    except (CommandExecutionError, ValueError):
        return None


def _parse_json_dump(payload: list) -> list[Instance]:
    """keepalived.json: one {"data": ..., "stats": ...} per VRRP instance (vrrp_json.c)."""
    out = []
    for entry in payload:
        data = entry.get("data", {})
        out.append(
            Instance(
                name=data.get("iname", ""),
                state=STATES.get(data.get("state"), str(data.get("state"))),
                effective_priority=data.get("effective_priority"),
                base_priority=data.get("base_priority"),
                vrid=data.get("vrid"),
                interface=data.get("ifp_ifname", ""),
                vips=[str(v).split()[0] for v in data.get("vips", [])],
                last_transition=data.get("last_transition"),
                source="keepalived.json",
            )
        )
    return out


def _dump() -> list[Instance] | None:
    """keepalived's own JSON dump, or None when it cannot give one in time."""
    if _pid() is None:
        return None  # no keepalived to ask: no need to exec the binary either
    signum = _json_signal()
    if signum is None:
        return None
    dump = Path(_setting("dump_dir")) / "keepalived.json"
    payload = _u("keepalived_proc.fetch_dump")(_setting("pid_file"), dump, signum)
    return None if payload is None else _parse_json_dump(payload)


def _notified() -> list[Instance]:
    out = []
    for path in sorted(Path(_setting("notify_dir")).glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        out.append(
            Instance(
                name=data.get("instance", path.stem),
                state=str(data.get("state", "")).upper(),
                effective_priority=data.get("priority"),
                base_priority=None,
                vrid=None,
                interface="",
                vips=[],
                last_transition=data.get("time"),
                source=str(path),
            )
        )
    return out


def instances():
    """
    Every VRRP instance with its state (MASTER/BACKUP/FAULT), priority and VIPs.

    Read from keepalived's JSON dump; when keepalived is not running (or cannot dump),
    from the notify files, which tell the last transition seen.

    CLI Example:

    .. code-block:: bash

        salt 'cp-*' keepalived.instances
    """
    found = _dump()
    if found is None:
        found = _notified()
    return [asdict(i) for i in found]


def state(instance="VI_1"):
    """
    One instance's state: MASTER, BACKUP, FAULT, INIT; None when unknown.

    CLI Example:

    .. code-block:: bash

        salt 'cp-*' keepalived.state VI_1
    """
    return next((i["state"] for i in instances() if i["name"] == instance), None)


def local_addresses() -> list[str]:
    """
    IPv4 addresses configured where keepalived runs (``ip -o -4 addr``).

    CLI Example:

    .. code-block:: bash

        salt 'cp-1' keepalived.local_addresses
    """
    netns = _setting("netns")
    cmd = ["ip", *(["-n", netns] if netns else []), "-o", "-4", "addr", "show"]
    return re.findall(r"\binet (\d+\.\d+\.\d+\.\d+)/", _run(cmd))


def holds_vip(vip):
    """
    True when this node has the VIP configured (the truth traffic follows).

    CLI Example:

    .. code-block:: bash

        salt 'cp-*' keepalived.holds_vip 198.18.0.10
    """
    return str(vip).split("/")[0] in local_addresses()


def _config_path() -> Path:
    return Path(_setting("config"))


def configured_priority(instance="VI_1"):
    """
    The ``priority`` in the config file for one instance (None if the line is absent).

    CLI Example:

    .. code-block:: bash

        salt 'cp-1' keepalived.configured_priority VI_1
    """
    path = _config_path()
    return _u("keepalived_conf.priority")(path.read_text(), instance, str(path))


def get_priority(instance="VI_1"):
    """
    Priority as configured, as running (effective, after vrrp_script weights) and the
    per-node override grain ``kubeha_vrrp_priority``.

    CLI Example:

    .. code-block:: bash

        salt 'cp-1' keepalived.get_priority
    """
    running = next((i for i in instances() if i["name"] == instance), None)
    return {
        "instance": instance,
        "configured": configured_priority(instance),
        "effective": running["effective_priority"] if running else None,
        "override_grain": __salt__["grains.get"](PRIORITY_GRAIN, None),
    }


def _config_test(path: str) -> None:
    res = __salt__["cmd.run_all"](
        ["keepalived", "--config-test", "-f", path],
        python_shell=False,
        timeout=30,
        ignore_retcode=True,
        output_loglevel="debug",
    )
    if res["retcode"] != 0:
        raise CommandExecutionError(
            f"keepalived rejects the new config: {(res['stderr'] or res['stdout']).strip()}"
        )


def reload():
    """
    Reload keepalived (re-read config, keep VRRP state): ``systemctl reload`` where
    systemd runs it, else SIGHUP to the pid in the pid file. Never a restart.

    CLI Example:

    .. code-block:: bash

        salt 'cp-1' keepalived.reload
    """
    if Path("/run/systemd/system").is_dir() and not _setting("netns"):
        active = __salt__["cmd.retcode"](
            ["systemctl", "is-active", "--quiet", "keepalived"], python_shell=False, timeout=15
        )
        if active == 0:
            _run(["systemctl", "reload", "keepalived"], timeout=30)
            return {"reloaded": True, "how": "systemctl reload keepalived"}
    pid = _u("keepalived_proc.send_signal")(_setting("pid_file"), signal.SIGHUP)
    if pid is None:
        raise CommandExecutionError(
            f"keepalived is not running (pid file {_setting('pid_file')} names no keepalived)"
        )
    return {"reloaded": True, "how": f"SIGHUP to {pid}"}


def set_priority(priority, instance="VI_1", persist=True):
    """
    Set one node's VRRP priority: grain ``kubeha_vrrp_priority`` (so the formula keeps
    it), the config's priority line, then a reload. A higher priority than the master's
    takes the VIP (preemption), a lower one on the master gives it away.

    The new config passes ``keepalived --config-test`` before anything is persisted: a
    rejected one changes neither the grain nor the live file.

    CLI Example:

    .. code-block:: bash

        salt 'cp-2' keepalived.set_priority 150
    """
    priority = int(priority)
    if not 1 <= priority <= 254:
        # 255 is reserved for the address owner and 0 for "master is leaving" (RFC 5798 5.2.4).
        raise CommandExecutionError(f"VRRP priority must be 1..254, not {priority}")
    path = _config_path()
    current = path.read_text()
    old = _u("keepalived_conf.priority")(current, instance, str(path))
    text = _u("keepalived_conf.with_priority")(current, instance, priority, str(path))
    # Validated before anything persists: a rejected config leaves grain and file alone.
    staged = _u("keepalived_conf.stage")(path, text, _config_test) if text is not None else None
    try:
        if persist:
            __salt__["grains.setval"](PRIORITY_GRAIN, priority)
        if staged is not None:
            staged.replace(path)
    finally:
        if staged is not None:
            staged.unlink(missing_ok=True)
    changed = staged is not None
    ret = {"instance": instance, "old": old, "new": priority, "config_changed": changed}
    if changed:
        ret.update(reload())
    return ret


def clear_priority(instance="VI_1", priority=None):
    """
    Drop the per-node override (grain ``kubeha_vrrp_priority``). With ``priority``, also
    put that value (the model's) back in the config and reload; without it, the next
    ``state.apply`` renders the model's priority.

    CLI Example:

    .. code-block:: bash

        salt 'cp-2' keepalived.clear_priority priority=100
    """
    had = __salt__["grains.get"](PRIORITY_GRAIN, None)
    if had is not None:
        __salt__["grains.delkey"](PRIORITY_GRAIN, force=True)
    ret = {"instance": instance, "cleared_override": had}
    if priority is not None:
        ret.update(set_priority(priority, instance, persist=False))
    return ret
