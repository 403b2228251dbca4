"""The paths outside /api/<v>/... and /apis/<g>/<v>/...: health, /version, /metrics and
discovery (/api, /apis, /api/v1, /apis/<group>/<version>)."""

from __future__ import annotations

import json

from . import resources
from .app import Apiserver


def handle(app: Apiserver, path: str, query: str) -> tuple[int, bytes, str]:
    text = "text/plain; charset=utf-8"
    if path in ("/livez", "/readyz", "/healthz") or path.startswith(
        ("/livez/", "/readyz/", "/healthz/")
    ):
        code, body = app.health.handle(path, query)
        return code, body.encode(), text
    if path == "/version":
        return 200, json.dumps(app.version_info(), indent=2).encode(), "application/json"
    if path == "/metrics":
        return 200, app.metrics.render().encode(), "text/plain; version=0.0.4; charset=utf-8"
    if path == "/api":
        addr = f"{app.advertise}:{app.port}"
        return (
            200,
            json.dumps(
                {
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [
                        {"clientCIDR": "0.0.0.0/0", "serverAddress": addr}
                    ],
                }
            ).encode(),
            "application/json",
        )
    if path == "/apis":
        groups = [
            {
                "name": g,
                "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs],
                "preferredVersion": {"groupVersion": f"{g}/{vs[0]}", "version": vs[0]},
            }
            for g, vs in resources.groups().items()
        ]
        return (
            200,
            json.dumps({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}).encode(),
            "application/json",
        )
    parts = [p for p in path.split("/") if p]
    if len(parts) == 2 and parts[0] == "api":
        doc = resources.resource_list("", parts[1])
    elif len(parts) == 3 and parts[0] == "apis":
        doc = resources.resource_list(parts[1], parts[2])
    else:
        doc = None
    if doc is None:
        return 404, b"404 page not found\n", text
    return 200, json.dumps(doc).encode(), "application/json"
