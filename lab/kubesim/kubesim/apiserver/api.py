"""REST verbs over the store: get/list/create/update/patch/delete, binding and eviction."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

from .. import labelsel as selectors
from ..etcdgrpc import current_deadline
from ..versions import Version
from . import objects
from .admission import Attributes
from .eviction import evict
from .resources import Resource, lookup
from .store import RequestTimeout, StatusError, Store, conflict, key_of, not_found


@dataclass
class Route:
    res: Resource | None
    namespace: str
    name: str
    subresource: str
    group: str
    version: str


def parse_path(path: str) -> Route | None:
    """Split /api/v1/namespaces/ns/pods/name/eviction (or /apis/g/v/...) into its parts."""
    parts = [p for p in path.split("/") if p]
    if not parts:
        return None
    if parts[0] == "api" and len(parts) >= 2:
        group, version, rest = "", parts[1], parts[2:]
    elif parts[0] == "apis" and len(parts) >= 3:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    namespace = ""
    if len(rest) >= 3 and rest[0] == "namespaces":
        candidate = lookup(group, version, rest[2])
        if candidate is not None and candidate.namespaced:
            namespace, rest = rest[1], rest[2:]
    if not rest:
        return Route(None, "", "", "", group, version)
    res = lookup(group, version, rest[0])
    if res is None:
        raise StatusError(404, "NotFound", "the server could not find the requested resource")
    return Route(
        res,
        namespace,
        rest[1] if len(rest) > 1 else "",
        rest[2] if len(rest) > 2 else "",
        group,
        version,
    )


def list_kind(res: Resource) -> str:
    return f"{res.kind}List"


class Api:
    def __init__(self, store: Store, cache=None, version: Version | None = None) -> None:
        self.store = store
        self.cache = cache
        self.version = version or Version(1, 30, 0)
        self.ns_res = lookup("", "v1", "namespaces")
        self.pdb_res = lookup("policy", "v1", "poddisruptionbudgets")
        # Validating admission (admission.py), set by the app: called with each write's
        # object after defaulting and before storage, as upstream's admission chain.
        self.admission = None

    def _admit(  # noqa: PLR0917 - admission.Attributes' fields
        self, op: str, res: Resource, ns: str | None, name: str, sub: str, obj, old
    ) -> None:
        if self.admission is not None:
            self.admission.validate(Attributes(op, res, ns or "", name, sub, obj, old))

    # -- verbs ---------------------------------------------------------------------------
    def verb(self, method: str, route: Route, query: dict) -> str:
        """The API verb as request/requestinfo.go derives it (RBAC matches it): GET/HEAD
        get, list or watch; DELETE without a name deletecollection."""
        watch = query.get("watch") in ("true", "1")
        if method in ("GET", "HEAD"):
            if not route.name:
                return "watch" if watch else "list"
            return "watch" if watch else "get"
        if method == "DELETE" and not route.name:
            return "deletecollection"
        return {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(
            method, method.lower()
        )

    def _check_namespace(self, route: Route) -> None:
        if route.res and route.res.namespaced and route.namespace:
            try:
                self.store.get(self.ns_res, None, route.namespace)
            except StatusError as err:
                if err.code == 404:
                    raise StatusError(
                        404,
                        "NotFound",
                        f'namespaces "{route.namespace}" not found',
                        {"name": route.namespace, "kind": "namespaces"},
                    ) from err
                raise

    def handle(
        self, method: str, route: Route, query: dict, body: bytes, content_type: str
    ) -> tuple[int, dict]:
        res = route.res
        assert res is not None
        ns = route.namespace if res.namespaced else None
        if method == "GET" and not route.name:
            return 200, self.list(res, ns, query)
        if method == "GET":
            if self.from_cache(res, query):
                obj = self.cache.get(key_of(res, ns, route.name))
                if obj is None:
                    raise not_found(res, route.name)
                return 200, obj
            return 200, self.store.get(res, ns, route.name)
        doc = json.loads(body) if body else {}
        if method == "POST" and not route.name:
            self._check_namespace(route)
            obj = objects.prepare_create(res, doc, ns)
            self._admit("CREATE", res, ns, obj["metadata"]["name"], "", obj, None)
            return 201, self.store.create(res, ns, obj)
        if method == "POST" and route.subresource == "binding" and res.plural == "pods":
            return 201, self.bind(ns or "", route.name, doc)
        if method == "POST" and route.subresource == "eviction" and res.plural == "pods":
            return self.evict(ns or "", route.name, doc)
        if method == "PUT":
            return 200, self.update(res, ns, route.name, doc, route.subresource)
        if method == "PATCH":
            return 200, self.patch(res, ns, route.name, doc, content_type, route.subresource)
        if method == "DELETE":
            return 200, self.delete(res, ns, route.name, doc, query)
        raise StatusError(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )

    def from_cache(self, res: Resource, query: dict) -> bool:
        """Whether the watch cache answers: resourceVersion=0 ("any") reads of a cached
        resource (events have no watch cache by default: DefaultWatchCacheSizes). An
        unready cache makes the request wait for it until its deadline (cacher.go
        ready.wait), except from 1.31 on, where ResilientWatchCacheInitialization (beta)
        sends such reads to etcd instead."""
        if self.cache is None or query.get("resourceVersion") != "0" or res.plural == "events":
            return False
        if self.cache.ready:
            return True
        if (self.version.major, self.version.minor) >= (1, 31):
            return False
        if not self.cache.wait_ready(current_deadline()):
            raise RequestTimeout(write=False)
        return True

    def list(self, res: Resource, ns: str | None, query: dict) -> dict:
        if self.from_cache(res, query):
            items, rev = self.cache.list(key_of(res, ns))
        else:
            items, rev = self.store.list(res, ns)
        try:
            labels = selectors.parse_labels(query.get("labelSelector"))
            fields = selectors.parse_fields(query.get("fieldSelector"))
        except ValueError as err:
            raise StatusError(400, "BadRequest", str(err)) from err
        out = []
        for obj in items:
            if not selectors.match_labels(labels, obj.get("metadata", {}).get("labels")):
                continue
            if not selectors.match_fields(fields, obj):
                continue
            obj.pop("kind", None)
            obj.pop("apiVersion", None)
            out.append(obj)
        return {
            "kind": list_kind(res),
            "apiVersion": res.group_version,
            "metadata": {"resourceVersion": str(rev)},
            "items": out,
        }

    def update(self, res: Resource, ns: str | None, name: str, doc: dict, sub: str) -> dict:
        if doc.get("metadata", {}).get("name") not in (None, name):
            raise StatusError(
                400,
                "BadRequest",
                "the name of the object "
                f"({doc['metadata']['name']}) does not match the name on the URL ({name})",
            )
        old = self.store.get(res, ns, name)
        rv = doc.get("metadata", {}).get("resourceVersion")
        new = objects.prepare_update(res, old, doc, sub)
        new["metadata"]["name"] = name
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise conflict(res, name)
        self._admit("UPDATE", res, ns, name, sub, new, old)
        return self._finish_delete(
            res, ns, self.store.update(res, ns, new, int(old["metadata"]["resourceVersion"]))
        )

    def patch(  # noqa: PLR0917 - mirrors the upstream call's parameters
        self, res: Resource, ns: str | None, name: str, doc: object, ctype: str, sub: str
    ) -> dict:
        for _ in range(5):  # the registry retries a patch on a conflicting concurrent write
            old = self.store.get(res, ns, name)
            if ctype.startswith("application/json-patch"):
                merged = objects.json_patch(old, doc)  # type: ignore[arg-type]
            else:
                merged = objects.merge_patch(old, doc)
            rv = (
                (doc.get("metadata") or {}).get("resourceVersion")
                if isinstance(doc, dict)
                else None
            )
            if rv and rv != old["metadata"]["resourceVersion"]:
                raise conflict(res, name)
            new = objects.prepare_update(res, old, merged, sub)
            self._admit("UPDATE", res, ns, name, sub, new, old)
            try:
                saved = self.store.update(res, ns, new, int(old["metadata"]["resourceVersion"]))
            except StatusError as err:
                if err.code == 409 and not rv:
                    continue
                raise
            return self._finish_delete(res, ns, saved)

        raise conflict(res, name)

    def _finish_delete(self, res: Resource, ns: str | None, obj: dict) -> dict:
        """An object being deleted whose finalizers emptied goes away (graceful pods stay)."""
        return obj

    def delete(self, res: Resource, ns: str | None, name: str, doc: dict, query: dict) -> dict:
        obj = self.store.get(res, ns, name)
        self._admit("DELETE", res, ns, name, "", None, obj)
        grace = doc.get("gracePeriodSeconds")
        if grace is None and query.get("gracePeriodSeconds") is not None:
            grace = int(query["gracePeriodSeconds"])
        if res.plural == "pods":
            # Graceful deletion (pkg/registry/core/pod/strategy.go CheckGracefulDelete): a pod
            # bound to a node gets deletionTimestamp and stays until its kubelet confirms with
            # grace 0; an unbound or finished pod goes at once.
            spec_grace = obj.get("spec", {}).get("terminationGracePeriodSeconds", 30)
            grace = spec_grace if grace is None else int(grace)
            phase = obj.get("status", {}).get("phase")
            bound = bool(obj.get("spec", {}).get("nodeName"))
            if grace > 0 and bound and phase not in ("Succeeded", "Failed"):
                meta = obj["metadata"]
                if not meta.get("deletionTimestamp"):
                    meta["deletionTimestamp"] = objects.deletion_timestamp(grace)
                    meta["deletionGracePeriodSeconds"] = grace
                    return self.store.update(res, ns, obj, int(meta["resourceVersion"]))
                return obj
        self.store.delete(res, ns, name)
        if res.plural in ("pods",):
            return obj
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": {
                "name": name,
                "group": res.group,
                "kind": res.plural,
                "uid": obj["metadata"].get("uid"),
            },
        }

    # -- pods/binding (pkg/registry/core/pod/storage/storage.go assignPod) -----------------
    def bind(self, ns: str, name: str, binding: dict) -> dict:
        res = lookup("", "v1", "pods")
        node = (binding.get("target") or {}).get("name", "")
        pod = self.store.get(res, ns, name)
        if pod["metadata"].get("deletionTimestamp"):
            raise StatusError(
                409,
                "Conflict",
                f"Operation cannot be fulfilled on pods/binding "
                f'"{name}": pod {name} is being deleted, cannot be assigned to a host',
            )
        current = pod.get("spec", {}).get("nodeName")
        if current:
            raise StatusError(
                409,
                "Conflict",
                f"Operation cannot be fulfilled on pods/binding "
                f'"{name}": pod {name} is already assigned to node "{current}"',
            )
        pod["spec"]["nodeName"] = node
        conds = pod.setdefault("status", {}).setdefault("conditions", [])
        conds[:] = [c for c in conds if c.get("type") != "PodScheduled"]
        conds.append(
            {
                "type": "PodScheduled",
                "status": "True",
                "lastProbeTime": None,
                "lastTransitionTime": _now(),
            }
        )
        self.store.update(res, ns, pod, int(pod["metadata"]["resourceVersion"]))
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "code": 201,
        }

    # -- pods/eviction ----------------------------------------------------------------------
    def evict(self, ns: str, name: str, eviction: dict) -> tuple[int, dict]:
        return evict(self, ns, name, eviction)

    def ensure_namespace(self, name: str) -> None:
        try:
            self.store.create(
                self.ns_res,
                None,
                objects.prepare_create(self.ns_res, {"metadata": {"name": name}}, None),
            )
        except StatusError as err:
            if err.code != 409:
                raise


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


__all__ = ["Api", "Route", "parse_path", "not_found"]
