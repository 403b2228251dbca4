"""
The running keepalived, for the ``keepalived`` execution module: who it is, signals to
it, and its JSON dump.

A pid file outlives its process. After PID reuse, a bare ``kill(pid, sig)`` would send
SIGHUP (terminate by default) or SIGRTMIN+2 to a stranger, so every signal goes through
``send_signal``: a pidfd first, then a check that the process is keepalived, then
``pidfd_send_signal`` (the pidfd cannot be re-targeted by a later reuse).

The dump (``/tmp/keepalived.json``) holds the VRRP ``auth_pass`` in clear. It is
removed as soon as it is read, on every exit path; when keepalived answers late, a
detached reaper removes the file it writes after we stopped waiting.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

NAME = "keepalived"
REAPER_WAIT_S = 30.0
# Runs detached with the minion's own interpreter; removes one file written after `since`.
_REAPER = """
import os, sys, time
path, since, until = sys.argv[1], float(sys.argv[2]), time.time() + float(sys.argv[3])
while time.time() < until:
    try:
        if os.stat(path).st_mtime >= since:
            os.unlink(path)
            break
    except FileNotFoundError:
        pass
    time.sleep(0.1)
"""


def is_keepalived(pid):
    """True when the process ``pid`` runs the keepalived binary."""
    try:
        if Path(f"/proc/{int(pid)}/comm").read_text().strip() != NAME:
            return False
        exe = os.readlink(f"/proc/{int(pid)}/exe")
    except PermissionError:
        return True  # exe needs ptrace rights (a non-root caller): the name has to do
    except (OSError, ValueError):
        return False
    # A binary replaced by a package upgrade reads "/usr/sbin/keepalived (deleted)".
    return Path(exe.removesuffix(" (deleted)")).name == NAME


def read_pid(pid_file):
    """The pid in the pid file when that process is keepalived, else None."""
    try:
        pid = int(Path(pid_file).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if is_keepalived(pid) else None


def send_signal(pid_file, sig):
    """Signal the keepalived of pid_file; return its pid, or None when none runs."""
    pid = read_pid(pid_file)
    if pid is None:
        return None
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return None  # exited meanwhile
    try:
        # Checked again through the pidfd's lifetime: a reuse after pidfd_open leaves the
        # fd on the dead process, and the send fails instead of reaching the newcomer.
        if not is_keepalived(pid):
            return None
        signal.pidfd_send_signal(fd, sig)
    except ProcessLookupError:
        return None
    finally:
        os.close(fd)
    return pid


def reap_late_file(path, since, wait=REAPER_WAIT_S):
    """Start a detached process that deletes path if it appears within `wait` seconds."""
    return subprocess.Popen(
        [sys.executable, "-c", _REAPER, str(path), f"{since:.3f}", str(wait)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    )


def fetch_dump(pid_file, dump_file, signum, timeout=3.0):
    """
    keepalived's JSON dump (the parsed list), or None when no keepalived runs or it
    does not answer within timeout. The file is gone when this returns.
    """
    path = Path(dump_file)
    if read_pid(pid_file) is None:
        return None
    path.unlink(missing_ok=True)  # an old dump would pass for a fresh one
    # File times come from the coarse clock, up to a tick behind time.time().
    since = time.time() - 1.0
    if send_signal(pid_file, signum) is None:
        return None
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                return json.loads(path.read_text())
            except (FileNotFoundError, ValueError):
                time.sleep(0.05)  # not there yet (keepalived writes it whole, then renames)
    finally:
        path.unlink(missing_ok=True)
    reap_late_file(path, since)
    return None
