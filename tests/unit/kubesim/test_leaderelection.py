"""client-go's leader election algorithm, against an in-memory Lease API with conflicts."""

from __future__ import annotations

import copy
import itertools
import threading
import time

from kubesim.kubeclient import ApiError
from kubesim.leaderelection import LeaderElector, Record


class FakeLeases:
    """Just enough of the Lease REST API: get, create, update with resourceVersion checks."""

    def __init__(self) -> None:
        self.obj: dict | None = None
        self.rv = itertools.count(1)
        self.lock = threading.Lock()

    def get(self, resource, name, namespace, **kw):
        with self.lock:
            if self.obj is None:
                raise ApiError(404, {"reason": "NotFound", "message": "not found"})
            return copy.deepcopy(self.obj)

    def create(self, resource, obj, namespace, **kw):
        with self.lock:
            if self.obj is not None:
                raise ApiError(409, {"reason": "AlreadyExists", "message": "exists"})
            self.obj = copy.deepcopy(obj)
            self.obj["metadata"]["resourceVersion"] = str(next(self.rv))
            return copy.deepcopy(self.obj)

    def update(self, resource, obj, namespace, **kw):
        with self.lock:
            if obj["metadata"].get("resourceVersion") != self.obj["metadata"]["resourceVersion"]:
                raise ApiError(
                    409, {"reason": "Conflict", "message": "the object has been modified"}
                )
            self.obj = copy.deepcopy(obj)
            self.obj["metadata"]["resourceVersion"] = str(next(self.rv))
            return copy.deepcopy(self.obj)


def elector(api, ident, release=False):
    return LeaderElector(
        api, "kube-system", "kube-scheduler", ident, 2.0, 1.5, 0.25, release_on_cancel=release
    )


def run_in_thread(el, stop):
    leading = threading.Event()
    t = threading.Thread(target=el.run, args=(stop, lambda ev: leading.set()), daemon=True)
    t.start()
    return leading, t


def test_one_leader_then_takeover_only_after_lease_duration():
    api = FakeLeases()
    stop_a, stop_b = threading.Event(), threading.Event()
    a, b = elector(api, "a"), elector(api, "b")
    lead_a, _ = run_in_thread(a, stop_a)
    assert lead_a.wait(5)
    lead_b, _ = run_in_thread(b, stop_b)
    time.sleep(1.0)
    assert not lead_b.is_set(), "a candidate must not take a valid lease"
    # hard death of a: it stops renewing and does not release
    stop_a.set()
    killed = time.monotonic()
    assert lead_b.wait(10)
    took = time.monotonic() - killed
    assert took >= 2.0 - 0.3, f"took over after {took:.2f}s, before the 2s lease expired"
    assert took <= 2.0 + 2 * 0.25 * 2.2 + 1.0
    assert Record.from_spec(api.obj["spec"]).transitions == 1
    stop_b.set()


def test_release_on_cancel_hands_over_at_the_next_retry():
    api = FakeLeases()
    stop_a, stop_b = threading.Event(), threading.Event()
    a, b = elector(api, "a", release=True), elector(api, "b")
    lead_a, _ = run_in_thread(a, stop_a)
    assert lead_a.wait(5)
    lead_b, _ = run_in_thread(b, stop_b)
    time.sleep(0.5)
    stop_a.set()
    released = time.monotonic()
    assert lead_b.wait(5)
    assert time.monotonic() - released < 2 * 0.25 * 2.2 + 0.5
    stop_b.set()


def test_lease_duration_is_whole_seconds():
    api = FakeLeases()
    el = LeaderElector(api, "kube-system", "x", "me", 5.7, 3, 1)
    assert el.try_acquire_or_renew()
    assert api.obj["spec"]["leaseDurationSeconds"] == 5


class StalledLeases(FakeLeases):
    """After `stall()`, a GET hangs for the request's whole timeout and an optimistic
    UPDATE is refused at once: the leader's attempts end only by their deadline."""

    def __init__(self) -> None:
        super().__init__()
        self.stalled = False
        self.last_renew = 0.0

    def stall(self) -> None:
        self.stalled = True

    def get(self, resource, name, namespace, **kw):
        if self.stalled:
            time.sleep(kw["timeout"])
            raise TimeoutError("context deadline exceeded")
        return super().get(resource, name, namespace, **kw)

    def update(self, resource, obj, namespace, **kw):
        if self.stalled:
            raise ApiError(409, {"reason": "Conflict", "message": "the object has been modified"})
        out = super().update(resource, obj, namespace, **kw)
        self.last_renew = time.monotonic()
        return out


def test_a_leader_whose_apiserver_stalls_loses_the_lease_within_retry_plus_renew_deadline():
    """client-go leaderelection.go renew: wait.PollUntilContextTimeout(ctx, RetryPeriod,
    RenewDeadline, ...) with that context on every request of the attempt, and a client
    Timeout of RenewDeadline (cmd/kube-controller-manager/app/options/options.go): leadership
    ends at most RetryPeriod + RenewDeadline after the last successful renewal, and not
    before RenewDeadline, whatever the requests do."""
    api = StalledLeases()
    lease, renew, retry = 5.0, 3.0, 0.5
    el = LeaderElector(api, "kube-system", "kube-controller-manager", "a", lease, renew, retry)
    stop = threading.Event()
    result: list[bool] = []
    t = threading.Thread(target=lambda: result.append(el.run(stop, lambda ev: None)))
    t.start()
    deadline = time.monotonic() + 5
    while not api.last_renew:
        assert time.monotonic() < deadline, "never renewed"
        time.sleep(0.05)
    time.sleep(retry * 1.5)
    api.stall()
    t.join(renew + retry + 5)
    lost = time.monotonic() - api.last_renew
    assert result == [True], "leadership must be lost"
    assert el.leading_since is None  # leader_election_master_status goes to 0
    assert renew <= lost <= retry + renew + 0.35, lost
