"""Turn a container spec into a process: the image decides the program.

- registry.k8s.io/etcd:<tag>  -> the real etcd shipped by kubesim-runtime
  (/usr/lib/kubesim/images/etcd/etcd), with the manifest's command[1:] and args;
- registry.k8s.io/kube-{apiserver,controller-manager,scheduler}:<tag> -> the kubesim
  component, reporting <tag> as its version;
- anything else (an ordinary workload image) -> a process that idles until SIGTERM.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

IMAGES = Path(os.environ.get("KUBESIM_IMAGES", "/usr/lib/kubesim/images"))
PYTHONPATH = str(Path(__file__).resolve().parent.parent.parent)
COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")


def split_image(image: str) -> tuple[str, str]:
    repo, _, tag = image.rpartition(":")
    if "/" in tag or not repo:
        return image, "latest"
    return repo, tag


def program_for(container: dict) -> tuple[list[str], dict[str, str]]:
    image = container.get("image", "")
    repo, tag = split_image(image)
    base = repo.rsplit("/", 1)[-1]
    command = list(container.get("command") or []) + list(container.get("args") or [])
    env = {e["name"]: str(e.get("value", "")) for e in container.get("env") or [] if "name" in e}
    if base == "etcd":
        binary = str(IMAGES / "etcd" / "etcd")
        if not Path(binary).exists():
            binary = shutil.which("etcd") or binary
        rest = command[1:] if command and command[0].endswith("etcd") else command
        return [binary, *rest], env
    if base in COMPONENTS:
        rest = command[1:] if command and command[0].endswith(base) else command
        env.update(KUBESIM_IMAGE_VERSION=tag, PYTHONPATH=PYTHONPATH)
        # What the container would see of the host: its volumeMounts (see volumes.py).
        mounts = [m.get("mountPath", "") for m in container.get("volumeMounts") or []]
        env["KUBESIM_POD_MOUNTS"] = json.dumps([m for m in mounts if m])
        return [sys.executable, "-m", "kubesim.component", base, *rest], env
    env.update(PYTHONPATH=PYTHONPATH, KUBESIM_WORKLOAD_IMAGE=image)
    return [sys.executable, "-m", "kubesim.workload", *command], env


def systemd_running() -> bool:
    return (
        Path("/run/systemd/system").is_dir()
        and os.geteuid() == 0
        and shutil.which("systemd-run") is not None
        and not os.environ.get("KUBESIM_NO_SCOPES")
    )


def start(argv: list[str], env: dict[str, str], log_path: Path, unit: str) -> subprocess.Popen:
    """Start the container process in its own session (and scope, under systemd)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    full_env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/root",
        **env,
    }
    if systemd_running():
        argv = [
            "systemd-run",
            "--scope",
            "--quiet",
            "--collect",
            f"--unit={unit}",
            "--property=KillMode=mixed",
            "--",
            *argv,
        ]
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=full_env,
            start_new_session=True,
            close_fds=True,
            cwd="/",
        )
