"""
The cluster model's rules for day 2: ``backup:`` (object storage, the PKI key, retention),
``drill:``, ``defrag:`` and ``certs:``. String kinds are checked by
``kubeha_rules_strings``; numbers, booleans and what goes together here.

Run by ``kubeha_model.check`` with the other rule sets; messages have the same form
(``kubeha:<key>: <what is wrong>. <the fix>``) and never repeat a secret.

CLI Example:

.. code-block:: bash

    salt-call kubeha_rules_day2.problems "$(cat model.json)"
"""

from __future__ import annotations

__virtualname__ = "kubeha_rules_day2"

# key: (lowest, highest) for the numbers of the day-2 sections.
LIMITS = {
    ("backup", "s3", "multipart_threshold_mb"): (5, 5 * 1024 * 1024),
    ("backup", "s3", "multipart_chunk_mb"): (5, 5 * 1024),
    ("backup", "s3", "timeout"): (1, 3600),
    ("backup", "keep_hourly"): (0, 10000),
    ("backup", "keep_daily"): (0, 10000),
    ("backup", "keep_weekly"): (0, 10000),
    ("backup", "max_age_hours"): (0.1, 24 * 365),
    ("drill", "client_port"): (1024, 65535),
    ("drill", "peer_port"): (1024, 65535),
    ("drill", "sample"): (1, 10000),
    ("drill", "max_age_hours"): (1, 24 * 366),
    ("defrag", "fragmented_mb"): (0.001, 1024 * 1024),
    ("defrag", "check_interval"): (5, 86400 * 7),
    ("defrag", "pause"): (0, 3600),
    ("defrag", "drain"): (0, 3600),
    ("defrag", "cooldown"): (0, 86400 * 30),
    # kubeadm's leaf certificates last 365 days (docs/facts.md #18): a threshold of 365 or
    # more renews at every cooldown, which is allowed (it forces renewals), never more.
    ("certs", "renew_before_days"): (1, 365),
    ("certs", "check_interval"): (5, 86400 * 7),
    ("certs", "cooldown_hours"): (0, 24 * 365),
    ("certs", "pause"): (0, 3600),
    ("certs", "drain"): (0, 3600),
}
INTEGERS = {
    ("backup", "keep_hourly"),
    ("backup", "keep_daily"),
    ("backup", "keep_weekly"),
    ("drill", "client_port"),
    ("drill", "peer_port"),
    ("drill", "sample"),
}
# etcd's own ports on a control plane (kubeadm: client 2379, peer 2380, metrics 2381).
ETCD_PORTS = (2379, 2380, 2381)


def __virtual__():
    return __virtualname__


def _dig(model: dict, path: tuple):
    tree = model
    for key in path:
        if not isinstance(tree, dict) or key not in tree:
            return None
        tree = tree[key]
    return tree


def _name(path) -> str:
    return "kubeha:" + ":".join(path)


def _numbers(model: dict) -> list[str]:
    out = []
    for path, (low, high) in LIMITS.items():
        value = _dig(model, path)
        if value is None:
            continue
        whole = path in INTEGERS
        if isinstance(value, bool) or not isinstance(value, int if whole else (int, float)):
            kind = "a whole number" if whole else "a number"
            out.append(f"{_name(path)}: {value!r} is not {kind}; use {low}-{high}.")
        elif not low <= value <= high:
            out.append(f"{_name(path)}: {value} is outside {low}-{high}.")
    return out


def _backup(model: dict) -> list[str]:
    backup = model.get("backup") or {}
    s3 = backup.get("s3") or {}
    out = []
    if not isinstance(s3.get("verify_tls", True), bool):
        out.append("kubeha:backup:s3:verify_tls: must be true or false.")
    if bool(s3.get("access_key")) != bool(s3.get("secret_key")):
        out.append(
            "kubeha:backup:s3:access_key/secret_key: set both (a key pair) or neither (boto3's "
            "own credentials on the master: environment, instance profile)."
        )
    if s3.get("kms_key_id") and s3.get("sse") != "aws:kms":
        out.append("kubeha:backup:s3:kms_key_id: is only used with kubeha:backup:s3:sse: aws:kms.")
    chunk, threshold = s3.get("multipart_chunk_mb"), s3.get("multipart_threshold_mb")
    numbers = all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in (chunk, threshold)
    )
    if numbers and chunk > threshold:
        out.append(
            f"kubeha:backup:s3:multipart_chunk_mb: {chunk} exceeds multipart_threshold_mb "
            f"{threshold}; a part is never larger than the size that starts a multipart upload."
        )
    keeps = [backup.get(k) for k in ("keep_hourly", "keep_daily", "keep_weekly")]
    if all(isinstance(k, int) and not isinstance(k, bool) for k in keeps) and sum(keeps) == 0:
        out.append(
            "kubeha:backup:keep_hourly/keep_daily/keep_weekly: all 0 keeps only the newest "
            "verified backup; keep at least a day (e.g. keep_hourly: 24)."
        )
    return out


def _drill(model: dict) -> list[str]:
    drill = model.get("drill") or {}
    out = []
    client, peer = drill.get("client_port"), drill.get("peer_port")
    if isinstance(client, int) and client == peer:
        out.append("kubeha:drill:client_port/peer_port: must differ.")
    for key, port in (("client_port", client), ("peer_port", peer)):
        if port in ETCD_PORTS:
            out.append(
                f"kubeha:drill:{key}: {port} is the live etcd's own port on a control plane; "
                "the scratch etcd needs another (defaults 23790/23800)."
            )
    host = drill.get("host") or ""
    workers = {n.get("name") for n in model.get("workers") or [] if isinstance(n, dict)}
    if host and host in workers:
        out.append(
            f"kubeha:drill:host: {host} is a worker; drill on a control plane (it has the "
            "cluster's pillar and etcd tools) or on a dedicated machine."
        )
    return out


def problems(model: dict) -> list[str]:
    """
    Every problem of the day-2 keys.

    CLI Example:

    .. code-block:: bash

        salt-call kubeha_rules_day2.problems "$(cat model.json)"
    """
    return _numbers(model) + _backup(model) + _drill(model)
