"""kubeconfig files: write them like kubeadm (phases/kubeconfig), read them like client-go."""

from __future__ import annotations

import base64
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from . import pki


@dataclass
class KubeConfig:
    """The current context of a kubeconfig, resolved to PEM bytes."""

    server: str
    ca_pem: bytes
    cert_pem: bytes | None = None
    key_pem: bytes | None = None
    token: str | None = None
    user: str = ""
    cluster: str = ""

    @classmethod
    def load(cls, path: str | Path) -> KubeConfig:
        path = Path(path)
        doc = yaml.safe_load(path.read_text()) or {}
        current = doc.get("current-context")
        contexts = {c["name"]: c["context"] for c in doc.get("contexts") or []}
        if current not in contexts:
            if not contexts:
                raise ValueError(
                    f"invalid configuration: no configuration has been provided ({path})"
                )
            current = next(iter(contexts))
        ctx = contexts[current]
        cluster = {c["name"]: c["cluster"] for c in doc.get("clusters") or []}[ctx["cluster"]]
        user = {u["name"]: u["user"] for u in doc.get("users") or []}.get(ctx.get("user"), {})

        def read(data_key: str, file_key: str, where: dict) -> bytes | None:
            if where.get(data_key):
                return base64.b64decode(where[data_key])
            if where.get(file_key):
                ref = Path(where[file_key])
                return (ref if ref.is_absolute() else path.parent / ref).read_bytes()
            return None

        return cls(
            server=cluster["server"],
            ca_pem=read("certificate-authority-data", "certificate-authority", cluster) or b"",
            cert_pem=read("client-certificate-data", "client-certificate", user),
            key_pem=read("client-key-data", "client-key", user),
            token=user.get("token"),
            user=ctx.get("user", ""),
            cluster=ctx["cluster"],
        )

    def cert_files(self) -> tuple[str, str] | None:
        """The client cert and key as files (ssl wants paths); written once to /run or /tmp."""
        if not self.cert_pem or not self.key_pem:
            return None
        fd, name = tempfile.mkstemp(prefix="kubesim-client-", suffix=".pem")
        with os.fdopen(fd, "wb") as fh:
            fh.write(self.cert_pem + b"\n" + self.key_pem)
        return name, name


def render(  # noqa: PLR0917 - mirrors the upstream call's parameters
    cluster_name: str,
    server: str,
    ca_pem: bytes,
    user: str,
    cert_pem: bytes | None = None,
    key_pem: bytes | None = None,
    token: str | None = None,
    cert_file: str | None = None,
) -> str:
    """A kubeconfig in the shape kubeadm writes (clientcmdapi, one cluster/user/context)."""
    user_doc: dict = {}
    if cert_file:
        user_doc = {"client-certificate": cert_file, "client-key": cert_file}
    elif cert_pem:
        user_doc = {
            "client-certificate-data": base64.b64encode(cert_pem).decode(),
            "client-key-data": base64.b64encode(key_pem or b"").decode(),
        }
    if token:
        user_doc["token"] = token
    context = f"{user}@{cluster_name}"
    doc = {
        "apiVersion": "v1",
        "clusters": [
            {
                "cluster": {
                    "certificate-authority-data": base64.b64encode(ca_pem).decode(),
                    "server": server,
                },
                "name": cluster_name,
            }
        ],
        "contexts": [{"context": {"cluster": cluster_name, "user": user}, "name": context}],
        "current-context": context,
        "kind": "Config",
        "preferences": {},
        "users": [{"name": user, "user": user_doc}],
    }
    return yaml.safe_dump(doc, default_flow_style=False, sort_keys=False)


def write(path: Path, text: str) -> None:
    pki.write_private(path, text.encode())
