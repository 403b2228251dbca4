"""Stop everything a timed-out command started: its process tree and its session.

`run` starts each command as the leader of a new session. A command run in a machine is
`nsenter`, whose forked child (in the machine's PID namespace) runs the real program, so
killing only the PID that `run` knows leaves that program (an apt-get holding the dpkg
lock, say) running. What the command started is found two ways, from the host:
- descendants: /proc/<pid>/task/*/children, recursively; this finds children that left
  the session (apt runs dpkg on a pty, which takes a session of its own);
- the session: every process whose session id is the leader's; this finds children
  that were orphaned (`cmd &` in a shell that exited) and reparented to an init.
Each process is held by a pidfd opened after its start time was read and checked again,
so a recycled PID is never signalled. Everything found is SIGSTOPped before the next
look (a stopped process cannot fork or exit and orphan its children), then SIGKILLed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path


def _stat(pid: int) -> list[str] | None:
    """Fields 3.. of /proc/<pid>/stat (state first), or None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    return stat.rsplit(")", 1)[1].split()


def children(pid: int) -> list[int]:
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            kids += [int(k) for k in (task / "children").read_text().split()]
    return kids


def descendants(pid: int) -> set[int]:
    found: set[int] = set()
    todo = [pid]
    while todo:
        for kid in children(todo.pop()):
            if kid not in found:
                found.add(kid)
                todo.append(kid)
    return found


def session(sid: int) -> set[int]:
    """Every process of session `sid` (field 6 of /proc/<pid>/stat)."""
    members = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None and int(fields[3]) == sid:
                members.add(int(entry.name))
    return members


def _hold(pid: int) -> int | None:
    """A pidfd for `pid` if it is alive and not a zombie; None otherwise."""
    before = _stat(pid)
    if before is None or before[0] in "ZX":
        return None
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return None
    after = _stat(pid)
    if after is None or after[19] != before[19]:  # start time: the PID was reused
        os.close(fd)
        return None
    return fd


def kill_tree(leader: int, settle: float = 5.0) -> int:
    """SIGKILL `leader` (a session leader) and everything it started; return how many.

    The leader is signalled last: it is the caller's child and stays unreaped (a zombie at
    worst) until the caller waits for it, so its PID and session id cannot be reused
    while the others are looked for.
    """
    held: dict[int, int] = {}  # pid -> pidfd
    try:
        deadline = time.monotonic() + settle
        while time.monotonic() < deadline:
            new = (descendants(leader) | session(leader) | {leader}) - held.keys()
            fresh = {pid: fd for pid in new if (fd := _hold(pid)) is not None}
            if not fresh:
                break
            for fd in fresh.values():
                with contextlib.suppress(ProcessLookupError):
                    signal.pidfd_send_signal(fd, signal.SIGSTOP)
            held |= fresh
        for pid, fd in held.items():
            if pid != leader:
                with contextlib.suppress(ProcessLookupError):
                    signal.pidfd_send_signal(fd, signal.SIGKILL)
        if leader in held:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(held[leader], signal.SIGKILL)
        return len(held)
    finally:
        for fd in held.values():
            os.close(fd)
