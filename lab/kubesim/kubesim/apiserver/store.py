"""Objects in etcd, the way the apiserver's etcd3 storage keeps them.

resourceVersion is the etcd mod_revision of the key (a list carries the header revision);
updates are compare-and-swap on mod_revision, so a stale resourceVersion is a 409 Conflict
(staging/src/k8s.io/apiserver/pkg/storage/etcd3/store.go). Values are JSON (the real
apiserver stores protobuf for built-in types; the layout of keys is the same).
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import uuid

from ..etcd import EtcdClient, EtcdError
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


def storage_error(err: EtcdError) -> StatusError:
    return StatusError(500, "InternalError", f"Internal error occurred: {err}")


class Store:
    """CRUD of API objects on one etcd client."""

    def __init__(self, etcd: EtcdClient) -> None:
        self.etcd = etcd

    @staticmethod
    def _decode(value: bytes, rev: int) -> dict:
        obj = json.loads(value)
        obj.setdefault("metadata", {})["resourceVersion"] = str(rev)
        return obj

    def get(self, res: Resource, namespace: str | None, name: str) -> dict:
        try:
            kv = self.etcd.get(key_of(res, namespace, name))
        except EtcdError as err:
            raise storage_error(err) from err
        if kv is None:
            raise not_found(res, name)
        return self._decode(kv.value, kv.mod_revision)

    def list(self, res: Resource, namespace: str | None) -> tuple[list[dict], int]:
        try:
            kvs, rev = self.etcd.get_prefix(key_of(res, namespace))
        except EtcdError as err:
            raise storage_error(err) from err
        return [self._decode(kv.value, kv.mod_revision) for kv in kvs], rev

    def create(self, res: Resource, namespace: str | None, obj: dict) -> dict:
        meta = obj.setdefault("metadata", {})
        name = meta["name"]
        meta.pop("resourceVersion", None)
        meta["uid"] = meta.get("uid") or str(uuid.uuid4())
        meta["creationTimestamp"] = meta.get("creationTimestamp") or timestamp()
        if res.namespaced:
            meta["namespace"] = namespace
        try:
            ok, rev = self.etcd.put_if(key_of(res, namespace, name), json.dumps(obj).encode(), 0)
        except EtcdError as err:
            raise storage_error(err) from err
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
        try:
            if expect_rv is None:
                kv = self.etcd.get(key)
                if kv is None:
                    raise not_found(res, name)
                expect_rv = kv.mod_revision
            body = copy.deepcopy(obj)
            body["metadata"].pop("resourceVersion", None)
            ok, rev = self.etcd.put_if(key, json.dumps(body).encode(), expect_rv)
        except EtcdError as err:
            raise storage_error(err) from err
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
        try:
            if expect_rv is None:
                return self.etcd.delete(key) > 0
            return self.etcd.delete_if(key, expect_rv)
        except EtcdError as err:
            raise storage_error(err) from err
