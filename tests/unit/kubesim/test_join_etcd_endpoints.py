"""kubeadm's etcd endpoints (join's check-etcd, upgrade's etcd step) are polled as upstream's
getRawEtcdEndpointsFromPodAnnotation does: a list that timed out behind a busy apiserver, or
an etcd pod whose mirror has no annotation yet, is asked again until the timeout."""

from __future__ import annotations

import pytest
from kubesim.kubeadm import join
from kubesim.kubeadm.errors import KubeadmError
from kubesim.kubeclient import ApiError

URL = "https://198.18.0.11:2379"
ANNOTATION = "kubeadm.kubernetes.io/etcd.advertise-client-urls"


def pod(url: str | None) -> dict:
    return {"metadata": {"annotations": {ANNOTATION: url} if url else {}}}


class Client:
    def __init__(self, answers):
        self.answers, self.calls = list(answers), 0

    def list(self, kind, namespace, label_selector=""):
        assert (kind, namespace, label_selector) == (
            "pods", "kube-system", "component=etcd,tier=control-plane")  # fmt: skip
        self.calls += 1
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return {"items": answer}


@pytest.fixture
def clock(monkeypatch):
    """time.sleep advances time.monotonic: the poll's deadline without waiting."""
    now = [0.0]
    monkeypatch.setattr(join.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(join.time, "sleep", lambda s: now.__setitem__(0, now[0] + s))
    return now


def test_a_timed_out_list_and_an_unannotated_mirror_are_asked_again(clock):
    timeout = TimeoutError("The read operation timed out")
    client = Client([timeout, ApiError(503, {"message": "unavailable"}), [pod(URL), pod(None)],
                     [pod(URL), pod("https://198.18.0.12:2379")]])  # fmt: skip
    assert join.etcd_endpoints(client) == [URL, "https://198.18.0.12:2379"]
    assert client.calls == 4 and clock[0] == 1.5


def test_it_gives_up_at_the_timeout_with_the_last_reason(clock):
    client = Client([TimeoutError("The read operation timed out")])
    with pytest.raises(KubeadmError, match="etcd endpoints: The read operation timed out"):
        join.etcd_endpoints(client, timeout=5)
    assert client.calls == 11 and clock[0] == 5  # asked at 0, 0.5, ... 5 s
