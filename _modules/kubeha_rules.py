"""
The rules a kubeha cluster model must satisfy: nodes, the VIP and its ports, versions,
networks and components, one private function per concern.

Each rule returns messages of the form ``kubeha:<key>: <what is wrong>. <the fix>``.
``kubeha_model.check`` runs this module's ``problems`` with those of the other rule sets
(``kubeha_rules_strings``, ``kubeha_rules_timers``, ``kubeha_rules_kubeadm``) before any
state renders; the rules cite docs/facts.md items and upstream sources where the reason is
not obvious.

CLI Example:

.. code-block:: bash

    salt-call kubeha_rules.problems "$(cat model.json)"
"""

from __future__ import annotations

import contextlib
import ipaddress

__virtualname__ = "kubeha_rules"

PROVIDERS = ("keepalived-haproxy", "kube-vip")


def __virtual__():
    return __virtualname__


def _version(text):
    try:
        return __utils__["kubeha_values.version_tuple"](text)
    except (ValueError, TypeError):
        return None


def _ip(text):
    return __utils__["kubeha_values.ipv4"](text)


def _is_label(text) -> bool:
    return __utils__["kubeha_values.matches"]("dns_label", text)


def _nodes(model: dict) -> list[str]:
    """Control-plane and worker lists: shape, count, names, addresses, duplicates."""
    out = []
    cps = model.get("control_plane") or []
    count = len(cps)
    if count < 3 or count % 2 == 0:
        out.append(
            f"kubeha:control_plane: has {count} node(s); stacked etcd needs an odd number of "
            "at least 3 to keep quorum when one fails (2 of 3 survive one loss, 2 of 4 do not). "
            "List 3, 5 or 7 control planes, the init node first."
        )
    seen_names: dict[str, str] = {}
    seen_ips: dict[str, str] = {}
    for key in ("control_plane", "workers"):
        for i, node in enumerate(model.get(key) or []):
            where = f"kubeha:{key}:{i}"
            if not isinstance(node, dict):
                out.append(f"{where}: must be a mapping like {{name: cp-1, ip: 192.168.1.11}}.")
                continue
            name, ip = node.get("name", ""), node.get("ip", "")
            if not _is_label(name):
                out.append(
                    f"{where}:name: {name!r} is not a lowercase DNS label; Kubernetes node "
                    "names must be one (e.g. cp-1)."
                )
            if _ip(ip) is None:
                out.append(f"{where}:ip: {ip!r} is not an IPv4 address.")
            if name in seen_names:
                out.append(
                    f"{where}:name: {name} is listed twice (also at {seen_names[name]}); "
                    "node names must be unique."
                )
            if ip in seen_ips:
                out.append(
                    f"{where}:ip: {ip} is used twice (also at {seen_ips[ip]}); "
                    "every node needs its own address."
                )
            seen_names.setdefault(name, where)
            seen_ips.setdefault(ip, where)
    if model.get("node_match", "id") not in ("id", "host"):
        out.append("kubeha:node_match: must be 'id' (minion id) or 'host' (the host grain).")
    return out


def _vip(model: dict) -> list[str]:
    """The VIP: inside the nodes' subnet, not a node's address, provider and ports coherent."""
    out = []
    conf = model.get("vip") or {}
    address = _ip(conf.get("address"))
    provider = conf.get("provider")
    if provider not in PROVIDERS:
        out.append(f"kubeha:vip:provider: {provider!r}; use one of {', '.join(PROVIDERS)}.")
    if address is None:
        out.append(
            f"kubeha:vip:address: {conf.get('address')!r} is not an IPv4 address; set the "
            "virtual IP clients use to reach the API (a free address in the nodes' subnet)."
        )
        return out
    try:
        prefix = int(conf.get("prefix"))
        network = ipaddress.IPv4Network(f"{address}/{prefix}", strict=False)
    except (TypeError, ValueError):
        return [*out, f"kubeha:vip:prefix: {conf.get('prefix')!r} is not a prefix length 0-32."]
    if prefix < 31 and address in (network.network_address, network.broadcast_address):
        out.append(
            f"kubeha:vip:address: {address} is the network or broadcast address of "
            f"{network}; pick a host address."
        )
    for key in ("control_plane", "workers"):
        for node in model.get(key) or []:
            ip = _ip(node.get("ip")) if isinstance(node, dict) else None
            if ip == address:
                out.append(
                    f"kubeha:vip:address: {address} is also {node.get('name')}'s address; "
                    "the VIP must be a free address that moves between nodes."
                )
            if key == "control_plane" and ip is not None and ip not in network:
                out.append(
                    f"kubeha:vip:address: {address}/{prefix} does not contain control plane "
                    f"{node.get('name')} ({ip}); VRRP/ARP only move the VIP inside the nodes' "
                    "own subnet. Use an address from that subnet or fix kubeha:vip:prefix."
                )
    return out + _ports(model)


def _ports(model: dict) -> list[str]:
    conf = model["vip"]
    api = model.get("apiserver") or {}
    lb_port, api_port = conf.get("lb_port"), api.get("port")
    out = []
    for key, port in (("vip:lb_port", lb_port), ("apiserver:port", api_port)):
        if not isinstance(port, int) or not 0 < port < 65536:
            out.append(f"kubeha:{key}: {port!r} is not a TCP port.")
    if out:
        return out
    bind = conf.get("lb_bind", "all")
    if bind not in ("all", "vip"):
        return [f"kubeha:vip:lb_bind: {bind!r}; use 'all' or 'vip'."]
    if conf.get("provider") == "kube-vip":
        if lb_port != api_port:
            out.append(
                f"kubeha:vip:lb_port: {lb_port} differs from kubeha:apiserver:port {api_port}; "
                "kube-vip moves the VIP to a node whose own apiserver answers on its port, "
                "nothing forwards another port. Set kubeha:vip:lb_port to "
                f"{api_port}."
            )
        return out
    if lb_port == api_port and bind == "all":
        out.append(
            f"kubeha:vip:lb_port: {lb_port} equals kubeha:apiserver:port while HAProxy binds "
            f"all addresses on the control planes, where kube-apiserver already binds "
            f"0.0.0.0:{api_port} (docs/facts.md #6). Use another LB port (kubeadm's HA guide uses "
            "8443: kubeha:vip:lb_port: 8443), or set kubeha:vip:lb_bind: vip with "
            "kubeha:apiserver:bind_address: node."
        )
    if lb_port == api_port and bind == "vip" and api.get("bind_address") != "node":
        out.append(
            f"kubeha:apiserver:bind_address: {api.get('bind_address')!r} binds every "
            f"address on port {api_port}, which collides with HAProxy on the VIP "
            f"({conf.get('address')}:{lb_port}). Set kubeha:apiserver:bind_address: node "
            "(each apiserver binds its node IP)."
        )
    return out


def _kubernetes(model: dict) -> list[str]:
    """Version, package revision, the kubeadm API and raw kubeadm fragments, the upgrade target."""
    kube = model.get("kubernetes") or {}
    current = _version(kube.get("version"))
    if current is None:
        return [f"kubeha:kubernetes:version: {kube.get('version')!r}; use MAJOR.MINOR.PATCH."]
    out = []
    if not __utils__["kubeha_values.matches"]("package_revision", kube.get("package_revision")):
        out.append(
            f"kubeha:kubernetes:package_revision: {kube.get('package_revision')!r}; "
            "pkgs.k8s.io revisions look like '1.1'."
        )
    return out + _upgrade(model, current)


def _upgrade(model: dict, current) -> list[str]:
    conf = model.get("upgrade") or {}
    out = []
    raw = conf.get("target_version") or ""
    if raw:
        target = _version(raw)
        if target is None:
            out.append(f"kubeha:upgrade:target_version: {raw!r}; use MAJOR.MINOR.PATCH.")
        elif target < current:
            out.append(
                f"kubeha:upgrade:target_version: {raw} is older than the running "
                f"{model['kubernetes']['version']}; kubeadm does not downgrade. Roll back by "
                "reinstalling the old packages on the failed node (runbook step 13)."
            )
        elif target[0] != current[0]:
            out.append(
                f"kubeha:upgrade:target_version: {raw} changes the major version from "
                f"{model['kubernetes']['version']}; kubeadm upgrades within one major "
                "version (docs/facts.md #12). Pick a 1.x target."
            )
    for key, low in (
        ("worker_batch", 1),
        ("drain_timeout", 1),
        ("lb_drain_seconds", 0),
        ("max_failed_requests", 0),
    ):
        value = conf.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            out.append(f"kubeha:upgrade:{key}: {value!r} must be a whole number >= {low}.")
    stall = conf.get("max_stall_seconds")
    if not isinstance(stall, (int, float)) or isinstance(stall, bool) or stall <= 0:
        out.append(f"kubeha:upgrade:max_stall_seconds: {stall!r} must be a number of seconds > 0.")
    names = [n.get("name") for n in model.get("control_plane") or [] if isinstance(n, dict)]
    order = list(conf.get("order") or [])
    if order and sorted(order) != sorted(names):
        out.append(
            f"kubeha:upgrade:order: {order} must list every control plane exactly once "
            f"({', '.join(map(str, names))}), or be empty for the default (all but the init "
            "node, then the init node)."
        )
    return out


def _network(model: dict) -> list[str]:
    """Pod and service subnets: valid, disjoint, and apart from the nodes' subnet."""
    conf = model.get("network") or {}
    out, nets = [], {}
    for key in ("pod_subnet", "service_subnet"):
        try:
            nets[key] = ipaddress.ip_network(str(conf.get(key)))
        except ValueError:
            out.append(f"kubeha:network:{key}: {conf.get(key)!r} is not a CIDR (host bits set?).")
    vip_conf = model.get("vip") or {}
    with contextlib.suppress(ValueError):
        nets["vip"] = ipaddress.ip_network(
            f"{vip_conf.get('address')}/{vip_conf.get('prefix')}", strict=False
        )
    keys = list(nets)
    for i, a in enumerate(keys):
        for b in keys[i + 1 :]:
            if nets[a].overlaps(nets[b]):
                name_b = "the nodes' subnet (vip address/prefix)" if b == "vip" else b
                out.append(
                    f"kubeha:network:{a}: {nets[a]} overlaps {name_b} {nets[b]}; "
                    "routes would be ambiguous. Pick disjoint ranges."
                )
    cni = (model.get("cni") or {}).get("provider")
    if cni not in ("flannel", "none"):
        out.append(f"kubeha:cni:provider: {cni!r}; use flannel or none (bring your own).")
    return out


def _components(model: dict) -> list[str]:
    """containerd, apiserver audit/OIDC settings."""
    out = []
    if (model.get("containerd") or {}).get("config_version") not in (2, 3):
        out.append(
            "kubeha:containerd:config_version: use 2 (containerd 1.6/1.7) or 3 "
            "(containerd 2.x); the runc SystemdCgroup key lives at a different path in each."
        )
    api = model.get("apiserver") or {}
    audit = api.get("audit") or {}
    if audit.get("enabled"):
        for key in ("policy_file", "log_dir"):
            if not str(audit.get(key, "")).startswith("/"):
                out.append(
                    f"kubeha:apiserver:audit:{key}: {audit.get(key)!r} must be an absolute "
                    "path (it is mounted into the apiserver pod, docs/facts.md #5)."
                )
    bind = api.get("bind_address")
    if bind != "node" and _ip(bind) is None:
        out.append(
            f"kubeha:apiserver:bind_address: {bind!r}; use 0.0.0.0 (every address), an IPv4 "
            "address, or node (each control plane's own ip)."
        )
    for san in api.get("cert_sans") or []:
        if _ip(san) is None and not __utils__["kubeha_values.matches"]("dns_subdomain", san):
            out.append(
                f"kubeha:apiserver:cert_sans: {san!r} is neither an IPv4 address nor a DNS "
                "name; list the extra names and addresses of the API certificate."
            )
    # apiserver:oidc is checked by kubeha_rules_security (upstream's issuer URL validation).
    return out


RULES = (_nodes, _vip, _kubernetes, _network, _components)


def problems(model: dict) -> list[str]:
    """
    Run every rule of this module; a rule that cannot run on a malformed model reports
    that instead.

    CLI Example:

    .. code-block:: bash

        salt-call kubeha_rules.problems "$(cat model.json)"
    """
    # Not a shared helper in _utils: a util calling back into this module would run the
    # rule in the utils loader's context, where __utils__ is not packed.
    out: list[str] = []
    for rule in RULES:
        try:
            out += rule(model)
        except (KeyError, TypeError, AttributeError) as err:
            out.append(
                f"kubeha:{rule.__name__.lstrip('_')}: malformed section ({err!r}); "
                "see docs/pillar.md."
            )
    return out
