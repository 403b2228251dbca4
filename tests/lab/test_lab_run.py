"""lab.run on timeout: everything the command started dies with it, not just argv[0].

No root needed: the same escapes a command in a machine makes (apt-get's dpkg on a pty of
its own session, a shell's background job orphaned when the shell exits) are made here
by plain host processes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import pytest

from lab.run import LabError, run


def _running(pid: int) -> bool:
    """Alive and not a zombie (the host's init may leave killed orphans unreaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in "ZX"


def _wait_gone(pids: list[int], timeout: float = 5) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_running(p) for p in pids):
        time.sleep(0.05)
    return [p for p in pids if _running(p)]


def _read_pid(path: Path, timeout: float = 5) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError, ValueError):
            return int(path.read_text())
        time.sleep(0.02)
    raise AssertionError(f"{path} was never written")


def _cleanup(files: list[Path], marker: str) -> None:
    """Kill what a failed assertion left behind: only sleeps carrying this test's marker."""
    for path in files:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError, ValueError):
            pid = int(path.read_text())
            if marker in Path(f"/proc/{pid}/cmdline").read_text():
                os.kill(pid, signal.SIGKILL)


def test_timeout_kills_children_that_left_the_session_or_were_orphaned(tmp_path):
    marker = f"{300 + os.getpid() % 600}"  # an argument that identifies this test's sleeps
    files = [tmp_path / "own-session", tmp_path / "orphan", tmp_path / "child"]
    script = (
        # a child in a session of its own (as apt-get runs dpkg on its pty): still in the tree
        f"setsid sleep {marker} & echo $! > {files[0]}; "
        # a grandchild orphaned by its exiting parent: out of the tree, still in the session
        f"(sleep {marker} & echo $! > {files[1]}); "
        f"sleep {marker} & echo $! > {files[2]}; wait"
    )
    started = time.monotonic()
    try:
        with pytest.raises(LabError, match=r"timed out after 2s \(killed [4-9] processes"):
            run(["sh", "-c", script], timeout=2)
        took = time.monotonic() - started
        pids = [_read_pid(f) for f in files]
        assert _wait_gone(pids) == [], "processes the timed-out command started survived"
        assert took < 10, took
    finally:
        _cleanup(files, marker)


def test_a_command_that_finishes_is_untouched_and_keeps_its_output():
    res = run(["sh", "-c", "echo out; echo err >&2; exit 3"], check=False, timeout=10)
    assert (res.returncode, res.stdout, res.stderr) == (3, "out\n", "err\n")
    with pytest.raises(LabError, match="exit 3"):
        run(["sh", "-c", "exit 3"], timeout=10)
    assert run(["cat"], input="to stdin", timeout=10).stdout == "to stdin"
    assert run(["cat"], input=b"\xffbytes", timeout=10).stdout == "\ufffdbytes"
    assert run(["cat"], timeout=10).stdout == ""  # no input: stdin is /dev/null, never a tty
