"""`kubeadm upgrade apply|node` (cmd/kubeadm/app/cmd/upgrade/apply.go, node.go).

`apply` runs on the first control plane: checks and version policy (upgrade_checks.py),
static pods (upgrade_staticpods.py), then the cluster's config, kubelet config, RBAC and
addons. `node` upgrades the other control planes (and workers) to the cluster's version.
`plan` lives in upgrade_plan.py.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import yaml

from .. import flags as flagutil
from ..kubeclient import ApiError, Client
from ..versions import Version, own_version, pause_tag
from . import cluster, files, manifests
from .common import KUBE_DIR, admin_client, confirm, out
from .config import Config, load
from .errors import KubeadmError
from .upgrade_checks import cluster_version, enforce_policy, health, load_cluster
from .upgrade_staticpods import TMP, upgrade_static_pods
from .upgrade_wait import go_minutes


def upgrade_kubelet_config(client: Client, out_fn) -> None:
    cm = client.get("configmaps", "kubelet-config", "kube-system")
    path = files.KUBELET_DIR / "config.yaml"
    TMP.mkdir(parents=True, exist_ok=True)
    bdir = Path(tempfile.mkdtemp(prefix="kubeadm-kubelet-config", dir=TMP))
    if path.exists():
        shutil.copy2(path, bdir / "config.yaml")
    out_fn(f"[upgrade] Backing up kubelet config file to {bdir}/config.yaml")
    path.write_text(cm["data"]["kubelet"])
    out_fn(f'[kubelet-start] Writing kubelet configuration to file "{path}"')


def upgrade_options(flags: dict, section: str) -> dict:
    """UpgradeConfiguration.<apply|node> from --config (v1beta4, kubeadm >= 1.31), else flags.

    Flags win over the file where both are given; defaults as v1beta4's: certificateRenewal
    and etcdUpgrade true.
    """
    doc: dict = {}
    if flags.get("config"):
        doc = dict((load(flags["config"]).upgrade or {}).get(section) or {})
    timeouts = {}
    if flags.get("config"):
        timeouts = (load(flags["config"]).upgrade or {}).get("timeouts") or {}
    opts = {
        "certificateRenewal": doc.get("certificateRenewal", True),
        "etcdUpgrade": doc.get("etcdUpgrade", True),
        "forceUpgrade": bool(doc.get("forceUpgrade", False)),
        "kubernetesVersion": doc.get("kubernetesVersion"),
        # v1beta4 UpgradeConfiguration.timeouts.upgradeManifests (UpgradeManifestTimeout 5m)
        "upgradeManifests": flagutil.duration(str(timeouts.get("upgradeManifests", "5m0s"))),
        "ignorePreflightErrors": set(doc.get("ignorePreflightErrors") or []),
    }
    if flags.get("ignore-preflight-errors"):
        opts["ignorePreflightErrors"] |= set(flags["ignore-preflight-errors"].split(","))
    if "certificate-renewal" in flags:
        opts["certificateRenewal"] = flags["certificate-renewal"] != "false"
    if "etcd-upgrade" in flags:
        opts["etcdUpgrade"] = flags["etcd-upgrade"] != "false"
    if flags.get("force") in ("true", ""):
        opts["forceUpgrade"] = True
    if flags.get("positional"):
        opts["kubernetesVersion"] = flags["positional"][0]
    return opts


def pause_image(cfg: Config) -> str:
    """images.GetPauseImage: kubeadm's own pause tag in the cluster's image repository."""
    return (
        f"{cfg.cluster.get('imageRepository', 'registry.k8s.io')}/pause:{pause_tag(own_version())}"
    )


def unupgraded_control_planes(client: Client, node: str) -> list[str]:
    """postupgrade.go unupgradedControlPlaneInstances: nodes whose kube-apiserver runs
    another image than this node's."""
    try:
        pods = client.list("pods", "kube-system", label_selector="component=kube-apiserver")
    except (ApiError, OSError) as err:
        raise KubeadmError(
            "failed to determine whether all the control plane instances have been upgraded: "
            f"cannot list kube-apiserver: {err}"
        ) from err
    image = lambda p: (p.get("spec", {}).get("containers") or [{}])[0].get("image", "")  # noqa: E731
    mine = next((image(p) for p in pods["items"] if p["spec"].get("nodeName") == node), "")
    if not mine:
        raise KubeadmError(
            "failed to determine whether all the control plane instances have been upgraded: "
            "cannot find the image of kube-apiserver on this node"
        )
    return sorted(p["spec"].get("nodeName", "") for p in pods["items"] if image(p) != mine)


def upgrade_addons(client: Client, cfg: Config, target: Version) -> None:
    """PerformAddonsUpgrade (1.28+): CoreDNS and kube-proxy move only once every control
    plane runs the new apiserver, so `apply` on the first node usually skips them and
    `upgrade node` on the last one does them."""
    waiting = unupgraded_control_planes(client, cfg.node_name)
    if waiting:
        out(
            "[upgrade/addons] skip upgrade addons because control plane instances "
            f"[{' '.join(waiting)}] have not been upgraded"
        )
        return
    cluster.addons(client, cfg, target, out)


def apply(flags: dict) -> int:
    version = own_version()
    opts = upgrade_options(flags, "apply")
    if not opts["kubernetesVersion"]:
        raise KubeadmError("missing one or more required arguments. Required arguments: [version]")
    target = Version.parse(opts["kubernetesVersion"])
    force = opts["forceUpgrade"]
    out("[preflight] Running pre-flight checks.")
    client = admin_client()
    cfg = load_cluster(client, version)
    health(client, pause_image(cfg), opts["ignorePreflightErrors"])
    current = cluster_version(client)
    out(f'[upgrade/version] You have chosen to change the cluster version to "{target}"')
    out(f"[upgrade/versions] Cluster version: {current}")
    out(f"[upgrade/versions] kubeadm version: {version}")
    enforce_policy(current, target, version, force)
    confirm(
        "[upgrade] Are you sure you want to proceed? [y/N]: ",
        flags.get("yes") in ("true", "") or flags.get("y") in ("true", "") or force,
    )
    out("[upgrade/prepull] Pulling images required for setting up a Kubernetes cluster")
    out(
        "[upgrade/prepull] This might take a minute or two, depending on the speed of your internet connection"  # noqa: E501 - upstream's text
    )
    out(
        "[upgrade/prepull] You can also perform this action beforehand using 'kubeadm config images pull'"  # noqa: E501 - upstream's text
    )
    out(
        f'[upgrade/apply] Upgrading your Static Pod-hosted control plane to version "{target}" (timeout: {go_minutes(opts["upgradeManifests"])})...'  # noqa: E501 - upstream's text
    )
    cfg.cluster["kubernetesVersion"] = str(target)
    try:
        upgrade_static_pods(
            cfg,
            target,
            client,
            opts["certificateRenewal"],
            opts["etcdUpgrade"],
            opts["upgradeManifests"],
        )
    except KubeadmError as err:  # cmd/upgrade/apply.go: errors.Wrap(err, "[upgrade/apply] FATAL")
        raise KubeadmError(f"[upgrade/apply] FATAL: {err.message}") from err
    client = admin_client()
    cluster.upload_config(client, cfg, version, out)
    cluster.upload_kubelet_config(
        client, yaml.safe_dump(files.kubelet_configuration(cfg), sort_keys=True), out
    )
    upgrade_kubelet_config(client, out)
    cluster.rbac(client, out)
    upgrade_addons(client, cfg, target)
    print()
    out(f'[upgrade/successful] SUCCESS! Your cluster was upgraded to "{target}". Enjoy!')
    print()
    out(
        "[upgrade/kubelet] Now that your control plane is upgraded, please proceed with upgrading "
        "your kubelets if you haven't already done so."
    )
    return 0


def node(flags: dict) -> int:
    version = own_version()
    out("[upgrade] Reading configuration from the cluster...")
    out(
        "[upgrade] FYI: You can look at this config file with 'kubectl -n kube-system get cm "
        "kubeadm-config -o yaml'"
    )
    kubelet_conf = KUBE_DIR / "kubelet.conf"
    client = (
        admin_client()
        if (KUBE_DIR / "admin.conf").exists()
        else Client.from_kubeconfig(kubelet_conf)
    )
    cfg = load_cluster(client, version, "upgrade")
    target = cfg.kubernetes_version
    out("[preflight] Running pre-flight checks")
    if (manifests.MANIFESTS / "kube-apiserver.yaml").exists():
        out(
            "[upgrade] Upgrading your Static Pod-hosted control plane instance to version "
            f'"{target}"...'
        )
        opts = upgrade_options(flags, "node")
        try:
            upgrade_static_pods(
                cfg,
                target,
                client,
                opts["certificateRenewal"],
                opts["etcdUpgrade"],
                opts["upgradeManifests"],
            )
        except KubeadmError as err:  # cmd/phases/upgrade/node/controlplane.go
            raise KubeadmError(
                f"couldn't complete the static pod upgrade: {err.message}", "control-plane"
            ) from err
        upgrade_addons(client, cfg, target)
    else:
        out("[upgrade] Skipping phase. Not a control plane node.")
    upgrade_kubelet_config(client, out)
    out("[upgrade] The configuration for this node was successfully updated!")
    out(
        "[upgrade] Now you should go ahead and upgrade the kubelet package using your package manager."  # noqa: E501 - upstream's text
    )
    return 0
