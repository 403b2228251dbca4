"""The .debs: pkgs.k8s.io names and Depends, launchers that report their packaged version."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))

from lab.kubesim.build import build_packages  # noqa: E402
from tests.conftest import require_binary  # noqa: E402


def field(deb: Path, name: str) -> str:
    return subprocess.run(
        ["dpkg-deb", "-f", str(deb), name], capture_output=True, text=True, check=True, timeout=30
    ).stdout.strip()


@pytest.fixture(scope="module")
def debs(tmp_path_factory) -> dict[str, list[Path]]:
    require_binary("dpkg-deb")  # `make test` installs it: a failure, never a skip
    return build_packages(tmp_path_factory.mktemp("debs"))


def test_names_and_versions_per_minor(debs):
    assert set(debs) == {"v1.28", "v1.29", "v1.30", "v1.31"}
    names = {p.name for p in debs["v1.30"]}
    assert {
        "kubeadm_1.30.0-1.1_amd64.deb",
        "kubelet_1.30.0-1.1_amd64.deb",
        "kubectl_1.30.0-1.1_amd64.deb",
        "cri-tools_1.30.0-1.1_amd64.deb",
    } <= names
    assert "kubeadm_1.31.0-1.1_amd64.deb" in {p.name for p in debs["v1.31"]}


def test_depends_like_pkgs_k8s_io(debs):
    kubelet = next(p for p in debs["v1.30"] if p.name.startswith("kubelet_"))
    depends = field(kubelet, "Depends")
    for dep in (
        "kubernetes-cni (>= 1.2.0)",
        "iptables (>= 1.4.21)",
        "conntrack",
        "kubesim-runtime (=",
    ):
        assert dep in depends
    kubeadm = next(p for p in debs["v1.30"] if p.name.startswith("kubeadm_"))
    assert "cri-tools (>= 1.30.0)" in field(kubeadm, "Depends")
    runtime = next(p for p in debs["v1.30"] if p.name.startswith("kubesim-runtime_"))
    assert "python3-yaml" in field(runtime, "Depends")


def test_debian_deps_list_covers_every_depends(debs):
    listed = {
        line.split()[0]
        for line in (REPO / "lab/kubesim/debian-deps.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    ours = {"kubesim-runtime", "kubernetes-cni", "cri-tools", "kubelet", "kubectl", "kubeadm"}
    for deb in debs["v1.30"]:
        for dep in field(deb, "Depends").split(","):
            name = dep.strip().split()[0] if dep.strip() else ""
            if name and name not in ours:
                assert name in listed, f"{deb.name} depends on {name}, missing from debian-deps.txt"


def test_launcher_reports_its_version_and_etcd_ships(debs, tmp_path):
    root = tmp_path / "root"
    for deb in debs["v1.31"]:
        if deb.name.startswith(("kubeadm_", "kubesim-runtime_")):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True, timeout=120)
    launcher = (root / "usr/bin/kubeadm").read_text()
    code = launcher.replace("/usr/lib/kubesim/python", str(root / "usr/lib/kubesim/python"))
    code_file = tmp_path / "kubeadm"
    code_file.write_text(code)
    out = subprocess.run(
        [sys.executable, str(code_file), "version", "-o", "short"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.stdout.strip() == "v1.31.0", out.stderr
    etcd = root / "usr/lib/kubesim/images/etcd/etcd"
    version = subprocess.run(
        [str(etcd), "--version"], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    assert "etcd Version: 3.5." in version
    assert (root / "usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf").exists()


def test_rebuild_is_cached(debs):
    first = next(p for p in debs["v1.30"] if p.name.startswith("kubeadm_"))
    mtime = first.stat().st_mtime_ns
    again = build_packages(first.parent)
    assert (
        next(p for p in again["v1.30"] if p.name.startswith("kubeadm_")).stat().st_mtime_ns == mtime
    )
