"""`kubeadm upgrade plan` (cmd/kubeadm/app/cmd/upgrade/plan.go): versions, health, then
the tables of upgradePlanTextPrinter."""

from __future__ import annotations

from .. import tabwriter
from ..kubeclient import Client
from ..versions import Version, coredns_tag, etcd_tag, own_version
from .common import admin_client, out
from .config import load
from .upgrade import pause_image
from .upgrade_checks import cluster_version, health, load_cluster


def _pod_versions(client: Client, component: str) -> list[tuple[str, str]]:
    pods = client.list("pods", "kube-system", label_selector=f"component={component}")["items"]
    out = []
    for p in pods:
        image = (p.get("spec", {}).get("containers") or [{}])[0].get("image", "")
        out.append((p.get("spec", {}).get("nodeName", ""), image.rpartition(":")[2]))
    return sorted(out)


def _addon_tag(client: Client, resource: str, name: str) -> str | None:
    obj = client.get_or_none(resource, name, "kube-system")
    if obj is None:
        return None
    containers = obj.get("spec", {}).get("template", {}).get("spec", {}).get("containers") or [{}]
    return containers[0].get("image", "").rpartition(":")[2] or None


def plan(flags: dict) -> int:
    version = own_version()
    out("[preflight] Running pre-flight checks.")
    client = admin_client()
    cfg = load_cluster(client, version)
    ignored = set(filter(None, (flags.get("ignore-preflight-errors") or "").split(",")))
    health(client, pause_image(cfg), ignored)
    out("[upgrade] Fetching available versions to upgrade to")
    current = cluster_version(client)
    out(f"[upgrade/versions] Cluster version: {current}")
    out(f"[upgrade/versions] kubeadm version: {version}")
    wanted = flags["positional"][0] if flags.get("positional") else None
    if not wanted and flags.get("config"):
        wanted = ((load(flags["config"]).upgrade or {}).get("plan") or {}).get("kubernetesVersion")
    target = Version.parse(wanted) if wanted else version
    out(f"[upgrade/versions] Target version: {target}")
    out(
        f"[upgrade/versions] Latest version in the v{current.major}.{current.minor} series: {current}"  # noqa: E501 - upstream's text
    )
    print()
    if not target > current:
        out("Awesome, you're up-to-date! Enjoy!")
        return 0
    # Text layout of upgradePlanTextPrinter (cmd/kubeadm/app/cmd/upgrade/plan.go): one
    # shared tabwriter (10, 4, 3) flushed per table, every kubelet row named "kubelet".
    nodes = client.list("nodes")["items"]
    rows = ["COMPONENT\tNODE\tCURRENT\tTARGET"]
    for n in sorted(nodes, key=lambda n: n["metadata"]["name"]):
        kv = n.get("status", {}).get("nodeInfo", {}).get("kubeletVersion", "")
        rows.append(f"kubelet\t{n['metadata']['name']}\t{kv}\t{target}")
    out(
        "Components that must be upgraded manually after you have upgraded the control plane "
        "with 'kubeadm upgrade apply':"
    )
    print(tabwriter.render("\n".join(rows) + "\n", 10, 3), end="")
    print()
    out("Upgrade to the latest stable version:")
    print()
    rows = ["COMPONENT\tNODE\tCURRENT\tTARGET"]
    for comp in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        for node, tag in _pod_versions(client, comp):
            rows.append(f"{comp}\t{node}\t{tag}\t{target}")
    proxy = _addon_tag(client, "daemonsets", "kube-proxy") or str(current)
    rows.append(f"kube-proxy\t\t{proxy}\t{target}")
    dns = _addon_tag(client, "deployments", "coredns") or coredns_tag(current)
    rows.append(f"CoreDNS\t\t{dns}\t{coredns_tag(target)}")
    for node, tag in _pod_versions(client, "etcd"):
        rows.append(f"etcd\t{node}\t{tag}\t{etcd_tag(target)}")
    print(tabwriter.render("\n".join(rows) + "\n", 10, 3), end="")
    print()
    out("You can now apply the upgrade by executing the following command:")
    print()
    out(f"\tkubeadm upgrade apply {target}")
    print()
    if version != target:
        out(f"Note: Before you can perform this upgrade, you have to update kubeadm to {target}.")
        print()
    out("_____________________________________________________________________")
    print()
    print()
    out(
        "The table below shows the current state of component configs as understood by this "
        "version of kubeadm."
    )
    out(
        'Configs that have a "yes" mark in the "MANUAL UPGRADE REQUIRED" column require manual '
        "config upgrade or"
    )
    out(
        "resetting to kubeadm defaults before a successful upgrade can be performed. The version "
        "to manually"
    )
    out('upgrade to is denoted in the "PREFERRED VERSION" column.')
    print()
    rows = [
        "API GROUP\tCURRENT VERSION\tPREFERRED VERSION\tMANUAL UPGRADE REQUIRED",
        "kubeproxy.config.k8s.io\tv1alpha1\tv1alpha1\tno",
        "kubelet.config.k8s.io\tv1beta1\tv1beta1\tno",
    ]
    print(tabwriter.render("\n".join(rows) + "\n", 10, 3), end="")
    out("_____________________________________________________________________")
    print()
    return 0
