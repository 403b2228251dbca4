"""One request and its answer, as the handler chain passes it along.

The generic apiserver wraps its handler in filters (staging/src/k8s.io/apiserver/pkg/server/
config.go DefaultBuildHandlerChain): authentication, audit, authorization, then the REST
handler; metrics are recorded around it (endpoints/metrics InstrumentRouteFunc). Here the
handler fills in an Exchange and each of those jobs reads it: auth.py, audit.py, metrics.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from .api import Route
from .auth import User


@dataclass
class Exchange:
    method: str  # HTTP method
    uri: str  # the request URI as sent (path and query): the audit event's requestURI
    path: str
    query: dict
    raw_query: str
    body: bytes
    source_ip: str
    user_agent: str
    received: str  # audit's requestReceivedTimestamp
    started: float  # monotonic, for the latency metric
    verb: str = ""  # the API verb (get, list, watch, create...), else the method in lower case
    route: Route | None = None
    user: User | None = None
    code: int = 500
    out: bytes = b""
    ctype: str = "application/json"
    annotations: dict | None = None  # audit annotations admission added
    warnings: list | None = None  # Warning headers (RFC 7234 299) admission added

    @property
    def scope(self) -> str:
        """The metric's scope label: resource, namespace or cluster ("" off the API)."""
        route = self.route
        if route is None or route.res is None:
            return ""
        if route.name:
            return "resource"
        return "namespace" if route.namespace else "cluster"
