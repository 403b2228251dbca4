"""
The chaos probe: what users and controllers see of the API through the VIP while a fault
runs, measured from a machine that is not a control plane.

Five loops run side by side for ``duration`` seconds (threads; each request bounded by
``timeout``): an open loop of fresh-connection GETs at ``rate`` per second, the same GET on
one kept-alive connection, a watch on the writer's ConfigMaps, a writer whose acknowledged
writes are read back at the end, and the controllers' Leases with the VIP's ARP entry. What
each measures and how is said with the loops, in ``_utils/chaos_probe_loops.py``
(``__utils__["chaos_probe_loops.*"]``); this module runs them, summarizes them while they
run (``progress``), ends them early (``stop``) and writes the result.

``run`` is started asynchronously by the ``kubeha_chaos`` runner and writes its result to
``<runs_dir>/<run_id>.probe.json``; ``fetch`` returns it. Settings (``config.get``)::

    kubeha_chaos:
      runs_dir: /var/lib/kubeha/chaos/runs
"""

import json
import re
import threading
import time
from pathlib import Path

from salt.exceptions import CommandExecutionError

__virtualname__ = "chaos_probe"

RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
REQUEST_COLUMNS = ["seq", "due", "late_ms", "ttfb_ms", "ms", "code", "err", "mac", "connect_ms"]
# How often a running probe writes its summary so far (`progress`).
PROGRESS_EVERY_S = 3.0


def __virtual__():
    return __virtualname__


def _h(name: str):
    return __utils__[f"chaos_http.{name}"]


def _runs_dir() -> Path:
    cfg = __salt__["config.get"]("kubeha_chaos", {}) or {}
    return Path(cfg.get("runs_dir") or "/var/lib/kubeha/chaos/runs")


def _path(run_id: str, kind: str) -> Path:
    if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id):
        raise CommandExecutionError(f"run_id {run_id!r}: letters, digits, '.', '_', '-'")
    return _runs_dir() / f"{run_id}.{kind}.json"


def _write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, separators=(",", ":")))
    tmp.replace(path)


def run(run_id, server=None, duration=60, *, rate=10, timeout=10,
        kubeconfig="/root/.kube/config", path="/api/v1/namespaces/default/pods",
        namespace="default", write_interval=0.2, keepalive_interval=0.5,
        lease_interval=0.5, vip=None, readback_wait=60):  # fmt: skip
    """
    Probe ``server`` (default: the kubeconfig's) for ``duration`` seconds and write the
    result to ``<runs_dir>/<run_id>.probe.json``; returns the counts. Start it with
    ``salt --async`` (the kubeha_chaos runner does) and read it with ``chaos_probe.fetch``.

    CLI Example:

    .. code-block:: bash

        salt --async client chaos_probe.run lab-try-1 https://198.18.0.10:8443 30 vip=198.18.0.10
    """
    out_path = _path(run_id, "probe")
    opts = {"rate": float(rate), "timeout": float(timeout), "path": str(path),
            "namespace": str(namespace), "write_interval": float(write_interval),
            "keepalive_interval": float(keepalive_interval),
            "lease_interval": float(lease_interval), "vip": vip}  # fmt: skip
    if not 0 < opts["rate"] <= 200 or not 0 < float(duration) <= 3600:
        raise CommandExecutionError("rate must be 0-200/s and duration 0-3600 s")
    try:
        ctx, default_server = _h("kubeconfig_context")(kubeconfig)
    except (OSError, ValueError, KeyError, StopIteration) as err:
        _write(_path(run_id, "error"), {"error": f"kubeconfig {kubeconfig}: {err}"})
        raise CommandExecutionError(f"kubeconfig {kubeconfig}: {err}") from err
    host, port = _h("split_server")(server or default_server)
    # Resolved here, in the job's thread: Salt's loader dunders (__utils__) live in a
    # context variable that the probe's own threads do not inherit.
    http = {name: _h(name) for name in ("fresh", "keep_alive", "connect", "deadline")}
    probe = __utils__["chaos_probe_loops.probe"](run_id, ctx, host, port, opts, http=http)
    probe.t0 = time.time()
    probe.end = probe.t0 + float(duration)
    _write(_path(run_id, "started"), {"t0": probe.t0, "end": probe.end})
    loops = [probe.open_loop, probe.keep_alive, probe.lease_poll, probe.arp_watch,
             probe.writer, probe.watch_loop]  # fmt: skip
    threads = [threading.Thread(target=f, daemon=True, name=f.__name__) for f in loops]
    for thread in threads:
        thread.start()
    # `stop` ends a long run early (the upgrade's probe runs until the upgrade is done).
    # While it runs, a summary of the open loop so far every few seconds (``progress``): an
    # upgrade checks its error budget between nodes with it.
    stop_file = _path(run_id, "stop")
    summarized = 0.0
    while time.time() < probe.end and not stop_file.exists():
        if time.time() - summarized >= PROGRESS_EVERY_S:
            summarized = time.time()
            done = [list(r) for r in list(probe.requests) if r[6] or r[3] is not None]
            stats = __utils__["chaos_analysis.request_stats"](done)
            _write(_path(run_id, "progress"), {"t": summarized, "t0": probe.t0, **stats})
        time.sleep(0.2)
    probe.end = min(probe.end, time.time())
    stop_file.unlink(missing_ok=True)
    for thread in threads:
        thread.join(max(0.1, probe.end + 2 * opts["timeout"] + 5 - time.time()))
    hung = [t.name for t in threads if t.is_alive()]
    # In-flight requests end by their own deadline; wait for the last ones.
    settle = time.time() + opts["timeout"] + 2
    while probe.inflight and time.time() < settle:
        time.sleep(0.05)
    back = probe.read_back(float(readback_wait))
    acked = set(probe.acked_at)
    present = back.get("present") or set()
    lost = sorted(acked - present) if "present" in back else None
    result = {
        "run_id": run_id, "server": f"https://{host}:{port}", "t0": probe.t0, "end": probe.end,
        "options": opts, "request_columns": REQUEST_COLUMNS,
        "requests": sorted(probe.requests), "keepalive": probe.keepalive,
        "watch": probe.watch, "writes": sorted(probe.writes), "leases": probe.leases,
        "arp": probe.arp, "hung_loops": hung, "unanswered": probe.inflight,
        "readback": {"error": back.get("error"), "objects": len(back.get("names") or []),
                     "acked": len(acked), "lost": lost,
                     "unacked_but_applied": sorted(present - acked)},
        "watch_delivery": {str(s): round(probe.seen_at[s] - probe.acked_at[s], 3)
                           for s in sorted(acked) if s in probe.seen_at},
        "watch_missed": sorted(s for s in acked if s not in probe.seen_at),
    }  # fmt: skip
    probe.clean_up(back.get("names") or [])
    _write(out_path, result)
    failed = sum(1 for r in probe.requests if r[6])
    return {"run_id": run_id, "file": str(out_path), "requests": len(probe.requests),
            "failed": failed, "lost": result["readback"]["lost"]}  # fmt: skip


def progress(run_id):
    """
    The open loop of a running probe so far: requests answered or failed, failures by
    cause, TTFB percentiles, longest stall (``chaos_analysis.request_stats``), updated every
    few seconds; None before the first summary.

    CLI Example:

    .. code-block:: bash

        salt client chaos_probe.progress upgrade-1
    """
    path = _path(run_id, "progress")
    return json.loads(path.read_text()) if path.exists() else None


def stop(run_id):
    """
    End probe ``run_id`` now rather than at its ``duration``: its loops stop sending, it
    reads back the acknowledged writes and writes its result (``fetch`` it).

    CLI Example:

    .. code-block:: bash

        salt client chaos_probe.stop upgrade-1
    """
    if not RUN_ID.fullmatch(str(run_id)):
        raise CommandExecutionError(f"not a probe run id: {run_id!r}")
    if not _path(run_id, "started").exists():
        return {"stopped": False, "state": status(run_id).get("state")}
    _path(run_id, "stop").write_text("")
    return {"stopped": True}


def status(run_id):
    """
    Whether the probe ``run_id`` has started, finished or failed to start, on this machine.

    CLI Example:

    .. code-block:: bash

        salt client chaos_probe.status lab-try-1
    """
    if _path(run_id, "error").exists():
        return {"state": "failed", **json.loads(_path(run_id, "error").read_text())}
    if _path(run_id, "probe").exists():
        return {"state": "done"}
    if _path(run_id, "started").exists():
        return {"state": "running", **json.loads(_path(run_id, "started").read_text())}
    return {"state": "unknown"}


def fetch(run_id, wait=120, remove=True):
    """
    The result of probe ``run_id``, waiting up to ``wait`` seconds for it to finish.

    CLI Example:

    .. code-block:: bash

        salt client chaos_probe.fetch lab-try-1
    """
    path = _path(run_id, "probe")
    deadline = time.time() + float(wait)
    while not path.exists():
        if _path(run_id, "error").exists():
            raise CommandExecutionError(json.loads(_path(run_id, "error").read_text())["error"])
        if time.time() > deadline:
            raise CommandExecutionError(f"probe {run_id} has no result after {wait} s")
        time.sleep(0.5)
    data = json.loads(path.read_text())
    if remove:
        for kind in ("probe", "started", "error", "progress"):
            _path(run_id, kind).unlink(missing_ok=True)
    return data
