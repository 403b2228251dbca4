"""
kubeha-notify.sh, which keepalived runs as root on every VRRP transition: rendered with
Salt's own Jinja (and its `quote` filter) from values that pass the model's rules, it is
valid shell and inert: what keepalived passes and what pillar gave reach salt-call as plain
arguments, never as code.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.keepalived_notify import render


def _fake_salt_call(bindir: Path, record: Path) -> None:
    bindir.mkdir()
    fake = bindir / "salt-call"
    fake.write_text(f'#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done > {record}\n')
    fake.chmod(0o755)


@pytest.mark.parametrize("shell", ["sh", "bash"])
def test_rendered_script_is_valid_shell(tmp_path, shell):
    if shutil.which(shell) is None:
        pytest.fail(f"{shell} is not installed")
    script = render(tmp_path)
    check = subprocess.run([shell, "-n", str(script)], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stderr


def _run(script: Path, tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, Path]:
    record = tmp_path / "salt-call.args"
    bindir = tmp_path / "bin"
    if not bindir.exists():
        _fake_salt_call(bindir, record)
    env = {"PATH": f"{bindir}:/usr/bin:/bin", "KUBEHA_RUN_DIR": str(tmp_path / "run")}
    proc = subprocess.run(
        ["sh", str(script), *args], env=env, cwd=tmp_path, capture_output=True, text=True,
        timeout=30, check=False,
    )  # fmt: skip
    return proc, record


def _wait_for(path: Path) -> list[str]:
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().endswith("\n"):
            return path.read_text().splitlines()
        time.sleep(0.05)
    raise AssertionError(f"salt-call was not called ({path})")


def test_script_passes_pillar_values_as_plain_arguments(tmp_path):
    script = render(tmp_path)
    proc, record = _run(script, tmp_path, "INSTANCE", "VI_1", "MASTER", "150")
    assert proc.returncode == 0, proc.stderr
    args = _wait_for(record)
    assert args[:3] == ["--out=quiet", "event.send", "kubeha/vrrp/x-1/rm-rf--x/0-cp/master"]
    assert "cluster=rm-rf--x" in args and "node=0-cp" in args and "priority=150" in args
    state = (tmp_path / "run/keepalived/VI_1.json").read_text()
    assert '"state": "MASTER"' in state and '"priority": 150' in state


def test_hostile_arguments_from_the_caller_run_nothing(tmp_path):
    """Whatever reaches the script's arguments is data: nothing is created or run."""
    script = render(tmp_path)
    pwned = tmp_path / "pwned"
    for args in (
        ("INSTANCE", "$(touch pwned)", "MASTER", "1"),
        ("INSTANCE", "VI_1", "MASTER;touch pwned", "1"),
        ("INSTANCE", "VI_1", "MASTER", "1;touch pwned"),
        ("INSTANCE", "../../etc", "MASTER", "1"),
    ):
        proc, _ = _run(script, tmp_path, *args)
        assert proc.returncode == 0, proc.stderr
    assert not pwned.exists()
    written = sorted(os.listdir(tmp_path / "run/keepalived")) if (tmp_path / "run").exists() else []
    # Only the instance name keepalived can have (and its lock, which orders the writes):
    # the priority is forced to a number.
    assert written in ([], [".VI_1.lock", "VI_1.json"]), written
    if written:
        assert '"priority": 0' in (tmp_path / "run/keepalived/VI_1.json").read_text()


def _pid_now() -> int:
    """A PID handed out just now: the test process's own may be far behind the next
    script's on a busy host (CI forks thousands of processes before it gets here)."""
    return int(subprocess.run(["sh", "-c", "echo $$"], capture_output=True, text=True,
                              check=True).stdout)  # fmt: skip


def _record(tmp_path: Path, pid: int, state: str = "MASTER", age: float = 0.5) -> Path:
    path = tmp_path / "run/keepalived/VI_1.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f'{{"instance": "VI_1", "type": "INSTANCE", "state": "{state}", "priority": 150, '
        f'"time": {time.time() - age:.6f}, "pid": {pid}}}\n'
    )
    return path


def test_a_script_forked_before_the_recorded_one_changes_nothing(tmp_path):
    """Two quick transitions race (keepalived does not wait for its notify scripts): the
    record of the later-forked script stays, whichever write finishes last."""
    script = render(tmp_path)
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    # forked "after" the script about to run (well within half of pid_max: no wrap)
    path = _record(tmp_path, _pid_now() + min(100_000, pid_max // 4))
    proc, _ = _run(script, tmp_path, "INSTANCE", "VI_1", "BACKUP", "150")
    assert proc.returncode == 0, proc.stderr
    assert '"state": "MASTER"' in path.read_text()


def test_a_later_script_or_a_wrapped_pid_replaces_the_record(tmp_path):
    script = render(tmp_path)
    path = _record(tmp_path, 1)
    _run(script, tmp_path, "INSTANCE", "VI_1", "BACKUP", "150")
    assert '"state": "BACKUP"' in path.read_text()
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    # a recorded PID far above ours: the counter wrapped since, ours is the newer script
    _record(tmp_path, _pid_now() + pid_max // 2 + 1000)
    _run(script, tmp_path, "INSTANCE", "VI_1", "FAULT", "150")
    assert '"state": "FAULT"' in path.read_text()
    # a higher PID written long ago: the counter wrapped in between, ours is newer
    _record(tmp_path, _pid_now() + 1000, age=60)
    _run(script, tmp_path, "INSTANCE", "VI_1", "BACKUP", "150")
    assert '"state": "BACKUP"' in path.read_text()
