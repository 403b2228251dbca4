"""
Beacon: the local etcd member's database holds more free (fragmented) space than a
threshold: ``dbSize - dbSizeInUse`` (etcd's ``etcd_mvcc_db_total_size_in_bytes`` minus
``etcd_mvcc_db_total_size_in_use_in_bytes``), read from the member's plain-HTTP metrics
listener (kubeadm sets ``--listen-metrics-urls=http://127.0.0.1:2381``) with a 2 s bound,
so it never hangs the minion.

Event ``salt/beacon/<minion>/kubeha_etcd_frag/fragmented`` with the sizes, when the member
crosses the threshold and again after ``renotify`` seconds while it stays above; the
reactor (``salt/reactor/etcd_defrag.sls``) starts ``orch.etcd_defrag``, whose runner keeps
one defrag per cluster at a time and none within ``defrag:cooldown`` of the last.

Configured by ``kubeha.day2.beacons`` on every control plane::

    beacons:
      kubeha_etcd_frag:
        - cluster: lab
        - fragmented_mb: 512
        - metrics_url: http://127.0.0.1:2381/metrics
        - renotify: 3600
        - interval: 600
"""

import re
import time
import urllib.error
import urllib.request

import salt.utils.beacons

__virtualname__ = "kubeha_etcd_frag"

CLUSTER = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
METRICS = {
    "etcd_mvcc_db_total_size_in_bytes": "db_size",
    "etcd_mvcc_db_total_size_in_use_in_bytes": "db_size_in_use",
    "etcd_server_quota_backend_bytes": "quota",
}
SALT_KEYS = ("interval", "disable_during_state_run", "enabled", "beacon_module", "_beacon_name")
MIB = 1024 * 1024


def __virtual__():
    return __virtualname__


def validate(config):
    """(True, message) for a usable configuration, else (False, what is wrong)."""
    if not isinstance(config, list):
        return False, "Configuration for kubeha_etcd_frag beacon must be a list of dicts."
    cfg = salt.utils.beacons.list_to_dict(config)
    unknown = sorted(set(cfg) - {"cluster", "fragmented_mb", "metrics_url", "renotify",
                                 "timeout", *SALT_KEYS})  # fmt: skip
    if unknown:
        return False, f"kubeha_etcd_frag beacon: unknown option(s) {unknown}"
    if not isinstance(cfg.get("cluster"), str) or not CLUSTER.fullmatch(cfg["cluster"]):
        return False, "kubeha_etcd_frag beacon: cluster must be the cluster's name (a DNS label)"
    limit = cfg.get("fragmented_mb", 512)
    if isinstance(limit, bool) or not isinstance(limit, (int, float)) or limit <= 0:
        return False, "kubeha_etcd_frag beacon: fragmented_mb must be a positive number"
    url = cfg.get("metrics_url", "http://127.0.0.1:2381/metrics")
    if not isinstance(url, str) or not re.fullmatch(r"https?://[A-Za-z0-9.:\[\]-]+(/\S*)?", url):
        return False, "kubeha_etcd_frag beacon: metrics_url must be an http(s) URL"
    return True, "Valid beacon configuration."


def parse(text: str) -> dict:
    """The sizes from Prometheus text exposition (first sample of each metric)."""
    out: dict = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, _, rest = line.partition(" ")
        name = name.split("{", 1)[0]
        if name in METRICS and METRICS[name] not in out:
            try:
                out[METRICS[name]] = int(float(rest.split()[0]))
            except (ValueError, IndexError):
                continue
    return out


def beacon(config):
    """The event above; an empty list when below the threshold or unchanged."""
    cfg = salt.utils.beacons.list_to_dict(config)
    url = cfg.get("metrics_url", "http://127.0.0.1:2381/metrics")
    limit = int(float(cfg.get("fragmented_mb", 512)) * MIB)
    renotify = float(cfg.get("renotify", 3600))
    state = __context__.setdefault("kubeha_etcd_frag.sent", {})
    try:
        with urllib.request.urlopen(url, timeout=float(cfg.get("timeout", 2))) as resp:  # noqa: S310 - config URL, loopback
            sizes = parse(resp.read(4 << 20).decode(errors="replace"))
    except (urllib.error.URLError, OSError):
        return []  # etcd down or restarting: nothing to say about fragmentation
    if "db_size" not in sizes or "db_size_in_use" not in sizes:
        return []
    free = sizes["db_size"] - sizes["db_size_in_use"]
    now = time.time()
    if free <= limit:
        state.pop("at", None)
        return []
    if state.get("at") and now - state["at"] < renotify:
        return []
    state["at"] = now
    return [
        {
            "tag": "fragmented",
            "cluster": cfg["cluster"],
            "fragmented_bytes": free,
            "threshold_bytes": limit,
            **sizes,
        }
    ]
