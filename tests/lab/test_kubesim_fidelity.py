"""kubesim on the lab machines: real systemd, apt, containerd; kubeadm-built 3-node cluster.

What only the machines can show (the host-namespace twin, tests/unit/kubesim/
test_host_cluster.py, covers the rest): the packages install from the lab's
pkgs.k8s.io-shaped repositories, kubelet.service crash-loops until kubeadm writes its
config, static pods run in their own systemd scopes and survive a kubelet restart, and
installing a newer kubeadm package is what makes `kubeadm version` newer.

Uses the lab's session fixture `lab` (tests/lab/conftest.py: brings the lab up). The cluster
here is kubesim's own (controlPlaneEndpoint = cp-1:6443, no load balancer): the formula's
bootstrap is tested elsewhere.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from lab.kubesim import fidelity  # noqa: E402
from lab.kubesim.hostcluster import AUDIT_POLICY, POLICY, config  # noqa: E402

pytestmark = pytest.mark.lab
NODES = {"cp-1": "198.18.0.11", "cp-2": "198.18.0.12", "cp-3": "198.18.0.13"}
ETCDCTL = "/usr/lib/kubesim/images/etcd/etcdctl"


def repo_line(minor: str) -> str:
    from lab import config as labcfg  # the lab's own addresses (lab/config.py)
    from lab.machine import LAB_KEYRING  # the key the machines trust for the lab's repos

    return f"deb [signed-by={LAB_KEYRING}] {labcfg.MIRROR_URL}/k8s/core:/stable:/{minor}/deb/ /"


class Machines:
    """The runner fidelity.py wants, over the lab's `lab.exec`."""

    def __init__(self, lab) -> None:
        self.lab = lab

    def __call__(
        self, node: str, argv: list[str], timeout: float = 120
    ) -> subprocess.CompletedProcess:
        # as root with the admin kubeconfig, like the runbook's `export KUBECONFIG=...`
        return self.lab.exec(
            node,
            *argv,
            timeout=timeout,
            check=False,
            env={"KUBECONFIG": "/etc/kubernetes/admin.conf"},
        )

    def sh(self, node: str, script: str, timeout: float = 600) -> str:
        return fidelity.must(self(node, ["sh", "-c", script], timeout))

    def install(self, node: str, minor: str, version: str) -> None:
        self.sh(node, f"echo '{repo_line(minor)}' > /etc/apt/sources.list.d/kubernetes.list")
        self.sh(
            node,
            "export DEBIAN_FRONTEND=noninteractive; apt='apt-get -o DPkg::Lock::Timeout=600'; "
            "$apt update -qq && "
            f"$apt install -y -qq containerd kubeadm={version} kubelet={version} "
            f"kubectl={version} >/dev/null && sysctl -qw net.ipv4.ip_forward=1 && "
            "swapoff -a && systemctl enable --now containerd",
        )


@pytest.fixture(scope="module")
def cluster(lab):
    """The lab's cluster: reused if one runs (the formula's), else built here and reset after."""
    run = Machines(lab)
    existing = run("cp-1", ["test", "-f", "/etc/kubernetes/admin.conf"]).returncode == 0
    if existing:
        yield {"run": run, "built": False}
        return
    for node in NODES:
        run.install(node, "v1.30", "1.30.0-1.1")
    # before init the kubelet crash-loops on its missing config, as upstream's does
    fidelity.wait(
        lambda: (
            int(run.sh("cp-1", "systemctl show kubelet -p NRestarts --value").strip() or 0) >= 1
        ),
        60,
        what="kubelet restarts",
    )
    text = config(endpoint="198.18.0.11:6443", first_ip="198.18.0.11", node="cp-1")
    for node in NODES:
        run.sh(node, f"mkdir -p /etc/kubernetes/audit && cat > {AUDIT_POLICY} <<'EOF'\n{POLICY}EOF")
    run.sh("cp-1", f"cat > /root/kubesim-init.yaml <<'EOF'\n{text}EOF")
    started = time.monotonic()
    res = run(
        "cp-1",
        [
            "kubeadm",
            "init",
            "--config",
            "/root/kubesim-init.yaml",
            "--upload-certs",
            "--ignore-preflight-errors=NumCPU,Mem",
        ],
        400,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    join = " ".join(
        line.strip().rstrip("\\")
        for line in res.stdout.splitlines()
        if "--control-plane --certificate-key" in line
        or "kubeadm join" in line
        or "--discovery-token-ca-cert-hash" in line
    ).split("kubeadm join")[1]
    for node, ip in list(NODES.items())[1:]:
        res = run(
            node,
            [
                "kubeadm",
                "join",
                *join.split(),
                "--apiserver-advertise-address",
                ip,
                "--ignore-preflight-errors=NumCPU,Mem",
            ],
            400,
        )
        assert res.returncode == 0, res.stdout + res.stderr
    print(f"\n[measured] lab: kubeadm init + 2 joins {time.monotonic() - started:.1f}s")
    yield {"run": run, "built": True}
    for node in NODES:
        run(node, ["kubeadm", "reset", "-f"], 120)
        run(node, ["systemctl", "stop", "kubelet"], 60)


def test_three_members_three_ready_nodes_all_readyz(cluster):
    run = cluster["run"]
    members = fidelity.wait(
        lambda: [
            m
            for m in fidelity.etcd_members(run, "cp-1", ETCDCTL)
            if m.get("name") and not m.get("isLearner")
        ],
        90,
        what="3 started members",
    )
    assert sorted(m["name"] for m in members) == sorted(NODES)
    ready = fidelity.wait(
        lambda: (
            (r := fidelity.nodes_ready(run, "cp-1"))
            and all(ok for ok, _ in r.values())
            and len(r) == 3
            and r
        ),
        120,
        what="3 Ready nodes",
    )
    assert len({v for _, v in ready.values()}) == 1
    for node, ip in NODES.items():
        fidelity.wait(
            lambda node=node, ip=ip: fidelity.readyz(run, node, ip)[0] == 200,
            90,
            what=f"{node} readyz",
        )


def test_static_pods_survive_a_kubelet_restart(cluster):
    run = cluster["run"]
    before = fidelity.container(run, "cp-2", "kube-apiserver")
    cluster["run"].sh("cp-2", "systemctl restart kubelet")
    time.sleep(5)
    after = fidelity.container(run, "cp-2", "kube-apiserver")
    assert after["status"]["id"] == before["status"]["id"]
    assert after["info"]["pid"] == before["info"]["pid"]
    scope = cluster["run"].sh("cp-2", f"cat /proc/{after['info']['pid']}/cgroup")
    assert "kubelet.service" not in scope, scope


def test_crictl_stop_apiserver_is_undone(cluster):
    run = cluster["run"]
    before = fidelity.container(run, "cp-3", "kube-apiserver")
    fidelity.must(run("cp-3", ["crictl", "stop", before["status"]["id"]]))
    fidelity.wait(
        lambda: (
            fidelity.container(run, "cp-3", "kube-apiserver")["status"]["id"]
            != before["status"]["id"]
        ),
        30,
        what="a restarted apiserver",
    )


def test_kcm_hard_kill_failover_5_3_1(cluster):
    result = fidelity.leader_failover(
        cluster["run"], list(NODES), "kube-controller-manager", "KILL"
    )
    print(f"\n[measured] lab KCM SIGKILL failover (5/3/1): {result.gap_seconds:.2f}s")
    assert 5.0 <= result.gap_seconds <= 5.0 + 2 * 2.2 + 1.0


def test_newer_kubeadm_package_reports_the_newer_version(cluster):
    """Installing a newer kubeadm package is what makes `kubeadm version` newer, and a
    kubeadm refuses a target above its own version. The packages go onto the `client`
    machine (no cluster there), so whichever cluster runs, the formula's or this
    module's, keeps its packages; the refusal is asked of the cluster's own kubeadm."""
    run = cluster["run"]
    assert run.sh("cp-1", "kubeadm version -o short").strip() == "v1.30.0"
    res = run("cp-1", ["kubeadm", "upgrade", "apply", "v1.31.0", "-y"])
    assert res.returncode == 1 and 'higher than the kubeadm version "v1.30.0"' in res.stderr
    apt = "export DEBIAN_FRONTEND=noninteractive; apt='apt-get -o DPkg::Lock::Timeout=600 -qq -y'"
    try:
        for minor, version in (("v1.30", "1.30.0-1.1"), ("v1.31", "1.31.0-1.1")):
            run.sh(
                "client",
                f"echo '{repo_line(minor)}' > /etc/apt/sources.list.d/kubernetes.list && "
                f"{apt}; $apt update && $apt install kubeadm={version} >/dev/null",
            )
            want = "v" + version.split("-")[0]
            assert run.sh("client", "kubeadm version -o short").strip() == want
            installed = run.sh("client", "dpkg-query -W -f '${Version}' kubeadm").strip()
            assert installed == version
    finally:
        run(
            "client",
            [
                "sh",
                "-c",
                f"{apt}; $apt purge kubeadm cri-tools kubesim-runtime >/dev/null; "
                "rm -f /etc/apt/sources.list.d/kubernetes.list; $apt update",
            ],
            600,
        )
    assert run("client", ["sh", "-c", "command -v kubeadm"]).returncode != 0
