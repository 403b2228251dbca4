"""The apiserver's state: etcd client and store, REST API, health, audit log, metrics,
in-flight count, TLS context and the post-start work (system namespaces)."""

from __future__ import annotations

import contextlib
import ssl
import threading
import time
from collections.abc import Iterator

from .. import flags as flagutil
from .. import klog, volumes
from ..etcd import EtcdClient
from ..versions import Version, version_info
from .api import Api
from .audit import AuditLog
from .health import Health
from .metrics import Metrics
from .store import StatusError, Store


class Apiserver:
    def __init__(self, flags: dict[str, str], version: Version) -> None:
        self.flags = flags
        self.version = version
        endpoints = flags.get("etcd-servers", "https://127.0.0.1:2379").split(",")
        self.etcd = EtcdClient(
            endpoints,
            flags["etcd-cafile"],
            flags["etcd-certfile"],
            flags["etcd-keyfile"],
            timeout=10.0,
        )
        self.store = Store(self.etcd)
        self.api = Api(self.store)
        self.health = Health(
            self.etcd,
            flagutil.duration(flags.get("etcd-healthcheck-timeout", "2s")),
            flagutil.duration(flags.get("etcd-readycheck-timeout", "2s")),
            lambda m: klog.warning(m, "healthz.go:261"),
        )
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
        self.metrics = Metrics()
        self.shutdown_delay = flagutil.duration(flags.get("shutdown-delay-duration", "0s"))
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

    @contextlib.contextmanager
    def in_flight(self) -> Iterator[None]:
        """Count a request while it is handled: graceful shutdown waits for them to end."""
        with self.inflight_lock:
            self.inflight += 1
        try:
            yield
        finally:
            with self.inflight_lock:
                self.inflight -= 1

    # -- startup work (post-start hooks) ----------------------------------------------------
    def bootstrap(self) -> None:
        """Create the system namespaces (start-system-namespaces-controller), then ready."""
        while True:
            try:
                for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
                    self.api.ensure_namespace(ns)
                break
            except StatusError as err:
                klog.warning(
                    f"unable to create system namespaces: {err.message}", "controller.go:96"
                )
                time.sleep(1)
        self.health.hooks_done = True
        klog.info("All post-start hooks are done", "genericapiserver.go:533")
