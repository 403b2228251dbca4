"""kube-controller-manager stand-in: the controllers whose effects the lab can observe.

While it holds Lease kube-system/kube-controller-manager it runs, each on its own period:
- nodelifecycle (pkg/controller/nodelifecycle): a node whose Lease and status stopped
  moving for --node-monitor-grace-period (40s) gets Ready=Unknown and the unreachable taints;
- replicaset (pkg/controller/replicaset): keeps .spec.replicas pods per ReplicaSet;
- disruption (pkg/controller/disruption): PodDisruptionBudget status, which eviction reads;
- bootstrapsigner / tokencleaner, csrapproving / csrsigning, root-ca-cert-publisher
  (certificates.py);
- job, ttlafterfinished (jobs.py): what kubeadm's upgrade-health-check Job needs;
- garbagecollector (pods only): deletes pods whose owning ReplicaSet or Job is gone.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from pathlib import Path

from .. import flags as flagutil
from .. import klog, labelsel, pki
from ..kubeclient import ApiError, Client
from ..versions import Version
from .certificates import CertificateControllers
from .common import now_str, parse_time, run_component
from .jobs import sync_jobs

UNREACHABLE = "node.kubernetes.io/unreachable"


def pod_ready(pod: dict) -> bool:
    if pod["metadata"].get("deletionTimestamp"):
        return False
    for cond in pod.get("status", {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return cond.get("status") == "True"
    return False


class Controllers(CertificateControllers):
    """Node lifecycle, ReplicaSets, PDB status; the certificate and bootstrap-token
    controllers come from CertificateControllers (certificates.py)."""

    def __init__(self, client: Client, flags: dict) -> None:
        self.c = client
        self.flags = flags
        self.grace = flagutil.duration(flags.get("node-monitor-grace-period", "40s"))
        self.node_seen: dict[str, tuple[str, float]] = {}
        self.signing = None
        cert, key = flags.get("cluster-signing-cert-file"), flags.get("cluster-signing-key-file")
        if cert and key:
            try:
                self.signing = (pki.load_cert(_p(cert)), pki.load_key(_p(key)))
            except OSError as err:
                klog.warning(f"cannot load signing CA: {err}")
        root_ca = flags.get("root-ca-file")
        self.root_ca = _p(root_ca).read_text() if root_ca else None

    # -- nodelifecycle -------------------------------------------------------------------
    def nodelifecycle(self) -> None:
        nodes = self.c.list("nodes")["items"]
        leases = {
            lease["metadata"]["name"]: lease
            for lease in self.c.list("leases", "kube-node-lease")["items"]
        }
        now = time.monotonic()
        for node in nodes:
            name = node["metadata"]["name"]
            lease = leases.get(name, {})
            mark = (lease.get("spec", {}).get("renewTime") or "") + json.dumps(
                [c.get("lastHeartbeatTime") for c in node.get("status", {}).get("conditions") or []]
            )
            seen = self.node_seen.get(name)
            if seen is None or seen[0] != mark:
                self.node_seen[name] = (mark, now)
                continue
            if now - seen[1] < self.grace:
                continue
            conds = node.get("status", {}).get("conditions") or []
            changed = False
            for cond in conds:
                if cond.get("status") != "Unknown":
                    cond.update(
                        status="Unknown",
                        reason="NodeStatusUnknown",
                        message="Kubelet stopped posting node status.",
                        lastTransitionTime=now_str(),
                    )
                    changed = True
            if changed:
                klog.info(
                    f'"Node became not ready" node="{name}" status="Unknown"',
                    "node_lifecycle_controller.go:1006",
                )
                try:
                    self.c.update("nodes", node, subresource="status")
                except ApiError:
                    continue
            taints = node.get("spec", {}).get("taints") or []
            if not any(t.get("key") == UNREACHABLE for t in taints):
                taints += [
                    {"key": UNREACHABLE, "effect": "NoSchedule", "timeAdded": now_str()},
                    {"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": now_str()},
                ]
                with contextlib.suppress(ApiError):
                    self.c.patch("nodes", name, {"spec": {"taints": taints}})
        # a node that posts again loses the taints (the kubelet sets Ready itself)
        for node in nodes:
            ready = any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in node.get("status", {}).get("conditions") or []
            )
            taints = node.get("spec", {}).get("taints") or []
            if ready and any(t.get("key") == UNREACHABLE for t in taints):
                kept = [t for t in taints if t.get("key") != UNREACHABLE]
                with contextlib.suppress(ApiError):
                    self.c.patch(
                        "nodes", node["metadata"]["name"], {"spec": {"taints": kept or None}}
                    )

    # -- job, ttlafterfinished (jobs.py) ------------------------------------------------------
    def jobs(self) -> None:
        sync_jobs(self.c)

    # -- replicaset ------------------------------------------------------------------------
    def replicaset(self) -> None:
        pods = self.c.list("pods")["items"]
        for rs in self.c.list("replicasets")["items"]:
            meta = rs["metadata"]
            ns, uid = meta["namespace"], meta["uid"]
            owned = [
                p
                for p in pods
                if p["metadata"]["namespace"] == ns
                and any(o.get("uid") == uid for o in p["metadata"].get("ownerReferences") or [])
            ]
            active = [
                p
                for p in owned
                if not p["metadata"].get("deletionTimestamp")
                and p.get("status", {}).get("phase") not in ("Succeeded", "Failed")
            ]
            want = int(rs.get("spec", {}).get("replicas", 1))
            template = rs.get("spec", {}).get("template", {})
            for _ in range(want - len(active)):
                pod = {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {
                        "generateName": meta["name"] + "-",
                        "namespace": ns,
                        "labels": dict(template.get("metadata", {}).get("labels") or {}),
                        "ownerReferences": [
                            {
                                "apiVersion": "apps/v1",
                                "kind": "ReplicaSet",
                                "name": meta["name"],
                                "uid": uid,
                                "controller": True,
                                "blockOwnerDeletion": True,
                            }
                        ],
                    },
                    "spec": json.loads(json.dumps(template.get("spec", {}))),
                }
                try:
                    self.c.create("pods", pod, ns)
                except ApiError as err:
                    klog.warning(f"replicaset {ns}/{meta['name']}: {err}")
            for pod in active[want:] if len(active) > want else []:
                with contextlib.suppress(ApiError):
                    self.c.delete("pods", pod["metadata"]["name"], ns)
            status = {
                "replicas": len(active),
                "readyReplicas": sum(pod_ready(p) for p in active),
                "availableReplicas": sum(pod_ready(p) for p in active),
                "fullyLabeledReplicas": len(active),
                "observedGeneration": meta.get("generation", 1),
            }
            if any(rs.get("status", {}).get(k) != v for k, v in status.items()):
                rs["status"] = status
                with contextlib.suppress(ApiError):
                    self.c.update("replicasets", rs, ns, subresource="status")
        self.collect_secrets()
        # garbage collector, pods only: owner gone -> dependent deleted
        rs_uids = {rs["metadata"]["uid"] for rs in self.c.list("replicasets")["items"]}
        for pod in pods:
            owners = [
                o
                for o in pod["metadata"].get("ownerReferences") or []
                if o.get("kind") == "ReplicaSet"
            ]
            if (
                owners
                and not any(o.get("uid") in rs_uids for o in owners)
                and not pod["metadata"].get("deletionTimestamp")
            ):
                with contextlib.suppress(ApiError):
                    self.c.delete("pods", pod["metadata"]["name"], pod["metadata"]["namespace"])

    def collect_secrets(self) -> None:
        """Garbage collector for Secrets owned by a Secret (kubeadm-certs by its 2 h token)."""
        secrets = self.c.list("secrets", "kube-system")["items"]
        uids = {s["metadata"]["uid"] for s in secrets}
        for s in secrets:
            owners = [
                o for o in s["metadata"].get("ownerReferences") or [] if o.get("kind") == "Secret"
            ]
            if owners and not any(o.get("uid") in uids for o in owners):
                klog.info(
                    f'"Deleting object" object="kube-system/{s["metadata"]["name"]}" '
                    'objectUID reason="owner gone"',
                    "garbagecollector.go:549",
                )
                with contextlib.suppress(ApiError):
                    self.c.delete("secrets", s["metadata"]["name"], "kube-system")

    # -- disruption --------------------------------------------------------------------------
    def disruption(self) -> None:
        pods = self.c.list("pods")["items"]
        rs_by_uid = {rs["metadata"]["uid"]: rs for rs in self.c.list("replicasets")["items"]}
        for pdb in self.c.list("poddisruptionbudgets")["items"]:
            meta, spec = pdb["metadata"], pdb.get("spec", {})
            ns = meta["namespace"]
            matched = [
                p
                for p in pods
                if p["metadata"]["namespace"] == ns
                and labelsel.match_label_selector(spec.get("selector"), p["metadata"].get("labels"))
            ]
            old = pdb.get("status", {})
            disrupted = {
                k: v
                for k, v in (old.get("disruptedPods") or {}).items()
                if time.time() - parse_time(v) < 120
                and any(
                    p["metadata"]["name"] == k and not p["metadata"].get("deletionTimestamp")
                    for p in matched
                )
            }
            healthy = sum(
                1 for p in matched if pod_ready(p) and p["metadata"]["name"] not in disrupted
            )
            expected = len(matched)
            if "maxUnavailable" in spec:
                owners = {
                    o.get("uid")
                    for p in matched
                    for o in p["metadata"].get("ownerReferences") or []
                    if o.get("controller")
                }
                scale = sum(
                    int(rs_by_uid[u].get("spec", {}).get("replicas", 1))
                    for u in owners
                    if u in rs_by_uid
                )
                expected = scale or expected
                desired = max(0, expected - _int_or_percent(spec["maxUnavailable"], expected, True))
            else:
                desired = _int_or_percent(spec.get("minAvailable", 1), expected, True)
            allowed = max(0, healthy - desired)
            status = {
                "observedGeneration": meta.get("generation", 1),
                "disruptionsAllowed": allowed,
                "currentHealthy": healthy,
                "desiredHealthy": desired,
                "expectedPods": expected,
            }
            if disrupted:
                status["disruptedPods"] = disrupted
            status["conditions"] = [
                {
                    "type": "DisruptionAllowed",
                    "status": "True" if allowed > 0 else "False",
                    "reason": "SufficientPods" if allowed > 0 else "InsufficientPods",
                    "message": "",
                    "observedGeneration": meta.get("generation", 1),
                    "lastTransitionTime": next(
                        (
                            c.get("lastTransitionTime")
                            for c in old.get("conditions") or []
                            if c.get("status") == ("True" if allowed > 0 else "False")
                        ),
                        now_str(),
                    ),
                }
            ]
            if any(old.get(k) != v for k, v in status.items()):
                pdb["status"] = status
                with contextlib.suppress(ApiError):
                    self.c.update("poddisruptionbudgets", pdb, ns, subresource="status")


def _p(path: str):

    return Path(path)


def _int_or_percent(value: object, total: int, round_up: bool) -> int:
    if isinstance(value, str) and value.endswith("%"):
        frac = int(value[:-1]) * total / 100
        return int(-(-frac // 1)) if round_up else int(frac)
    return int(value)  # type: ignore[arg-type]


def work(client: Client, flags: dict, leading: threading.Event) -> None:
    ctl = Controllers(client, flags)
    periods = {
        ctl.nodelifecycle: 5.0,
        ctl.replicaset: 1.0,
        ctl.disruption: 1.0,
        ctl.bootstrap: 1.0,
        ctl.csr: 1.0,
        ctl.root_ca_publisher: 30.0,
        ctl.jobs: 1.0,
    }
    due = dict.fromkeys(periods, 0.0)
    klog.info(
        '"Started controllers" controllers=["nodelifecycle","replicaset","disruption",'
        '"bootstrapsigner","tokencleaner","csrapproving","csrsigning",'
        '"root-ca-cert-publisher","job","ttl-after-finished","garbagecollector"]',
        "controllermanager.go:760",
    )
    while not leading.is_set():
        now = time.monotonic()
        for fn, period in periods.items():
            if due[fn] <= now:
                try:
                    fn()
                except Exception as err:  # noqa: BLE001 - a controller error is retried next period
                    klog.warning(f"{fn.__name__}: {err}", "controller_utils.go:1")
                due[fn] = now + period
        leading.wait(0.5)


def run(flags: dict[str, str], version: Version) -> int:
    klog.info(f'"Starting" version="{version}"', "controllermanager.go:190")
    return run_component("kube-controller-manager", flags, 10257, False, work)
