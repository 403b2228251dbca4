"""apt inside the machines: the lab mirror is their only source, signed by the lab key, and
it carries what the formula and kubesim's packages install; the k8s repos look like
pkgs.k8s.io (one flat repository per minor, Release.key beside it)."""

from __future__ import annotations

import urllib.request

import pytest

from lab import config, debmirror

pytestmark = [pytest.mark.root, pytest.mark.lab]
APT = "DEBIAN_FRONTEND=noninteractive apt-get -q -y -o Dpkg::Use-Pty=0"
K8S_LIST = "/etc/apt/sources.list.d/kha-test-k8s.list"  # not the formula's kubernetes.list
K8S_KEY = "/etc/apt/keyrings/kha-test-k8s.asc"


def test_the_lab_mirror_is_the_only_apt_source(lab):
    """Debian comes from the lab mirror only; a kubernetes.list the formula (or kubesim's
    tests) added points at the lab mirror's k8s repos too."""
    for node in lab.nodes:
        update = lab.sh(node, f"{APT} update", timeout=300).stdout
        fetched = [
            line.split()[1] for line in update.splitlines() if line.startswith(("Get:", "Hit:"))
        ]
        assert f"{config.MIRROR_URL}/debian" in fetched, update
        assert all(u.startswith(f"{config.MIRROR_URL}/") for u in fetched), update
        uris = lab.sh(node, "apt-get indextargets --format '$(URI)' | sort -u").stdout.split()
        assert uris and all(u.startswith(f"{config.MIRROR_URL}/") for u in uris), uris
        sources = set(lab.sh(node, "ls /etc/apt/sources.list.d").stdout.split())
        assert "debian.sources" in sources and sources <= {"debian.sources", "kubernetes.list"}
        assert lab.exec(node, "test", "-e", "/etc/apt/sources.list", check=False).returncode != 0


def test_apt_installs_keepalived_from_the_lab_mirror(lab):
    lab.sh("client", f"{APT} update", timeout=300)
    try:
        lab.sh("client", f"{APT} install keepalived", timeout=600)
        policy = lab.exec("client", "apt-cache", "policy", "keepalived").stdout
        installed = policy.split("Installed:")[1].split()[0]
        assert installed != "(none)"
        assert f"{config.MIRROR_URL}/debian bookworm/main" in policy
        assert lab.exec("client", "keepalived", "--version").returncode == 0
    finally:
        lab.sh("client", f"{APT} purge keepalived && {APT} autoremove --purge", timeout=300)


def test_mirror_resolves_everything_the_formula_and_kubesim_install(lab):
    wanted = debmirror.wanted_packages()
    assert {"containerd", "keepalived", "haproxy", "etcd-client", "conntrack"} <= set(wanted)
    lab.sh("client", f"{APT} update", timeout=300)
    simulated = lab.exec("client", "apt-get", "-s", "install", *wanted, timeout=300, check=False)
    assert simulated.returncode == 0, simulated.stdout[-2000:] + simulated.stderr[-2000:]
    assert "Inst containerd " in simulated.stdout


@pytest.mark.parametrize("minor", ["v1.30", "v1.31"])
def test_k8s_repo_per_minor_is_shaped_like_pkgs_k8s_io(lab, minor):
    url = f"{config.MIRROR_URL}/k8s/core:/stable:/{minor}/deb/"
    with urllib.request.urlopen(url + "Release.key", timeout=10) as reply:
        key = reply.read().decode()
    assert key.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    for name in ("InRelease", "Release", "Release.gpg", "Packages"):
        with urllib.request.urlopen(url + name, timeout=10) as reply:
            assert reply.status == 200
    try:
        lab.sh("client", f"mkdir -p /etc/apt/keyrings && cat > {K8S_KEY}", input=key)
        lab.sh("client", f"echo 'deb [signed-by={K8S_KEY}] {url} /' > {K8S_LIST}")
        update = lab.sh("client", f"{APT} update", timeout=300)
        assert "NO_PUBKEY" not in update.stderr and "not signed" not in update.stderr
        madison = lab.exec("client", "apt-cache", "madison", "kubeadm").stdout
        version = minor[1:]
        assert f"kubeadm | {version}." in madison and "-1.1 |" in madison
        assert url.rstrip("/") in madison
        # kubeadm + kubelet + kubectl + cri-tools and everything they Depend on resolve
        plan = lab.exec(
            "client",
            "apt-get",
            "-s",
            "install",
            "kubeadm",
            "kubelet",
            "kubectl",
            "cri-tools",
            timeout=300,
            check=False,
        )
        assert plan.returncode == 0, plan.stdout[-2000:] + plan.stderr[-2000:]
        assert "Inst kubelet " in plan.stdout and "Inst conntrack " in plan.stdout
    finally:
        lab.sh("client", f"rm -f {K8S_LIST} {K8S_KEY} && {APT} update", timeout=300)


def test_an_unsigned_repository_is_refused(lab):
    """The lab key is what makes the mirror trusted: without signed-by apt refuses it."""
    url = f"{config.MIRROR_URL}/k8s/core:/stable:/v1.30/deb/"
    try:
        lab.sh("client", f"echo 'deb {url} /' > {K8S_LIST}")
        update = lab.sh("client", "apt-get update", timeout=300, check=False)
        assert "NO_PUBKEY" in update.stderr or "not signed" in update.stderr
    finally:
        lab.sh("client", f"rm -f {K8S_LIST} && {APT} update", timeout=300)
