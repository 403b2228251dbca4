"""kubectl stand-in: get (tables, -o json|yaml|name|wide|jsonpath, --raw, -f), cordon,
uncordon, drain (eviction with PDB retries, k8s.io/kubectl/pkg/drain), apply/create/delete -f,
patch, wait, version. Reads --kubeconfig, $KUBECONFIG or ~/.kube/config like client-go.

One module per job: cli (flags, dispatch, version), common (resource names, client,
manifests), get + printers (reading), write (apply/create/delete/patch), drain, wait.
The launcher /usr/bin/kubectl imports `main` from here.
"""

from __future__ import annotations

from .cli import main

__all__ = ["main"]
