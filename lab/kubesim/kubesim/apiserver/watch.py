"""Watch streams (?watch=true): chunked JSON events from etcd's watch."""

from __future__ import annotations

import contextlib
import json
from http.server import BaseHTTPRequestHandler

from .. import labelsel
from ..etcd import EtcdError
from .api import Route
from .app import Apiserver
from .store import StatusError, key_of


def serve(handler: BaseHTTPRequestHandler, app: Apiserver, route: Route, query: dict) -> None:
    """A watch stream: chunked JSON lines {"type": ADDED|MODIFIED|DELETED, "object": ...}.

    resourceVersion "" or "0" starts with synthetic ADDED events for what exists
    (storage/cacher semantics), then follows etcd's watch from the list revision;
    timeoutSeconds ends the stream (default 30 min, as the apiserver's min-request-timeout
    randomisation would).
    """
    res = route.res
    ns = route.namespace if res.namespaced else None
    timeout = float(query.get("timeoutSeconds") or 1800)
    try:
        labels = labelsel.parse_labels(query.get("labelSelector"))
        fields = labelsel.parse_fields(query.get("fieldSelector"))
    except ValueError as err:
        raise StatusError(400, "BadRequest", str(err)) from err
    prefix = key_of(res, ns)

    def wanted(obj: dict) -> bool:
        return labelsel.match_labels(
            labels, obj.get("metadata", {}).get("labels")
        ) and labelsel.match_fields(fields, obj)

    rv = query.get("resourceVersion") or ""
    initial: list[dict] = []
    if rv in ("", "0"):
        items, revision = app.store.list(res, ns)
        initial = [o for o in items if wanted(o)]
    else:
        revision = int(rv)
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Transfer-Encoding", "chunked")
    handler.send_header("Cache-Control", "no-cache, private")
    handler.end_headers()

    def emit(kind: str, obj: dict) -> None:
        obj.setdefault("kind", res.kind)
        obj.setdefault("apiVersion", res.group_version)
        data = json.dumps({"type": kind, "object": obj}).encode() + b"\n"
        handler.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        handler.wfile.flush()

    try:
        for obj in initial:
            emit("ADDED", obj)
        for kind, kv, prev in app.etcd.watch(prefix, revision + 1, timeout):
            if kind == "DELETE":
                if prev is None:
                    continue
                obj = json.loads(prev.value)
                obj.setdefault("metadata", {})["resourceVersion"] = str(kv.mod_revision)
                if wanted(obj):
                    emit("DELETED", obj)
                continue
            obj = json.loads(kv.value)
            obj.setdefault("metadata", {})["resourceVersion"] = str(kv.mod_revision)
            if wanted(obj):
                emit("ADDED" if kv.create_revision == kv.mod_revision else "MODIFIED", obj)
        handler.wfile.write(b"0\r\n\r\n")
    except (OSError, ValueError):
        pass
    except EtcdError as err:
        status = StatusError(410, "Expired", str(err)).status()
        with contextlib.suppress(OSError):
            emit("ERROR", status)
    handler.close_connection = True
