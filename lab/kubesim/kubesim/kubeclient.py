"""A minimal Kubernetes REST client (what client-go does for the stand-ins)."""

from __future__ import annotations

import http.client
import json
import os
import ssl
import tempfile
import threading
from pathlib import Path
from urllib.parse import quote, urlencode, urlparse

from .kubeconfig import KubeConfig

# group/version and plural for the kinds the stand-ins use.
RESOURCES = {
    "namespaces": ("", "v1", False),
    "nodes": ("", "v1", False),
    "pods": ("", "v1", True),
    "configmaps": ("", "v1", True),
    "secrets": ("", "v1", True),
    "events": ("", "v1", True),
    "services": ("", "v1", True),
    "endpoints": ("", "v1", True),
    "serviceaccounts": ("", "v1", True),
    "leases": ("coordination.k8s.io", "v1", True),
    "poddisruptionbudgets": ("policy", "v1", True),
    "replicasets": ("apps", "v1", True),
    "deployments": ("apps", "v1", True),
    "daemonsets": ("apps", "v1", True),
    "jobs": ("batch", "v1", True),
    "certificatesigningrequests": ("certificates.k8s.io", "v1", False),
    "clusterroles": ("rbac.authorization.k8s.io", "v1", False),
    "clusterrolebindings": ("rbac.authorization.k8s.io", "v1", False),
    "roles": ("rbac.authorization.k8s.io", "v1", True),
    "rolebindings": ("rbac.authorization.k8s.io", "v1", True),
    "validatingadmissionpolicies": ("admissionregistration.k8s.io", "v1", False),
    "validatingadmissionpolicybindings": ("admissionregistration.k8s.io", "v1", False),
}


class ApiError(Exception):
    """A non-2xx answer from the apiserver (status holds the HTTP code, body the Status)."""

    def __init__(self, status: int, body: dict | str) -> None:
        self.status = status
        self.body = body
        message = body.get("message", str(body)) if isinstance(body, dict) else str(body)
        self.reason = body.get("reason", "") if isinstance(body, dict) else ""
        super().__init__(message)


def resource_path(
    resource: str,
    namespace: str | None = None,
    name: str | None = None,
    subresource: str | None = None,
) -> str:
    group, version, namespaced = RESOURCES[resource]
    base = f"/api/{version}" if not group else f"/apis/{group}/{version}"
    if namespaced and namespace:
        base += f"/namespaces/{namespace}"
    base += f"/{resource}"
    if name:
        base += f"/{quote(name)}"
    if subresource:
        base += f"/{subresource}"
    return base


class Client:
    """HTTPS to one apiserver with a client certificate or bearer token."""

    def __init__(  # noqa: PLR0917 - mirrors the upstream call's parameters
        self,
        server: str,
        ca_pem: bytes | None,
        cert_pem: bytes | None = None,
        key_pem: bytes | None = None,
        token: str | None = None,
        timeout: float = 10.0,
        insecure: bool = False,
        keepalive: bool = True,
    ) -> None:
        url = urlparse(server)
        self.host = url.hostname or "127.0.0.1"
        self.port = url.port or 443
        self.server = server
        self.timeout = timeout
        self.token = token
        self.keepalive = keepalive
        if insecure or not ca_pem:
            self.context = ssl._create_unverified_context()  # noqa: S323 - discovery, pinned later
        else:
            self.context = ssl.create_default_context(cadata=ca_pem.decode())
        if cert_pem and key_pem:
            fd, name = tempfile.mkstemp(prefix="kubesim-client-", suffix=".pem")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(cert_pem + b"\n" + key_pem)
                self.context.load_cert_chain(name)
            finally:
                os.unlink(name)
        self._local = threading.local()

    @classmethod
    def from_kubeconfig(cls, path: str | Path, **kw) -> Client:
        cfg = KubeConfig.load(path)
        return cls(cfg.server, cfg.ca_pem, cfg.cert_pem, cfg.key_pem, cfg.token, **kw)

    def _conn(self, timeout: float) -> http.client.HTTPSConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None or not self.keepalive:
            conn = http.client.HTTPSConnection(
                self.host, self.port, context=self.context, timeout=timeout
            )
            self._local.conn = conn
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        return conn

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def raw(  # noqa: PLR0917 - mirrors the upstream call's parameters
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        content_type: str = "application/json",
        timeout: float | None = None,
        accept: str = "application/json",
    ) -> tuple[int, bytes]:
        timeout = self.timeout if timeout is None else timeout
        headers = {"Accept": accept, "User-Agent": "kubesim"}
        if body is not None:
            headers["Content-Type"] = content_type
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        # GETs are retried once on a reset or EOF of a kept-alive connection, writes never
        # (client-go's rest.Request retries only idempotent requests on those errors).
        for attempt in range(2):
            conn = self._conn(timeout)
            try:
                conn.request(method, path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                if not self.keepalive or resp.getheader("Connection", "").lower() == "close":
                    self.close()
                return resp.status, data
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()
                if attempt or method != "GET":
                    raise
            except Exception:
                self.close()
                raise
        raise ConnectionError("unreachable")

    def request(  # noqa: PLR0917 - mirrors the upstream call's parameters
        self,
        method: str,
        path: str,
        obj: dict | None = None,
        query: dict | None = None,
        content_type: str = "application/json",
        timeout: float | None = None,
    ) -> dict:
        if query:
            path += "?" + urlencode({k: v for k, v in query.items() if v is not None})
        body = json.dumps(obj).encode() if obj is not None else None
        status, data = self.raw(method, path, body, content_type, timeout)
        try:
            doc = json.loads(data) if data else {}
        except ValueError:
            doc = {"message": data.decode(errors="replace")}
        if status >= 300:
            raise ApiError(status, doc)
        return doc

    # -- typed helpers -------------------------------------------------------------------
    def get(self, resource: str, name: str, namespace: str | None = None, **kw) -> dict:
        return self.request("GET", resource_path(resource, namespace, name), **kw)

    def get_or_none(self, resource: str, name: str, namespace: str | None = None) -> dict | None:
        try:
            return self.get(resource, name, namespace)
        except ApiError as err:
            if err.status == 404:
                return None
            raise

    def list(
        self,
        resource: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        **kw,
    ) -> dict:
        return self.request(
            "GET",
            resource_path(resource, namespace),
            query={"labelSelector": label_selector, "fieldSelector": field_selector},
            **kw,
        )

    def create(self, resource: str, obj: dict, namespace: str | None = None, **kw) -> dict:
        return self.request("POST", resource_path(resource, namespace), obj, **kw)

    def update(
        self,
        resource: str,
        obj: dict,
        namespace: str | None = None,
        subresource: str | None = None,
        **kw,
    ) -> dict:
        name = obj["metadata"]["name"]
        return self.request("PUT", resource_path(resource, namespace, name, subresource), obj, **kw)

    def patch(
        self,
        resource: str,
        name: str,
        patch: dict,
        namespace: str | None = None,
        subresource: str | None = None,
        **kw,
    ) -> dict:
        return self.request(
            "PATCH",
            resource_path(resource, namespace, name, subresource),
            patch,
            content_type="application/merge-patch+json",
            **kw,
        )

    def delete(
        self,
        resource: str,
        name: str,
        namespace: str | None = None,
        grace_period: int | None = None,
        **kw,
    ) -> dict:
        body = None
        if grace_period is not None:
            body = {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": grace_period}
        return self.request("DELETE", resource_path(resource, namespace, name), body, **kw)

    def apply(self, resource: str, obj: dict, namespace: str | None = None) -> dict:
        """Create, or replace what is there (kubeadm's apiclient.CreateOrUpdate*)."""
        try:
            return self.create(resource, obj, namespace)
        except ApiError as err:
            if err.status != 409:
                raise
        current = self.get(resource, obj["metadata"]["name"], namespace)
        obj = json.loads(json.dumps(obj))
        obj["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        return self.update(resource, obj, namespace)
