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

Settings (``config.get``)::

    netem:
      state_dir: /run/kubeha/netem
"""

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from salt.exceptions import CommandExecutionError

__virtualname__ = "netem"

NO_NETEM = (
    "this kernel has no sch_netem qdisc ({why}); on Ubuntu install "
    "linux-modules-extra-{release} and `modprobe sch_netem`, or use backend=nfqueue "
    "(userspace delay and loss)"
)
NFQUEUE_PARAMS = {"delay", "jitter", "loss"}
QUEUE_BASE = 4200


def __virtual__():
    if shutil.which("tc") or shutil.which("iptables"):
        return __virtualname__
    return (False, "netem module: neither tc (iproute2) nor iptables is installed")


# --- parameters -------------------------------------------------------------------------


def _ms(value) -> float:
    """'200ms', '1.5s', '300us', 200 -> milliseconds."""
    match = re.fullmatch(r"\s*([\d.]+)\s*(us|ms|s)?\s*", str(value))
    if not match:
        raise CommandExecutionError(f"not a duration: {value!r} (use 200ms, 1s)")
    number, unit = float(match.group(1)), match.group(2) or "ms"
    return number * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def _pct(value) -> float:
    number = float(str(value).rstrip("%"))
    if not 0 <= number <= 100:
        raise CommandExecutionError(f"percentage out of range: {value!r}")
    return number


def _seconds(value) -> float:
    if value in (None, "", 0, "0"):
        return 0.0
    return _ms(value if re.search(r"[a-z]", str(value)) else f"{value}s") / 1000.0


def normalize(delay=None, jitter=None, loss=None, *, duplicate=None, corrupt=None, rate=None):
    """
    Validated fault parameters (ms and %), dropping the ones not asked for.

    CLI Example:

    .. code-block:: bash

        salt 'cp-1' netem.normalize delay=200ms jitter=20ms loss=20%
    """
    out = {
        "delay": _ms(delay) if delay not in (None, "") else None,
        "jitter": _ms(jitter) if jitter not in (None, "") else None,
        "loss": _pct(loss) if loss not in (None, "") else None,
        "duplicate": _pct(duplicate) if duplicate not in (None, "") else None,
        "corrupt": _pct(corrupt) if corrupt not in (None, "") else None,
        "rate": str(rate) if rate not in (None, "") else None,
    }
    if out["jitter"] and not out["delay"]:
        raise CommandExecutionError("jitter needs a delay")
    if out["rate"] and not re.fullmatch(r"[\d.]+\s*[kmgt]?(bit|bps)", out["rate"], re.I):
        raise CommandExecutionError(f"not a rate: {rate!r} (use 10mbit, 500kbit)")
    found = {k: v for k, v in out.items() if v is not None}
    if not found:
        raise CommandExecutionError("no fault given: delay, jitter, loss, duplicate, corrupt, rate")
    return found


def _num(value: float) -> str:
    return f"{value:g}"


def tc_command(action: str, ifname: str, params: dict, netns: str = "") -> list[str]:
    """
    The tc command line for ``add``/``change`` (netem egress qdisc at the root), without
    running it.

    CLI Example:

    .. code-block:: bash

        salt 'cp-1' netem.tc_command add ens160 '{"delay": 200.0, "loss": 20.0}'
    """
    cmd = ["tc", *(["-n", netns] if netns else []), "qdisc", action, "dev", ifname, "root", "netem"]
    if "delay" in params:
        cmd += ["delay", f"{_num(params['delay'])}ms"]
        if params.get("jitter"):
            cmd.append(f"{_num(params['jitter'])}ms")
    for key in ("loss", "duplicate", "corrupt"):
        if key in params:
            cmd += [key, f"{_num(params[key])}%"]
    if "rate" in params:
        cmd += ["rate", params["rate"]]
    return cmd


# --- helpers ----------------------------------------------------------------------------


def _state_dir() -> Path:
    cfg = __salt__["config.get"]("netem", {}) or {}
    return Path(cfg.get("state_dir") or "/run/kubeha/netem")


def _key(ifname: str, netns: str) -> str:
    return f"{netns}@{ifname}" if netns else ifname


def _state_file(ifname: str, netns: str) -> Path:
    return _state_dir() / f"{_key(ifname, netns)}.json"


def _read_state(ifname: str, netns: str) -> dict | None:
    try:
        return json.loads(_state_file(ifname, netns).read_text())
    except (OSError, ValueError):
        return None


def _write_state(ifname: str, netns: str, data: dict) -> None:
    path = _state_file(ifname, netns)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


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


def _unit(kind: str, ifname: str, netns: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", _key(ifname, netns))
    return f"kubeha-netem-{kind}-{safe}"


def _daemon_script() -> str:
    candidates = [Path(__opts__.get("extension_modules", "")) / "utils" / "netem_nfqueue.py"]
    candidates += [Path(d) / "netem_nfqueue.py" for d in __opts__.get("utils_dirs", [])]
    here = Path(__file__).resolve().parent.parent
    candidates += [here / "utils" / "netem_nfqueue.py", here / "_utils" / "netem_nfqueue.py"]
    for path in candidates:
        if path.is_file():
            return str(path)
    raise CommandExecutionError(
        "netem_nfqueue.py not found: run saltutil.sync_utils (or sync_all) first"
    )


def _alive(pid) -> bool:
    """Running, not a zombie (a detached child we started exits as a zombie until reaped)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(int(pid), os.WNOHANG)  # reap it if it is our child
    try:
        stat = Path(f"/proc/{int(pid)}/stat").read_text()
    except (OSError, ValueError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _detach(cmd: list[str], log: Path) -> subprocess.Popen:
    """Start cmd in its own session so it outlives this job (and whoever called it)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        return subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )


def kernel_has_netem():
    """
    Whether the kernel offers the netem qdisc, and why not when it does not.

    CLI Example:

    .. code-block:: bash

        salt 'cp-1' netem.kernel_has_netem
    """
    if Path("/sys/module/sch_netem").exists():
        return {"available": True, "reason": "sch_netem is loaded"}
    release = os.uname().release
    builtin = Path(f"/lib/modules/{release}/modules.builtin")
    if builtin.is_file() and "sch_netem.ko" in builtin.read_text():
        return {"available": True, "reason": "sch_netem is built into the kernel"}
    if shutil.which("modprobe"):
        res = _run(["modprobe", "sch_netem"], check=False)
        if res["retcode"] == 0:
            return {"available": True, "reason": "modprobe sch_netem loaded it"}
        why = (res["stderr"] or res["stdout"]).strip() or "modprobe sch_netem failed"
    else:
        why = f"sch_netem is not loaded and /lib/modules/{release} has no way to load it"
    return {"available": False, "reason": NO_NETEM.format(why=why, release=release)}


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
            raise CommandExecutionError(
                NO_NETEM.format(why=f"tc: {err}", release=os.uname().release)
            )
        raise CommandExecutionError(f"{' '.join(cmd)}: {err}")
    return cmd


def _arm_timer(ifname: str, netns: str, token: str, seconds: float, clear_cmd: list[str]):
    script = _daemon_script()
    state = str(_state_file(ifname, netns))
    timer = [sys.executable, script, "timer", "--state", state, "--token", token]
    if _has_systemd(netns):
        unit = _unit("clear", ifname, netns)
        _run(["systemctl", "stop", f"{unit}.timer", f"{unit}.service"], check=False)
        _run(
            [
                "systemd-run",
                f"--unit={unit}",
                f"--on-active={seconds:.3f}s",
                "--timer-property=AccuracySec=100ms",
                *timer,
                "--after",
                "0",
                "--",
                *clear_cmd,
            ]
        )
        return {"how": "systemd-run", "unit": unit}
    proc = _detach(
        [*timer, "--after", f"{seconds:.3f}", "--", *clear_cmd],
        _state_dir() / f"{_key(ifname, netns)}.timer.log",
    )
    return {"how": "detached process", "pid": proc.pid}


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
    queue = QUEUE_BASE + _ifindex(ifname, netns) % 10000
    state = _state_file(ifname, netns)
    state.unlink(missing_ok=True)
    run = [
        sys.executable,
        _daemon_script(),
        "run",
        "--ifname",
        ifname,
        "--queue",
        str(queue),
        "--delay-ms",
        _num(params.get("delay", 0)),
        "--jitter-ms",
        _num(params.get("jitter", 0)),
        "--loss-pct",
        _num(params.get("loss", 0)),
        "--duration",
        f"{seconds:.3f}",
        "--state",
        str(state),
        "--token",
        token,
    ]
    if seed is not None:
        run += ["--seed", str(int(seed))]
    log = _state_dir() / f"{_key(ifname, netns)}.log"
    if _has_systemd(netns):
        unit = _unit("nfqueue", ifname, netns)
        _run(["systemctl", "stop", f"{unit}.service"], check=False)
        cleanup = f"{sys.executable} {_daemon_script()} rules-clear --ifname {ifname}"
        props = [f"--property=ExecStopPost={cleanup}", "--property=KillMode=mixed"]
        if seconds:
            props.append(f"--property=RuntimeMaxSec={int(seconds) + 30}")  # backstop
        _run(["systemd-run", f"--unit={unit}", *props, *run])
        how = {"how": "systemd-run", "unit": unit}
    else:
        how = {"how": "detached process", "pid": _detach(_in_netns(run, netns), log).pid}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        current = _read_state(ifname, netns)
        if current and current.get("token") == token:
            return dict(current, **how)
        time.sleep(0.05)
    tail = log.read_text()[-800:] if log.exists() else ""
    raise CommandExecutionError(f"the nfqueue daemon did not start on {ifname}: {tail}")


def _nfqueue_stop(ifname: str, netns: str, current: dict | None) -> None:
    if _has_systemd(netns):
        _run(["systemctl", "stop", f"{_unit('nfqueue', ifname, netns)}.service"], check=False)
    pid = (current or {}).get("pid")
    if pid and _alive(pid):
        try:
            os.kill(int(pid), signal.SIGTERM)
            deadline = time.monotonic() + 5
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(pid):
                os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass
    # Even after a SIGKILL: the rules carry our comment.
    _run(
        _in_netns([sys.executable, _daemon_script(), "rules-clear", "--ifname", ifname], netns),
        check=False,
    )


# --- public API -------------------------------------------------------------------------


def _parse_tc_show(text: str) -> dict | None:
    """The root netem qdisc of ``tc qdisc show dev IF``, parsed; None when there is none."""
    for line in text.splitlines():
        if not re.match(r"qdisc netem \S+ root\b", line):
            continue
        out: dict = {"raw": line.strip()}
        if m := re.search(r"\bdelay ([\d.]+(?:us|ms|s))(?:\s+([\d.]+(?:us|ms|s)))?", line):
            out["delay"] = _ms(m.group(1))
            if m.group(2):
                out["jitter"] = _ms(m.group(2))
        for key in ("loss", "duplicate", "corrupt"):
            if m := re.search(rf"\b{key} (?:random )?([\d.]+)%", line):
                out[key] = float(m.group(1))
        if m := re.search(r"\brate (\S+)", line):
            out["rate"] = m.group(1)
        return out
    return None


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
        res = _run(
            ["tc", *(["-n", netns] if netns else []), "qdisc", "show", "dev", ifname], check=False
        )
        if res["retcode"] != 0:
            raise CommandExecutionError(f"tc qdisc show dev {ifname}: {res['stderr'].strip()}")
        qdisc = _parse_tc_show(res["stdout"])
    state = _read_state(ifname, netns)
    daemon_alive = False
    if state and state.get("backend") == "nfqueue" and state.get("pid"):
        daemon_alive = _alive(state["pid"])
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
    return _apply(
        "add", ifname, params, _seconds(duration), backend=_pick(backend), netns=netns, seed=seed
    )


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
    return _apply(
        "change",
        ifname,
        params,
        _seconds(duration),
        backend=current["backend"],
        netns=netns,
        seed=seed,
    )


def _apply(action, ifname, params, seconds, *, backend, netns, seed) -> dict:
    token = uuid.uuid4().hex
    expires = time.time() + seconds if seconds else None
    if backend == "tc":
        cmd = _tc_apply(action, ifname, params, netns)
        state = {
            "backend": "tc",
            "token": token,
            "ifname": ifname,
            "params": params,
            "command": cmd,
            "started": time.time(),
            "expires": expires,
        }
        _write_state(ifname, netns, state)
        if seconds:
            clear_cmd = [
                "tc",
                *(["-n", netns] if netns else []),
                "qdisc",
                "del",
                "dev",
                ifname,
                "root",
            ]
            state["auto_clear"] = _arm_timer(ifname, netns, token, seconds, clear_cmd)
            _write_state(ifname, netns, state)
        return state
    state = _nfqueue_start(ifname, params, seconds, netns, token, seed=seed)
    state["params"] = params
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
        _run(["tc", *(["-n", netns] if netns else []), "qdisc", "del", "dev", ifname, "root"])
        removed.append("tc qdisc")
    state = _read_state(ifname, netns)
    if (state and state.get("backend") == "nfqueue") or before["backend"] == "nfqueue":
        _nfqueue_stop(ifname, netns, state)
        removed.append("nfqueue daemon")
    elif shutil.which("iptables"):
        res = _run(
            _in_netns([sys.executable, _daemon_script(), "rules-clear", "--ifname", ifname], netns),
            check=False,
        )
        if res["stdout"].strip() not in ("", "0"):
            removed.append("stale nfqueue rules")
    if _has_systemd(netns):
        unit = _unit("clear", ifname, netns)
        _run(["systemctl", "stop", f"{unit}.timer", f"{unit}.service"], check=False)
    # The detached timer checks the token: removing the state file disarms it.
    _state_file(ifname, netns).unlink(missing_ok=True)
    return {"ifname": ifname, "removed": removed, "changed": bool(removed)}
