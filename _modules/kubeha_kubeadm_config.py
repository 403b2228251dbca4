"""
Build kubeadm's configuration documents from the kubeha model, for the API the version needs.

kubeadm 1.30 reads ``kubeadm.k8s.io/v1beta3`` (``extraArgs`` maps); 1.31+ reads
``v1beta4`` (``extraArgs`` lists of ``{name, value}``, ``timeouts``, ``UpgradeConfiguration``).
[docs/facts.md #1; kubernetes cmd/kubeadm/app/apis/kubeadm/v1beta4/doc.go]

The model comes from map.jinja (``kubeha`` with its ``derived`` section); this module only
shapes documents, it never reads pillar.

CLI Example:

.. code-block:: bash

    salt cp-1 state.apply kubeha.preview     # renders these documents for review
"""

from __future__ import annotations

import copy

import yaml

__virtualname__ = "kubeha_kubeadm_config"

CRI_SOCKET_DEFAULT = "unix:///run/containerd/containerd.sock"


def __virtual__():
    return __virtualname__


def _seconds(value) -> str:
    number = float(value)
    return f"{int(number)}s" if number == int(number) else f"{int(number * 1000)}ms"


def _args(api: str, mapping: dict) -> dict | list:
    """extraArgs in the API's shape: a map for v1beta3, a sorted name/value list for v1beta4."""
    clean = {str(k): str(v) for k, v in mapping.items()}
    if api == "v1beta3":
        return dict(sorted(clean.items()))
    return [{"name": k, "value": v} for k, v in sorted(clean.items())]


def _merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in (extra or {}).items():
        if key == "apiVersion":
            continue
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def apiserver_args(kubeha: dict) -> dict:
    """
    kube-apiserver flags kubeha sets: audit, graceful shutdown, OIDC, then extra_args.

    CLI Example:

    .. code-block:: bash

        salt-call kubeha_kubeadm_config.apiserver_args "$(cat model.json)"
    """
    api = kubeha["apiserver"]
    args = {"shutdown-delay-duration": _seconds(api["shutdown_delay_seconds"])}
    if api.get("etcd_servers") == "all":
        # Every member, not kubeadm's https://127.0.0.1:2379 only: clientv3 balances over
        # them and fails over when the local one stops (docs/kubesim.md, fidelity #3).
        args["etcd-servers"] = ",".join(
            f"https://{node['ip']}:2379" for node in kubeha["control_plane"]
        )
    elif api.get("etcd_servers") == "local-first":
        # This node's HAProxy: its own member, the others only while that one is down
        # (haproxy.cfg.jinja, listen kube-etcd). The same address on every node.
        args["etcd-servers"] = f"https://127.0.0.1:{kubeha['haproxy']['etcd_proxy']['port']}"
    audit = api["audit"]
    if audit["enabled"]:
        args.update(
            {
                "audit-policy-file": audit["policy_file"],
                "audit-log-path": f"{audit['log_dir']}/{audit['log_file']}",
                "audit-log-maxage": audit["max_age"],
                "audit-log-maxbackup": audit["max_backup"],
                "audit-log-maxsize": audit["max_size"],
            }
        )
    oidc = api["oidc"]
    if oidc.get("issuer_url"):
        args.update(
            {
                "oidc-issuer-url": oidc["issuer_url"],
                "oidc-client-id": oidc["client_id"],
                "oidc-username-claim": oidc["username_claim"],
                "oidc-username-prefix": oidc["username_prefix"],
                "oidc-groups-claim": oidc["groups_claim"],
                "oidc-groups-prefix": oidc["groups_prefix"],
            }
        )
        if oidc.get("ca_file"):
            args["oidc-ca-file"] = oidc["ca_file"]
    args.update(api.get("extra_args") or {})
    return args


def _leader_args(kubeha: dict) -> dict:
    le = kubeha["leader_election"]
    args = {
        "leader-elect": "true",
        "leader-elect-lease-duration": _seconds(le["lease_duration"]),
        "leader-elect-renew-deadline": _seconds(le["renew_deadline"]),
        "leader-elect-retry-period": _seconds(le["retry_period"]),
    }
    if _monitored(kubeha):
        # kubeadm binds the secure port to 127.0.0.1; Prometheus scrapes /metrics from the
        # monitoring host (TLS, delegated authorization). kubeadm's probes keep 127.0.0.1
        # for an unspecified address (staticpod utils GetControllerManagerProbeAddress).
        args["bind-address"] = "0.0.0.0"
    return args


def _monitored(kubeha: dict) -> bool:
    return bool((kubeha.get("monitoring") or {}).get("enabled"))


def _audit_volumes(kubeha: dict) -> list[dict]:
    audit = kubeha["apiserver"]["audit"]
    if not audit["enabled"]:
        return []
    # Without these mounts the apiserver pod cannot see the policy and fails to start, or
    # writes the log inside the container where it vanishes with it (docs/facts.md #5).
    return [
        {
            "name": "audit-policy",
            "hostPath": audit["policy_file"],
            "mountPath": audit["policy_file"],
            "readOnly": True,
            "pathType": "File",
        },
        {
            "name": "audit-log",
            "hostPath": audit["log_dir"],
            "mountPath": audit["log_dir"],
            "readOnly": False,
            "pathType": "DirectoryOrCreate",
        },
    ]


def cluster_configuration(kubeha: dict) -> dict:
    """
    The ClusterConfiguration document.

    CLI Example:

    .. code-block:: bash

        salt-call kubeha_kubeadm_config.cluster_configuration "$(cat model.json)"
    """
    d = kubeha["derived"]
    api = d["kubeadm_api"]
    vip = kubeha["vip"]
    sans = [vip["address"]]
    if vip.get("dns_name"):
        sans.append(vip["dns_name"])
    for node in kubeha["control_plane"]:
        sans += [node["name"], node["ip"]]
    sans += [str(s) for s in kubeha["apiserver"].get("cert_sans") or []]
    etcd = kubeha["etcd"]
    etcd_args = {}
    if int(etcd["election_timeout_ms"]) != 1000:
        etcd_args["election-timeout"] = etcd["election_timeout_ms"]
    if int(etcd["heartbeat_interval_ms"]) != 100:
        etcd_args["heartbeat-interval"] = etcd["heartbeat_interval_ms"]
    if _monitored(kubeha):
        # etcd's metrics listener (plain HTTP /metrics and /health) on every address, not
        # only kubeadm's http://127.0.0.1:2381; kubeadm's probes follow the first URL
        # (staticpod utils GetEtcdProbeEndpoint), and 0.0.0.0 reaches the local listener.
        etcd_args["listen-metrics-urls"] = "http://0.0.0.0:2381"
    etcd_args.update(etcd.get("extra_args") or {})
    local_etcd = {"dataDir": etcd["data_dir"]}
    if etcd_args:
        local_etcd["extraArgs"] = _args(api, etcd_args)
    doc = {
        "apiVersion": f"kubeadm.k8s.io/{api}",
        "kind": "ClusterConfiguration",
        "clusterName": kubeha["cluster"]["name"],
        "kubernetesVersion": f"v{kubeha['kubernetes']['version']}",
        "controlPlaneEndpoint": d["control_plane_endpoint"],
        "networking": {
            "podSubnet": kubeha["network"]["pod_subnet"],
            "serviceSubnet": kubeha["network"]["service_subnet"],
            "dnsDomain": kubeha["network"]["dns_domain"],
        },
        "etcd": {"local": local_etcd},
        "apiServer": {
            "certSANs": list(dict.fromkeys(sans)),
            "extraArgs": _args(api, apiserver_args(kubeha)),
        },
        "controllerManager": {"extraArgs": _args(api, _leader_args(kubeha))},
        "scheduler": {"extraArgs": _args(api, _leader_args(kubeha))},
    }
    volumes = _audit_volumes(kubeha)
    if volumes:
        doc["apiServer"]["extraVolumes"] = volumes
    return _merge(doc, kubeha["kubeadm"].get("cluster_configuration") or {})


def _node_registration(kubeha: dict) -> dict:
    """nodeRegistration: this node's name, the CRI socket, the kubelet's node IP."""
    d = kubeha["derived"]
    node = d["node"]
    kubelet_args = {"node-ip": node["ip"], **(kubeha["kubelet"].get("extra_args") or {})}
    return {
        "name": node["name"],
        "criSocket": kubeha["containerd"].get("socket") or CRI_SOCKET_DEFAULT,
        "kubeletExtraArgs": _args(d["kubeadm_api"], kubelet_args),
    }


def _local_endpoint(kubeha: dict) -> dict:
    return {
        "advertiseAddress": kubeha["derived"]["node"]["ip"],
        "bindPort": kubeha["apiserver"]["port"],
    }


def _patches(kubeha: dict) -> dict | None:
    """kubeadm patches for this node (its apiserver bound to the node IP), if any."""
    if kubeha["derived"]["apiserver_bind_address"] != kubeha["apiserver"]["bind_address"]:
        return {"directory": f"{kubeha['kubeadm']['config_dir']}/patches"}
    return None


def init_configuration(kubeha: dict) -> dict:
    """
    The InitConfiguration document for this node (advertise address, CRI socket, name).

    CLI Example:

    .. code-block:: bash

        salt-call kubeha_kubeadm_config.init_configuration "$(cat model.json)"
    """
    doc = {
        "apiVersion": f"kubeadm.k8s.io/{kubeha['derived']['kubeadm_api']}",
        "kind": "InitConfiguration",
        "localAPIEndpoint": _local_endpoint(kubeha),
        "nodeRegistration": _node_registration(kubeha),
    }
    if _patches(kubeha):
        doc["patches"] = _patches(kubeha)
    return _merge(doc, kubeha["kubeadm"].get("init_configuration") or {})


def join_configuration(kubeha: dict) -> dict:
    """
    This node's JoinConfiguration without secrets: ``kubeadm_join.join`` adds the discovery
    token and, for a control plane, the certificate key into a 0600 copy at join time.

    CLI Example:

    .. code-block:: bash

        salt-call kubeha_kubeadm_config.join_configuration "$(cat model.json)"
    """
    doc = {
        "apiVersion": f"kubeadm.k8s.io/{kubeha['derived']['kubeadm_api']}",
        "kind": "JoinConfiguration",
        "nodeRegistration": _node_registration(kubeha),
    }
    if kubeha["derived"]["is_control_plane"]:
        doc["controlPlane"] = {"localAPIEndpoint": _local_endpoint(kubeha)}
        if _patches(kubeha):
            doc["patches"] = _patches(kubeha)
    return doc


def render_join(kubeha: dict) -> str:
    """
    The JoinConfiguration file as YAML text.

    CLI Example:

    .. code-block:: bash

        salt-call kubeha_kubeadm_config.render_join "$(cat model.json)"
    """
    return _dump([join_configuration(kubeha)])


def kubelet_configuration(kubeha: dict) -> dict:
    """
    The KubeletConfiguration document (cgroup driver matching containerd's runc).

    CLI Example:

    .. code-block:: bash

        salt-call kubeha_kubeadm_config.kubelet_configuration "$(cat model.json)"
    """
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "cgroupDriver": kubeha["kubelet"]["cgroup_driver"],
    }


def documents(kubeha: dict) -> list[dict]:
    """
    InitConfiguration, ClusterConfiguration and KubeletConfiguration, in that order.

    CLI Example:

    .. code-block:: bash

        salt-call kubeha_kubeadm_config.documents "$(cat model.json)"
    """
    return [
        init_configuration(kubeha),
        cluster_configuration(kubeha),
        kubelet_configuration(kubeha),
    ]


def _dump(docs: list[dict]) -> str:
    return "---\n".join(
        yaml.safe_dump(doc, default_flow_style=False, sort_keys=False) for doc in docs
    )


def render(kubeha: dict) -> str:
    """
    The kubeadm config file as YAML text.

    CLI Example:

    .. code-block:: bash

        salt-call kubeha_kubeadm_config.render "$(cat model.json)"
    """
    return _dump(documents(kubeha))


def upgrade_configuration(kubeha: dict) -> dict:
    """
    UpgradeConfiguration (v1beta4, kubeadm >= 1.31) for ``kubeadm upgrade apply|node
    --config``: renew certificates and upgrade etcd. Nothing is forced: the orchestration
    passes ``--yes`` to skip the prompt, and kubeadm's own checks still apply.

    CLI Example:

    .. code-block:: bash

        salt-call kubeha_kubeadm_config.upgrade_configuration "$(cat model.json)"
    """
    target = kubeha["derived"]["upgrade_target"]
    return {
        "apiVersion": "kubeadm.k8s.io/v1beta4",
        "kind": "UpgradeConfiguration",
        "apply": {
            "kubernetesVersion": f"v{target}",
            "certificateRenewal": True,
            "etcdUpgrade": True,
        },
        "node": {"certificateRenewal": True, "etcdUpgrade": True},
        # How long kubeadm waits for the new static pods before rolling the node's
        # manifests back (v1beta4 Timeouts.UpgradeManifests).
        "timeouts": {"upgradeManifests": str(kubeha["upgrade"]["kubeadm_timeout"])},
    }


def render_upgrade(kubeha: dict) -> str:
    """
    The UpgradeConfiguration file as YAML text.

    CLI Example:

    .. code-block:: bash

        salt-call kubeha_kubeadm_config.render_upgrade "$(cat model.json)"
    """
    return _dump([upgrade_configuration(kubeha)])
