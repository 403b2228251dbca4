"""tests/leftovers.py finds what would keep a finished run from ending."""

from __future__ import annotations

import os
import subprocess
import threading

from tests.leftovers import lingering_threads, pipe_holders


def test_a_child_holding_the_pipe_is_named_and_a_file_is_no_pipe(tmp_path):
    r, w = os.pipe()
    child = subprocess.Popen(["sleep", "30"], stdout=w)
    try:
        holders = pipe_holders(w)
        assert (child.pid, "sleep 30") in holders, holders
    finally:
        child.kill()
        child.wait()
        os.close(r)
        os.close(w)
    with open(tmp_path / "f", "w") as f:
        assert pipe_holders(f.fileno()) == []


def test_a_non_daemon_thread_is_named_until_it_ends():
    stop = threading.Event()
    t = threading.Thread(target=stop.wait, name="khm-lingering")
    t.start()
    try:
        assert "khm-lingering" in lingering_threads()
    finally:
        stop.set()
        t.join()
    assert "khm-lingering" not in lingering_threads()
