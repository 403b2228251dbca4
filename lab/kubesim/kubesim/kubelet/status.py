"""Pod status as the kubelet reports it (status_manager.go, kubelet_pods.go
generateAPIPodStatus) and mirror pods for static pods (pod/mirror_client.go)."""

from __future__ import annotations

import json
import time

from .. import cri
from ..kubeclient import ApiError, Client
from .pods import Pod, PodRuntime, _pod_ip, rfc3339


def phase(restart: str, counts: dict[str, int]) -> str:
    """kubelet_pods.go getPhase: a container that exited and waits to be restarted counts as
    stopped, so a crash-looping pod with restartPolicy Always is Running."""
    if counts["waiting"]:
        return "Pending"
    if counts["running"] and not counts["unknown"]:
        return "Running"
    if counts["stopped"] and not counts["unknown"] and not counts["running"]:
        if restart == "Always":
            return "Running"
        if counts["stopped"] == counts["succeeded"]:
            return "Succeeded"
        return "Running" if restart == "OnFailure" else "Failed"
    return "Pending"


def pod_status(runtime: PodRuntime, node_ip: str, pod: Pod) -> dict:
    statuses, all_ready, started = [], True, None
    restart = pod.spec.get("restartPolicy", "Always")
    counts = dict.fromkeys(("running", "stopped", "succeeded", "waiting", "unknown"), 0)
    for spec in pod.spec.get("containers") or []:
        c = runtime.latest(pod, spec["name"])
        ready = runtime.container_ready(pod, spec, c)
        all_ready &= ready
        st: dict = {
            "name": spec["name"],
            "image": spec.get("image", ""),
            "ready": ready,
            "restartCount": c.attempt if c else 0,
            "started": bool(c and c.state == cri.RUNNING),
        }
        if c is None:
            counts["waiting"] += 1
            st["imageID"] = ""  # required by the API's schema, empty until pulled
            st["state"] = {"waiting": {"reason": "ContainerCreating"}}
        else:
            st["imageID"] = c.image_ref
            st["containerID"] = f"containerd://{c.id}"
            if c.state == cri.RUNNING:
                counts["running"] += 1
                st["state"] = {"running": {"startedAt": rfc3339(c.started_at)}}
                started = started or rfc3339(c.started_at)
                prev = runtime.previous(pod, spec["name"], c)
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
            elif restart == "Never" or (restart == "OnFailure" and c.exit_code == 0):
                counts["stopped"] += 1
                counts["succeeded"] += c.exit_code == 0
                st["state"] = {
                    "terminated": {
                        "exitCode": c.exit_code,
                        "reason": c.reason,
                        "startedAt": rfc3339(c.started_at),
                        "finishedAt": rfc3339(c.finished_at),
                        "containerID": f"containerd://{c.id}",
                    }
                }
            else:
                counts["stopped"] += 1
                counts["succeeded"] += c.exit_code == 0
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

    ip = node_ip if pod.spec.get("hostNetwork") else _pod_ip(pod.uid)
    return {
        "phase": phase(restart, counts),
        "conditions": [
            cond("PodReadyToStartContainers", "True"),
            cond("Initialized", "True"),
            cond("Ready", ready),
            cond("ContainersReady", ready),
            cond("PodScheduled", "True"),
        ],
        "hostIP": node_ip,
        "hostIPs": [{"ip": node_ip}],
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "startTime": started or rfc3339(time.time_ns()),
        "containerStatuses": statuses,
        "qosClass": "Burstable"
        if any((c.get("resources") or {}).get("requests") for c in pod.spec.get("containers") or [])
        else "BestEffort",
    }


class StatusManager:
    """Posts pod statuses that changed; creates and refreshes mirror pods."""

    def __init__(self, client: Client, node_name: str) -> None:
        self.client = client
        self.node_name = node_name
        self.posted: dict[str, str] = {}

    def changed(self, uid: str, status: dict) -> bool:
        """Whether `status` differs from the last one posted for the pod (startTime aside)."""
        text = json.dumps({k: v for k, v in status.items() if k != "startTime"}, sort_keys=True)
        if self.posted.get(uid) == text:
            return False
        self.posted[uid] = text
        return True

    def mirror(self, pod: Pod, existing: dict | None, status: dict) -> None:
        """Mirror pods (pkg/kubelet/pod/mirror_client.go): the API's view of a static pod."""
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
        if self.changed(pod.uid, status):
            existing["status"] = status
            try:
                self.client.update("pods", existing, pod.namespace, subresource="status")
            except ApiError:
                self.posted.pop(pod.uid, None)
                raise

    def post_pod_status(self, pod: Pod, existing: dict | None, status: dict) -> None:
        if existing is None or not self.changed(pod.uid, status):
            return
        existing["status"] = {**existing.get("status", {}), **status}
        try:
            self.client.update("pods", existing, pod.namespace, subresource="status")
        except ApiError:
            self.posted.pop(pod.uid, None)
            raise
