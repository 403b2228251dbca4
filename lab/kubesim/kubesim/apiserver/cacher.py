"""The watch cache: what the apiserver can answer while its etcd cannot.

Upstream every resource has a Cacher (staging/src/k8s.io/apiserver/pkg/storage/cacher/
cacher.go, watch_cache.go): a reflector lists the resource from etcd and then follows
etcd's watch; reads that accept any resourceVersion (`resourceVersion=0` gets and
lists) and every watch are served from memory, so they keep answering while etcd is
unreachable (clientv3's watch waits and resumes; the cache just stops moving). Only a
re-list makes a cacher unready again; the reflector then retries until etcd answers.
The apiserver's own informers (bootstrap tokens for authentication, the readyz
`informer-sync` check) read through the same caches.

Here one cache follows the whole /registry prefix with one etcd watch (upstream: one
per resource); what a client can observe is the same: objects, the cache's
resourceVersion (advanced by etcd's progress notifications, as the cacher's
bookmarks are), and an event window of at least 100 events and 75 s
(watch_cache.go defaultLowerBoundCapacity, eventFreshDuration) from which watches
resume; older resourceVersions get 410 Gone "too old resource version".
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable

from .. import klog
from ..etcd import EtcdError
from ..etcdgrpc import BalancedClient, Compacted
from .store import PREFIX, StatusError

WINDOW_EVENTS, WINDOW_SECONDS, WINDOW_MAX = 100, 75.0, 102400
FRESH_WAIT = 3.0  # cacher.go waitUntilFreshAndBlock: resourceVersion too large


class Watcher:
    """One API watch on the cache: its events in order; None closes it."""

    def __init__(self, prefix: bytes) -> None:
        self.prefix = prefix
        self.queue: deque = deque()
        self.cond = threading.Condition()
        self.closed = False

    def put(self, item) -> None:
        with self.cond:
            self.queue.append(item)
            self.cond.notify()

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify()

    def get(self, timeout: float):
        """The next (type, obj, rev) or None once closed; raises TimeoutError."""
        with self.cond:
            end = time.monotonic() + timeout
            while not self.queue and not self.closed:
                left = end - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                self.cond.wait(left)
            return self.queue.popleft() if self.queue else None


def _decode(value: bytes, rev: int) -> dict:
    obj = json.loads(value)
    obj.setdefault("metadata", {})["resourceVersion"] = str(rev)
    return obj


class Cache:
    def __init__(self, etcd: BalancedClient, on_error: Callable[[str], None] = klog.warning):
        self.etcd = etcd
        self.on_error = on_error
        self.lock = threading.Condition()
        self.objects: dict[bytes, tuple[bytes, int]] = {}
        self.rev = 0
        self.ready = False
        self.synced_once = False
        self.events: deque = deque()  # (rev, monotonic, type, key, value, mod_rev)
        self.oldest = 0  # the window holds every event after this revision
        self.watchers: set[Watcher] = set()
        self.stop = threading.Event()
        threading.Thread(target=self._run, daemon=True, name="cacher").start()

    # -- the reflector ---------------------------------------------------------------------
    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                kvs, rev = self.etcd.get_prefix(PREFIX + "/", timeout=60)
            except EtcdError as err:
                self.on_error(f'"cacher: unexpected ListAndWatch error" err="{err}"')
                time.sleep(1)
                continue
            with self.lock:
                self.objects = {kv.key: (kv.value, kv.mod_revision) for kv in kvs}
                self.rev, self.ready, self.synced_once = rev, True, True
                self.events.clear()
                self.oldest = rev
                self.lock.notify_all()
            klog.info('"cacher: initialized"', "cacher.go:460")
            try:
                for at, batch in self.etcd.watch(PREFIX + "/", rev + 1, self.stop):
                    self._apply(at, batch)
            except (Compacted, EtcdError) as err:
                self.on_error(f'"cacher: watch ended, reinitializing" err="{err}"')
            self._unready()

    def _unready(self) -> None:
        with self.lock:
            self.ready = False
            watchers, self.watchers = self.watchers, set()
        for w in watchers:  # cacher.terminateAllWatchers
            w.close()

    def _apply(self, rev: int, batch: list) -> None:
        now = time.monotonic()
        with self.lock:
            for kind, kv, _prev in batch:
                if kind == "DELETE":
                    old = self.objects.pop(kv.key, None)
                    if old is None:
                        continue
                    item = (kv.mod_revision, now, "DELETED", kv.key, old[0], kv.mod_revision)
                else:
                    known = kv.key in self.objects
                    self.objects[kv.key] = (kv.value, kv.mod_revision)
                    change = "MODIFIED" if known else "ADDED"
                    item = (kv.mod_revision, now, change, kv.key, kv.value, kv.mod_revision)
                self.events.append(item)
                for w in self.watchers:
                    if kv.key.startswith(w.prefix):
                        w.put((item[2], item[4], item[5]))
            self.rev = max(self.rev, rev, *(kv.mod_revision for _, kv, _ in batch))
            while len(self.events) > WINDOW_MAX or (
                len(self.events) > WINDOW_EVENTS and now - self.events[0][1] > WINDOW_SECONDS
            ):
                self.oldest = self.events.popleft()[0]
            self.lock.notify_all()

    # -- reads ---------------------------------------------------------------------------------
    def wait_ready(self, deadline: float | None) -> bool:
        with self.lock:
            while not self.ready:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self.lock.wait(0.2 if left is None else min(left, 0.2))
            return True

    def list(self, prefix: str) -> tuple[list[dict], int]:
        raw = prefix.encode()
        with self.lock:
            items = sorted((k, v) for k, v in self.objects.items() if k.startswith(raw))
            rev = self.rev
        return [_decode(value, mod) for _, (value, mod) in items], rev

    def get(self, key: str) -> dict | None:
        with self.lock:
            found = self.objects.get(key.encode())
        return None if found is None else _decode(*found)

    # -- watches ---------------------------------------------------------------------------------
    def watch(self, prefix: str, since: int | None) -> tuple[Watcher, list[tuple], int]:
        """A watcher on `prefix` and the events it starts with: the current objects as
        ADDED when `since` is None (resourceVersion unset or 0), else the window's events
        after `since`."""
        raw = prefix.encode()
        with self.lock:
            if since is not None and since > self.rev:
                end = time.monotonic() + FRESH_WAIT
                while since > self.rev and time.monotonic() < end:
                    self.lock.wait(end - time.monotonic())
                if since > self.rev:
                    raise StatusError(
                        504,
                        "Timeout",
                        f"Timeout: Too large resource version: {since}, current: {self.rev}",
                        {"causes": [{"reason": "ResourceVersionTooLarge"}], "retryAfterSeconds": 1},
                    )
            watcher = Watcher(raw)
            if since is None:
                initial = [
                    ("ADDED", value, mod)
                    for key, (value, mod) in sorted(self.objects.items())
                    if key.startswith(raw)
                ]
            else:
                if since < self.oldest:
                    raise StatusError(
                        410, "Expired", f"too old resource version: {since} ({self.oldest})"
                    )
                initial = [
                    (e[2], e[4], e[5]) for e in self.events if e[0] > since and e[3].startswith(raw)
                ]
            self.watchers.add(watcher)
            return watcher, initial, self.rev

    def forget(self, watcher: Watcher) -> None:
        with self.lock:
            self.watchers.discard(watcher)
