"""A fault undoes itself (_utils/chaos_revert.py): the recorded actions run once, whoever
comes first (the node's timer or chaos.revert); a timer whose token is stale does nothing;
a PID that now belongs to another process is not signalled. Also the node watcher's
readers (_modules/chaos_watch.py): the VIP from the kernel's fib_trie, etcd's leader
metrics."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.unit.modules.khm_load import load, utils

revert = load("_utils", "chaos_revert")
watch = load("_modules", "chaos_watch")
watch.__utils__ = utils("kubeha_fib")
SCRIPT = revert.__file__


def _state(tmp_path, actions, token="t-1"):
    path = tmp_path / "etcd-stop.json"
    revert.write(path, {"fault": "etcd-stop", "token": token, "actions": actions})
    return path


def test_a_moved_manifest_is_moved_back_once(tmp_path):
    manifest, stash = tmp_path / "etcd.yaml", tmp_path / "stash.yaml"
    stash.write_text("kind: Pod\n")
    path = _state(tmp_path, [{"do": "move", "src": str(stash), "dst": str(manifest)}])
    done = revert.revert(path, "t-1")
    assert manifest.read_text() == "kind: Pod\n" and not stash.exists()
    assert done["by"] == "timer" and not path.exists()
    assert json.loads(path.with_suffix(".reverted").read_text())["log"][0].startswith("moved")
    assert revert.revert(path, "t-1") is None  # the second comer finds nothing to do


def test_a_stale_timer_does_nothing(tmp_path):
    stash = tmp_path / "stash.yaml"
    stash.write_text("x")
    path = _state(tmp_path, [{"do": "move", "src": str(stash), "dst": str(tmp_path / "m")}],
                  token="new")  # fmt: skip
    assert revert.revert(path, "old") is None
    assert stash.exists() and path.exists()


def test_a_file_put_back_by_someone_else_is_left_alone(tmp_path):
    manifest, stash = tmp_path / "etcd.yaml", tmp_path / "stash.yaml"
    manifest.write_text("theirs")
    stash.write_text("ours")
    path = _state(tmp_path, [{"do": "move", "src": str(stash), "dst": str(manifest)}])
    done = revert.revert(path)
    assert manifest.read_text() == "theirs" and "left alone" in done["log"][0]


def _proc_state(pid: int, want: str = "", wait: float = 2.0) -> str:
    """The process's state letter, waited for (a signal takes effect asynchronously)."""
    deadline = time.monotonic() + wait
    while True:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state == want or time.monotonic() > deadline:
            return state
        time.sleep(0.01)


def test_sigcont_only_reaches_the_recorded_process(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        os.kill(child.pid, signal.SIGSTOP)
        ticks = revert.start_ticks(child.pid)
        wrong = _state(tmp_path, [{"do": "cont", "pids": [[child.pid, ticks + 1]]}])
        assert "no recorded process" in revert.revert(wrong)["log"][0]
        assert _proc_state(child.pid, "T") == "T"
        right = _state(tmp_path, [{"do": "cont", "pids": [[child.pid, ticks]]}])
        assert f"SIGCONT to [{child.pid}]" in revert.revert(right)["log"][0]
        assert _proc_state(child.pid, "S") == "S"
    finally:
        child.kill()
        child.wait()


def test_the_detached_timer_reverts_after_its_caller_is_gone(tmp_path):
    stash, manifest = tmp_path / "stash", tmp_path / "etcd.yaml"
    stash.write_text("x")
    path = _state(tmp_path, [{"do": "move", "src": str(stash), "dst": str(manifest)}])
    argv = revert.timer_argv(sys.executable, SCRIPT, path, "t-1", after=0.5)
    # The caller (a Salt job) may die right away: the timer is in its own session.
    pid = revert.detach(argv, tmp_path / "timer.log")
    assert os.getsid(pid) == pid
    deadline = time.time() + 10
    while not manifest.exists() and time.time() < deadline:
        time.sleep(0.1)
    assert manifest.exists() and not path.exists()


def test_systemd_timer_command_line():
    argv = revert.systemd_timer_argv("kubeha-chaos-revert-isolate", 20, ["/py", "s.py", "revert"])
    assert argv[:3] == ["systemd-run", "--unit=kubeha-chaos-revert-isolate", "--on-active=20.000s"]
    assert argv[-3:] == ["/py", "s.py", "revert"] and "--collect" in argv


FIB_TRIE = """Main:
  +-- 0.0.0.0/0 3 0 5
     +-- 198.18.0.0/24 2 0 2
        |-- 198.18.0.0
           /24 link UNICAST
        |-- 198.18.0.10
           /32 host LOCAL
        |-- 198.18.0.11
           /32 host LOCAL
        |-- 198.18.0.255
           /32 link BROADCAST
"""


def test_the_vip_is_read_from_the_kernels_local_addresses():
    assert watch._holds_address("198.18.0.10", FIB_TRIE)
    assert not watch._holds_address("198.18.0.255", FIB_TRIE)
    assert not watch._holds_address("198.18.0.1", FIB_TRIE)
    without = FIB_TRIE.replace("|-- 198.18.0.10\n           /32 host LOCAL\n", "")
    assert not watch._holds_address("198.18.0.10", without)


def test_etcd_leader_status_from_its_metrics():
    text = (
        "# HELP etcd_server_is_leader Whether or not this member is a leader.\n"
        "# TYPE etcd_server_is_leader gauge\n"
        "etcd_server_is_leader 1\n"
        "etcd_server_has_leader 1\n"
        "etcd_server_leader_changes_seen_total 3\n"
    )
    assert watch._parse_etcd_metrics(text) == {"leader": True, "has_leader": True, "changes": 3}
    assert watch._parse_etcd_metrics("etcd_server_has_leader 0\n")["has_leader"] is False


def test_records_stay_until_discarded(tmp_path):
    """The runner fetches with remove=False (an answer lost on the way back can be asked
    again), then discards; a cut last line (power-off) is skipped."""
    watch.__salt__ = {"config.get": lambda key, default=None: {"runs_dir": str(tmp_path)}}
    (tmp_path / "run-1.watch.jsonl").write_text('{"t": 1.0, "k": "vip", "v": true}\n{"t": 2')
    for _ in range(2):
        assert watch.fetch("run-1", remove=False) == [{"t": 1.0, "k": "vip", "v": True}]
    assert watch.discard("run-1") is True
    assert watch.fetch("run-1") == [] and watch.discard("run-1") is False
