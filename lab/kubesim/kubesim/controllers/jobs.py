"""The Job and TTL-after-finished controllers, as far as kubeadm's upgrade health check
needs them (pkg/controller/job/job_controller.go, pkg/controller/ttlafterfinished):
one pod per Job from its template (job-name / controller-uid labels, the Job as controlling
owner), Complete when it succeeded, Failed (BackoffLimitExceeded) when it failed with
backoffLimit 0, and the finished Job deleted ttlSecondsAfterFinished later with its pods
(the garbage collector follows the owner reference)."""

from __future__ import annotations

import contextlib
import json
import time

from ..kubeclient import ApiError, Client
from .common import now_str, parse_time


def _condition(kind: str, reason: str) -> dict:
    return {
        "type": kind,
        "status": "True",
        "reason": reason,
        "message": "",
        "lastProbeTime": now_str(),
        "lastTransitionTime": now_str(),
    }


def sync_jobs(c: Client) -> None:
    jobs = c.list("jobs")["items"]
    pods = c.list("pods")["items"]
    uids = {j["metadata"]["uid"] for j in jobs}
    for pod in pods:  # garbage collection of pods whose Job is gone
        owners = [o for o in pod["metadata"].get("ownerReferences") or [] if o.get("kind") == "Job"]
        if owners and not any(o.get("uid") in uids for o in owners):
            with contextlib.suppress(ApiError):
                c.delete("pods", pod["metadata"]["name"], pod["metadata"]["namespace"], 0)
    for job in jobs:
        meta, spec, status = job["metadata"], job.get("spec", {}), job.get("status") or {}
        ns, uid = meta["namespace"], meta["uid"]
        done = [x for x in status.get("conditions") or [] if x["type"] in ("Complete", "Failed")]
        if done:
            ttl = spec.get("ttlSecondsAfterFinished")
            finished = parse_time(status.get("completionTime") or done[0]["lastTransitionTime"])
            if ttl is not None and time.time() >= finished + int(ttl):
                with contextlib.suppress(ApiError):
                    c.delete("jobs", meta["name"], ns)
            continue
        mine = [
            p
            for p in pods
            if any(o.get("uid") == uid for o in p["metadata"].get("ownerReferences") or [])
        ]
        new = dict(status)
        if not mine and not status.get("startTime"):
            template = spec.get("template") or {}
            labels = {
                **(template.get("metadata", {}).get("labels") or {}),
                "controller-uid": uid,
                "job-name": meta["name"],
                "batch.kubernetes.io/controller-uid": uid,
                "batch.kubernetes.io/job-name": meta["name"],
            }
            pod = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "generateName": meta["name"] + "-",
                    "namespace": ns,
                    "labels": labels,
                    "ownerReferences": [
                        {
                            "apiVersion": "batch/v1",
                            "kind": "Job",
                            "name": meta["name"],
                            "uid": uid,
                            "controller": True,
                            "blockOwnerDeletion": True,
                        }
                    ],
                },
                "spec": json.loads(json.dumps(template.get("spec") or {})),
            }
            try:
                c.create("pods", pod, ns)
            except ApiError:
                continue
            new.update(startTime=now_str(), active=1)
        phases = [p.get("status", {}).get("phase") for p in mine]
        if "Succeeded" in phases:
            new.update(active=0, succeeded=1, completionTime=now_str())
            new["conditions"] = [_condition("Complete", "")]
        elif "Failed" in phases and int(spec.get("backoffLimit", 6)) == 0:
            new.update(active=0, failed=1)
            new["conditions"] = [_condition("Failed", "BackoffLimitExceeded")]
        if new != status:
            job["status"] = new
            with contextlib.suppress(ApiError):
                c.update("jobs", job, ns, subresource="status")
