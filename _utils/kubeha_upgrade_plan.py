"""
The rolling upgrade's plan, as pure functions: which versions (hops), which nodes in which
order, and the steps of each node. The ``kubeha_upgrade`` runner feeds it what the cluster
and the package repositories say; ``orch/upgrade.sls`` renders it.

kubeadm never skips a minor (docs/facts.md #12): a target two minors ahead becomes two hops,
each a full pass over every node, each hop to the newest patch its repository offers (the
target itself for the last hop).
"""

from __future__ import annotations

import re

# Steps of each kind of node, in order; the runner records a duration for each.
CONTROL_PLANE_STEPS = (
    "lb-drain",  # out of every HAProxy's pool, sessions ended
    # No VIP move: the VIP holder's HAProxy and keepalived are not touched by the upgrade
    # (keepalived tracks HAProxy's /healthz, which stays UP through the other apiservers),
    # and a move cuts every connection in flight on the old holder (measured on the lab:
    # a request sent 1 s before the move timed out). `kubeha_node.vip_away` stays a tool.
    "etcd-leader-away",  # etcd leadership handed to another member
    "kubeadm-package",  # the target minor's repository, kubeadm installed and held
    "kubeadm-upgrade",  # `kubeadm upgrade apply` (first) or `kubeadm upgrade node`
    "static-pods",  # the control-plane pods at the new version, local /readyz
    "cordon-drain",  # cordoned, drained honouring PodDisruptionBudgets
    "kubelet-kubectl",  # kubelet and kubectl installed and held, kubelet restarted
    "node-ready",  # the Node Ready with the new kubelet version
    "uncordon",
    "gate",  # every etcd member healthy, every apiserver /readyz, Leases held
    "lb-back",  # back in every pool
)
WORKER_STEPS = (
    "cordon-drain",
    "kubeadm-package",
    "kubeadm-upgrade",
    "kubelet-kubectl",
    "node-ready",
    "uncordon",
)
DEB_VERSION = re.compile(r"([0-9]+)\.([0-9]+)\.([0-9]+)-([0-9.]+)")


def version(text) -> tuple[int, int, int]:
    """``1.31.0``, ``v1.31.0`` or a package version ``1.31.0-1.1`` as (1, 31, 0)."""
    match = re.fullmatch(r"v?([0-9]+)\.([0-9]+)\.([0-9]+)(-[0-9.]+)?", str(text).strip())
    if not match:
        raise ValueError(f"{text!r} is not a Kubernetes version like 1.31.0")
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


def text(ver: tuple[int, int, int]) -> str:
    return ".".join(map(str, ver))


def parse_packages_index(index: str, package: str = "kubeadm") -> list[str]:
    """Versions of ``package`` in an apt ``Packages`` index (deb822 paragraphs)."""
    found = []
    for paragraph in index.split("\n\n"):
        lines = [ln for ln in paragraph.splitlines() if ": " in ln and not ln.startswith(" ")]
        fields = dict(line.split(": ", 1) for line in lines)
        if fields.get("Package") == package and "Version" in fields:
            found.append(fields["Version"])
    return found


def hops(current: str, target: str, available: dict[str, list[str]]) -> list[str]:
    """
    The versions to upgrade through, one minor at a time, from ``current`` to ``target``.
    ``available`` maps each minor (``1.31``) to the package versions its repository has.
    ValueError with the reason when the target is behind, a major change or missing.
    """
    cur, tgt = version(current), version(target)
    if tgt == cur:
        return []
    if tgt < cur:
        raise ValueError(
            f"{target} is older than the running {current}: kubeadm does not downgrade. Roll a "
            "failed node back instead (the upgrade does that by itself when a node fails)."
        )
    if tgt[0] != cur[0]:
        raise ValueError(f"{target} changes the major version from {current}; not supported.")
    out = []
    for minor in range(cur[1] + 1 if tgt[1] > cur[1] else cur[1], tgt[1] + 1):
        offered = sorted({version(v) for v in available.get(f"{tgt[0]}.{minor}", [])}, reverse=True)
        if minor == tgt[1]:
            if tgt not in offered:
                have = ", ".join(text(v) for v in offered) or "nothing"
                raise ValueError(
                    f"{target} is not in the {tgt[0]}.{minor} package repository (it offers {have})"
                )
            wanted = tgt
        else:
            if not offered:
                raise ValueError(
                    f"the {tgt[0]}.{minor} package repository offers no kubeadm: the upgrade "
                    f"from {current} to {target} must pass through {tgt[0]}.{minor}"
                )
            wanted = offered[0]
        if wanted > cur:
            out.append(text(wanted))
    return out


def order(control_planes: list[str], upgrade_order: list[str], workers: list[str], batch: int):
    """Control planes in ``upgrade_order`` (else all but the first, then the first), then
    workers in batches of ``batch``: a list of (role, [nodes]) in the order they go."""
    cps = list(upgrade_order) or [*control_planes[1:], *control_planes[:1]]
    groups: list[tuple[str, list[str]]] = [("control-plane", [n]) for n in cps]
    size = max(1, int(batch))
    groups += [("worker", workers[i : i + size]) for i in range(0, len(workers), size)]
    return groups


def plan(
    *,
    cluster: str,
    current: str,
    target: str,
    available: dict[str, list[str]],
    control_planes: list[str],
    upgrade_order: list[str],
    workers: list[str],
    worker_batch: int = 1,
    node_versions: dict[str, str | None] | None = None,
) -> dict:
    """The whole plan: hops, and per hop the groups of nodes with their steps. A node
    already at a hop's version is marked ``skip`` (a re-run resumes)."""
    node_versions = node_versions or {}
    passes = []
    for hop in hops(current, target, available):
        groups = []
        for index, (role, nodes) in enumerate(
            order(control_planes, upgrade_order, workers, worker_batch)
        ):
            steps = CONTROL_PLANE_STEPS if role == "control-plane" else WORKER_STEPS
            groups.append(
                {
                    "role": role,
                    "nodes": nodes,
                    # kubeadm upgrade apply on the first control plane only (docs/facts.md #2)
                    "first": role == "control-plane" and index == 0,
                    "steps": list(steps),
                    "skip": all(
                        (v := node_versions.get(n)) is not None and version(v) >= version(hop)
                        for n in nodes
                    ),
                }
            )
        passes.append({"version": hop, "groups": groups})
    return {"cluster": cluster, "from": current, "to": target, "hops": passes}
