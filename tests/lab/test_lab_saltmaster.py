"""lab.saltmaster.forget_killed_run: the job files of a SIGKILLed salt-run go, no other.

No root needed: the master's cache is a temporary directory and the job files are written
the way Salt writes them (salt/client/mixins.py: `salt.payload.dumps(dict(data, pid=...))`).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import salt.payload

from lab import saltmaster
from lab.run import LabError


def _job(proc_dir, jid: str, pid: int) -> None:
    (proc_dir / jid).write_bytes(salt.payload.dumps({"jid": jid, "fun": "state.orch", "pid": pid}))


@pytest.fixture
def proc_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(saltmaster, "HOME", tmp_path)
    path = tmp_path / "cache" / "proc"
    path.mkdir(parents=True)
    return path


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])  # noqa: S603 - our own interpreter
    child.wait()
    return child.pid


def test_only_the_killed_runs_job_files_are_removed(proc_dir):
    dead = _dead_pid()
    _job(proc_dir, "20261129070706921835", dead)  # the orchestration
    _job(proc_dir, "20261129070707000001", dead)  # the runner it called, same process
    _job(proc_dir, "20261129070800000000", os.getpid())  # another run, alive
    (proc_dir / "garbage").write_bytes(b"\xc1 not msgpack")

    removed = saltmaster.forget_killed_run(dead)

    assert removed == ["20261129070706921835", "20261129070707000001"]
    assert sorted(p.name for p in proc_dir.iterdir()) == ["20261129070800000000", "garbage"]


def test_a_run_still_alive_is_refused(proc_dir):
    _job(proc_dir, "20261129070800000000", os.getpid())
    with pytest.raises(LabError, match="still running"):
        saltmaster.forget_killed_run(os.getpid())
    assert [p.name for p in proc_dir.iterdir()] == ["20261129070800000000"]


REFUSAL = (
    '{"data": {"vm_master": ["The function \\"state.orchestrate\\" is running as PID 4242 and '
    'was started at 2026, Nov 29 12:07:04.153964 with jid 20261129120704153964"]}}'
)


def _master(monkeypatch, answers: list[str]) -> list[list[str]]:
    """saltmaster.run answering ``answers`` in turn; the argument lists it was given."""
    calls = []

    def run(argv, timeout=None, check=False):
        calls.append([str(a) for a in argv])
        return subprocess.CompletedProcess(argv, 0, answers.pop(0), "")

    monkeypatch.setattr(saltmaster, "run", run)
    return calls


def test_an_orchestration_refused_by_the_masters_schedule_runs_again_after_it(
    proc_dir, monkeypatch
):
    jid = "20261129120704153964"
    (proc_dir / jid).write_bytes(salt.payload.dumps(
        {"jid": jid, "fun": "state.orchestrate", "pid": 4242,
         "schedule": "kubeha-etcd-backup-lab"}))  # fmt: skip
    calls = _master(monkeypatch, [REFUSAL, '{"data": {"vm_master": {}}}'])
    monkeypatch.setattr(saltmaster.time, "sleep", lambda s: (proc_dir / jid).unlink())
    proc = saltmaster.cli("salt-run", ["--out=json", "state.orch", "orch.upgrade"])
    assert proc.stdout == '{"data": {"vm_master": {}}}' and len(calls) == 2
    assert calls[0] == calls[1]


def test_any_other_refusal_is_returned_as_it_is(proc_dir, monkeypatch):
    jid = "20261129120704153964"
    (proc_dir / jid).write_bytes(salt.payload.dumps({"jid": jid, "fun": "state.orch", "pid": 1}))
    calls = _master(monkeypatch, [REFUSAL])
    assert saltmaster.cli("salt-run", ["state.orch", "orch.chaos"]).stdout == REFUSAL
    (proc_dir / jid).unlink()
    calls = _master(monkeypatch, [REFUSAL])  # its job file gone: not known to be scheduled
    assert saltmaster.cli("salt-run", ["state.orch", "orch.chaos"]).stdout == REFUSAL
    assert len(calls) == 1
