"""The pod side of the kubelet: sync desired pods to container records and processes.

Static pods come from --pod-manifest-path / staticPodPath; a pod's UID is the hash of its
manifest, node name and source (pkg/kubelet/config/common.go applyDefaults), so editing a
manifest makes a new pod: the old one is killed and the new one started. Dead containers
are restarted per restartPolicy with the crash-loop back-off (10 s doubling to 5 min,
pkg/kubelet/kubelet.go backOffPeriod/MaxContainerBackOff): the first restart is immediate.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .. import cri, klog
from . import launch
from .probes import Prober, ProbeState

BACKOFF_INITIAL = 10.0
BACKOFF_MAX = 300.0
LOG_ROOT = Path("/var/log/pods")
RESTART_LOG = re.compile(r"^(\d+)\.log(\..*)?")


def restart_count_from_logs(path: Path) -> int:
    """The restart count of a container the runtime has no record of: one more than the
    highest ``<n>.log`` in its log directory, 0 if there is none.

    pkg/kubelet/kuberuntime/kuberuntime_container.go calcRestartCountByLogDir: "When nodes
    are rebooted some container runtimes clear their state which causes the restartCount
    to be reset to 0. This causes the logfile to start at 0.log, which either overwrites
    or appends to the already existing log." (the lab's power-off clears /run, and with
    it kubesim's container records, exactly so).
    """
    if not path.is_dir():
        return 0
    count = 0
    for entry in path.iterdir():
        match = RESTART_LOG.match(entry.name)
        if match and not entry.is_dir():
            count = max(count, int(match.group(1)) + 1)
    return count


def rfc3339(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Pod:
    """A pod the kubelet should run."""

    uid: str
    name: str
    namespace: str
    spec: dict
    metadata: dict
    static: bool
    source_hash: str = ""

    @property
    def full_name(self) -> str:
        return f"{self.name}_{self.namespace}"


def load_static_pods(path: Path, node_name: str) -> dict[str, Pod]:
    pods: dict[str, Pod] = {}
    if not path.is_dir():
        return pods
    for manifest in sorted(path.iterdir()):
        if manifest.name.startswith(".") or not manifest.is_file():
            continue
        try:
            text = manifest.read_text()
            doc = yaml.safe_load(text)
        except (OSError, yaml.YAMLError) as err:
            klog.warning(
                f'"Could not process manifest file" path="{manifest}" err="{err}"', "file.go:187"
            )
            continue
        if not isinstance(doc, dict) or doc.get("kind") != "Pod":
            continue
        meta = doc.setdefault("metadata", {})
        hasher = hashlib.md5()  # noqa: S324 - upstream uses md5 for the config hash
        hasher.update(json.dumps(doc, sort_keys=True).encode())
        hasher.update(f"host:{node_name}".encode())
        hasher.update(f"file:{manifest}".encode())
        uid = hasher.hexdigest()
        name = f"{meta.get('name')}-{node_name}"
        namespace = meta.get("namespace") or "default"
        annotations = dict(meta.get("annotations") or {})
        annotations.update(
            {
                "kubernetes.io/config.hash": uid,
                "kubernetes.io/config.source": "file",
                "kubernetes.io/config.seen": dt.datetime.now(dt.UTC).isoformat(),
            }
        )
        meta = {
            **meta,
            "name": name,
            "namespace": namespace,
            "uid": uid,
            "annotations": annotations,
        }
        pods[uid] = Pod(uid, name, namespace, doc.get("spec") or {}, meta, True, uid)
    return pods


@dataclass
class Track:
    """Per-container bookkeeping: back-off and probes (keyed by pod uid + container name)."""

    backoff: float = 0.0
    backoff_until: float = 0.0
    last_exit: float = 0.0
    proc: subprocess.Popen | None = None
    started: float = 0.0
    readiness: ProbeState = field(default_factory=ProbeState)
    liveness: ProbeState = field(default_factory=ProbeState)
    startup: ProbeState = field(default_factory=ProbeState)
    container_id: str = ""


class PodRuntime(Prober):
    """Sandboxes, containers, restarts with back-off, kills and garbage collection; the
    probes come from Prober (probes.py)."""

    def __init__(self, records: cri.Records, node_ip: str) -> None:
        self.records = records
        self.node_ip = node_ip
        self.tracks: dict[tuple[str, str], Track] = {}
        self.terminating: set[str] = set()
        self.starting: set[str] = set()  # container IDs between their record and their start
        self.lock = threading.Lock()

    # -- sandboxes ---------------------------------------------------------------------------
    def sandbox_for(self, pod: Pod) -> cri.Sandbox:
        for s in self.records.sandboxes():
            if s.uid == pod.uid and s.state == cri.READY:
                return s
        attempt = sum(1 for s in self.records.sandboxes() if s.uid == pod.uid)
        labels = {
            "io.kubernetes.pod.name": pod.name,
            "io.kubernetes.pod.namespace": pod.namespace,
            "io.kubernetes.pod.uid": pod.uid,
            **(pod.metadata.get("labels") or {}),
        }
        sb = cri.Sandbox(
            cri.new_id(),
            pod.name,
            pod.namespace,
            pod.uid,
            attempt,
            labels,
            dict(pod.metadata.get("annotations") or {}),
            host_network=bool(pod.spec.get("hostNetwork")),
            ip=self.node_ip if pod.spec.get("hostNetwork") else _pod_ip(pod.uid),
        )
        with self.records.locked():
            self.records.save_sandbox(sb)
        return sb

    # -- containers --------------------------------------------------------------------------
    def latest(self, pod: Pod, name: str) -> cri.Container | None:
        # Collect exit codes first: a process of ours that just exited must be recorded
        # with its real code (0 for a completed Job pod), not as the "gone" 255 refresh uses.
        self.reap()
        mine = [
            c
            for c in self.records.containers()
            if c.labels.get("io.kubernetes.pod.uid") == pod.uid
            and c.labels.get("io.kubernetes.container.name") == name
        ]
        # a CREATED record not being started here was left by a kubelet that died mid-start
        while (
            mine
            and mine[-1].id not in self.starting
            and self.records.recover(mine[-1], grace_s=0) is None
        ):
            mine.pop()
        return self.records.refresh(mine[-1]) if mine else None

    def previous(self, pod: Pod, name: str, current: cri.Container) -> cri.Container | None:
        mine = [
            c
            for c in self.records.containers()
            if c.labels.get("io.kubernetes.pod.uid") == pod.uid
            and c.labels.get("io.kubernetes.container.name") == name
            and c.id != current.id
            and c.state == cri.EXITED
        ]
        return mine[-1] if mine else None

    def start_container(
        self, pod: Pod, sandbox: cri.Sandbox, spec: dict, attempt: int | None
    ) -> cri.Container:
        """attempt None: the runtime knows no earlier container of this name (a fresh pod,
        or a node whose runtime state went with a reboot); the count then comes from the
        log directory, as upstream does, so 0.log of a pod that ran before is not appended to."""
        argv, env = launch.program_for(spec)
        cid = cri.new_id()
        logs = LOG_ROOT / f"{pod.namespace}_{pod.name}_{pod.uid}" / spec["name"]
        if attempt is None:
            attempt = restart_count_from_logs(logs)
        log = logs / f"{attempt}.log"
        c = cri.Container(
            id=cid,
            pod_sandbox_id=sandbox.id,
            name=spec["name"],
            attempt=attempt,
            image=spec.get("image", ""),
            command=argv,
            labels={
                "io.kubernetes.pod.name": pod.name,
                "io.kubernetes.pod.namespace": pod.namespace,
                "io.kubernetes.pod.uid": pod.uid,
                "io.kubernetes.container.name": spec["name"],
            },
            annotations={
                "io.kubernetes.container.restartCount": str(attempt),
                "io.kubernetes.pod.terminationGracePeriod": str(
                    pod.spec.get("terminationGracePeriodSeconds", 30)
                ),
            },
            log_path=str(log),
        )
        # Recorded before its process starts, as containerd creates a container before its
        # task: a kubelet killed in between (kubeadm's `systemctl restart kubelet` racing
        # systemd's own restart of a crash-looping one) leaves a record the next kubelet
        # resolves (Records.recover), never a process nobody knows.
        self.starting.add(cid)
        try:
            with self.records.locked():
                self.records.save_container(c)
            try:
                proc = launch.start(argv, env, log, f"kubesim-{cid[:12]}")
            except OSError as err:
                c.state, c.reason, c.exit_code = cri.EXITED, "StartError", 128
                c.finished_at = time.time_ns()
                klog.error(
                    f'"Error starting container" pod="{pod.namespace}/{pod.name}" err="{err}"'
                )
                with self.records.locked():
                    self.records.save_container(c)
                return c
            time.sleep(0.05)
            c.pid = proc.pid
            c.pid_start = cri.proc_start_time(proc.pid) or ""
            c.state, c.started_at = cri.RUNNING, time.time_ns()
            with self.records.locked():
                self.records.save_container(c)
        finally:
            self.starting.discard(cid)
        track = self.tracks.setdefault((pod.uid, spec["name"]), Track())
        track.proc, track.started, track.container_id = proc, time.monotonic(), cid
        track.readiness, track.liveness, track.startup = ProbeState(), ProbeState(), ProbeState()
        klog.info(
            f'"Started container" pod="{pod.namespace}/{pod.name}" container="{spec["name"]}" '
            f"attempt={attempt} pid={proc.pid}",
            "kuberuntime_container.go:297",
        )
        return c

    def reap(self) -> None:
        """Collect exit codes of containers this kubelet started (the runtime's task exit)."""
        for track in list(self.tracks.values()):
            proc = track.proc
            if proc is None:
                continue
            code = proc.poll()
            if code is None:
                continue
            track.proc = None
            with self.records.locked():
                for c in self.records.containers():
                    if c.id == track.container_id and c.state == cri.RUNNING:
                        c.state, c.finished_at = cri.EXITED, time.time_ns()
                        c.exit_code = 128 - code if code < 0 else code
                        c.reason = "Completed" if code == 0 else "Error"
                        self.records.save_container(c)

    def sync_pod(self, pod: Pod) -> None:
        if pod.uid in self.terminating:
            return
        sandbox = self.sandbox_for(pod)
        restart = pod.spec.get("restartPolicy", "Always")
        for spec in pod.spec.get("containers") or []:
            key = (pod.uid, spec["name"])
            track = self.tracks.setdefault(key, Track())
            current = self.latest(pod, spec["name"])
            if current is not None and current.state == cri.RUNNING:
                if not track.container_id:
                    track.container_id = current.id  # adopted after a kubelet restart
                    track.started = time.monotonic()
                self.probe(pod, spec, current, track)
                continue
            if current is None:
                self.start_container(pod, sandbox, spec, None)
                continue
            if restart == "Never" or (restart == "OnFailure" and current.exit_code == 0):
                continue
            now = time.monotonic()
            if track.last_exit != current.finished_at:
                # a new death: the first restart is immediate, later ones wait 10 s, 20 s, ...
                # up to 5 min; a container that ran 10 min resets it (kuberuntime doBackOff).
                track.last_exit = current.finished_at
                ran = (current.finished_at - current.started_at) / 1e9
                if track.backoff == 0 or ran > 2 * BACKOFF_MAX:
                    track.backoff, track.backoff_until = BACKOFF_INITIAL, now
                else:
                    track.backoff_until = now + track.backoff
                    klog.info(
                        f'"Back-off {int(track.backoff)}s restarting failed container='
                        f'{spec["name"]} pod={pod.name}_{pod.namespace}({pod.uid})"',
                        "pod_workers.go:1298",
                    )
                    track.backoff = min(track.backoff * 2, BACKOFF_MAX)
            if now >= track.backoff_until:
                self.start_container(pod, sandbox, spec, current.attempt + 1)

    def kill_pod(self, uid: str, grace: float, done=None) -> None:
        """Stop every container of a pod (SIGTERM, grace, SIGKILL) in the background."""
        if uid in self.terminating:
            return
        self.terminating.add(uid)

        def run() -> None:
            running = [
                c
                for c in self.records.containers()
                if c.labels.get("io.kubernetes.pod.uid") == uid and c.state == cri.RUNNING
            ]
            threads = [
                threading.Thread(target=cri.stop_container, args=(self.records, c, grace))
                for c in running
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            self.reap()
            with self.records.locked():
                for s in self.records.sandboxes():
                    if s.uid == uid:
                        s.state = cri.NOTREADY
                        self.records.save_sandbox(s)
            for key in [k for k in self.tracks if k[0] == uid]:
                self.tracks.pop(key, None)
            self.terminating.discard(uid)
            klog.info(f'"Killed pod" podUID="{uid}"', "kubelet.go:2000")
            if done:
                done()

        threading.Thread(target=run, daemon=True).start()

    def garbage_collect(self, keep_uids: set[str]) -> None:
        """Forget exited containers/sandboxes of pods that are gone (keep the last 1 each)."""
        with self.records.locked():
            for s in self.records.sandboxes():
                if (
                    s.uid not in keep_uids
                    and s.state == cri.NOTREADY
                    and s.uid not in self.terminating
                ) and time.time_ns() - s.created_at > 60e9:
                    for c in self.records.containers():
                        if c.pod_sandbox_id == s.id and c.state != cri.RUNNING:
                            self.records.remove_container(c.id)
                    self.records.remove_sandbox(s.id)


def _pod_ip(uid: str) -> str:
    h = int(uid.replace("-", "")[:8], 16) if uid else 0
    return f"10.244.{(h >> 8) & 0xFF}.{(h & 0xFF) or 1}"
