"""Fidelity checks of kubesim against upstream behaviour, written once for any set of nodes.

A `Runner` runs a command on a named node and returns the CompletedProcess; the host
namespace harness (hostcluster.py) and the lab machines (`python -m lab exec`) both
provide one. Tests call these helpers and assert on what they return.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

Runner = Callable[[str, list[str], float], subprocess.CompletedProcess]

PKI_ETCDCTL = [
    "--cacert",
    "/etc/kubernetes/pki/etcd/ca.crt",
    "--cert",
    "/etc/kubernetes/pki/etcd/healthcheck-client.crt",
    "--key",
    "/etc/kubernetes/pki/etcd/healthcheck-client.key",
]


def ts(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def must(res: subprocess.CompletedProcess) -> str:
    if res.returncode != 0:
        raise AssertionError(
            f"command failed ({res.returncode}): {res.args}\n{res.stdout}\n{res.stderr}"
        )
    return res.stdout


def kubectl_json(run: Runner, node: str, *args: str) -> dict:
    return json.loads(must(run(node, ["kubectl", *args, "-o", "json"], 60)))


def etcd_members(run: Runner, node: str, etcdctl: str) -> list[dict]:
    out = must(
        run(
            node,
            [
                etcdctl,
                "--endpoints",
                "https://127.0.0.1:2379",
                *PKI_ETCDCTL,
                "member",
                "list",
                "-w",
                "json",
            ],
            60,
        )
    )
    return json.loads(out).get("members", [])


def readyz(run: Runner, node: str, ip: str) -> tuple[int, float]:
    """HTTP code and seconds of GET https://ip:6443/readyz (curl, no client cert needed)."""
    res = run(
        node,
        [
            "curl",
            "-sk",
            "-o",
            "/dev/null",
            "-m",
            "5",
            "-w",
            "%{http_code} %{time_total}",
            f"https://{ip}:6443/readyz",
        ],
        30,
    )
    code, secs = (res.stdout.split() + ["0", "0"])[:2]
    return int(code), float(secs)


def port_accepts(run: Runner, node: str, ip: str, port: int = 6443) -> bool:
    res = run(
        node, ["python3", "-c", f"import socket; socket.create_connection(('{ip}', {port}), 2)"], 30
    )
    return res.returncode == 0


def lease(run: Runner, node: str, name: str, namespace: str = "kube-system") -> dict:
    return kubectl_json(run, node, "get", "lease", name, "-n", namespace)["spec"]


def container(run: Runner, node: str, name: str) -> dict:
    ids = must(run(node, ["crictl", "ps", "--name", name, "-q"], 30)).split()
    if not ids:
        raise AssertionError(f"no running container {name} on {node}")
    return json.loads(must(run(node, ["crictl", "inspect", ids[0]], 30)))


@dataclass
class Failover:
    old_holder: str
    new_holder: str
    gap_seconds: float  # new holder's acquireTime - last renewTime of the old holder (Lease)
    wall_seconds: float  # from the signal until the test saw the new holder


def leader_failover(
    run: Runner, nodes: list[str], component: str, signal: str, timeout: float = 60
) -> Failover:
    """Send `signal` to the component's leader process and time the Lease hand-over."""
    spec = lease(run, nodes[0], component)
    holder_node = spec["holderIdentity"].split("_")[0]
    observer = next(n for n in nodes if n != holder_node)
    pid = container(run, holder_node, component)["info"]["pid"]
    start = time.time()
    must(run(holder_node, ["kill", f"-{signal}", str(pid)], 30))
    last = lease(run, observer, component)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        cur = lease(run, observer, component)
        if cur.get("holderIdentity") and cur["holderIdentity"] != spec["holderIdentity"]:
            return Failover(
                spec["holderIdentity"],
                cur["holderIdentity"],
                ts(cur["acquireTime"]) - ts(last["renewTime"]),
                time.time() - start,
            )
        last = cur
        time.sleep(0.2)
    raise AssertionError(
        f"no new {component} leader within {timeout}s (holder {spec['holderIdentity']})"
    )


def duration(text: str) -> float:
    """A Go duration of the forms kubeadm's flags use (`3s`, `1m0s`, `500ms`) in seconds."""
    total, number = 0.0, ""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isdigit() or ch == ".":
            number += ch
            i += 1
            continue
        unit = "ms" if text[i : i + 2] == "ms" else ch
        total += float(number) * units[unit]
        number, i = "", i + len(unit)
    return total + (float(number) if number else 0.0)


def klog_time(run: Runner, node: str, log: str, needle: str, skip: int = 0) -> float:
    """Epoch seconds of the first klog line containing `needle` after the first `skip`
    such lines (klog writes the node's local time, `E1128 08:19:42.934080`, without year
    or zone: both come from the node)."""
    line = next(iter([x for x in log.splitlines() if needle in x][skip:]), None)
    if line is None:
        raise AssertionError(f"no log line with {needle!r} in:\n{log[-2000:]}")
    stamp = line[1:21]
    year, zone = must(run(node, ["date", "+%Y %z"], 30)).split()
    when = dt.datetime.strptime(f"{year}{stamp} {zone}", "%Y%m%d %H:%M:%S.%f %z")
    return when.timestamp()


def wait(predicate: Callable[[], object], timeout: float, interval: float = 0.5, what: str = ""):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except (AssertionError, ValueError, KeyError) as err:
            last = err
            last_ok = False
        else:
            last_ok = bool(last)
        if last_ok:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}: last {last!r}")


def nodes_ready(run: Runner, node: str) -> dict[str, tuple[bool, str]]:
    items = kubectl_json(run, node, "get", "nodes")["items"]
    return {
        n["metadata"]["name"]: (
            any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in n["status"].get("conditions", [])
            ),
            n["status"]["nodeInfo"]["kubeletVersion"],
        )
        for n in items
    }


PDB_APP = """apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: web, namespace: default}
spec:
  replicas: REPLICAS
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      tolerations:
      - {key: node-role.kubernetes.io/control-plane, operator: Exists, effect: NoSchedule}
      containers: [{name: web, image: registry.k8s.io/pause:3.9}]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web, namespace: default}
spec:
  minAvailable: REPLICAS
  selector: {matchLabels: {app: web}}
"""
