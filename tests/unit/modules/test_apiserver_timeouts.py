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


# The kubernetes client leaves configuration.retries unset, so urllib3's Retry.DEFAULT
# (Retry(3), urllib3/util/retry.py) applies: a connection whose TLS handshake times out is
# tried 1 + 3 times (kubernetes/client/rest.py passes retries only when configured).
ATTEMPTS = 4
TIMEOUT = 1.0
# Client set-up, thread start and a TLS context per attempt: CPU work that a loaded 2-core
# machine stretches (measured beyond the 4 x timeout: 0.4-0.6 s idle, 2.7 s with a kubesim
# host cluster running beside it). A timeout ignored or 10x longer still ends far outside.
MARGIN_S = 4.0


@pytest.mark.parametrize("call", ["leases", "nodes"])
def test_reads_from_a_frozen_apiserver_fail_within_their_timeout(kubeconfig, call):
    outcome = {}
    bound = TIMEOUT * ATTEMPTS + MARGIN_S

    def read():
        try:
            getattr(apiserver, call)(kubeconfig=kubeconfig, timeout=TIMEOUT)
        except Exception as err:  # noqa: BLE001 - handed to the test thread
            outcome["error"] = err
        outcome["took"] = time.monotonic() - started

    with patch.object(apiserver, "_setting", _settings):
        started = time.monotonic()
        worker = threading.Thread(target=read, daemon=True)
        worker.start()
        # In a thread: a regression (no request timeout) fails here instead of hanging CI.
        worker.join(bound + 10)
    assert not worker.is_alive(), f"{call} still waiting after {bound + 10:.0f} s"
    assert isinstance(outcome.get("error"), CommandExecutionError), outcome
    assert "timed out" in str(outcome["error"]).lower(), outcome
    print(
        f"[measured] {call} against a frozen apiserver, timeout={TIMEOUT}: {outcome['took']:.2f}s"
    )
    # Each attempt waits its full timeout (it is the timeout that ends it, not an error),
    # and the whole read ends within timeout x attempts: a timeout ignored, a longer one
    # or more retries would each cross the bound.
    assert outcome["took"] >= TIMEOUT, outcome
    assert outcome["took"] <= bound, (
        f"{call} took {outcome['took']:.2f}s; {ATTEMPTS} attempts of {TIMEOUT}s should end "
        f"within {bound:.1f}s"
    )
