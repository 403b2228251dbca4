"""kubeadm join's etcd MemberAdd is retried as upstream's addMember does: a cluster whose
leader has not yet been connected to every voter for 5 s refuses ("unhealthy cluster")."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from kubesim.etcd import EtcdError
from kubesim.kubeadm import join

PEER = "https://198.18.0.23:2380"


class Etcd:
    def __init__(self, refusals: int, lost_answer: bool = False):
        self.refusals, self.lost_answer, self.members, self.adds = refusals, lost_answer, [], 0

    def member_add(self, peers, learner=False):
        self.adds += 1
        if self.refusals:
            self.refusals -= 1
            raise EtcdError("etcdserver: unhealthy cluster")
        me = SimpleNamespace(id=3, name="", peer_urls=list(peers))
        self.members.append(me)
        if self.lost_answer:
            raise EtcdError("context deadline exceeded")
        return me, self.members

    def member_list(self):
        return self.members


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch):
    monkeypatch.setattr(join.time, "sleep", lambda s: None)


def test_an_unhealthy_cluster_is_asked_again_until_it_takes_the_member():
    etcd = Etcd(refusals=3)
    me, members = join._member_add(etcd, PEER, learner=True)
    assert etcd.adds == 4 and me.peer_urls == [PEER] and members == [me]


def test_an_add_whose_answer_was_lost_is_found_in_the_member_list_not_added_twice():
    etcd = Etcd(refusals=0, lost_answer=True)
    me, _ = join._member_add(etcd, PEER, learner=True)
    assert etcd.adds == 1 and me.peer_urls == [PEER]


def test_it_gives_up_after_two_minutes(monkeypatch):
    clock = iter(range(0, 10_000, 30))
    monkeypatch.setattr(join.time, "monotonic", lambda: next(clock))
    with pytest.raises(EtcdError, match="unhealthy cluster"):
        join._member_add(Etcd(refusals=100), PEER, learner=True)
