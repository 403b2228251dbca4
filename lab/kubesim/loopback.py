"""Real etcd members and kubesim kube-apiservers on 127.0.0.1, for tests without root.

    with Loopback(workdir, members=3) as lo:
        api = lo.apiserver([0], "--request-timeout=4s")   # kubeadm's shape: the local member
        code, body, headers, seconds = lo.call(api, "GET", "/api/v1/namespaces")
        lo.stop_member(0)                                   # SIGTERM, as the kubelet stops it

etcd is the real etcd 3.5 kubesim ships (TLS on the client port, client certificates, plain
HTTP between peers); the apiservers run `python -m kubesim.component kube-apiserver` from
this checkout with the flags kubeadm writes plus the ones a test adds.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .build import etcd_binaries

KUBESIM = Path(__file__).resolve().parent
sys.path.insert(0, str(KUBESIM))

from kubesim import pki  # noqa: E402
from kubesim.pki import CertSpec  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{proc.args[0]} exited {proc.returncode}:\n{log.read_text()}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"port {port} never opened:\n{log.read_text()}")


@dataclass
class Member:
    name: str
    client: int
    peer: int
    proc: subprocess.Popen | None = None


@dataclass
class Api:
    port: int
    proc: subprocess.Popen
    log: Path


class Loopback:
    def __init__(self, root: Path, members: int = 1) -> None:
        self.root = root
        self.pki = root / "pki"
        self.members = [Member(f"m{i}", free_port(), free_port()) for i in range(members)]
        self.apis: list[Api] = []
        ca = pki.make_ca("kubernetes")
        etcd_ca = pki.make_ca("etcd-ca")
        pki.write_pair(self.pki, "ca", *ca)
        pki.write_pair(self.pki, "etcd/ca", *etcd_ca)
        lo = {"dns_names": ["localhost"], "ips": ["127.0.0.1"]}
        self._issue(
            "etcd/server", etcd_ca, CertSpec("s", "", "", "etcd", server=True, client=True, **lo)
        )  # noqa: E501
        self._issue(
            "etcd-client", etcd_ca, CertSpec("c", "", "", "kube-apiserver-etcd-client", client=True)
        )  # noqa: E501
        self._issue("apiserver", ca, CertSpec("a", "", "", "kube-apiserver", server=True, **lo))
        self._issue(
            "admin",
            ca,
            CertSpec("adm", "", "", "kubernetes-admin", ["kubeadm:cluster-admins"], client=True),
        )  # noqa: E501
        self.env = dict(os.environ, PYTHONPATH=str(KUBESIM))
        self.env.pop("KUBESIM_POD_MOUNTS", None)

    def _issue(self, base: str, ca: tuple, spec: CertSpec) -> None:
        pki.write_pair(self.pki, base, *pki.sign_leaf(spec, *ca))

    def __enter__(self) -> Loopback:
        for i in range(len(self.members)):
            self.start_member(i)
        return self

    def __exit__(self, *exc) -> None:
        for api in self.apis:
            if api.proc.poll() is None:
                api.proc.kill()
            api.proc.wait(timeout=30)
        for m in self.members:
            if m.proc is not None and m.proc.poll() is None:
                os.kill(m.proc.pid, signal.SIGCONT)
                m.proc.kill()
                m.proc.wait(timeout=30)

    # -- etcd ------------------------------------------------------------------------------------
    def url(self, i: int) -> str:
        return f"https://127.0.0.1:{self.members[i].client}"

    def start_member(self, i: int) -> None:
        m = self.members[i]
        initial = ",".join(f"{x.name}=http://127.0.0.1:{x.peer}" for x in self.members)
        log = self.root / f"{m.name}.log"
        m.proc = subprocess.Popen(
            [
                str(etcd_binaries()["etcd"]),
                f"--data-dir={self.root / m.name}",
                f"--name={m.name}",
                f"--listen-client-urls={self.url(i)}",
                f"--advertise-client-urls={self.url(i)}",
                f"--listen-peer-urls=http://127.0.0.1:{m.peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{m.peer}",
                f"--initial-cluster={initial}",
                f"--cert-file={self.pki}/etcd/server.crt",
                f"--key-file={self.pki}/etcd/server.key",
                f"--trusted-ca-file={self.pki}/etcd/ca.crt",
                "--client-cert-auth=true",
                "--experimental-watch-progress-notify-interval=5s",
                "--listen-metrics-urls=",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log.open("a"),
        )
        wait_port(m.client, m.proc, log)

    def stop_member(self, i: int, sig: int = signal.SIGTERM) -> None:
        proc = self.members[i].proc
        assert proc is not None
        os.kill(proc.pid, sig)
        if sig in (signal.SIGTERM, signal.SIGKILL):
            proc.wait(timeout=30)

    # -- apiservers -------------------------------------------------------------------------------
    def apiserver(self, members: list[int], *extra: str, version: str = "v1.30.0") -> Api:
        port = free_port()
        log = self.root / f"apiserver-{port}.log"
        flags = [
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            "--advertise-address=127.0.0.1",
            "--etcd-servers=" + ",".join(self.url(i) for i in members),
            f"--etcd-cafile={self.pki}/etcd/ca.crt",
            f"--etcd-certfile={self.pki}/etcd-client.crt",
            f"--etcd-keyfile={self.pki}/etcd-client.key",
            f"--tls-cert-file={self.pki}/apiserver.crt",
            f"--tls-private-key-file={self.pki}/apiserver.key",
            f"--client-ca-file={self.pki}/ca.crt",
            "--enable-bootstrap-token-auth=true",
            *extra,
        ]
        proc = subprocess.Popen(
            [sys.executable, "-m", "kubesim.component", "kube-apiserver", *flags],
            env=dict(self.env, KUBESIM_IMAGE_VERSION=version),
            stdout=subprocess.DEVNULL,
            stderr=log.open("w"),
        )
        api = Api(port, proc, log)
        self.apis.append(api)
        wait_port(port, proc, log)
        return api

    def context(self, user: str | None = "admin") -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        if user:
            ctx.load_cert_chain(self.pki / f"{user}.crt", self.pki / f"{user}.key")
        return ctx

    def call(  # noqa: PLR0917 - a test helper
        self,
        api: Api,
        method: str,
        path: str,
        body: dict | None = None,
        user: str | None = "admin",
        headers: dict | None = None,
        timeout: float = 30,
    ) -> tuple[int, bytes, dict, float]:
        """(status, body, headers, seconds) of one request on a fresh TLS connection."""
        started = time.monotonic()
        conn = http.client.HTTPSConnection(
            "127.0.0.1", api.port, context=self.context(user), timeout=timeout
        )
        try:
            data = json.dumps(body).encode() if body is not None else None
            hdrs = {"Content-Type": "application/json", **(headers or {})}
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            out = resp.read()
            return resp.status, out, dict(resp.getheaders()), time.monotonic() - started
        finally:
            conn.close()

    def wait_ready(self, api: Api, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.call(api, "GET", "/readyz", user=None, timeout=5)[0] == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"apiserver never ready:\n{api.log.read_text()[-3000:]}")
            time.sleep(0.2)
