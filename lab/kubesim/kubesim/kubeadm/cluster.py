"""What kubeadm stores in the cluster: config ConfigMaps, bootstrap tokens, cluster-info,
control-plane labels and taints, essential addons.

- uploadconfig: ConfigMap kube-system/kubeadm-config (ClusterConfiguration) and
  kube-system/kubelet-config (phases/uploadconfig, phases/kubelet);
- bootstraptoken: Secret kube-system/bootstrap-token-<id> (type bootstrap.kubernetes.io/token)
  and ConfigMap kube-public/cluster-info (phases/bootstraptoken/clusterinfo);
- copycerts: in copycerts.py.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import secrets
import time

import yaml

from .. import kubeconfig
from ..flags import duration
from ..kubeclient import ApiError, Client
from ..versions import Version, coredns_tag
from .config import Config, cluster_configuration_yaml
from .errors import KubeadmError

TOKEN_RE = re.compile(r"^([a-z0-9]{6})\.([a-z0-9]{16})$")
TOKEN_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
DEFAULT_GROUP = "system:bootstrappers:kubeadm:default-node-token"


def new_token() -> str:
    pick = lambda n: "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(n))  # noqa: E731
    return f"{pick(6)}.{pick(16)}"


def parse_ttl(text: str) -> float:

    return duration(text)


def _b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


def token_secret(  # noqa: PLR0917 - mirrors the upstream call's parameters
    token: str,
    ttl: float,
    usages: list[str],
    groups: list[str],
    description: str = "",
    owner: dict | None = None,
) -> dict:
    m = TOKEN_RE.match(token)
    if not m:
        raise KubeadmError(
            f'the bootstrap token "{token}" was not of the form '
            '"^([a-z0-9]{6})\\.([a-z0-9]{16})$"'
        )
    tid, sec = m.groups()
    data = {"token-id": _b64(tid), "token-secret": _b64(sec)}
    if ttl > 0:
        exp = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=ttl)
        data["expiration"] = _b64(exp.strftime("%Y-%m-%dT%H:%M:%SZ"))
    for usage in usages:
        data[f"usage-bootstrap-{usage}"] = _b64("true")
    if groups:
        data["auth-extra-groups"] = _b64(",".join(groups))
    if description:
        data["description"] = _b64(description)
    meta: dict = {"name": f"bootstrap-token-{tid}", "namespace": "kube-system"}
    if owner:
        meta["ownerReferences"] = [owner]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "bootstrap.kubernetes.io/token",
        "metadata": meta,
        "data": data,
    }


def create_token(  # noqa: PLR0917 - mirrors the upstream call's parameters
    client: Client,
    token: str,
    ttl: float,
    usages: list[str] | None = None,
    groups: list[str] | None = None,
    description: str = "",
) -> dict:
    obj = token_secret(
        token,
        ttl,
        usages if usages is not None else ["signing", "authentication"],
        groups if groups is not None else [DEFAULT_GROUP],
        description,
    )
    try:
        return client.create("secrets", obj, "kube-system")
    except ApiError as err:
        if err.status == 409:
            raise KubeadmError(
                f'a token with id "{token.split(".", maxsplit=1)[0]}" already exists'
            ) from err
        raise


def wait_api(client: Client, timeout: float, out=None) -> None:
    """apiclient.WaitForAPI: poll /healthz until it answers ok."""
    deadline = time.monotonic() + timeout
    start = time.monotonic()
    last = ""
    while time.monotonic() < deadline:
        try:
            code, body = client.raw("GET", "/healthz", timeout=5)
            if code == 200 and body.strip() == b"ok":
                if out:
                    out(time.monotonic() - start)
                return
            last = body.decode(errors="replace")
        except OSError as err:
            last = str(err)
            client.close()
        time.sleep(0.5)
    raise KubeadmError(
        f"[api-check] The API server is not healthy after {int(timeout)}s\n\n"
        f"Unfortunately, an error has occurred:\n\tcontext deadline exceeded ({last})"
    )


def _go_secs(seconds: float) -> str:
    if seconds >= 60:
        m, s = divmod(seconds, 60)
        return f"{int(m)}m{s:.9f}".rstrip("0").rstrip(".") + "s"
    if seconds < 1:
        return f"{seconds * 1000:.6f}".rstrip("0").rstrip(".") + "ms"
    return f"{seconds:.9f}".rstrip("0").rstrip(".") + "s"


def upload_config(client: Client, cfg: Config, version: Version, out) -> None:
    out(
        '[upload-config] Storing the configuration used in ConfigMap "kubeadm-config" in the '
        '"kube-system" Namespace'
    )
    client.apply(
        "configmaps",
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "kubeadm-config", "namespace": "kube-system"},
            "data": {"ClusterConfiguration": cluster_configuration_yaml(cfg, version)},
        },
        "kube-system",
    )


def upload_kubelet_config(client: Client, kubelet_yaml: str, out) -> None:
    out(
        '[kubelet] Creating a ConfigMap "kubelet-config" in namespace kube-system with the '
        "configuration for the kubelets in the cluster"
    )
    client.apply(
        "configmaps",
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "kubelet-config", "namespace": "kube-system"},
            "data": {"kubelet": kubelet_yaml},
        },
        "kube-system",
    )


def cluster_info(client: Client, cfg: Config, out) -> None:
    out('[bootstrap-token] Creating the "cluster-info" ConfigMap in the "kube-public" namespace')
    ca = (cfg.pki_dir / "ca.crt").read_bytes()
    text = kubeconfig.render("", f"https://{cfg.control_plane_endpoint}", ca, "")

    doc = yaml.safe_load(text)
    doc["clusters"][0]["name"] = ""
    doc.update(contexts=None, users=None, **{"current-context": ""})
    client.apply(
        "configmaps",
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "cluster-info", "namespace": "kube-public"},
            "data": {"kubeconfig": yaml.safe_dump(doc, default_flow_style=False)},
        },
        "kube-public",
    )


def mark_control_plane(client: Client, cfg: Config, out) -> None:
    name = cfg.node_name
    out(
        f"[mark-control-plane] Marking the node {name} as control-plane by adding the labels: "
        "[node-role.kubernetes.io/control-plane node.kubernetes.io/exclude-from-external-load-balancers]"  # noqa: E501 - upstream's text
    )
    taints = cfg.node_registration.get("taints") or []
    out(
        f"[mark-control-plane] Marking the node {name} as control-plane by adding the taints "
        f"[{' '.join(t['key'] + ':' + t['effect'] for t in taints)}]"
    )
    deadline = time.monotonic() + 240
    while True:
        try:
            node = client.get("nodes", name)
            break
        except (ApiError, OSError) as err:
            if time.monotonic() > deadline:
                raise KubeadmError(
                    f"error marking control-plane: timed out waiting for the condition: {err}",
                    "mark-control-plane",
                ) from err
            time.sleep(1)
    labels = {
        "node-role.kubernetes.io/control-plane": "",
        "node.kubernetes.io/exclude-from-external-load-balancers": "",
    }
    have = node.get("spec", {}).get("taints") or []
    merged = have + [
        t
        for t in taints
        if not any(
            h.get("key") == t.get("key") and h.get("effect") == t.get("effect") for h in have
        )
    ]
    client.patch(
        "nodes", name, {"metadata": {"labels": labels}, "spec": {"taints": merged or None}}
    )


def addons(client: Client, cfg: Config, version: Version, out) -> None:
    """CoreDNS Deployment and kube-proxy DaemonSet objects (their pods are not run by kubesim)."""
    repo = cfg.cluster.get("imageRepository", "registry.k8s.io")
    dns = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "coredns",
            "namespace": "kube-system",
            "labels": {"k8s-app": "kube-dns"},
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"k8s-app": "kube-dns"}},
            "template": {
                "metadata": {"labels": {"k8s-app": "kube-dns"}},
                "spec": {
                    "containers": [
                        {
                            "name": "coredns",
                            "image": f"{repo}/coredns/coredns:{coredns_tag(version)}",
                        }
                    ]
                },
            },
        },
    }
    proxy = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {
            "name": "kube-proxy",
            "namespace": "kube-system",
            "labels": {"k8s-app": "kube-proxy"},
        },
        "spec": {
            "selector": {"matchLabels": {"k8s-app": "kube-proxy"}},
            "template": {
                "metadata": {"labels": {"k8s-app": "kube-proxy"}},
                "spec": {
                    "containers": [{"name": "kube-proxy", "image": f"{repo}/kube-proxy:{version}"}]
                },
            },
        },
    }
    client.apply("deployments", dns, "kube-system")
    out("[addons] Applied essential addon: CoreDNS")
    client.apply("daemonsets", proxy, "kube-system")
    out("[addons] Applied essential addon: kube-proxy")


def rbac(client: Client, out) -> None:
    """The bindings kubeadm creates (bootstraptoken/node, phases/kubeconfig cluster-admins)."""
    objs = [
        (
            "clusterrolebindings",
            {
                "metadata": {"name": "kubeadm:cluster-admins"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "cluster-admin",
                },
                "subjects": [
                    {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "Group",
                        "name": "kubeadm:cluster-admins",
                    }
                ],
            },
        ),
        (
            "clusterrolebindings",
            {
                "metadata": {"name": "kubeadm:kubelet-bootstrap"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "system:node-bootstrapper",
                },
                "subjects": [
                    {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "Group",
                        "name": DEFAULT_GROUP,
                    }
                ],
            },
        ),
        (
            "clusterrolebindings",
            {
                "metadata": {"name": "kubeadm:node-autoapprove-bootstrap"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
                },
                "subjects": [
                    {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "Group",
                        "name": DEFAULT_GROUP,
                    }
                ],
            },
        ),
    ]
    for resource, obj in objs:
        try:
            client.create(resource, obj)
        except ApiError as err:
            if err.status != 409:
                raise
    out("[bootstrap-token] Configured RBAC rules to allow Node Bootstrap tokens to get nodes")
    out(
        "[bootstrap-token] Configured RBAC rules to allow Node Bootstrap tokens to post CSRs in order for nodes to get long term certificate credentials"  # noqa: E501 - upstream's text
    )
    out(
        "[bootstrap-token] Configured RBAC rules to allow the csrapprover controller automatically approve CSRs from a Node Bootstrap Token"  # noqa: E501 - upstream's text
    )
    out(
        "[bootstrap-token] Configured RBAC rules to allow certificate rotation for all node client certificates in the cluster"  # noqa: E501 - upstream's text
    )


def fetch_cluster_config(client: Client) -> tuple[str, dict]:
    try:
        cm = client.get("configmaps", "kubeadm-config", "kube-system")
    except ApiError as err:
        raise KubeadmError(f"unable to fetch the kubeadm-config ConfigMap: {err}") from err
    except OSError as err:
        raise KubeadmError(
            f"unable to fetch the kubeadm-config ConfigMap: failed to get config map: {err}"
        ) from err
    return cm["data"]["ClusterConfiguration"], cm
