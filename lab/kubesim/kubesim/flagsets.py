"""The command-line flags each control-plane component accepts, per Kubernetes minor.

Upstream parses with cobra/pflag (component-base/cli/run.go): a flag the binary does not
define stops it before it does anything, with `Error: unknown flag: --x` and exit status 1,
and the kubelet then restarts the static pod with its crash-loop back-off. kubesim refuses
exactly what is not in these sets.

Where the names come from: the option structs each binary registers in 1.28-1.31
(cmd/kube-apiserver/app/options/options.go + staging/src/k8s.io/apiserver/pkg/server/options
[server_run, etcd, secure_serving, audit, authentication, authorization, admission,
feature, egress_selector, api_enablement, tracing], pkg/kubeapiserver/options;
cmd/kube-controller-manager/app/options/*.go; cmd/kube-scheduler/app/options/*.go;
component-base logs/api/v1 and metrics/options.go), cross-read with the generated
reference pages (kubernetes/website content/en/docs/reference/command-line-tools-reference).
Version differences encoded (each with its upstream change):

- --azure-container-registry-config: gone from kube-apiserver, kube-controller-manager and
  kube-scheduler in 1.30 with the in-tree Azure credential provider (kubernetes PR 122857);
- --authentication-config, --authorization-config: kube-apiserver from 1.29
  (KEP-3331 StructuredAuthenticationConfiguration, KEP-3221 StructuredAuthorizationConfiguration);
- --cloud-provider-gce-lb-src-cidrs, --cloud-provider-gce-l7lb-src-cidrs: registered by the
  in-tree GCE provider, removed with the in-tree providers in 1.31 (KEP-2395);
- --emulated-version: kube-apiserver from 1.31 (KEP-4330 compatibility versions);
- --pod-max-in-unschedulable-pods-duration: kube-scheduler up to 1.29.

Flags upstream removed before 1.28 (klog's --log-dir/--logtostderr/... in 1.26, KEP-2845;
kube-apiserver --master-service-namespace in 1.26; kube-controller-manager
--pod-eviction-timeout and --enable-taint-manager) are unknown here as they are upstream.
Values are not type-checked except booleans (docs/kubesim.md: what this does not prove).
"""

from __future__ import annotations

from .versions import Version


def _names(text: str) -> set[str]:
    return set(text.split())


LOGS = _names(
    """
    log-flush-frequency log-json-info-buffer-size log-json-split-stream
    log-text-info-buffer-size log-text-split-stream logging-format v vmodule
    """
)
METRICS = {
    "allow-metric-labels",
    "allow-metric-labels-manifest",
    "disabled-metrics",
    "show-hidden-metrics-for-version",
}
SECURE_SERVING = _names(
    """
    bind-address cert-dir http2-max-streams-per-connection permit-address-sharing
    permit-port-sharing secure-port tls-cert-file tls-cipher-suites tls-min-version
    tls-private-key-file tls-sni-cert-key
    """
)
REQUESTHEADER = {
    "requestheader-allowed-names",
    "requestheader-client-ca-file",
    "requestheader-extra-headers-prefix",
    "requestheader-group-headers",
    "requestheader-username-headers",
}
DELEGATED_AUTH = (
    _names(
        """
    authentication-kubeconfig authentication-skip-lookup
    authentication-token-webhook-cache-ttl authentication-tolerate-lookup-failure
    client-ca-file authorization-always-allow-paths authorization-kubeconfig
    authorization-webhook-cache-authorized-ttl
    authorization-webhook-cache-unauthorized-ttl
    """
    )
    | REQUESTHEADER
)
LEADER_ELECTION = _names(
    """
    leader-elect leader-elect-lease-duration leader-elect-renew-deadline
    leader-elect-resource-lock leader-elect-resource-name
    leader-elect-resource-namespace leader-elect-retry-period
    """
)
COMMON = {"help", "version", "feature-gates"} | LOGS | METRICS
COMMON_BOOLS = {"help", "version", "log-json-split-stream", "log-text-split-stream"}

AUDIT = {
    f"audit-{backend}-{opt}"
    for backend in ("log", "webhook")
    for opt in (
        "batch-buffer-size",
        "batch-max-size",
        "batch-max-wait",
        "batch-throttle-burst",
        "batch-throttle-enable",
        "batch-throttle-qps",
        "mode",
        "truncate-enabled",
        "truncate-max-batch-size",
        "truncate-max-event-size",
        "version",
    )
} | _names(
    """
    audit-log-compress audit-log-format audit-log-maxage audit-log-maxbackup
    audit-log-maxsize audit-log-path audit-policy-file audit-webhook-config-file
    audit-webhook-initial-backoff
    """
)

APISERVER = (
    COMMON
    | SECURE_SERVING
    | REQUESTHEADER
    | AUDIT
    | {
        # server run options (genericoptions.ServerRunOptions)
        "advertise-address",
        "cors-allowed-origins",
        "default-not-ready-toleration-seconds",
        "default-unreachable-toleration-seconds",
        "enable-priority-and-fairness",
        "external-hostname",
        "goaway-chance",
        "livez-grace-period",
        "max-mutating-requests-inflight",
        "max-requests-inflight",
        "min-request-timeout",
        "request-timeout",
        "shutdown-delay-duration",
        "shutdown-send-retry-after",
        "shutdown-watch-termination-grace-period",
        "strict-transport-security-directives",
        # etcd options
        "default-watch-cache-size",
        "delete-collection-workers",
        "enable-garbage-collector",
        "encryption-provider-config",
        "encryption-provider-config-automatic-reload",
        "etcd-cafile",
        "etcd-certfile",
        "etcd-compaction-interval",
        "etcd-count-metric-poll-period",
        "etcd-db-metric-poll-interval",
        "etcd-healthcheck-timeout",
        "etcd-keyfile",
        "etcd-prefix",
        "etcd-readycheck-timeout",
        "etcd-servers",
        "etcd-servers-overrides",
        "lease-reuse-duration-seconds",
        "storage-backend",
        "storage-media-type",
        "watch-cache",
        "watch-cache-sizes",
        # features, profiling
        "contention-profiling",
        "debug-socket-path",
        "profiling",
        # authentication
        "anonymous-auth",
        "api-audiences",
        "authentication-token-webhook-cache-ttl",
        "authentication-token-webhook-config-file",
        "authentication-token-webhook-version",
        "client-ca-file",
        "enable-bootstrap-token-auth",
        "oidc-ca-file",
        "oidc-client-id",
        "oidc-groups-claim",
        "oidc-groups-prefix",
        "oidc-issuer-url",
        "oidc-required-claim",
        "oidc-signing-algs",
        "oidc-username-claim",
        "oidc-username-prefix",
        "service-account-extend-token-expiration",
        "service-account-issuer",
        "service-account-jwks-uri",
        "service-account-key-file",
        "service-account-lookup",
        "service-account-max-token-expiration",
        "token-auth-file",
        # authorization
        "authorization-mode",
        "authorization-policy-file",
        "authorization-webhook-cache-authorized-ttl",
        "authorization-webhook-cache-unauthorized-ttl",
        "authorization-webhook-config-file",
        "authorization-webhook-version",
        # admission, API enablement, egress, tracing, cloud
        "admission-control",
        "admission-control-config-file",
        "disable-admission-plugins",
        "enable-admission-plugins",
        "runtime-config",
        "egress-selector-config-file",
        "tracing-config-file",
        "cloud-config",
        "cloud-provider",
        # kube-apiserver's own (pkg/controlplane, kubelet client, aggregator, peers)
        "aggregator-reject-forwarding-redirect",
        "allow-privileged",
        "apiserver-count",
        "enable-aggregator-routing",
        "enable-logs-handler",
        "endpoint-reconciler-type",
        "event-ttl",
        "identity-lease-duration-seconds",
        "identity-lease-renew-interval-seconds",
        "kubelet-certificate-authority",
        "kubelet-client-certificate",
        "kubelet-client-key",
        "kubelet-preferred-address-types",
        "kubelet-timeout",
        "kubernetes-service-node-port",
        "max-connection-bytes-per-sec",
        "peer-advertise-ip",
        "peer-advertise-port",
        "peer-ca-file",
        "proxy-client-cert-file",
        "proxy-client-key-file",
        "service-account-signing-key-file",
        "service-cluster-ip-range",
        "service-node-port-range",
    }
)
APISERVER_BOOLS = COMMON_BOOLS | _names(
    """
    aggregator-reject-forwarding-redirect allow-privileged anonymous-auth
    audit-log-batch-throttle-enable audit-log-compress audit-log-truncate-enabled
    audit-webhook-batch-throttle-enable audit-webhook-truncate-enabled
    contention-profiling enable-aggregator-routing enable-bootstrap-token-auth
    enable-garbage-collector enable-logs-handler enable-priority-and-fairness
    encryption-provider-config-automatic-reload permit-address-sharing
    permit-port-sharing profiling service-account-extend-token-expiration
    service-account-lookup shutdown-send-retry-after watch-cache
    """
)

GENERIC_CONTROLLER = _names(
    """
    contention-profiling controller-start-interval controllers enable-leader-migration
    kube-api-burst kube-api-content-type kube-api-qps kubeconfig
    leader-migration-config master min-resync-period profiling
    """
)
CONTROLLER_MANAGER = (
    COMMON
    | SECURE_SERVING
    | DELEGATED_AUTH
    | LEADER_ELECTION
    | GENERIC_CONTROLLER
    | _names(
        """
    allocate-node-cidrs attach-detach-reconcile-sync-period cidr-allocator-type
    cloud-config cloud-provider cluster-cidr cluster-name cluster-signing-cert-file
    cluster-signing-duration cluster-signing-key-file
    cluster-signing-kube-apiserver-client-cert-file
    cluster-signing-kube-apiserver-client-key-file
    cluster-signing-kubelet-client-cert-file cluster-signing-kubelet-client-key-file
    cluster-signing-kubelet-serving-cert-file cluster-signing-kubelet-serving-key-file
    cluster-signing-legacy-unknown-cert-file cluster-signing-legacy-unknown-key-file
    concurrent-cron-job-syncs concurrent-deployment-syncs concurrent-endpoint-syncs
    concurrent-ephemeralvolume-syncs concurrent-gc-syncs
    concurrent-horizontal-pod-autoscaler-syncs concurrent-job-syncs
    concurrent-namespace-syncs concurrent-rc-syncs concurrent-replicaset-syncs
    concurrent-resource-quota-syncs concurrent-service-endpoint-syncs
    concurrent-service-syncs concurrent-serviceaccount-token-syncs
    concurrent-statefulset-syncs concurrent-ttl-after-finished-syncs
    concurrent-validating-admission-policy-status-syncs configure-cloud-routes
    disable-attach-detach-reconcile-sync enable-dynamic-provisioning
    enable-garbage-collector enable-hostpath-provisioner endpoint-updates-batch-period
    endpointslice-updates-batch-period external-cloud-volume-plugin
    flex-volume-plugin-dir horizontal-pod-autoscaler-cpu-initialization-period
    horizontal-pod-autoscaler-downscale-stabilization
    horizontal-pod-autoscaler-initial-readiness-delay
    horizontal-pod-autoscaler-sync-period horizontal-pod-autoscaler-tolerance
    large-cluster-size-threshold legacy-service-account-token-clean-up-period
    max-endpoints-per-slice mirroring-concurrent-service-endpoint-syncs
    mirroring-endpointslice-updates-batch-period mirroring-max-endpoints-per-subset
    namespace-sync-period node-cidr-mask-size node-cidr-mask-size-ipv4
    node-cidr-mask-size-ipv6 node-eviction-rate node-monitor-grace-period
    node-monitor-period node-startup-grace-period node-sync-period
    pv-recycler-increment-timeout-nfs pv-recycler-minimum-timeout-hostpath
    pv-recycler-minimum-timeout-nfs pv-recycler-pod-template-filepath-hostpath
    pv-recycler-pod-template-filepath-nfs pv-recycler-timeout-increment-hostpath
    pvclaimbinder-sync-period resource-quota-sync-period root-ca-file
    route-reconciliation-period secondary-node-eviction-rate
    service-account-private-key-file service-cluster-ip-range
    terminated-pod-gc-threshold unhealthy-zone-threshold
    use-service-account-credentials volume-host-allow-local-loopback
    volume-host-cidr-denylist
    """
    )
)
CONTROLLER_MANAGER_BOOLS = COMMON_BOOLS | _names(
    """
    allocate-node-cidrs authentication-skip-lookup
    authentication-tolerate-lookup-failure configure-cloud-routes contention-profiling
    disable-attach-detach-reconcile-sync enable-dynamic-provisioning
    enable-garbage-collector enable-hostpath-provisioner enable-leader-migration
    leader-elect permit-address-sharing permit-port-sharing profiling
    use-service-account-credentials volume-host-allow-local-loopback
    """
)

SCHEDULER = (
    COMMON
    | SECURE_SERVING
    | DELEGATED_AUTH
    | LEADER_ELECTION
    | _names(
        """
    config contention-profiling kube-api-burst kube-api-content-type kube-api-qps
    kubeconfig master profiling write-config-to
    """
    )
)
SCHEDULER_BOOLS = COMMON_BOOLS | _names(
    """
    authentication-skip-lookup authentication-tolerate-lookup-failure
    contention-profiling leader-elect permit-address-sharing permit-port-sharing
    profiling
    """
)

SHORTHANDS = {"h": "help", "v": "v"}


def accepted(component: str, version: Version) -> tuple[set[str], set[str]]:
    """(every flag name, the boolean ones) that `component` of `version` defines."""
    minor = (version.major, version.minor)
    if component == "kube-apiserver":
        names, bools = set(APISERVER), set(APISERVER_BOOLS)
        if minor >= (1, 29):
            names |= {"authentication-config", "authorization-config"}
        if minor >= (1, 31):
            names.add("emulated-version")
    elif component == "kube-controller-manager":
        names, bools = set(CONTROLLER_MANAGER), set(CONTROLLER_MANAGER_BOOLS)
    elif component == "kube-scheduler":
        names, bools = set(SCHEDULER), set(SCHEDULER_BOOLS)
        if minor <= (1, 29):
            names.add("pod-max-in-unschedulable-pods-duration")
    else:
        raise ValueError(f"no flag set for {component}")
    if minor <= (1, 29):
        names.add("azure-container-registry-config")
    if minor <= (1, 30) and component != "kube-scheduler":
        names |= {"cloud-provider-gce-lb-src-cidrs", "cloud-provider-gce-l7lb-src-cidrs"}
    return names, bools
