"""What `kubeadm upgrade` checks and reads before it changes anything
(phases/upgrade/health.go, policy.go; cmd/upgrade/common.go enforceRequirements).

Version policy as phases/upgrade/policy.go EnforceVersionPolicies: mandatory errors for a
skipped minor or a target below the minimum; a target newer than kubeadm itself is an
error that --force skips.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import yaml

from ..kubeclient import ApiError, Client
from ..versions import Version
from . import cluster, manifests
from .common import out
from .config import Config, from_cluster, normalise
from .errors import KubeadmError

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
