"""kubectl get: by name, list with selectors, -f FILE, --raw; output formats
(json, yaml, name, jsonpath=, tables from printers.py)."""

from __future__ import annotations

import json
import re
import sys

import yaml

from ..kubeclient import RESOURCES, Client
from . import printers
from .common import KIND_TO_RESOURCE, SINGULAR, KubectlError, load_manifests, resolve


def jsonpath(template: str, obj: object) -> str:
    """The jsonpath subset scripts use: {.a.b}, {.items[*].metadata.name}, {range}{end} absent."""

    def walk(node: object, parts: list[str]) -> list[object]:
        if not parts:
            return [node]
        part, rest = parts[0], parts[1:]
        m = re.match(r"^([^\[]*)(?:\[(\*|\d+)\])?$", part)
        key, idx = m.groups() if m else (part, None)
        cur = node.get(key) if key and isinstance(node, dict) else (node if not key else None)
        if cur is None:
            return []
        if idx == "*":
            return [x for item in (cur or []) for x in walk(item, rest)]
        if idx is not None:
            return (
                walk(cur[int(idx)], rest) if isinstance(cur, list) and int(idx) < len(cur) else []
            )
        return walk(cur, rest)

    def repl(m: re.Match) -> str:
        expr = m.group(1).strip()
        vals = walk(obj, [p for p in expr.lstrip(".").split(".") if p]) if expr != "." else [obj]
        return " ".join(json.dumps(v) if isinstance(v, dict | list) else str(v) for v in vals)

    return re.sub(r"\{([^}]*)\}", repl, template)


def output(resource: str, doc: dict, single: bool, flags: dict, all_ns: bool) -> None:
    fmt = flags.get("o") or flags.get("output") or ""
    items = [doc] if single else doc.get("items", [])
    if fmt == "json":
        print(json.dumps(doc, indent=4))
    elif fmt == "yaml":
        print(yaml.safe_dump(doc, default_flow_style=False, sort_keys=True), end="")
    elif fmt == "name":
        for obj in items:
            print(f"{SINGULAR.get(resource, resource)}/{obj['metadata']['name']}")
    elif fmt.startswith("jsonpath="):
        print(jsonpath(fmt.split("=", 1)[1].strip("'"), doc), end="")
    elif fmt in ("", "wide"):
        if not items:
            ns = flags.get("namespace") or flags.get("n") or "default"
            print(
                "No resources found"
                + ("" if all_ns or not RESOURCES[resource][2] else f" in {ns} namespace")
                + ".",
                file=sys.stderr,
            )
            return
        print(
            printers.render(resource, items, fmt == "wide", all_ns, "no-headers" in flags),
            end="",
        )
    else:
        raise KubectlError(
            f'error: unable to match a printer suitable for the output format "{fmt}"'
        )


def get(c: Client, flags: dict, args: list[str]) -> int:
    if flags.get("raw"):
        code, body = c.raw("GET", flags["raw"])
        if code >= 400:
            text = body.decode(errors="replace")
            try:
                msg = json.loads(text).get("message", text)
            except ValueError:
                msg = text
            print(
                f'Error from server (InternalError): an error on the server ("{msg}") has prevented '  # noqa: E501 - upstream's text
                "the request from succeeding",
                file=sys.stderr,
            )
            return 1
        sys.stdout.write(body.decode(errors="replace"))  # as received, like kubectl
        return 0
    if flags.get("f") or flags.get("filename"):
        return get_files(c, flags)
    if not args:
        raise KubectlError("error: Required resource not specified.")
    target = args[0]
    if "/" in target:
        target, name = target.split("/", 1)
        names = [name]
    else:
        names = args[1:]
    resource = resolve(target)
    all_ns = "A" in flags or "all-namespaces" in flags
    ns = None if all_ns else (flags.get("namespace") or flags.get("n") or "default")
    if not RESOURCES[resource][2]:
        ns, all_ns = None, False
    if names:
        docs = [c.get(resource, n, ns) for n in names]
        if len(docs) == 1:
            output(resource, docs[0], True, flags, all_ns)
        else:
            output(
                resource, {"apiVersion": "v1", "kind": "List", "items": docs}, False, flags, all_ns
            )
        return 0
    doc = c.list(
        resource,
        ns,
        label_selector=flags.get("l") or flags.get("selector"),
        field_selector=flags.get("field-selector"),
    )
    output(resource, doc, False, flags, all_ns)
    return 0


def get_files(c: Client, flags: dict) -> int:
    """`kubectl get -f FILE`: each object the manifest names; exit 1 if any is missing,
    after printing the ones found (kubectl's resource builder, ContinueOnError)."""
    missing = 0
    for doc in load_manifests(flags.get("f") or flags.get("filename", "")):
        resource = KIND_TO_RESOURCE.get(doc.get("kind", ""))
        name = doc.get("metadata", {}).get("name")
        if resource is None:
            print(
                f'error: the server doesn\'t have a resource type "{doc.get("kind")}"',
                file=sys.stderr,
            )
            missing += 1
            continue
        ns = None
        if RESOURCES[resource][2]:
            ns = doc.get("metadata", {}).get("namespace") or flags.get("n") or "default"
        obj = c.get_or_none(resource, name, ns)
        if obj is None:
            print(f'Error from server (NotFound): {resource} "{name}" not found', file=sys.stderr)
            missing += 1
            continue
        output(resource, obj, True, flags, False)
    return 1 if missing else 0
