"""
Runbook step 11 on the lab's built cluster (tests/lab/test_bootstrap.py builds it): the
module converges the control planes with the formula's highstate first, as an operator does,
so kubeha.security's objects are there whatever ran on the lab before (an upgrade built at
1.29, where no policy is served, or a test that deleted them). Then the image policy refuses
and admits pods as the formula's table says, through the VIP (cp-1's admin.conf points at
VIP:8443, so HAProxy picks the apiserver), and the audit log records each kind of request at
the policy's level, with the rotation flags on every apiserver.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
import yaml

from lab import formula
from lab.api import Lab

pytestmark = [pytest.mark.lab, pytest.mark.root]

KUBECTL = ["kubectl", "--kubeconfig=/etc/kubernetes/admin.conf", "--request-timeout=30s"]
NS = "kubeha-security-test"
TABLE = [
    ("nginx", False),
    ("nginx:latest", False),
    ("registry.example.com:5000/team/app", False),
    ("nginx:1.27.2", True),
    ("nginx@sha256:" + "a" * 64, True),
]
AUDIT_LOG = "/var/log/kubernetes/apiserver/audit.log"
POLICY = "kubeha-image-tag"  # policy and binding (kubeha_security.POLICY_NAME)


def kubectl(lab: Lab, *args: str, doc: dict | None = None, check: bool = False):
    return lab.exec(
        "cp-1",
        *KUBECTL,
        *args,
        input=json.dumps(doc) if doc is not None else None,
        check=check,
        timeout=60,
    )


@pytest.fixture(scope="module")
def cluster(lab: Lab) -> Iterator[Lab]:
    """The built cluster, healthy, its modules synced, converged by highstate (which applies
    kubeha.security from the init node), and an empty namespace for the probes."""
    formula.sync(lab)
    gate = lab.salt_run("kubeha_gate.final", formula.CLUSTER, "wait=120", timeout=400)
    assert gate.get("result"), f"the lab has no healthy cluster (run test_bootstrap.py): {gate}"
    run = formula.highstate(lab)
    assert run.ok, run.describe()
    got = kubectl(lab, "get", "validatingadmissionpolicy", POLICY, "-o", "json")
    assert got.returncode == 0, f"kubeha.security did not apply the policy: {got.stderr}"
    kubectl(lab, "delete", "namespace", NS, "--ignore-not-found")
    kubectl(lab, "create", "-f", "-", doc={"apiVersion": "v1", "kind": "Namespace",
                                           "metadata": {"name": NS}}, check=True)  # fmt: skip
    yield lab
    kubectl(lab, "delete", "namespace", NS, "--ignore-not-found")


def test_the_formula_puts_back_a_deleted_policy(cluster: Lab):
    """Applied and kept: objects someone deleted come back on the next state run."""
    for kind in ("validatingadmissionpolicybinding", "validatingadmissionpolicy"):
        kubectl(cluster, "delete", kind, POLICY, "--ignore-not-found", check=True)
    result = cluster.salt("--timeout=300", "cp-*", "state.apply", "kubeha.security", timeout=600)
    run = formula.state_run(result)
    assert run.ok, run.describe()
    changed = [m for m, ids in run.changed.items() if "kubeha-security-admission-applied" in ids]
    assert changed == ["cp-1"], run.describe()  # the init node only
    for kind in ("validatingadmissionpolicy", "validatingadmissionpolicybinding"):
        assert kubectl(cluster, "get", kind, POLICY).returncode == 0, kind


def test_images_accepted_and_refused_through_the_vip(cluster: Lab):
    seen = []
    for i, (image, accepted) in enumerate(TABLE):
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"img-{i}", "namespace": NS},
            "spec": {"containers": [{"name": "c", "image": image}]},
        }
        out = kubectl(cluster, "create", "-f", "-", doc=pod)
        seen.append((image, out.returncode == 0, (out.stderr or "").strip()[:200]))
        if accepted:
            assert out.returncode == 0, (image, out.stderr)
        else:
            assert out.returncode != 0, image
            assert (
                "ValidatingAdmissionPolicy 'kubeha-image-tag' with binding 'kubeha-image-tag' "
                "denied request" in out.stderr
            ), out.stderr
    print("\n".join(f"{img:60} {'accepted' if ok else 'refused'}" for img, ok, _ in seen))


def _events(lab: Lab, name: str) -> list[dict]:
    out = []
    for node in lab.control_planes:
        # grep on the node: the log rotates at 100 MB, too much to copy back every second.
        text = lab.exec(node, "grep", "-F", f'"{name}"', AUDIT_LOG, check=False, timeout=60).stdout
        out += [
            e
            for line in text.splitlines()
            if f'"{name}"' in line
            for e in [json.loads(line)]
            if (e.get("objectRef") or {}).get("name") == name
        ]
    return out


def test_audit_levels_per_resource(cluster: Lab):
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "audit-probe", "namespace": NS},
        "stringData": {"password": "not-in-the-log"},
    }
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "kubeha-audit-probe"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}],
    }
    kubectl(cluster, "delete", "clusterrole", "kubeha-audit-probe", "--ignore-not-found")
    kubectl(cluster, "create", "-f", "-", doc=secret, check=True)
    kubectl(cluster, "create", "-f", "-", doc=role, check=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        secrets = [e for e in _events(cluster, "audit-probe") if e["verb"] == "create"]
        roles = [e for e in _events(cluster, "kubeha-audit-probe") if e["verb"] == "create"]
        if secrets and roles:
            break
        time.sleep(1)
    assert secrets and roles, "no audit event for the secret or the ClusterRole"
    # Secrets at Metadata: who and what, never the data.
    assert {e["level"] for e in secrets} == {"Metadata"}
    assert all("requestObject" not in e and "responseObject" not in e for e in secrets)
    assert not any("not-in-the-log" in json.dumps(e) for e in secrets)
    # RBAC changes at RequestResponse: the rules asked for and what was stored.
    done = [e for e in roles if e["stage"] == "ResponseComplete"]
    assert done and done[-1]["level"] == "RequestResponse"
    assert done[-1]["requestObject"]["rules"] == role["rules"]
    assert done[-1]["responseObject"]["metadata"]["name"] == "kubeha-audit-probe"
    kubectl(cluster, "delete", "clusterrole", "kubeha-audit-probe", "--ignore-not-found")


def test_audit_rotation_flags_on_every_apiserver(cluster: Lab):
    for node in cluster.control_planes:
        text = cluster.exec(node, "cat", "/etc/kubernetes/manifests/kube-apiserver.yaml").stdout
        command = yaml.safe_load(text)["spec"]["containers"][0]["command"]
        for flag in ("--audit-log-maxage=7", "--audit-log-maxbackup=10", "--audit-log-maxsize=100"):
            assert flag in command, (node, flag)
