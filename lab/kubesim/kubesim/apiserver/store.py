"""Objects in etcd, the way the apiserver's etcd3 storage keeps them.

Every etcd call is timed into etcd_request_duration_seconds / etcd_requests_total /
etcd_request_errors_total by operation and group-resource, as etcd3/store.go does with
metrics.RecordEtcdRequest. A call that outlives the request's deadline (etcdgrpc waits for a
ready connection until then) raises RequestTimeout: the handler answers 504 as the
timeout filter does.

resourceVersion is the etcd mod_revision of the key (a list carries the header revision);
updates are compare-and-swap on mod_revision, so a stale resourceVersion is a 409 Conflict
(staging/src/k8s.io/apiserver/pkg/storage/etcd3/store.go). Values are JSON (the real
apiserver stores protobuf for built-in types; the layout of keys is the same).
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import json
import time
import uuid
from collections.abc import Callable, Iterator

from ..etcd import EtcdError, KVOps
from ..etcdgrpc import DeadlineExceeded
from .resources import Resource

PREFIX = "/registry"


class StatusError(Exception):
    """An API error answered as a metav1.Status."""

    def __init__(self, code: int, reason: str, message: str, details: dict | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> dict:
        doc = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            doc["details"] = self.details
        return doc


def not_found(res: Resource, name: str) -> StatusError:
    return StatusError(
        404,
        "NotFound",
        f'{res.qualified} "{name}" not found',
        {"name": name, "group": res.group, "kind": res.plural},
    )


def conflict(res: Resource, name: str) -> StatusError:
    return StatusError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {res.qualified} "{name}": the object has been '
        "modified; please apply your changes to the latest version and try again",
        {"name": name, "group": res.group, "kind": res.plural},
    )


def timestamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def key_of(res: Resource, namespace: str | None, name: str | None = None) -> str:
    key = f"{PREFIX}/{res.key}/"
    if res.namespaced and namespace:
        key += f"{namespace}/"
    if name:
        key += name
    return key


class RequestTimeout(Exception):
    """The request's deadline passed while etcd was called; `write` tells create/update/
    delete (whose REST handler answers 504 itself, handlers/rest.go finishRequest) from reads
    (whose handler would record the storage error as a 500)."""

    def __init__(self, write: bool) -> None:
        super().__init__("context deadline exceeded")
        self.write = write


def storage_error(err: EtcdError) -> StatusError:
    return StatusError(500, "InternalError", f"Internal error occurred: {err}")


Recorder = Callable[[str, str, float, bool], None]


class Store:
    """CRUD of API objects on one etcd client."""

    def __init__(self, etcd: KVOps, record: Recorder | None = None) -> None:
        self.etcd = etcd
        self.record = record or (lambda *_: None)

    @contextlib.contextmanager
    def op(self, operation: str, res: Resource) -> Iterator[None]:
        started, failed = time.monotonic(), True
        try:
            yield
            failed = False
        except DeadlineExceeded as err:
            raise RequestTimeout(operation in ("create", "update", "delete")) from err
        except EtcdError as err:
            raise storage_error(err) from err
        finally:
            self.record(operation, res.qualified, time.monotonic() - started, failed)

    @staticmethod
    def _decode(value: bytes, rev: int) -> dict:
        obj = json.loads(value)
        obj.setdefault("metadata", {})["resourceVersion"] = str(rev)
        return obj

    def get(self, res: Resource, namespace: str | None, name: str) -> dict:
        with self.op("get", res):
            kv = self.etcd.get(key_of(res, namespace, name))
        if kv is None:
            raise not_found(res, name)
        return self._decode(kv.value, kv.mod_revision)

    def list(self, res: Resource, namespace: str | None) -> tuple[list[dict], int]:
        with self.op("list", res):
            kvs, rev = self.etcd.get_prefix(key_of(res, namespace))
        return [self._decode(kv.value, kv.mod_revision) for kv in kvs], rev

    def create(self, res: Resource, namespace: str | None, obj: dict) -> dict:
        meta = obj.setdefault("metadata", {})
        name = meta["name"]
        meta.pop("resourceVersion", None)
        meta["uid"] = meta.get("uid") or str(uuid.uuid4())
        meta["creationTimestamp"] = meta.get("creationTimestamp") or timestamp()
        if res.namespaced:
            meta["namespace"] = namespace
        with self.op("create", res):
            ok, rev = self.etcd.put_if(key_of(res, namespace, name), json.dumps(obj).encode(), 0)
        if not ok:
            raise StatusError(
                409,
                "AlreadyExists",
                f'{res.qualified} "{name}" already exists',
                {"name": name, "group": res.group, "kind": res.plural},
            )
        meta["resourceVersion"] = str(rev)
        return obj

    def update(
        self, res: Resource, namespace: str | None, obj: dict, expect_rv: int | None
    ) -> dict:
        """Write `obj`; expect_rv None means unconditional (AllowUnconditionalUpdate)."""
        meta = obj["metadata"]
        name = meta["name"]
        key = key_of(res, namespace, name)
        if expect_rv is None:
            with self.op("get", res):
                kv = self.etcd.get(key)
            if kv is None:
                raise not_found(res, name)
            expect_rv = kv.mod_revision
        body = copy.deepcopy(obj)
        body["metadata"].pop("resourceVersion", None)
        with self.op("update", res):
            ok, rev = self.etcd.put_if(key, json.dumps(body).encode(), expect_rv)
        if not ok:
            if rev == 0:
                raise not_found(res, name)
            raise conflict(res, name)
        meta["resourceVersion"] = str(rev)
        return obj

    def delete(
        self, res: Resource, namespace: str | None, name: str, expect_rv: int | None = None
    ) -> bool:
        key = key_of(res, namespace, name)
        with self.op("delete", res):
            if expect_rv is None:
                return self.etcd.delete(key) > 0
            return self.etcd.delete_if(key, expect_rv)
