"""
Undo a chaos fault on a node: the recorded actions of one fault, run once, by whoever
comes first -- the ``chaos`` module's own revert, or the timer armed on the node before
the fault was injected. The timer is a systemd transient unit where systemd runs
(``systemd-run --on-active``), else a detached process in its own session, so the fault
ends even when the master, the orchestration or the network is gone.

A state file per fault (``<state_dir>/<fault>.json``) holds a token and the actions:

- ``{"do": "cont", "pids": [[pid, start_ticks], ...]}``: SIGCONT each process that is
  still the one recorded (start time from ``/proc/<pid>/stat``: PIDs are reused);
- ``{"do": "move", "src": ..., "dst": ...}``: move a file back unless ``dst`` exists again;
- ``{"do": "run", "argv": [...]}``: run a command (no shell), e.g. ``ip link set dev X up``.

A timer whose token no longer matches (the fault was reverted and a new one injected)
does nothing. Stdlib only: the timer runs this file with the minion's Python, outside
Salt:

    python chaos_revert.py revert --state /var/lib/kubeha/chaos/etcd-stop.json --token T
    python chaos_revert.py revert --after 30 --state ... --token T     # detached fallback
"""

import argparse
import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

RUN_TIMEOUT_S = 20


def read(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def write(path, data):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


def start_ticks(pid):
    """Field 22 of /proc/<pid>/stat: the process's start time, fixed for its life."""
    try:
        return int(Path(f"/proc/{int(pid)}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _cont(action):
    done = []
    for pid, ticks in action.get("pids") or []:
        if start_ticks(pid) != ticks:
            continue  # gone, or the PID belongs to someone else now
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGCONT)
            done.append(pid)
    return f"SIGCONT to {done}" if done else "no recorded process left to continue"


def _move(action):
    src, dst = Path(action["src"]), Path(action["dst"])
    if dst.exists():
        return f"{dst} exists again: left alone"
    if not src.exists():
        return f"{src} is gone: nothing to move back"
    os.replace(src, dst)
    return f"moved {src} back to {dst}"


def _run(action):
    try:
        res = subprocess.run(
            action["argv"], capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"{action['argv'][0]}: {err}"
    tail = (res.stderr or res.stdout).strip()[-200:]
    return f"{' '.join(action['argv'][:4])}: exit {res.returncode}{': ' + tail if tail else ''}"


ACTIONS = {"cont": _cont, "move": _move, "run": _run}


def revert(state_path, token=None):
    """
    Run the recorded actions once (under an flock of the state file) and remove the state.
    ``token``: only if it is still the recorded one (a timer); None reverts whatever is
    recorded. Returns what was done, or None when there was nothing (left) to do.
    """
    state_path = Path(state_path)
    if not state_path.exists():
        return None
    # One lock file per state directory: the state file itself may vanish meanwhile.
    with open(state_path.parent / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        state = read(state_path)
        if not state or (token is not None and state.get("token") != token):
            return None
        log = []
        for action in state.get("actions") or []:
            try:
                log.append(ACTIONS[action["do"]](action))
            except (KeyError, OSError) as err:
                log.append(f"{action.get('do')}: {err}")
        done = {**state, "reverted_at": time.time(), "log": log, "by": "timer" if token else "call"}
        write(state_path.with_suffix(".reverted"), done)
        state_path.unlink(missing_ok=True)
        return done


def timer_argv(python, script, state_path, token, after=None):
    argv = [str(python), str(script), "revert", "--state", str(state_path), "--token", token]
    return argv + (["--after", f"{after:.3f}"] if after is not None else [])


def has_systemd():
    """Whether this host runs systemd with systemd-run (the timers below need both)."""
    return Path("/run/systemd/system").is_dir() and bool(shutil.which("systemd-run"))


def systemd_timer_argv(unit, seconds, argv):
    """systemd-run: systemd waits and runs argv once (a transient .timer + .service)."""
    return ["systemd-run", f"--unit={unit}", f"--on-active={seconds:.3f}s",
            "--timer-property=AccuracySec=100ms", "--collect", *argv]  # fmt: skip


def detach(argv, log):
    """Start argv in its own session, so it outlives the Salt job that armed it."""
    log = Path(log)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        ).pid


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rev = sub.add_parser("revert")
    rev.add_argument("--state", required=True)
    rev.add_argument("--token")
    rev.add_argument("--after", type=float, default=0.0)
    args = parser.parse_args(argv)
    if args.after > 0:
        time.sleep(args.after)
    done = revert(args.state, args.token)
    print(json.dumps(done) if done else "nothing to revert", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
