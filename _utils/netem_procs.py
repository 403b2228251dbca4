"""
State files and processes of the ``netem`` execution module: where a fault is recorded,
and how a recorded nfqueue daemon is recognised and stopped. (Starting things is
``netem_launch``.)

A state file in /run outlives its process, and PIDs are reused. A PID read from one is
only signalled when the process is still the one recorded: same start time (field 22
of ``/proc/<pid>/stat``, clock ticks since boot, fixed for a process's life), or for
files written before start times were recorded, a command line naming the daemon. The
signals go through a pidfd opened before that check, so a reuse in between cannot
redirect them.
"""

import contextlib
import json
import os
import select
import signal
from pathlib import Path

DAEMON = "netem_nfqueue.py"


# --- state files ------------------------------------------------------------------------


def key(ifname, netns=""):
    """``<netns>@<if>`` or ``<if>``: names the state file, log and units of one interface."""
    return f"{netns}@{ifname}" if netns else ifname


def state_file(state_dir, ifname, netns=""):
    return Path(state_dir) / f"{key(ifname, netns)}.json"


def read_state(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def write_state(path, data):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


# --- process identity -------------------------------------------------------------------


def _stat_fields(pid):
    """Fields 3.. of /proc/<pid>/stat (after "(comm)", which may hold spaces)."""
    try:
        return Path(f"/proc/{int(pid)}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, ValueError, IndexError):
        return None


def start_time(pid):
    """The process's start time in clock ticks since boot, or None when it is gone."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None  # field 22


def identity(pid):
    """What a state file records of a process: pid and start time."""
    return {"pid": int(pid), "start_time": start_time(pid)}


def _reap(pid):
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(int(pid), os.WNOHANG)  # a detached child of ours exits as a zombie


def alive(pid, started=None, hint=DAEMON):
    """
    Running (not a zombie) and still the recorded process: ``started`` (start time) when
    given, else a command line that contains ``hint``.
    """
    if not pid:
        return False
    _reap(pid)
    fields = _stat_fields(pid)
    if not fields or fields[0] == "Z":
        return False
    if started is not None:
        return int(fields[19]) == int(started)
    try:
        cmdline = Path(f"/proc/{int(pid)}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return False
    return hint.encode() in cmdline


def terminate(pid, started=None, hint=DAEMON, grace=5.0):
    """
    SIGTERM the recorded process, SIGKILL it after grace seconds; nothing when the PID
    now belongs to someone else. Returns whether it was ours (and so was signalled).
    """
    try:
        fd = os.pidfd_open(int(pid))
    except (OSError, ValueError, TypeError):
        return False
    try:
        if not alive(pid, started, hint):
            return False
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(fd, signal.SIGTERM)
        # A pidfd turns readable when its process exits (zombies included).
        if not select.select([fd], [], [], grace)[0]:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(fd, signal.SIGKILL)
            select.select([fd], [], [], grace)
    finally:
        os.close(fd)
    _reap(pid)
    return True
