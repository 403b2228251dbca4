"""Entry point of the control-plane "images": kube-apiserver, kube-controller-manager,
kube-scheduler. The kubelet runs `python3 -m kubesim.component <name> <flags...>` for an
image `registry.k8s.io/<name>:<tag>` and passes the tag as KUBESIM_IMAGE_VERSION, so the
component reports the version of the image it was started from.

The command line is parsed the way cobra/pflag parse it upstream, against the flags that
component defines in that version (flagsets.py): an undefined flag ends the process before
it does anything else, printing the usage and `Error: unknown flag: --x` with exit status 1
(component-base/cli/run.go Run: flag errors are printed undecorated, status 1). The kubelet
then restarts the container with its crash-loop back-off, as it does upstream.
"""

from __future__ import annotations

import os
import sys

from . import flags as flagutil
from . import flagsets
from .apiserver.server import run as run_apiserver
from .controllers.manager import run as run_controller_manager
from .controllers.scheduler import run as run_scheduler
from .versions import Version

RUNNERS = {
    "kube-apiserver": run_apiserver,
    "kube-controller-manager": run_controller_manager,
    "kube-scheduler": run_scheduler,
}


def parse(name: str, version: Version, argv: list[str]) -> dict[str, str]:
    """The component's flags, or exit 1 the way a cobra command refuses its command line."""
    known, bools = flagsets.accepted(name, version)
    try:
        flags, rest = flagutil.parse_strict(argv, known, bools, flagsets.SHORTHANDS)
        if any(rest):
            # cmd/<component>/app/server.go: Args refuses any positional argument
            quoted = " ".join(f'"{a}"' for a in rest)
            raise flagutil.FlagError(f'"{name}" does not take any arguments, got [{quoted}]')
    except flagutil.FlagError as err:
        # cobra prints the usage for a flag error (cli.Run re-enables it), then cli.Run
        # prints the error itself without klog decoration, and the process exits 1.
        print(f"Usage:\n  {name} [flags]\n", file=sys.stderr)
        print(f"Error: {err}", file=sys.stderr)
        sys.stderr.flush()
        sys.exit(1)
    return flags


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in RUNNERS:
        print(
            "usage: kubesim.component kube-apiserver|kube-controller-manager|kube-scheduler ...",
            file=sys.stderr,
        )
        return 2
    name, rest = argv[0], argv[1:]
    if rest and rest[0] == name:  # manifests' command starts with the binary name
        rest = rest[1:]
    version = Version.parse(os.environ.get("KUBESIM_IMAGE_VERSION", "v1.30.0"))
    flags = parse(name, version, rest)
    if flagutil.as_bool(flags.get("version")):
        print(f"Kubernetes {version}")
        return 0
    if flagutil.as_bool(flags.get("help")):
        print(f"Usage:\n  {name} [flags]")
        return 0
    return RUNNERS[name](flags, version)


if __name__ == "__main__":
    sys.exit(main())
