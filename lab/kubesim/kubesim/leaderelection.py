"""client-go's Lease leader election, step for step.

staging/src/k8s.io/client-go/tools/leaderelection/leaderelection.go:
- acquire: wait.JitterUntil(tryAcquireOrRenew, RetryPeriod, JitterFactor=1.2, sliding) until
  it succeeds; a candidate may take the lock only when the record it *observed* (by its own
  clock, `observedTime`) has not changed for LeaseDurationSeconds;
- renew: every RetryPeriod, poll tryAcquireOrRenew each RetryPeriod for at most
  RenewDeadline (wait.PollUntilContextTimeout with a RenewDeadline context that is also the
  context of every request the attempt makes, so a hanging request is cut at the deadline);
  failing that, leadership is lost (the components then exit). A leader whose apiserver
  stops answering therefore loses its lease at most RetryPeriod + RenewDeadline after its
  last successful renewal;
- requests: the components' leader-election client has Timeout = RenewDeadline
  (cmd/kube-controller-manager/app/options/options.go Config, cmd/kube-scheduler/app/
  options/options.go createClients), which bounds each request outside renew too;
- release (ReleaseOnCancel, the scheduler only): write the record with an empty holder and
  leaseDurationSeconds 1 so the others take over at their next retry.
The lease duration is stored in whole seconds (LeaderElectionRecord.LeaseDurationSeconds).
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from . import klog
from .kubeclient import ApiError, Client

JITTER_FACTOR = 1.2


def micro_time(when: dt.datetime | None = None) -> str:
    when = when or dt.datetime.now(dt.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Record:
    holder: str = ""
    lease_duration: int = 0
    acquire_time: str | None = None
    renew_time: str | None = None
    transitions: int = 0

    def to_spec(self) -> dict:
        spec: dict = {
            "holderIdentity": self.holder,
            "leaseDurationSeconds": self.lease_duration,
            "leaseTransitions": self.transitions,
        }
        if self.acquire_time:
            spec["acquireTime"] = self.acquire_time
        if self.renew_time:
            spec["renewTime"] = self.renew_time
        return spec

    @classmethod
    def from_spec(cls, spec: dict) -> Record:
        return cls(
            spec.get("holderIdentity") or "",
            int(spec.get("leaseDurationSeconds") or 0),
            spec.get("acquireTime"),
            spec.get("renewTime"),
            int(spec.get("leaseTransitions") or 0),
        )


class LeaderElector:
    def __init__(  # noqa: PLR0917 - mirrors the upstream call's parameters
        self,
        client: Client,
        namespace: str,
        name: str,
        identity: str,
        lease_duration: float,
        renew_deadline: float,
        retry_period: float,
        release_on_cancel: bool = False,
    ) -> None:
        if lease_duration <= renew_deadline:
            raise ValueError("leaseDuration must be greater than renewDeadline")
        if renew_deadline <= JITTER_FACTOR * retry_period:
            raise ValueError("renewDeadline must be greater than retryPeriod*JitterFactor")
        self.client = client
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.release_on_cancel = release_on_cancel
        self.observed = Record()
        self.observed_raw = b""
        self.observed_time = 0.0  # monotonic, like the clock.Now() client-go keeps
        self.lease: dict | None = None
        self.lock = threading.Lock()
        self.deadline: float | None = None  # of the renew attempt in progress (its ctx)
        self.leading_since: float | None = None  # leader_election_master_status

    @property
    def describe(self) -> str:
        return f"{self.namespace}/{self.name}"

    def is_leader(self) -> bool:
        return self.observed.holder == self.identity

    def lease_valid(self, now: float) -> bool:
        return self.observed_time + self.observed.lease_duration > now

    def _timeout(self) -> float:
        """A request's timeout: the client's (RenewDeadline), cut by the attempt's ctx."""
        if self.deadline is None:
            return self.renew_deadline
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("context deadline exceeded")
        return min(self.renew_deadline, left)

    def _set_observed(self, record: Record) -> None:
        self.observed = record
        self.observed_time = time.monotonic()

    def _update(self, record: Record) -> None:
        if self.lease is None:
            raise RuntimeError("lease not initialized, call get or create first")
        lease = copy.deepcopy(self.lease)
        lease["spec"] = record.to_spec()
        self.lease = self.client.update("leases", lease, self.namespace, timeout=self._timeout())

    def try_acquire_or_renew(self) -> bool:
        now_wall = micro_time()
        now = time.monotonic()
        record = Record(self.identity, int(self.lease_duration), now_wall, now_wall)
        # 1. fast path: the leader updates optimistically on the record it last observed.
        if self.is_leader() and self.lease_valid(now):
            record.acquire_time = self.observed.acquire_time
            record.transitions = self.observed.transitions
            try:
                self._update(record)
                self._set_observed(record)
                return True
            except Exception as err:  # noqa: BLE001 - any failure falls back to the slow path
                klog.error(
                    f"Failed to update lock optimistically: {err}, falling back to slow path",
                    "leaderelection.go:436",
                )
        # 2. obtain or create the election record
        try:
            self.lease = self.client.get(
                "leases", self.name, self.namespace, timeout=self._timeout()
            )
        except ApiError as err:
            if err.status != 404:
                klog.error(
                    f"error retrieving resource lock {self.describe}: {err}",
                    "leaderelection.go:332",
                )
                return False
            try:
                self.lease = self.client.create(
                    "leases",
                    {
                        "apiVersion": "coordination.k8s.io/v1",
                        "kind": "Lease",
                        "metadata": {"name": self.name, "namespace": self.namespace},
                        "spec": record.to_spec(),
                    },
                    self.namespace,
                    timeout=self._timeout(),
                )
            except Exception as cerr:  # noqa: BLE001
                klog.error(
                    f"error initially creating leader election record: {cerr}",
                    "leaderelection.go:343",
                )
                return False
            self._set_observed(record)
            return True
        except Exception as err:  # noqa: BLE001 - timeouts, refused connections
            klog.error(
                f"error retrieving resource lock {self.describe}: {err}", "leaderelection.go:332"
            )
            return False
        old = Record.from_spec(self.lease.get("spec") or {})
        raw = json.dumps(self.lease.get("spec") or {}, sort_keys=True).encode()
        # 3. record obtained: a changed record restarts the observed clock
        if raw != self.observed_raw:
            self._set_observed(old)
            self.observed_raw = raw
        if old.holder and self.lease_valid(now) and not self.is_leader():
            return False
        # 4. try to take or keep it
        if self.is_leader():
            record.acquire_time = old.acquire_time
            record.transitions = old.transitions
        else:
            record.transitions = old.transitions + 1
        try:
            self._update(record)
        except Exception as err:  # noqa: BLE001
            klog.error(f"Failed to update lock: {err}", "leaderelection.go:428")
            return False
        self._set_observed(record)
        return True

    def acquire(self, stop: threading.Event) -> bool:
        klog.info(f"attempting to acquire leader lease {self.describe}...", "leaderelection.go:250")
        while not stop.is_set():
            if self.try_acquire_or_renew():
                klog.info(f"successfully acquired lease {self.describe}", "leaderelection.go:260")
                self.leading_since = time.monotonic()
                return True
            # wait.JitterUntil(..., sliding=true): the wait starts after the attempt.
            stop.wait(self.retry_period * (1 + random.random() * JITTER_FACTOR))
        return False

    def renew(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.deadline = time.monotonic() + self.renew_deadline
            ok = False
            try:
                while not stop.is_set():
                    if self.try_acquire_or_renew():
                        ok = True
                        break
                    left = self.deadline - time.monotonic()
                    if left <= 0:
                        break
                    stop.wait(min(self.retry_period, left))
                    if time.monotonic() >= self.deadline:
                        break
            finally:
                self.deadline = None
            if stop.is_set():
                return
            if not ok:
                klog.info(
                    f"failed to renew lease {self.describe}: timed out waiting for the condition",
                    "leaderelection.go:285",
                )
                self.leading_since = None
                return
            stop.wait(self.retry_period)

    def release(self) -> bool:
        if not self.is_leader():
            return True
        now_wall = micro_time()
        record = Record("", 1, now_wall, now_wall, self.observed.transitions)
        self.leading_since = None
        try:
            self._update(record)
        except Exception as err:  # noqa: BLE001
            klog.error(f"Failed to release lock: {err}", "leaderelection.go:309")
            return False
        self._set_observed(record)
        return True

    def run(self, stop: threading.Event, on_started: Callable[[threading.Event], None]) -> bool:
        """Acquire, run `on_started` in a thread while renewing; True if leadership was lost."""
        if not self.acquire(stop):
            return False
        leading = threading.Event()
        worker = threading.Thread(target=on_started, args=(leading,), daemon=True)
        worker.start()
        self.renew(stop)
        leading.set()
        if stop.is_set():
            if self.release_on_cancel:
                self.release()
            return False
        return True

    def healthy(self, tolerance: float = 20.0) -> bool:
        """leaderelection.HealthzAdaptor: a leader whose lease expired > tolerance ago is sick."""
        if not self.is_leader():
            return True
        return time.monotonic() <= self.observed_time + self.lease_duration + tolerance
