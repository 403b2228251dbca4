"""
What the day-2 runners (backup, drill, defrag, certificate renewal) share on the master:
the record of each job's last outcome, one run at a time per cluster and job, a cooldown
between automatic runs, and the failure event.

Records live in ``<cachedir>/kubeha/day2/<cluster>/``, root only: ``<job>.json`` (the last
outcome), ``<job>-ok.json`` (the last success) and ``<job>.jsonl`` (the history, newest
last, trimmed). ``kubeha_status.day2`` reads them. Nothing here holds a secret: callers
record what they would return.

Loaded as ``__utils__["kubeha_day2.<name>"]``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from pathlib import Path

from salt.exceptions import CommandExecutionError

JOBS = ("backup", "prune", "drill", "defrag", "certs", "restore")
HISTORY_LINES = 500
CLUSTER = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


class Busy(CommandExecutionError):
    """Another run of the same job on the same cluster holds the lock."""


def is_busy(err: BaseException) -> bool:
    """Whether ``err`` says another run holds the lock (not a failure of this one)."""
    return isinstance(err, Busy)


def skipped(err: BaseException, reason: str) -> dict:
    """The return of a run that did not start because another one holds the lock: not a
    failure when it was automatic (the reactor fires once per control plane)."""
    automatic = reason != "manual"
    out = {"result": automatic, "skipped": True, "comment": f"not started: {err}"}
    return out if automatic else {**out, "retcode": 1, "Error": out["comment"]}


def _dir(opts: dict, cluster: str) -> Path:
    if not isinstance(cluster, str) or not CLUSTER.fullmatch(cluster):
        raise CommandExecutionError(f"not a cluster name: {cluster!r}")
    path = Path(opts["cachedir"]) / "kubeha" / "day2" / cluster
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def _job(job: str) -> str:
    if job not in JOBS:
        raise CommandExecutionError(f"unknown day-2 job {job!r}")
    return job


def _write(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
    tmp.chmod(0o600)
    tmp.replace(path)


def record(opts: dict, cluster: str, job: str, outcome: dict) -> dict:
    """Keep ``outcome`` (with ``result``) as the job's last, and in its history."""
    folder = _dir(opts, cluster)
    entry = {"job": _job(job), "cluster": cluster, "at": time.time(), **outcome}
    _write(folder / f"{job}.json", entry)
    if entry.get("result"):
        _write(folder / f"{job}-ok.json", entry)
    history = folder / f"{job}.jsonl"
    lines = history.read_text().splitlines() if history.exists() else []
    lines = [*lines[-(HISTORY_LINES - 1) :], json.dumps(entry, sort_keys=True, default=str)]
    history.write_text("\n".join(lines) + "\n")
    history.chmod(0o600)
    return entry


def last(opts: dict, cluster: str, job: str, ok: bool = False) -> dict | None:
    """The job's last outcome (``ok=True``: its last success), or None."""
    path = _dir(opts, cluster) / (f"{_job(job)}-ok.json" if ok else f"{job}.json")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def history(opts: dict, cluster: str, job: str, count: int = 20) -> list[dict]:
    path = _dir(opts, cluster) / f"{_job(job)}.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines()[-int(count) :]:
        with contextlib.suppress(ValueError):
            out.append(json.loads(line))
    return out


def forget(opts: dict, cluster: str, job: str) -> bool:
    """Drop the job's last-success record (ends a cooldown); history stays."""
    path = _dir(opts, cluster) / f"{_job(job)}-ok.json"
    existed = path.exists()
    path.unlink(missing_ok=True)
    return existed


def cooling_down(opts: dict, cluster: str, job: str, cooldown_s: float) -> float:
    """Seconds left before an automatic run may start again (0 = it may)."""
    done = last(opts, cluster, job, ok=True)
    if not done:
        return 0.0
    return max(0.0, float(done.get("at", 0)) + float(cooldown_s) - time.time())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def locked(opts: dict, cluster: str, job: str, stale_after_s: float):
    """One run of ``job`` per cluster on this master. A lock whose process is gone or that
    is older than ``stale_after_s`` (a run is bounded by then) is taken over."""
    path = _dir(opts, cluster) / f"{_job(job)}.lock"
    mine = json.dumps({"pid": os.getpid(), "at": time.time()})
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            try:
                held = json.loads(path.read_text())
            except (OSError, ValueError):
                held = {}
            age = time.time() - float(held.get("at", 0))
            pid = int(held.get("pid", 0))
            if pid and _alive(pid) and age < stale_after_s:
                raise Busy(
                    f"{job} of {cluster} is already running (pid {pid}, for {age:.0f} s)"
                ) from None
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as handle:
            handle.write(mine)
        break
    else:
        raise Busy(f"{job} of {cluster}: could not take the lock {path}")
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            if path.read_text() == mine:
                path.unlink()


def failed(fire, cluster: str, job: str, message: str, **detail) -> dict:
    """The runner return of a failed job, after firing ``kubeha/<job>/<cluster>/failed``."""
    data = {"cluster": cluster, "job": job, "error": message, **detail}
    with contextlib.suppress(Exception):  # the event is a courtesy; the return still fails
        fire(data, f"kubeha/{job}/{cluster}/failed")
    return {"result": False, "retcode": 1, "Error": message, "comment": message, **detail}
