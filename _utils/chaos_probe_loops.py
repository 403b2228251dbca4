"""
The chaos probe's loops: what users and controllers see of the API through the VIP while a
fault runs. ``chaos_probe.run`` builds one ``Probe`` with ``probe``, sets its ``t0`` and
``end``, and runs these loops side by side in threads until ``end`` (each request bounded by
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
  each 100 keys); at the end every acknowledged write is read back (``read_back``): one
  missing is a lost acknowledged write;
- **leases**: the kube-controller-manager and kube-scheduler Leases every
  ``lease_interval`` (holder, acquire time, transitions), and the VIP's ARP entry on this
  machine every 100 ms (which node's MAC answers for the VIP).

The records are plain lists and dicts (an open-loop row is ``chaos_probe.REQUEST_COLUMNS``);
the module turns them into the run's result. Requests go through the ``chaos_http``
functions the module hands over (``http``): a util cannot import another, and the loops'
threads could not resolve ``__utils__`` themselves. Loaded as
``__utils__["chaos_probe_loops.*"]``; ``probe`` and ``vip_mac`` are its public functions.
"""

import hashlib
import json
import threading
import time
import urllib.parse
from pathlib import Path

KEYS_PER_OBJECT = 100
WATCH_SILENCE_S = 5.0
LEASES = ("kube-controller-manager", "kube-scheduler")


def probe(run_id, ctx, host, port, opts, *, http) -> "Probe":
    """A probe of ``host:port`` for run ``run_id``; the caller sets ``t0`` and ``end``.

    ``http``: ``chaos_http``'s ``fresh``, ``keep_alive``, ``connect`` and ``deadline``,
    resolved by the caller in the job's thread."""
    return Probe(run_id, ctx, host, port, opts, http=http)


def vip_mac(vip: str, table: str = "/proc/net/arp") -> str:
    """The MAC this machine's ARP table has for the VIP ('' when none or incomplete)."""
    try:
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields and fields[0] == vip:
                return fields[3] if fields[2] != "0x0" else ""
    except OSError:
        pass
    return ""


class Probe:
    """One run's records (``requests``, ``keepalive``, ``watch``, ``writes``, ``leases``,
    ``arp``) and the loops that fill them, each a method run in its own thread."""

    def __init__(self, run_id, ctx, host, port, opts, *, http) -> None:
        self.run_id, self.ctx, self.host, self.port = run_id, ctx, host, port
        # Already-resolved callables: Salt's loader dunders (__utils__) live in a context
        # variable that the probe's own threads do not inherit (chaos_probe.run).
        self.http = http
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
            mac = vip_mac(vip)
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
