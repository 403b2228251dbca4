"""What the formula's node states do works inside a machine: network sysctls (the machine's
own), swap (the host's: not namespaced), kernel modules the host provides, and Debian's
containerd with the systemd cgroup driver."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.root, pytest.mark.lab]
REPO = Path(__file__).resolve().parents[2]
APT = "DEBIAN_FRONTEND=noninteractive apt-get -q -y -o Dpkg::Use-Pty=0"


@pytest.mark.parametrize(
    "key",
    [
        "net.ipv4.ip_forward",
        "net.bridge.bridge-nf-call-iptables",
        "net.bridge.bridge-nf-call-ip6tables",
    ],
)
def test_network_sysctls_are_writable_and_per_machine(lab, key):
    """Each value is set in the machine and read back there, and at that moment the host
    (this process, in the host's network namespace) still has its own: 1 and 0 are both
    written, so one of them differs from the host's and a leak would show."""
    path = Path("/proc/sys") / key.replace(".", "/")
    host = path.read_text().strip()
    before = lab.exec("client", "sysctl", "-n", key).stdout.strip()
    try:
        for value in ("1", "0", "1"):
            lab.exec("client", "sysctl", "-w", f"{key}={value}")
            assert lab.exec("client", "sysctl", "-n", key).stdout.strip() == value
            assert path.read_text().strip() == host, f"{key}={value} reached the host"
    finally:
        lab.exec("client", "sysctl", "-w", f"{key}={before}")


def test_non_network_sysctls_stay_read_only(lab):
    res = lab.exec("client", "sysctl", "-w", "kernel.pid_max=4194304", check=False)
    assert res.returncode != 0 and "denied" in (res.stderr + res.stdout).lower()


def _swap_state() -> dict:
    """kubeha-node-swap-off-now from the formula (its commands, not a copy of them)."""
    text = (REPO / "salt/kubeha/node/swap.sls").read_text()
    sls = yaml.safe_load("\n".join(x for x in text.splitlines() if not x.startswith("{%")))
    return {k: v for arg in sls["kubeha-node-swap-off-now"]["cmd.run"] for k, v in arg.items()}


def _host_swaps() -> list[int]:
    """Sizes in bytes of the host's swap areas (/proc/swaps: KiB). Sizes, not names: a
    machine sees a swap file's path relative to its own root."""
    lines = Path("/proc/swaps").read_text().splitlines()[1:]
    return sorted(int(line.split()[2]) * 1024 for line in lines)


def test_swapon_in_a_machine_reports_the_hosts_swap(lab):
    """Swap is not namespaced: the kubelet's preflight in a machine sees the host's swap
    areas, exactly. On a swapless host this proves swapon runs and reports none."""
    res = lab.exec("client", "swapon", "--show=SIZE", "--bytes", "--noheadings", "--raw")
    assert res.returncode == 0
    assert sorted(int(size) for size in res.stdout.split()) == _host_swaps()


def test_the_formulas_swap_state_in_a_machine(lab):
    """The formula's exact commands, run as Salt runs them (sh -c): on a swapless host the
    `onlyif` is false (the state does nothing) and `swapoff -a` would still succeed."""
    state = _swap_state()
    assert state["name"] == "swapoff -a" and "swapon --show --noheadings" in state["onlyif"]
    if _host_swaps():
        pytest.skip(
            "the host has swap, which a machine shares: swapoff -a in a machine would turn "
            "the host's swap off (a limit of the lab, docs/lab.md)"
        )
    onlyif = lab.sh("client", state["onlyif"], check=False)
    assert onlyif.returncode == 1, onlyif  # `test -n ""`: false, not an error (2+)
    assert lab.sh("client", state["name"], check=False).returncode == 0


def test_kernel_features_the_formula_needs_are_present(lab):
    filesystems = lab.exec("client", "cat", "/proc/filesystems").stdout
    assert "\toverlay\n" in filesystems
    assert lab.exec("client", "test", "-d", "/proc/sys/net/bridge").returncode == 0
    if not os.path.exists("/proc/modules"):
        # Built into this kernel (no module support at all): modprobe succeeds as for any
        # built-in module, while lsmod has no /proc/modules to read (see docs/lab.md).
        for module in ("overlay", "br_netfilter"):
            assert lab.exec("client", "modprobe", module).returncode == 0
        assert lab.exec("client", "lsmod", check=False).returncode != 0


def test_debian_containerd_runs_with_the_systemd_cgroup_driver(lab):
    lab.sh("client", f"{APT} update && {APT} install containerd", timeout=600)
    try:
        lab.sh(
            "client",
            "mkdir -p /etc/containerd && containerd config default "
            "| sed 's/SystemdCgroup = false/SystemdCgroup = true/' > /etc/containerd/config.toml"
            " && systemctl restart containerd",
            timeout=120,
        )
        assert lab.exec("client", "systemctl", "is-active", "containerd").stdout.strip() == "active"
        dump = lab.exec("client", "containerd", "config", "dump").stdout
        assert "SystemdCgroup = true" in dump
        plugins = lab.exec("client", "ctr", "plugins", "ls").stdout
        cri = [line for line in plugins.splitlines() if " cri " in f" {line} "]
        assert cri and cri[0].split()[-1] == "ok", plugins
        version = lab.exec("client", "ctr", "version").stdout
        assert "Server:" in version
    finally:
        lab.sh("client", f"{APT} purge containerd runc && {APT} autoremove --purge", timeout=300)
