"""kubelet stand-in: flags and config like upstream, then the sync loop.

Upstream behaviour kept where kubeadm or an operator can see it:
- it exits (and systemd restarts it) while /var/lib/kubelet/config.yaml is missing, the
  crash loop kubeadm's docs describe before `kubeadm init|join`;
- it exits if the CRI endpoint (containerd) does not answer;
- without kubelet.conf it runs static pods only; with bootstrap-kubelet.conf it does the TLS
  bootstrap (CSR signed by the controller-manager) and writes kubelet.conf pointing at
  /var/lib/kubelet/pki/kubelet-client-current.pem;
- healthz on 127.0.0.1:10248 (kubeadm's wait-control-plane polls it);
- the API side (pod list, status, Node and its Lease, mirror pods) runs in its own thread
  beside the pod sync loop, as upstream's informers and status manager run beside the pod
  workers: an apiserver that hangs never delays what the kubelet does with its static pods
  (the etcd manifest moved away and back during a fault, say).
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import time
from pathlib import Path

import yaml

from .. import cri, klog
from .. import flags as flagutil
from ..kubeclient import ApiError, Client
from ..versions import Version, own_version
from . import cgroups
from .bootstrap import tls_bootstrap
from .healthz import serve_healthz
from .host import check_cri, node_ip_guess, runtime_version
from .node import NodeAgent
from .pods import Pod, PodRuntime, load_static_pods
from .status import StatusManager, pod_status

STATUS_PERIOD = 10.0


class Kubelet:
    def __init__(self, flags: dict, config: dict, version: Version) -> None:
        self.flags = flags
        self.config = config
        self.version = version
        self.node_name = (flags.get("hostname-override") or socket.gethostname()).lower()
        self.node_ip = flags.get("node-ip") or node_ip_guess()
        self.static_path = Path(
            flags.get("pod-manifest-path")
            or config.get("staticPodPath")
            or "/etc/kubernetes/manifests"
        )
        self.kubeconfig = Path(flags.get("kubeconfig", "/etc/kubernetes/kubelet.conf"))
        self.bootstrap = Path(
            flags.get("bootstrap-kubeconfig", "/etc/kubernetes/bootstrap-kubelet.conf")
        )
        self.cert_dir = Path(flags.get("cert-dir", "/var/lib/kubelet/pki"))
        self.records = cri.Records()
        self.runtime = PodRuntime(self.records, self.node_ip)
        self.client: Client | None = None
        self.agent: NodeAgent | None = None
        self.last_status = 0.0
        self.last_lease = 0.0
        self.status: StatusManager | None = None
        self.known: dict[str, Pod] = {}
        self.api_items: list[dict] | None = None  # the latest pod list (None: never listed)
        self.view: tuple[dict[str, Pod], list[dict]] = ({}, [])  # the sync loop's last pods
        self.last_loop = time.monotonic()
        self.runtime_version = runtime_version()
        self.endpoint = "unix:///run/containerd/containerd.sock"
        self.cgroup_problem = cgroups.driver_mismatch(config)
        if self.cgroup_problem:
            klog.warning(f'"Cgroup driver mismatch" err="{self.cgroup_problem}"', "kubelet.go:1520")

    # -- API client / TLS bootstrap -----------------------------------------------------------
    def connect(self) -> None:
        if self.client is not None:
            return
        if not self.kubeconfig.exists() and self.bootstrap.exists():
            try:
                self.tls_bootstrap()
            except Exception as err:  # noqa: BLE001 - retried on the next loop
                klog.error(f'"Failed to run TLS bootstrap" err="{err}"', "bootstrap.go:265")
                return
        if self.kubeconfig.exists():
            try:
                self.client = Client.from_kubeconfig(self.kubeconfig, timeout=10)
                self.agent = NodeAgent(
                    self.client, self.node_name, self.node_ip, self.version, self.runtime_version
                )
                self.status = StatusManager(self.client, self.node_name)
            except (OSError, ValueError, KeyError) as err:
                klog.error(f'"Failed to load kubeconfig" err="{err}"')

    def tls_bootstrap(self) -> None:
        tls_bootstrap(self.bootstrap, self.kubeconfig, self.cert_dir, self.node_name)

    # -- the loop -------------------------------------------------------------------------------
    def api_pods(self) -> list[dict]:
        assert self.client is not None
        return self.client.list("pods", field_selector=f"spec.nodeName={self.node_name}")["items"]

    def churn_sandboxes(self) -> None:
        """With mismatched cgroup drivers, sandboxes do not last (see cgroups.py)."""
        now = time.time_ns()
        for s in self.records.sandboxes():
            if s.state != cri.READY or s.uid in self.runtime.terminating:
                continue
            if (now - s.created_at) / 1e9 < cgroups.CHURN_SECONDS:
                continue
            klog.info(
                f'"Pod sandbox changed, it will be killed and re-created" pod="{s.namespace}/'
                f'{s.name}"',
                "kuberuntime_manager.go:1027",
            )
            self.runtime.kill_pod(s.uid, 0)

    def sync(self) -> None:
        """The pod side: static pods from disk, API pods from the latest list, no API call."""
        self.runtime.reap()
        if self.cgroup_problem:
            self.churn_sandboxes()
        desired = load_static_pods(self.static_path, self.node_name)
        api_items = self.api_items
        terminating: list[dict] = []
        for item in api_items or []:
            meta = item["metadata"]
            if (meta.get("annotations") or {}).get("kubernetes.io/config.mirror"):
                continue
            if meta.get("deletionTimestamp"):
                terminating.append(item)
                continue
            if item.get("status", {}).get("phase") in ("Succeeded", "Failed"):
                continue
            desired[meta["uid"]] = Pod(
                meta["uid"], meta["name"], meta["namespace"], item.get("spec") or {}, meta, False
            )
        # A pod replacing another of the same full name (an edited static pod manifest) waits
        # until the old one is gone: the pod workers serialise them (pod_workers.go).
        live = [s for s in self.records.sandboxes() if s.state == cri.READY]
        busy = {(s.namespace, s.name) for s in live if s.uid not in desired}
        busy |= {
            (s.namespace, s.name)
            for s in self.records.sandboxes()
            if s.uid in self.runtime.terminating
        }
        for uid, pod in desired.items():
            self.known[uid] = pod
            if (pod.namespace, pod.name) in busy:
                continue
            try:
                self.runtime.sync_pod(pod)
            except Exception as err:  # noqa: BLE001 - one pod's trouble must not stop the rest
                klog.error(
                    f'"Error syncing pod" pod="{pod.namespace}/{pod.name}" err="{err}"',
                    "pod_workers.go:1300",
                )
        live_uids = {s.uid for s in self.records.sandboxes() if s.state == cri.READY}
        for uid in live_uids - set(desired):
            if api_items is None and uid in self.known and not self.known[uid].static:
                continue
            pod = self.known.get(uid)
            grace = float((pod.spec if pod else {}).get("terminationGracePeriodSeconds", 30))
            term = next((t for t in terminating if t["metadata"]["uid"] == uid), None)
            if term is not None:
                grace = float(term["metadata"].get("deletionGracePeriodSeconds", grace))
            klog.info(
                f'"Killing unwanted pod" podUID="{uid}" gracePeriod={int(grace)}',
                "kubelet_pods.go:1130",
            )
            self.runtime.kill_pod(uid, grace)
        self.view = (dict(desired), list(terminating))
        self.runtime.garbage_collect(set(desired))
        self.last_loop = time.monotonic()

    def api_loop(self) -> None:
        while True:
            try:
                self.api_round()
            except Exception as err:  # noqa: BLE001 - retried on the next round
                klog.error(f'"API loop error" err="{err}"', "kubelet.go:2400")
            time.sleep(1.0)

    def api_round(self) -> None:
        """The API side: register, list this node's pods, finish deletions, report."""
        self.connect()
        if self.client is None or self.agent is None:
            return
        if not self.agent.registered:
            self.agent.register()
            if not self.agent.registered:
                return
        try:
            items: list[dict] | None = self.api_pods()
            self.api_items = items
        except (ApiError, OSError) as err:
            klog.error(f'"Failed to list pods" err="{err}"', "reflector.go:150")
            items = None
        desired, terminating = self.view
        live_uids = {s.uid for s in self.records.sandboxes() if s.state == cri.READY}
        for item in terminating:
            uid = item["metadata"]["uid"]
            if uid not in live_uids and uid not in self.runtime.terminating:
                meta = item["metadata"]
                with contextlib.suppress(ApiError, OSError):
                    self.client.delete("pods", meta["name"], meta["namespace"], grace_period=0)
        if items is not None:
            self.delete_orphaned_mirror_pods(desired, items)
        known = items if items is not None else (self.api_items or [])
        mirror_uids = {
            p["metadata"]["annotations"].get("kubernetes.io/config.mirror")
            for p in known
            if (p["metadata"].get("annotations") or {}).get("kubernetes.io/config.mirror")
        }
        self.report(desired, known, mirror_uids)

    def delete_orphaned_mirror_pods(self, desired: dict[str, Pod], api_items: list[dict]) -> None:
        """kubelet_pods.go HandlePodCleanups: a mirror pod whose static pod is gone (its
        manifest removed) is deleted (podManager.GetOrphanedMirrorPodNames)."""
        static = {(p.namespace, p.name) for p in desired.values() if p.static}
        for item in api_items:
            meta = item["metadata"]
            if not (meta.get("annotations") or {}).get("kubernetes.io/config.mirror"):
                continue
            if (meta.get("namespace"), meta["name"]) in static or meta.get("deletionTimestamp"):
                continue
            klog.info(f'"Deleting orphaned mirror pod" pod="{meta["namespace"]}/{meta["name"]}"')
            assert self.client is not None
            with contextlib.suppress(ApiError, OSError):
                self.client.delete("pods", meta["name"], meta["namespace"], grace_period=0)

    def report(self, desired: dict[str, Pod], api_items: list[dict], mirror_uids: set) -> None:
        assert self.client is not None and self.agent is not None and self.status is not None
        now = time.monotonic()
        if now - self.last_lease >= STATUS_PERIOD:
            try:
                self.agent.renew_lease()
                self.last_lease = now
            except (ApiError, OSError) as err:
                klog.error(f'"Failed to update lease" err="{err}"', "controller.go:145")
        if now - self.last_status >= STATUS_PERIOD:
            try:
                # Ready follows the runtime's health (kubelet.go runtimeState: "container
                # runtime is down" when containerd does not answer)
                self.agent.post_status(check_cri(self.endpoint) is None)
                self.last_status = now
            except (ApiError, OSError) as err:
                klog.error(
                    f'"Error updating node status, will retry" err="{err}"',
                    "kubelet_node_status.go:540",
                )
        by_name = {(i["metadata"]["namespace"], i["metadata"]["name"]): i for i in api_items}
        for pod in desired.values():
            status = pod_status(self.runtime, self.node_ip, pod)
            key = (pod.namespace, pod.name)
            try:
                if pod.static:
                    self.status.mirror(pod, by_name.get(key), status)
                else:
                    self.status.post_pod_status(pod, by_name.get(key), status)
            except (ApiError, OSError) as err:
                klog.error(
                    f'"Failed to update status for pod" pod="{pod.namespace}/{pod.name}" err="{err}"',  # noqa: E501 - upstream's text
                    "status_manager.go:853",
                )


def run(argv: list[str]) -> int:
    version = own_version()
    flags, _ = flagutil.parse(argv, bools={"version"})
    if "version" in flags and flags["version"] in ("true", ""):
        print(f"Kubernetes {version}")
        return 0
    config_path = Path(flags.get("config", "/var/lib/kubelet/config.yaml"))
    try:
        config = yaml.safe_load(config_path.read_text()) or {}
    except OSError as err:
        klog.error(
            f'"command failed" err="failed to load kubelet config file, path: {config_path}, '
            f"error: failed to load Kubelet config file {config_path}, error failed to read "
            f'kubelet config file \\"{config_path}\\", error: open {config_path}: '
            f'{(err.strerror or str(err)).lower()}"',
            "run.go:74",
        )
        return 1
    endpoint = (
        flags.get("container-runtime-endpoint")
        or config.get("containerRuntimeEndpoint")
        or "unix:///run/containerd/containerd.sock"
    )
    klog.info(f'"Kubelet version" kubeletVersion="{version}"', "server.go:484")
    problem = check_cri(endpoint)
    if problem is None and cgroups.cri_disabled():
        problem = (
            f"validate service connection: validate CRI v1 runtime API for endpoint "
            f'"{endpoint}": rpc error: code = Unimplemented desc = unknown service '
            "runtime.v1.RuntimeService"
        )
    if problem:
        klog.error(f'"command failed" err="failed to run Kubelet: {problem}"', "run.go:74")
        return 1
    kubelet = Kubelet(flags, config, version)
    kubelet.endpoint = endpoint
    klog.info(f'"Adding static pod path" path="{kubelet.static_path}"', "kubelet.go:402")
    serve_healthz(
        config.get("healthzBindAddress", "127.0.0.1"),
        int(config.get("healthzPort", 10248)),
        lambda: time.monotonic() - kubelet.last_loop < 60,
    )
    threading.Thread(target=kubelet.api_loop, daemon=True, name="api").start()
    while True:
        try:
            kubelet.sync()
        except Exception as err:  # noqa: BLE001 - the sync loop keeps going, as upstream's does
            klog.error(f'"Sync loop error" err="{err}"', "kubelet.go:2400")
        time.sleep(1.0)


def main() -> int:
    return run(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
