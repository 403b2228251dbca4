"""Delegated authorization of kube-controller-manager's and kube-scheduler's secure port.

Emulates staging/src/k8s.io/apiserver/pkg/server/options/authorization.go
(DelegatingAuthorizationOptions.toAuthorizer) and what it builds, in a union
(authorization/union/union.go: the first Allow or Deny wins; otherwise NoOpinion with the
reasons joined and the errors aggregated):

1. authorizerfactory.NewPrivilegedGroups: the AlwaysAllowGroups default, system:masters;
2. path.NewAuthorizer: --authorization-always-allow-paths (default /healthz,/readyz,/livez;
   exact paths, or prefixes written with a trailing `*`) for non-resource requests;
3. authorizerfactory.DelegatingAuthorizerConfig.New -> plugin/pkg/authorizer/webhook
   (webhook.go WebhookAuthorizer.Authorize): a SubjectAccessReview POSTed to the apiserver
   named by --authorization-kubeconfig (client timeout 10 s, `?timeout=10s`), its status
   cached by the review's spec for --authorization-webhook-cache-authorized-ttl (10s) when
   allowed and --authorization-webhook-cache-unauthorized-ttl (10s) otherwise (an LRU of
   8192); a failing call is retried as webhook.WithExponentialBackoff does with
   DefaultAuthWebhookRetryBackoff (500 ms, x1.5, jitter 0.2, 5 tries) when
   webhook.DefaultShouldRetry says so (connection reset, 500 InternalError, 504 Timeout,
   429, a Retry-After), and gives up with the error (decisionOnError: NoOpinion), which
   is never cached. Without --authorization-kubeconfig there is no webhook (upstream warns
   "No authorization-kubeconfig provided, so SubjectAccessReview of authorization tokens
   won't work.").

What the handler does with the decision is endpoints/filters/authorization.go
WithAuthorization: Allow serves; an error (no Allow) answers 500 with
responsewriters.InternalError's text `Internal Server Error: "<uri>": <err>`; otherwise
403 with responsewriters.Forbidden's Status (common.py).
"""

from __future__ import annotations

import http.client
import json
import random
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from .. import flags as flagutil
from .. import klog
from ..apiserver.auth import User
from ..kubeclient import ApiError, Client

SAR_PATH = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
CACHE_SIZE = 8192
# options.DefaultAuthWebhookRetryBackoff: Duration, Factor, Jitter, Steps
BACKOFF = (0.5, 1.5, 0.2, 5)


@dataclass
class Decision:
    """authorizer.Decision with its reason and error, as Authorize returns them."""

    verdict: str  # "allow", "deny" or "no-opinion"
    reason: str = ""
    error: str = ""

    @property
    def allowed(self) -> bool:
        return self.verdict == "allow"


class WebhookAuthorizer:
    """webhook.go WebhookAuthorizer for non-resource requests (all the secure port gets)."""

    def __init__(  # noqa: PLR0913 - upstream's knobs, defaulted as upstream's
        self,
        client: Client,
        allow_ttl: float = 10.0,
        deny_ttl: float = 10.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        backoff: tuple[float, float, float, int] = BACKOFF,
    ) -> None:
        self.client, self.allow_ttl, self.deny_ttl = client, allow_ttl, deny_ttl
        self.clock, self.sleep, self.backoff = clock, sleep, backoff
        self.cache: OrderedDict[str, tuple[float, dict]] = OrderedDict()
        self.lock = threading.Lock()  # requests are served in threads
        self.reviews = 0  # SubjectAccessReviews sent (for tests and curiosity)

    def _cached(self, key: str) -> dict | None:
        """cache.LRUExpireCache.Get: an expired entry is gone."""
        with self.lock:
            hit = self.cache.get(key)
            if hit is None:
                return None
            expires, status = hit
            if self.clock() >= expires:
                del self.cache[key]
                return None
            self.cache.move_to_end(key)
            return status

    def _remember(self, key: str, status: dict) -> None:
        ttl = self.allow_ttl if status.get("allowed") else self.deny_ttl
        with self.lock:
            self.cache[key] = (self.clock() + ttl, status)
            self.cache.move_to_end(key)
            while len(self.cache) > CACHE_SIZE:
                self.cache.popitem(last=False)

    def _post(self, review: dict) -> dict:
        self.reviews += 1
        timeout = self.client.timeout
        query = {"timeout": f"{timeout:g}s"}
        try:
            return self.client.request("POST", SAR_PATH, review, query=query)
        except ApiError:
            raise
        except (OSError, ssl.SSLError, http.client.HTTPException) as err:
            raise TransportError(self.client, err) from err

    def _create(self, review: dict) -> dict:
        """WithExponentialBackoff(retryBackoff, Create, DefaultShouldRetry)."""
        duration, factor, jitter, steps = self.backoff
        while True:
            try:
                return self._post(review)
            except (ApiError, TransportError) as err:
                steps -= 1
                if not should_retry(err) or steps <= 0:
                    raise
            self.sleep(duration * (1 + jitter * random.random()))
            duration *= factor

    def authorize(self, user: User, verb: str, path: str) -> Decision:
        # the review's spec as json.Marshal writes SubjectAccessReviewSpec (the cache key)
        spec: dict = {"nonResourceAttributes": {"path": path, "verb": verb}}
        if user.name:
            spec["user"] = user.name
        if user.groups:
            spec["groups"] = list(user.groups)
        key = json.dumps(spec)
        status = self._cached(key)
        if status is None:
            review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview"}
            try:
                result = self._create(review | {"spec": spec})
            except (ApiError, TransportError) as err:
                klog.error(f"Failed to make webhook authorizer request: {err}", "webhook.go:224")
                return Decision("no-opinion", "", str(err))
            status = result.get("status") or {}
            self._remember(key, status)
        reason = status.get("reason", "")
        if status.get("denied") and status.get("allowed"):
            err = "webhook subject access review returned both allow and deny response"
            return Decision("deny", reason, err)
        if status.get("denied"):
            return Decision("deny", reason)
        if status.get("allowed"):
            return Decision("allow", reason)
        return Decision("no-opinion", reason)


class TransportError(Exception):
    """A request that got no HTTP answer, worded as client-go's url.Error:
    `Post "<url>?timeout=10s": dial tcp <host>:<port>: connect: connection refused`
    (the review's by default; `method` and `path` name another request)."""

    def __init__(
        self, client: Client, err: Exception, method: str = "Post", path: str | None = None
    ) -> None:
        if isinstance(err, ConnectionRefusedError):
            detail = f"dial tcp {client.host}:{client.port}: connect: connection refused"
        elif isinstance(err, TimeoutError):
            detail = "context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
        else:
            detail = str(err) or type(err).__name__
        path = path if path is not None else f"{SAR_PATH}?timeout={client.timeout:g}s"
        super().__init__(f'{method} "{client.server.rstrip("/")}{path}": {detail}')
        self.reset = isinstance(err, (ConnectionResetError, http.client.RemoteDisconnected))


def should_retry(err: Exception) -> bool:
    """webhook.DefaultShouldRetry."""
    if isinstance(err, TransportError):
        return err.reset
    if isinstance(err, ApiError):
        if err.reason in ("InternalError", "Timeout", "TooManyRequests") or err.status == 429:
            return True
        details = err.body.get("details") if isinstance(err.body, dict) else None
        return bool((details or {}).get("retryAfterSeconds"))
    return False


class DelegatingAuthorizer:
    """The union DelegatingAuthorizationOptions.toAuthorizer builds."""

    def __init__(self, flags: dict[str, str], client: Client | None, **webhook_kw) -> None:
        self.groups = {"system:masters"}  # AlwaysAllowGroups
        self.paths: set[str] = set()
        self.prefixes: list[str] = []
        allow = flags.get("authorization-always-allow-paths", "/healthz,/readyz,/livez")
        for entry in (x.strip() for x in allow.split(",") if x.strip()):
            bare = entry.removeprefix("/")  # path.NewAuthorizer
            if bare.endswith("*"):
                self.prefixes.append(bare[:-1])
            else:
                self.paths.add(bare)
        self.webhook: WebhookAuthorizer | None = None
        if client is None:
            klog.warning(
                "No authorization-kubeconfig provided, so SubjectAccessReview of "
                "authorization tokens won't work.",
                "authorization.go:225",
            )
        else:
            self.webhook = WebhookAuthorizer(
                client,
                flagutil.duration(flags.get("authorization-webhook-cache-authorized-ttl", "10s")),
                flagutil.duration(flags.get("authorization-webhook-cache-unauthorized-ttl", "10s")),
                **webhook_kw,
            )

    def authorize(self, user: User, verb: str, path: str) -> Decision:
        if self.groups & set(user.groups):
            return Decision("allow")
        bare = path.removeprefix("/")
        if bare in self.paths or any(bare.startswith(p) for p in self.prefixes):
            return Decision("allow")
        if self.webhook is None:
            return Decision("no-opinion")
        return self.webhook.authorize(user, verb, path)


def from_flags(flags: dict[str, str]) -> DelegatingAuthorizer:
    """The component's authorizer: the webhook's client from --authorization-kubeconfig
    with ClientTimeout 10 s (DelegatingAuthorizationOptions defaults)."""
    kubeconfig = flags.get("authorization-kubeconfig")
    client = Client.from_kubeconfig(kubeconfig, timeout=10.0) if kubeconfig else None
    return DelegatingAuthorizer(flags, client)


__all__ = [
    "Decision",
    "DelegatingAuthorizer",
    "TransportError",
    "WebhookAuthorizer",
    "from_flags",
    "should_retry",
]
