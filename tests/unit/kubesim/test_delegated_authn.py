"""Delegated authentication without servers:

- apiserver/authinfo.py, the start-cluster-authentication-info-controller hook
  (clusterauthenticationtrust/cluster_authentication_trust_controller.go): the ConfigMap's
  keys and JSON lists, the union with what is stored, idempotence, retries;
- controllers/authn.py, DelegatingAuthenticationOptions.ApplyTo (server/options/
  authentication.go): which client CA, the request-header lookup and
  --authentication-tolerate-lookup-failure, and the ConfigMap CA controller
  (dynamiccertificates/configmap_cafile_content.go) following the ConfigMap.
Against a real apiserver and secure port: test_delegated_authn_apiserver.py."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from kubesim import pki
from kubesim.apiserver import authinfo
from kubesim.controllers import authn
from kubesim.kubeclient import ApiError

from tests.unit.kubesim.test_rbac_bootstrap import FakeStore

CM = ("configmaps", "extension-apiserver-authentication")


def pem(cert) -> str:
    return pki.cert_pem(cert).decode()


@pytest.fixture(scope="module")
def cas():
    """Two live CAs and an expired one (NotAfter a day ago)."""
    one, two = pki.make_ca("kubernetes")[0], pki.make_ca("front-proxy-ca")[0]
    key = pki.new_key()
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "old")])
    old = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(pki.now() - dt.timedelta(days=2))
        .not_valid_after(pki.now() - dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return one, two, old


@pytest.fixture
def files(tmp_path, cas):
    one, two, _ = cas
    (tmp_path / "ca.crt").write_text(pem(one))
    (tmp_path / "front-proxy-ca.crt").write_text(pem(two))
    return tmp_path


def kubeadm_flags(d) -> dict[str, str]:
    """kube-apiserver's, as kubeadm writes them (kubeadm/manifests.py)."""
    return {
        "client-ca-file": str(d / "ca.crt"),
        "requestheader-allowed-names": "front-proxy-client",
        "requestheader-client-ca-file": str(d / "front-proxy-ca.crt"),
        "requestheader-extra-headers-prefix": "X-Remote-Extra-",
        "requestheader-group-headers": "X-Remote-Group",
        "requestheader-username-headers": "X-Remote-User",
    }


def test_the_configmap_carries_the_cas_and_the_header_lists(files, cas):
    store = FakeStore()
    assert authinfo.sync(store, kubeadm_flags(files)) == "create"
    cm = store.objects[CM]
    assert cm["metadata"]["namespace"] == "kube-system"
    assert cm["data"] == {
        "client-ca-file": pem(cas[0]),
        "requestheader-allowed-names": '["front-proxy-client"]',
        "requestheader-client-ca-file": pem(cas[1]),
        "requestheader-extra-headers-prefix": '["X-Remote-Extra-"]',
        "requestheader-group-headers": '["X-Remote-Group"]',
        "requestheader-username-headers": '["X-Remote-User"]',
    }
    assert ("create", "kube-system") in store.writes  # createNamespaceIfNeeded
    assert authinfo.sync(store, kubeadm_flags(files)) == "none"  # idempotent


def test_without_requestheader_ca_only_the_client_ca_and_nothing_without_either(files, cas):
    store = FakeStore()
    flags = {"client-ca-file": str(files / "ca.crt"), "requestheader-username-headers": "X"}
    authinfo.sync(store, flags)
    assert store.objects[CM]["data"] == {"client-ca-file": pem(cas[0])}
    bare = FakeStore()
    assert authinfo.sync(bare, {}) == "none" and CM not in bare.objects
    flags = kubeadm_flags(files) | {"requestheader-allowed-names": ""}
    authinfo.sync(bare, flags)
    assert bare.objects[CM]["data"]["requestheader-allowed-names"] == "[]"


def test_what_is_stored_is_kept_first_deduplicated_expired_dropped(files, cas):
    one, two, old = cas
    store = FakeStore()
    store.objects[CM] = {
        "metadata": {"name": CM[1], "namespace": "kube-system", "resourceVersion": "7"},
        "data": {
            "client-ca-file": pem(two) + pem(old) + pem(one),
            "requestheader-client-ca-file": pem(two),
            "requestheader-allowed-names": '["aggregator"]',
            "requestheader-username-headers": '["X-Remote-User"]',
            "stray": "dropped",
        },
    }
    assert authinfo.sync(store, kubeadm_flags(files)) == "update"
    data = store.objects[CM]["data"]
    assert data["client-ca-file"] == pem(two) + pem(one)
    assert data["requestheader-allowed-names"] == '["aggregator","front-proxy-client"]'
    assert data["requestheader-username-headers"] == '["X-Remote-User"]'
    assert "stray" not in data
    rotated = files / "new-ca.crt"
    rotated.write_text(pem(pki.make_ca("kubernetes")[0]))
    authinfo.sync(store, kubeadm_flags(files) | {"client-ca-file": str(rotated)})
    assert store.objects[CM]["data"]["client-ca-file"] == pem(two) + pem(one) + rotated.read_text()


def test_the_controller_retries_until_storage_answers(files, monkeypatch, capfd):
    store, stop, calls = FakeStore(), threading.Event(), []
    store.fail = 3  # etcd down: the first three reads fail
    real = authinfo.sync

    def sync(*args):
        calls.append(store.fail)
        try:
            return real(*args)
        finally:
            if CM in store.objects:
                stop.set()

    monkeypatch.setattr(authinfo, "sync", sync)
    authinfo.run(store, kubeadm_flags(files), stop, resync=60)
    assert calls == [3, 2, 1, 0] and CM in store.objects
    err = capfd.readouterr().err
    assert err.count("kube-system/extension-apiserver-authentication failed with : ") == 3


def test_a_client_ca_file_is_used_as_is_and_nothing_is_looked_up(files):
    client = FakeClient()
    flags = {"client-ca-file": str(files / "ca.crt"), "requestheader-client-ca-file": "x"}
    ca = authn.from_flags(flags, client=client)
    assert isinstance(ca, authn.StaticCA) and ca.current() == (files / "ca.crt").read_bytes()
    assert client.sent == []


class FakeClient:
    """kubeclient.Client's request(): `answers` per call (an exception or a document)."""

    host, port, server, timeout = "127.0.0.1", 6443, "https://127.0.0.1:6443", 30.0

    def __init__(self, *answers) -> None:
        self.answers = list(answers)
        self.sent: list[tuple[str, str, dict | None]] = []

    def request(self, method, path, obj=None, query=None, **kw):
        self.sent.append((method, path, query))
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


REFUSED = ConnectionRefusedError(111, "Connection refused")
GET = (
    'Get "https://127.0.0.1:6443/api/v1/namespaces/kube-system/configmaps/'
    'extension-apiserver-authentication": dial tcp 127.0.0.1:6443: connect: connection refused'
)


def test_the_scheduler_tolerates_a_failed_lookup_and_starts(capfd):
    client = FakeClient(REFUSED)
    ca = authn.from_flags({"authentication-kubeconfig": "x"}, tolerate_default=True, client=client)
    assert isinstance(ca, authn.ConfigMapCA) and ca.current() is None
    assert client.sent == [("GET", f"{authn.CM_PATH}/extension-apiserver-authentication", None)]
    err = capfd.readouterr().err
    assert f"Error looking up in-cluster authentication configuration: {GET}" in err
    assert "Continuing without authentication configuration. This may treat all requests" in err
    assert "set --authentication-tolerate-lookup-failure=false" in err


def test_without_toleration_the_failed_lookup_stops_the_component():
    for flags, default in (
        ({}, False),
        ({"authentication-tolerate-lookup-failure": "false"}, True),
    ):
        with pytest.raises(authn.LookupFailed) as got:
            authn.from_flags(flags, tolerate_default=default, client=FakeClient(REFUSED))
        assert (
            str(got.value) == f"unable to load configmap based request-header-client-ca-file: {GET}"
        )
        assert authn.command_failed(got.value) == (
            '"command failed" err="unable to load configmap based request-header-client-ca-file: '
            'Get \\"https://127.0.0.1:6443/api/v1/namespaces/kube-system/configmaps/extension-'
            'apiserver-authentication\\": dial tcp 127.0.0.1:6443: connect: connection refused"'
        )


def test_a_missing_configmap_is_no_error_a_forbidden_one_is(capfd):
    assert authn.from_flags({}, client=FakeClient(ApiError(404, {"reason": "NotFound"})))
    forbidden = ApiError(403, {"reason": "Forbidden", "message": "configmaps ... is forbidden"})
    with pytest.raises(authn.LookupFailed, match="is forbidden"):
        authn.from_flags({}, client=FakeClient(forbidden))
    assert "--role=extension-apiserver-authentication-reader" in capfd.readouterr().err


def test_no_kubeconfig_or_skip_lookup_means_no_client_ca(capfd):
    assert authn.from_flags({}) is None
    err = capfd.readouterr().err
    assert "No authentication-kubeconfig provided in order to lookup client-ca-file in " in err
    assert (
        "lookup requestheader-client-ca-file in configmap/extension-apiserver-authentication" in err
    )
    client = FakeClient(REFUSED)
    assert authn.from_flags({"authentication-skip-lookup": "true"}, client=client) is None
    assert client.sent == []


def configmap(data: dict) -> dict:
    return {"items": [{"metadata": {"name": "extension-apiserver-authentication"}, "data": data}]}


def test_the_configmap_ca_lists_with_backoff_until_it_gets_the_bundle(cas, capfd):
    one, two, _ = cas
    client = FakeClient(REFUSED, REFUSED, configmap({"client-ca-file": pem(one)}))
    ca = authn.ConfigMapCA(client, relist=10)
    waits: list[float] = []

    def wait(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 4:
            ca.stop.set()

    ca.wait = wait
    ca.run()
    assert ca.current() == pem(one).encode()
    assert 0.8 <= waits[0] <= 1.6 and 1.6 <= waits[1] <= 3.2 and waits[2:] == [10, 10]
    method, path, query = client.sent[0]
    assert (method, path) == ("GET", "/api/v1/namespaces/kube-system/configmaps")
    assert query == {
        "fieldSelector": "metadata.name=extension-apiserver-authentication",
        "limit": "500",
        "resourceVersion": "0",
    }
    err = capfd.readouterr().err
    assert "configmap_cafile_content.go:206: failed to list *v1.ConfigMap: Get " in err
    assert "?fieldSelector=metadata.name%3Dextension-apiserver-authentication&limit=500&" in err
    client.answers = [configmap({"client-ca-file": pem(two)})]
    ca.load(client.request("GET", "x")["items"])
    assert ca.current() == pem(two).encode()  # a rotated CA is followed


def test_the_configmap_ca_keeps_its_bundle_when_the_configmap_goes_bad(cas, capfd):
    ca = authn.ConfigMapCA(FakeClient(configmap({})))
    ca.load(configmap({"client-ca-file": pem(cas[0])})["items"])
    for items, error in (
        ([], 'configmap "extension-apiserver-authentication" not found'),
        (configmap({})["items"], 'missing content for CA bundle "client-ca::kube-system::'),
        (configmap({"client-ca-file": "junk"})["items"], "unable to load CA bundle for "),
    ):
        with pytest.raises(ValueError, match=error):
            ca.load(items)
        assert ca.current() == pem(cas[0]).encode()
