"""
Read and steer a running HAProxy through its runtime API (the stats socket).

The formula configures ``stats socket /run/haproxy/admin.sock mode 660 level admin``;
the backend in front of the apiservers is ``kube-apiserver`` with one server per node
(``cp-1`` ...). Nothing here restarts or reloads HAProxy: changes made on the socket
are live and last until the next reload (the formula's config is the lasting truth).

Settings (``config.get``)::

    haproxy_runtime:
      socket: /run/haproxy/admin.sock
      backend: kube-apiserver
"""

import csv
import io
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from salt.exceptions import CommandExecutionError

__virtualname__ = "haproxy_runtime"

DEFAULT_SOCKET = "/run/haproxy/admin.sock"
DEFAULT_BACKEND = "kube-apiserver"
# `show stat` type column (doc/management.txt, "9.1. CSV format", field 32).
TYPES = {"0": "frontend", "1": "backend", "2": "server", "3": "listener"}


def __virtual__():
    return __virtualname__


@dataclass
class Server:
    backend: str
    name: str
    status: str  # as HAProxy prints it: UP, DOWN, MAINT, DRAIN, NOLB, "UP 1/2", "no check"
    is_up: bool
    check_status: str  # L7OK, L7STS, L4CON, L4TOUT, L6RSP, ... (empty when not checked)
    check_code: str  # HTTP status of the last L7 check ("" while a check runs, or none)
    check_duration_ms: int | None
    check_desc: str
    sessions_current: int
    sessions_total: int
    weight: int
    last_change_s: int
    address: str


def _setting(name, default):
    return (__salt__["config.get"]("haproxy_runtime", {}) or {}).get(name) or default


def _int(value, default=0):
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def command(cmd, sock=None, timeout=5):
    """
    Send one runtime API command and return HAProxy's answer as text.

    CLI Example:

    .. code-block:: bash

        salt 'cp-1' haproxy_runtime.command "show info"
    """
    path = sock or _setting("socket", DEFAULT_SOCKET)
    if not Path(path).exists():
        raise CommandExecutionError(f"HAProxy runtime socket {path} does not exist")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout)
            conn.connect(path)
            conn.sendall(cmd.encode() + b"\n")
            # Non-interactive mode: HAProxy answers and closes the connection.
            chunks = []
            while chunk := conn.recv(65536):
                chunks.append(chunk)
    except OSError as err:
        raise CommandExecutionError(f"HAProxy runtime socket {path}: {err}") from err
    return b"".join(chunks).decode(errors="replace")


def _parse_stat(text: str) -> list[dict]:
    """Parse ``show stat`` CSV (header line starts with ``# ``)."""
    if not text.startswith("# "):
        raise CommandExecutionError(f"HAProxy show stat: unexpected answer {text[:200]!r}")
    reader = csv.DictReader(io.StringIO(text[2:]))
    return [row for row in reader if row.get("pxname")]


def _server(row: dict) -> Server:
    status = row.get("status", "")
    return Server(
        backend=row["pxname"],
        name=row["svname"],
        status=status,
        is_up=status.startswith("UP") or status == "no check",
        check_status=row.get("check_status", "").lstrip("* "),
        # 0 is no HTTP status: HAProxy resets it while a check runs ("* L7OK"), and a
        # tcp-check without an HTTP answer never sets it.
        check_code="" if row.get("check_code", "") in ("", "0") else row["check_code"],
        check_duration_ms=_int(row.get("check_duration"), None),
        check_desc=row.get("check_desc", ""),
        sessions_current=_int(row.get("scur")),
        sessions_total=_int(row.get("stot")),
        weight=_int(row.get("weight")),
        last_change_s=_int(row.get("lastchg")),
        address=row.get("addr", ""),
    )


def stats(sock=None):
    """
    Every proxy row of ``show stat`` as dicts (frontends, backends, servers).

    CLI Example:

    .. code-block:: bash

        salt 'cp-1' haproxy_runtime.stats
    """
    rows = _parse_stat(command("show stat", sock))
    for row in rows:
        row["type_name"] = TYPES.get(row.get("type", ""), "")
    return rows


def backends(sock=None):
    """
    Backends with their status, current sessions and servers.

    CLI Example:

    .. code-block:: bash

        salt 'cp-1' haproxy_runtime.backends
    """
    rows = stats(sock)
    out = {}
    for row in rows:
        if row["type_name"] == "backend":
            out[row["pxname"]] = {
                "name": row["pxname"],
                "status": row.get("status", ""),
                "sessions_current": _int(row.get("scur")),
                "servers_active": _int(row.get("act")),
                "servers": [],
            }
    for row in rows:
        if row["type_name"] == "server" and row["pxname"] in out:
            out[row["pxname"]]["servers"].append(asdict(_server(row)))
    return list(out.values())


def servers(backend=None, sock=None):
    """
    Servers of one backend (default ``kube-apiserver``) with status and last check.

    CLI Example:

    .. code-block:: bash

        salt 'cp-1' haproxy_runtime.servers kube-apiserver
    """
    backend = backend or _setting("backend", DEFAULT_BACKEND)
    rows = stats(sock)  # one `show stat`: a second could see another moment
    found = [
        asdict(_server(r)) for r in rows if r["type_name"] == "server" and r["pxname"] == backend
    ]
    if not found and backend not in {r["pxname"] for r in rows}:
        raise CommandExecutionError(f"HAProxy has no backend named {backend!r}")
    return found


def server(name, backend=None, sock=None):
    """
    One server's status, or None when the backend has no such server.

    CLI Example:

    .. code-block:: bash

        salt 'cp-1' haproxy_runtime.server cp-2
    """
    return next((s for s in servers(backend, sock) if s["name"] == name), None)


def _admin(cmd: str, name: str, backend, sock) -> dict:
    backend = backend or _setting("backend", DEFAULT_BACKEND)
    answer = command(cmd.format(target=f"{backend}/{name}"), sock).strip()
    # Success is silent; errors are one line such as "No such server." (cli.c, server.c).
    if answer:
        verb = cmd.split(maxsplit=1)[0]
        raise CommandExecutionError(f"HAProxy refused {verb} {backend}/{name}: {answer}")
    return server(name, backend, sock)


def disable_server(name, backend=None, sock=None):
    """
    Put a server in maintenance (MAINT): no new traffic, health checks stop.

    CLI Example:

    .. code-block:: bash

        salt 'cp-1' haproxy_runtime.disable_server cp-2
    """
    return _admin("disable server {target}", name, backend, sock)


def enable_server(name, backend=None, sock=None):
    """
    Take a server out of maintenance or drain (state ready); checks decide UP/DOWN.

    CLI Example:

    .. code-block:: bash

        salt 'cp-1' haproxy_runtime.enable_server cp-2
    """
    return _admin("set server {target} state ready", name, backend, sock)


def drain_server(name, backend=None, sock=None):
    """
    Drain a server: existing sessions continue, no new ones (checks keep running).

    CLI Example:

    .. code-block:: bash

        salt 'cp-1' haproxy_runtime.drain_server cp-2
    """
    return _admin("set server {target} state drain", name, backend, sock)


def wait_for_status(name, status="UP", backend=None, timeout=30, sock=None):
    """
    Wait until a server's status starts with ``status`` (UP, DOWN, MAINT, DRAIN).

    Returns the server with ``waited_s``; raises when the timeout passes.

    CLI Example:

    .. code-block:: bash

        salt 'cp-1' haproxy_runtime.wait_for_status cp-2 UP timeout=60
    """
    started = time.monotonic()
    while True:
        current = server(name, backend, sock)
        if current is None:
            raise CommandExecutionError(f"no server {name} in backend {backend or 'default'}")
        if current["status"].split(" ")[0] == status:
            current["waited_s"] = round(time.monotonic() - started, 3)
            return current
        if time.monotonic() - started > float(timeout):
            raise CommandExecutionError(
                f"{name} is {current['status']} ({current['check_status']} "
                f"{current['check_desc']}), not {status}, after {timeout}s"
            )
        time.sleep(0.2)


def info(sock=None):
    """
    ``show info`` as a dict (version, uptime, connections, ...).

    CLI Example:

    .. code-block:: bash

        salt 'cp-1' haproxy_runtime.info
    """
    out = {}
    for line in command("show info", sock).splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out
