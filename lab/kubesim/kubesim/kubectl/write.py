"""kubectl apply/create/delete -f and patch (client-side apply: create, or update the
fields the manifest sets -- spec, data, rules, subjects... -- and labels/annotations that
differ)."""

from __future__ import annotations

import json

from ..kubeclient import RESOURCES, ApiError, Client
from .common import KIND_TO_RESOURCE, SINGULAR, KubectlError, load_manifests, resolve


def apply(c: Client, flags: dict, create_only: bool = False) -> int:
    for doc in load_manifests(flags.get("f") or flags.get("filename", "")):
        resource = KIND_TO_RESOURCE.get(doc.get("kind", ""))
        if resource is None:
            raise KubectlError(
                f'error: resource mapping not found for name: "{doc.get("metadata", {}).get("name")}" '  # noqa: E501 - upstream's text
                f'namespace: "" from "{flags.get("f")}": no matches for kind '
                f'"{doc.get("kind")}" in version "{doc.get("apiVersion")}"'
            )
        ns = (
            (
                doc.get("metadata", {}).get("namespace")
                or flags.get("n")
                or flags.get("namespace")
                or "default"
            )
            if RESOURCES[resource][2]
            else None
        )
        label = f"{SINGULAR.get(resource, resource)}/{doc['metadata']['name']}"
        current = c.get_or_none(resource, doc["metadata"]["name"], ns)
        if current is None:
            c.create(resource, doc, ns)
            print(f"{label} created")
        elif create_only:
            raise KubectlError(
                f'Error from server (AlreadyExists): error when creating "{flags.get("f")}": '
                f'{resource} "{doc["metadata"]["name"]}" already exists'
            )
        else:
            merged = json.loads(json.dumps(current))
            changed = False
            # Every field the manifest sets (spec, data, rules, subjects, roleRef...), as
            # client-side apply's patch does; labels and annotations of metadata.
            fields = [k for k in doc if k not in ("apiVersion", "kind", "metadata", "status")]
            for key in [*fields, "metadata"]:
                if key in doc:
                    want = (
                        doc[key]
                        if key != "metadata"
                        else {
                            **current["metadata"],
                            **{
                                k: v
                                for k, v in doc["metadata"].items()
                                if k in ("labels", "annotations")
                            },
                        }
                    )
                    if merged.get(key) != want:
                        merged[key] = want
                        changed = True
            if changed:
                c.update(resource, merged, ns)
                print(f"{label} configured")
            else:
                print(f"{label} unchanged")
    return 0


def delete(c: Client, flags: dict, args: list[str]) -> int:
    if flags.get("f"):
        targets = [
            (KIND_TO_RESOURCE[d["kind"]], d["metadata"]["name"], d["metadata"].get("namespace"))
            for d in load_manifests(flags["f"])
        ]
    else:
        resource = resolve(args[0].split("/")[0])
        names = [args[0].split("/", 1)[1]] if "/" in args[0] else args[1:]
        targets = [(resource, n, None) for n in names]
    grace = int(flags["grace-period"]) if flags.get("grace-period") not in (None, "-1") else None
    for resource, name, doc_ns in targets:
        ns = (
            (doc_ns or flags.get("n") or flags.get("namespace") or "default")
            if RESOURCES[resource][2]
            else None
        )
        try:
            c.delete(resource, name, ns, grace_period=grace)
        except ApiError as err:
            # --ignore-not-found: "Treat "resource not found" as a successful delete",
            # silently (k8s.io/kubectl/pkg/cmd/delete/delete.go, IgnoreNotFound).
            if err.status == 404 and "ignore-not-found" in flags:
                continue
            raise
        print(f'{SINGULAR.get(resource, resource).split(".")[0]} "{name}" deleted')
    return 0


def patch(c: Client, flags: dict, args: list[str]) -> int:
    """kubectl patch TYPE NAME|TYPE/NAME -p JSON (a JSON merge patch)."""
    resource = resolve(args[0].split("/")[0])
    name = args[0].split("/", 1)[1] if "/" in args[0] else args[1]
    ns = (flags.get("n") or flags.get("namespace") or "default") if RESOURCES[resource][2] else None
    c.patch(resource, name, json.loads(flags.get("p") or flags.get("patch") or "{}"), ns)
    print(f"{SINGULAR.get(resource, resource)}/{name} patched")
    return 0
