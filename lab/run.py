"""Running host commands: argument lists, a timeout on every call, errors that carry stderr."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from lab import proctree


class LabError(RuntimeError):
    """A lab step failed; the message says which command and what it printed."""


def run(
    cmd: Sequence[str | Path],
    *,
    timeout: float = 120,
    check: bool = True,
    input: str | bytes | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `cmd`, capture text output, raise LabError (with stderr) on failure or timeout."""
    argv = [str(c) for c in cmd]
    full_env = None if env is None else {**os.environ, **env}
    text = not isinstance(input, bytes)
    try:
        # A session of its own: on timeout everything the command started is found by its
        # session id and process tree and killed with it (lab.proctree), not just argv[0].
        proc = subprocess.Popen(  # noqa: S603 - argument list, no shell
            argv,
            stdin=subprocess.DEVNULL if input is None else subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=text,
            env=full_env,
            cwd=cwd,
            start_new_session=True,
        )
    except FileNotFoundError as err:
        raise LabError(f"{argv[0]} is not installed (make system-deps installs it)") from err
    with proc:
        try:
            stdout, stderr = proc.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            killed = proctree.kill_tree(proc.pid)
            stdout, stderr = _leftover_output(proc)
            detail = _text(stderr or stdout).strip()[-2000:]
            raise LabError(
                f"timed out after {timeout:.0f}s (killed {killed} processes it started): "
                f"{' '.join(argv)}\n{detail}"
            ) from None
    proc = subprocess.CompletedProcess(argv, proc.returncode, _text(stdout), _text(stderr))
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()[-2000:]
        raise LabError(f"exit {proc.returncode}: {' '.join(argv)}\n{detail}")
    return proc


def _text(out: str | bytes | None) -> str:
    if isinstance(out, bytes):
        return out.decode(errors="replace")
    return out or ""


def _leftover_output(proc: subprocess.Popen) -> tuple[str | bytes, str | bytes]:
    """What the killed command printed; a process that escaped the kill (a daemon that
    left both the tree and the session) may still hold the pipes, so do not wait forever."""
    try:
        return proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return "", ""


def say(message: str) -> None:
    """Progress line for the operator (stderr, so stdout stays machine-readable)."""
    print(f"[lab] {message}", file=sys.stderr, flush=True)


@contextmanager
def step(title: str) -> Iterator[None]:
    """Print a step, then how long it took."""
    say(f"{title} ...")
    started = time.monotonic()
    yield
    say(f"{title}: done in {time.monotonic() - started:.1f}s")


def wait_for(predicate, *, timeout: float, interval: float = 0.2, what: str = "condition") -> float:
    """Poll `predicate` until it is truthy; return the seconds waited, or raise LabError."""
    started = time.monotonic()
    deadline = started + timeout
    while True:
        if predicate():
            return time.monotonic() - started
        if time.monotonic() >= deadline:
            raise LabError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
