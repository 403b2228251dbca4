"""What `kubeadm upgrade` waits for (cmd/kubeadm/app/util/apiclient/wait.go KubeWaiter).

Every poll runs each 500 ms (constants.KubernetesAPICallRetryInterval) until the
upgrade's timeout (UpgradeManifestTimeout 5m; v1beta4 UpgradeConfiguration
timeouts.upgradeManifests from 1.31):

- WaitForStaticPodSingleHash / WaitForStaticPodControlPlaneHashes: the mirror pod's
  `kubernetes.io/config.hash`; an API error is retried, and at the timeout the last error
  fails the upgrade (a hash is never assumed);
- WaitForStaticPodHashChange: until the hash differs from the one read before;
- WaitForPodsWithLabel: every pod labelled `component=<name>` in kube-system, on every
  node, in phase Running. Readiness is not looked at, and the kubelet reports a pod whose
  only container crash-loops under restartPolicy Always as Running (kubelet_pods.go
  getPhase), so a crash-looping component passes this wait once its mirror pod exists.
"""

from __future__ import annotations

import time

from ..kubeclient import ApiError, Client
from .common import out
from .errors import KubeadmError

INTERVAL = 0.5


def go_minutes(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


class Waiter:
    def __init__(self, client: Client, timeout: float = 300.0) -> None:
        self.client, self.timeout = client, timeout

    def _hash(self, node: str, component: str) -> str:
        name = f"{component}-{node}"
        try:
            pod = self.client.get("pods", name, "kube-system", timeout=5)
        except (ApiError, OSError) as err:
            self.client.close()
            raise KubeadmError(
                f"failed to obtain static Pod hash for component {component} on Node {node}: {err}"
            ) from err
        return (pod["metadata"].get("annotations") or {}).get("kubernetes.io/config.hash", "")

    def single_hash(self, node: str, component: str) -> str:
        deadline, last = time.monotonic() + self.timeout, None
        while True:
            try:
                return self._hash(node, component)
            except KubeadmError as err:
                last = err
            if time.monotonic() > deadline:
                raise last
            time.sleep(INTERVAL)

    def control_plane_hashes(self, node: str, components: list[str]) -> dict[str, str]:
        return {c: self.single_hash(node, c) for c in components}

    def hash_change(self, node: str, component: str, previous: str) -> None:
        deadline, last = time.monotonic() + self.timeout, None
        while time.monotonic() <= deadline:
            try:
                current = self._hash(node, component)
                last = None
                if current != previous:
                    return
            except KubeadmError as err:
                last = err
            time.sleep(INTERVAL)
        if last is not None:
            raise last
        raise KubeadmError(
            f"static Pod hash for component {component} on Node {node} did not change after "
            f"{go_minutes(self.timeout)}: timed out waiting for the condition"
        )

    def pods_with_label(self, label: str) -> None:
        deadline, known = time.monotonic() + self.timeout, -1
        while time.monotonic() <= deadline:
            try:
                pods = self.client.list("pods", "kube-system", label_selector=label, timeout=5)
                items = pods["items"]
                if known != len(items):
                    out(f"[apiclient] Found {len(items)} Pods for label selector {label}")
                    known = len(items)
                if items and all(p.get("status", {}).get("phase") == "Running" for p in items):
                    return
            except (ApiError, OSError) as err:
                self.client.close()
                out(f'[apiclient] Error getting Pods with label selector "{label}" [{err}]')
            time.sleep(INTERVAL)
        raise KubeadmError("timed out waiting for the condition")
