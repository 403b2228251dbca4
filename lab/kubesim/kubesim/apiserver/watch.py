"""Watch streams (?watch=true), served from the watch cache (cacher.py) as upstream serves
every watch (cacher.go Watch): chunked JSON events {"type": ADDED|MODIFIED|DELETED|ERROR,
"object": ...}.

resourceVersion unset or "0" starts with synthetic ADDED events for what the cache holds;
a resourceVersion N replays the cache's events after N (410 Expired as an ERROR event
when N has left the window). Without timeoutSeconds a watch lasts
--min-request-timeout x (1 + rand) (endpoints/handlers/get.go ListResource). A watch is
long-running: no request deadline, not counted in flight, not waited for on shutdown
unless --shutdown-watch-termination-grace-period is set. While the cache is being
(re)initialized a watch waits for it (1.28-1.30) or, from 1.31
(ResilientWatchCacheInitialization), gets 429 "storage is (re)initializing".
"""

from __future__ import annotations

import contextlib
import json
import random
import time
from http.server import BaseHTTPRequestHandler

from .. import labelsel
from .api import Route
from .app import Apiserver
from .store import StatusError, key_of


def _timeout(app: Apiserver, query: dict) -> float:
    if query.get("timeoutSeconds"):
        return float(query["timeoutSeconds"])
    return app.min_request_timeout * (random.random() + 1.0)


def serve(handler: BaseHTTPRequestHandler, app: Apiserver, route: Route, query: dict) -> None:
    res = route.res
    ns = route.namespace if res.namespaced else None
    try:
        labels = labelsel.parse_labels(query.get("labelSelector"))
        fields = labelsel.parse_fields(query.get("fieldSelector"))
        rv = query.get("resourceVersion") or ""
        since = None if rv in ("", "0") else int(rv)
    except ValueError as err:
        raise StatusError(400, "BadRequest", str(err)) from err
    timeout = _timeout(app, query)
    end = time.monotonic() + timeout
    cache = app.cache
    if not cache.ready:
        if (app.version.major, app.version.minor) >= (1, 31):
            raise StatusError(
                429,
                "TooManyRequests",
                "storage is (re)initializing",
                {"retryAfterSeconds": 1},
            )
        if not cache.wait_ready(end):
            raise StatusError(504, "Timeout", "Timeout: watch cache is not ready")
    try:
        watcher, initial, _rev = cache.watch(key_of(res, ns), since)
        error = None
    except StatusError as err:
        if err.code != 410:
            raise
        watcher, initial, error = None, [], err

    def wanted(obj: dict) -> bool:
        return labelsel.match_labels(
            labels, obj.get("metadata", {}).get("labels")
        ) and labelsel.match_fields(fields, obj)

    def emit(kind: str, obj: dict) -> None:
        obj.setdefault("kind", res.kind if kind != "ERROR" else "Status")
        obj.setdefault("apiVersion", res.group_version if kind != "ERROR" else "v1")
        data = json.dumps({"type": kind, "object": obj}).encode() + b"\n"
        handler.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        handler.wfile.flush()

    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Transfer-Encoding", "chunked")
    handler.send_header("Cache-Control", "no-cache, private")
    handler.end_headers()
    try:
        if error is not None:
            emit("ERROR", error.status())
        for kind, value, mod in initial:
            obj = json.loads(value)
            obj.setdefault("metadata", {})["resourceVersion"] = str(mod)
            if wanted(obj):
                emit(kind, obj)
        while watcher is not None:
            try:
                item = watcher.get(max(0.0, end - time.monotonic()))
            except TimeoutError:
                break
            if item is None:  # the cache re-lists: terminateAllWatchers
                break
            kind, value, mod = item
            obj = json.loads(value)
            obj.setdefault("metadata", {})["resourceVersion"] = str(mod)
            if wanted(obj):
                emit(kind, obj)
        handler.wfile.write(b"0\r\n\r\n")
    except (OSError, ValueError):
        pass
    finally:
        if watcher is not None:
            cache.forget(watcher)
        with contextlib.suppress(OSError):
            handler.wfile.flush()
        handler.close_connection = True
