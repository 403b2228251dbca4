"""Delegated authentication on a running kubesim kube-apiserver (real etcd on loopback, not
the lab), with kubeadm's requestheader flags:

- the start-cluster-authentication-info-controller hook publishes ConfigMap
  kube-system/extension-apiserver-authentication (cluster_authentication_trust_controller.go);
- a scheduler-like secure port (controllers/common.py serve_healthz) without --client-ca-file
  takes the client CA from that ConfigMap through its --authentication-kubeconfig
  (server/options/authentication.go ApplyTo): a certificate with O=system:monitoring reads
  /metrics (bootstrap ClusterRole system:monitoring, by a SubjectAccessReview), anonymous
  gets 403;
- the apiserver unreachable at start: the scheduler's default
  --authentication-tolerate-lookup-failure=true starts it with every client anonymous
  until the ConfigMap is read; =false makes kube-scheduler exit 1.
Without servers: test_delegated_authn.py."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest
from kubesim import kubeconfig, pki
from kubesim.controllers import authn, delegating
from kubesim.controllers.common import serve_healthz
from kubesim.kubeclient import Client
from kubesim.pki import CertSpec

from lab.kubesim.loopback import Loopback, free_port, wait_port
from tests.unit.kubesim.test_rbac_bootstrap_apiserver import USERS, call, get_port, until

CM = "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication"
HEADER_FLAGS = (
    "--requestheader-allowed-names=front-proxy-client",
    "--requestheader-extra-headers-prefix=X-Remote-Extra-",
    "--requestheader-group-headers=X-Remote-Group",
    "--requestheader-username-headers=X-Remote-User",
)


@pytest.fixture(scope="module")
def lo(tmp_path_factory):
    root = tmp_path_factory.mktemp("authn")
    with Loopback(root, members=1) as cluster:
        ca = pki.load_pair(cluster.pki, "ca")
        users = USERS | {"sched": ("system:kube-scheduler", [])}
        for base, (cn, orgs) in users.items():
            spec = CertSpec(base, base, "ca", cn, orgs, client=True)
            pki.write_pair(cluster.pki, base, *pki.sign_leaf(spec, *ca))
        pki.write_pair(cluster.pki, "front-proxy-ca", *pki.make_ca("front-proxy-ca"))
        cluster.api = cluster.apiserver(
            [0], f"--requestheader-client-ca-file={cluster.pki}/front-proxy-ca.crt", *HEADER_FLAGS
        )
        cluster.wait_ready(cluster.api)
        yield cluster


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once closed


def scheduler_conf(lo, port: int) -> str:
    """scheduler.conf as kubeadm writes it (user system:kube-scheduler)."""
    conf = lo.root / f"scheduler-{port}.conf"
    ca, crt, key = ((lo.pki / f).read_bytes() for f in ("ca.crt", "sched.crt", "sched.key"))
    conf.write_text(kubeconfig.render("lo", f"https://127.0.0.1:{port}", ca, "sched", crt, key))
    return str(conf)


def test_the_apiserver_publishes_its_authentication_configmap(lo):
    code, body = call(lo, "GET", "/readyz?verbose", user=None)
    assert "[+]poststarthook/start-cluster-authentication-info-controller ok" in body.splitlines()
    code, cm = until(lambda: (r := call(lo, "GET", CM))[0] == 200 and r)
    assert cm["data"] == {
        "client-ca-file": (lo.pki / "ca.crt").read_text(),
        "requestheader-allowed-names": '["front-proxy-client"]',
        "requestheader-client-ca-file": (lo.pki / "front-proxy-ca.crt").read_text(),
        "requestheader-extra-headers-prefix": '["X-Remote-Extra-"]',
        "requestheader-group-headers": '["X-Remote-Group"]',
        "requestheader-username-headers": '["X-Remote-User"]',
    }
    rv = cm["metadata"]["resourceVersion"]
    api = lo.apiserver([0], f"--requestheader-client-ca-file={lo.pki}/front-proxy-ca.crt")
    try:  # a second apiserver with fewer header flags: the lists are a union, nothing moves
        lo.wait_ready(api)
        assert call(lo, "GET", CM, api=api)[1]["metadata"]["resourceVersion"] == rv
    finally:
        api.proc.terminate()
        api.proc.wait(timeout=30)


def scheduler_port(lo, authn_conf: str, tolerate: bool = True):
    """The scheduler's secure port as run_component builds it: no --client-ca-file."""
    ca = authn.from_flags({"authentication-kubeconfig": authn_conf}, tolerate_default=tolerate)
    authz = delegating.from_flags({"authorization-kubeconfig": scheduler_conf(lo, lo.api.port)})
    port = free_port()
    serve_healthz(
        "127.0.0.1", port, lambda: [("ping", True)], lambda: "up 1\n", ca, authorizer=authz
    )
    return port, ca


def test_the_scheduler_port_takes_its_client_ca_from_the_configmap(lo):
    port, ca = scheduler_port(lo, scheduler_conf(lo, lo.api.port))
    assert isinstance(ca, authn.ConfigMapCA)
    until(ca.current)
    assert ca.current() == (lo.pki / "ca.crt").read_bytes()
    assert get_port(lo, port, "/metrics", "mon") == (200, "up 1\n")
    code, body = get_port(lo, port, "/metrics", None)
    assert code == 403
    assert json.loads(body)["message"] == (
        'forbidden: User "system:anonymous" cannot get path "/metrics"'
    )
    code, body = get_port(lo, port, "/metrics", "nobody")
    assert code == 403 and '"nobody"' in json.loads(body)["message"]
    assert get_port(lo, port, "/healthz", None) == (200, "ok")


def test_an_unreachable_apiserver_at_start_is_tolerated_by_the_scheduler(lo, capfd):
    down = closed_port()
    port, ca = scheduler_port(lo, scheduler_conf(lo, down))
    err = capfd.readouterr().err
    assert (
        "Error looking up in-cluster authentication configuration: Get "
        f'"https://127.0.0.1:{down}{CM}": dial tcp 127.0.0.1:{down}: connect: connection refused'
    ) in err
    assert "Continuing without authentication configuration." in err
    code, body = get_port(lo, port, "/metrics", "mon")  # no CA yet: the cert is not asked for
    assert code == 403 and '"system:anonymous"' in json.loads(body)["message"]
    until(lambda: ca.lists >= 2)  # the informer keeps listing, backing off
    assert "failed to list *v1.ConfigMap: Get " in capfd.readouterr().err
    # the apiserver comes back: the next list reaches it
    ca.client = Client.from_kubeconfig(scheduler_conf(lo, lo.api.port), timeout=30)
    until(ca.current, within=40)
    assert get_port(lo, port, "/metrics", "mon")[0] == 200


def test_without_toleration_kube_scheduler_exits(lo):
    down = closed_port()
    conf = scheduler_conf(lo, down)
    port = free_port()
    args = [
        sys.executable,
        "-m",
        "kubesim.component",
        "kube-scheduler",
        f"--authentication-kubeconfig={conf}",
        f"--authorization-kubeconfig={conf}",
        f"--kubeconfig={conf}",
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        "--leader-elect=false",
    ]
    done = subprocess.run(
        [*args, "--authentication-tolerate-lookup-failure=false"],
        env=lo.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert (
        '"command failed" err="unable to load configmap based request-header-client-ca-file: '
        f'Get \\"https://127.0.0.1:{down}{CM}\\": dial tcp 127.0.0.1:{down}: connect: '
        'connection refused"'
    ) in done.stderr
    log = lo.root / "scheduler.log"
    with log.open("w") as fh:  # the default (true): it starts and serves
        proc = subprocess.Popen(args, env=lo.env, stdout=subprocess.DEVNULL, stderr=fh)
    try:
        wait_port(port, proc, log)
        assert get_port(lo, port, "/healthz", None) == (200, "ok")
        assert "Continuing without authentication configuration" in log.read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
