"""Entry point of the control-plane "images": kube-apiserver, kube-controller-manager,
kube-scheduler. The kubelet runs `python3 -m kubesim.component <name> <flags...>` for an
image `registry.k8s.io/<name>:<tag>` and passes the tag as KUBESIM_IMAGE_VERSION, so the
component reports the version of the image it was started from.
"""

from __future__ import annotations

import os
import sys

from .apiserver.server import run as run_apiserver
from .controllers.manager import run as run_controller_manager
from .controllers.scheduler import run as run_scheduler
from .versions import Version


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        print(
            "usage: kubesim.component kube-apiserver|kube-controller-manager|kube-scheduler ...",
            file=sys.stderr,
        )
        return 2
    name, rest = argv[0], argv[1:]
    if rest and rest[0] == name:  # manifests' command starts with the binary name
        rest = rest[1:]
    version = Version.parse(os.environ.get("KUBESIM_IMAGE_VERSION", "v1.30.0"))
    if "--version" in rest:
        print(f"Kubernetes {version}")
        return 0
    if name == "kube-apiserver":
        return run_apiserver(rest, version)
    if name == "kube-controller-manager":
        return run_controller_manager(rest, version)
    if name == "kube-scheduler":
        return run_scheduler(rest, version)
    print(f"kubesim: unknown component {name}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
