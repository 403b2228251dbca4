"""What `kubeadm upgrade` checks and reads before it changes anything
(phases/upgrade/health.go, policy.go; cmd/upgrade/common.go enforceRequirements).

Version policy as phases/upgrade/policy.go EnforceVersionPolicies: mandatory errors for a
skipped minor or a target below the minimum; a target newer than kubeadm itself is an
error that --force skips.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from pathlib import Path

import yaml

from .. import klog
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


def create_job(client: Client, pause_image: str, timeout: float = 15.0) -> str | None:
    """The CreateJob check (phases/upgrade/health.go createJob, kubeadm#3050): a Job running
    the pause image with `-v` on any schedulable node must complete within 15 s. Skipped
    when no node is schedulable. Returns the failure, or None."""
    prefix, last = "upgrade-health-check", None
    deadline = time.monotonic() + timeout
    nodes = None
    while nodes is None:
        try:
            nodes = client.list("nodes", field_selector="spec.unschedulable=false")["items"]
        except (ApiError, OSError) as err:
            last = err
            if time.monotonic() > deadline:
                return f"could not check if there is at least one Node that can schedule a test Pod: {last}"  # noqa: E501 - upstream's text
            time.sleep(1)
    if not nodes:
        klog.warning(
            'The preflight check "CreateJob" was skipped because there are no schedulable '
            "Nodes in the cluster.",
            "health.go:121",
        )
        return None
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"generateName": prefix + "-", "namespace": "kube-system"},
        "spec": {
            "backoffLimit": 0,
            "ttlSecondsAfterFinished": int(timeout) + 5,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "securityContext": {"runAsUser": 999, "runAsGroup": 999, "runAsNonRoot": True},
                    "tolerations": [
                        {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}
                    ],
                    "containers": [{"name": prefix, "image": pause_image, "args": ["-v"]}],
                }
            },
        },
    }
    deadline, name = time.monotonic() + timeout, None
    while name is None:
        try:
            name = client.create("jobs", job, "kube-system")["metadata"]["name"]
        except (ApiError, OSError) as err:
            last = err
            if time.monotonic() > deadline:
                return f'could not create a Job with the prefix "{prefix}" in the namespace "kube-system": {last}'  # noqa: E501 - upstream's text
            time.sleep(1)
    deadline = time.monotonic() + timeout
    while time.monotonic() <= deadline:
        try:
            got = client.get("jobs", name, "kube-system")
            conds = got.get("status", {}).get("conditions") or []
            if any(c.get("type") == "Complete" and c.get("status") == "True" for c in conds):
                return None
            last = "no condition of type Complete"
        except (ApiError, OSError) as err:
            last = err
        time.sleep(1)
    return f'Job "{name}" in the namespace "kube-system" did not complete in 15s: {last}'


def health(client: Client, pause_image: str, ignored: set[str] | None = None) -> None:
    """CheckClusterHealth: CreateJob, ControlPlaneNodesReady, StaticPodManifest, run as
    preflight checks (--ignore-preflight-errors turns an error into a warning)."""
    ignored = {i.lower() for i in ignored or set()}
    out("[upgrade] Running cluster health checks")
    problems: list[tuple[str, str]] = []
    failure = create_job(client, pause_image)
    if failure:
        problems.append(("CreateJob", failure))
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
    if not_ready:
        problems.append(
            (
                "ControlPlaneNodesReady",
                f"there are NotReady control-planes in the cluster: {not_ready}",
            )
        )
    missing = [c for c in COMPONENTS if not (manifests.MANIFESTS / f"{c}.yaml").exists()]
    if missing:
        problems.append(
            (
                "StaticPodManifest",
                "; ".join(
                    f"manifest for component {c} is missing: open {manifests.MANIFESTS}/{c}.yaml: no such file or directory"  # noqa: E501 - upstream's text
                    for c in missing
                ),
            )
        )
    fatal = []
    for name, text in problems:
        if "all" in ignored or name.lower() in ignored:
            print(f"\t[WARNING {name}]: {text}", file=sys.stderr)
        else:
            fatal.append(f"\t[ERROR {name}]: {text}")
    if fatal:
        raise KubeadmError(
            "[upgrade/health] FATAL: [preflight] Some fatal errors occurred:\n"
            + "\n".join(fatal)
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
