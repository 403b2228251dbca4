"""
The ``kubeha_*`` metrics of a control plane, written for node exporter's textfile collector
(``monitoring:textfile_dir``; node exporter serves them with its own, under the job
``node``). What Prometheus cannot scrape from a component, the rules of
``kubeha_monitoring`` read from here:

- ``kubeha_vip_holder{vip}``: 1 while this node holds the API VIP (no holder or two is an
  outage or a VRRP split brain);
- ``kubeha_certificate_expiry_timestamp_seconds{certificate, kind}``: every certificate of
  ``kubeha_pki.inventory`` (names as ``kubeadm certs check-expiration``);
- ``kubeha_chaos_fault``: 1 while a chaos fault is armed on the node (its revert state file
  exists): the dashboard shades a chaos run's window with it;
- ``kubeha_etcd_backup_last_success_timestamp_seconds``: the last backup that reached
  object storage (``backup_succeeded``, called by the ``kubeha_backup`` runner);
- ``kubeha_textfile_write_timestamp_seconds``: when ``write`` last ran (a stale value means
  the minion's scheduler stopped; node exporter's ``node_textfile_mtime_seconds`` says it too).

``write`` runs from the minion's own scheduler (``kubeha.monitoring.node``,
``textfile_interval`` seconds): it needs neither the master nor the network. Files are
written to a temporary name and renamed, as the collector's documentation asks, so a scrape
never reads half a file.

CLI Example:

.. code-block:: bash

    salt 'cp-*' kubeha_textfile.write /var/lib/prometheus/node-exporter 198.18.0.10
    salt 'cp-*' kubeha_textfile.backup_succeeded 1764355200 /var/lib/prometheus/node-exporter
"""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path

__virtualname__ = "kubeha_textfile"

TEXTFILE_DIR = "/var/lib/prometheus/node-exporter"
CHAOS_STATE_DIR = "/var/lib/kubeha/chaos"  # chaos module's default state_dir


def __virtual__():
    return __virtualname__


def _escape(value: str) -> str:
    """A label value in the text exposition format (backslash, quote, newline escaped)."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _family(name: str, kind: str, help_text: str, samples: list[tuple[dict, float]]) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    for labels, value in samples:
        text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
        number = str(int(value)) if float(value).is_integer() else repr(float(value))
        lines.append(f"{name}{{{text}}} {number}" if text else f"{name} {number}")
    return lines


def _store(directory: str, name: str, lines: list[str]) -> str:
    folder = Path(directory)
    folder.mkdir(mode=0o755, parents=True, exist_ok=True)
    tmp = folder / f".{name}.{os.getpid()}.tmp"  # the collector reads *.prom only
    tmp.write_text("\n".join(lines) + "\n")
    tmp.chmod(0o644)
    tmp.replace(folder / name)
    return str(folder / name)


def _certificates() -> list[tuple[dict, float]]:
    inventory = __salt__["kubeha_pki.inventory"]()
    out = []
    for cert in inventory["certificates"]:
        ends = dt.datetime.fromisoformat(cert["not_after"]).timestamp()
        out.append(({"certificate": cert["name"], "kind": cert["kind"]}, ends))
    return out


def write(textfile_dir=TEXTFILE_DIR, vip="", chaos_state_dir=CHAOS_STATE_DIR):
    """
    Write ``<textfile_dir>/kubeha.prom``: the VIP holder, certificate expiry, the chaos
    marker and the write time. Returns the file and what it holds.

    CLI Example:

    .. code-block:: bash

        salt 'cp-*' kubeha_textfile.write /var/lib/prometheus/node-exporter 198.18.0.10
    """
    lines: list[str] = []
    holder = None
    if vip:
        # The kernel's view, as the self-healing VIP's beacon reads it (None: unreadable,
        # then no sample rather than a wrong one).
        holder = __salt__["vip_probe.holds"](str(vip))
        if holder is not None:
            lines += _family("kubeha_vip_holder", "gauge", "1 while this node holds the API VIP.",
                             [({"vip": str(vip)}, 1 if holder else 0)])  # fmt: skip
    certs = _certificates()
    lines += _family(
        "kubeha_certificate_expiry_timestamp_seconds",
        "gauge",
        "When a certificate of this control plane expires (Unix time).",
        certs,
    )
    faults = sorted(p.stem for p in Path(chaos_state_dir).glob("*.json"))
    lines += _family("kubeha_chaos_fault", "gauge", "1 while a chaos fault is armed on this node.",
                     [({}, 1 if faults else 0)])  # fmt: skip
    lines += _family("kubeha_textfile_write_timestamp_seconds", "gauge",
                     "When kubeha_textfile.write last ran (Unix time).",
                     [({}, round(time.time(), 3))])  # fmt: skip
    path = _store(textfile_dir, "kubeha.prom", lines)
    return {"file": path, "vip_holder": holder, "certificates": len(certs), "chaos": faults}


def backup_succeeded(timestamp, textfile_dir=TEXTFILE_DIR):
    """
    Record the time of the last etcd backup that reached object storage
    (``<textfile_dir>/kubeha_backup.prom``); the ``kubeha_backup`` runner calls it on every
    control plane after a verified upload, so the metric outlives any one node.

    CLI Example:

    .. code-block:: bash

        salt 'cp-*' kubeha_textfile.backup_succeeded 1764355200
    """
    stamp = float(timestamp)
    lines = _family(
        "kubeha_etcd_backup_last_success_timestamp_seconds",
        "gauge",
        "When the last verified etcd backup reached object storage (Unix time).",
        [({}, stamp)],
    )
    return {"file": _store(textfile_dir, "kubeha_backup.prom", lines), "timestamp": stamp}
