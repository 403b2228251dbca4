"""`kubeadm upgrade plan|apply|node` (cmd/kubeadm/app/cmd/upgrade, phases/upgrade).

Version policy as phases/upgrade/policy.go EnforceVersionPolicies: mandatory errors for a
skipped minor or a target below the minimum; a target newer than kubeadm itself is an
error that --force skips. Static pods are upgraded one by one: the new manifest is written
to /etc/kubernetes/tmp/kubeadm-upgraded-manifests*, the old one backed up to
/etc/kubernetes/tmp/kubeadm-backup-manifests-<date>, etcd's data dir to
kubeadm-backup-etcd-<date>; kubeadm waits for the mirror pod's config hash to change and
rolls the manifest back if it does not within 5 minutes. Certificates are renewed.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import socket
import tempfile
import time
from pathlib import Path

import yaml

from .. import tabwriter
from ..etcd import EtcdError, kubeadm_client
from ..kubeclient import ApiError, Client
from ..versions import Version, coredns_tag, etcd_tag, own_version
from . import certs, cluster, files, manifests
from .common import (
    KUBE_DIR,
    admin_client,
    confirm,
    out,
    static_pod_hash,
    wait_pod_running,
    wait_static_pod_hash,
)
from .config import Config, from_cluster, load, normalise
from .errors import KubeadmError

TMP = KUBE_DIR / "tmp"
COMPONENTS = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"]


def load_cluster(client: Client, version: Version, phase: str = "upgrade/config") -> Config:
    out(f"[{phase}] Reading configuration from the cluster...")
    out(
        f"[{phase}] FYI: You can look at this config file with 'kubectl -n kube-system get cm "
        "kubeadm-config -o yaml'"
    )
    text, _ = cluster.fetch_cluster_config(client)
    cfg = Config(
        "kubeadm.k8s.io/v1beta3", from_cluster(text, version), init={"nodeRegistration": {}}
    )
    # the local node's identity comes from its kube-apiserver manifest, as kubeadm reads it
    api = manifests.MANIFESTS / "kube-apiserver.yaml"
    if api.exists():
        pod = yaml.safe_load(api.read_text())
        endpoint = (pod["metadata"].get("annotations") or {}).get(
            "kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint", ""
        )
        host, _, port = endpoint.rpartition(":")
        cfg.init["localAPIEndpoint"] = {"advertiseAddress": host, "bindPort": int(port or 6443)}

    cfg.init["nodeRegistration"]["name"] = _node_name() or socket.gethostname().lower()
    normalise(cfg, version)
    return cfg


def _node_name() -> str | None:
    env = Path("/var/lib/kubelet/kubeadm-flags.env")
    if env.exists():
        for part in env.read_text().split():
            if part.startswith("--hostname-override="):
                return part.split("=", 1)[1].strip('"')
    return None


def health(client: Client) -> None:
    out("[upgrade] Running cluster health checks")
    try:
        nodes = client.list("nodes", label_selector="node-role.kubernetes.io/control-plane")[
            "items"
        ]
    except (ApiError, OSError) as err:
        raise KubeadmError(f"[upgrade/health] FATAL: the API Server is unreachable: {err}") from err
    not_ready = [
        n["metadata"]["name"]
        for n in nodes
        if not any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in n.get("status", {}).get("conditions") or []
        )
    ]
    problems = []
    if not_ready:
        problems.append(
            f"\t[ERROR ControlPlaneNodesReady]: there are NotReady control-planes in "
            f"the cluster: {not_ready}"
        )
    missing = [c for c in COMPONENTS if not (manifests.MANIFESTS / f"{c}.yaml").exists()]
    if missing:
        problems.append(
            "\t[ERROR StaticPodManifest]: "
            + "; ".join(
                f"manifest for component {c} is missing: open {manifests.MANIFESTS}/{c}.yaml: no such "  # noqa: E501 - upstream's text
                "file or directory"
                for c in missing
            )
        )
    if problems:
        raise KubeadmError(
            "[upgrade/health] FATAL: [preflight] Some fatal errors occurred:\n"
            + "\n".join(problems)
            + "\n[preflight] If you know what you are doing, "
            "you can make a check non-fatal with `--ignore-preflight-errors=...`"
        )


def cluster_version(client: Client) -> Version:
    code, body = client.raw("GET", "/version")
    if code != 200:
        raise KubeadmError(f"[upgrade/versions] FATAL: couldn't fetch cluster version: {body!r}")

    return Version.parse(json.loads(body)["gitVersion"])


def enforce_policy(current: Version, target: Version, kubeadm: Version, force: bool) -> None:
    mandatory, skippable = [], []
    minimum = Version(kubeadm.major, kubeadm.minor - 1, 0)
    if target < minimum:
        mandatory.append(
            f'Specified version to upgrade to "{target}" is equal to or lower than the '
            f'minimum supported version "{minimum}". Please specify a higher version to '
            "upgrade to"
        )
    if (target.major, target.minor) > (current.major, current.minor + 1):
        mandatory.append(
            f'Specified version to upgrade to "{target}" is too high; kubeadm can upgrade '
            "only 1 minor version at a time"
        )
    if (target.major, target.minor) < (current.major, current.minor):
        mandatory.append(
            f'Specified version to upgrade to "{target}" is an unsupported version and '
            f'cannot be used to downgrade the control plane from "{current}"'
        )
    if (kubeadm.major, kubeadm.minor) < (target.major, target.minor):
        skippable.append(
            f'Specified version to upgrade to "{target}" is higher than the kubeadm '
            f'version "{kubeadm}". Upgrade kubeadm first using the tool you used to '
            "install kubeadm"
        )
    if mandatory:
        raise KubeadmError(
            "[upgrade/version] FATAL: the --version argument is invalid due to these "
            "fatal errors:\n\n"
            + "\n".join(f"\t- {m}" for m in mandatory + skippable)
            + "\n\nPlease fix the misalignments highlighted above and try upgrading again"
        )
    if skippable and not force:
        raise KubeadmError(
            "[upgrade/version] FATAL: the --version argument is invalid due to these "
            "errors:\n\n"
            + "\n".join(f"\t- {m}" for m in skippable)
            + "\n\nCan be bypassed if you pass the --force flag"
        )
    for m in skippable:
        out(
            f"[upgrade/version] Found 1 potential version compatibility errors but skipping since "
            f"the --force flag is set: \n\n\t- {m}"
        )


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
    load_cluster(client, version)
    health(client)
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


def _stamp() -> str:
    return dt.datetime.now().strftime("%Y-%m-%d-%H-%M-%S")


def upgrade_static_pods(
    cfg: Config, target: Version, client: Client, renew: bool, etcd_upgrade: bool = True
) -> None:
    node = cfg.node_name
    TMP.mkdir(parents=True, exist_ok=True)
    new_dir = Path(tempfile.mkdtemp(prefix="kubeadm-upgraded-manifests", dir=TMP))
    backup = TMP / f"kubeadm-backup-manifests-{_stamp()}"
    backup.mkdir(parents=True, exist_ok=True)
    out(f'[upgrade/staticpods] Writing new Static Pod manifests to "{new_dir}"')
    out('[upgrade/staticpods] Preparing for "etcd" upgrade')
    etcd_path = manifests.MANIFESTS / "etcd.yaml"
    if not etcd_upgrade:
        out("[upgrade/etcd] Skipping etcd upgrade (etcdUpgrade is false)")
    elif etcd_path.exists():
        old_pod = yaml.safe_load(etcd_path.read_text())
        cmd = old_pod["spec"]["containers"][0]["command"]
        initial = next((a.split("=", 1)[1] for a in cmd if a.startswith("--initial-cluster=")), "")
        members = [tuple(x.split("=", 1)) for x in initial.split(",") if "=" in x]
        existing = any(a == "--initial-cluster-state=existing" for a in cmd)
        new_pod = manifests.etcd(cfg, target, members or None, existing)
        old_image = old_pod["spec"]["containers"][0]["image"]
        if (
            new_pod["spec"]["containers"][0]["image"] == old_image
            and manifests.render(new_pod) == manifests.render(old_pod)
            and not renew
        ):
            out(
                "[upgrade/etcd] Non fatal issue encountered during upgrade: the desired etcd version "  # noqa: E501 - upstream's text
                f'"{etcd_tag(target)}" is not newer than the currently installed "{old_image.rpartition(":")[2]}". Skipping etcd upgrade'  # noqa: E501 - upstream's text
            )
        else:
            data_dir = Path(
                ((cfg.cluster.get("etcd") or {}).get("local") or {}).get("dataDir", "/var/lib/etcd")
            )
            etcd_backup = TMP / f"kubeadm-backup-etcd-{_stamp()}" / "etcd"
            if data_dir.exists():
                shutil.copytree(data_dir, etcd_backup, dirs_exist_ok=True)
            if renew:
                for leaf in certs.LEAVES:
                    if leaf.name.startswith("etcd-"):
                        out(f"[upgrade/staticpods] Renewing {leaf.name} certificate")
                        certs.renew_leaf(cfg, leaf)
            replace_and_wait(cfg, client, "etcd", new_pod, new_dir, backup, node)
            out("[upgrade/etcd] Waiting for etcd to become available")
            wait_etcd(cfg)
    pods = manifests.control_plane(cfg, target)
    for comp, pod in pods.items():
        out(f'[upgrade/staticpods] Preparing for "{comp}" upgrade')
        if renew:
            for name in {
                "kube-apiserver": [
                    "apiserver",
                    "apiserver-kubelet-client",
                    "front-proxy-client",
                    "apiserver-etcd-client",
                ],
                "kube-controller-manager": ["controller-manager.conf"],
                "kube-scheduler": ["scheduler.conf"],
            }[comp]:
                out(f"[upgrade/staticpods] Renewing {name} certificate")
                if name.endswith(".conf"):
                    certs.renew_kubeconfig(KUBE_DIR / name, cfg.pki_dir)
                else:
                    certs.renew_leaf(cfg, next(x for x in certs.LEAVES if x.name == name))
        replace_and_wait(cfg, client, comp, pod, new_dir, backup, node)
    if renew:
        for name in ("admin.conf", "super-admin.conf"):
            certs.renew_kubeconfig(KUBE_DIR / name, cfg.pki_dir)


def replace_and_wait(  # noqa: PLR0917 - mirrors the upstream call's parameters
    cfg: Config, client: Client, comp: str, pod: dict, new_dir: Path, backup: Path, node: str
) -> None:
    current = manifests.MANIFESTS / f"{comp}.yaml"
    manifests.write(new_dir, comp, pod)
    old_hash = static_pod_hash(client, comp, node)
    if current.exists() and current.read_text() == (new_dir / f"{comp}.yaml").read_text():
        out(f"[upgrade/staticpods] Current and new manifests of {comp} are equal, skipping upgrade")
        return
    out(
        f'[upgrade/staticpods] Moved new manifest to "{current}" and backed up old manifest to '
        f'"{backup / (comp + ".yaml")}"'
    )
    if current.exists():
        shutil.copy2(current, backup / f"{comp}.yaml")
    shutil.copy2(new_dir / f"{comp}.yaml", current)
    out("[upgrade/staticpods] Waiting for the kubelet to restart the component")
    out("[upgrade/staticpods] This can take up to 5m0s")
    try:
        wait_static_pod_hash(client, comp, node, old_hash)
        wait_pod_running(client, f"component={comp}", node)
    except KubeadmError as err:
        if (backup / f"{comp}.yaml").exists():
            shutil.copy2(backup / f"{comp}.yaml", current)
        raise KubeadmError(
            f"[upgrade/apply] FATAL: couldn't upgrade control plane. kubeadm has "
            f"tried to recover everything into the earlier state. Errors faced: "
            f"{err.message}"
        ) from err
    out(f'[upgrade/staticpods] Component "{comp}" upgraded successfully!')


def wait_etcd(cfg: Config, timeout: float = 120) -> None:

    client = kubeadm_client(str(cfg.pki_dir), [f"https://{cfg.advertise_address}:2379"], timeout=5)
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.get("/registry/health")
            return
        except EtcdError as err:
            if time.monotonic() > deadline:
                raise KubeadmError(f"[upgrade/etcd] Failed to upgrade etcd: {err}") from err
            time.sleep(1)


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
    opts = {
        "certificateRenewal": doc.get("certificateRenewal", True),
        "etcdUpgrade": doc.get("etcdUpgrade", True),
        "forceUpgrade": bool(doc.get("forceUpgrade", False)),
        "kubernetesVersion": doc.get("kubernetesVersion"),
    }
    if "certificate-renewal" in flags:
        opts["certificateRenewal"] = flags["certificate-renewal"] != "false"
    if "etcd-upgrade" in flags:
        opts["etcdUpgrade"] = flags["etcd-upgrade"] != "false"
    if flags.get("force") in ("true", ""):
        opts["forceUpgrade"] = True
    if flags.get("positional"):
        opts["kubernetesVersion"] = flags["positional"][0]
    return opts


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
    health(client)
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
        f'[upgrade/apply] Upgrading your Static Pod-hosted control plane to version "{target}" (timeout: 5m0s)...'  # noqa: E501 - upstream's text
    )
    cfg.cluster["kubernetesVersion"] = str(target)
    upgrade_static_pods(cfg, target, client, opts["certificateRenewal"], opts["etcdUpgrade"])
    client = admin_client()
    cluster.upload_config(client, cfg, version, out)
    cluster.upload_kubelet_config(
        client, yaml.safe_dump(files.kubelet_configuration(cfg), sort_keys=True), out
    )
    upgrade_kubelet_config(client, out)
    cluster.rbac(client, out)
    cluster.addons(client, cfg, target, out)
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
        upgrade_static_pods(cfg, target, client, opts["certificateRenewal"], opts["etcdUpgrade"])
    else:
        out("[upgrade] Skipping phase. Not a control plane node.")
    upgrade_kubelet_config(client, out)
    out("[upgrade] The configuration for this node was successfully updated!")
    out(
        "[upgrade] Now you should go ahead and upgrade the kubelet package using your package manager."  # noqa: E501 - upstream's text
    )
    return 0
