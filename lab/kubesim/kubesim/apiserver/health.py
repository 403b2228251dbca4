"""/livez, /readyz and /healthz as the generic apiserver serves them.

Output follows staging/src/k8s.io/apiserver/pkg/server/healthz/healthz.go: with ?verbose
each check is a line `[+]name ok` or `[-]name failed: reason withheld`, then
`<endpoint> check passed|failed`; a failure always answers 500 with that verbose text; a
success without ?verbose answers `ok`. `?exclude=name` skips a check; `/readyz/<name>`
runs one. Checks run one after the other (healthz.go handleRootHealth).

`etcd` (healthz, livez, readyz) and `etcd-readiness` (readyz) each have their own etcd
client over every --etcd-servers endpoint and read `/registry/health` within
--etcd-healthcheck-timeout / --etcd-readycheck-timeout (2 s). Each is rate limited to one
real read per timeout/2; a call in between returns the result of the last read *sent*
(storage/storagebackend/factory/etcd3.go newETCD3Check: rate.NewLimiter(rate.Every(
timeout/2), 1), atomicLastError), so probes are cheap and a dead etcd is reported within
about timeout/2 + timeout. `informer-sync` fails until the apiserver's informers (here: its
watch cache) have listed once (server/healthz informerSync); `shutdown` fails from SIGTERM
on, which with --shutdown-delay-duration lets load balancers drain before the port closes
(server/genericapiserver.go, lifecycle_signals.go).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from urllib.parse import parse_qs

from ..etcd import KVOps

POSTSTART_HOOKS = [
    "start-apiserver-admission-initializer",
    "generic-apiserver-start-informers",
    "priority-and-fairness-config-consumer",
    "priority-and-fairness-filter",
    "storage-object-count-tracker-hook",
    "start-apiextensions-informers",
    "start-apiextensions-controllers",
    "crd-informer-synced",
    "start-system-namespaces-controller",
    "start-service-ip-repair-controllers",
    "rbac/bootstrap-roles",
    "scheduling/bootstrap-system-priority-classes",
    "priority-and-fairness-config-producer",
    "bootstrap-controller",
    "start-cluster-authentication-info-controller",
    "start-kube-apiserver-identity-lease-controller",
    "start-kube-apiserver-identity-lease-garbage-collector",
    "start-legacy-token-tracking-controller",
    "start-kube-aggregator-informers",
    "apiservice-registration-controller",
    "apiservice-status-available-controller",
    "apiservice-discovery-controller",
    "kube-apiserver-autoregistration",
]

Check = Callable[[], str | None]  # returns None when healthy, else the (logged) reason


class EtcdCheck:
    """newETCD3Check: one rate-limited etcd read, its result shared until the next."""

    def __init__(self, client: KVOps, timeout: float) -> None:
        self.client, self.timeout = client, timeout
        self.lock = threading.Lock()
        self.next_allowed = 0.0
        self.last: tuple[str | None, float] = ("etcd client connection not yet established", 0.0)

    def __call__(self) -> str | None:
        with self.lock:
            sent = time.monotonic()
            if sent < self.next_allowed:
                return self.last[0]
            self.next_allowed = sent + self.timeout / 2
        try:
            self.client.get("/registry/health", timeout=self.timeout)
            err = None
        except Exception as exc:  # noqa: BLE001 - any failure is an unhealthy etcd
            err = f"error getting data from etcd: {exc}"
        with self.lock:
            if sent > self.last[1]:  # atomicLastError.Store keeps the latest sent
                self.last = (err, sent)
        return err


class Health:
    def __init__(
        self,
        etcd: EtcdCheck,
        etcd_readiness: EtcdCheck,
        log: Callable[[str], None],
        informers_synced: Callable[[], bool] = lambda: True,
    ) -> None:
        self.etcd = etcd
        self.etcd_readiness = etcd_readiness
        self.informers_synced = informers_synced
        self.shutting_down = False
        self.hooks_done = False  # every hook: the ones kubesim does not run finish with it
        self.finished: set[str] = set()  # hooks that finished on their own (app.bootstrap)
        self.log = log

    def hook_finished(self, name: str) -> None:
        self.finished.add(name)

    def _hook(self, name: str) -> Check:
        """postStartHookHealthz (server/hooks.go): "not finished" until the hook returns."""
        return lambda: None if self.hooks_done or name in self.finished else "not finished"

    def checks(self, endpoint: str) -> list[tuple[str, Check]]:
        base: list[tuple[str, Check]] = [("ping", lambda: None), ("log", lambda: None)]
        base.append(("etcd", self.etcd))
        if endpoint == "readyz":
            base.append(("etcd-readiness", self.etcd_readiness))
            base.append(
                ("informer-sync", lambda: None if self.informers_synced() else "not synced")
            )
        base += [(f"poststarthook/{h}", self._hook(h)) for h in POSTSTART_HOOKS]
        if endpoint != "livez":
            base.append(("autoregister-completion", lambda: None))
        if endpoint == "readyz":
            base.append(
                ("shutdown", lambda: "process is shutting down" if self.shutting_down else None)
            )
        return base

    def handle(self, path: str, query: str) -> tuple[int, str]:
        parts = path.strip("/").split("/", 1)
        endpoint = parts[0]
        params = parse_qs(query, keep_blank_values=True)
        verbose = "verbose" in params
        excluded = set(params.get("exclude", []))
        checks = self.checks(endpoint)
        if len(parts) > 1:
            wanted = parts[1]
            for name, check in checks:
                if name == wanted:
                    reason = check()
                    if reason is None:
                        return 200, "ok"
                    self.log(f'"{endpoint} check failed" check="{name}" err="{reason}"')
                    return 500, "internal server error: " + reason + "\n"
            return 404, "404 page not found\n"
        lines, failed = [], []
        for name, check in checks:
            if name in excluded:
                lines.append(f"[+]{name} excluded: ok")
                continue
            reason = check()
            if reason is None:
                lines.append(f"[+]{name} ok")
            else:
                failed.append(name)
                lines.append(f"[-]{name} failed: reason withheld")
                self.log(f'"{endpoint} check failed" check="{name}" err="{reason}"')
        if failed:
            return 500, "\n".join(lines) + f"\n{endpoint} check failed\n"
        if verbose:
            return 200, "\n".join(lines) + f"\n{endpoint} check passed\n"
        return 200, "ok"
