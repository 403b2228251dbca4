"""pods/eviction (pkg/registry/core/pod/storage/eviction.go, 1.28-1.31)."""

from __future__ import annotations

import copy
import datetime as dt
import time
from typing import TYPE_CHECKING

from .. import labelsel as selectors
from .resources import Resource, lookup
from .store import StatusError

if TYPE_CHECKING:
    from .api import Api

EVICTION_RETRY = "Cannot evict pod as it would violate the pod's disruption budget."


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _pdbs_for(api: Api, ns: str, pod: dict) -> list[dict]:
    """getPodDisruptionBudgets: a PDB with a nil or empty selector matches nothing."""
    labels = pod["metadata"].get("labels")
    return [
        p
        for p in api.store.list(api.pdb_res, ns)[0]
        if (p.get("spec", {}).get("selector") or {})
        and selectors.match_label_selector(p["spec"]["selector"], labels)
    ]


def evict(api: Api, ns: str, name: str, eviction: dict) -> tuple[int, dict]:
    """Evict a pod, honouring its PodDisruptionBudget.

    - a terminal, Pending or already deleting pod is deleted without looking at PDBs
      (canIgnorePDB);
    - a pod that is not Ready is deleted without using the budget when the PDB's
      unhealthyPodEvictionPolicy is AlwaysAllow, or (IfHealthyBudget, the default) when
      currentHealthy >= desiredHealthy > 0;
    - otherwise checkAndDecrement: 429 with Retry-After 10 while the PDB controller has
      not observed the PDB's generation, 429 without Retry-After when no disruption is
      allowed, else disruptionsAllowed - 1 and the pod into disruptedPods, then delete;
      PDB update conflicts are retried (EvictionsRetry: 20 x 500 ms), then 504.
    """
    pods = lookup("", "v1", "pods")
    pod = api.store.get(pods, ns, name)
    opts = copy.deepcopy(eviction.get("deleteOptions") or {})
    phase = pod.get("status", {}).get("phase")
    if phase in ("Succeeded", "Failed", "Pending") or pod["metadata"].get("deletionTimestamp"):
        return _evicted(api, pods, ns, name, opts)
    pdbs = _pdbs_for(api, ns, pod)
    if len(pdbs) > 1:
        raise StatusError(
            500,
            "",
            "This pod has more than one PodDisruptionBudget, which the eviction "
            "subresource does not support.",
        )
    if pdbs:
        pdb = pdbs[0]
        status = pdb.get("status", {})
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in pod.get("status", {}).get("conditions") or []
        )
        policy = pdb.get("spec", {}).get("unhealthyPodEvictionPolicy", "IfHealthyBudget")
        desired = status.get("desiredHealthy", 0)
        if not ready and (
            policy == "AlwaysAllow" or status.get("currentHealthy", 0) >= desired > 0
        ):
            return _evicted(api, pods, ns, name, opts)
        for attempt in range(20):
            if attempt:
                pdb = api.store.get(api.pdb_res, ns, pdb["metadata"]["name"])
                time.sleep(0.5)
            try:
                _check_and_decrement(api, ns, name, pdb)
                break
            except StatusError as err:
                if err.code != 409:
                    raise
        else:
            raise StatusError(
                504,
                "Timeout",
                f"Timeout: couldn't update PodDisruptionBudget "
                f'"{pdb["metadata"]["name"]}" due to conflicts',
                {"retryAfterSeconds": 10},
            )
    return _evicted(api, pods, ns, name, opts)


def _evicted(api: Api, pods: Resource, ns: str, name: str, opts: dict) -> tuple[int, dict]:
    api.delete(pods, ns, name, opts, {})
    return 201, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}


def _check_and_decrement(api: Api, ns: str, pod_name: str, pdb: dict) -> None:
    status = pdb.setdefault("status", {})
    pdb_name = pdb["metadata"]["name"]
    if status.get("observedGeneration", 0) < pdb["metadata"].get("generation", 1):
        raise StatusError(
            429,
            "TooManyRequests",
            EVICTION_RETRY,
            {
                "causes": [
                    {
                        "reason": "DisruptionBudget",
                        "message": f"The disruption budget {pdb_name} is still being "
                        "processed by the server.",
                    }
                ],
                "retryAfterSeconds": 10,
            },
        )
    allowed = status.get("disruptionsAllowed", 0)
    if allowed < 0:
        raise StatusError(
            403,
            "Forbidden",
            f'poddisruptionbudgets.policy "{pdb_name}" is forbidden: pdb disruptions '
            "allowed is negative",
        )
    if allowed == 0:
        needs, has = status.get("desiredHealthy", 0), status.get("currentHealthy", 0)
        raise StatusError(
            429,
            "TooManyRequests",
            EVICTION_RETRY,
            {
                "causes": [
                    {
                        "reason": "DisruptionBudget",
                        "message": f"The disruption budget {pdb_name} needs {needs} "
                        f"healthy pods and has {has} currently",
                    }
                ]
            },
        )
    status["disruptionsAllowed"] = allowed - 1
    status.setdefault("disruptedPods", {})[pod_name] = _now()
    api.store.update(api.pdb_res, ns, pdb, int(pdb["metadata"]["resourceVersion"]))
