"""What would keep a finished test run from ending: processes still holding the run's
output pipe (CI waits for it to close) and non-daemon threads (the interpreter joins them
at exit). tests/conftest.py prints both after the summary, so a run that outlives its
summary names the culprit in its own log instead of timing out in silence.

    pipe_holders(1)        # [(pid, "cmdline"), ...] other than this process and its parents
    lingering_threads()    # ["ThreadPoolExecutor-0_0", ...]
"""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path


def _ancestors(pid: int) -> set[int]:
    seen = set()
    while pid > 1 and pid not in seen:
        seen.add(pid)
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            break
        pid = int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("PPid:")))
    return seen


def _writes(fdinfo: Path) -> bool:
    """Whether the descriptor was opened for writing (the reader at the pipe's other end,
    `| tee log`, keeps nothing from ending)."""
    flags = next(ln for ln in fdinfo.read_text().splitlines() if ln.startswith("flags:"))
    return int(flags.split()[1], 8) & 0o3 != os.O_RDONLY


def pipe_holders(fd: int) -> list[tuple[int, str]]:
    """Processes other than this one and its ancestors with `fd`'s pipe open for writing;
    [] when `fd` is not a pipe (a terminal, a file)."""
    try:
        st = os.fstat(fd)
    except OSError:
        return []
    if not stat.S_ISFIFO(st.st_mode):
        return []
    target = f"pipe:[{st.st_ino}]"
    mine = _ancestors(os.getpid())
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) in mine:
            continue
        try:
            if any(
                os.readlink(f) == target and _writes(proc / "fdinfo" / f.name)
                for f in (proc / "fd").iterdir()
            ):
                cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                found.append((int(proc.name), cmd.strip()[:200]))
        except OSError:
            continue  # gone, or not ours to read
    return sorted(found)


def lingering_threads() -> list[str]:
    return [
        t.name
        for t in threading.enumerate()
        if t is not threading.main_thread() and not t.daemon and t.is_alive()
    ]
