"""haproxy_runtime against a real HAProxy in front of real TLS backends answering /readyz."""

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from khm_support import free_port, issue, loaders, make_ca, start_haproxy, stop_pid, wait_port
from salt.exceptions import CommandExecutionError

from tests.conftest import require_binary

pytestmark = pytest.mark.root

HERE = Path(__file__).resolve().parent
NODES = {"cp-1": "127.0.0.31", "cp-2": "127.0.0.32", "cp-3": "127.0.0.33"}


@pytest.fixture(scope="module")
def lb(tmp_path_factory, request):
    haproxy = require_binary("haproxy")
    base = tmp_path_factory.mktemp("haproxy")
    ca = make_ca(base, "kubernetes")
    procs: list[subprocess.Popen] = []
    request.addfinalizer(lambda: [stop_pid(p) for p in procs])
    backends = {}
    for name, ip in NODES.items():
        crt, key = issue(base, name, ca, "kube-apiserver", sans=[ip], server=True)
        port = free_port(ip)
        flag = base / f"{name}.fail"
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    str(HERE / "khm_readyz_server.py"),
                    ip,
                    str(port),
                    str(crt),
                    str(key),
                    str(flag),
                ]
            )
        )
        backends[name] = (ip, port, flag)
    for ip, port, _ in backends.values():
        wait_port(ip, port)
    sock = base / "admin.sock"
    front = free_port()
    servers = "\n".join(
        f"    server {n} {ip}:{port} check check-ssl verify none inter 300ms fall 2 rise 2"
        for n, (ip, port, _) in backends.items()
    )
    # The shape the formula renders (FACTS 9: a TLS GET /readyz check, not a TCP one).
    cfg = base / "haproxy.cfg"
    cfg.write_text(
        textwrap.dedent(
            f"""\
            global
                stats socket {sock} mode 600 level admin
                log stdout format raw local0 err
            defaults
                mode tcp
                timeout connect 2s
                timeout client 60s
                timeout server 60s
                timeout check 1s
            frontend kube-apiserver
                bind 127.0.0.1:{front}
                default_backend kube-apiserver
            backend kube-apiserver
                option httpchk
                http-check connect ssl
                http-check send meth GET uri /readyz
                http-check expect status 200
            """
        )
        + servers
        + "\n"
    )
    check = subprocess.run(
        ["haproxy", "-c", "-f", str(cfg)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stderr
    return start_haproxy(haproxy, cfg, sock, NODES, procs), backends


def _settled_backend(salt) -> dict:
    """The backend once no check is running on any server (a running check has no HTTP
    status yet: HAProxy resets it), within 3 s."""
    deadline = time.monotonic() + 3
    while True:
        backend = next(b for b in salt.haproxy_runtime.backends() if b["name"] == "kube-apiserver")
        if all(s["check_code"] for s in backend["servers"]) or time.monotonic() > deadline:
            return backend
        time.sleep(0.05)


def test_backends_and_servers_with_check_details(lb):
    salt, _ = lb
    backend = _settled_backend(salt)
    assert backend["status"] == "UP" and backend["servers_active"] == 3
    assert [s["name"] for s in backend["servers"]] == ["cp-1", "cp-2", "cp-3"]
    for srv in backend["servers"]:
        assert srv["status"] == "UP" and srv["is_up"]
        assert srv["check_status"] == "L7OK" and srv["check_code"] == "200"
        assert srv["check_duration_ms"] is not None and srv["check_duration_ms"] >= 0
    assert salt.haproxy_runtime.info()["Name"] == "HAProxy"
    assert salt.haproxy_runtime.server("cp-9") is None
    with pytest.raises(CommandExecutionError, match="no backend"):
        salt.haproxy_runtime.servers("nope")


def test_failing_readyz_marks_the_server_down_then_up(lb):
    salt, backends = lb
    flag = backends["cp-2"][2]
    flag.touch()
    try:
        down = salt.haproxy_runtime.wait_for_status("cp-2", "DOWN", timeout=10)
        assert down["check_status"] == "L7STS" and down["check_code"] == "500"
        assert not down["is_up"]
        assert salt.haproxy_runtime.server("cp-1")["status"] == "UP"
    finally:
        flag.unlink()
    up = salt.haproxy_runtime.wait_for_status("cp-2", "UP", timeout=10)
    assert up["check_status"] == "L7OK"


def test_disable_drain_enable(lb):
    salt, _ = lb
    try:
        assert salt.haproxy_runtime.disable_server("cp-3")["status"] == "MAINT"
        assert salt.haproxy_runtime.drain_server("cp-3")["status"].startswith("DRAIN")
    finally:
        salt.haproxy_runtime.enable_server("cp-3")
    assert salt.haproxy_runtime.wait_for_status("cp-3", "UP", timeout=10)["is_up"]
    with pytest.raises(CommandExecutionError, match="No such server"):
        salt.haproxy_runtime.disable_server("cp-9")


def test_missing_socket_is_a_clear_error(tmp_path):
    salt = loaders(tmp_path, haproxy_runtime={"socket": str(tmp_path / "none.sock")}).modules
    with pytest.raises(CommandExecutionError, match="does not exist"):
        salt.haproxy_runtime.backends()
