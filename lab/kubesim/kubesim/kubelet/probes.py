"""The kubelet's probes (pkg/kubelet/prober): startup, liveness and readiness, HTTP(S) GET
or TCP, with initialDelay/period/timeout and success/failure thresholds; a failed startup or
liveness probe restarts the container (kuberuntime_manager). A mixin of pods.PodRuntime: it
uses the runtime's records, tracks and node IP.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .. import cri, klog

if TYPE_CHECKING:  # pods.py imports this module
    from .pods import Pod, Track


@dataclass
class ProbeState:
    failures: int = 0
    successes: int = 0
    ok: bool | None = None
    last: float = 0.0


class Prober:
    # -- probes (pkg/kubelet/prober) ---------------------------------------------------------
    def probe(self, pod: Pod, spec: dict, c: cri.Container, track: Track) -> None:
        now = time.monotonic()
        startup_ok = True
        if spec.get("startupProbe"):
            startup_ok = self._run_probe(pod, spec["startupProbe"], track.startup, now, track)
            if track.startup.ok is not True:
                if track.startup.ok is False:
                    self._restart_unhealthy(pod, spec, c, "Startup")
                return
        if spec.get("livenessProbe") and startup_ok:
            self._run_probe(pod, spec["livenessProbe"], track.liveness, now, track)
            if track.liveness.ok is False:
                self._restart_unhealthy(pod, spec, c, "Liveness")
                return
        if spec.get("readinessProbe"):
            self._run_probe(pod, spec["readinessProbe"], track.readiness, now, track)

    def _restart_unhealthy(self, pod: Pod, spec: dict, c: cri.Container, kind: str) -> None:
        klog.info(
            f'"Container failed {kind.lower()} probe, will be restarted" pod="{pod.namespace}/'
            f'{pod.name}" containerName="{spec["name"]}"',
            "kuberuntime_manager.go:1027",
        )
        grace = float(pod.spec.get("terminationGracePeriodSeconds", 30))
        threading.Thread(
            target=cri.stop_container, args=(self.records, c, grace), daemon=True
        ).start()
        track = self.tracks.get((pod.uid, spec["name"]))
        if track:
            track.liveness = ProbeState()
            track.startup = ProbeState()

    def _run_probe(
        self, pod: Pod, probe: dict, state: ProbeState, now: float, track: Track
    ) -> bool:
        initial = float(probe.get("initialDelaySeconds", 0))
        period = float(probe.get("periodSeconds", 10))
        if now - track.started < initial or now - state.last < period:
            return state.ok is not False
        state.last = now
        ok = self._probe_once(pod, probe)
        if ok:
            state.successes += 1
            state.failures = 0
            if state.successes >= int(probe.get("successThreshold", 1)):
                state.ok = True
        else:
            state.failures += 1
            state.successes = 0
            if state.failures >= int(probe.get("failureThreshold", 3)):
                state.ok = False
        return state.ok is not False

    def _probe_once(self, pod: Pod, probe: dict) -> bool:
        timeout = float(probe.get("timeoutSeconds", 1))
        http = probe.get("httpGet")
        if http:
            scheme = http.get("scheme", "HTTP").lower()
            host = http.get("host") or (
                self.node_ip if pod.spec.get("hostNetwork") else "127.0.0.1"
            )
            port = http.get("port")
            url = f"{scheme}://{host}:{port}{http.get('path', '/')}"
            ctx = ssl._create_unverified_context()  # noqa: S323 - kubelet skips verification too
            try:
                with urllib.request.urlopen(url, timeout=timeout, context=ctx) as resp:
                    return 200 <= resp.status < 400
            except Exception:  # noqa: BLE001 - any error is a failed probe
                return False
        tcp = probe.get("tcpSocket")
        if tcp:
            try:
                socket.create_connection(
                    (tcp.get("host") or self.node_ip, int(tcp["port"])), timeout=timeout
                ).close()
                return True
            except OSError:
                return False
        return True

    def container_ready(self, pod: Pod, spec: dict, c: cri.Container | None) -> bool:
        if c is None or c.state != cri.RUNNING:
            return False
        track = self.tracks.get((pod.uid, spec["name"]))
        if spec.get("startupProbe") and (track is None or track.startup.ok is not True):
            return False
        if spec.get("readinessProbe"):
            return track is not None and track.readiness.ok is True
        return True
