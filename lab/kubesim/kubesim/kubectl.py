"""kubectl stand-in: get (tables, -o json|yaml|name|wide|jsonpath, --raw), cordon, uncordon,
drain (eviction with PDB retries, k8s.io/kubectl/pkg/drain), apply/create/delete -f,
patch, version. Reads --kubeconfig, $KUBECONFIG or ~/.kube/config like client-go.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

import yaml

from . import flags as flagutil
from . import kubectl_print
from .kubeclient import RESOURCES, ApiError, Client, resource_path
from .versions import git_commit, own_version

ALIASES = {
    "no": "nodes",
    "node": "nodes",
    "po": "pods",
    "pod": "pods",
    "lease": "leases",
    "pdb": "poddisruptionbudgets",
    "poddisruptionbudget": "poddisruptionbudgets",
    "cm": "configmaps",
    "configmap": "configmaps",
    "secret": "secrets",
    "ns": "namespaces",
    "namespace": "namespaces",
    "rs": "replicasets",
    "replicaset": "replicasets",
    "deploy": "deployments",
    "deployment": "deployments",
    "ds": "daemonsets",
    "daemonset": "daemonsets",
    "csr": "certificatesigningrequests",
    "ev": "events",
    "event": "events",
    "svc": "services",
    "service": "services",
    "ep": "endpoints",
    "sa": "serviceaccounts",
    "clusterrolebinding": "clusterrolebindings",
}
KIND_TO_RESOURCE = {
    "Pod": "pods",
    "PodDisruptionBudget": "poddisruptionbudgets",
    "ConfigMap": "configmaps",
    "Secret": "secrets",
    "Namespace": "namespaces",
    "ReplicaSet": "replicasets",
    "Deployment": "deployments",
    "DaemonSet": "daemonsets",
    "Lease": "leases",
    "Node": "nodes",
    "Service": "services",
    "ServiceAccount": "serviceaccounts",
    "ClusterRole": "clusterroles",
    "ClusterRoleBinding": "clusterrolebindings",
    "Role": "roles",
    "RoleBinding": "rolebindings",
}
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
}
SINGULAR = {
    "poddisruptionbudgets": "poddisruptionbudget.policy",
    "pods": "pod",
    "nodes": "node",
    "configmaps": "configmap",
    "secrets": "secret",
    "namespaces": "namespace",
    "replicasets": "replicaset.apps",
    "deployments": "deployment.apps",
    "daemonsets": "daemonset.apps",
    "leases": "lease.coordination.k8s.io",
}


class KubectlError(Exception):
    pass


def resolve(name: str) -> str:
    name = name.lower().split(".")[0]
    name = ALIASES.get(name, name)
    if name not in RESOURCES:
        raise KubectlError(f'error: the server doesn\'t have a resource type "{name}"')
    return name


def client_for(flags: dict) -> Client:
    path = (
        flags.get("kubeconfig") or os.environ.get("KUBECONFIG") or str(Path.home() / ".kube/config")
    )
    path = path.split(":")[0]
    if not Path(path).exists():
        raise KubectlError(
            "The connection to the server localhost:8080 was refused - did you specify "
            "the right host or port?"
        )
    timeout = flagutil.duration(flags.get("request-timeout", "0")) or 60.0
    return Client.from_kubeconfig(path, timeout=timeout, keepalive=False)


def server_error(err: ApiError) -> str:
    reason = err.reason or "InternalError"
    if isinstance(err.body, dict) and err.body.get("kind") == "Status":
        return f"Error from server ({reason}): {err}"
    return f'Error from server ({reason}): an error on the server ("{err}") has prevented the request from succeeding'  # noqa: E501 - upstream's text


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
            kubectl_print.render(resource, items, fmt == "wide", all_ns, "no-headers" in flags),
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
        sys.stdout.write(body.decode(errors="replace"))
        if not body.endswith(b"\n"):
            sys.stdout.write("\n") if not sys.stdout.isatty() and False else None
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


def set_unschedulable(c: Client, node: str, value: bool) -> str:
    obj = c.get("nodes", node)
    verb = "cordoned" if value else "uncordoned"
    if bool(obj.get("spec", {}).get("unschedulable")) == value:
        return f"node/{node} already {verb}"
    c.patch("nodes", node, {"spec": {"unschedulable": True if value else None}})
    return f"node/{node} {verb}"


def drain(c: Client, flags: dict, node: str) -> int:
    """k8s.io/kubectl/pkg/drain: cordon, filter pods, evict with retry on 429, wait for deletion."""
    print(set_unschedulable(c, node, True))
    timeout = flagutil.duration(flags.get("timeout", "0s"))
    deadline = time.monotonic() + timeout if timeout else None
    pods = c.list("pods", field_selector=f"spec.nodeName={node}")["items"]
    errors, warnings, todo = [], [], []
    for p in pods:
        meta = p["metadata"]
        ref = f"{meta['namespace']}/{meta['name']}"
        if (meta.get("annotations") or {}).get("kubernetes.io/config.mirror"):
            continue
        if p.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            todo.append(p)
            continue
        owners = [o for o in meta.get("ownerReferences") or [] if o.get("controller")]
        if any(o.get("kind") == "DaemonSet" for o in owners):
            if "ignore-daemonsets" in flags:
                warnings.append(f"ignoring DaemonSet-managed Pods: {ref}")
                continue
            errors.append(
                ("cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore)", ref)
            )
            continue
        if not owners:
            if "force" not in flags:
                errors.append(
                    ("cannot delete Pods declare no controller (use --force to override)", ref)
                )
                continue
            warnings.append(f"deleting Pods that declare no controller: {ref}")
        if (
            any("emptyDir" in v for v in p.get("spec", {}).get("volumes") or [])
            and "delete-emptydir-data" not in flags
        ):
            errors.append(
                (
                    "cannot delete Pods with local storage (use --delete-emptydir-data to override)",  # noqa: E501 - upstream's text
                    ref,
                )
            )
            continue
        todo.append(p)
    if errors:
        grouped: dict[str, list[str]] = {}
        for msg, ref in errors:
            grouped.setdefault(msg, []).append(ref)
        text = ", ".join(f"{m}: {', '.join(refs)}" for m, refs in grouped.items())
        print(
            f'error: unable to drain node "{node}" due to error: {text}, continuing command...',
            file=sys.stderr,
        )
        print(f"There are pending nodes to be drained:\n {node}", file=sys.stderr)
        print(f"error: {text}", file=sys.stderr)
        return 1
    for w in warnings:
        print(f"Warning: {w}", file=sys.stderr)
    pending = {p["metadata"]["uid"]: p for p in todo}
    failures = []
    for p in todo:
        meta = p["metadata"]
        ns, name = meta["namespace"], meta["name"]
        print(f"evicting pod {ns}/{name}")
        while True:
            try:
                c.request(
                    "POST",
                    resource_path("pods", ns, name, "eviction"),
                    {
                        "apiVersion": "policy/v1",
                        "kind": "Eviction",
                        "metadata": {"name": name, "namespace": ns},
                        **(
                            {"deleteOptions": {"gracePeriodSeconds": int(flags["grace-period"])}}
                            if flags.get("grace-period") not in (None, "-1")
                            else {}
                        ),
                    },
                )
                break
            except ApiError as err:
                if err.status == 404:
                    break
                if err.status == 429:
                    if deadline and time.monotonic() + 5 > deadline:
                        failures.append(
                            f'error when evicting pods/"{name}" -n "{ns}": global timeout '
                            f"reached: {flagutil.go_duration(timeout)}"
                        )
                        break
                    print(
                        f'error when evicting pods/"{name}" -n "{ns}" (will retry after 5s): {err}',
                        file=sys.stderr,
                    )
                    time.sleep(5)
                    continue
                failures.append(f'error when evicting pods/"{name}" -n "{ns}": {err}')
                break
    if failures:
        print(
            f'error: unable to drain node "{node}" due to error: [{", ".join(failures)}], '
            "continuing command...",
            file=sys.stderr,
        )
        print(f"There are pending nodes to be drained:\n {node}", file=sys.stderr)
        for f in failures:
            print(f, file=sys.stderr)
        return 1
    while pending:
        for uid, p in list(pending.items()):
            cur = c.get_or_none("pods", p["metadata"]["name"], p["metadata"]["namespace"])
            if cur is None or cur["metadata"]["uid"] != uid:
                print(f"pod/{p['metadata']['name']} evicted")
                pending.pop(uid)
        if deadline and time.monotonic() > deadline:
            print(
                f'error: unable to drain node "{node}" due to error: global timeout reached',
                file=sys.stderr,
            )
            return 1
        if pending:
            time.sleep(1)
    print(f"node/{node} drained")
    return 0


def load_manifests(path: str) -> list[dict]:
    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    docs = []
    for d in yaml.safe_load_all(text):
        if not d:
            continue
        docs += d.get("items", []) if d.get("kind") == "List" else [d]
    return docs


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
            for key in ("spec", "data", "metadata"):
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
        c.delete(resource, name, ns, grace_period=grace)
        print(f'{SINGULAR.get(resource, resource).split(".")[0]} "{name}" deleted')
    return 0


def _condition_met(obj: dict | None, want: str) -> bool:
    """--for=condition=Ready[=True], --for=delete, --for=jsonpath={.path}=value."""
    if want == "delete":
        return obj is None
    if obj is None:
        return False
    if want.startswith("condition="):
        name, _, value = want[len("condition=") :].partition("=")
        conds = obj.get("status", {}).get("conditions") or []
        return any(
            c.get("type", "").lower() == name.lower()
            and c.get("status", "").lower() == (value or "True").lower()
            for c in conds
        )
    if want.startswith("jsonpath="):
        expr, _, value = want[len("jsonpath=") :].strip("'").rpartition("=")
        return jsonpath(expr, obj).strip() == value
    raise KubectlError(f"error: unrecognized condition: {want!r}")


def wait(c: Client, flags: dict, args: list[str]) -> int:
    """kubectl wait (k8s.io/kubectl/pkg/cmd/wait): poll until each object meets --for."""
    want = flags.get("for")
    if not want:
        raise KubectlError("error: --for must be specified")
    timeout = flagutil.duration(flags.get("timeout", "30s"))
    targets: list[tuple[str, str]] = []
    for arg in args:
        kind, _, name = arg.partition("/")
        targets.append((resolve(kind), name))
    if len(args) >= 1 and "/" not in args[0]:
        resource = resolve(args[0])
        ns = (
            (flags.get("n") or flags.get("namespace") or "default")
            if RESOURCES[resource][2]
            else None
        )
        if args[1:]:
            targets = [(resource, n) for n in args[1:]]
        else:
            items = c.list(resource, ns, label_selector=flags.get("l") or flags.get("selector"))[
                "items"
            ]
            targets = [(resource, i["metadata"]["name"]) for i in items]
            if not targets:
                raise KubectlError("error: no matching resources found")
    deadline = time.monotonic() + timeout
    code = 0
    for resource, name in targets:
        ns = (
            (flags.get("n") or flags.get("namespace") or "default")
            if RESOURCES[resource][2]
            else None
        )
        label = f"{SINGULAR.get(resource, resource)}/{name}"
        while True:
            obj = c.get_or_none(resource, name, ns)
            if _condition_met(obj, want):
                print(f"{label} {'deleted' if want == 'delete' else 'condition met'}")
                break
            if time.monotonic() >= deadline:
                print(
                    f"error: timed out waiting for the condition on {resource}/{name}",
                    file=sys.stderr,
                )
                code = 1
                break
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
    return code


def version(flags: dict) -> int:
    v = own_version()
    info = {
        "major": str(v.major),
        "minor": str(v.minor),
        "gitVersion": str(v),
        "gitCommit": git_commit(v),
        "gitTreeState": "clean",
        "buildDate": "2024-04-17T17:36:05Z",
        "goVersion": "go1.22.2",
        "compiler": "gc",
        "platform": "linux/amd64",
    }
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
            resource = resolve(args[0].split("/")[0])
            name = args[0].split("/", 1)[1] if "/" in args[0] else args[1]
            ns = (
                (flags.get("n") or flags.get("namespace") or "default")
                if RESOURCES[resource][2]
                else None
            )
            c.patch(resource, name, json.loads(flags.get("p") or flags.get("patch") or "{}"), ns)
            print(f"{SINGULAR.get(resource, resource)}/{name} patched")
            return 0
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
