"""
Beacon: certificates of a kubeadm control plane with fewer days left than a threshold.

Reads the files (``kubeha_pki.expiring``: ``cryptography``, no subprocess, no network), so
it never blocks. Events, only when something changed or ``renotify`` seconds passed
(state in ``__context__``):

- ``salt/beacon/<minion>/kubeha_certs/expiring``: renewable certificates (kubeadm's leaf
  certificates and kubeconfig client certificates) below the threshold. The reactor
  (``salt/reactor/certs.sls``) starts ``orch.certs_renew`` for ``cluster``.
- ``salt/beacon/<minion>/kubeha_certs/ca-expiring``: a CA below the threshold. Reported
  only: no reactor acts on it (a CA is replaced by a planned rotation, not renewed).

The kubelet's own client certificate is rotated by the kubelet; it rides along in the data
(``kubelet``) but never triggers anything.

Configured by ``kubeha.day2.beacons`` on every control plane (``beacon.present``)::

    beacons:
      kubeha_certs:
        - cluster: lab
        - renew_before_days: 30
        - renotify: 21600
        - interval: 3600
        - disable_during_state_run: true
"""

import re
import time

import salt.utils.beacons

__virtualname__ = "kubeha_certs"

CLUSTER = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
PATH_KEYS = ("pki_dir", "kubeconfig_dir", "kubelet_cert")
SALT_KEYS = ("interval", "disable_during_state_run", "enabled", "beacon_module", "_beacon_name")


def __virtual__():
    return __virtualname__


def validate(config):
    """(True, message) for a usable configuration, else (False, what is wrong)."""
    if not isinstance(config, list):
        return False, "Configuration for kubeha_certs beacon must be a list of dicts."
    cfg = salt.utils.beacons.list_to_dict(config)
    unknown = sorted(set(cfg) - {"cluster", "renew_before_days", "renotify", *PATH_KEYS,
                                 *SALT_KEYS})  # fmt: skip
    if unknown:
        return False, f"kubeha_certs beacon: unknown option(s) {unknown}"
    if not isinstance(cfg.get("cluster"), str) or not CLUSTER.fullmatch(cfg["cluster"]):
        return False, "kubeha_certs beacon: cluster must be the cluster's name (a DNS label)"
    days = cfg.get("renew_before_days", 30)
    if isinstance(days, bool) or not isinstance(days, (int, float)) or not 0 < days <= 3650:
        return False, "kubeha_certs beacon: renew_before_days must be a number of days, 1-3650"
    renotify = cfg.get("renotify", 21600)
    if isinstance(renotify, bool) or not isinstance(renotify, (int, float)) or renotify < 60:
        return False, "kubeha_certs beacon: renotify must be at least 60 seconds"
    for key in PATH_KEYS:
        if key in cfg and not (isinstance(cfg[key], str) and cfg[key].startswith("/")):
            return False, f"kubeha_certs beacon: {key} must be an absolute path"
    return True, "Valid beacon configuration."


def beacon(config):
    """The events above; an empty list when nothing changed."""
    cfg = salt.utils.beacons.list_to_dict(config)
    days = float(cfg.get("renew_before_days", 30))
    renotify = float(cfg.get("renotify", 21600))
    paths = {k: cfg[k] for k in PATH_KEYS if k in cfg}
    report = __salt__["kubeha_pki.expiring"](days, **paths)
    state = __context__.setdefault("kubeha_certs.sent", {})
    now = time.time()
    events = []
    for group, tag in (("renewable", "expiring"), ("ca", "ca-expiring")):
        found = report[group]
        if not found:
            state.pop(tag, None)
            continue
        key = (tuple(sorted(c["name"] for c in found)), days)
        sent = state.get(tag)
        if sent and sent["key"] == key and now - sent["at"] < renotify:
            continue
        state[tag] = {"key": key, "at": now}
        events.append(
            {
                "tag": tag,
                "cluster": cfg["cluster"],
                "renew_before_days": days,
                "certificates": found,
                "min_days_left": min(c["days_left"] for c in found),
                "kubelet": report["kubelet"],
                "errors": report["errors"],
            }
        )
    return events
