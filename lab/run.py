"""Running host commands: argument lists, a timeout on every call, errors that carry stderr."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path


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
    try:
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=not isinstance(input, bytes),
            input=input,
            timeout=timeout,
            env=full_env,
            cwd=cwd,
            check=False,
        )
    except subprocess.TimeoutExpired as err:
        raise LabError(f"timed out after {timeout:.0f}s: {' '.join(argv)}") from err
    except FileNotFoundError as err:
        raise LabError(f"{argv[0]} is not installed (make system-deps installs it)") from err
    if isinstance(proc.stdout, bytes):
        proc.stdout = proc.stdout.decode(errors="replace")
        proc.stderr = proc.stderr.decode(errors="replace")
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()[-2000:]
        raise LabError(f"exit {proc.returncode}: {' '.join(argv)}\n{detail}")
    return proc


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
