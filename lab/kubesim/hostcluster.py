"""A kubeadm-built kubesim cluster on host namespaces (see hostnode.py), for tests.

    with HostCluster(workdir, ["cp-1", "cp-2", "cp-3"]) as cluster:
        cluster.init(config_text)      # kubeadm init --upload-certs on the first node
        cluster.join_control_plane()   # kubeadm join --control-plane on the others

The control-plane endpoint is the first node's apiserver (no load balancer on the host).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from .hostnode import HostNode, etcd_dir, remove_hub

BASE_IP = 20
AUDIT_POLICY = "/etc/kubernetes/audit/policy.yaml"
AUDIT_LOG = "/etc/kubernetes/audit/log/audit.log"
POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  nonResourceURLs: ["/healthz*", "/livez*", "/readyz*", "/version"]
- level: None
  resources: [{group: coordination.k8s.io, resources: [leases]}]
- level: Metadata
"""
IGNORE = "FileExisting-conntrack,FileExisting-crictl,Mem,NumCPU"


def config(  # noqa: PLR0917 - mirrors the upstream call's parameters
    version: str = "v1.30.0",
    api: str = "kubeadm.k8s.io/v1beta3",
    endpoint: str = "198.18.0.21:6443",
    lease: tuple[str, str, str] = ("5s", "3s", "1s"),
    first_ip: str = "198.18.0.21",
    node: str = "cp-1",
) -> str:
    le = dict(
        zip(
            (
                "leader-elect-lease-duration",
                "leader-elect-renew-deadline",
                "leader-elect-retry-period",
            ),
            lease,
            strict=True,
        )
    )
    audit = {"audit-policy-file": AUDIT_POLICY, "audit-log-path": AUDIT_LOG}
    if api.endswith("v1beta4"):
        args = "\n".join(f"    - {{name: {k}, value: {v}}}" for k, v in le.items())
        audit_args = "\n".join(f"    - {{name: {k}, value: {v}}}" for k, v in audit.items())
    else:
        args = "\n".join(f"    {k}: {v}" for k, v in le.items())
        audit_args = "\n".join(f"    {k}: {v}" for k, v in audit.items())
    return f"""apiVersion: {api}
kind: InitConfiguration
localAPIEndpoint: {{advertiseAddress: {first_ip}, bindPort: 6443}}
nodeRegistration: {{name: {node}}}
---
apiVersion: {api}
kind: ClusterConfiguration
kubernetesVersion: {version}
controlPlaneEndpoint: {endpoint}
networking: {{podSubnet: 10.244.0.0/16}}
apiServer:
  extraArgs:
{audit_args}
  extraVolumes:
  - {{name: audit, hostPath: /etc/kubernetes/audit, mountPath: /etc/kubernetes/audit,
      pathType: DirectoryOrCreate}}
controllerManager:
  extraArgs:
{args}
scheduler:
  extraArgs:
{args}
"""


class HostCluster:
    def __init__(self, workdir: Path, names: list[str], version: str = "v1.30.0") -> None:
        self.workdir = workdir
        self.nodes = [
            HostNode(n, f"198.18.0.{BASE_IP + i + 1}", workdir / n, version)
            for i, n in enumerate(names)
        ]
        self.join_cp: str = ""

    def __enter__(self) -> HostCluster:
        etcd = etcd_dir()
        try:
            for node in self.nodes:
                node.create()
                node.images(etcd)
                node.run(
                    ["sh", "-c", f"mkdir -p /etc/kubernetes/audit && cat > {AUDIT_POLICY}"],
                    stdin=POLICY,
                    check=True,
                    timeout=30,
                )
                node.start_kubelet()
        except Exception:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        for node in self.nodes:
            node.destroy()
        remove_hub()
        shutil.rmtree(self.workdir, ignore_errors=True)

    @property
    def first(self) -> HostNode:
        return self.nodes[0]

    def init(self, config_text: str, extra: list[str] | None = None) -> subprocess.CompletedProcess:
        path = self.first.workdir / "kubeadm-config.yaml"
        path.write_text(config_text)
        res = self.first.run(
            [
                "kubeadm",
                "init",
                "--config",
                str(path),
                "--upload-certs",
                f"--ignore-preflight-errors={IGNORE}",
                *(extra or []),
            ],
            timeout=300,
        )
        m = re.search(r"^\s+(kubeadm join .*?--certificate-key \w+)", res.stdout, re.S | re.M)
        if m:
            self.join_cp = re.sub(r"\\\n\s*", "", m.group(1))
        return res

    def join_worker(self, node: HostNode) -> subprocess.CompletedProcess:
        """`kubeadm token create --print-join-command` on the first node, run on `node`."""
        res = self.first.run(["kubeadm", "token", "create", "--print-join-command"], timeout=60)
        if res.returncode != 0:
            return res
        argv = res.stdout.split() + [
            "--node-name",
            node.name,
            f"--ignore-preflight-errors={IGNORE}",
        ]
        return node.run(argv, timeout=400)

    def join_control_plane(self, node: HostNode) -> subprocess.CompletedProcess:
        argv = self.join_cp.split() + [
            "--apiserver-advertise-address",
            node.ip,
            "--node-name",
            node.name,
            f"--ignore-preflight-errors={IGNORE}",
        ]
        return node.run(argv, timeout=400)
