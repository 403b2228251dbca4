"""A frozen apiserver (TCP accepted, no answer: what `lab fault freeze` looks like to a
client) must not hang the Lease and Node reads: they fail within their timeout, with
CommandExecutionError, so a probe or a gate moves on to the next control plane."""

import socket
import threading
import time
from unittest.mock import patch

import pytest
import yaml
from salt.exceptions import CommandExecutionError

from tests.unit.modules.khm_load import load

apiserver = load("_modules", "apiserver")


@pytest.fixture
def frozen_server():
    """Listens and accepts, then says nothing (the TLS handshake never completes)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    held = []
    stop = threading.Event()

    def accept():
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(sock.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield sock.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    sock.close()


@pytest.fixture
def kubeconfig(tmp_path, frozen_server):
    path = tmp_path / "admin.conf"
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "c",
                "cluster": {
                    "server": f"https://127.0.0.1:{frozen_server}",
                    "insecure-skip-tls-verify": True,
                },
            }
        ],
        "users": [{"name": "u", "user": {"token": "abcdef.0123456789abcdef"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def _settings(name, default=None):
    return default


@pytest.mark.parametrize("call", ["leases", "nodes"])
def test_reads_from_a_frozen_apiserver_fail_within_their_timeout(kubeconfig, call):
    outcome = {}

    def read():
        try:
            getattr(apiserver, call)(kubeconfig=kubeconfig, timeout=1)
        except Exception as err:  # noqa: BLE001 - handed to the test thread
            outcome["error"] = err
        outcome["took"] = time.monotonic() - started

    with patch.object(apiserver, "_setting", _settings):
        started = time.monotonic()
        worker = threading.Thread(target=read, daemon=True)
        worker.start()
        # In a thread: a regression (no request timeout) fails here instead of hanging CI.
        # The client retries a failed connection 3 times (urllib3 Retry in the kubernetes
        # client's pool): about 4 attempts of 1 s; 60 s is slack for a loaded machine.
        worker.join(60)
    assert not worker.is_alive(), f"{call} still waiting after 60 s on a frozen apiserver"
    assert isinstance(outcome.get("error"), CommandExecutionError), outcome
    assert "timed out" in str(outcome["error"]).lower(), outcome
    print(f"[measured] {call} against a frozen apiserver, timeout=1: {outcome['took']:.1f}s")
