"""The lab's wire: bridge kha-br0 (198.18.0.1/24) and one namespace per machine.

Each machine's namespace kha-<machine> holds `lo` (up: containerd's CRI listens on
127.0.0.1) and ens160, one end of a veth whose other end, kha-h-<machine>, is plugged
into the bridge. No default route, no NAT: only 198.18.0.0/24 exists for the machines.
"""

from __future__ import annotations

import json
from pathlib import Path

from lab.config import BRIDGE, HOST_IP, NIC, PREFIX, PREFIX_LEN, Machine
from lab.run import LabError, run

NETNS_DIR = Path("/run/netns")


def _ip(*args: str, netns: str | None = None, check: bool = True, timeout: float = 20):
    cmd = ["ip", *(["-n", netns] if netns else []), *args]
    return run(cmd, timeout=timeout, check=check)


def link_exists(name: str, netns: str | None = None) -> bool:
    return _ip("link", "show", "dev", name, netns=netns, check=False).returncode == 0


def ensure_bridge() -> None:
    """kha-br0 with the host's lab address; idempotent."""
    if not link_exists(BRIDGE):
        _ip("link", "add", BRIDGE, "type", "bridge", "stp_state", "0", "forward_delay", "0")
    addrs = json.loads(_ip("-j", "addr", "show", "dev", BRIDGE).stdout or "[]")
    have = {a["local"] for link in addrs for a in link.get("addr_info", [])}
    if HOST_IP not in have:
        _ip("addr", "add", f"{HOST_IP}/{PREFIX_LEN}", "dev", BRIDGE)
    _ip("link", "set", BRIDGE, "up")


def namespaces() -> list[str]:
    """The lab's namespaces (kha-*) that exist now."""
    out = run(["ip", "-j", "netns", "list"], timeout=20).stdout or "[]"
    return sorted(n["name"] for n in json.loads(out) if n["name"].startswith(PREFIX))


def lab_links() -> list[str]:
    """Host links the lab made (kha-*) that exist now."""
    out = run(["ip", "-j", "link", "show"], timeout=20).stdout or "[]"
    return sorted(link["ifname"] for link in json.loads(out) if link["ifname"].startswith(PREFIX))


def ensure_machine_net(machine: Machine) -> None:
    """The machine's namespace, cable and address; idempotent, leaves the cable plugged in."""
    if machine.netns not in namespaces():
        _ip("netns", "add", machine.netns)
    _ip("link", "set", "lo", "up", netns=machine.netns)
    if not link_exists(NIC, netns=machine.netns):
        if link_exists(machine.host_veth):  # a half-made pair from an interrupted run
            _ip("link", "del", machine.host_veth)
        _ip(
            "link",
            "add",
            machine.host_veth,
            "type",
            "veth",
            "peer",
            "name",
            NIC,
            "netns",
            machine.netns,
        )
        _ip("link", "set", NIC, "address", machine.mac, netns=machine.netns)
    _ip("link", "set", machine.host_veth, "master", BRIDGE)
    configure_nic(machine)
    _ip("link", "set", machine.host_veth, "up")


def configure_nic(machine: Machine) -> None:
    """ens160 up with the machine's own address (what its network config does at boot)."""
    addrs = json.loads(_ip("-j", "addr", "show", "dev", NIC, netns=machine.netns).stdout)
    have = {
        a["local"] for link in addrs for a in link.get("addr_info", []) if a["family"] == "inet"
    }
    if machine.ip not in have:
        _ip("addr", "add", f"{machine.ip}/{PREFIX_LEN}", "dev", NIC, netns=machine.netns)
    _ip("link", "set", NIC, "up", netns=machine.netns)


def set_cable(machine: Machine, plugged: bool) -> None:
    """Carrier on/off for the machine, as pulling its cable from the switch would."""
    _ip("link", "set", machine.host_veth, "up" if plugged else "down")


def remove_namespace(name: str) -> None:
    if not name.startswith(PREFIX):
        raise LabError(f"refusing to remove namespace {name!r}: not the lab's ({PREFIX}*)")
    _ip("netns", "del", name, check=False)
    (NETNS_DIR / name).unlink(missing_ok=True)


def remove_link(name: str) -> None:
    if not name.startswith(PREFIX):
        raise LabError(f"refusing to remove link {name!r}: not the lab's ({PREFIX}*)")
    if link_exists(name):
        _ip("link", "del", name, check=False)
