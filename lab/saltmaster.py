"""The lab's Salt master: on the host, bound to 198.18.0.1 only, state under lab/.state/master.

file_roots base [<repo>/salt, <repo>], pillar_roots base [<repo>/pillar], reactors from
<repo>/salt/reactor/reactors.yaml when that file exists. Minion keys are made here and
pre-accepted for the lab's own machines only; any other key stays unaccepted.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import yaml

from lab import cgroups, procs
from lab.config import (
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
        "file_roots": {"base": [str(REPO / "salt"), str(REPO)]},
        "pillar_roots": {"base": [str(REPO / "pillar")]},
        "timeout": 20,
        # The job cache sits under <repo> (lab/.state), which file_roots walk: keep it small.
        "keep_jobs_seconds": 3600,
    }
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


def cli(program: str, args: list[str], *, timeout: float = 300, check: bool = False):
    """Run `salt`, `salt-run` or `salt-key` against the lab master; returns the result."""
    if program not in ("salt", "salt-run", "salt-key", "salt-cp"):
        raise LabError(f"not a Salt master-side program: {program}")
    return run([BIN / program, "-c", HOME, *args], timeout=timeout, check=check)


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


def interactive(program: str, args: list[str]) -> int:
    """Run a Salt CLI with the operator's terminal (the `python -m lab salt ...` command)."""
    return subprocess.call([str(BIN / program), "-c", str(HOME), *args])  # noqa: S603 - argument list
