"""Where the lab keeps things, and the shape of its network: names, addresses, ports.

Everything the lab creates on the host is named `kha-*` (bridge, namespaces, veths,
cgroups, mounts), so that `down` can find and remove exactly what it made.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LAB_DIR = REPO / "lab"
CACHE = LAB_DIR / ".cache"  # survives `down`: base image, wheels, apt mirror, signing key
STATE = LAB_DIR / ".state"  # one lab's life: master, mirror tree, logs, faults
# Machine disks and mounts live outside the repository: any Salt master serving
# file_roots [<repo>/salt, <repo>] walks the whole repository on every file-list refresh,
# and a Debian tree per machine would double that walk. The base image is one squashfs
# file in lab/.cache, loop-mounted read-only at /run/kha-lab/base.
MOUNT_ROOT = Path("/run/kha-lab")  # base image and each machine's merged root
DISK_ROOT = Path("/var/lib/kha-lab")  # each machine's overlay upper/work dirs
BASE_MOUNT = MOUNT_ROOT / "base"

PREFIX = "kha-"
BRIDGE = "kha-br0"
HOST_IP = "198.18.0.1"
PREFIX_LEN = 24
NETWORK = "198.18.0.0/24"  # RFC 2544 benchmarking range; nothing is ever routed out of it
VIP = "198.18.0.10"  # reserved for the cluster; no machine is given it
MIRROR_PORT = 8080
MIRROR_URL = f"http://{HOST_IP}:{MIRROR_PORT}"
S3_PORT = 9000  # the lab's object store (lab.s3server: moto's S3 server), MinIO's usual port
SALT_PUBLISH_PORT = 4505
SALT_RET_PORT = 4506
DEBIAN_SUITE = "bookworm"
NIC = "ens160"  # the machines' interface name, as on the VMware VMs of the runbook
SERVICES_CGROUP = "kha-services"  # the host-side services: salt-master, the mirror's HTTP server
CLUSTER_GRAIN = "lab"  # pillar/top.sls gives kubeha_cluster:lab minions pillar/kubeha/lab.sls

CONTROL_PLANES = 3
WORKER_BASE = 21  # w-1 = .21, w-2 = .22, ...
CLIENT_IP = "198.18.0.100"


@dataclass(frozen=True)
class Machine:
    """One lab machine: a systemd-nspawn boot in its own network namespace."""

    name: str
    ip: str
    role: str  # "control-plane", "worker" or "client"

    @property
    def netns(self) -> str:
        return f"{PREFIX}{self.name}"

    @property
    def host_veth(self) -> str:
        """The host end of the machine's cable, enslaved to the bridge."""
        return f"{PREFIX}h-{self.name}"

    @property
    def cgroup(self) -> str:
        return f"{PREFIX}{self.name}"

    @property
    def in_cluster(self) -> bool:
        """Cluster machines carry the kubeha_cluster grain; the client does not."""
        return self.role != "client"

    @property
    def mac(self) -> str:
        """Stable, locally administered MAC derived from the address (readable in captures)."""
        last = int(self.ip.rsplit(".", 1)[1])
        return f"02:6b:68:61:00:{last:02x}"

    @property
    def mount_point(self) -> Path:
        return MOUNT_ROOT / self.name

    @property
    def disk_dir(self) -> Path:
        """Overlay upper and work dirs: what the machine wrote since the lab came up."""
        return DISK_ROOT / self.name

    @property
    def console_log(self) -> Path:
        return STATE / "logs" / f"{self.name}-console.log"


def topology(workers: int = 0, client: bool = False) -> list[Machine]:
    """cp-1..cp-3, then w-1..w-N, then the client, with their fixed addresses."""
    if not 0 <= workers <= 50:
        raise ValueError(f"workers must be between 0 and 50, not {workers}")
    machines = [
        Machine(f"cp-{i}", f"198.18.0.{10 + i}", "control-plane")
        for i in range(1, CONTROL_PLANES + 1)
    ]
    machines += [
        Machine(f"w-{i}", f"198.18.0.{WORKER_BASE + i - 1}", "worker")
        for i in range(1, workers + 1)
    ]
    if client:
        machines.append(Machine("client", CLIENT_IP, "client"))
    return machines


def machine_from_name(name: str) -> Machine:
    """The machine called `name` (cp-N, w-N or client), whether or not it is up."""
    if name == "client":
        return Machine("client", CLIENT_IP, "client")
    kind, _, num = name.partition("-")
    if kind in ("cp", "w") and num.isdigit() and int(num) >= 1:
        n = int(num)
        if kind == "cp" and n <= CONTROL_PLANES:
            return Machine(name, f"198.18.0.{10 + n}", "control-plane")
        if kind == "w" and n <= 50:
            return Machine(name, f"198.18.0.{WORKER_BASE + n - 1}", "worker")
    raise ValueError(f"no lab machine called {name!r} (cp-1..cp-3, w-N, client)")
