"""
Probe kube-apiserver: /readyz and /livez checks, time to first byte, the Lease holders
of kube-controller-manager and kube-scheduler, and the nodes.

Credentials come from a kubeconfig (default ``/etc/kubernetes/admin.conf``): its CA and
client certificate are used for every request. The TTFB sampler opens a fresh TCP + TLS
connection per request, as each ``kubectl`` invocation does, so a slow handshake or a
dead backend behind the VIP shows up in the numbers. The credentials and the deadline-bounded
requests are in ``_utils/apiserver_http.py`` (``__utils__["apiserver_http.*"]``); this module
reads the settings and puts the answers in the operator's words.

Settings (``config.get``)::

    apiserver:
      kubeconfig: /etc/kubernetes/admin.conf
      server: https://198.18.0.10:8443     # default: the kubeconfig's server
"""

import http.client
import json
import math
import re
import ssl
import time
import urllib.parse
from fractions import Fraction

from salt.exceptions import CommandExecutionError

__virtualname__ = "apiserver"

ADMIN_CONF = "/etc/kubernetes/admin.conf"
CHECK_RE = re.compile(r"^\[([+-])\](\S+) (ok|excluded: ok|failed: ?(.*))$")


def __virtual__():
    return __virtualname__


def _setting(name, default=None):
    return (__salt__["config.get"]("apiserver", {}) or {}).get(name) or default


# Utils get no __salt__: the settings are read here and passed to apiserver_http.
def _kubeconfig(kubeconfig):
    return kubeconfig or _setting("kubeconfig", ADMIN_CONF)


def _http(name: str):
    """Credentials and bounded requests live in _utils/apiserver_http.py (via __utils__)."""
    return __utils__[f"apiserver_http.{name}"]


def _creds(kubeconfig):
    return _http("credentials")(_kubeconfig(kubeconfig))


def _parse_checks(body: str) -> dict:
    """
    ``/readyz?verbose`` / ``/livez?verbose`` body, e.g. ``[+]ping ok``,
    ``[-]etcd failed: reason withheld``, ``[+]etcd excluded: ok``, then
    ``readyz check passed`` (k8s.io/apiserver/pkg/server/healthz/healthz.go).
    """
    checks = []
    verdict = None
    for line in body.splitlines():
        if m := CHECK_RE.match(line.strip()):
            checks.append(
                {
                    "name": m.group(2),
                    "ok": m.group(1) == "+",
                    "excluded": m.group(3) == "excluded: ok",
                    "reason": (m.group(4) or "").strip() if m.group(1) == "-" else "",
                }
            )
        elif m := re.match(r"^(\w+) check (passed|failed)$", line.strip()):
            verdict = m.group(2) == "passed"
    return {
        "checks": checks,
        "failed": [c["name"] for c in checks if not c["ok"]],
        "passed": verdict,
    }


def _health(endpoint: str, server, kubeconfig, timeout) -> dict:
    creds = _creds(kubeconfig)
    try:
        target = server or _setting("server") or creds.server
        base = target.rstrip("/")
        status, body = _http("get")(f"{base}/{endpoint}?verbose", creds.context(), float(timeout))
    except (OSError, ssl.SSLError, http.client.HTTPException) as err:
        raise CommandExecutionError(f"GET {endpoint} on {target}: {err}") from err
    finally:
        creds.close()
    parsed = _parse_checks(body.decode(errors="replace"))
    return dict(parsed, status=status, ok=status == 200, server=base)


def readyz(server=None, kubeconfig=None, timeout=5):
    """
    ``GET /readyz?verbose`` parsed into checks (name, ok, excluded, reason).

    CLI Example:

    .. code-block:: bash

        salt 'cp-1' apiserver.readyz server=https://127.0.0.1:6443
    """
    return _health("readyz", server, kubeconfig, timeout)


def livez(server=None, kubeconfig=None, timeout=5):
    """
    ``GET /livez?verbose`` parsed into checks.

    CLI Example:

    .. code-block:: bash

        salt 'cp-1' apiserver.livez
    """
    return _health("livez", server, kubeconfig, timeout)


def _percentile(sorted_values: list[float], pct: float) -> float:
    """
    The nearest-rank percentile of sorted values: the smallest value with at least
    ``pct`` % of the values at or below it, i.e. the value of rank ceil(pct/100 x n).
    Always an observed sample, never an interpolation between two (what an SLO report
    states: "p95 = 120 ms" means 95 % of the requests took 120 ms or less).
    """
    # Fraction keeps the rank exact: in floats 99.9 / 100 x 1000 is 999.0000000000001 -> 1000.
    rank = max(1, math.ceil(Fraction(str(pct)) * len(sorted_values) / 100))
    return sorted_values[rank - 1]


def _summarize(samples_ms: list[float], errors: int) -> dict:
    """p50/p95/p99 (nearest-rank, ``_percentile``) and max of the successful samples, with
    the error count."""
    ok = sorted(samples_ms)
    out = {"count": len(ok) + errors, "ok": len(ok), "errors": errors}
    if ok:
        out.update(
            # p50 is nearest-rank too: the median of an even count would be a mean of two
            # samples, a latency no request had, and ranked differently from p95/p99.
            ttfb_p50_ms=round(_percentile(ok, 50), 3),
            ttfb_p95_ms=round(_percentile(ok, 95), 3),
            ttfb_p99_ms=round(_percentile(ok, 99), 3),
            ttfb_max_ms=round(ok[-1], 3),
        )
    return out


def ttfb(
    path="/api/v1/namespaces/default/pods",
    count=20,
    interval=0.2,
    *,
    server=None,
    kubeconfig=None,
    timeout=5,
    timeline=False,
):
    """
    Time to first byte of ``GET path`` over a fresh TCP + TLS connection per request
    (as kubectl does), ``count`` times every ``interval`` seconds: p50/p95/p99/max in ms
    (nearest-rank percentiles: each one is the TTFB of a request that was made) and the
    errors (timeouts, resets, non-2xx), plus the longest stall: the longest time without a
    successful answer.

    With ``timeline=True`` the return also holds every request as
    ``[seconds since start, ttfb ms or None, error or ""]`` for plotting.

    CLI Example:

    .. code-block:: bash

        salt 'client' apiserver.ttfb count=100 interval=0.1 server=https://198.18.0.10:8443
    """
    creds = _creds(kubeconfig)
    first_byte_ms = _http("first_byte_ms")
    samples, errors, last_error, records = [], 0, "", []
    started_wall = time.time()
    try:
        ctx = creds.context()
        parts = urllib.parse.urlsplit(server or _setting("server") or creds.server)
        start = time.monotonic()
        last_ok = start
        longest_stall = 0.0
        for i in range(int(count)):
            time.sleep(max(0.0, start + i * float(interval) - time.monotonic()))
            sent_at = time.monotonic() - start
            error = ""
            try:
                status, ms = first_byte_ms(
                    ctx, parts.hostname, parts.port or 443, path, float(timeout)
                )
                if 200 <= status < 300:
                    samples.append(ms)
                    now = time.monotonic()
                    longest_stall = max(longest_stall, now - last_ok)
                    last_ok = now
                else:
                    error = f"HTTP {status}"
            except (OSError, ssl.SSLError, http.client.HTTPException) as err:
                error = str(err) or type(err).__name__
            if error:
                errors += 1
                last_error = error
            records.append([round(sent_at, 3), None if error else round(samples[-1], 3), error])
        longest_stall = max(longest_stall, time.monotonic() - last_ok)
    finally:
        creds.close()
    out = dict(
        _summarize(samples, errors),
        path=path,
        last_error=last_error,
        started_at=started_wall,
        longest_stall_ms=round(longest_stall * 1000.0, 1),
    )
    if timeline:
        out["timeline"] = records
    return out


def _client(kubeconfig):
    try:
        from kubernetes import client, config  # noqa: PLC0415
    except ImportError as err:
        raise CommandExecutionError("apiserver: the kubernetes Python client is missing") from err
    api = config.new_client_from_config(config_file=_kubeconfig(kubeconfig))
    server = _setting("server")
    if server:
        api.configuration.host = server
    return client, api


def _parse_lease(lease: dict) -> dict:
    """A coordination.k8s.io/v1 Lease (as the API returns it) in the operator's words."""
    spec = lease.get("spec") or {}
    holder = spec.get("holderIdentity") or ""
    return {
        "name": lease["metadata"]["name"],
        "holder": holder,
        # client-go leaderelection identities are "<hostname>_<uuid>"
        "holder_node": holder.split("_")[0] if holder else "",
        "transitions": spec.get("leaseTransitions", 0) or 0,
        "renew_time": spec.get("renewTime"),
        "acquire_time": spec.get("acquireTime"),
        "lease_duration_s": spec.get("leaseDurationSeconds"),
    }


def leases(
    names=("kube-controller-manager", "kube-scheduler"),
    namespace="kube-system",
    kubeconfig=None,
    timeout=10,
):
    """
    Leader-election Lease holders, transitions and renew times.

    ``timeout`` (seconds) bounds each request: a probe must not hang on a frozen
    apiserver (the client's default is no timeout at all).

    CLI Example:

    .. code-block:: bash

        salt 'cp-1' apiserver.leases
    """
    client, api = _client(kubeconfig)
    import urllib3  # noqa: PLC0415 - the kubernetes client's own transport

    coord = client.CoordinationV1Api(api)
    out = []
    try:
        for name in [names] if isinstance(names, str) else names:
            # Raw JSON, not the client's models: they validate strictly, and a field the
            # model does not know (or lacks) must not break a health probe.
            resp = coord.read_namespaced_lease(
                name, namespace, _preload_content=False, _request_timeout=float(timeout)
            )
            out.append(_parse_lease(json.loads(resp.data)))
    except client.exceptions.ApiException as err:
        raise CommandExecutionError(
            f"reading Lease {namespace}: {err.status} {err.reason}"
        ) from err
    except urllib3.exceptions.HTTPError as err:
        raise CommandExecutionError(f"reading Lease {namespace}: {err}") from err
    finally:
        api.close()
    return out


def _parse_node(node: dict) -> dict:
    """A v1 Node in the operator's words: Ready, kubelet version, cordoned, roles."""
    conds = {c["type"]: c for c in (node.get("status") or {}).get("conditions") or []}
    labels = node["metadata"].get("labels") or {}
    return {
        "name": node["metadata"]["name"],
        "ready": conds.get("Ready", {}).get("status") == "True",
        "ready_reason": conds.get("Ready", {}).get("reason", ""),
        "kubelet_version": ((node.get("status") or {}).get("nodeInfo") or {}).get("kubeletVersion"),
        "cordoned": bool((node.get("spec") or {}).get("unschedulable")),
        "roles": sorted(
            k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/")
        ),
    }


def nodes(kubeconfig=None, timeout=10):
    """
    Nodes with Ready, kubelet version and cordon state; ``timeout`` (seconds) bounds the
    request.

    CLI Example:

    .. code-block:: bash

        salt 'cp-1' apiserver.nodes
    """
    client, api = _client(kubeconfig)
    import urllib3  # noqa: PLC0415 - the kubernetes client's own transport

    try:
        resp = client.CoreV1Api(api).list_node(
            _preload_content=False, _request_timeout=float(timeout)
        )
        return [_parse_node(n) for n in json.loads(resp.data)["items"]]
    except client.exceptions.ApiException as err:
        raise CommandExecutionError(f"listing nodes: {err.status} {err.reason}") from err
    except urllib3.exceptions.HTTPError as err:
        raise CommandExecutionError(f"listing nodes: {err}") from err
    finally:
        api.close()
