"""Delegated authorization of the KCM/scheduler secure port (controllers/delegating.py;
upstream server/options/authorization.go, authorization/union, authorizerfactory,
plugin/pkg/authorizer/webhook/webhook.go) against a scripted SubjectAccessReview API.
The same authorizer against a real kubesim apiserver: test_rbac_bootstrap_apiserver.py."""

from __future__ import annotations

import pytest
from kubesim.apiserver.auth import ANONYMOUS, User
from kubesim.controllers.delegating import DelegatingAuthorizer
from kubesim.kubeclient import ApiError

MONITOR = User("prometheus", ["system:monitoring", "system:authenticated"])
NOBODY = User("nobody", ["system:authenticated"])


class FakeSAR:
    """kubeclient.Client's request() for SubjectAccessReviews: answers from `script`
    (an exception to raise or an allowed flag per call), else from `allow(spec)`."""

    host, port, server, timeout = "127.0.0.1", 6443, "https://127.0.0.1:6443", 10.0

    def __init__(self, allow=lambda spec: "system:monitoring" in spec.get("groups", [])):
        self.allow = allow
        self.script: list = []
        self.sent: list[tuple[str, str, dict, dict]] = []

    def request(self, method, path, obj=None, query=None, **kw):
        self.sent.append((method, path, obj, query))
        if self.script:
            step = self.script.pop(0)
            if isinstance(step, Exception):
                raise step
        spec = obj["spec"]
        status = {"allowed": True} if self.allow(spec) else {"allowed": False, "reason": "no"}
        return obj | {"status": status}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def setup():
    sar, clock, slept = FakeSAR(), Clock(), []
    authz = DelegatingAuthorizer({}, sar, clock=clock, sleep=slept.append)
    return authz, sar, clock, slept


def test_always_allow_paths_and_system_masters_need_no_review(setup):
    authz, sar, _, _ = setup
    for path in ("/healthz", "/livez", "/readyz"):
        assert authz.authorize(ANONYMOUS, "get", path).allowed
    assert authz.authorize(User("root", ["system:masters"]), "get", "/metrics").allowed
    assert sar.sent == []
    assert not authz.authorize(ANONYMOUS, "get", "/healthz/leaderElection").allowed  # exact only
    assert len(sar.sent) == 1
    custom = DelegatingAuthorizer({"authorization-always-allow-paths": "/metrics*"}, sar)
    assert custom.authorize(ANONYMOUS, "get", "/metrics/slis").allowed
    assert len(sar.sent) == 1


def test_the_review_is_upstreams_and_its_answer_decides(setup):
    authz, sar, _, _ = setup
    assert authz.authorize(MONITOR, "get", "/metrics").allowed
    method, path, review, query = sar.sent[0]
    assert (method, path, query) == (
        "POST",
        "/apis/authorization.k8s.io/v1/subjectaccessreviews",
        {"timeout": "10s"},
    )
    assert review == {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "nonResourceAttributes": {"path": "/metrics", "verb": "get"},
            "user": "prometheus",
            "groups": ["system:monitoring", "system:authenticated"],
        },
    }
    got = authz.authorize(NOBODY, "get", "/metrics")
    assert (got.verdict, got.reason, got.error) == ("no-opinion", "no", "")


def test_answers_are_cached_ten_seconds_each_way(setup):
    authz, sar, clock, _ = setup
    for user, allowed in ((MONITOR, True), (NOBODY, False)):
        before = len(sar.sent)
        assert authz.authorize(user, "get", "/metrics").allowed is allowed
        clock.now += 9.9
        assert authz.authorize(user, "get", "/metrics").allowed is allowed
        assert len(sar.sent) == before + 1
        clock.now += 0.1
        assert authz.authorize(user, "get", "/metrics").allowed is allowed
        assert len(sar.sent) == before + 2
    assert authz.authorize(MONITOR, "get", "/metrics/slis").allowed  # another key
    assert len(sar.sent) == 5


def test_cache_ttls_follow_the_flags():
    sar, clock = FakeSAR(), Clock()
    flags = {
        "authorization-webhook-cache-authorized-ttl": "1s",
        "authorization-webhook-cache-unauthorized-ttl": "0s",
    }
    authz = DelegatingAuthorizer(flags, sar, clock=clock)
    authz.authorize(MONITOR, "get", "/metrics")
    authz.authorize(NOBODY, "get", "/metrics")
    authz.authorize(NOBODY, "get", "/metrics")  # a 0 s TTL caches nothing
    authz.authorize(MONITOR, "get", "/metrics")
    assert len(sar.sent) == 3
    clock.now += 1
    authz.authorize(MONITOR, "get", "/metrics")
    assert len(sar.sent) == 4


def test_an_unreachable_apiserver_is_an_error_not_retried_nor_cached(setup):
    authz, sar, _, slept = setup
    sar.script = [ConnectionRefusedError(111, "Connection refused")] * 2
    got = authz.authorize(MONITOR, "get", "/metrics")
    assert (got.verdict, got.reason) == ("no-opinion", "")
    assert got.error == (
        'Post "https://127.0.0.1:6443/apis/authorization.k8s.io/v1/subjectaccessreviews'
        '?timeout=10s": dial tcp 127.0.0.1:6443: connect: connection refused'
    )
    assert len(sar.sent) == 1 and slept == []  # DefaultShouldRetry: a refusal is final
    assert authz.authorize(MONITOR, "get", "/metrics").error  # not cached
    assert authz.authorize(MONITOR, "get", "/metrics").allowed
    assert len(sar.sent) == 3


def test_transient_failures_are_retried_with_upstreams_backoff(setup):
    authz, sar, _, slept = setup
    busy = ApiError(500, {"reason": "InternalError", "message": "etcd leader changed"})
    sar.script = [busy, ApiError(429, {"reason": "TooManyRequests", "message": "slow"})]
    assert authz.authorize(MONITOR, "get", "/metrics").allowed
    assert len(sar.sent) == 3 and len(slept) == 2
    assert 0.5 <= slept[0] <= 0.6 and 0.75 <= slept[1] <= 0.9
    sar.script, slept[:] = [busy] * 5, []
    got = authz.authorize(NOBODY, "get", "/metrics")
    assert got.error == "etcd leader changed" and len(slept) == 4  # 5 tries in all
    forbidden = ApiError(403, {"reason": "Forbidden", "message": "cannot create"})
    sar.script, slept[:] = [forbidden], []
    assert authz.authorize(User("x", []), "get", "/metrics").error == "cannot create"
    assert slept == []


def test_without_an_authorization_kubeconfig_only_the_shortcuts_pass(capfd):
    authz = DelegatingAuthorizer({}, None)
    assert "No authorization-kubeconfig provided" in capfd.readouterr().err
    assert authz.authorize(ANONYMOUS, "get", "/readyz").allowed
    got = authz.authorize(MONITOR, "get", "/metrics")
    assert (got.verdict, got.error) == ("no-opinion", "")
