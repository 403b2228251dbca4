"""What the kubelet learns from the host: its node IP, whether the CRI socket answers,
the container runtime's version."""

from __future__ import annotations

import socket
import subprocess


def node_ip_guess() -> str:
    try:
        out = subprocess.run(
            ["ip", "-4", "-o", "addr", "show", "scope", "global"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout
        for line in out.splitlines():
            parts = line.split()
            if "inet" in parts:
                return parts[parts.index("inet") + 1].split("/")[0]
    except (OSError, subprocess.SubprocessError):
        pass
    return "127.0.0.1"


def check_cri(endpoint: str) -> str | None:
    path = endpoint.removeprefix("unix://")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            s.connect(path)
    except OSError as err:
        return (
            f'validate service connection: validate CRI v1 runtime API for endpoint "{endpoint}": '
            f'rpc error: code = Unavailable desc = connection error: desc = "transport: Error '
            f'while dialing: dial unix {path}: connect: {err.strerror.lower() if err.strerror else err}"'  # noqa: E501 - upstream's text
        )
    return None


def runtime_version() -> str:
    try:
        out = subprocess.run(
            ["containerd", "--version"], capture_output=True, text=True, timeout=5, check=False
        ).stdout.split()
        if len(out) >= 3:
            return f"containerd://{out[2].lstrip('v')}"
    except (OSError, subprocess.SubprocessError):
        pass
    return "containerd://1.6.20"
