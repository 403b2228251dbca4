"""`up` and `down`: bring the whole lab to a healthy state, or remove every trace of it.

up (idempotent): host checks -> base image -> apt mirror + k8s repos -> bridge -> mirror
HTTP server -> salt-master -> machines (namespace, overlay, seed, boot) -> every minion
answers test.ping. Running it again repairs: powers machines on, plugs cables, thaws.
down: stops machines and services by PID/cgroup, unmounts, deletes namespaces, links and
cgroups named kha-*, then checks that nothing of the lab is left.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from lab import (
    cgroups,
    hostlayout,
    inventory,
    machine,
    mirror,
    network,
    procs,
    s3server,
    saltmaster,
    sdhost,
    signing,
    state,
)
from lab.base import ensure_base, mount_base
from lab.base import image_path as base_image_path
from lab.config import (
    BASE_MOUNT,
    DISK_ROOT,
    HOST_IP,
    MOUNT_ROOT,
    PREFIX,
    SALT_PUBLISH_PORT,
    SERVICES_CGROUP,
    STATE,
    Machine,
    machine_from_name,
    topology,
)
from lab.run import LabError, run, say, step, wait_for

REQUIRED_TOOLS = (
    "ip",
    "systemd-nspawn",
    "debootstrap",
    "apt-ftparchive",
    "gpg",
    "nsenter",
    "mount",
    "losetup",
    "mksquashfs",
    "dpkg-deb",
)
# On a systemd host: transient scopes, their freezer, and machined (systemd-container).
SYSTEMD_TOOLS = ("systemd-run", "systemctl", "machinectl")
PROC_NET_TCP = Path("/proc/net/tcp")


@dataclass
class UpReport:
    """What `up` did and how long each part took (seconds)."""

    machines: dict[str, str] = field(default_factory=dict)  # name -> ip
    timings: dict[str, float] = field(default_factory=dict)
    total: float = 0.0
    cold: bool = False  # the base image had to be built
    layout: str = ""  # lab.hostlayout: "cgroup-v1" or "systemd"


def preflight() -> hostlayout.Layout:
    """Root, what the host cannot change (cgroups, kernel), tools; fail early, say what to do.
    Returns the host layout it found (and says it: `make demo` prints it)."""
    if os.geteuid() != 0:
        raise LabError("the lab needs root (namespaces, mounts, systemd-nspawn)")
    problem = host_problem()
    if problem:
        raise LabError(f"this host cannot run the lab: {problem}")
    layout = cgroups.layout()
    say(f"host layout: {layout.name} ({layout.describe()})")
    tools = REQUIRED_TOOLS + (SYSTEMD_TOOLS if layout.name == hostlayout.SYSTEMD else ())
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        raise LabError(f"missing {', '.join(missing)}: run `make system-deps` (lab.txt)")
    if layout.name == hostlayout.SYSTEMD:
        _check_machined()
    for note in kernel_features():
        say(note)
    return layout


def _check_machined() -> None:
    """nspawn --register=yes needs systemd-machined (systemd-container; D-Bus activated)."""
    load = run(
        ["systemctl", "show", "--property=LoadState", "--value", "systemd-machined.service"],
        timeout=30,
        check=False,
    ).stdout.strip()
    if load != "loaded":
        raise LabError(
            "systemd-machined.service is not installed (LoadState "
            f"{load or '?'}): run `make system-deps` (lab.txt: systemd-container)"
        )


def host_problem() -> str | None:
    """Why this host cannot run the lab at all (no install fixes it), or None.

    tests/lab/conftest.py skips every lab test with this reason.
    """
    problem = cgroups.host_problem()
    if problem:
        return problem
    if not Path("/proc/modules").exists():
        lacking = [m for m, present in _kernel_has().items() if not present]
        if lacking:
            return f"the kernel lacks {', '.join(lacking)} and cannot load modules"
    return None


def _kernel_has() -> dict[str, bool]:
    return {
        "br_netfilter": Path("/proc/sys/net/bridge").exists(),
        "overlay": "overlay" in Path("/proc/filesystems").read_text().split(),
    }


def kernel_features() -> list[str]:
    """br_netfilter and overlay, loaded on the host (machines cannot load modules)."""
    notes = []
    if not Path("/proc/modules").exists():
        notes.append("kernel without module support: overlay, br_netfilter must be built in")
    for module, present in _kernel_has().items():
        if present:
            continue
        if not Path("/proc/modules").exists():
            raise LabError(f"kernel lacks {module} and cannot load modules")
        run(["modprobe", module], timeout=60)
        notes.append(f"loaded {module}")
    return notes


def up(workers: int = 0, client: bool = False) -> UpReport:
    report = UpReport()
    started = time.monotonic()
    with state.locked():
        report.layout = preflight().name or ""
        record = state.load()
        wanted = {m.name: m for m in topology(workers, client)}
        wanted |= {n: machine_from_name(n) for n in record.machines}  # up never removes one
        t = time.monotonic()
        cold = not base_image_path().exists()
        base = mount_base(ensure_base())
        report.timings["base image"] = time.monotonic() - t
        t = time.monotonic()
        with step("apt mirror: Debian packages and pkgs.k8s.io-shaped repos"):
            signing.ensure_key()
            mirror.prepare(base)
        report.timings["apt mirror"] = time.monotonic() - t
        t = time.monotonic()
        network.ensure_bridge()
        _ensure_services(record)
        for m in wanted.values():
            saltmaster.ensure_minion_key(m)
        dropped = saltmaster.forget_other_keys(set(wanted))
        if dropped:
            say(f"dropped Salt keys that are not the lab's machines: {', '.join(dropped)}")
        record.base = str(base)
        state.save(record)
        report.timings["services"] = time.monotonic() - t
        t = time.monotonic()
        with step(f"machines: {', '.join(wanted)}"):
            _ensure_machines(record, list(wanted.values()), base)
        report.timings["machines"] = time.monotonic() - t
        t = time.monotonic()
        with step("waiting for every minion to answer test.ping"):
            wait_minions(list(wanted), timeout=180)
        report.timings["minions"] = time.monotonic() - t
    report.machines = {n: m.ip for n, m in wanted.items()}
    report.total = time.monotonic() - started
    report.cold = cold
    _journal_up(report)
    return report


def _journal_up(report: UpReport) -> None:
    """Append the timings to lab/.state/up-times.jsonl (cold = the base image was built)."""
    line = {
        "at": time.time(),
        "cold": report.cold,
        "layout": report.layout,
        "total_s": round(report.total, 1),
        "machines": sorted(report.machines),
        "timings_s": {k: round(v, 1) for k, v in report.timings.items()},
    }
    STATE.mkdir(parents=True, exist_ok=True)
    with open(STATE / "up-times.jsonl", "a") as journal:
        journal.write(json.dumps(line, sort_keys=True) + "\n")


def _ensure_services(record: state.LabRecord) -> None:
    http = record.services.get("mirror-http")
    if not (http and procs.alive(http)):
        record.services["mirror-http"] = mirror.start()
        say("apt mirror serving http://198.18.0.1:8080/{debian,k8s}")
    s3 = record.services.get("s3-moto")
    if not (s3 and procs.alive(s3)):
        if s3server.available():
            record.services["s3-moto"] = s3server.start()
            say(f"S3 object store serving {s3server.ENDPOINT} (bucket {s3server.BUCKET})")
        else:
            say("no S3 object store: moto[server] is not installed (requirements/s3-lab.txt)")
    master = record.services.get("salt-master")
    changed = saltmaster.write_config()
    if master and procs.alive(master) and changed:
        say("salt-master config changed: restarting it")
        _stop_service(master)
    if not (master and procs.alive(master)) or changed:
        record.services["salt-master"] = saltmaster.start()
        say("salt-master listening on 198.18.0.1:4505/4506")
    state.save(record)


def _ensure_machines(record: state.LabRecord, machines: list[Machine], base: Path) -> None:
    to_boot = []
    for m in machines:
        rec = record.machines.setdefault(m.name, state.MachineRecord(m.name))
        if rec.frozen:
            cgroups.thaw(m.cgroup)
            rec.frozen = False
        if rec.cable == "cut":
            rec.cable = "plugged"
        running = rec.power == "on" and rec.nspawn is not None and procs.alive(rec.nspawn)
        if running:
            network.set_cable(m, plugged=True)
            continue
        to_boot.append(m)
    for m in to_boot:
        start_machine(record.machines[m.name], base)
    state.save(record)
    with ThreadPoolExecutor(max_workers=max(1, len(to_boot))) as pool:
        states = list(pool.map(lambda m: finish_boot(record.machines[m.name]), to_boot))
    for m, final in zip(to_boot, states, strict=True):
        say(f"{m.name} ({m.ip}): systemd {final}")


def start_machine(rec: state.MachineRecord, base: Path) -> None:
    """Power on: network, disk, seed files, nspawn. Returns once its systemd exists."""
    m = rec.machine
    if cgroups.exists(m.cgroup):
        # Anything still in the machine's group outlived its nspawn (killed from outside,
        # or an interrupted run): it must not share the disk with the new boot.
        cgroups.kill(m.cgroup)
        cgroups.remove(m.cgroup)
    network.ensure_machine_net(m)
    network.set_cable(m, plugged=rec.cable == "plugged")
    machine.mount_overlay(m, base)
    machine.seed(m, saltmaster.ensure_minion_key(m), signing.PUBLIC_KEY)
    rec.nspawn = machine.boot(m)
    rec.init_pid = machine.init_pid(rec.nspawn)
    rec.power = "on"


def finish_boot(rec: state.MachineRecord, timeout: float = 120) -> str:
    """Wait for the machine's systemd to reach running; finish the kernel-module index."""
    final = machine.wait_booted(rec.machine, rec.init_pid, timeout=timeout)
    if not Path("/proc/modules").exists():
        machine.exec_in(rec.init_pid, ["depmod", "-a"], timeout=60, check=True)
    return final


def stop_machine(rec: state.MachineRecord) -> None:
    """Power off: cable out, PID 1 killed, then the machine's network namespace deleted.

    The namespace holds the kernel side of the machine (addresses, a VIP keepalived added,
    sysctls, iptables rules, conntrack): a real power cycle loses all of it, so the next
    power-on starts from a fresh one.
    """
    m = rec.machine
    network.set_cable(m, plugged=False)
    if rec.nspawn is not None:
        machine.signal_init(rec.nspawn, rec.init_pid, signal.SIGKILL)
    if cgroups.is_frozen(m.cgroup):
        cgroups.thaw(m.cgroup)  # a frozen process only dies once thawed
    if rec.nspawn is not None:
        machine.wait_exit(rec.nspawn)
    cgroups.kill(m.cgroup)
    cgroups.remove(m.cgroup)  # on systemd: its scope stopped, the machine gone from machined
    network.remove_namespace(m.netns)
    network.remove_link(m.host_veth)  # normally gone with the namespace's end of the pair
    rec.power, rec.nspawn, rec.init_pid, rec.frozen = "off", None, None, False


def wait_minions(names: list[str], timeout: float = 120) -> float:
    """Until every named minion answers test.ping through the lab master."""
    pending = set(names)
    # A ping round that misses a minion not subscribed yet costs the master's
    # gather_job_timeout (10 s) on top of --timeout: first wait (briefly) until each has
    # its publish connection, which is what a ping needs to reach it.
    ips = {machine_from_name(n).ip for n in names}
    with contextlib.suppress(LabError):
        wait_for(
            lambda: ips <= publish_subscribers(),
            timeout=min(timeout, 60),
            interval=0.2,
            what="minions to connect",
        )

    def answered() -> bool:
        ret = saltmaster.cli_json(
            "salt", ["-L", ",".join(sorted(pending)), "test.ping", "--timeout=5"], timeout=60
        )
        if isinstance(ret, dict):
            pending.difference_update(n for n, ok in ret.items() if ok is True)
        return not pending

    try:
        return wait_for(answered, timeout=timeout, interval=1, what="minions to answer")
    except LabError as err:
        raise LabError(f"{err}: no answer from {', '.join(sorted(pending))}") from err


def publish_subscribers() -> set[str]:
    """Addresses with an established TCP connection to the master's publish port (IPv4
    sockets of this network namespace, /proc/net/tcp: little-endian hex address:port)."""
    found = set()
    local = f"{socket.inet_aton(HOST_IP)[::-1].hex().upper()}:{SALT_PUBLISH_PORT:04X}"
    for line in PROC_NET_TCP.read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == local and fields[3] == "01":  # 01: ESTABLISHED
            found.add(socket.inet_ntoa(bytes.fromhex(fields[2].split(":")[0])[::-1]))
    return found


def _stop_service(proc: procs.Tracked) -> None:
    procs.stop(proc, timeout=15)


def down() -> inventory.Inventory:
    """Remove everything the lab made on the host; raise if anything is left."""
    with state.locked():
        # The systemd host machine (lab.sdhost) first: its own lab dies with it.
        sdhost.stop_unlocked()
        record = state.load()
        names = set(record.machines)
        names |= {c[len(PREFIX) :] for c in cgroups.lab_cgroups() if c.startswith(PREFIX)}
        names |= {ns[len(PREFIX) :] for ns in network.namespaces()}
        for name in sorted(names):
            rec = record.machines.get(name) or state.MachineRecord(name)
            try:
                rec.machine  # noqa: B018 - validates the name
            except ValueError:
                continue
            _stop_machine_quietly(rec)
        for proc in record.services.values():
            _stop_service(proc)
        cgroups.kill(SERVICES_CGROUP)
        # Machines' roots first, the base image (their lower layer) last.
        for point in sorted(inventory.lab_mounts(), key=lambda p: (p == str(BASE_MOUNT), -len(p))):
            run(["umount", point], timeout=60, check=False)
        for ns in network.namespaces():
            network.remove_namespace(ns)
        for link in network.lab_links():
            network.remove_link(link)
        for name in cgroups.lab_cgroups():
            cgroups.remove(name)
        shutil.rmtree(DISK_ROOT, ignore_errors=True)
        shutil.rmtree(mirror.WWW, ignore_errors=True)
        shutil.rmtree(MOUNT_ROOT, ignore_errors=True)
        signing.stop_agent()
        state.forget()
        left = inventory.take()
    if not left.empty():
        raise LabError(f"down left: {left.describe()}")
    return left


def _stop_machine_quietly(rec: state.MachineRecord) -> None:
    m = rec.machine
    if cgroups.is_frozen(m.cgroup):
        cgroups.thaw(m.cgroup)
    if rec.nspawn is not None:
        machine.signal_init(rec.nspawn, rec.init_pid, signal.SIGKILL)
        machine.wait_exit(rec.nspawn)
    cgroups.kill(m.cgroup)
