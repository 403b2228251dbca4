"""
Starting what the ``netem`` execution module leaves running: the nfqueue daemon and the
clear timer, as systemd transient units where systemd runs, else as detached processes
in their own session, so that both outlive the Salt job (and the caller) that started
them. Commands go through the module's ``run`` (Salt's ``cmd.run_all`` wrapper), passed
in: utils modules have no ``__salt__``.
"""

import json
import re
import subprocess
import time
from pathlib import Path

from salt.exceptions import CommandExecutionError

DAEMON = "netem_nfqueue.py"
START_TIMEOUT_S = 10.0  # the daemon binds its queue and adds two iptables rules


def unit_name(kind, ifname, netns=""):
    """``kubeha-netem-<kind>-<netns@if>`` with systemd-safe characters."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{netns}@{ifname}" if netns else ifname)
    return f"kubeha-netem-{kind}-{safe}"


def exec_line(args):
    """
    An argument list as one systemd ``Exec*=`` value: every word double-quoted with
    ``\\`` and ``"`` escaped (systemd.service(5), "Command lines"), ``$`` doubled so
    no variable is expanded. Paths with spaces stay one word.
    """
    words = []
    for arg in args:
        text = str(arg).replace("\\", "\\\\").replace('"', '\\"').replace("$", "$$")
        words.append(f'"{text}"')
    return " ".join(words)


def daemon_script(opts, fallback_dirs=()):
    """Where ``_utils/netem_nfqueue.py`` is on this minion (synced, or next to us)."""
    candidates = [Path(opts.get("extension_modules", "")) / "utils" / DAEMON]
    candidates += [Path(d) / DAEMON for d in opts.get("utils_dirs", [])]
    candidates += [Path(d) / DAEMON for d in fallback_dirs]
    candidates.append(Path(__file__).resolve().parent / DAEMON)
    for path in candidates:
        if path.is_file():
            return str(path)
    return None


def _num(value):
    return f"{float(value):g}"


def daemon_argv(python, script, *, ifname, queue, params, seconds, state, token, seed=None):
    """``netem_nfqueue.py run ...`` for these parameters."""
    argv = [str(python), str(script), "run", "--ifname", ifname, "--queue", str(queue)]
    argv += ["--delay-ms", _num(params.get("delay", 0))]
    argv += ["--jitter-ms", _num(params.get("jitter", 0))]
    argv += ["--loss-pct", _num(params.get("loss", 0))]
    argv += ["--duration", f"{seconds:.3f}", "--state", str(state), "--token", token]
    if seed is not None:
        argv += ["--seed", str(int(seed))]
    return argv


def rules_clear_argv(python, script, ifname):
    return [str(python), str(script), "rules-clear", "--ifname", ifname]


def timer_argv(python, script, *, state, token, after, command):
    """``netem_nfqueue.py timer``: run command after `after` s if the token is current."""
    return [str(python), str(script), "timer", "--state", str(state), "--token", token,
            "--after", f"{after:.3f}", "--", *command]  # fmt: skip


def systemd_timer_argv(unit, seconds, timer):
    """systemd-run for a timer argv (with --after 0): systemd does the waiting."""
    return ["systemd-run", f"--unit={unit}", f"--on-active={seconds:.3f}s",
            "--timer-property=AccuracySec=100ms", *timer]  # fmt: skip


def systemd_service_argv(unit, argv, *, stop_post, log, seconds=0):
    """
    systemd-run for the daemon: ExecStopPost clears its rules even after a SIGKILL,
    its output appends to log (as in detached mode, so a failed start can quote it), and
    RuntimeMaxSec backs the duration up.
    """
    props = [
        f"--property=ExecStopPost={exec_line(stop_post)}",
        "--property=KillMode=mixed",
        f"--property=StandardOutput=append:{log}",
        f"--property=StandardError=append:{log}",
    ]
    if seconds:
        props.append(f"--property=RuntimeMaxSec={int(seconds) + 30}")
    return ["systemd-run", f"--unit={unit}", *props, *argv]


def detach(cmd, log):
    """Start cmd in its own session so it outlives this job (and whoever called it)."""
    log = Path(log)
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


def arm_timer(run, *, python, script, systemd, unit, log, state, token, seconds, command):
    """Run command after `seconds` unless the state file's token changed meanwhile."""
    if systemd:
        run(["systemctl", "stop", f"{unit}.timer", f"{unit}.service"], check=False)
        timer = timer_argv(python, script, state=state, token=token, after=0, command=command)
        run(systemd_timer_argv(unit, seconds, timer))
        return {"how": "systemd-run", "unit": unit}
    timer = timer_argv(python, script, state=state, token=token, after=seconds, command=command)
    return {"how": "detached process", "pid": detach(timer, log).pid}


def start_daemon(
    run, argv, *, systemd, unit, log, stop_post, state, token, seconds, wrap=list, timeout=None
):
    """
    Start the nfqueue daemon (argv from ``daemon_argv``) and wait until it has written
    its state file with our token (its rules are in then); return that state with how it
    runs. ``wrap`` puts the detached command in a network namespace.
    """
    log = Path(log)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_bytes(b"")  # this start's output only, whichever way it runs
    if systemd:
        run(["systemctl", "stop", f"{unit}.service"], check=False)
        run(systemd_service_argv(unit, argv, stop_post=stop_post, log=log, seconds=seconds))
        how = {"how": "systemd-run", "unit": unit}
    else:
        how = {"how": "detached process", "pid": detach(wrap(argv), log).pid}
    deadline = time.monotonic() + (START_TIMEOUT_S if timeout is None else timeout)
    while time.monotonic() < deadline:
        try:
            current = json.loads(Path(state).read_text())
        except (OSError, ValueError):
            current = None
        if current and current.get("token") == token:
            return dict(current, **how)
        time.sleep(0.05)
    tail = log.read_text(errors="replace")[-800:].strip()
    raise CommandExecutionError(f"the nfqueue daemon did not start: {tail or '(no output)'}")
