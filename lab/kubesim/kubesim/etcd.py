"""A small etcd v3 client over etcd's gRPC JSON gateway (HTTPS, client certificates).

etcd serves the same v3 API as JSON on its client port (`/v3/kv/range`, `/v3/kv/txn`,
`/v3/cluster/member/*`, `/v3/maintenance/status`), so the stand-ins need no gRPC stack on
the machines: stdlib http.client + ssl with kubeadm's etcd client certificates. Keys and
values travel base64-encoded; int64 fields come back as strings.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlparse


class EtcdError(Exception):
    """The etcd call failed (connection refused, timeout, or an error from etcd)."""


def _b64(data: str | bytes) -> str:
    if isinstance(data, str):
        data = data.encode()
    return base64.b64encode(data).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text) if text else b""


def prefix_end(prefix: bytes) -> bytes:
    """The range_end that selects every key starting with `prefix` (clientv3.GetPrefixRangeEnd)."""
    end = bytearray(prefix)
    for i in range(len(end) - 1, -1, -1):
        if end[i] < 0xFF:
            end[i] += 1
            return bytes(end[: i + 1])
    return b"\0"


@dataclass
class KeyValue:
    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    version: int

    @classmethod
    def from_json(cls, kv: dict) -> KeyValue:
        return cls(
            key=_unb64(kv.get("key", "")),
            value=_unb64(kv.get("value", "")),
            create_revision=int(kv.get("create_revision", 0)),
            mod_revision=int(kv.get("mod_revision", 0)),
            version=int(kv.get("version", 0)),
        )


@dataclass
class Member:
    id: int
    name: str
    peer_urls: list[str]
    client_urls: list[str]
    is_learner: bool

    @classmethod
    def from_json(cls, m: dict) -> Member:
        return cls(
            id=int(m.get("ID", 0)),
            name=m.get("name", ""),
            peer_urls=list(m.get("peerURLs", [])),
            client_urls=list(m.get("clientURLs", [])),
            is_learner=bool(m.get("isLearner", False)),
        )


REPEATABLE, NON_REPEATABLE = "repeatable", "nonRepeatable"


class KVOps:
    """The v3 calls kubesim makes, over whatever transport `call` is.

    `call(path, body, timeout, retry)`: retry is clientv3's retry policy for the RPC
    (client/v3/retry.go: Range and the read-only cluster calls are `repeatable`, Put, Txn,
    DeleteRange and member changes `nonRepeatable`), which decides whether a call that
    failed on a broken connection may be sent again.
    """

    def call(self, path: str, body: dict, timeout: float | None = None, retry: str = REPEATABLE):
        raise NotImplementedError

    # -- kv -------------------------------------------------------------------------------
    def get(
        self, key: str | bytes, timeout: float | None = None, serializable: bool = False
    ) -> KeyValue | None:
        body = {"key": _b64(key)}
        if serializable:
            body["serializable"] = True
        doc = self.call("/v3/kv/range", body, timeout)
        kvs = doc.get("kvs") or []
        return KeyValue.from_json(kvs[0]) if kvs else None

    def get_prefix(
        self, prefix: str | bytes, keys_only: bool = False, timeout: float | None = None
    ) -> tuple[list[KeyValue], int]:
        raw = prefix.encode() if isinstance(prefix, str) else prefix
        body = {"key": _b64(raw), "range_end": _b64(prefix_end(raw))}
        if keys_only:
            body["keys_only"] = True
        doc = self.call("/v3/kv/range", body, timeout)
        revision = int(doc.get("header", {}).get("revision", 0))
        return [KeyValue.from_json(kv) for kv in doc.get("kvs") or []], revision

    def put(self, key: str | bytes, value: bytes) -> int:
        doc = self.call(
            "/v3/kv/put", {"key": _b64(key), "value": _b64(value)}, retry=NON_REPEATABLE
        )
        return int(doc.get("header", {}).get("revision", 0))

    def delete(self, key: str | bytes) -> int:
        doc = self.call("/v3/kv/deleterange", {"key": _b64(key)}, retry=NON_REPEATABLE)
        return int(doc.get("deleted", 0))

    def put_if(self, key: str | bytes, value: bytes, mod_revision: int) -> tuple[bool, int]:
        """Put only if the key's mod_revision is `mod_revision` (0: only if absent).

        This is how the apiserver's etcd3 store implements optimistic concurrency
        (staging/src/k8s.io/apiserver/pkg/storage/etcd3/store.go GuaranteedUpdate).
        Returns (succeeded, new revision or current mod_revision).
        """
        compare = {
            "key": _b64(key),
            "target": "MOD",
            "result": "EQUAL",
            "mod_revision": str(mod_revision),
        }
        doc = self.call(
            "/v3/kv/txn",
            {
                "compare": [compare],
                "success": [{"request_put": {"key": _b64(key), "value": _b64(value)}}],
                "failure": [{"request_range": {"key": _b64(key)}}],
            },
            retry=NON_REPEATABLE,
        )
        if doc.get("succeeded"):
            return True, int(doc.get("header", {}).get("revision", 0))
        kvs = (doc.get("responses") or [{}])[0].get("response_range", {}).get("kvs") or []
        return False, int(kvs[0].get("mod_revision", 0)) if kvs else 0

    def delete_if(self, key: str | bytes, mod_revision: int) -> bool:
        compare = {
            "key": _b64(key),
            "target": "MOD",
            "result": "EQUAL",
            "mod_revision": str(mod_revision),
        }
        doc = self.call(
            "/v3/kv/txn",
            {"compare": [compare], "success": [{"request_delete_range": {"key": _b64(key)}}]},
            retry=NON_REPEATABLE,
        )
        return bool(doc.get("succeeded"))

    # -- cluster ------------------------------------------------------------------------------
    def member_list(self) -> list[Member]:
        doc = self.call("/v3/cluster/member/list", {"linearizable": True})
        return [Member.from_json(m) for m in doc.get("members") or []]

    def member_add(
        self, peer_urls: list[str], learner: bool = False
    ) -> tuple[Member, list[Member]]:
        doc = self.call(
            "/v3/cluster/member/add",
            {"peerURLs": peer_urls, "isLearner": learner},
            retry=NON_REPEATABLE,
        )
        return Member.from_json(doc.get("member", {})), [
            Member.from_json(m) for m in doc.get("members") or []
        ]

    def member_remove(self, member_id: int) -> None:
        self.call("/v3/cluster/member/remove", {"ID": str(member_id)}, retry=NON_REPEATABLE)

    def member_promote(self, member_id: int) -> None:
        self.call("/v3/cluster/member/promote", {"ID": str(member_id)}, retry=NON_REPEATABLE)

    def status(self, timeout: float | None = None) -> dict:
        return self.call("/v3/maintenance/status", {}, timeout)


class EtcdClient(KVOps):
    """Talks to one or more etcd endpoints; tries them in order until one answers."""

    def __init__(
        self,
        endpoints: list[str],
        cacert: str,
        cert: str,
        key: str,
        timeout: float = 5.0,
    ) -> None:
        self.endpoints = endpoints
        self.timeout = timeout
        self.context = ssl.create_default_context(cafile=cacert)
        self.context.check_hostname = False  # kubeadm's etcd certs carry the IP SANs; CA pins
        self.context.load_cert_chain(cert, key)
        self._local = threading.local()

    def _conn(self, endpoint: str, timeout: float) -> http.client.HTTPSConnection:
        pool = getattr(self._local, "pool", None)
        if pool is None:
            pool = self._local.pool = {}
        conn = pool.get(endpoint)
        if conn is None:
            url = urlparse(endpoint)
            conn = http.client.HTTPSConnection(
                url.hostname, url.port or 2379, context=self.context, timeout=timeout
            )
            pool[endpoint] = conn
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        return conn

    def _drop(self, endpoint: str) -> None:
        pool = getattr(self._local, "pool", {})
        conn = pool.pop(endpoint, None)
        if conn is not None:
            conn.close()

    def call(
        self, path: str, body: dict, timeout: float | None = None, retry: str = REPEATABLE
    ) -> dict:
        """POST one v3 gateway call; the first endpoint that answers wins (kubeadm's use:
        short-lived clients on known members; the apiserver's client is etcdgrpc.py)."""
        timeout = self.timeout if timeout is None else timeout
        payload = json.dumps(body).encode()
        last: Exception | None = None
        for endpoint in self.endpoints:
            for attempt in range(2):  # one retry on a stale keep-alive connection
                conn = self._conn(endpoint, timeout)
                try:
                    conn.request(
                        "POST", path, body=payload, headers={"Content-Type": "application/json"}
                    )
                    resp = conn.getresponse()
                    data = resp.read()
                except (OSError, http.client.HTTPException) as err:
                    self._drop(endpoint)
                    last = err
                    stale = isinstance(
                        err, http.client.RemoteDisconnected | BrokenPipeError | ConnectionResetError
                    )
                    if attempt == 0 and stale and not isinstance(err, socket.timeout):
                        continue
                    break
                try:
                    doc = json.loads(data or b"{}")
                except ValueError:
                    doc = {"error": data.decode(errors="replace")}
                if resp.status != 200:
                    message = doc.get("message") or doc.get("error") or str(doc)
                    raise EtcdError(
                        f"etcdserver: {message}".replace("etcdserver: etcdserver", "etcdserver")
                    )
                return doc
        raise EtcdError(f"context deadline exceeded: {last}")

    def watch(
        self, prefix: str | bytes, start_revision: int, timeout: float
    ) -> Iterator[tuple[str, KeyValue, KeyValue | None]]:
        """Events under `prefix` from `start_revision` on, over the gateway's /v3/watch stream.

        Yields ("PUT" | "DELETE", kv, prev_kv) for at most `timeout` seconds (the stream is
        shut down then, which also ends a read blocked waiting for the next event). The
        gateway answers one JSON object per line ({"result": {...}}).
        """
        raw = prefix.encode() if isinstance(prefix, str) else prefix
        body = json.dumps(
            {
                "create_request": {
                    "key": _b64(raw),
                    "range_end": _b64(prefix_end(raw)),
                    "start_revision": str(start_revision),
                    "prev_kv": True,
                }
            }
        ).encode()
        url = urlparse(self.endpoints[0])
        conn = http.client.HTTPSConnection(
            url.hostname, url.port or 2379, context=self.context, timeout=self.timeout
        )
        timer = None
        try:
            conn.request(
                "POST", "/v3/watch", body=body, headers={"Content-Type": "application/json"}
            )
            resp = conn.getresponse()
            if resp.status != 200:
                raise EtcdError(f"etcdserver: watch failed with HTTP {resp.status}")
            conn.sock.settimeout(None)

            def end() -> None:
                with contextlib.suppress(OSError):
                    conn.sock.shutdown(socket.SHUT_RDWR)

            timer = threading.Timer(timeout, end)
            timer.daemon = True
            timer.start()
            while True:
                try:
                    line = resp.readline()
                except (OSError, http.client.HTTPException):
                    return
                if not line:
                    return
                doc = json.loads(line).get("result") or {}
                if doc.get("canceled") or doc.get("compact_revision"):
                    raise EtcdError("etcdserver: mvcc: required revision has been compacted")
                for ev in doc.get("events") or []:
                    prev = ev.get("prev_kv")
                    yield (
                        ev.get("type", "PUT"),
                        KeyValue.from_json(ev.get("kv") or {}),
                        KeyValue.from_json(prev) if prev else None,
                    )
        finally:
            if timer is not None:
                timer.cancel()
            conn.close()


def kubeadm_client(pki: str, endpoints: list[str], timeout: float = 5.0) -> EtcdClient:
    """A client with the certificate kubeadm uses for etcd (apiserver-etcd-client)."""
    return EtcdClient(
        endpoints,
        cacert=f"{pki}/etcd/ca.crt",
        cert=f"{pki}/apiserver-etcd-client.crt",
        key=f"{pki}/apiserver-etcd-client.key",
        timeout=timeout,
    )
