"""Run kubesim "nodes" on the host for tests: one network + mount namespace per node.

Each node gets a network namespace with `lo` and a dummy interface holding its
198.18.0.x address, and a private mount namespace in which tmpfs covers the paths the
programs own (/etc/kubernetes, /var/lib/kubelet, /var/lib/etcd, /run/kubesim,
/run/containerd, /var/log/pods), so the shipped programs run with their real paths and
leave the host untouched. A stand-in CRI socket (a unix listener) satisfies the kubelet's
and kubeadm's runtime checks; the kubelet is restarted when it exits, as systemd would.
Used by tests/unit/kubesim (root); everything started is tracked by PID and stopped.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

from lab.kubesim.build import etcd_binaries

HERE = Path(__file__).resolve().parent
PYTHON = "/usr/bin/python3"
HUB = "kubesim-hub"
CONTAINERD_CONFIG = """version = 2
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  SystemdCgroup = true
"""
TMPFS = [
    "/etc/containerd",
    "/etc/kubernetes",
    "/var/lib/kubelet",
    "/var/lib/etcd",
    "/run/kubesim",
    "/run/containerd",
    "/var/log/pods",
]


def ensure_hub() -> None:
    """A namespace with bridge br0 that every host node's veth joins (no route out)."""
    if Path(f"/run/netns/{HUB}").exists():
        return
    subprocess.run(["ip", "netns", "add", HUB], check=True, timeout=10)
    hub = ["ip", "netns", "exec", HUB]
    subprocess.run(hub + ["ip", "link", "add", "br0", "type", "bridge"], check=True, timeout=10)
    subprocess.run(hub + ["ip", "link", "set", "br0", "up"], check=True, timeout=10)


def remove_stale(netns: str) -> None:
    """A namespace of ours left by an interrupted run: end its processes by PID, drop it."""
    if not Path(f"/run/netns/{netns}").exists():
        return
    pids = subprocess.run(
        ["ip", "netns", "pids", netns], capture_output=True, text=True, timeout=10, check=False
    ).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    subprocess.run(["ip", "netns", "del", netns], check=False, timeout=10)


def remove_hub() -> None:
    """Remove the hub once no host node is left in it."""
    others = [p for p in Path("/run/netns").glob("kubesim-*") if p.name != HUB]
    if not others:
        subprocess.run(["ip", "netns", "del", HUB], check=False, timeout=10)


def write_launchers(bindir: Path, version: str, cri_version: str | None = None) -> None:
    """/usr/bin-style launchers for kubeadm, kubelet, kubectl, crictl running this checkout."""
    bindir.mkdir(parents=True, exist_ok=True)
    entries = {
        "kubeadm": "kubesim.kubeadm.cli",
        "kubelet": "kubesim.kubelet.main",
        "kubectl": "kubesim.kubectl",
        "crictl": "kubesim.crictl",
    }
    for name, entry in entries.items():
        v = cri_version if (name == "crictl" and cri_version) else version
        path = bindir / name
        path.write_text(
            f"#!{PYTHON}\nimport sys\nsys.path.insert(0, {str(HERE)!r})\n"
            f"from kubesim.versions import set_own_version\nset_own_version({v!r})\n"
            f"from {entry} import main\nsys.exit(main())\n"
        )
        path.chmod(0o755)


@dataclass
class HostNode:
    name: str
    ip: str
    workdir: Path
    version: str = "v1.30.0"
    procs: list[subprocess.Popen] = field(default_factory=list)

    @property
    def netns(self) -> str:
        return f"kubesim-{self.name}"

    @property
    def bindir(self) -> Path:
        return self.workdir / "bin"

    def create(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        write_launchers(self.bindir, self.version)
        remove_stale(self.netns)
        subprocess.run(["ip", "netns", "add", self.netns], check=True, timeout=10)
        ns = ["ip", "netns", "exec", self.netns]
        subprocess.run(ns + ["ip", "link", "set", "lo", "up"], check=True, timeout=10)
        ensure_hub()
        hub = ["ip", "netns", "exec", HUB]
        peer = f"v-{self.name}"
        subprocess.run(
            hub + ["ip", "link", "add", "name", peer, "type", "veth", "peer", "name", "ens160"],
            check=True,
            timeout=10,
        )
        subprocess.run(
            hub + ["ip", "link", "set", "ens160", "netns", self.netns], check=True, timeout=10
        )
        subprocess.run(
            hub + ["ip", "link", "set", peer, "master", "br0", "up"], check=True, timeout=10
        )
        subprocess.run(
            ns + ["ip", "addr", "add", f"{self.ip}/24", "dev", "ens160"], check=True, timeout=10
        )
        subprocess.run(ns + ["ip", "link", "set", "ens160", "up"], check=True, timeout=10)
        # The namespace's own sysctl: kubeadm's preflight reads it.
        subprocess.run(ns + ["sysctl", "-qw", "net.ipv4.ip_forward=1"], check=False, timeout=10)
        self.holder = self._start_holder()

    def _start_holder(self) -> subprocess.Popen:
        """A process owning the node's mount namespace (tmpfs mounts + a CRI socket)."""
        script = textwrap.dedent(f"""
            set -e
            mount --make-rprivate /
            hostname {self.name}
            for d in {" ".join(TMPFS)}; do mkdir -p $d; mount -t tmpfs tmpfs $d; done
            mkdir -p /etc/kubernetes/manifests
            cat > /etc/containerd/config.toml <<'EOF'
{CONTAINERD_CONFIG}EOF
            exec {PYTHON} -c '
import socket, os, signal, sys
s = socket.socket(socket.AF_UNIX); s.bind("/run/containerd/containerd.sock"); s.listen(16)
print("ready", flush=True)
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
while True:
    c, _ = s.accept(); c.close()
'
        """)
        proc = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                self.netns,
                "unshare",
                "--mount",
                "--uts",
                "--propagation",
                "private",
                "sh",
                "-c",
                script,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        line = proc.stdout.readline() if proc.stdout else ""
        if "ready" not in line:
            raise RuntimeError(f"node {self.name}: namespace holder failed: {line}")
        self.procs.append(proc)
        return proc

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
        env["PATH"] = f"{self.bindir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        env["KUBESIM_IMAGES"] = str(self.workdir / "images")
        env["KUBECONFIG"] = "/etc/kubernetes/admin.conf"
        env["HOME"] = str(self.workdir)
        return env

    def prefix(self) -> list[str]:
        return [
            "nsenter",
            f"--net=/run/netns/{self.netns}",
            f"--mount=/proc/{self.holder.pid}/ns/mnt",
            f"--uts=/proc/{self.holder.pid}/ns/uts",
        ]

    def run(
        self, argv: list[str], timeout: float = 300, check: bool = False, stdin: str | None = None
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            self.prefix() + argv,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
            input=stdin,
        )

    def start_kubelet(self) -> subprocess.Popen:
        """The kubelet as kubelet.service would run it (drop-in flags), restarted on exit."""
        loop = textwrap.dedent("""
            while true; do
              [ -f /var/lib/kubelet/kubeadm-flags.env ] && . /var/lib/kubelet/kubeadm-flags.env
              kubelet --bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf \\
                --kubeconfig=/etc/kubernetes/kubelet.conf --config=/var/lib/kubelet/config.yaml \\
                --hostname-override=NODE $KUBELET_KUBEADM_ARGS >>/var/log/pods/kubelet.log 2>&1
              sleep 1
            done
        """).replace("NODE", self.name)
        proc = subprocess.Popen(
            self.prefix() + ["sh", "-c", loop],
            env=self.env(),
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.procs.append(proc)
        return proc

    def images(self, etcd_dir: Path) -> None:
        target = self.workdir / "images" / "etcd"
        target.mkdir(parents=True, exist_ok=True)
        for name in ("etcd", "etcdctl", "etcdutl"):
            if not (target / name).exists():
                shutil.copy2(etcd_dir / name, target / name)

    def destroy(self) -> None:
        """Stop everything this node runs, by PID: kubelet first (no more restarts), then
        the containers its records name, then whatever else lives in the namespace."""
        holder = getattr(self, "holder", None)
        for proc in self.procs:
            if proc is not holder and proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        if holder is not None and holder.poll() is None:
            self.run(
                [
                    PYTHON,
                    "-c",
                    textwrap.dedent("""
                import json, os, signal, pathlib
                for p in pathlib.Path('/run/kubesim/cri/containers').glob('*.json'):
                    d = json.loads(p.read_text())
                    try: os.kill(d['pid'], signal.SIGKILL)
                    except Exception: pass
            """),
                ],
                timeout=30,
            )
        remove_stale(self.netns)  # every process left in the namespace, then the namespace
        if holder is not None and holder.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(holder.pid, signal.SIGKILL)
        if holder is not None:
            holder.wait(timeout=10)


def etcd_dir() -> Path:
    sys.path.insert(0, str(HERE.parent.parent))

    return etcd_binaries()["etcd"].parent


def wait_for(predicate, timeout: float, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    return last
