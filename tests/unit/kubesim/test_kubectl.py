"""kubectl stand-in against an in-memory REST fake: output formats, get -f, apply/create/
delete, cordon/drain (PDB 429 retries, filters), wait, patch. The fake answers at the HTTP
level (Client.raw), so the commands run their real request code."""

from __future__ import annotations

import json
from urllib.parse import parse_qsl, urlsplit

import pytest
from kubesim import kubeclient
from kubesim.kubeclient import RESOURCES

PLURAL_BY_PATH = {(g, v, plural): plural for plural, (g, v, _) in RESOURCES.items()}


class FakeApi(kubeclient.Client):
    """Just enough of the apiserver's REST semantics for kubectl's requests."""

    def __init__(self) -> None:  # no TLS, no connection
        self.objects: dict[tuple[str, str | None, str], dict] = {}
        self.requests: list[tuple[str, str]] = []
        self.evictions_refused = 0  # answer the next N evictions with 429 (a PDB)
        self.refuse: set[str] = set()  # pods whose every eviction gets 429
        self.rv = 100

    def add(self, resource: str, obj: dict) -> dict:
        meta = obj.setdefault("metadata", {})
        ns = meta.get("namespace") if RESOURCES[resource][2] else None
        meta.setdefault("uid", f"uid-{meta['name']}")
        meta.setdefault("creationTimestamp", "2024-01-01T00:00:00Z")
        self.rv += 1
        meta["resourceVersion"] = str(self.rv)
        self.objects[(resource, ns, meta["name"])] = obj
        return obj

    @staticmethod
    def _route(path: str) -> tuple[str, str | None, str | None, str | None]:
        parts = [p for p in path.split("/") if p]
        if parts[0] == "api":
            group, version, rest = "", parts[1], parts[2:]
        else:
            group, version, rest = parts[1], parts[2], parts[3:]
        ns = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            ns, rest = rest[1], rest[2:]
        resource = PLURAL_BY_PATH[(group, version, rest[0])]
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        return resource, ns, name, sub

    def _status(self, code: int, reason: str, message: str) -> tuple[int, bytes]:
        doc = {"kind": "Status", "status": "Failure", "reason": reason, "message": message}
        return code, json.dumps(doc).encode()

    def raw(  # noqa: PLR0917 - Client.raw's signature
        self, method, path, body=None, content_type="application/json", timeout=None, accept=""
    ):
        self.requests.append((method, path))
        split = urlsplit(path)
        query = dict(parse_qsl(split.query))
        if split.path == "/version":
            return 200, b'{"gitVersion": "v1.30.0"}'
        resource, ns, name, sub = self._route(split.path)
        doc = json.loads(body) if body else None
        key = (resource, ns, name)
        if method == "GET" and name is None:
            items = [
                o
                for (r, n, _), o in sorted(self.objects.items(), key=lambda kv: str(kv[0]))
                if r == resource and (ns is None or n == ns)
            ]
            sel = query.get("labelSelector")
            if sel:
                want = dict(p.split("=") for p in sel.split(","))
                items = [
                    o
                    for o in items
                    if all((o["metadata"].get("labels") or {}).get(k) == v for k, v in want.items())
                ]
            field = query.get("fieldSelector")
            if field:
                node = field.split("=", 1)[1]
                items = [o for o in items if o.get("spec", {}).get("nodeName") == node]
            return 200, json.dumps({"kind": "List", "items": items}).encode()
        if method == "POST" and sub == "eviction":
            if self.evictions_refused or name in self.refuse:
                self.evictions_refused = max(0, self.evictions_refused - 1)
                return self._status(
                    429,
                    "TooManyRequests",
                    "Cannot evict pod as it would violate the pod's disruption budget.",
                )
            self.objects.pop(key, None)
            return 201, b"{}"
        if method == "POST":
            doc["metadata"]["namespace"] = ns
            if key[:2] + (doc["metadata"]["name"],) in self.objects:
                return self._status(409, "AlreadyExists", "exists")
            return 201, json.dumps(self.add(resource, doc)).encode()
        if key not in self.objects:
            return self._status(404, "NotFound", f'{resource} "{name}" not found')
        if method == "GET":
            return 200, json.dumps(self.objects[key]).encode()
        if method == "PUT":
            return 200, json.dumps(self.add(resource, doc)).encode()
        if method == "PATCH":
            obj = self.objects[key]
            for top, val in doc.items():
                for k, v in val.items():
                    if v is None:
                        obj.setdefault(top, {}).pop(k, None)
                    else:
                        obj.setdefault(top, {})[k] = v
            return 200, json.dumps(obj).encode()
        if method == "DELETE":
            return 200, json.dumps(self.objects.pop(key)).encode()
        raise AssertionError(f"unexpected {method} {path}")


@pytest.fixture
def api(monkeypatch, tmp_path):
    fake = FakeApi()
    conf = tmp_path / "admin.conf"
    conf.write_text("unused: the client is faked\n")
    monkeypatch.setenv("KUBECONFIG", str(conf))
    monkeypatch.setattr(
        kubeclient.Client, "from_kubeconfig", classmethod(lambda cls, *a, **k: fake)
    )
    fake.add("nodes", {"metadata": {"name": "cp-1", "labels": {"x": "1"}}, "spec": {}})
    return fake


def kubectl(capsys, *argv: str) -> tuple[int, str, str]:
    from kubesim.kubectl import main

    code = main(list(argv))
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def pod(name: str, node: str = "cp-1", owner: str | None = "ReplicaSet", **extra) -> dict:
    meta: dict = {"name": name, "namespace": "default", "labels": {"app": "web"}}
    if owner:
        meta["ownerReferences"] = [{"kind": owner, "name": "o", "controller": True}]
    return {"metadata": meta, "spec": {"nodeName": node, **extra}, "status": {"phase": "Running"}}


def test_get_formats(api, capsys):
    code, out, _ = kubectl(capsys, "get", "nodes", "-o", "name")
    assert (code, out) == (0, "node/cp-1\n")
    code, out, _ = kubectl(capsys, "get", "no/cp-1", "-o", "jsonpath={.metadata.labels.x}")
    assert (code, out) == (0, "1")
    code, out, _ = kubectl(capsys, "get", "node", "cp-1", "-o", "json")
    assert json.loads(out)["metadata"]["name"] == "cp-1"
    code, out, _ = kubectl(capsys, "get", "nodes")
    assert out.split("\n")[0].split() == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    code, _, err = kubectl(capsys, "get", "pods")
    assert (code, err) == (0, "No resources found in default namespace.\n")
    code, _, err = kubectl(capsys, "get", "widgets")
    assert (code, err) == (1, 'error: the server doesn\'t have a resource type "widgets"\n')
    code, _, err = kubectl(capsys, "get", "node", "cp-9")
    assert code == 1 and err == 'Error from server (NotFound): nodes "cp-9" not found\n'


def test_get_raw(api, capsys):
    code, out, _ = kubectl(capsys, "get", "--raw", "/version")
    assert (code, json.loads(out)) == (0, {"gitVersion": "v1.30.0"})


def test_get_f_prints_found_objects_and_fails_on_missing(api, capsys, tmp_path):
    api.add("configmaps", {"metadata": {"name": "a", "namespace": "kube-system"}, "data": {}})
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        "kind: ConfigMap\nmetadata: {name: a, namespace: kube-system}\n---\n"
        "kind: ConfigMap\nmetadata: {name: b, namespace: kube-system}\n"
    )
    code, out, err = kubectl(capsys, "get", "-f", str(manifest), "-o", "name")
    assert code == 1
    assert out == "configmap/a\n"
    assert err == 'Error from server (NotFound): configmaps "b" not found\n'


def test_apply_create_delete(api, capsys, tmp_path):
    manifest = tmp_path / "cm.yaml"
    manifest.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {k: v}\n")
    assert kubectl(capsys, "apply", "-f", str(manifest))[1] == "configmap/c created\n"
    assert kubectl(capsys, "apply", "-f", str(manifest))[1] == "configmap/c unchanged\n"
    manifest.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {k: w}\n")
    assert kubectl(capsys, "apply", "-f", str(manifest))[1] == "configmap/c configured\n"
    assert api.objects[("configmaps", "default", "c")]["data"] == {"k": "w"}
    code, _, err = kubectl(capsys, "create", "-f", str(manifest))
    assert code == 1 and "(AlreadyExists)" in err and 'configmaps "c" already exists' in err
    assert kubectl(capsys, "delete", "-f", str(manifest))[1] == 'configmap "c" deleted\n'
    assert ("configmaps", "default", "c") not in api.objects


def test_cordon_patch_uncordon(api, capsys):
    assert kubectl(capsys, "cordon", "cp-1")[1] == "node/cp-1 cordoned\n"
    assert kubectl(capsys, "cordon", "cp-1")[1] == "node/cp-1 already cordoned\n"
    assert kubectl(capsys, "uncordon", "cp-1")[1] == "node/cp-1 uncordoned\n"
    assert "unschedulable" not in api.objects[("nodes", None, "cp-1")]["spec"]
    out = kubectl(capsys, "patch", "node", "cp-1", "-p", '{"metadata": {"labels": {"y": "2"}}}')
    assert out[1] == "node/cp-1 patched\n"
    assert api.objects[("nodes", None, "cp-1")]["metadata"]["labels"]["y"] == "2"


def test_drain_refuses_unmanaged_and_daemonset_pods(api, capsys):
    api.add("pods", pod("bare", owner=None))
    api.add("pods", pod("ds", owner="DaemonSet"))
    code, out, err = kubectl(capsys, "drain", "cp-1")
    assert code == 1 and out == "node/cp-1 cordoned\n"
    assert (
        "cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): default/ds"
        in err
    )
    assert (
        "cannot delete Pods that declare no controller (use --force to override): default/bare"
        in err
    )
    assert ("pods", "default", "bare") in api.objects


def test_drain_retries_a_pdb_refusal_then_evicts(api, capsys, monkeypatch):
    slept: list[float] = []
    monkeypatch.setattr("time.sleep", slept.append)
    api.add("pods", pod("web-1"))
    api.add("pods", pod("ds", owner="DaemonSet"))
    api.evictions_refused = 1
    code, out, err = kubectl(capsys, "drain", "cp-1", "--ignore-daemonsets")
    assert code == 0, err
    # drain.go evictPods prints "evicting pod" before every attempt, the retry included
    assert out.splitlines() == [
        "node/cp-1 cordoned",
        "evicting pod default/web-1",
        "evicting pod default/web-1",
        "pod/web-1 evicted",
        "node/cp-1 drained",
    ]
    assert "Warning: ignoring DaemonSet-managed Pods: default/ds" in err
    assert "(will retry after 5s): Cannot evict pod as it would violate" in err
    assert slept == [5]


def test_drain_timeout_while_a_pdb_refuses(api, capsys, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr("time.monotonic", lambda: clock[0])
    monkeypatch.setattr("time.sleep", lambda s: clock.__setitem__(0, clock[0] + s))
    api.add("pods", pod("web-1"))
    api.evictions_refused = 100
    code, _, err = kubectl(capsys, "drain", "cp-1", "--timeout=8s")
    assert code == 1
    assert 'error when evicting pods/"web-1" -n "default": global timeout reached: 8s' in err
    assert "Cannot evict pod as it would violate the pod's disruption budget." in err


def test_wait_for_condition_and_delete(api, capsys, monkeypatch):
    clock = [0.0]
    monkeypatch.setattr("time.monotonic", lambda: clock[0])
    monkeypatch.setattr("time.sleep", lambda s: clock.__setitem__(0, clock[0] + s))
    api.objects[("nodes", None, "cp-1")]["status"] = {
        "conditions": [{"type": "Ready", "status": "True"}]
    }
    code, out, _ = kubectl(capsys, "wait", "--for=condition=Ready", "node/cp-1", "--timeout=5s")
    assert (code, out) == (0, "node/cp-1 condition met\n")
    code, _, err = kubectl(
        capsys, "wait", "--for=condition=Ready=False", "node/cp-1", "--timeout=3s"
    )
    assert code == 1 and err == "error: timed out waiting for the condition on nodes/cp-1\n"
    code, out, _ = kubectl(capsys, "wait", "--for=delete", "pod/gone", "--timeout=1s")
    assert (code, out) == (0, "pod/gone deleted\n")


def test_version_client_and_server(api, capsys, monkeypatch):
    from kubesim import versions

    monkeypatch.setattr(versions, "_OWN", versions.Version.parse("v1.31.0"))
    code, out, _ = kubectl(capsys, "version")
    assert code == 0
    assert out.splitlines() == [
        "Client Version: v1.31.0",
        "Kustomize Version: v5.0.4-0.20230601165947-6ce0bf390ce3",
        "Server Version: v1.30.0",
    ]
    code, out, _ = kubectl(capsys, "version", "--client", "-o", "json")
    assert json.loads(out)["clientVersion"]["gitVersion"] == "v1.31.0"
    assert "serverVersion" not in json.loads(out)


def test_drain_evicts_concurrently_so_a_blocked_pod_does_not_stall_the_others(
    api, capsys, monkeypatch
):
    """k8s.io/kubectl/pkg/drain/drain.go evictPods: one goroutine per pod; a pod refused by
    its PDB retries every 5 s until the global --timeout, the others are evicted meanwhile
    and their errors are aggregated."""
    import threading
    import time as real_time

    lock, clock = threading.Lock(), [1000.0]
    real_sleep = real_time.sleep

    def sleep(seconds: float) -> None:
        real_sleep(0.01)
        with lock:
            clock[0] += seconds

    monkeypatch.setattr("time.monotonic", lambda: clock[0])
    monkeypatch.setattr("time.sleep", sleep)
    api.add("pods", pod("a-stuck"))
    api.add("pods", pod("b-web"))
    api.refuse.add("a-stuck")
    code, out, err = kubectl(capsys, "drain", "cp-1", "--timeout=8s")
    assert code == 1
    assert "pod/b-web evicted" in out.splitlines()
    assert ("pods", "default", "b-web") not in api.objects
    assert 'error when evicting pods/"a-stuck" -n "default": global timeout reached: 8s' in err
    # the stuck pod was tried at 0 s and 5 s; the check before the third attempt (10 s) ends it
    assert out.count("evicting pod default/a-stuck") == 3


def test_drain_honours_false_flags_and_disable_eviction(api, capsys):
    """cmd/drain flags are booleans: --force=false and --ignore-daemonsets=false keep their
    refusals (drain filters.go); --disable-eviction deletes the pods instead of evicting."""
    api.add("pods", pod("bare", owner=None))
    code, _, err = kubectl(capsys, "drain", "cp-1", "--force=false")
    assert code == 1 and "cannot delete Pods that declare no controller" in err
    api.objects.pop(("pods", "default", "bare"))
    api.add("pods", pod("ds", owner="DaemonSet"))
    code, _, err = kubectl(capsys, "drain", "cp-1", "--ignore-daemonsets=false")
    assert code == 1 and "cannot delete DaemonSet-managed Pods" in err
    api.objects.pop(("pods", "default", "ds"))
    api.add("pods", pod("web-1"))
    api.requests.clear()
    code, out, err = kubectl(capsys, "drain", "cp-1", "--disable-eviction")
    assert code == 0, err
    assert "pod/web-1 deleted" in out
    assert ("DELETE", "/api/v1/namespaces/default/pods/web-1") in api.requests
    assert not any(path.endswith("/eviction") for _, path in api.requests)
