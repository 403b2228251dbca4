"""kubelet stand-in: flags and config like upstream, then the sync loop.

Upstream behaviour kept where kubeadm or an operator can see it:
- it exits (and systemd restarts it) while /var/lib/kubelet/config.yaml is missing, the
  crash loop kubeadm's docs describe before `kubeadm init|join`;
- it exits if the CRI endpoint (containerd) does not answer;
- without kubelet.conf it runs static pods only; with bootstrap-kubelet.conf it does the TLS
  bootstrap (CSR signed by the controller-manager) and writes kubelet.conf pointing at
  /var/lib/kubelet/pki/kubelet-client-current.pem;
- healthz on 127.0.0.1:10248 (kubeadm's wait-control-plane polls it).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from .. import cri, klog, kubeconfig, pki
from .. import flags as flagutil
from ..kubeclient import ApiError, Client
from ..versions import Version, own_version
from . import cgroups
from .node import NodeAgent
from .pods import Pod, PodRuntime, _pod_ip, load_static_pods, rfc3339

STATUS_PERIOD = 10.0


def node_ip_guess() -> str:
    try:
        out = subprocess.run(
            ["ip", "-4", "-o", "addr", "show", "scope", "global"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout
        for line in out.splitlines():
            parts = line.split()
            if "inet" in parts:
                return parts[parts.index("inet") + 1].split("/")[0]
    except (OSError, subprocess.SubprocessError):
        pass
    return "127.0.0.1"


def check_cri(endpoint: str) -> str | None:
    path = endpoint.removeprefix("unix://")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            s.connect(path)
    except OSError as err:
        return (
            f'validate service connection: validate CRI v1 runtime API for endpoint "{endpoint}": '
            f'rpc error: code = Unavailable desc = connection error: desc = "transport: Error '
            f'while dialing: dial unix {path}: connect: {err.strerror.lower() if err.strerror else err}"'  # noqa: E501 - upstream's text
        )
    return None


def runtime_version() -> str:
    try:
        out = subprocess.run(
            ["containerd", "--version"], capture_output=True, text=True, timeout=5, check=False
        ).stdout.split()
        if len(out) >= 3:
            return f"containerd://{out[2].lstrip('v')}"
    except (OSError, subprocess.SubprocessError):
        pass
    return "containerd://1.6.20"


def serve_healthz(addr: str, port: int, healthy) -> None:
    class H(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            return

        def do_GET(self) -> None:  # noqa: N802
            ok = healthy()
            body = b"ok" if ok else b"[-]syncloop failed: reason withheld\nhealthz check failed\n"
            self.send_response(200 if ok else 500)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    class S(ThreadingHTTPServer):
        daemon_threads = True
        allow_reuse_address = True

    try:
        httpd = S((addr, port), H)
    except OSError as err:
        klog.fatal(f'"Failed to start healthz server" err="{err}"', "server.go:176")
    threading.Thread(target=httpd.serve_forever, daemon=True).start()


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
        self.posted: dict[str, str] = {}
        self.known: dict[str, Pod] = {}
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
            except (OSError, ValueError, KeyError) as err:
                klog.error(f'"Failed to load kubeconfig" err="{err}"')

    def tls_bootstrap(self) -> None:

        boot = Client.from_kubeconfig(self.bootstrap, timeout=10)
        key = pki.new_key()
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(
                x509.Name(
                    [
                        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
                        x509.NameAttribute(NameOID.COMMON_NAME, f"system:node:{self.node_name}"),
                    ]
                )
            )
            .sign(key, hashes.SHA256())
        )

        request = base64.b64encode(csr.public_bytes(serialization.Encoding.PEM)).decode()
        obj = boot.create(
            "certificatesigningrequests",
            {
                "apiVersion": "certificates.k8s.io/v1",
                "kind": "CertificateSigningRequest",
                "metadata": {"generateName": "csr-"},
                "spec": {
                    "request": request,
                    "signerName": "kubernetes.io/kube-apiserver-client-kubelet",
                    "usages": ["digital signature", "client auth"],
                },
            },
        )
        name = obj["metadata"]["name"]
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            cur = boot.get("certificatesigningrequests", name)
            cert = cur.get("status", {}).get("certificate")
            if cert:
                stamp = dt.datetime.now().strftime("%Y-%m-%d-%H-%M-%S")
                pem = self.cert_dir / f"kubelet-client-{stamp}.pem"
                pki.write_private(pem, base64.b64decode(cert) + pki.key_pem(key))
                current = self.cert_dir / "kubelet-client-current.pem"
                current.unlink(missing_ok=True)
                current.symlink_to(pem)
                cfg = kubeconfig.KubeConfig.load(self.bootstrap)
                kubeconfig.write(
                    self.kubeconfig,
                    kubeconfig.render(
                        cfg.cluster or "kubernetes",
                        cfg.server,
                        cfg.ca_pem,
                        "default-auth",
                        cert_file=str(current),
                    ),
                )
                klog.info(
                    '"Certificate rotation detected, shutting down client connections to '
                    'start using new credentials"',
                    "transport.go:147",
                )
                return
            time.sleep(1)
        raise TimeoutError("timed out waiting for the CSR to be signed")

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
        self.runtime.reap()
        if self.cgroup_problem:
            self.churn_sandboxes()
        desired = load_static_pods(self.static_path, self.node_name)
        self.connect()
        api_items: list[dict] = []
        if self.client is not None and self.agent is not None:
            if not self.agent.registered:
                self.agent.register()
            if self.agent.registered:
                try:
                    api_items = self.api_pods()
                except (ApiError, OSError) as err:
                    klog.error(f'"Failed to list pods" err="{err}"', "reflector.go:150")
                    api_items = None  # unknown: keep what runs
        mirror_uids = {
            p["metadata"]["annotations"].get("kubernetes.io/config.mirror")
            for p in api_items or []
            if (p["metadata"].get("annotations") or {}).get("kubernetes.io/config.mirror")
        }
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
        for item in terminating:
            uid = item["metadata"]["uid"]
            if uid not in live_uids and uid not in self.runtime.terminating:
                try:
                    assert self.client is not None
                    self.client.delete(
                        "pods",
                        item["metadata"]["name"],
                        item["metadata"]["namespace"],
                        grace_period=0,
                    )
                except (ApiError, OSError):
                    pass
        if self.client is not None and self.agent is not None and self.agent.registered:
            self.report(desired, api_items or [], mirror_uids)
        self.runtime.garbage_collect(set(desired))
        self.last_loop = time.monotonic()

    def pod_status(self, pod: Pod) -> dict:
        statuses, all_ready, any_running, started = [], True, False, None
        for spec in pod.spec.get("containers") or []:
            c = self.runtime.latest(pod, spec["name"])
            ready = self.runtime.container_ready(pod, spec, c)
            all_ready &= ready
            st: dict = {
                "name": spec["name"],
                "image": spec.get("image", ""),
                "ready": ready,
                "restartCount": c.attempt if c else 0,
                "started": bool(c and c.state == cri.RUNNING),
            }
            if c is None:
                st["imageID"] = ""  # required by the API's schema, empty until pulled
                st["state"] = {"waiting": {"reason": "ContainerCreating"}}
            else:
                st["imageID"] = c.image_ref
                st["containerID"] = f"containerd://{c.id}"
                if c.state == cri.RUNNING:
                    any_running = True
                    st["state"] = {"running": {"startedAt": rfc3339(c.started_at)}}
                    started = started or rfc3339(c.started_at)
                    prev = self.runtime.previous(pod, spec["name"], c)
                    if prev is not None:
                        st["lastState"] = {
                            "terminated": {
                                "exitCode": prev.exit_code,
                                "reason": prev.reason,
                                "startedAt": rfc3339(prev.started_at),
                                "finishedAt": rfc3339(prev.finished_at),
                                "containerID": f"containerd://{prev.id}",
                            }
                        }
                else:
                    st["state"] = {
                        "waiting": {
                            "reason": "CrashLoopBackOff",
                            "message": f"back-off restarting failed container {spec['name']} in pod "  # noqa: E501 - upstream's text
                            f"{pod.name}_{pod.namespace}({pod.uid})",
                        }
                    }
                    st["lastState"] = {
                        "terminated": {
                            "exitCode": c.exit_code,
                            "reason": c.reason,
                            "startedAt": rfc3339(c.started_at),
                            "finishedAt": rfc3339(c.finished_at),
                            "containerID": f"containerd://{c.id}",
                        }
                    }
            statuses.append(st)
        ready = "True" if all_ready and statuses else "False"

        def cond(kind: str, status: str) -> dict:
            return {"type": kind, "status": status, "lastProbeTime": None}

        ip = self.node_ip if pod.spec.get("hostNetwork") else _pod_ip(pod.uid)
        return {
            "phase": "Running" if any_running else "Pending",
            "conditions": [
                cond("PodReadyToStartContainers", "True"),
                cond("Initialized", "True"),
                cond("Ready", ready),
                cond("ContainersReady", ready),
                cond("PodScheduled", "True"),
            ],
            "hostIP": self.node_ip,
            "hostIPs": [{"ip": self.node_ip}],
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "startTime": started or rfc3339(time.time_ns()),
            "containerStatuses": statuses,
            "qosClass": "Burstable"
            if any(
                (c.get("resources") or {}).get("requests") for c in pod.spec.get("containers") or []
            )
            else "BestEffort",
        }

    def report(self, desired: dict[str, Pod], api_items: list[dict], mirror_uids: set) -> None:
        assert self.client is not None and self.agent is not None
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
            status = self.pod_status(pod)
            key = (pod.namespace, pod.name)
            try:
                if pod.static:
                    self.mirror(pod, by_name.get(key), status)
                else:
                    self.post_pod_status(pod, by_name.get(key), status)
            except (ApiError, OSError) as err:
                klog.error(
                    f'"Failed to update status for pod" pod="{pod.namespace}/{pod.name}" err="{err}"',  # noqa: E501 - upstream's text
                    "status_manager.go:853",
                )

    def _changed(self, uid: str, status: dict) -> bool:

        text = json.dumps({k: v for k, v in status.items() if k != "startTime"}, sort_keys=True)
        if self.posted.get(uid) == text:
            return False
        self.posted[uid] = text
        return True

    def mirror(self, pod: Pod, existing: dict | None, status: dict) -> None:
        """Mirror pods (pkg/kubelet/pod/mirror_client.go): the API's view of a static pod."""
        assert self.client is not None
        if (
            existing is not None
            and (existing["metadata"].get("annotations") or {}).get("kubernetes.io/config.mirror")
            != pod.uid
        ):
            self.client.delete("pods", pod.name, pod.namespace, grace_period=0)
            existing = None
        if existing is None:
            node = self.client.get("nodes", self.node_name)
            meta = {k: v for k, v in pod.metadata.items() if k not in ("uid", "resourceVersion")}
            meta["annotations"] = {
                **(meta.get("annotations") or {}),
                "kubernetes.io/config.mirror": pod.uid,
            }
            meta["ownerReferences"] = [
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "name": self.node_name,
                    "uid": node["metadata"]["uid"],
                    "controller": True,
                }
            ]
            spec = dict(pod.spec, nodeName=self.node_name)
            existing = self.client.create(
                "pods",
                {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec},
                pod.namespace,
            )
            self.posted.pop(pod.uid, None)
        if self._changed(pod.uid, status):
            existing["status"] = status
            try:
                self.client.update("pods", existing, pod.namespace, subresource="status")
            except ApiError:
                self.posted.pop(pod.uid, None)
                raise

    def post_pod_status(self, pod: Pod, existing: dict | None, status: dict) -> None:
        assert self.client is not None
        if existing is None or not self._changed(pod.uid, status):
            return
        existing["status"] = {**existing.get("status", {}), **status}
        try:
            self.client.update("pods", existing, pod.namespace, subresource="status")
        except ApiError:
            self.posted.pop(pod.uid, None)
            raise


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
