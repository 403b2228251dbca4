"""
Rules for the kubeadm side of the model: the config API per version and the shape of raw
kubeadm fragments in pillar (``kubeha:kubeadm:cluster_configuration`` etc.).

docs/facts.md #1: ``kubeadm.k8s.io/v1beta4`` exists only from kubeadm v1.31; 1.30 reads ``v1beta3``,
where ``extraArgs`` is a map. In v1beta4 every ``extraArgs`` (apiServer, controllerManager,
scheduler, etcd.local, nodeRegistration.kubeletExtraArgs) is a list of ``{name, value}``.
[kubernetes cmd/kubeadm/app/apis/kubeadm/v1beta4/doc.go; kubernetes/website PR 47539]

CLI Example:

.. code-block:: bash

    salt-call kubeha_rules_kubeadm.problems "$(cat model.json)"
"""

from __future__ import annotations

__virtualname__ = "kubeha_rules_kubeadm"

APIS = ("auto", "v1beta3", "v1beta4")
V1BETA4_SINCE = (1, 31)

# Where extraArgs live in each raw fragment kubeha accepts.
EXTRA_ARGS_PATHS = {
    "cluster_configuration": (
        ("apiServer", "extraArgs"),
        ("controllerManager", "extraArgs"),
        ("scheduler", "extraArgs"),
        ("etcd", "local", "extraArgs"),
    ),
    "init_configuration": (("nodeRegistration", "kubeletExtraArgs"),),
}


def __virtual__():
    return __virtualname__


def _dig(tree, path):
    for key in path:
        if not isinstance(tree, dict) or key not in tree:
            return None
        tree = tree[key]
    return tree


def _is_list_style(value) -> bool:
    return isinstance(value, list) and all(
        isinstance(item, dict) and set(item) >= {"name", "value"} for item in value
    )


def _fragment_problems(fragments: dict, api: str) -> list[str]:
    """Problems of raw kubeadm fragments for the given API (``v1beta3`` or ``v1beta4``)."""
    out = []
    for fragment, paths in EXTRA_ARGS_PATHS.items():
        doc = fragments.get(fragment) or {}
        version = doc.get("apiVersion")
        if version and version != f"kubeadm.k8s.io/{api}":
            out.append(
                f"kubeha:kubeadm:{fragment}:apiVersion: {version} while this cluster's kubeadm "
                f"reads kubeadm.k8s.io/{api}. Drop apiVersion (kubeha sets it) or make them "
                "agree."
            )
        for path in paths:
            value = _dig(doc, path)
            if value is None:
                continue
            key = f"kubeha:kubeadm:{fragment}:{':'.join(path)}"
            if api == "v1beta3" and not isinstance(value, dict):
                out.append(
                    f"{key}: kubeadm.k8s.io/v1beta3 takes extraArgs as a map "
                    "(flag: value); write it as a map."
                )
            if api == "v1beta4" and not _is_list_style(value):
                example = ""
                if isinstance(value, dict) and value:
                    name, val = next(iter(value.items()))
                    example = f" e.g. [{{name: {name}, value: '{val}'}}]"
                out.append(
                    f"{key}: kubeadm.k8s.io/v1beta4 takes extraArgs as a list of "
                    f"{{name, value}}{example}. Or move the flags to kubeha's own keys "
                    "(kubeha:apiserver:extra_args, ...), which kubeha renders for either API."
                )
    return out


def _owned_fields(model: dict, version: str) -> list[str]:
    """Fields kubeha derives from its own keys may not disagree in a raw fragment."""
    doc = (model.get("kubeadm") or {}).get("cluster_configuration") or {}
    vip = model.get("vip") or {}
    endpoint = f"{vip.get('dns_name') or vip.get('address')}:{vip.get('lb_port')}"
    owned = {
        "controlPlaneEndpoint": (endpoint, "kubeha:vip:address/lb_port (the VIP and LB port)"),
        "kubernetesVersion": (f"v{version}", "kubeha:kubernetes:version"),
    }
    out = []
    for field, (expected, owner) in owned.items():
        if field in doc and str(doc[field]) != expected:
            out.append(
                f"kubeha:kubeadm:cluster_configuration:{field}: {doc[field]} disagrees with "
                f"{expected} from {owner}. Drop it from the fragment; kubeha sets it."
            )
    return out


def problems(model: dict) -> list[str]:
    """
    The kubeadm API against the Kubernetes version, then the raw fragments' shape. Nothing
    when the version itself is unusable (``kubeha_rules`` reports that).

    CLI Example:

    .. code-block:: bash

        salt-call kubeha_rules_kubeadm.problems "$(cat model.json)"
    """
    try:
        current = __utils__["kubeha_values.version_tuple"](
            (model.get("kubernetes") or {}).get("version")
        )
    except ValueError:
        return []
    wanted = str((model.get("kubernetes") or {}).get("kubeadm_api", "auto"))
    if wanted not in APIS:
        return [f"kubeha:kubernetes:kubeadm_api: {wanted!r}; use auto, v1beta3 or v1beta4."]
    fragments = model.get("kubeadm") or {}
    version = ".".join(map(str, current))
    # Where a v1beta4 request comes from, so the message names that key.
    sources = [
        f"kubeha:kubeadm:{name}:apiVersion"
        for name in EXTRA_ARGS_PATHS
        if str((fragments.get(name) or {}).get("apiVersion", "")).endswith("/v1beta4")
    ]
    if wanted == "v1beta4":
        sources.insert(0, "kubeha:kubernetes:kubeadm_api")
    out = _owned_fields(model, version)
    if sources and tuple(current[:2]) < V1BETA4_SINCE:
        return out + [
            f"{key}: kubeadm.k8s.io/v1beta4 exists only from kubeadm v1.31, and this cluster "
            f"runs {version}, whose kubeadm reads kubeadm.k8s.io/v1beta3 (extraArgs as a map) "
            "and rejects v1beta4 (docs/facts.md #1). Use kubeha:kubernetes:kubeadm_api: auto (or "
            "v1beta3) and no apiVersion in raw fragments; kubeha switches to v1beta4 when "
            "the version reaches 1.31."
            for key in sources
        ]
    api = __salt__["kubeha_model.kubeadm_api"](model)
    return out + _fragment_problems(fragments, api)
