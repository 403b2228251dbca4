"""Delegated authentication of kube-controller-manager's and kube-scheduler's secure port:
which CA verifies the client certificates presented to it.

Emulates staging/src/k8s.io/apiserver/pkg/server/options/authentication.go
(DelegatingAuthenticationOptions.ApplyTo, createRequestHeaderConfig, getClient):

- --client-ca-file set (kubeadm sets it for KCM): that file (ClientCert.GetClientCAContentProvider);
- otherwise, unless --authentication-skip-lookup, the client CA is `client-ca-file` of
  ConfigMap kube-system/extension-apiserver-authentication (published by kube-apiserver,
  apiserver/authinfo.py), read through --authentication-kubeconfig and followed
  (dynamiccertificates/configmap_cafile_content.go NewDynamicCAFromConfigMapController);
  without that kubeconfig the warning "No authentication-kubeconfig provided in order to
  lookup client-ca-file in configmap/extension-apiserver-authentication in kube-system, so
  client certificate authentication won't work." (both components set
  RemoteKubeConfigFileOptional, so no in-cluster config is tried outside a pod);
- the same goes for --requestheader-client-ca-file, except that createRequestHeaderConfig
  reads the ConfigMap once at start (RequestHeaderAuthRequestController.RunOnce: a 404 is
  fine, a 403 adds the "Usually fixed by 'kubectl create rolebinding ..." warning). That
  read failing is what --authentication-tolerate-lookup-failure is about: true, three
  warnings ("Error looking up in-cluster authentication configuration: <err>", "Continuing
  without authentication configuration. This may treat all requests as anonymous.", "To
  require authentication configuration lookup to succeed, set
  --authentication-tolerate-lookup-failure=false") and the component starts; false, the
  component exits 1 (`"command failed" err="unable to load configmap based
  request-header-client-ca-file: ..."`). Its default is false in DelegatingAuthentication-
  Options and KCM (cmd/kube-controller-manager/app/options/options.go), true for the
  scheduler (cmd/kube-scheduler/app/options/options.go NewOptions:
  `o.Authentication.TolerateInClusterLookupFailure = true`). kubeadm gives KCM both CA
  files, so only the scheduler looks anything up.

The ConfigMap CA controller (ConfigMapCA) is started with the secure port
(secure_serving.go tlsConfig: RunOnce, then Run). RunOnce reads the informer's lister,
still empty, so nothing is loaded until the informer has listed: a certificate is
anonymous until then (VerifyOptions not ok: x509.Authenticator answers "not me"), and
while the apiserver cannot be reached. The informer is a reflector: a list of that one
ConfigMap (fieldSelector metadata.name=..., resourceVersion=0, limit=500), retried on
failure with the reflector's backoff (800 ms doubling to 30 s, jitter 1.0, reset after
2 min quiet) and its log lines ("failed to list *v1.ConfigMap"); kubesim then relists every
10 s where upstream watches (near real time), so a changed CA is picked up within 10 s.
loadCABundle keeps the last good bundle when the ConfigMap is gone or has no
client-ca-file ("key failed with : ..."). Not emulated: request-header (front-proxy)
authentication itself (X-Remote-User headers), and TokenReview of bearer tokens.
"""

from __future__ import annotations

import http.client
import json
import random
import ssl
import threading
import time
from collections.abc import Callable
from urllib.parse import urlencode

from .. import flags as flagutil
from .. import klog
from ..apiserver.authinfo import CONFIGMAP, NAMESPACE, parse_certs
from ..kubeclient import ApiError, Client
from .delegating import TransportError

CM_PATH = f"/api/v1/namespaces/{NAMESPACE}/configmaps"
# reflector.go ListAndWatch's first page: url.Values.Encode sorts the keys
LIST_QUERY = {"fieldSelector": f"metadata.name={CONFIGMAP}", "limit": "500", "resourceVersion": "0"}
CA_NAME = f"client-ca::{NAMESPACE}::{CONFIGMAP}::client-ca-file"
REFLECTOR = "k8s.io/apiserver/pkg/server/dynamiccertificates/configmap_cafile_content.go:206"
RELIST = 10.0  # kubesim's stand-in for the informer's watch
TIMEOUT = 30.0  # the client has none; client-go's dialer gives up connecting after 30 s
ROLE = "extension-apiserver-authentication-reader"


class LookupFailed(Exception):
    """ApplyTo's error: the component does not start."""


class StaticCA:
    """--client-ca-file: the bundle read at start (upstream also reloads a changed file)."""

    def __init__(self, path: str) -> None:
        try:
            with open(path, "rb") as fh:
                self.bundle: bytes | None = fh.read() or None
        except OSError:
            self.bundle = None

    def current(self) -> bytes | None:
        return self.bundle

    def start(self) -> None:
        return


class Backoff:
    """wait.NewExponentialBackoffManager(800ms, 30s, 2min, 2.0, 1.0) of reflector.go."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock, self.duration, self.last = clock, 0.8, float("-inf")

    def next(self) -> float:
        if self.clock() - self.last > 120.0:
            self.duration = 0.8
        self.last = self.clock()
        delay = self.duration
        self.duration = min(self.duration * 2.0, 30.0)
        return delay * (1 + random.random())


class ConfigMapCA:
    """ConfigMapCAController with its one-ConfigMap informer (see the module docstring)."""

    def __init__(self, client: Client, relist: float = RELIST) -> None:
        self.client, self.relist = client, relist
        self.bundle: bytes | None = None
        self.stop = threading.Event()
        self.wait: Callable[[float], object] = self.stop.wait
        self.backoff = Backoff()
        self.lists = 0  # lists sent (tests)
        self._reported = ("", float("-inf"))

    def current(self) -> bytes | None:
        """CurrentCABundleContent: None until a bundle was loaded."""
        return self.bundle

    def start(self) -> None:
        klog.info(f'"Starting controller" name="{CA_NAME}"', "configmap_cafile_content.go:202")
        threading.Thread(target=self.run, daemon=True).start()

    def list(self) -> list[dict]:
        """The reflector's list; TransportError / ApiError when it fails."""
        self.lists += 1
        try:
            return self.client.request("GET", CM_PATH, query=LIST_QUERY).get("items") or []
        except ApiError:
            raise
        except (OSError, ssl.SSLError, http.client.HTTPException) as err:
            path = f"{CM_PATH}?{urlencode(LIST_QUERY)}"
            raise TransportError(self.client, err, "Get", path) from err

    def load(self, items: list[dict]) -> None:
        """loadCABundle over the informer's items; ValueError keeps the last bundle."""
        found = [i for i in items if (i.get("metadata") or {}).get("name") == CONFIGMAP]
        if not found:
            raise ValueError(f'configmap "{CONFIGMAP}" not found')
        bundle = ((found[0].get("data") or {}).get("client-ca-file") or "").encode()
        if not bundle:
            raise ValueError(f'missing content for CA bundle "{CA_NAME}"')
        if bundle == self.bundle:
            return
        try:
            parse_certs(bundle)  # newCABundleAndVerifier: cert.NewPoolFromBytes
        except ValueError as err:
            raise ValueError(f'unable to load CA bundle for "{CA_NAME}": {err}') from err
        self.bundle = bundle

    def _report(self, message: str) -> None:
        """utilruntime.HandleError from the rate-limited worker: the same error about once
        a minute (the 1-minute recheck re-queues it), a new one at once."""
        last, when = self._reported
        if message != last or time.monotonic() - when >= 60.0:
            klog.error(message, "configmap_cafile_content.go:243")
            self._reported = (message, time.monotonic())

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                items = self.list()
            except (ApiError, TransportError) as err:
                klog.warning(
                    f"{REFLECTOR}: failed to list *v1.ConfigMap: {err}", "reflector.go:547"
                )
                klog.error(
                    f"{REFLECTOR}: Failed to watch *v1.ConfigMap: failed to list "
                    f"*v1.ConfigMap: {err}",
                    "reflector.go:150",
                )
                self.wait(self.backoff.next())
                continue
            try:
                self.load(items)
            except ValueError as err:
                self._report(f"key failed with : {err}")
            self.wait(self.relist)


def lookup_request_header(client: Client) -> None:
    """createRequestHeaderConfig -> RequestHeaderAuthRequestController.RunOnce: one GET of
    the ConfigMap; raises LookupFailed with the client's error (a 404 is no error)."""
    path = f"{CM_PATH}/{CONFIGMAP}"
    try:
        client.request("GET", path)
    except ApiError as err:
        if err.status == 404:
            return
        if err.status == 403:
            klog.warning(
                f"Unable to get configmap/{CONFIGMAP} in {NAMESPACE}.  Usually fixed by "
                f"'kubectl create rolebinding -n {NAMESPACE} ROLEBINDING_NAME --role={ROLE} "
                "--serviceaccount=YOUR_NS:YOUR_SA'",
                "requestheader_controller.go:172",
            )
        raise LookupFailed(str(err)) from err
    except (OSError, ssl.SSLError, http.client.HTTPException) as err:
        raise LookupFailed(str(TransportError(client, err, "Get", path))) from err


def _no_kubeconfig(what: str, which: str) -> None:
    klog.warning(
        f"No authentication-kubeconfig provided in order to lookup {what} in "
        f"configmap/{CONFIGMAP} in {NAMESPACE}, so {which} won't work.",
        "authentication.go:447",
    )


def from_flags(
    flags: dict[str, str],
    tolerate_default: bool = False,
    client: Client | None = None,
) -> StaticCA | ConfigMapCA | None:
    """ApplyTo's client-certificate part: the client CA provider (None: certificates are
    not asked for, every client is anonymous). `tolerate_default` is the component's
    default of --authentication-tolerate-lookup-failure; `client` replaces the one made
    from --authentication-kubeconfig (tests). Raises LookupFailed as ApplyTo fails."""
    kubeconfig = flags.get("authentication-kubeconfig")
    if client is None and kubeconfig:
        try:
            client = Client.from_kubeconfig(kubeconfig, timeout=TIMEOUT)
        except (OSError, ValueError, KeyError) as err:
            message = f"failed to get delegated authentication kubeconfig: {err}"
            raise LookupFailed(message) from err
    skip = flagutil.as_bool(flags.get("authentication-skip-lookup"), False)
    tolerate = flagutil.as_bool(
        flags.get("authentication-tolerate-lookup-failure"), tolerate_default
    )
    provider: StaticCA | ConfigMapCA | None = None
    if flags.get("client-ca-file"):
        provider = StaticCA(flags["client-ca-file"])
    elif not skip:
        if client is None:
            _no_kubeconfig("client-ca-file", "client certificate authentication")
        else:
            provider = ConfigMapCA(client)
    if flags.get("requestheader-client-ca-file") or skip:
        return provider
    if client is None:
        _no_kubeconfig(
            "requestheader-client-ca-file", "request-header client certificate authentication"
        )
        return provider
    try:
        lookup_request_header(client)
    except LookupFailed as err:
        if not tolerate:
            raise LookupFailed(
                f"unable to load configmap based request-header-client-ca-file: {err}"
            ) from err
        source = "authentication.go:487"
        klog.warning(f"Error looking up in-cluster authentication configuration: {err}", source)
        klog.warning(
            "Continuing without authentication configuration. This may treat all requests "
            "as anonymous.",
            source,
        )
        klog.warning(
            "To require authentication configuration lookup to succeed, set "
            "--authentication-tolerate-lookup-failure=false",
            source,
        )
    return provider


def command_failed(err: Exception) -> str:
    """cli.Run's `"command failed" err="..."` (klog quotes the error like strconv.Quote)."""
    return f'"command failed" err={json.dumps(str(err))}'


__all__ = ["ConfigMapCA", "LookupFailed", "StaticCA", "from_flags", "lookup_request_header"]
