"""Helpers shared by the kubeadm commands: output, kubelet control, waiting, join commands."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from .. import pki
from ..kubeclient import Client
from .errors import KubeadmError

KUBE_DIR = Path("/etc/kubernetes")


def out(line: str = "") -> None:
    print(line, flush=True)


def systemd() -> bool:
    return Path("/run/systemd/system").is_dir()


def restart_kubelet() -> None:
    out("[kubelet-start] Starting the kubelet")
    if not systemd():
        out("[kubelet-start] WARNING: unable to start the kubelet service: systemd is not running")
        return
    subprocess.run(["systemctl", "daemon-reload"], check=False, timeout=60)
    res = subprocess.run(
        ["systemctl", "restart", "kubelet"], check=False, timeout=60, capture_output=True, text=True
    )
    if res.returncode != 0:
        out(f"[kubelet-start] WARNING: unable to start the kubelet service: [{res.stderr.strip()}]")


def stop_kubelet() -> None:
    if systemd():
        subprocess.run(["systemctl", "stop", "kubelet"], check=False, timeout=60)


def go_seconds(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.6f}".rstrip("0").rstrip(".") + "ms"
    return f"{seconds:.9f}".rstrip("0").rstrip(".") + "s"


def wait_kubelet(timeout: float = 240) -> None:
    out("[kubelet-check] Waiting for a healthy kubelet. This can take up to 4m0s")
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            with urllib.request.urlopen("http://127.0.0.1:10248/healthz", timeout=5) as resp:
                if resp.status == 200:
                    out(
                        f"[kubelet-check] The kubelet is healthy after {go_seconds(time.monotonic() - start)}"  # noqa: E501 - upstream's text
                    )
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise KubeadmError(
        "The HTTP call equal to 'curl -sSL http://127.0.0.1:10248/healthz' returned error: Get "
        '"http://127.0.0.1:10248/healthz": context deadline exceeded\n\nUnfortunately, an error has '  # noqa: E501 - upstream's text
        "occurred:\n\tThe kubelet is not healthy after 4m0s\n\nThis error is likely caused by:\n"
        "\t- The kubelet is not running\n\t- The kubelet is unhealthy due to a misconfiguration of "
        "the node in some way (required cgroups disabled)",
        "wait-control-plane",
    )


def admin_client(kube_dir: Path = KUBE_DIR, timeout: float = 10) -> Client:
    for name in ("admin.conf", "super-admin.conf"):
        path = kube_dir / name
        if path.exists():
            return Client.from_kubeconfig(path, timeout=timeout)
    raise KubeadmError(
        f"failed to load admin kubeconfig: open {kube_dir}/admin.conf: no such file or directory"
    )


def join_command(
    endpoint: str, token: str, ca_hash: str, control_plane: bool = False, certificate_key: str = ""
) -> str:
    """cmd/kubeadm/app/cmd/util/join.go joinCommandTemplate (with its line continuations)."""
    text = (
        f"kubeadm join {endpoint} --token {token} \\\n\t--discovery-token-ca-cert-hash {ca_hash} "
    )
    if control_plane:
        text += "\\\n\t--control-plane "
        if certificate_key:
            text += f"--certificate-key {certificate_key}"
    return text


def ca_hash(pki_dir: Path) -> str:
    return pki.ca_cert_hash(pki.load_cert(pki_dir / "ca.crt"))


def confirm(question: str, assume_yes: bool) -> None:
    if assume_yes:
        return
    sys.stdout.write(question)
    sys.stdout.flush()
    answer = sys.stdin.readline().strip().lower()
    if answer not in ("y", "yes"):
        raise KubeadmError("won't proceed; the user didn't answer (Y|y) in order to continue")
