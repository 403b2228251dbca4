"""A systemd host inside this one: Debian 12 with systemd as PID 1 and cgroup v2 only.

    python -m lab.sdhost up | status | exec -- CMD... | down
    python -m lab.sdhost_proof          # the whole proof (make lab-systemd-host)

Booted from the lab's base image, it is the host layout of a stock Debian 12 / Ubuntu
machine ("systemd" in lab.hostlayout) on a host that has the other one, so the lab can be
run, and tested, there (lab.sdhost_proof). What it is:

- its disk: the base image unpacked into a tmpfs at /var/lib/kha-lab/sdhost,
  not an overlay like the machines': the machines of the lab inside are overlays, whose
  upper dir cannot be on overlayfs; a tmpfs is also gone with one umount (~730 MB of
  files would take seconds to delete from disk);
- its boot: `systemd-nspawn -b` with SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 (cgroup2 at its
  /sys/fs/cgroup, rooted at nspawn's cgroup in this host's unified hierarchy) and
  --private-network: its own network namespace with only `lo`, so the kha-br0 and
  198.18.0.0/24 of the lab inside never meet this host's; it runs in group kha-sdhost
  (lab.cgroups), where `down` finds every process of it and of the lab inside;
- what it sees of this host: the repository read-only at /srv/kubeha; lab/.cache there an
  overlay (this host's cache below, an upper dir in its disk folder above: the lab inside
  reuses the base image, the apt mirror, kubesim's debs and the signing key, and what it
  writes stays in the host machine's folder); lab/.state there a tmpfs (the inner lab's own
  state); /dev/loop-control and the loop devices (the inner lab loop-mounts the base);
- apt reading the lab's Debian mirror as a file: source signed by the lab key (it carries
  `make system-deps`' lab.txt, which the host machine installs as a Debian 12 host would);
  salt-minion masked (there is no master for the host itself);
- the lab inside runs with the base image's Python (/opt/saltstack/salt: the repository's
  Salt pins), since this host's venv interpreter is not in the machine.

Nested nspawn needs no extra capability: nspawn keeps CAP_SYS_ADMIN (mounts, namespaces)
and CAP_MKNOD, and --private-network adds CAP_NET_ADMIN (veths, the bridge, and what the
inner nspawn hands its machines). Recorded in lab/.state/sdhost.json (nspawn's PID and
start time, its PID 1) and stopped by PID: SIGKILL to its PID 1 ends every process of its
PID namespace, the machines' nested ones included, and with them its mounts, network
namespaces and loop devices. `python -m lab down` stops it first.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from lab import cgroups, hostlayout, machine, procs, signing, state
from lab.base import ensure_base
from lab.config import CACHE, DEBIAN_SUITE, DISK_ROOT, PREFIX, REPO, STATE
from lab.debmirror import ensure_debian_mirror
from lab.hostenv import MIRROR_ENV, debian_mirror
from lab.kubesim import build
from lab.run import LabError, run, say, wait_for

NAME = "sdhost"
GROUP = f"{PREFIX}{NAME}"
FOLDER = DISK_ROOT / NAME  # a tmpfs; removed by `down` with the rest of /var/lib/kha-lab
# Not kha-*: inside, the lab's inventory counts mounts whose source is kha-* as its own,
# and this one is the host machine's root there. (Here it is found by its place.)
DISK_SOURCE = "sdhost-disk"
DISK_SIZE = "4g"  # a ceiling, not an allocation: the base is ~730 MB, the inner lab's writes
ROOT = FOLDER / "root"
CACHE_UPPER = FOLDER / "cache-upper"
RECORD = STATE / "sdhost.json"
CONSOLE = STATE / "logs" / f"{NAME}-console.log"

INNER_REPO = Path("/srv/kubeha")
INNER_PYTHON = "/opt/saltstack/salt/bin/python"


@dataclass
class Host:
    nspawn: procs.Tracked
    init_pid: int
    mirror_uri: str  # the Debian mirror this host's lab cache was built from

    def alive(self) -> bool:
        return procs.alive(self.nspawn)

    def exec(self, *cmd: str, timeout: float = 300, check: bool = True, env=None):
        """Run a command in the host machine (root, clean environment); CompletedProcess."""
        return machine.exec_in(self.init_pid, list(cmd), timeout=timeout, check=check, env=env)

    def lab_env(self) -> dict[str, str]:
        """What `python -m lab` inside needs: the cache key's Debian mirror (this host's),
        no bytecode writes into the read-only repository, and kubesim's vendored packages
        (cel-python and its dependencies) from this host's venv as the repository shows it
        (the base image's Python has none of them)."""
        env = {MIRROR_ENV: self.mirror_uri, "PYTHONDONTWRITEBYTECODE": "1"}
        site = build.vendor_root(build.VENDORED[0]).parent
        if site.is_relative_to(REPO):
            env[build.VENDOR_PATH_ENV] = str(INNER_REPO / site.relative_to(REPO))
        return env

    def lab(self, *args: str, timeout: float = 600, check: bool = True):
        """`python -m lab ARGS` in the host machine, from the repository it sees."""
        argv = ["env", "-C", str(INNER_REPO), INNER_PYTHON, "-m", "lab", *args]
        return self.exec(*argv, timeout=timeout, check=check, env=self.lab_env())


def load() -> Host | None:
    try:
        data = json.loads(RECORD.read_text())
        return Host(procs.Tracked.from_json(data["nspawn"]), data["init_pid"], data["mirror_uri"])
    except (FileNotFoundError, json.JSONDecodeError, KeyError, TypeError):
        return None


def _save(host: Host) -> None:
    RECORD.parent.mkdir(parents=True, exist_ok=True)
    data = {"nspawn": host.nspawn.to_json(), "init_pid": host.init_pid}
    RECORD.write_text(json.dumps({**data, "mirror_uri": host.mirror_uri}, indent=2) + "\n")


def problem() -> str | None:
    """Why this host cannot boot the host machine, or None."""
    layout = cgroups.layout()
    if layout.name is None:
        return layout.problem()
    if layout.name == hostlayout.V1 and not (hostlayout.CGROUP_ROOT / "unified").is_dir():
        return f"no cgroup2 hierarchy at {hostlayout.CGROUP_ROOT / 'unified'} to give it"
    missing = [t for t in ("systemd-nspawn", "unsquashfs", "losetup") if not shutil.which(t)]
    if missing:
        return f"missing {', '.join(missing)}: run `make system-deps` (lab.txt)"
    return None


def up() -> Host:
    """Boot the host machine (idempotent: a running one is returned as it is)."""
    with state.locked():
        host = load()
        if host is not None and host.alive():
            return host
        found = problem()
        if found:
            raise LabError(f"cannot boot the systemd host machine: {found}")
        stop_unlocked()  # whatever an interrupted run left
        image = ensure_base()
        FOLDER.mkdir(parents=True, exist_ok=True)
        run(["mount", "-t", "tmpfs", "-o", f"size={DISK_SIZE},mode=0755", DISK_SOURCE, FOLDER])
        run(["unsquashfs", "-q", "-n", "-d", ROOT, image], timeout=300)
        signing.ensure_key()
        mirror = ensure_debian_mirror(ROOT)  # the same package set as the base image's
        _seed(mirror)
        nspawn = _boot()
        try:
            host = Host(nspawn, machine.init_pid(nspawn), debian_mirror().uri)
            _save(host)
        except LabError:
            procs.stop(nspawn)
            raise
    wait_for(
        lambda: machine.system_state(host.init_pid) in ("running", "degraded"),
        timeout=120,
        interval=0.25,
        what=f"the host machine's systemd (console: {CONSOLE})",
    )
    return host


def _seed(mirror: Path) -> None:
    files = {
        "etc/hostname": f"{NAME}\n",
        "etc/machine-id": "6b68612d7364686f73742d6d61636869\n",  # stable: its journal, D-Bus
        "etc/resolv.conf": "# kubeha lab host machine: no DNS\n",
        "etc/apt/sources.list.d/kubeha-lab.sources": (
            f"Types: deb\nURIs: file:{INNER_REPO / mirror.relative_to(REPO)}\n"
            f"Suites: {DEBIAN_SUITE}\nComponents: main\nSigned-By: {machine.LAB_KEYRING}\n"
        ),
        # the lab key, where the machines have it too (the cache's gpg home is 0700: apt's
        # unprivileged _apt user could not read it there)
        machine.LAB_KEYRING.lstrip("/"): signing.PUBLIC_KEY.read_text(),
    }
    for rel, text in files.items():
        (ROOT / rel).parent.mkdir(parents=True, exist_ok=True)
        (ROOT / rel).write_text(text)
    masked = ROOT / "etc/systemd/system/salt-minion.service"
    masked.unlink(missing_ok=True)
    masked.symlink_to("/dev/null")
    (ROOT / INNER_REPO.relative_to("/")).mkdir(parents=True, exist_ok=True)


def _loop_devices() -> list[str]:
    """/dev/loop-control and every loop device, with a free one among them: `losetup -f`
    makes the kernel create one if none is free, and the inner `mount -o loop` asks
    loop-control for the first free one, which then has its node in the machine."""
    run(["losetup", "-f"], timeout=30)
    nodes = sorted(Path("/dev").glob("loop[0-9]*"), key=lambda p: int(p.name[4:]))
    return [f"--bind={n}" for n in [Path("/dev/loop-control"), *nodes]]


def _boot() -> procs.Tracked:
    CACHE_UPPER.mkdir(parents=True, exist_ok=True)
    (STATE / "logs").mkdir(parents=True, exist_ok=True)  # also the tmpfs's mount point
    cgroups.create(GROUP)
    argv = [
        "systemd-nspawn",
        "-q",
        "-b",
        "-D",
        ROOT,
        *cgroups.nspawn_identity(GROUP, NAME),
        "--private-network",
        "--resolv-conf=off",
        "--timezone=off",
        "--link-journal=no",
        "--console=read-only",
        f"--bind-ro={REPO}:{INNER_REPO}",
        f"--tmpfs={INNER_REPO / STATE.relative_to(REPO)}:mode=0755",
        f"--overlay={CACHE}:{CACHE_UPPER}:{INNER_REPO / CACHE.relative_to(REPO)}",
        *_loop_devices(),
    ]
    env = {
        "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "1",
        # its own network namespace: the inner lab's machines set sysctls in theirs
        "SYSTEMD_NSPAWN_API_VFS_WRITABLE": "network",
    }
    return procs.spawn(NAME, argv, CONSOLE, env=env, before_exec=cgroups.joiner(GROUP))


def stop_unlocked() -> None:
    """Power the host machine off and remove it (its disk, group, record). Caller holds
    the lab's state lock (`down` does)."""
    host = load()
    there = host is not None or cgroups.exists(GROUP)
    if host is not None:
        machine.signal_init(host.nspawn, host.init_pid, signal.SIGKILL)
        machine.wait_exit(host.nspawn)
    cgroups.kill(GROUP)
    cgroups.remove(GROUP)
    if there:
        # Its mount namespace, and with it the inner lab's squashfs and the loop device
        # under it, is released once its last process is gone. (Not looked for when there
        # was no host machine: inside one, these are the inner lab's own.)
        wait_for(
            lambda: not inner_loop_devices(), timeout=30, what="the host machine's loop devices"
        )
    if machine.is_mounted(FOLDER):
        run(["umount", FOLDER], timeout=60)
    shutil.rmtree(FOLDER, ignore_errors=True)
    RECORD.unlink(missing_ok=True)
    if FOLDER.exists():
        raise LabError(f"could not remove {FOLDER}")


def down() -> None:
    with state.locked():
        stop_unlocked()


def inner_loop_devices() -> list[str]:
    """Loop devices backed by a file of the host machine's view of the cache (as this host
    reads their backing file: the path inside the machine's mount namespace)."""
    inner_cache = str(INNER_REPO / CACHE.relative_to(REPO)) + "/"
    found = []
    for backing in Path("/sys/block").glob("loop*/loop/backing_file"):
        try:
            if backing.read_text().strip().startswith(inner_cache):
                found.append(f"/dev/{backing.parent.parent.name}")
        except FileNotFoundError:
            continue
    return sorted(found)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.sdhost", description=__doc__[:60])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="boot the systemd host machine")
    sub.add_parser("status", help="is it running, its PID 1")
    ex = sub.add_parser("exec", help="run a command in it")
    ex.add_argument("cmd", nargs=argparse.REMAINDER)
    sub.add_parser("down", help="power it off and remove it")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            host = up()
            say(f"systemd host machine up: PID 1 = {host.init_pid}; console {CONSOLE}")
        elif args.command == "status":
            host = load()
            alive = host is not None and host.alive()
            print(f"sdhost: {'running, PID 1 = ' + str(host.init_pid) if alive else 'not running'}")
        elif args.command == "exec":
            host = load()
            if host is None or not host.alive():
                raise LabError("the host machine is not running: python -m lab.sdhost up")
            cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
            env = [f"{k}={v}" for k, v in host.lab_env().items()]
            return machine.interactive(host.init_pid, ["env", *env, *cmd])
        else:
            down()
            say("systemd host machine down")
    except LabError as err:
        print(f"lab.sdhost: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
