"""What the formula's node states do works inside a machine: network sysctls, swap,
kernel modules the host provides, and Debian's containerd with the systemd cgroup driver."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytestmark = [pytest.mark.root, pytest.mark.lab]
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
    path = Path("/proc/sys") / key.replace(".", "/")
    host_before = path.read_text().strip()
    before = lab.exec("client", "sysctl", "-n", key).stdout.strip()
    try:
        for value in ("1", "0", "1"):
            lab.exec("client", "sysctl", "-w", f"{key}={value}")
            assert lab.exec("client", "sysctl", "-n", key).stdout.strip() == value
    finally:
        lab.exec("client", "sysctl", "-w", f"{key}={before}")
    if key == "net.ipv4.ip_forward":  # the machine's own namespace, never the host's
        assert path.read_text().strip() == host_before


def test_non_network_sysctls_stay_read_only(lab):
    res = lab.exec("client", "sysctl", "-w", "kernel.pid_max=4194304", check=False)
    assert res.returncode != 0 and "denied" in (res.stderr + res.stdout).lower()


def test_swapoff_and_swapon_behave_as_on_a_vm_without_swap(lab):
    assert lab.exec("client", "swapoff", "-a").returncode == 0
    assert lab.exec("client", "swapon", "--show", "--noheadings").stdout.strip() == ""


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
