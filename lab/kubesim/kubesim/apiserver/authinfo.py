"""The `start-cluster-authentication-info-controller` post-start hook: ConfigMap
kube-system/extension-apiserver-authentication, where delegating components (the scheduler,
KCM, aggregated apiservers) find the client CA and the front-proxy settings.

Emulates the hook in pkg/controlplane/instance.go New (v1.30; pkg/controlplane/apiserver/
server.go New from v1.31), which starts pkg/controlplane/controller/clusterauthenticationtrust/
cluster_authentication_trust_controller.go (Controller.Run, syncConfigMap, writeConfigMap,
combinedClusterAuthenticationInfo, getConfigMapDataFor, combineCertLists) and returns at
once, so the readyz check `poststarthook/start-cluster-authentication-info-controller` passes
while the controller keeps working:

- what is required comes from --client-ca-file (`client-ca-file`) and, when
  --requestheader-client-ca-file is set (requestheader.ToAuthenticationRequestHeaderConfig
  is nil without it), `requestheader-client-ca-file` and the JSON lists
  `requestheader-username-headers`, `-group-headers`, `-extra-headers-prefix`,
  `-allowed-names` (json.Marshal: `["X-Remote-User"]`, `[]` when the flag is unset);
  v1.32 adds `requestheader-uid-headers`, not in the releases the lab ships;
- it is *combined* with what the ConfigMap already holds, the existing values first: the
  certificates of both bundles, expired ones (NotAfter more than 5 minutes ago) dropped,
  duplicates removed, re-encoded as PEM; the lists unioned. So several apiservers, or a CA
  rotation, add to the bundle and never take away;
- the ConfigMap is written (Update, Create when missing, kube-system created if needed) only
  when that changes it: idempotent at every start and every minute (the controller re-queues
  itself each minute, wait.PollImmediateUntil(1*time.Minute)); the files are read at each
  sync, as the dynamic file CA providers notice a changed file;
- a failed sync (etcd down, a conflict with another apiserver) is logged as
  utilruntime.HandleError prints it and retried with the workqueue's per-item exponential
  backoff (5 ms doubling), or at the next minute tick if that comes first.

The loopback client of upstream is the apiserver's own store here (quorum reads,
compare-and-swap updates), as in reconcile.py.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
import time
from collections.abc import Callable

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from .. import klog, pki
from ..etcdgrpc import request_deadline
from . import objects
from .resources import lookup
from .store import StatusError, Store

NAME = "start-cluster-authentication-info-controller"
NAMESPACE, CONFIGMAP = "kube-system", "extension-apiserver-authentication"
KEY = f"{NAMESPACE}/{CONFIGMAP}"
CONFIGMAPS = lookup("", "v1", "configmaps")
NAMESPACES = lookup("", "v1", "namespaces")
RESYNC = 60.0  # wait.PollImmediateUntil(1*time.Minute, ...) in Controller.Run
HEADER_KEYS = (  # (ConfigMap key, kube-apiserver flag)
    ("requestheader-username-headers", "requestheader-username-headers"),
    ("requestheader-group-headers", "requestheader-group-headers"),
    ("requestheader-extra-headers-prefix", "requestheader-extra-headers-prefix"),
    ("requestheader-allowed-names", "requestheader-allowed-names"),
)
_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----\r?\n.*?-----END CERTIFICATE-----", re.S)


def parse_certs(bundle: bytes) -> list[x509.Certificate]:
    """cert.ParseCertsPEM: every CERTIFICATE block; none at all is an error."""
    certs = [x509.load_pem_x509_certificate(block) for block in _PEM.findall(bundle)]
    if not certs:
        raise ValueError("data does not contain any valid RSA or ECDSA certificates")
    return certs


def combine_certs(*bundles: bytes | None) -> bytes:
    """combineCertLists: concatenated, filterExpiredCerts (5 minutes of slack), first
    occurrence of each DER kept, pem.Encode'd (64-column base64, as OpenSSL writes it)."""
    certs = [c for b in bundles if b for c in parse_certs(b)]
    cutoff = pki.now() - dt.timedelta(minutes=5)
    out: list[x509.Certificate] = []
    for cert in certs:
        if pki.not_after(cert) > cutoff and all(
            cert.public_bytes(Encoding.DER) != o.public_bytes(Encoding.DER) for o in out
        ):
            out.append(cert)
    return b"".join(c.public_bytes(Encoding.PEM) for c in out)


def _union(*lists: list[str] | None) -> list[str]:
    """combineUniqueStringSlices."""
    out: list[str] = []
    for item in (i for lst in lists for i in lst or []):
        if item not in out:
            out.append(item)
    return out


def _slice(text: str | None) -> list[str]:
    """A StringSlice flag's value (pflag: comma separated; unset: empty)."""
    return [p for p in (text or "").split(",") if p]


def _read(path: str | None) -> bytes | None:
    if not path:
        return None
    with open(path, "rb") as fh:
        return fh.read()


def required(flags: dict[str, str]) -> dict:
    """ClusterAuthenticationInfo of this apiserver (pkg/controlplane/apiserver/config.go):
    {"client-ca": PEM, "requestheader-ca": PEM, <ConfigMap key>: [...]}."""
    info: dict = {"client-ca": _read(flags.get("client-ca-file"))}
    info["requestheader-ca"] = _read(flags.get("requestheader-client-ca-file"))
    for key, flag in HEADER_KEYS:
        info[key] = _slice(flags.get(flag)) if info["requestheader-ca"] else None
    return info


def configmap_data(existing: dict[str, str], want: dict) -> dict[str, str]:
    """getConfigMapDataFor(combinedClusterAuthenticationInfo(existing, required)); raises
    ValueError on an unparsable bundle or list, as the upstream sync fails."""
    data: dict[str, str] = {}
    client_ca = combine_certs(existing.get("client-ca-file", "").encode(), want["client-ca"])
    if client_ca:
        data["client-ca-file"] = client_ca.decode()
    header_ca = combine_certs(
        existing.get("requestheader-client-ca-file", "").encode(), want["requestheader-ca"]
    )
    if not header_ca:
        return data
    for key, _ in HEADER_KEYS:
        have = json.loads(existing[key]) if existing.get(key) else None
        if have is not None and not isinstance(have, list):
            raise ValueError(f"json: cannot unmarshal {type(have).__name__} into []string")
        data[key] = json.dumps(_union(have, want[key]), separators=(",", ":"))
    data["requestheader-client-ca-file"] = header_ca.decode()
    return data


def sync(store: Store, flags: dict[str, str]) -> str:
    """syncConfigMap: "none", "update" or "create"; raises on storage errors."""
    try:
        original = store.get(CONFIGMAPS, NAMESPACE, CONFIGMAP)
    except StatusError as err:
        if err.code != 404:
            raise
        original = None
    existing = (original or {}).get("data") or {}
    data = configmap_data(existing, required(flags))
    if data == existing:  # equality.Semantic.DeepEqual: a nil map equals an empty one
        return "none"
    _ensure_namespace(store)
    if original is not None:
        rv = int(original["metadata"]["resourceVersion"])
        new = objects.prepare_update(CONFIGMAPS, original, original | {"data": data}, "")
        try:
            store.update(CONFIGMAPS, NAMESPACE, new, rv)
            return "update"
        except StatusError as err:  # writeConfigMap: Update, then Create if NotFound
            if err.code != 404:
                raise
    cm = {"metadata": {"name": CONFIGMAP, "namespace": NAMESPACE}, "data": data}
    store.create(CONFIGMAPS, NAMESPACE, objects.prepare_create(CONFIGMAPS, cm, NAMESPACE))
    return "create"


def _ensure_namespace(store: Store) -> None:
    """createNamespaceIfNeeded."""
    try:
        store.get(NAMESPACES, None, NAMESPACE)
        return
    except StatusError:
        pass
    try:
        ns = objects.prepare_create(NAMESPACES, {"metadata": {"name": NAMESPACE}}, None)
        store.create(NAMESPACES, None, ns)
    except StatusError as err:
        if err.code != 409:
            raise


def _message(err: Exception) -> str:
    return err.message if isinstance(err, StatusError) else str(err) or type(err).__name__


def run(
    store: Store,
    flags: dict[str, str],
    stop: threading.Event,
    request_timeout: float = 60.0,
    *,
    resync: float = RESYNC,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Controller.Run: sync now and at every `resync` tick; a failure is retried after the
    rate limiter's 5 ms * 2^failures, or at the next tick if that comes first. Each sync is
    bounded like a loopback request (--request-timeout)."""
    klog.info(
        "Starting cluster_authentication_trust_controller controller",
        "cluster_authentication_trust_controller.go:440",
    )
    next_tick, failures = clock(), 0
    while not stop.is_set():
        if clock() >= next_tick:
            next_tick = clock() + resync
        try:
            with request_deadline(time.monotonic() + request_timeout):
                sync(store, flags)
            failures, wait = 0, next_tick - clock()
        except Exception as err:  # noqa: BLE001 - storage, files, a bad bundle: retried
            klog.error(f"{KEY} failed with : {_message(err)}", "runtime.go:79")
            wait = min(0.005 * 2**failures, max(next_tick - clock(), 0.0))
            failures += 1
        stop.wait(max(wait, 0.0))


def start(store: Store, flags: dict[str, str], request_timeout: float = 60.0) -> threading.Event:
    """The hook: start the controller and return (its readyz check passes at once)."""
    stop = threading.Event()
    args = (store, flags, stop, request_timeout)
    threading.Thread(target=run, args=args, daemon=True).start()
    return stop


__all__ = ["NAME", "combine_certs", "configmap_data", "required", "run", "start", "sync"]
