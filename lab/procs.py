"""Processes the lab starts and stops: always by PID, checked against their start time.

A PID alone can be reused after its process died; a (pid, start time) pair cannot, so
`down` never signals a stranger.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from lab import proctree
from lab.run import LabError


@dataclass(frozen=True)
class Placement:
    """Where a process the lab starts lives (lab.cgroups.joiner makes these): a hook the
    child runs before exec (join cgroups itself), or a command prefix given the process
    name (`systemd-run --scope ...`, which exec's the command in a new unit: same PID)."""

    before_exec: Callable[[], None] | None = None
    prefix: Callable[[str], list[str]] | None = None

    def __call__(self) -> None:
        if self.before_exec is not None:
            self.before_exec()


@dataclass(frozen=True)
class Tracked:
    """A process the lab started: its PID and kernel start time (clock ticks since boot)."""

    name: str
    pid: int
    start_time: int

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> Tracked:
        return cls(data["name"], int(data["pid"]), int(data["start_time"]))


def start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat, or None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    return int(stat.rsplit(")", 1)[1].split()[19])


def is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def alive(proc: Tracked) -> bool:
    return start_time(proc.pid) == proc.start_time and not is_zombie(proc.pid)


def spawn(
    name: str,
    argv: Sequence[str | os.PathLike],
    log: Path,
    *,
    env: dict[str, str] | None = None,
    before_exec: Callable[[], None] | None = None,
) -> Tracked:
    """Start a long-running process in its own session, output appended to `log`.

    `before_exec` runs in the child before exec; a `Placement` may also prefix the command.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    command = [str(a) for a in argv]
    if isinstance(before_exec, Placement):
        if before_exec.prefix is not None:
            command = [*before_exec.prefix(name), *command]
        before_exec = before_exec.before_exec
    with open(log, "ab") as out:
        child = subprocess.Popen(  # noqa: S603 - argument list, no shell
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # survives the CLI that started it; not in its signals
            env=None if env is None else {**os.environ, **env},
            preexec_fn=before_exec,  # noqa: PLW1509 - only writes our PID into our cgroups
        )
    started = start_time(child.pid)
    if started is None:
        raise LabError(f"{name} exited at once; see {log}")
    return Tracked(name, child.pid, started)


def children(pid: int) -> list[int]:
    """Direct children of `pid` (from /proc/<pid>/task/*/children)."""
    return proctree.children(pid)


def stop(proc: Tracked, *, timeout: float = 10.0, sig: int = signal.SIGTERM) -> None:
    """Signal the process (only if it is still the one we started), wait, then SIGKILL."""
    if not alive(proc):
        return
    os.kill(proc.pid, sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reap(proc.pid)
        if not alive(proc):
            return
        time.sleep(0.05)
    if alive(proc):
        os.kill(proc.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while alive(proc) and time.monotonic() < deadline:
        reap(proc.pid)
        time.sleep(0.05)
    if alive(proc):
        raise LabError(f"{proc.name} (pid {proc.pid}) survived SIGKILL")


def reap(pid: int) -> None:
    """Collect the exit status if the process is our own child (no zombie left behind)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
