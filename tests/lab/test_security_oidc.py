"""
Runbook step 11's RBAC and OIDC on the lab's built cluster (issue 16): users signed in
through an OIDC issuer get exactly the access the teams in pillar give their groups, through
the VIP.

The lab profile `oidc` (pillar/kubeha/profiles/lab-oidc.sls) sets `apiserver:oidc` and two
teams. An issuer (tests/unit/kubesim/oidc_issuer.py) serves discovery and its JWKS over TLS
on the lab host's bridge address; its CA goes where the profile's `ca_file` says. The
apiservers get the `--oidc-*` flags the formula renders from that pillar
(`kubeha_kubeadm_config.apiserver_args`), set in their static pods one node at a time as
`kubeadm upgrade` would; `kubeha.security` (highstate) applies the teams' bindings. kubesim's
apiserver verifies each RS256 ID token against the JWKS and authorizes with RBAC (the
bootstrap ClusterRoles included). Everything is undone at the end: flags, CA, profile, and
the teams' objects pruned by the next highstate.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from collections.abc import Iterator

import pytest
import yaml

from lab import formula
from lab.api import Lab
from lab.config import HOST_IP
from lab.manifests import set_flags, wait_readyz
from tests.conftest import REPO

# The issuer signs with kubesim's own PKI helpers (as tests/unit/kubesim/conftest.py does).
sys.path.insert(0, str(REPO / "lab" / "kubesim"))
from tests.unit.kubesim.oidc_issuer import Issuer, Key  # noqa: E402

pytestmark = [pytest.mark.lab, pytest.mark.root]

CLUSTER = formula.CLUSTER
PORT = 8446  # the profile's issuer_url
NS = "kubeha-oidc-test"
CA = "/etc/kubernetes/pki/ca.crt"
LB_PORT = yaml.safe_load((REPO / "pillar/kubeha/lab.sls").read_text())["kubeha"]["vip"]["lb_port"]
KUBECTL = ["kubectl", "--kubeconfig=/etc/kubernetes/admin.conf", "--request-timeout=30s"]


def _oidc_flags(model: dict) -> dict[str, str]:
    spec = importlib.util.spec_from_file_location(
        "khm_kubeadm_config", REPO / "_modules/kubeha_kubeadm_config.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {k: v for k, v in module.apiserver_args(model).items() if k.startswith("oidc-")}


def _status(lab: Lab, token: str, method: str, path: str, body: dict | None = None) -> int:
    """HTTP status of one request through the VIP with a bearer token (curl on cp-1)."""
    url = f"https://{lab.vip}:{LB_PORT}{path}"
    args = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", CA, "-X", method,
            "-H", f"Authorization: Bearer {token}", "--max-time", "20"]  # fmt: skip
    if body is not None:
        args += ["-H", "Content-Type: application/json", "--data-binary", "@-"]
    out = lab.exec("cp-1", *args, url, input=json.dumps(body) if body else None, timeout=60)
    return int(out.stdout.strip() or 0)


@pytest.fixture(scope="module")
def oidc(lab: Lab, tmp_path_factory) -> Iterator[tuple[Issuer, Key]]:
    formula.sync(lab)
    gate = lab.salt_run("kubeha_gate.final", CLUSTER, "wait=120", timeout=400)
    assert gate.get("result"), f"the lab has no healthy cluster (run test_bootstrap.py): {gate}"
    issuer = Issuer(tmp_path_factory.mktemp("oidc"), port=PORT, host=HOST_IP).start()
    key = Key("lab-1")
    issuer.keys.append(key)
    ca_pem = (issuer.root / "oidc-ca.crt").read_text()
    flags: dict[str, str] = {}
    try:
        lab.salt("cp-*", "grains.setval", "kubeha_profile", "oidc")
        lab.salt("cp-*", "saltutil.refresh_pillar", "wait=True")
        model = lab.salt_run("kubeha.model", CLUSTER)
        flags = _oidc_flags(model)
        assert flags["oidc-issuer-url"] == issuer.url, flags
        for node in lab.control_planes:
            lab.sh(node, f"umask 022; cat > {flags['oidc-ca-file']}", input=ca_pem)
            if set_flags(lab, node, "kube-apiserver", flags):
                wait_readyz(lab, node)
        lab.exec("cp-1", *KUBECTL, "delete", "namespace", NS, "--ignore-not-found")
        namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}
        lab.exec("cp-1", *KUBECTL, "create", "-f", "-", input=json.dumps(namespace), check=True)
        run = formula.highstate(lab)
        assert run.ok, run.describe()
        yield issuer, key
    finally:
        lab.salt("cp-*", "grains.delkey", "kubeha_profile", "force=True")
        lab.salt("cp-*", "saltutil.refresh_pillar", "wait=True")
        for node in lab.control_planes:
            if set_flags(lab, node, "kube-apiserver", {}, drop=tuple(flags)):
                wait_readyz(lab, node)
            lab.exec(node, "rm", "-f", "/etc/kubernetes/pki/oidc-ca.crt", check=False)
        lab.exec("cp-1", *KUBECTL, "delete", "namespace", NS, "--ignore-not-found", check=False)
        pruned = formula.highstate(lab)
        issuer.stop()
        assert pruned.ok, pruned.describe()


def _token(issuer: Issuer, key: Key, sub: str, groups: list[str], **extra) -> str:
    return key.sign(issuer.claims(sub=sub, groups=groups, **extra))


CONFIGMAP = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "oidc-probe"},
             "data": {"a": "b"}}  # fmt: skip


def test_a_team_bound_to_view_reads_everything_and_changes_nothing(lab: Lab, oidc):
    issuer, key = oidc
    alice = _token(issuer, key, "alice", ["team-a"])
    assert _status(lab, alice, "GET", "/api/v1/pods") == 200
    assert _status(lab, alice, "GET", f"/api/v1/namespaces/{NS}/configmaps") == 200
    assert _status(lab, alice, "POST", f"/api/v1/namespaces/{NS}/configmaps", CONFIGMAP) == 403
    assert _status(lab, alice, "GET", "/api/v1/namespaces/kube-system/secrets") == 403  # view


def test_a_team_with_edit_in_one_namespace_writes_there_only(lab: Lab, oidc):
    issuer, key = oidc
    bob = _token(issuer, key, "bob", ["team-b"])
    assert _status(lab, bob, "POST", f"/api/v1/namespaces/{NS}/configmaps", CONFIGMAP) == 201
    assert _status(lab, bob, "POST", "/api/v1/namespaces/default/configmaps", CONFIGMAP) == 403
    assert _status(lab, bob, "GET", "/api/v1/pods") == 403


def test_no_team_no_access_and_bad_tokens_are_unauthenticated(lab: Lab, oidc):
    issuer, key = oidc
    carol = _token(issuer, key, "carol", ["someone-else"])
    assert _status(lab, carol, "GET", "/api/v1/pods") == 403
    # Authenticated users may still discover the API (system:discovery, bootstrap RBAC).
    assert _status(lab, carol, "GET", "/api") == 200
    expired = _token(issuer, key, "alice", ["team-a"], exp=int(time.time()) - 60)
    assert _status(lab, expired, "GET", "/api/v1/pods") == 401
    stranger = Key("not-published")  # signed by a key the issuer does not publish
    assert _status(lab, stranger.sign(issuer.claims(sub="alice", groups=["team-a"])),
                   "GET", "/api/v1/pods") == 401  # fmt: skip
    wrong_audience = _token(issuer, key, "alice", ["team-a"], aud="another-client")
    assert _status(lab, wrong_audience, "GET", "/api/v1/pods") == 401
