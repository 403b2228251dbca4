"""An OIDC user through a running kubesim kube-apiserver (real etcd 3.5 on loopback) and a
real HTTPS issuer: the token's group gets exactly what its RBAC binding gives (200 vs 403),
a bad token is 401, and the apiserver started before the issuer was reachable."""

from __future__ import annotations

import json
import socket
import sys
import time
from pathlib import Path

import pytest

from lab.kubesim.loopback import Loopback

sys.path.insert(0, str(Path(__file__).parent))
from oidc_issuer import Issuer, Key  # noqa: E402

RBAC = "/apis/rbac.authorization.k8s.io/v1"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("oidc")
    iss = Issuer(root)
    iss.keys = [Key("k1")]
    # the issuer is down while the apiserver starts: its port is reserved, not served
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        iss.port = s.getsockname()[1]
    with Loopback(root, members=1) as lo:
        api = lo.apiserver(
            [0],
            f"--oidc-issuer-url={iss.url}",
            "--oidc-client-id=kubernetes",
            f"--oidc-ca-file={iss.ca_file}",
            "--oidc-groups-claim=groups",
            "--oidc-groups-prefix=oidc:",
            "--oidc-username-prefix=oidc:",
        )
        lo.wait_ready(api)
        iss.start()
        try:
            yield lo, api, iss
        finally:
            iss.stop()


def bearer(lo, api, token: str, path: str):
    status, body, _, _ = lo.call(
        api, "GET", path, user=None, headers={"Authorization": f"Bearer {token}"}
    )
    return status, json.loads(body) if body.startswith(b"{") else body


def test_token_user_gets_what_its_binding_gives(env):
    lo, api, iss = env
    dev = iss.keys[0].sign(iss.claims(sub="alice", groups=["devs"]))
    for path, body in [
        ("/api/v1/namespaces", {"metadata": {"name": "other"}}),
        (
            f"{RBAC}/clusterroles",
            {
                "metadata": {"name": "pod-reader"},
                "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}],
            },
        ),
        (
            f"{RBAC}/namespaces/default/rolebindings",
            {
                "metadata": {"name": "devs-read"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "pod-reader",
                },
                "subjects": [
                    {"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "oidc:devs"}
                ],
            },
        ),
    ]:
        assert lo.call(api, "POST", path, body)[0] == 201
    # the issuer came up after the apiserver: the authenticator retries discovery (10 s)
    deadline = time.monotonic() + 40
    while True:
        status, doc = bearer(lo, api, dev, "/api/v1/namespaces/default/pods")
        if status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert status == 200, doc
    assert doc["kind"] == "PodList"
    status, doc = bearer(lo, api, dev, "/api/v1/namespaces/other/pods")
    assert status == 403
    assert doc["message"] == (
        'pods is forbidden: User "oidc:alice" cannot list resource "pods" in API group "" '
        'in the namespace "other"'
    )
    ops = iss.keys[0].sign(iss.claims(sub="bob", groups="ops"))
    assert bearer(lo, api, ops, "/api/v1/namespaces/default/pods")[0] == 403
    expired = iss.keys[0].sign(iss.claims(exp=int(time.time()) - 10))
    assert bearer(lo, api, expired, "/api/v1/namespaces/default/pods")[0] == 401
    forged = Key("k1").sign(iss.claims(groups=["devs"]))
    assert bearer(lo, api, forged, "/api/v1/namespaces/default/pods")[0] == 401
    assert "oidc: token is expired" in api.log.read_text()
