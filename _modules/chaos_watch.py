"""
What one control plane sees while a chaos run goes on, sampled on the node itself: whether
it holds the VIP (every 100 ms, from the kernel's own address table), its keepalived state
(the formula's notify file), its HAProxy's view of every apiserver (runtime API, every
200 ms) and its etcd member's leader status (etcd's metrics listener, every second).

Only changes are recorded, with a heartbeat every 2 s, one JSON line each, appended as they
happen to ``<runs_dir>/<run_id>.watch.jsonl``: a node powered off mid-run keeps what it saw
until then (the file is on disk), and ``fetch`` after the run returns it. The
``kubeha_chaos`` runner starts ``node`` on every control plane with ``salt --async``.

Settings (``config.get``)::

    kubeha_chaos:
      runs_dir: /var/lib/kubeha/chaos/runs
      etcd_metrics: http://127.0.0.1:2381/metrics     # kubeadm's --listen-metrics-urls
"""

import json
import re
import time
import urllib.request
from pathlib import Path

from salt.exceptions import CommandExecutionError

__virtualname__ = "chaos_watch"

RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
METRIC = re.compile(r"^(etcd_server_is_leader|etcd_server_has_leader|"
                    r"etcd_server_leader_changes_seen_total) ([0-9.e+]+)$", re.M)  # fmt: skip


def __virtual__():
    return __virtualname__


def _setting(name: str, default: str) -> str:
    return (__salt__["config.get"]("kubeha_chaos", {}) or {}).get(name) or default


def _path(run_id: str) -> Path:
    if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id):
        raise CommandExecutionError(f"run_id {run_id!r}: letters, digits, '.', '_', '-'")
    return Path(_setting("runs_dir", "/var/lib/kubeha/chaos/runs")) / f"{run_id}.watch.jsonl"


def _holds_address(address: str, fib_trie: str) -> bool:
    """Whether ``/proc/net/fib_trie`` lists ``address`` as a local (host) address of the
    main or local table (``_utils/kubeha_fib.py``). Read without forking ``ip``."""
    return __utils__["kubeha_fib.local_address"](address, fib_trie)


def _vip(address: str) -> bool | None:
    try:
        return _holds_address(address, Path("/proc/net/fib_trie").read_text())
    except OSError:
        return None


def _keepalived(instance: str) -> str | None:
    notify = Path("/run/kubeha/keepalived") / f"{instance}.json"
    try:
        return json.loads(notify.read_text()).get("state")
    except (OSError, ValueError):
        return None


def _haproxy() -> dict | str:
    try:
        servers = __salt__["haproxy_runtime.servers"]()
    except Exception as err:  # noqa: BLE001 - a node without HAProxy, or it is restarting
        return f"unreadable: {type(err).__name__}"
    return {s["name"]: f"{s['status']}/{s['check_status']}" for s in servers}


def _parse_etcd_metrics(text: str) -> dict:
    """Leader status from etcd's Prometheus text (etcd server/etcdserver/metrics.go)."""
    found = {name: float(value) for name, value in METRIC.findall(text)}
    return {
        "leader": found.get("etcd_server_is_leader") == 1.0,
        "has_leader": found.get("etcd_server_has_leader") == 1.0,
        "changes": int(found.get("etcd_server_leader_changes_seen_total", 0)),
    }


def _etcd(url: str) -> dict | str:
    try:
        with urllib.request.urlopen(url, timeout=0.5) as resp:  # noqa: S310 - local http only
            return _parse_etcd_metrics(resp.read(4 << 20).decode(errors="replace"))
    except OSError as err:
        return f"down: {type(err).__name__}"


def node(run_id, duration, vip, instance="VI_1"):
    """
    Sample this node for ``duration`` seconds and record every change; returns how many
    lines it wrote. Start it asynchronously; read it back with ``chaos_watch.fetch``.

    CLI Example:

    .. code-block:: bash

        salt --async 'cp-*' chaos_watch.node lab-try-1 30 198.18.0.10
    """
    path = _path(run_id)
    if not 0 < float(duration) <= 3600:
        raise CommandExecutionError("duration must be 0-3600 s")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    end = time.time() + float(duration)
    url = _setting("etcd_metrics", "http://127.0.0.1:2381/metrics")
    last: dict = {}
    lines = 0
    due = {"hap": 0.0, "etcd": 0.0, "alive": 0.0}
    with open(path, "a", buffering=1) as out:

        def record(kind: str, value, now: float) -> None:
            nonlocal lines
            out.write(json.dumps({"t": round(now, 4), "k": kind, "v": value}) + "\n")
            lines += 1

        while True:
            now = time.time()
            samples = {"vip": _vip(vip), "ka": _keepalived(instance)}
            if now >= due["hap"]:
                samples["hap"] = _haproxy()
                due["hap"] = now + 0.2
            if now >= due["etcd"]:
                samples["etcd"] = _etcd(url)
                due["etcd"] = now + 1.0
            for kind, value in samples.items():
                if last.get(kind, "unset") != value:
                    last[kind] = value
                    record(kind, value, now)
            if now >= due["alive"]:
                record("alive", None, now)
                due["alive"] = now + 2.0
            if now >= end:
                record("end", None, now)
                return {"run_id": run_id, "lines": lines, "file": str(path)}
            time.sleep(max(0.0, min(0.1, end - time.time())))


def fetch(run_id, remove=True):
    """
    What ``node`` recorded for ``run_id`` on this node (also after a power cycle, up to
    the moment the power went).

    CLI Example:

    .. code-block:: bash

        salt 'cp-*' chaos_watch.fetch lab-try-1
    """
    path = _path(run_id)
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue  # a line cut by a power-off
    if remove:
        path.unlink(missing_ok=True)
    return records


def discard(run_id):
    """
    Remove what ``node`` recorded for ``run_id`` (the runner fetches with ``remove=False``
    and discards once every node answered: a fetch whose answer is lost on the way back,
    e.g. from a node just back from isolation, can be asked again). True if there was a
    record.

    CLI Example:

    .. code-block:: bash

        salt 'cp-*' chaos_watch.discard lab-try-1
    """
    path = _path(run_id)
    existed = path.exists()
    path.unlink(missing_ok=True)
    return existed
