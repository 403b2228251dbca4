"""The node side of the kubelet: register the Node, post its status, renew its Lease.

Node Lease kube-node-lease/<node>: leaseDurationSeconds 40, renewed every 10 s
(pkg/kubelet/nodelease, renewIntervalFraction 0.25); status every
nodeStatusUpdateFrequency (10 s). Registration as pkg/kubelet/kubelet_node_status.go
(labels kubernetes.io/hostname, os, arch; addresses InternalIP and Hostname).
"""

from __future__ import annotations

import datetime as dt
import os
import platform
from pathlib import Path

from .. import klog
from ..kubeclient import ApiError, Client
from ..leaderelection import micro_time
from ..versions import Version


def now_str() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _read(path: str, default: str = "") -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return default


def os_image() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return "Linux"


def memory_ki() -> int:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1])
    return 0


class NodeAgent:
    def __init__(
        self, client: Client, name: str, ip: str, version: Version, runtime_version: str
    ) -> None:
        self.c = client
        self.name = name
        self.ip = ip
        self.version = version
        self.runtime_version = runtime_version
        self.registered = False
        self.lease: dict | None = None

    def node_status(self, ready: bool, old: dict | None = None) -> dict:
        now = now_str()
        old_conds = {c["type"]: c for c in (old or {}).get("conditions") or []}

        def cond(kind: str, status: str, reason: str, message: str) -> dict:
            prev = old_conds.get(kind)
            changed = prev is None or prev.get("status") != status
            return {
                "type": kind,
                "status": status,
                "lastHeartbeatTime": now,
                "lastTransitionTime": now if changed else prev.get("lastTransitionTime", now),
                "reason": reason,
                "message": message,
            }

        mem = memory_ki()
        cpus = str(os.cpu_count() or 1)
        return {
            "capacity": {
                "cpu": cpus,
                "memory": f"{mem}Ki",
                "pods": "110",
                "ephemeral-storage": "20511312Ki",
                "hugepages-2Mi": "0",
            },
            "allocatable": {
                "cpu": cpus,
                "memory": f"{max(mem - 102400, 0)}Ki",
                "pods": "110",
                "ephemeral-storage": "18903225108",
                "hugepages-2Mi": "0",
            },
            "conditions": [
                cond(
                    "MemoryPressure",
                    "False",
                    "KubeletHasSufficientMemory",
                    "kubelet has sufficient memory available",
                ),
                cond(
                    "DiskPressure",
                    "False",
                    "KubeletHasNoDiskPressure",
                    "kubelet has no disk pressure",
                ),
                cond(
                    "PIDPressure",
                    "False",
                    "KubeletHasSufficientPID",
                    "kubelet has sufficient PID available",
                ),
                cond(
                    "Ready",
                    "True" if ready else "False",
                    "KubeletReady" if ready else "KubeletNotReady",
                    "kubelet is posting ready status" if ready else "container runtime is down",
                ),
            ],
            "addresses": [
                {"type": "InternalIP", "address": self.ip},
                {"type": "Hostname", "address": self.name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": _read("/etc/machine-id"),
                "systemUUID": _read("/sys/class/dmi/id/product_uuid", _read("/etc/machine-id")),
                "bootID": _read("/proc/sys/kernel/random/boot_id"),
                "kernelVersion": platform.release(),
                "osImage": os_image(),
                "containerRuntimeVersion": self.runtime_version,
                "kubeletVersion": str(self.version),
                "kubeProxyVersion": str(self.version),
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        }

    def register(self) -> bool:
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "labels": {
                    "beta.kubernetes.io/arch": "amd64",
                    "beta.kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "kubernetes.io/hostname": self.name,
                    "kubernetes.io/os": "linux",
                },
                "annotations": {
                    "node.alpha.kubernetes.io/ttl": "0",
                    "volumes.kubernetes.io/controller-managed-attach-detach": "true",
                },
            },
            "spec": {},
            "status": self.node_status(True),
        }
        klog.info(f'"Attempting to register node" node="{self.name}"', "kubelet_node_status.go:73")
        try:
            self.c.create("nodes", node)
            klog.info(
                f'"Successfully registered node" node="{self.name}"', "kubelet_node_status.go:76"
            )
        except ApiError as err:
            if err.status != 409:
                klog.error(
                    f'"Unable to register node with API server" err="{err}" node="{self.name}"',
                    "kubelet_node_status.go:95",
                )
                return False
        except OSError as err:
            klog.error(
                f'"Unable to register node with API server" err="{err}" node="{self.name}"',
                "kubelet_node_status.go:95",
            )
            return False
        self.registered = True
        return True

    def post_status(self, runtime_ok: bool = True) -> None:
        node = self.c.get("nodes", self.name)
        node["status"] = self.node_status(runtime_ok, node.get("status"))
        self.c.update("nodes", node, subresource="status")

    def renew_lease(self) -> None:
        spec = {"holderIdentity": self.name, "leaseDurationSeconds": 40, "renewTime": micro_time()}
        if self.lease is not None:
            self.lease["spec"].update(spec)
            try:
                self.lease = self.c.update("leases", self.lease, "kube-node-lease")
                return
            except ApiError as err:
                if err.status not in (404, 409):
                    raise
        current = self.c.get_or_none("leases", self.name, "kube-node-lease")
        if current is None:
            node = self.c.get("nodes", self.name)
            self.lease = self.c.create(
                "leases",
                {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {
                        "name": self.name,
                        "namespace": "kube-node-lease",
                        "ownerReferences": [
                            {
                                "apiVersion": "v1",
                                "kind": "Node",
                                "name": self.name,
                                "uid": node["metadata"]["uid"],
                            }
                        ],
                    },
                    "spec": spec,
                },
                "kube-node-lease",
            )
        else:
            current["spec"].update(spec)
            self.lease = self.c.update("leases", current, "kube-node-lease")
