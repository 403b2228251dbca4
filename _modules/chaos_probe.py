"""
The chaos probe: what users and controllers see of the API through the VIP while a fault
runs, measured from a machine that is not a control plane.

Five loops run side by side for ``duration`` seconds (threads; each request bounded by
``timeout``):

- **open loop**: ``GET path`` at ``rate`` per second, each on a fresh TCP + TLS connection
  (as every kubectl invocation), each sent on its own schedule whether or not earlier ones
  have answered -- a hung request cannot hide the ones behind it (no coordinated omission;
  wrk2 and vegeta measure the same way). In-flight requests are capped at
  ``rate x (timeout + 1)``; a request the cap refuses is recorded as ``probe overloaded``;
- **keep-alive**: the same GET every ``keepalive_interval`` on one reused connection;
- **watch**: a watch on the writer's ConfigMaps: every event's arrival, stalls, ends and
  re-lists (after 410 Expired);
- **writer**: a merge patch every ``write_interval`` adding key ``s<seq>`` (a new ConfigMap
  each 100 keys); at the end every acknowledged write is read back: one missing is a lost
  acknowledged write;
- **leases**: the kube-controller-manager and kube-scheduler Leases every
  ``lease_interval`` (holder, acquire time, transitions), and the VIP's ARP entry on this
  machine every 100 ms (which node's MAC answers for the VIP).

``run`` is started asynchronously by the ``kubeha_chaos`` runner and writes its result to
``<runs_dir>/<run_id>.probe.json``; ``fetch`` returns it. Settings (``config.get``)::

    kubeha_chaos:
      runs_dir: /var/lib/kubeha/chaos/runs
"""

import hashlib
import json
import re
import threading
import time
import urllib.parse
from pathlib import Path

from salt.exceptions import CommandExecutionError

__virtualname__ = "chaos_probe"

RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
KEYS_PER_OBJECT = 100
WATCH_SILENCE_S = 5.0
LEASES = ("kube-controller-manager", "kube-scheduler")
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


def _vip_mac(vip: str, table: str = "/proc/net/arp") -> str:
    """The MAC this machine's ARP table has for the VIP ('' when none or incomplete)."""
    try:
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields and fields[0] == vip:
                return fields[3] if fields[2] != "0x0" else ""
    except OSError:
        pass
    return ""


class _Probe:
    def __init__(self, run_id, ctx, host, port, opts) -> None:
        self.run_id, self.ctx, self.host, self.port = run_id, ctx, host, port
        # Resolved here, in the job's thread: Salt's loader dunders (__utils__) live in a
        # context variable that the probe's own threads do not inherit.
        self.http = {name: _h(name) for name in ("fresh", "keep_alive", "connect", "deadline")}
        self.o = opts
        # A label value is at most 63 characters; the run id may be longer.
        self.label = hashlib.sha256(run_id.encode()).hexdigest()[:16]
        self.selector = urllib.parse.quote(f"kubeha-chaos={self.label}")
        self.ns = opts["namespace"]
        self.requests, self.keepalive, self.watch, self.writes = [], [], [], []
        self.leases, self.arp, self.notes = [], [], []
        self.inflight = 0
        self.lock = threading.Lock()
        self.mac = ""
        self.acked_at: dict[int, float] = {}
        self.seen_at: dict[int, float] = {}

    # -- the open loop -----------------------------------------------------------------
    def open_loop(self) -> None:
        rate, cap = self.o["rate"], int(self.o["rate"] * (self.o["timeout"] + 1)) + 1
        seq = 0
        while True:
            due = self.t0 + seq / rate
            if due >= self.end:
                return
            time.sleep(max(0.0, due - time.time()))
            with self.lock:
                full = self.inflight >= cap
                self.inflight += 0 if full else 1
            if full:
                self.requests.append([seq, round(due, 4), 0, None, None, None,
                                      "probe overloaded", self.mac, None])  # fmt: skip
            else:
                threading.Thread(target=self._one, args=(seq, due), daemon=True).start()
            seq += 1

    def _one(self, seq: int, due: float) -> None:
        try:
            late = (time.time() - due) * 1000.0
            mac = self.mac
            res = self.http["fresh"](
                self.ctx, self.host, self.port, self.o["path"], self.o["timeout"]
            )
            self.requests.append([seq, round(due, 4), round(late, 1), res["ttfb_ms"], res["ms"],
                                  res["code"], res["err"], mac, res.get("connect_ms")])  # fmt: skip
        finally:
            with self.lock:
                self.inflight -= 1

    # -- keep-alive, leases, ARP ---------------------------------------------------------
    def _every(self, interval: float, step) -> None:
        tick = self.t0
        while tick < self.end:
            time.sleep(max(0.0, tick - time.time()))
            step()
            tick = max(tick + interval, time.time())

    def keep_alive(self) -> None:
        conn = self.http["keep_alive"](self.ctx, self.host, self.port, self.o["timeout"])

        def step():
            sent = time.time()
            res = conn.request("GET", self.o["path"])
            self.keepalive.append([round(sent, 4), res["ttfb_ms"], res["ms"], res["code"],
                                   res["err"], res["new_conn"]])  # fmt: skip

        self._every(self.o["keepalive_interval"], step)
        conn.close()

    def lease_poll(self) -> None:
        conn = self.http["keep_alive"](self.ctx, self.host, self.port, min(self.o["timeout"], 2.0))
        last: dict[str, tuple] = {}

        def step():
            for name in LEASES:
                sent = time.time()
                res = conn.request(
                    "GET", f"/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/{name}"
                )
                if res["err"]:
                    self.leases.append({"t": round(sent, 4), "lease": name, "err": res["err"]})
                    continue
                spec = json.loads(res["body"]).get("spec") or {}
                now = (spec.get("holderIdentity"), spec.get("acquireTime"),
                       spec.get("leaseTransitions"))  # fmt: skip
                if last.get(name) != now:
                    last[name] = now
                    self.leases.append({"t": round(sent, 4), "lease": name, "holder": now[0],
                                        "acquire": now[1], "transitions": now[2],
                                        "renew": spec.get("renewTime")})  # fmt: skip

        self._every(self.o["lease_interval"], step)
        conn.close()

    def arp_watch(self) -> None:
        vip = self.o.get("vip")
        if not vip:
            return

        def step():
            mac = _vip_mac(vip)
            if mac != self.mac or not self.arp:
                self.mac = mac
                self.arp.append([round(time.time(), 4), mac])

        self._every(0.1, step)

    # -- writer and watch ----------------------------------------------------------------
    def _object(self, seq: int) -> str:
        return f"kubeha-chaos-{self.label}-{seq // KEYS_PER_OBJECT}"

    def writer(self) -> None:
        conn = self.http["keep_alive"](self.ctx, self.host, self.port, self.o["timeout"])
        base = f"/api/v1/namespaces/{self.ns}/configmaps"
        state = {"seq": 0}

        def step():
            state["seq"] += 1
            seq = state["seq"]
            name, key = self._object(seq), f"s{seq}"
            sent = time.time()
            if seq == 1 or seq % KEYS_PER_OBJECT == 0:
                doc = {"metadata": {"name": name, "labels": {"kubeha-chaos": self.label}},
                       "data": {key: str(sent)}}  # fmt: skip
                res = conn.request("POST", base, json.dumps(doc).encode(),
                                   {"Content-Type": "application/json"})  # fmt: skip
                if res["code"] != 409:
                    self._wrote(seq, sent, res)
                    return
            res = conn.request("PATCH", f"{base}/{name}",
                               json.dumps({"data": {key: str(sent)}}).encode(),
                               {"Content-Type": "application/merge-patch+json"})  # fmt: skip
            self._wrote(seq, sent, res)

        self._every(self.o["write_interval"], step)
        conn.close()

    def _wrote(self, seq: int, sent: float, res: dict) -> None:
        if not res["err"]:
            self.acked_at[seq] = sent + res["ms"] / 1000.0
        self.writes.append([seq, round(sent, 4), res["ms"], res["code"], res["err"]])

    def watch_loop(self) -> None:
        base = f"/api/v1/namespaces/{self.ns}/configmaps"
        rv = None
        while time.time() < self.end:
            if rv is None:
                listing = f"{base}?labelSelector={self.selector}"
                res = self.http["fresh"](self.ctx, self.host, self.port, listing, self.o["timeout"])
                self.watch.append([round(time.time(), 4), "list", res["err"] or "ok"])
                if res["err"]:
                    time.sleep(0.5)
                    continue
                rv = json.loads(res["body"])["metadata"]["resourceVersion"]
            rv = self._watch_once(base, rv)
            time.sleep(0.2)

    def _watch_once(self, base: str, rv: str):
        """One watch request from ``rv``; the resourceVersion to resume from (None: re-list)."""
        remaining = int(max(1, self.end - time.time()))
        path = (f"{base}?watch=1&resourceVersion={rv}&labelSelector={self.selector}"
                f"&timeoutSeconds={remaining}")  # fmt: skip
        deadline = self.http["deadline"](self.o["timeout"])
        conn = None
        try:
            conn, _ = self.http["connect"](self.ctx, self.host, self.port, deadline)
            conn.sock.settimeout(deadline.left())
            conn.request("GET", path)
            resp = conn.getresponse()
            if resp.status != 200:
                self.watch.append([round(time.time(), 4), "refused", f"http {resp.status}"])
                return None if resp.status == 410 else rv
            self.watch.append([round(time.time(), 4), "open", "ok"])
            conn.sock.settimeout(WATCH_SILENCE_S)
            while time.time() < self.end:
                line = resp.readline()
                if not line:
                    self.watch.append([round(time.time(), 4), "closed", "eof"])
                    return rv
                event = json.loads(line)
                obj = event.get("object") or {}
                if event.get("type") == "ERROR":
                    self.watch.append([round(time.time(), 4), "error", str(obj.get("code"))])
                    return None if obj.get("code") == 410 else rv
                rv = (obj.get("metadata") or {}).get("resourceVersion", rv)
                now = time.time()
                new = [int(k[1:]) for k in (obj.get("data") or {}) if k[1:].isdigit()]
                for seq in new:
                    self.seen_at.setdefault(seq, now)
                self.watch.append([round(now, 4), "event", event.get("type")])
            return rv
        except Exception as err:  # noqa: BLE001 - every way a watch ends is recorded
            kind = (
                "stalled" if "timed out" in str(err) or isinstance(err, TimeoutError) else "broken"
            )
            self.watch.append([round(time.time(), 4), kind, type(err).__name__])
            return rv
        finally:
            if conn is not None:
                conn.close()

    def read_back(self, wait: float) -> dict:
        """Every acknowledged write must be in the ConfigMaps: read them until it answers."""
        base = f"/api/v1/namespaces/{self.ns}/configmaps?labelSelector={self.selector}"
        deadline = time.time() + wait
        while True:
            res = self.http["fresh"](self.ctx, self.host, self.port, base, self.o["timeout"])
            if not res["err"]:
                items = json.loads(res["body"]).get("items") or []
                present = {int(k[1:]) for i in items for k in (i.get("data") or {})
                           if k[1:].isdigit()}  # fmt: skip
                return {"names": [i["metadata"]["name"] for i in items], "present": present}
            if time.time() > deadline:
                return {"error": res["err"]}
            time.sleep(1)

    def clean_up(self, names: list[str]) -> None:
        for name in names:
            self.http["fresh"](self.ctx, self.host, self.port,
                        f"/api/v1/namespaces/{self.ns}/configmaps/{name}", self.o["timeout"],
                        method="DELETE")  # fmt: skip


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
    probe = _Probe(run_id, ctx, host, port, opts)
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
