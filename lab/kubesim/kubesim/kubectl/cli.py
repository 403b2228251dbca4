"""kubectl's command line: flags, the command dispatch, `version`."""

from __future__ import annotations

import json
import sys

import yaml

from .. import flags as flagutil
from ..kubeclient import ApiError
from ..versions import own_version, version_info
from .common import KubectlError, client_for, server_error
from .drain import drain, set_unschedulable
from .get import get
from .wait import wait
from .write import apply, delete, patch

BOOLS = {
    "A",
    "all-namespaces",
    "ignore-daemonsets",
    "delete-emptydir-data",
    "force",
    "disable-eviction",
    "client",
    "no-headers",
    "watch",
    "w",
    "help",
    "h",
    "wait",
    "delete-local-data",
    "ignore-not-found",
}


def version(flags: dict) -> int:
    v = own_version()
    info = version_info(v, "2024-04-17T17:36:05Z")
    server = None
    if "client" not in flags:
        try:
            code, body = client_for(flags).raw("GET", "/version")
            server = json.loads(body) if code == 200 else None
        except (OSError, KubectlError, ValueError):
            server = None
    fmt = flags.get("o") or flags.get("output")
    if fmt in ("json", "yaml"):
        doc = {"clientVersion": info, "kustomizeVersion": "v5.0.4-0.20230601165947-6ce0bf390ce3"}
        if server:
            doc["serverVersion"] = server
        print(
            json.dumps(doc, indent=2) if fmt == "json" else yaml.safe_dump(doc, sort_keys=False),
            end="\n" if fmt == "json" else "",
        )
        return 0
    print(f"Client Version: {v}")
    print("Kustomize Version: v5.0.4-0.20230601165947-6ce0bf390ce3")
    if server:
        print(f"Server Version: {server['gitVersion']}")
    elif "client" not in flags:
        print(
            "The connection to the server was refused - did you specify the right host or port?",
            file=sys.stderr,
        )
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    flags, args = flagutil.parse(argv, BOOLS)
    if not args:
        print("kubectl controls the Kubernetes cluster manager.")
        return 0
    cmd, args = args[0], args[1:]
    try:
        if cmd == "version":
            return version(flags)
        c = client_for(flags)
        if cmd == "get":
            return get(c, flags, args)
        if cmd in ("cordon", "uncordon"):
            for node in args:
                print(set_unschedulable(c, node, cmd == "cordon"))
            return 0
        if cmd == "drain":
            return drain(c, flags, args[0])
        if cmd == "apply":
            return apply(c, flags)
        if cmd == "create":
            return apply(c, flags, create_only=True)
        if cmd == "delete":
            return delete(c, flags, args)
        if cmd == "wait":
            return wait(c, flags, args)
        if cmd == "patch":
            return patch(c, flags, args)
        raise KubectlError(f'error: unknown command "{cmd}" for "kubectl"')
    except KubectlError as err:
        print(err, file=sys.stderr)
        return 1
    except ApiError as err:
        print(server_error(err), file=sys.stderr)
        return 1
    except OSError as err:
        print(
            f"The connection to the server was refused - did you specify the right host or port? ({err})",  # noqa: E501 - upstream's text
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
