"""
What one control plane sees of the VIP and of its peers, in one bounded sample: the
measurements behind the ``kubeha_vip`` beacon, and a tool of their own
(``salt cp-1 vip_probe.sample ...``).

A sample reads, forking nothing but curl for its HTTP parts:

- whether this node holds the VIP (the kernel's own ``/proc/net/fib_trie``), keepalived's
  state (the formula's notify file) and the live overrides (``keepalived_track.read``);
- the path to each peer: ``probes`` ICMP echo requests per peer, spaced over the first
  part of ``timeout`` so one short stall of this machine does not hit them all, their
  round-trip times from the kernel's receive timestamps (``SO_TIMESTAMPNS``) and how many
  got no answer within ``timeout``;
- which peers' VRRP adverts (IP protocol 112, this instance's VRID) arrived, and when last:
  a raw socket kept open between samples sees the same packets keepalived does (after
  netfilter's INPUT hook), so a node whose adverts are filtered shows as silent;
- in the background (never waited for by the beacon): ``GET /readyz`` of the local
  apiserver and through the VIP on the LB port (TLS through curl, anonymous: kubeadm's
  system:public-info-viewer lets anyone read it), and HAProxy's view of every apiserver
  (runtime API), and with ``etcd_metrics`` every ``etcd_every`` seconds whether the local
  etcd member leads. Each result is reported by the sample that finds it finished;
  ``wait=True`` (the CLI default) waits for them, each bounded by ``http_timeout``.

Sockets and the background work live in ``__context__``, so the minion's beacon loop
reuses them; every wait is bounded. Root (or CAP_NET_RAW) is needed for the raw sockets
(``_utils/vip_paths.py`` measures the paths and VRRP); without it the path and VRRP parts
say so and the rest still works.

Settings (``config.get``)::

    kubeha_vip:
      state_file: /run/kubeha/vip-beacon.json     # the beacon's last report (last_view)
"""

import contextlib
import contextvars
import json
import os
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

__virtualname__ = "vip_probe"

CA = "/etc/kubernetes/pki/ca.crt"
STATE_FILE = "/run/kubeha/vip-beacon.json"
VRRP_PROTO = 112
CTX = "vip_probe"
ETCD_EVERY_S = 5.0


def __virtual__():
    return __virtualname__


def _ctx() -> dict:
    return __context__.setdefault(CTX, {"id": os.getpid() & 0xFFFF, "seq": 0, "heard": {}})


# --- the kernel's view ------------------------------------------------------------------


def _holds(address: str, fib_trie: str) -> bool:
    """Whether ``/proc/net/fib_trie`` lists ``address`` as a local address of the main or
    local table (``_utils/kubeha_fib.py``; the same reading as chaos_watch)."""
    return __utils__["kubeha_fib.local_address"](address, fib_trie)


def holds(vip):
    """
    Whether this node has ``vip`` as a local address (None when unreadable).

    CLI Example:

    .. code-block:: bash

        salt 'cp-*' vip_probe.holds 198.18.0.10
    """
    try:
        return _holds(str(vip), Path("/proc/net/fib_trie").read_text())
    except OSError:
        return None


def _keepalived_state(instance: str) -> str | None:
    notify = (__salt__["config.get"]("keepalived", {}) or {}).get("notify_dir")
    path = Path(notify or "/run/kubeha/keepalived") / f"{instance}.json"
    try:
        return json.loads(path.read_text()).get("state")
    except (OSError, ValueError, AttributeError):
        return None


# --- background: HTTP and HAProxy -------------------------------------------------------------


# The background jobs run in threads of the salt-minion process, which forks a process for
# every job it runs. A fork while one of these threads holds an OpenSSL lock leaves the child
# with that lock held forever: measured on the lab, a gate's `apiserver.readyz` job spun for
# 12 minutes in SSL_CTX_new (CRYPTO_THREAD_write_lock, under X509_STORE_new) and held up the
# orchestration that waited for it. So nothing here uses OpenSSL in-process: TLS and HTTP go
# through curl (a fork+exec, safe from a thread), which kubeha.lb.keepalived installs.
CURL = "/usr/bin/curl"


def _curl(url: str, timeout: float, *extra: str) -> tuple[int | None, bytes, float, str]:
    """(HTTP code, body, seconds curl took, error) of GET ``url``, all bounded by ``timeout``."""
    argv = [CURL, "--silent", "--show-error", "--max-time", f"{float(timeout):g}",
            "--write-out", "\n%{http_code} %{time_total}", *extra, str(url)]  # fmt: skip
    try:
        proc = subprocess.run(argv, capture_output=True, timeout=float(timeout) + 2.0, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        return None, b"", float(timeout), (str(err) or type(err).__name__)[:120]
    body, _, tail = proc.stdout.rpartition(b"\n")
    code, took = (tail.split() + [b"0", b"0"])[:2]
    error = proc.stderr.decode(errors="replace").strip().removeprefix("curl: ")[:120]
    try:
        return (int(code) or None), body, float(took), error
    except ValueError:
        return None, body, float(timeout), error or f"curl: {tail[:60]!r}"


def readyz(host, port, timeout=1.0):
    """
    ``GET /readyz`` over TLS (curl), bounded by ``timeout`` for the whole exchange: ``{"ok",
    "code", "ms", "error"}``. The chain is checked against the cluster CA and the name
    against ``kubernetes``, which kubeadm puts in every apiserver's serving certificate
    (addressed by IP, 127.0.0.1 or the VIP, which it need not carry).

    CLI Example:

    .. code-block:: bash

        salt cp-1 vip_probe.readyz 198.18.0.10 8443
    """
    host, port = str(host), int(port)
    name = "kubernetes"
    tls = ["--cacert", CA] if Path(CA).exists() else ["--insecure"]
    code, _, took, error = _curl(f"https://{name}:{port}/readyz", float(timeout), *tls,
                                 "--resolve", f"{name}:{port}:{host}")  # fmt: skip
    ok = code == 200
    return {"ok": ok, "code": code, "ms": round(took * 1000.0, 1),
            "error": "" if ok else (error or f"http {code}")}  # fmt: skip


def etcd_leader(url, timeout=1.0):
    """
    Whether the local etcd member leads: ``etcd_server_is_leader`` from its metrics
    listener (kubeadm: ``--listen-metrics-urls=http://127.0.0.1:2381``), through curl.
    ``{"leader": bool or None, "error"}``.

    CLI Example:

    .. code-block:: bash

        salt cp-1 vip_probe.etcd_leader http://127.0.0.1:2381/metrics
    """
    code, body, _, error = _curl(str(url), float(timeout))
    if code != 200:
        return {"leader": None, "error": error or f"http {code}"}
    for raw in body.splitlines():
        if raw.startswith(b"etcd_server_is_leader "):
            try:
                return {"leader": float(raw.split()[1]) == 1.0, "error": ""}
            except (IndexError, ValueError):
                break
    return {"leader": None, "error": "no etcd_server_is_leader"}


def _haproxy() -> dict:
    try:
        servers = __salt__["haproxy_runtime.servers"]()
    except Exception as err:  # noqa: BLE001 - no HAProxy, or it is restarting
        return {"error": str(err)[:160]}
    return {
        "up": sum(1 for s in servers if s["is_up"]),
        "total": len(servers),
        "servers": {s["name"]: f"{s['status']}/{s['check_status']}" for s in servers},
    }


def _background(ctx: dict, jobs: dict, wait: bool, timeout: float) -> dict:
    """Results of the jobs finished since the last sample; start the ones not running."""
    pool = ctx.get("pool")
    if pool is None:
        pool = ctx["pool"] = ThreadPoolExecutor(max_workers=len(jobs), thread_name_prefix=CTX)
    running = ctx.setdefault("running", {})
    for name, (fun, args) in jobs.items():
        if name not in running:
            # Salt's loader keeps __salt__ and __opts__ in context variables, which a new
            # thread does not inherit: each job runs in a copy of this context.
            running[name] = pool.submit(contextvars.copy_context().run, fun, *args)
    done = {}
    for name, future in list(running.items()):
        if wait:
            # A failure is reported below as the job's result; a timeout leaves it running.
            with contextlib.suppress(Exception):
                future.result(timeout=timeout + 1.0)
        if future.done():
            del running[name]
            try:
                done[name] = future.result()
            except Exception as err:  # noqa: BLE001 - one probe's failure is a result
                done[name] = {"ok": False, "error": f"{type(err).__name__}: {err}"[:160]}
    return done


# --- the sample -------------------------------------------------------------------------------


def sample(peers, *, vip=None, lb_port=8443, apiserver_port=6443, instance="VI_1", vrid=None,
           probes=3, timeout=0.3, http_timeout=2.0, wait=True, etcd_metrics=None,
           etcd_every=ETCD_EVERY_S):  # fmt: skip
    """
    One sample of what this node sees (see the module's doc). ``peers`` maps the other
    control planes' names to their addresses. ``timeout`` bounds the ICMP part (the only
    part the beacon waits for); ``http_timeout`` each background request.

    CLI Example:

    .. code-block:: bash

        salt cp-1 vip_probe.sample '{"cp-2": "198.18.0.12", "cp-3": "198.18.0.13"}' \
            vip=198.18.0.10 vrid=51
    """
    if isinstance(peers, str):
        peers = json.loads(peers)
    ctx = _ctx()
    at = time.time()
    icmp = __utils__["vip_paths.open_socket"](ctx, "icmp", socket.IPPROTO_ICMP)
    vrrp = __utils__["vip_paths.open_socket"](ctx, "vrrp", VRRP_PROTO)
    paths = __utils__["vip_paths.measure"](
        ctx, (icmp, vrrp), dict(peers), int(probes), float(timeout), vrid=vrid
    )
    jobs = {"apiserver": (readyz, ("127.0.0.1", apiserver_port, float(http_timeout))),
            "haproxy": (_haproxy, ())}  # fmt: skip
    if vip:
        jobs["vip"] = (readyz, (vip, lb_port, float(http_timeout)))
    if etcd_metrics and time.monotonic() >= ctx.get("etcd_due", 0.0):
        # who leads etcd changes rarely: every few samples is enough (vip_heal:move_etcd_leader)
        ctx["etcd_due"] = time.monotonic() + float(etcd_every)
        jobs["etcd"] = (etcd_leader, (etcd_metrics, float(http_timeout)))
    by_ip = {ip: name for name, ip in dict(peers).items()}
    out = {
        "at": round(at, 3),
        "took_ms": None,
        "holds_vip": holds(vip) if vip else None,
        "keepalived": _keepalived_state(instance),
        "overrides": __salt__["keepalived_track.read"](instance)
        if "keepalived_track.read" in __salt__
        else {},
        "peers": paths,
        "vrrp": {
            by_ip.get(ip, ip): {"age_s": round(time.time() - h["at"], 3), "priority": h["priority"]}
            for ip, h in ctx["heard"].items()
        },  # fmt: skip
        "errors": [s for s in (icmp, vrrp) if isinstance(s, str)],
    }
    out.update(_background(ctx, jobs, bool(wait), float(http_timeout)))
    out["took_ms"] = round((time.time() - at) * 1000.0, 1)
    return out


def last_view():
    """
    The ``kubeha_vip`` beacon's last report on this node (what the master last heard, or
    should have), or None when the beacon has not reported since boot.

    CLI Example:

    .. code-block:: bash

        salt 'cp-*' vip_probe.last_view
    """
    path = (__salt__["config.get"]("kubeha_vip", {}) or {}).get("state_file") or STATE_FILE
    try:
        return json.loads(Path(path).read_text()).get("report")
    except (OSError, ValueError, AttributeError):
        return None
