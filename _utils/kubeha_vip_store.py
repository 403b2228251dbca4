"""
The ``kubeha_vip`` runner's records on the master, per cluster, in
``<cachedir>/kubeha/vip/<cluster>/`` (root only, no secrets):

- ``views.json``: the latest report of each control plane's beacon, with a version that
  grows with every report (a decision in progress sees whether a newer one came);
- ``state.json``: the override in force (its plan, cause and since when the cause is clear),
  the last move, the holders seen before;
- ``history.jsonl``: every decision, newest last; ``events.jsonl``: every beacon report
  received (both trimmed to their last lines);
- ``model.json``: what the runner needs of the cluster's model, cached for a minute;
- ``decide.lock``: one decision at a time (``flock``: released when its holder dies, and
  exclusive between the reactor's threads too, each opening the file itself).

Loaded as ``__utils__["kubeha_vip_store.<name>"]``.
"""

import contextlib
import fcntl
import json
import os
import re
import time
from pathlib import Path

from salt.exceptions import CommandExecutionError

CLUSTER = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
KEEP_LINES = {"history": 2000, "events": 5000}


def folder(opts: dict, cluster: str) -> Path:
    if not isinstance(cluster, str) or not CLUSTER.fullmatch(cluster):
        raise CommandExecutionError(f"not a cluster name: {cluster!r}")
    path = Path(opts["cachedir"]) / "kubeha" / "vip" / cluster
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def clusters(opts: dict) -> list[str]:
    root = Path(opts["cachedir"]) / "kubeha" / "vip"
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def read(opts: dict, cluster: str, name: str, default=None):
    try:
        return json.loads((folder(opts, cluster) / f"{name}.json").read_text())
    except (OSError, ValueError):
        return default


def write(opts: dict, cluster: str, name: str, data) -> None:
    path = folder(opts, cluster) / f"{name}.json"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{id(data)}.tmp")
    tmp.write_text(json.dumps(data, sort_keys=True, default=str))
    tmp.chmod(0o600)
    tmp.replace(path)


@contextlib.contextmanager
def locked(opts: dict, cluster: str, name: str, wait: float = 0.0):
    """Hold ``<name>.lock`` for the ``with`` block, which gets True; False (not held) when
    another holder kept it for ``wait`` seconds (0: do not wait)."""
    path = folder(opts, cluster) / f"{name}.lock"
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    deadline = time.monotonic() + float(wait)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                got = True
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    got = False
                    break
                time.sleep(0.05)
        yield got
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def append(opts: dict, cluster: str, kind: str, entry: dict) -> None:
    """One line in ``<kind>.jsonl``, the file trimmed to its last lines now and then."""
    path = folder(opts, cluster) / f"{kind}.jsonl"
    line = json.dumps(entry, sort_keys=True, default=str) + "\n"
    keep = KEEP_LINES.get(kind, 1000)
    with locked(opts, cluster, f"{kind}-file", wait=5):
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(line)
        os.chmod(path, 0o600)
        if path.stat().st_size > keep * 600:
            kept = path.read_text().splitlines()[-keep:]
            path.write_text("\n".join(kept) + "\n")


def lines(opts: dict, cluster: str, kind: str, *, start=None, end=None, count=None) -> list:
    path = folder(opts, cluster) / f"{kind}.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        at = float(entry.get("at") or 0)
        if (start is None or at >= float(start)) and (end is None or at <= float(end)):
            out.append(entry)
    return out[-int(count) :] if count else out


def store_view(opts: dict, cluster: str, node: str, report: dict, received: float) -> dict:
    """Keep ``report`` as ``node``'s latest unless an equal or newer one from the same
    beacon is already kept (reports can arrive out of order through the reactor's
    threads); returns the views with their new version."""
    with locked(opts, cluster, "views", wait=5):  # a stuck holder costs one write race
        views = read(opts, cluster, "views", {"version": 0, "nodes": {}})
        old = views["nodes"].get(node) or {}
        stale = old.get("boot") == report.get("boot") and (old.get("seq") or 0) >= (
            report.get("seq") or 0
        )
        if not stale:
            views["nodes"][node] = {**report, "received": round(received, 3)}
            views["version"] += 1
            write(opts, cluster, "views", views)
        return views


def views(opts: dict, cluster: str, nodes: list[str], unreachable=None) -> dict:
    """The latest view of each node; None for a node that did not answer the runner since
    its last report (powered off, cut off: its last report no longer tells the truth)."""
    kept = (read(opts, cluster, "views") or {}).get("nodes") or {}
    out = {}
    for node in nodes:
        report = kept.get(node) or {}
        gone = (unreachable or {}).get(node)
        out[node] = None if gone and (report.get("received") or 0) <= gone else report.get("view")
    return out


def summary(view: dict) -> dict:
    """A report in one line of ``events.jsonl`` (and of ``kubeha_vip.status``)."""
    view = view or {}
    return {
        "holds": view.get("holds_vip"),
        "keepalived": view.get("keepalived"),
        "apiserver": (view.get("apiserver") or {}).get("state"),
        "vip": [(view.get("vip") or {}).get("state"), (view.get("vip") or {}).get("ms")],
        "haproxy": (view.get("haproxy") or {}).get("up"),
        "peers": {
            n: [p.get("state"), p.get("rtt_ms"), p.get("loss_pct")]
            for n, p in (view.get("peers") or {}).items()
        },  # fmt: skip
        "vrrp_from": view.get("vrrp_from"),
        "etcd_leader": view.get("etcd_leader"),  # None unless vip_heal:move_etcd_leader
    }
