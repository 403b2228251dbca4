"""
The formula's image policy on a running kubesim kube-apiserver (real etcd 3.5 on loopback):
applied and kept by the `kube_objects` state through kubectl (kubesim's), refusing and
admitting pods over HTTPS with upstream's Status, warning headers and audit annotation,
counted in /metrics; not served before 1.30.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
from pathlib import Path

import pytest
import salt.config
import salt.loader
import yaml

from lab.kubesim.loopback import KUBESIM, Loopback
from tests.conftest import REPO

POLICIES = "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies"
BINDINGS = "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings"
PODS = "/api/v1/namespaces/default/pods"


def kubeconfig(lo: Loopback, port: int, path: Path) -> Path:
    b64 = lambda p: base64.b64encode((lo.pki / p).read_bytes()).decode()  # noqa: E731
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "lo",
                "cluster": {
                    "server": f"https://127.0.0.1:{port}",
                    "certificate-authority-data": b64("ca.crt"),
                },
            }
        ],
        "users": [
            {
                "name": "admin",
                "user": {
                    "client-certificate-data": b64("admin.crt"),
                    "client-key-data": b64("admin.key"),
                },
            }
        ],
        "contexts": [{"name": "lo", "context": {"cluster": "lo", "user": "admin"}}],
        "current-context": "lo",
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def kubesim_kubectl(root: Path) -> Path:
    """kubesim's kubectl as <root>/bin/kubectl; the directory (for PATH)."""
    bindir = root / "bin"
    bindir.mkdir()
    (bindir / "kubectl").write_text(
        f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(KUBESIM)!r})\n"
        "from kubesim.kubectl import main\nsys.exit(main())\n"
    )
    (bindir / "kubectl").chmod(0o755)
    return bindir


def formula_loaders(cache: Path, bindir: Path):
    """(opts, modules, states) of the formula, with ``bindir`` first on PATH while the
    generator is suspended (a fixture's yield)."""
    opts = salt.config.minion_config(None)
    opts.update(
        {
            "file_client": "local",
            "cachedir": str(cache),
            "extension_modules": str(cache / "extmods"),
            "module_dirs": [str(REPO / "_modules")],
            "states_dirs": [str(REPO / "_states")],
            "utils_dirs": [str(REPO / "_utils")],
            "grains": {},
            "test": False,
        }
    )
    utils = salt.loader.utils(opts)
    funcs = salt.loader.minion_mods(opts, utils=utils)
    states = salt.loader.states(opts, funcs, utils, {})
    old_path = os.environ["PATH"]
    os.environ["PATH"] = f"{bindir}:{old_path}"
    try:
        yield opts, funcs, states
    finally:
        os.environ["PATH"] = old_path


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("vap")
    (root / "policy.yaml").write_text(
        (REPO / "salt/kubeha/files/kubeadm/audit-policy.yaml.jinja").read_text()
    )
    with Loopback(root, members=1) as lo:
        lo.v130 = lo.apiserver(
            [0],
            f"--audit-policy-file={root / 'policy.yaml'}",
            f"--audit-log-path={root / 'audit.log'}",
        )
        lo.v129 = lo.apiserver([0], version="v1.29.15")
        lo.wait_ready(lo.v130)
        lo.wait_ready(lo.v129)
        lo.kubeconfig = kubeconfig(lo, lo.v130.port, root / "admin.conf")
        lo.audit = root / "audit.log"
        lo.bindir = kubesim_kubectl(root)  # on PATH for the states, as the machines have it
        yield lo


@pytest.fixture(scope="module")
def salt_loaders(cluster, tmp_path_factory):
    yield from formula_loaders(tmp_path_factory.mktemp("cache"), cluster.bindir)


def objects(funcs, **admission) -> list[dict]:
    conf = {
        "enabled": True,
        "validation_actions": ["Deny"],
        "failure_policy": "Fail",
        "exempt_namespaces": ["kube-system"],
        **admission,
    }
    model = {"kubernetes": {"version": "1.30.0"}, "security": {"admission": conf}}
    return funcs["kubeha_security.admission_objects"](model)


def apply_state(opts, states, objs, kubeconfig, test=False) -> dict:
    if test:
        # A loader of its own with test=True: the state reads __opts__ as loaded.
        dry = dict(opts, test=True)
        utils = salt.loader.utils(dry)
        states = salt.loader.states(dry, salt.loader.minion_mods(dry, utils=utils), utils, {})
    return states["kube_objects.applied"](
        "admission",
        objs,
        prune={
            "selector": "app.kubernetes.io/managed-by=kubeha",
            "resources": ["validatingadmissionpolicies", "validatingadmissionpolicybindings"],
        },
        kubeconfig=str(kubeconfig),
    )


def pod(name: str, image: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": image}]},
    }


def test_state_applies_keeps_and_prunes_the_policy(cluster, salt_loaders):
    opts, funcs, states = salt_loaders
    objs = objects(funcs)
    dry = apply_state(opts, states, objs, cluster.kubeconfig, test=True)
    assert dry["result"] is None and set(dry["changes"].values()) == {"created"}, dry
    first = apply_state(opts, states, objs, cluster.kubeconfig)
    assert first["result"] is True, first
    assert first["changes"] == {
        "ValidatingAdmissionPolicy/kubeha-image-tag": "created",
        "ValidatingAdmissionPolicyBinding/kubeha-image-tag": "created",
    }
    again = apply_state(opts, states, objs, cluster.kubeconfig)
    assert again["result"] is True and again["changes"] == {}, again
    # Drift (the binding switched to Warn by hand) is put back.
    path = f"{BINDINGS}/kubeha-image-tag"
    binding = json.loads(cluster.call(cluster.v130, "GET", path)[1])
    binding["spec"]["validationActions"] = ["Warn"]
    assert cluster.call(cluster.v130, "PUT", path, binding)[0] == 200
    fixed = apply_state(opts, states, objs, cluster.kubeconfig)
    assert fixed["changes"] == {"ValidatingAdmissionPolicyBinding/kubeha-image-tag": "configured"}
    # Turned off: what kubeha made goes.
    off = apply_state(opts, states, [], cluster.kubeconfig)
    assert set(off["changes"].values()) == {"deleted"}, off
    assert cluster.call(cluster.v130, "GET", f"{POLICIES}/kubeha-image-tag")[0] == 404
    assert apply_state(opts, states, objs, cluster.kubeconfig)["result"] is True


def test_pods_refused_and_admitted_over_https(cluster, salt_loaders):
    opts, funcs, states = salt_loaders
    assert apply_state(opts, states, objects(funcs), cluster.kubeconfig)["result"] is True
    code, body, _, _ = cluster.call(cluster.v130, "POST", PODS, pod("latest", "nginx:latest"))
    status = json.loads(body)
    assert code == 422 and status["reason"] == "Invalid", body
    assert status["message"].startswith(
        "pods \"latest\" is forbidden: ValidatingAdmissionPolicy 'kubeha-image-tag' with "
        "binding 'kubeha-image-tag' denied request: image without a tag"
    )
    assert status["details"] == {
        "name": "latest",
        "kind": "pods",
        "causes": [{"message": status["message"].split(": ", 1)[1]}],
    }
    assert cluster.call(cluster.v130, "POST", PODS, pod("pinned", "nginx:1.27.2"))[0] == 201
    metrics = cluster.call(cluster.v130, "GET", "/metrics")[1].decode()
    assert (
        'apiserver_validating_admission_policy_check_total{enforcement_action="deny",'
        'policy="kubeha-image-tag",policy_binding="kubeha-image-tag"} 1'
    ) in metrics


def test_warn_header_and_audit_annotation(cluster, salt_loaders):
    opts, funcs, states = salt_loaders
    objs = objects(funcs, validation_actions=["Warn", "Audit"])
    assert apply_state(opts, states, objs, cluster.kubeconfig)["changes"]
    code, _, headers, _ = cluster.call(cluster.v130, "POST", PODS, pod("warned", "busybox"))
    assert code == 201
    assert headers["Warning"].startswith(
        "299 - \"Validation failed for ValidatingAdmissionPolicy 'kubeha-image-tag' with "
        "binding 'kubeha-image-tag': image without a tag"
    )
    # The event is written once the answer is sent: wait for it (bounded).
    deadline = time.monotonic() + 10
    created = None
    while created is None and time.monotonic() < deadline:
        events = [json.loads(line) for line in cluster.audit.read_text().splitlines()]
        created = next(
            (
                e
                for e in events
                if e["verb"] == "create"
                and e.get("objectRef", {}).get("name") == "warned"
                and e["stage"] == "ResponseComplete"
            ),
            None,
        )
        time.sleep(0.1)
    assert created is not None, "no audit event for the create"
    failure = json.loads(
        created["annotations"]["validation.policy.admission.k8s.io/validation_failure"]
    )
    assert failure[0]["validationActions"] == ["Warn", "Audit"]
    assert apply_state(opts, states, objects(funcs), cluster.kubeconfig)["changes"]


def test_policy_api_not_served_before_1_30(cluster):
    code, _, _, _ = cluster.call(cluster.v129, "GET", POLICIES)
    assert code == 404
    assert cluster.call(cluster.v130, "GET", POLICIES)[0] == 200
