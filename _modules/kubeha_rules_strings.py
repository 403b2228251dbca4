"""
Rules for every pillar string that reaches a file, a command or a script.

Each key of the model that holds text has a kind (``kubeha_values.PATTERNS``: a DNS label,
an interface name, a path, an image...) and is refused unless it fully matches it; on top,
no string anywhere in the model (raw kubeadm fragments included) may hold a control
character such as a newline. Templates quote what they render as well, but a value is
refused here first, with the key and the fix, before anything renders.

CLI Example:

.. code-block:: bash

    salt-call kubeha_rules_strings.problems "$(cat model.json)"
"""

from __future__ import annotations

__virtualname__ = "kubeha_rules_strings"

# (key path, kind in kubeha_values.PATTERNS, optional: the empty string means "off").
SCALARS = (
    (("cluster", "name"), "dns_label", False),
    (("packages", "repo_base"), "url", False),
    (("packages", "keyring_dir"), "path", False),
    (("packages", "key_hash"), "hex", True),
    (("network", "dns_domain"), "dns_subdomain", False),
    (("cni", "flannel_image"), "image", False),
    (("cni", "flannel_cni_plugin_image"), "image", False),
    (("vip", "interface"), "interface", False),
    (("vip", "dns_name"), "dns_subdomain", True),
    (("vrrp", "instance"), "word", False),
    (("vrrp", "auth_pass"), "vrrp_secret", True),
    (("vrrp", "notify_event_prefix"), "event_prefix", False),
    (("haproxy", "stats_socket"), "path", False),
    (("haproxy", "timeouts", "connect"), "duration", False),
    (("haproxy", "timeouts", "client"), "duration", False),
    (("haproxy", "timeouts", "server"), "duration", False),
    (("haproxy", "timeouts", "queue"), "duration", False),
    (("haproxy", "cut_sessions_after_down"), "duration", False),
    (("haproxy", "check", "inter"), "duration", False),
    (("haproxy", "check", "fastinter"), "duration", False),
    (("haproxy", "check", "downinter"), "duration", False),
    (("haproxy", "check", "timeout"), "duration", False),
    (("haproxy", "etcd_proxy", "check", "inter"), "duration", False),
    (("haproxy", "etcd_proxy", "check", "fastinter"), "duration", False),
    (("haproxy", "etcd_proxy", "check", "downinter"), "duration", False),
    (("haproxy", "etcd_proxy", "check", "backup_inter"), "duration", False),
    (("kube_vip", "image"), "image", False),
    (("apiserver", "audit", "policy_file"), "path", False),
    (("apiserver", "audit", "log_dir"), "path", False),
    (("apiserver", "audit", "log_file"), "file_name", False),
    (("apiserver", "oidc", "issuer_url"), "https_url", True),
    (("apiserver", "oidc", "client_id"), "claim", True),
    (("apiserver", "oidc", "username_claim"), "claim", False),
    (("apiserver", "oidc", "username_prefix"), "claim", True),
    (("apiserver", "oidc", "groups_claim"), "claim", False),
    (("apiserver", "oidc", "groups_prefix"), "claim", True),
    (("apiserver", "oidc", "ca_file"), "path", True),
    (("etcd", "client_package"), "package", False),
    (("etcd", "data_dir"), "path", False),
    (("kubeadm", "config_dir"), "path", False),
    (("containerd", "package"), "package", False),
    (("containerd", "sandbox_image"), "image", True),
    (("containerd", "socket"), "socket", False),
    (("upgrade", "kubeadm_timeout"), "go_duration", False),
    (("chaos", "probe_minion"), "minion_id", True),
    (("chaos", "probe_kubeconfig"), "path", False),
    (("chaos", "report_dir"), "path", True),
    (("monitoring", "host"), "minion_id", True),
    (("monitoring", "textfile_dir"), "path", False),
    (("monitoring", "listen_address"), "listen_address", False),
    (("monitoring", "scrape_interval"), "prom_duration", False),
    (("monitoring", "evaluation_interval"), "prom_duration", False),
    (("monitoring", "retention"), "prom_duration", False),
    (("probe", "path"), "api_path", False),
    (("probe", "namespace"), "dns_label", False),
    (("backup", "s3", "endpoint"), "url", True),
    (("backup", "s3", "region"), "s3_region", False),
    (("backup", "s3", "bucket"), "s3_bucket", True),
    (("backup", "s3", "prefix"), "s3_prefix", True),
    (("backup", "s3", "access_key"), "s3_access_key", True),
    (("backup", "s3", "secret_key"), "s3_secret", True),
    (("backup", "s3", "ca_bundle"), "path", True),
    (("backup", "s3", "kms_key_id"), "kms_key", True),
    (("backup", "pki_key"), "aes_key", True),
    (("backup", "stage_dir"), "path", False),
    (("drill", "host"), "minion_id", True),
    (("drill", "etcd_dir"), "path", True),
    (("drill", "work_dir"), "path", False),
    (("defrag", "metrics_url"), "url", False),
)
# Keys whose value is a secret: a refusal names the key and the kind, never the value.
SECRET_KEYS = {("vrrp", "auth_pass"), ("backup", "s3", "access_key"),
               ("backup", "s3", "secret_key"), ("backup", "pki_key")}  # fmt: skip
LISTS = (
    (("packages", "names"), "package"),
    (("node", "kernel_modules"), "kernel_module"),
    (("kubeadm", "ignore_preflight_errors"), "preflight"),
    (("haproxy", "check", "exclude"), "readyz_check"),
    # Words of the site's power switch commands: run without a shell, but refused here if
    # they hold anything a shell or a quote would treat specially.
    (("chaos", "power_off"), "command_word"),
    (("chaos", "power_on"), "command_word"),
    (("security", "admission", "validation_actions"), "word"),
    (("security", "admission", "exempt_namespaces"), "dns_label"),
)
# Mappings of name -> value: (key kind, value kind); numbers and booleans pass as values.
MAPPINGS = (
    (("packages", "versions"), "package", "package_version"),
    (("node", "sysctls"), "sysctl_key", "sysctl_value"),
    (("apiserver", "extra_args"), "flag", "flag_value"),
    (("etcd", "extra_args"), "flag", "flag_value"),
    (("kubelet", "extra_args"), "flag", "flag_value"),
)
ENUMS = (
    (("haproxy", "balance"), ("roundrobin", "leastconn", "first", "source", "static-rr")),
    (("kubelet", "cgroup_driver"), ("systemd", "cgroupfs")),
    (("haproxy", "check", "kind"), ("readyz", "tcp")),
    (("apiserver", "etcd_servers"), ("local", "all", "local-first")),
    (("security", "admission", "failure_policy"), ("Fail", "Ignore")),
    (("backup", "s3", "addressing_style"), ("auto", "path", "virtual")),
    (("backup", "s3", "checksum"), ("SHA256", "CRC32", "CRC32C", "SHA1", "none")),
    (("backup", "s3", "sse"), ("", "AES256", "aws:kms")),
    (("vip_heal", "mode"), ("act", "observe", "off")),
)


def __virtual__():
    return __virtualname__


def _dig(model: dict, path: tuple):
    tree = model
    for key in path:
        if not isinstance(tree, dict) or key not in tree:
            return None, False
        tree = tree[key]
    return tree, True


def _name(path) -> str:
    return ":".join(str(p) for p in path)


def _scalars(model: dict) -> list[str]:
    problem = __utils__["kubeha_values.problem"]
    out = []
    for path, kind, optional in SCALARS:
        value, found = _dig(model, path)
        if not found or (optional and value == ""):
            continue
        if (msg := problem(_name(path), kind, value)) is not None:
            if path in SECRET_KEYS:
                # The same sentence about a placeholder: the value itself stays unsaid.
                msg = problem(_name(path), kind, None).replace(
                    "None is not", "the value (a secret, not shown) is not", 1
                )
            out.append(msg)
    for path, allowed in ENUMS:
        value, found = _dig(model, path)
        if found and value not in allowed:
            out.append(f"kubeha:{_name(path)}: {value!r}; use one of {', '.join(allowed)}.")
    return out


def _lists(model: dict) -> list[str]:
    problem = __utils__["kubeha_values.problem"]
    out = []
    for path, kind in LISTS:
        value, found = _dig(model, path)
        if not found:
            continue
        if not isinstance(value, list):
            out.append(f"kubeha:{_name(path)}: must be a list.")
            continue
        out += [m for item in value if (m := problem(_name(path), kind, item)) is not None]
    for path, key_kind, value_kind in MAPPINGS:
        value, found = _dig(model, path)
        if not found or value is None:
            continue
        if not isinstance(value, dict):
            out.append(
                f"kubeha:{_name(path)}: write a mapping of name: value (flags without --; "
                "kubeha renders extra_args as a map (v1beta3) or a name/value list (v1beta4))."
            )
            continue
        for key, item in value.items():
            if (m := problem(_name(path), key_kind, key)) is not None:
                out.append(m)
                continue
            if isinstance(item, (int, float)) and not isinstance(item, bool):
                continue
            text = str(item).lower() if isinstance(item, bool) else item
            if (m := problem(f"{_name(path)}:{key}", value_kind, text)) is not None:
                out.append(m)
    return out


def _control_characters(tree, path=()) -> list[str]:
    """Every string in the model, raw kubeadm fragments included: no newline, NUL, ESC."""
    found = __utils__["kubeha_values.control_characters"]
    if isinstance(tree, dict):
        return [m for k, v in tree.items() for m in _control_characters(v, (*path, k))]
    if isinstance(tree, list):
        return [m for i, v in enumerate(tree) for m in _control_characters(v, (*path, i))]
    if found(tree) or found(path[-1] if path else None):
        shown = "the value (a secret, not shown)" if tuple(path) in SECRET_KEYS else repr(tree)
        return [
            f"kubeha:{_name(path)}: {shown} holds a control character (a newline, tab or "
            "escape); remove it from pillar."
        ]
    return []


def problems(model: dict) -> list[str]:
    """
    Every string of the model that is not what its key needs.

    CLI Example:

    .. code-block:: bash

        salt-call kubeha_rules_strings.problems "$(cat model.json)"
    """
    return _control_characters(model) + _scalars(model) + _lists(model)
