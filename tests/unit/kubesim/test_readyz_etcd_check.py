"""The etcd checks of kubesim's /readyz, what HAProxy's health check on every control plane
relies on to take an apiserver out when its etcd is gone: the kube-apiserver stand-in and a
real etcd 3.5 on loopback, no root, asked over HTTPS as HAProxy asks (GET /readyz).

Upstream: `etcd` and `etcd-readiness` read through the storage client within
--etcd-healthcheck-timeout / --etcd-readycheck-timeout, rate limited to one real read per
timeout/2 (storage/storagebackend/factory/etcd3.go newETCD3Check), so a dead etcd shows
within about timeout/2 + timeout; a failing check answers 500 with
`[-]<name> failed: reason withheld` and `readyz check failed` (apiserver/pkg/server/healthz/
healthz.go). A check made always healthy, or one waiting on a frozen etcd without its
timeout, fails these tests. Only the endpoint is used: kubesim's internals may change.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kubesim import pki
from kubesim.pki import CertSpec

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))

from lab.kubesim.build import etcd_binaries  # noqa: E402

TIMEOUT = 0.5  # both etcd check timeouts here (2 s by default): a frozen etcd stays cheap
# Freeze to the first 500: the rate limiter's timeout/2, the read's timeout, then one more
# /readyz whose two checks may each wait a full timeout; plus a loaded 2-core machine.
MARGIN_S = 1.5
FAILS_WITHIN = TIMEOUT / 2 + TIMEOUT + 2 * TIMEOUT + MARGIN_S


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, log.read_text()
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        assert time.monotonic() < deadline, f"port {port} never opened: {log.read_text()}"
        time.sleep(0.1)


class Node:
    """etcd + the kube-apiserver stand-in with kubeadm's TLS layout, on loopback."""

    def __init__(self, root: Path) -> None:
        self.root, self.pki = root, root / "pki"
        self.port = free_port()
        self.procs: list[subprocess.Popen] = []

    def start(self) -> None:
        ca, etcd_ca = pki.make_ca("kubernetes"), pki.make_ca("etcd-ca")
        pki.write_pair(self.pki, "ca", *ca)
        pki.write_pair(self.pki, "etcd/ca", *etcd_ca)
        lo = {"dns_names": ["localhost"], "ips": ["127.0.0.1"]}
        for base, signer, spec in (
            ("etcd/server", etcd_ca, CertSpec("s", "", "", "etcd", server=True, client=True, **lo)),
            ("etcd-client", etcd_ca, CertSpec("c", "", "", "apiserver-etcd", client=True)),
            ("apiserver", ca, CertSpec("a", "", "", "kube-apiserver", server=True, **lo)),
        ):  # fmt: skip
            pki.write_pair(self.pki, base, *pki.sign_leaf(spec, *signer))
        client, peer = free_port(), free_port()
        self.etcd = self._spawn(
            "etcd",
            [
                str(etcd_binaries()["etcd"]),
                f"--data-dir={self.root / 'etcd'}",
                "--name=default",
                f"--listen-client-urls=https://127.0.0.1:{client}",
                f"--advertise-client-urls=https://127.0.0.1:{client}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=default=http://127.0.0.1:{peer}",
                f"--cert-file={self.pki}/etcd/server.crt",
                f"--key-file={self.pki}/etcd/server.key",
                f"--trusted-ca-file={self.pki}/etcd/ca.crt",
                "--client-cert-auth=true",
                "--listen-metrics-urls=",
            ],
            port=client,
        )
        self._spawn(
            "apiserver",
            [
                sys.executable,
                "-m",
                "kubesim.component",
                "kube-apiserver",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.port}",
                "--advertise-address=127.0.0.1",
                f"--etcd-servers=https://127.0.0.1:{client}",
                f"--etcd-cafile={self.pki}/etcd/ca.crt",
                f"--etcd-certfile={self.pki}/etcd-client.crt",
                f"--etcd-keyfile={self.pki}/etcd-client.key",
                f"--etcd-healthcheck-timeout={int(TIMEOUT * 1000)}ms",
                f"--etcd-readycheck-timeout={int(TIMEOUT * 1000)}ms",
                f"--tls-cert-file={self.pki}/apiserver.crt",
                f"--tls-private-key-file={self.pki}/apiserver.key",
                f"--client-ca-file={self.pki}/ca.crt",
            ],
            port=self.port,
            env=dict(os.environ, PYTHONPATH=str(REPO / "lab" / "kubesim")),
        )

    def _spawn(self, name: str, argv: list[str], port: int, env=None) -> subprocess.Popen:
        log = self.root / f"{name}.log"
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log.open("w"), env=env)
        self.procs.append(proc)
        wait_port(port, proc, log)
        return proc

    def get(self, path: str) -> tuple[int, str]:
        """What HAProxy's `option httpchk GET /readyz` gets (anonymous, CA-verified TLS)."""
        ctx = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=ctx, timeout=20)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read().decode()
        finally:
            conn.close()

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)  # a test that froze etcd may have failed
                proc.kill()
            proc.wait(timeout=30)


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    n = Node(tmp_path_factory.mktemp("readyz"))
    try:
        n.start()
        deadline = time.monotonic() + 60
        while n.get("/readyz")[0] != 200:
            assert time.monotonic() < deadline, (n.root / "apiserver.log").read_text()
            time.sleep(0.2)
        yield n
    finally:
        n.stop()


def _until(node: Node, path: str, code: int, within: float) -> tuple[float, str]:
    """Ask ``path`` until it answers ``code``: (seconds it took, that body)."""
    started = time.monotonic()
    while True:
        got, body = node.get(path)
        took = time.monotonic() - started
        if got == code:
            return took, body
        assert took < within, f"{path} still answers {got} after {took:.2f}s: {body}"
        time.sleep(0.05)


def test_readyz_passes_while_etcd_answers(node):
    code, body = node.get("/readyz?verbose")
    assert code == 200 and body.endswith("readyz check passed\n"), body
    lines = body.splitlines()
    assert "[+]etcd ok" in lines and "[+]etcd-readiness ok" in lines
    assert node.get("/readyz/etcd") == (200, "ok")


def test_readyz_fails_soon_after_etcd_freezes_and_recovers_after(node):
    os.kill(node.etcd.pid, signal.SIGSTOP)  # a hung etcd: TCP accepted, nothing answered
    try:
        took, body = _until(node, "/readyz?verbose", 500, FAILS_WITHIN)
        print(f"[measured] /readyz 500 {took:.2f}s after etcd froze (bound {FAILS_WITHIN:.2f}s)")
        assert body.endswith("readyz check failed\n"), body
        assert "[+]ping ok" in body.splitlines()
        # Both etcd checks fail within the same bound: each has its own limiter and client.
        _, both = _until(node, "/readyz?verbose", 500, FAILS_WITHIN)
        deadline = time.monotonic() + FAILS_WITHIN
        while "[-]etcd-readiness failed" not in both or "[-]etcd failed" not in both:
            assert time.monotonic() < deadline, both
            _, both = node.get("/readyz?verbose")
        lines = both.splitlines()
        assert "[-]etcd failed: reason withheld" in lines
        assert "[-]etcd-readiness failed: reason withheld" in lines
        assert node.get("/livez")[0] == 500  # livez has the etcd check too
        code, single = node.get("/readyz/etcd")
        assert code == 500 and single.startswith("internal server error: "), single
    finally:
        os.kill(node.etcd.pid, signal.SIGCONT)
    took, _ = _until(node, "/readyz", 200, 15)
    print(f"[measured] /readyz 200 again {took:.2f}s after etcd was thawed")


def test_readyz_fails_when_etcd_is_gone(node):
    node.etcd.kill()  # the last test: etcd does not come back
    node.etcd.wait(timeout=30)
    took, body = _until(node, "/readyz?verbose", 500, FAILS_WITHIN)
    assert "[-]etcd failed: reason withheld" in body or "[-]etcd-readiness failed" in body
    print(f"[measured] /readyz 500 {took:.2f}s after etcd was killed")
