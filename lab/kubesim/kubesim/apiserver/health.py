"""/livez, /readyz and /healthz as the generic apiserver serves them.

Output follows staging/src/k8s.io/apiserver/pkg/server/healthz/healthz.go: with ?verbose
each check is a line `[+]name ok` or `[-]name failed: reason withheld`, then
`<endpoint> check passed|failed`; a failure always answers 500 with that verbose text; a
success without ?verbose answers `ok`. `?exclude=name` skips a check; `/readyz/<name>`
runs one. The etcd check reads `/registry/health` with the 2 s healthcheck timeout
(storage/storagebackend/factory/etcd3.go newETCD3Check, --etcd-healthcheck-timeout and
--etcd-readycheck-timeout both default 2s); `shutdown` fails from SIGTERM on, which
with --shutdown-delay-duration lets load balancers drain before the port closes
(server/genericapiserver.go, lifecycle_signals.go).
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qs

from ..etcd import EtcdClient, EtcdError

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


class Health:
    def __init__(
        self,
        etcd: EtcdClient,
        healthcheck_timeout: float,
        readycheck_timeout: float,
        log: Callable[[str], None],
    ) -> None:
        self.etcd = etcd
        self.healthcheck_timeout = healthcheck_timeout
        self.readycheck_timeout = readycheck_timeout
        self.shutting_down = False
        self.hooks_done = False
        self.log = log

    def _etcd(self, timeout: float) -> str | None:
        try:
            self.etcd.get("/registry/health", timeout=timeout)
        except EtcdError as err:
            return f"error getting data from etcd: {err}"
        except Exception as err:  # noqa: BLE001 - any failure is an unhealthy etcd
            return f"error getting data from etcd: {err}"
        return None

    def checks(self, endpoint: str) -> list[tuple[str, Check]]:
        base: list[tuple[str, Check]] = [("ping", lambda: None), ("log", lambda: None)]
        base.append(("etcd", lambda: self._etcd(self.healthcheck_timeout)))
        if endpoint == "readyz":
            base.append(("etcd-readiness", lambda: self._etcd(self.readycheck_timeout)))
            base.append(("informer-sync", lambda: None))
        hook_state: Check = lambda: None if self.hooks_done else "not finished"  # noqa: E731
        base += [(f"poststarthook/{h}", hook_state) for h in POSTSTART_HOOKS]
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
        # etcd checks are independent; run the slow ones in the caller's thread, in order.
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
