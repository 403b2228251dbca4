"""The apiserver's state: etcd clients, store and watch cache, REST API, health, audit log,
metrics, in-flight count, TLS context and the post-start work (system namespaces, the
default RBAC roles, the extension-apiserver-authentication ConfigMap).

Like upstream, the storage and each etcd health check get their own client over every
--etcd-servers endpoint (factory/etcd3.go newETCD3Client, newETCD3Check).
"""

from __future__ import annotations

import contextlib
import ssl
import threading
import time
from collections.abc import Iterator

from .. import flags as flagutil
from .. import klog, volumes
from ..etcdgrpc import BalancedClient
from ..versions import Version, version_info
from . import authinfo, reconcile
from .admission import Admission
from .api import Api
from .audit import AuditLog
from .cacher import Cache
from .health import EtcdCheck, Health
from .metrics import Metrics
from .oidc import OIDCAuthenticator
from .rbac import RBAC
from .resources import lookup
from .store import StatusError, Store, key_of


class Apiserver:
    def __init__(self, flags: dict[str, str], version: Version) -> None:
        self.flags = flags
        self.version = version
        endpoints = [e for e in flags.get("etcd-servers", "").split(",") if e]
        if not endpoints:
            klog.fatal('"command failed" err="[--etcd-servers must be specified]"', "run.go:74")

        def etcd_client(timeout: float = 60.0) -> BalancedClient:
            return BalancedClient(
                endpoints,
                flags["etcd-cafile"],
                flags["etcd-certfile"],
                flags["etcd-keyfile"],
                timeout=timeout,
            )

        self.request_timeout = flagutil.duration(flags.get("request-timeout", "1m0s"))
        self.min_request_timeout = float(flags.get("min-request-timeout", "1800"))
        self.etcd = etcd_client(self.request_timeout)
        self.metrics = Metrics()
        self.store = Store(self.etcd, self.metrics.etcd)
        self.cache = Cache(self.etcd, lambda m: klog.warning(m, "cacher.go:445"))
        self.api = Api(self.store, self.cache, version)
        self.api.admission = Admission(self.cache, self.metrics.policy_check)
        self.health = Health(
            EtcdCheck(
                etcd_client(), flagutil.duration(flags.get("etcd-healthcheck-timeout", "2s"))
            ),
            EtcdCheck(etcd_client(), flagutil.duration(flags.get("etcd-readycheck-timeout", "2s"))),
            lambda m: klog.warning(m, "healthz.go:261"),
            lambda: self.cache.synced_once,
        )
        self.secrets = lookup("", "v1", "secrets")
        # Authorization Node,RBAC: auth.py's coarse rules, then RBAC over the watch cache.
        self.rbac = RBAC(self.cache)
        # --oidc-issuer-url turns the OIDC token authenticator on; it discovers the issuer
        # in the background (the apiserver starts even when the issuer is down).
        self.oidc: OIDCAuthenticator | None = None
        if flags.get("oidc-issuer-url"):
            try:
                self.oidc = OIDCAuthenticator(flags)
            except (ValueError, OSError) as err:
                klog.fatal(f'"command failed" err="{err}"', "run.go:74")
            self.oidc.start()
        policy = flags.get("audit-policy-file")
        if policy and not volumes.visible(policy):
            klog.fatal(
                f'"command failed" err="loading audit policy file: failed to read file '
                f'path \\"{policy}\\": open {policy}: no such file or directory"',
                "run.go:74",
            )
        log_path = flags.get("audit-log-path")
        if log_path and log_path != "-":
            log_path = volumes.container_path(log_path, "kube-apiserver")
        self.audit = AuditLog(
            policy,
            log_path,
            int(flags.get("audit-log-maxsize", "0") or 0),
            int(flags.get("audit-log-maxbackup", "0") or 0),
        )
        self.shutdown_delay = flagutil.duration(flags.get("shutdown-delay-duration", "0s"))
        self.send_retry_after = flagutil.as_bool(flags.get("shutdown-send-retry-after"), False)
        self.watch_grace = flagutil.duration(
            flags.get("shutdown-watch-termination-grace-period", "0s")
        )
        self.inflight = 0
        self.inflight_lock = threading.Lock()
        self.advertise = flags.get("advertise-address", "")
        self.port = int(flags.get("secure-port", "6443"))

    def version_info(self) -> dict:
        return version_info(self.version, "2024-04-17T17:27:03Z")

    def tls_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.flags["tls-cert-file"], self.flags["tls-private-key-file"])
        if self.flags.get("client-ca-file"):
            ctx.load_verify_locations(self.flags["client-ca-file"])
            ctx.verify_mode = ssl.CERT_OPTIONAL
        return ctx

    def token_secret(self, name: str) -> dict | None:
        """The bootstrap-token Secret as the authenticator's lister sees it (watch cache)."""
        if not self.cache.ready:
            return None
        return self.cache.get(key_of(self.secrets, "kube-system", name))

    @contextlib.contextmanager
    def in_flight(self, mutating: bool) -> Iterator[None]:
        """Count a non-long-running request while it is handled: graceful shutdown waits
        for them (HandlerChainWaitGroup) and the in-flight gauge reports them."""
        with self.inflight_lock:
            self.inflight += 1
        self.metrics.started(mutating)
        try:
            yield
        finally:
            self.metrics.finished(mutating)
            with self.inflight_lock:
                self.inflight -= 1

    # -- startup work (post-start hooks) ----------------------------------------------------
    def bootstrap(self) -> None:
        """The post-start hooks kubesim runs, each in its own thread as RunPostStartHooks
        starts one goroutine per hook (server/hooks.go): rbac/bootstrap-roles (reconcile.py)
        and the system namespaces (start-system-namespaces-controller); then ready.
        start-cluster-authentication-info-controller starts its controller and returns
        (authinfo.py)."""
        roles = threading.Thread(target=self.bootstrap_roles, daemon=True)
        roles.start()
        authinfo.start(self.store, self.flags, self.request_timeout)
        self.health.hook_finished(authinfo.NAME)
        while True:
            try:
                for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
                    self.api.ensure_namespace(ns)
                break
            except Exception as err:  # noqa: BLE001 - storage trouble: retried
                message = err.message if isinstance(err, StatusError) else str(err)
                klog.warning(f"unable to create system namespaces: {message}", "controller.go:96")
                time.sleep(1)
        self.health.hook_finished("start-system-namespaces-controller")
        roles.join()
        self.health.hooks_done = True
        klog.info("All post-start hooks are done", "genericapiserver.go:533")

    def bootstrap_roles(self) -> None:
        """rbac/bootstrap-roles: exits the process if storage never answers (reconcile.py)."""
        reconcile.bootstrap_roles(self.store, self.request_timeout)
        self.health.hook_finished(reconcile.NAME)
