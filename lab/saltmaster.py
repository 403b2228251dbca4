"""The lab's Salt master: on the host, bound to 198.18.0.1 only, state under lab/.state/master.

What it serves comes from the documented production config
(docs/examples/master.d/kubeha.conf, with /srv/kubeha replaced by this checkout): file_roots
base [<repo>/salt] only, pillar_roots base [<repo>/pillar]; reactors from
<repo>/salt/reactor/reactors.yaml when that file exists. Its runtime state (keys, job cache,
caches) lives in lab/.state, outside every served path. Minion keys are made here and
pre-accepted for the lab's own machines only; any other key stays unaccepted.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml

from lab import cgroups, procs
from lab.config import (
    CLUSTER_GRAIN,
    HOST_IP,
    REPO,
    SALT_PUBLISH_PORT,
    SALT_RET_PORT,
    SERVICES_CGROUP,
    STATE,
    Machine,
)
from lab.run import LabError, run, wait_for

HOME = STATE / "master"
CONFIG = HOME / "master"
PKI = HOME / "pki"
KEYS = STATE / "keys"  # minion key pairs, made on the host and copied into each machine
LOG = HOME / "log" / "master"
REACTORS = REPO / "salt" / "reactor" / "reactors.yaml"
BIN = Path(sys.executable).parent
DOCUMENTED_CONFIG = REPO / "docs" / "examples" / "master.d" / "kubeha.conf"
DOCUMENTED_CHECKOUT = "/srv/kubeha"
DOCUMENTED_CLUSTER = "example"  # the cluster the documented schedule names
# The keys of the documented config that decide what the master serves, reads and receives.
SERVING_KEYS = (
    "file_roots",
    "file_ignore_regex",
    "pillar_roots",
    "file_recv",
    "file_recv_max_size",
)


def documented_config(repo: Path = REPO) -> dict:
    """What the documented master config (docs/examples/master.d/kubeha.conf) says the
    master serves, for a checkout at `repo`: the same mechanism for the lab, the functional
    tests and production."""
    cfg = yaml.safe_load(DOCUMENTED_CONFIG.read_text()) or {}
    missing = [k for k in ("file_roots", "pillar_roots") if k not in cfg]
    if missing:
        raise LabError(f"{DOCUMENTED_CONFIG} lacks {', '.join(missing)}")

    def relocate(value):
        if isinstance(value, str) and value.startswith(DOCUMENTED_CHECKOUT):
            return str(repo) + value[len(DOCUMENTED_CHECKOUT) :]
        if isinstance(value, list):
            return [relocate(v) for v in value]
        if isinstance(value, dict):
            return {k: relocate(v) for k, v in value.items()}
        return value

    return {k: relocate(cfg[k]) for k in SERVING_KEYS if k in cfg}


def documented_schedule(cluster: str = CLUSTER_GRAIN) -> dict:
    """The documented master's day-2 schedule (hourly backup, weekly drill and defrag),
    with its example cluster replaced by the lab's: the lab's master runs the same jobs."""
    cfg = yaml.safe_load(DOCUMENTED_CONFIG.read_text()) or {}
    out = {}
    for name, documented in (cfg.get("schedule") or {}).items():
        job = yaml.safe_load(yaml.safe_dump(documented))  # a deep copy
        pillar = (job.get("kwargs") or {}).get("pillar") or {}
        if pillar.get("cluster") == DOCUMENTED_CLUSTER:
            pillar["cluster"] = cluster
        out[name.replace(f"-{DOCUMENTED_CLUSTER}", f"-{cluster}")] = job
    return out


def config() -> dict:
    """The master configuration the lab runs with."""
    cfg = {
        "interface": HOST_IP,
        "publish_port": SALT_PUBLISH_PORT,
        "ret_port": SALT_RET_PORT,
        "user": "root",
        "root_dir": str(HOME),
        "pki_dir": str(PKI),
        "cachedir": str(HOME / "cache"),
        "sock_dir": str(HOME / "sock"),
        "extension_modules": str(HOME / "extmods"),
        "pidfile": str(HOME / "salt-master.pid"),
        "log_file": str(LOG),
        "key_logfile": str(HOME / "log" / "key"),
        "log_level_logfile": "info",
        "auto_accept": False,
        "open_mode": False,
        **documented_config(),
        "timeout": 20,
        "keep_jobs_seconds": 3600,
    }
    schedule = documented_schedule()
    if schedule:
        cfg["schedule"] = schedule
    if REACTORS.exists():
        reactors = yaml.safe_load(REACTORS.read_text()) or []
        if not isinstance(reactors, list):
            raise LabError(f"{REACTORS} must be a YAML list in Salt's `reactor:` format")
        cfg["reactor"] = reactors
    return cfg


def write_config() -> bool:
    """Write the master config; True if it changed (a running master must restart)."""
    text = "# Written by `python -m lab up`; rewritten at every up.\n" + yaml.safe_dump(
        config(), sort_keys=True
    )
    for d in (HOME, PKI / "minions", HOME / "log"):
        d.mkdir(parents=True, exist_ok=True)
    if CONFIG.exists() and CONFIG.read_text() == text:
        return False
    CONFIG.write_text(text)
    return True


def ensure_minion_key(machine: Machine) -> tuple[Path, Path]:
    """The machine's key pair (made once by salt-key) and its acceptance on the master."""
    KEYS.mkdir(parents=True, exist_ok=True)
    pem, pub = KEYS / f"{machine.name}.pem", KEYS / f"{machine.name}.pub"
    if not (pem.exists() and pub.exists()):
        run(
            [BIN / "salt-key", "-c", HOME, f"--gen-keys={machine.name}", f"--gen-keys-dir={KEYS}"],
            timeout=60,
        )
    accepted = PKI / "minions" / machine.name
    if not accepted.exists() or accepted.read_bytes() != pub.read_bytes():
        shutil.copyfile(pub, accepted)
    return pem, pub


def forget_other_keys(names: set[str]) -> list[str]:
    """Drop every key that is not one of the lab's machines (accepted, pending or denied)."""
    dropped = []
    for folder in ("minions", "minions_pre", "minions_denied", "minions_rejected"):
        for key in (PKI / folder).glob("*") if (PKI / folder).exists() else []:
            if folder != "minions" or key.name not in names:
                key.unlink()
                dropped.append(f"{folder}/{key.name}")
    return dropped


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST_IP, port), timeout=1):
            return True
    except OSError:
        return False


def start() -> procs.Tracked:
    if _port_open(SALT_RET_PORT):
        raise LabError(
            f"something already listens on {HOST_IP}:{SALT_RET_PORT}; `python -m lab down`"
        )
    cgroups.create(SERVICES_CGROUP)
    argv = [str(BIN / "salt-master"), "-c", str(HOME), "--log-level=warning"]
    proc = procs.spawn(
        "salt-master", argv, HOME / "log" / "stdout", before_exec=cgroups.joiner(SERVICES_CGROUP)
    )
    try:
        wait_for(
            lambda: _port_open(SALT_RET_PORT) and _port_open(SALT_PUBLISH_PORT),
            timeout=90,
            what=f"salt-master on {HOST_IP}:{SALT_RET_PORT}",
        )
    except LabError as err:
        tail = LOG.read_text()[-2000:] if LOG.exists() else ""
        raise LabError(f"{err}\n{tail}") from err
    return proc


ORCHESTRATE = ("state.orch", "state.orchestrate")
# Salt's refusal, as printed or inside --out=json (where its quotes are escaped).
REFUSED = re.compile(r'function \\?"state\.orch\w*\\?" is running as PID \d+ .*? with jid (\d+)')
SCHEDULED_WAIT_S = 300


def cli(program: str, args: list[str], *, timeout: float = 300, check: bool = False):
    """Run `salt`, `salt-run` or `salt-key` against the lab master; returns the result.

    An orchestration that Salt refuses because one of the master's scheduled day-2 jobs
    runs as an orchestration at that moment (the hourly backup at :07 takes ~8 s; Salt runs
    one orchestration at a time: salt/modules/state.py `running`) is run again once that job
    has ended: a test meeting the schedule by chance is not the behaviour it tests. Any
    other refusal is returned as it is."""
    if program not in ("salt", "salt-run", "salt-key", "salt-cp"):
        raise LabError(f"not a Salt master-side program: {program}")
    for _ in range(3):  # each wait is bounded; a schedule met three times in a row is news
        proc = run([BIN / program, "-c", HOME, *args], timeout=timeout, check=check)
        busy = REFUSED.search(proc.stdout) if program == "salt-run" else None
        if not (busy and set(args) & set(ORCHESTRATE)) or not wait_scheduled_job(busy[1]):
            break
    return proc


def _job_file(path: Path) -> dict | None:
    """A job file of the master's cache/proc (Salt's msgpack), or None: gone already, or not
    a job file we can read."""
    import salt.payload  # noqa: PLC0415 - only these helpers need Salt; `lab` itself does not

    try:
        data = salt.payload.loads(path.read_bytes())
    except Exception:  # noqa: BLE001 - see the docstring
        return None
    return data if isinstance(data, dict) else None


def scheduled_job(jid: str) -> str | None:
    """The schedule entry's name if job ``jid`` in the master's cache/proc was started by the
    master's scheduler (salt/utils/schedule.py writes "schedule" in its job file), else None."""
    return (_job_file(HOME / "cache" / "proc" / jid) or {}).get("schedule")


def wait_scheduled_job(jid: str, limit: float = SCHEDULED_WAIT_S) -> bool:
    """Wait until scheduled job ``jid`` has ended; False at once if it is not a scheduled
    job, and False after ``limit`` seconds if it is still running."""
    name = scheduled_job(jid)
    if not name:
        return False
    print(f"[lab] the master's scheduled {name} (jid {jid}) runs: waiting to orchestrate",
          file=sys.stderr)  # fmt: skip
    deadline = time.monotonic() + limit
    while (HOME / "cache" / "proc" / jid).exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def cli_json(program: str, args: list[str], *, timeout: float = 300):
    """Like `cli`, with `--out=json --static`, parsed. A minion that did not answer in time
    is missing from the result or maps to False, as in Salt's own output."""
    # --static (one JSON document for all minions) exists for `salt` only.
    static = ["--static"] if program == "salt" else []
    proc = cli(program, ["--out=json", *static, *args], timeout=timeout)
    if not proc.stdout.strip():
        raise LabError(
            f"{program} {' '.join(args)}: exit {proc.returncode}, no output\n{proc.stderr[-1500:]}"
        )
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError as err:
        raise LabError(
            f"{program} {' '.join(args)}: exit {proc.returncode}, not JSON:\n"
            f"{proc.stdout[-1500:]}\n{proc.stderr[-1500:]}"
        ) from err


def forget_killed_run(pid: int) -> list[str]:
    """Remove the job files a SIGKILLed `salt-run` (process `pid`) left in the master's
    cache/proc; the jids removed.

    Salt reads such a file as a job still running whenever the PID is alive and its command
    line says "salt" (salt/utils/minion.py `_read_proc_file`, `_check_cmdline`). PIDs are
    recycled (pid_max is 32768 on many hosts) and every minion in the lab is a salt process
    on this host, so a later `state.orch` was refused with "The function state.orchestrate
    is running as PID ..." 30 minutes after the kill. What an operator does after a
    `kill -9` of salt-run (README, Chaos scenarios), done here for the lab's own killed runs."""
    if _alive(pid):
        raise LabError(f"salt-run {pid} is still running; kill it first")
    removed = []
    for path in sorted((HOME / "cache" / "proc").glob("*")):
        if (_job_file(path) or {}).get("pid") == pid:
            path.unlink(missing_ok=True)
            removed.append(path.name)
    return removed


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def interactive(program: str, args: list[str]) -> int:
    """Run a Salt CLI with the operator's terminal (the `python -m lab salt ...` command)."""
    return subprocess.call([str(BIN / program), "-c", str(HOME), *args])  # noqa: S603 - argument list


class EventCapture:
    """Everything on the master's event bus while the block runs, written to `path`
    (`salt-run state.event`: one `tag<TAB>json` line per event). Stopped by its own PID.

        with saltmaster.EventCapture(tmp / "events.txt") as capture:
            ...
        capture.text()
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> EventCapture:
        self.handle = self.path.open("w")
        self.proc = subprocess.Popen(  # noqa: S603 - argument list, our own binary
            [str(BIN / "salt-run"), "-c", str(HOME), "state.event", "pretty=False"],
            stdout=self.handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        # The listener is on the bus once it has connected: wait for our own marker event.
        marker = f"kubeha/lab/capture/{self.proc.pid}"
        wait_for(
            lambda: (
                cli("salt-run", ["event.send", marker], timeout=30).returncode == 0
                and marker in self.path.read_text()
            ),
            timeout=60,
            what="the event capture to see the bus",
        )
        return self

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.handle.close()

    def text(self) -> str:
        return self.path.read_text(errors="replace")
