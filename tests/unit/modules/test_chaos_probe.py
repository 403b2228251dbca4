"""The chaos probe's scheduling (_utils/chaos_probe_loops.py): open loop, so a hung request
delays nothing behind it (no coordinated omission); the in-flight cap records what it
refuses; the writer's acknowledged writes are checked against the read-back; the HTTP
layer names failures by phase (_utils/chaos_http.py); the module (_modules/chaos_probe.py)
runs the loops, reports progress and stops on request."""

import json
import socket
import ssl
import threading
import time

import pytest

from tests.unit.modules.khm_load import load, utils

probe_mod = load("_modules", "chaos_probe")
loops = load("_utils", "chaos_probe_loops")
http = load("_utils", "chaos_http")
SEQ, DUE, LATE, TTFB, MS, CODE, ERR = range(7)


def _probe(fresh, rate=20.0, timeout=5.0, duration=1.0):
    funcs = {**utils("chaos_http"), "chaos_http.fresh": fresh}
    http_funcs = {
        n: funcs[f"chaos_http.{n}"] for n in ("fresh", "keep_alive", "connect", "deadline")
    }
    opts = {"rate": rate, "timeout": timeout, "path": "/x", "namespace": "default"}
    probe = loops.probe("t-1", None, "198.18.0.10", 8443, opts, http=http_funcs)
    probe.t0 = time.time() + 0.05
    probe.end = probe.t0 + duration
    return probe


def test_a_hung_request_does_not_delay_the_ones_behind_it():
    started = {}

    def fresh(ctx, host, port, path, timeout, **_):
        seq = len(started)
        started[seq] = time.time()
        if seq == 2:
            time.sleep(1.5)  # hangs well past the next requests' schedule
            return {"ttfb_ms": None, "ms": 1500.0, "code": None, "err": "response timeout"}
        return {"ttfb_ms": 5.0, "ms": 6.0, "code": 200, "err": ""}

    probe = _probe(fresh)
    probe.open_loop()
    time.sleep(1.7)  # let the hung one finish
    rows = sorted(probe.requests)
    assert len(rows) == 20, rows
    # Every request left on its own schedule (20/s), the hung one's followers included.
    for row in rows:
        assert row[LATE] < 150, row
    after_hang = [r for r in rows if r[SEQ] > 2]
    assert all(r[ERR] == "" for r in after_hang)
    assert [r[ERR] for r in rows if r[SEQ] == 2] == ["response timeout"]
    assert rows[3][DUE] - rows[2][DUE] == pytest.approx(0.05, abs=1e-3)


def test_the_in_flight_cap_records_what_it_refuses():
    release = threading.Event()

    def fresh(*_a, **_k):
        release.wait(5)
        return {"ttfb_ms": 5.0, "ms": 6.0, "code": 200, "err": ""}

    # rate 10/s, timeout 0.1 s: at most int(10 x 1.1) + 1 = 12 requests in flight.
    probe = _probe(fresh, rate=10.0, timeout=0.1, duration=2.0)
    probe.open_loop()
    release.set()
    time.sleep(0.3)
    refused = [r for r in probe.requests if r[ERR] == "probe overloaded"]
    assert len(probe.requests) == 20 and len(refused) == 8


def test_writes_are_acknowledged_only_on_success():
    probe = _probe(lambda *a, **k: None)
    probe._wrote(1, 10.0, {"ms": 20.0, "code": 200, "err": ""})
    probe._wrote(2, 10.2, {"ms": 5000.0, "code": None, "err": "response timeout"})
    probe._wrote(3, 10.4, {"ms": 12.0, "code": 500, "err": "http 5xx"})
    assert probe.acked_at == {1: pytest.approx(10.02)}
    assert [w[4] for w in probe.writes] == ["", "response timeout", "http 5xx"]


def test_vip_mac_reads_the_arp_table(tmp_path):
    table = tmp_path / "arp"
    table.write_text(
        "IP address       HW type     Flags       HW address            Mask     Device\n"
        "198.18.0.10      0x1         0x2         02:6b:68:61:00:0c     *        ens160\n"
        "198.18.0.11      0x1         0x0         00:00:00:00:00:00     *        ens160\n"
    )
    assert loops.vip_mac("198.18.0.10", table) == "02:6b:68:61:00:0c"
    assert loops.vip_mac("198.18.0.11", table) == ""  # incomplete entry
    assert loops.vip_mac("198.18.0.12", table) == ""


@pytest.mark.parametrize(
    ("err", "phase", "cause"),
    [
        (TimeoutError("timed out"), "connect", "connect timeout"),
        (TimeoutError("timed out"), "tls", "tls timeout"),
        (TimeoutError("deadline"), "response", "response timeout"),
        (ConnectionRefusedError(), "connect", "connect refused"),
        (ConnectionResetError(), "response", "reset"),
        (ssl.SSLEOFError(), "tls", "eof"),
        (OSError(113, "No route to host"), "connect", "no route"),
    ],
)
def test_failures_are_named_by_phase(err, phase, cause):
    assert http.cause(err, phase) == cause


def test_a_refused_connection_is_a_recorded_failure_not_an_exception():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        port = server.getsockname()[1]
    got = http.fresh(ssl.create_default_context(), "127.0.0.1", port, "/", 2.0)
    assert got["err"] == "connect refused" and got["ttfb_ms"] is None and got["ms"] < 2000


def test_a_silent_server_is_cut_at_the_deadline():
    """A listener that accepts but never answers (a SIGSTOPped apiserver): the TLS handshake
    waits until the request's one deadline, not forever."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        port = server.getsockname()[1]
        began = time.monotonic()
        got = http.fresh(ssl.create_default_context(), "127.0.0.1", port, "/", 0.5)
        took = time.monotonic() - began
    assert got["err"] == "tls timeout" and 0.45 < took < 1.5


def test_status_reports_a_failed_start(tmp_path, monkeypatch):
    probe_mod.__salt__ = {"config.get": lambda key, default=None: {"runs_dir": str(tmp_path)}}
    (tmp_path / "r-1.error.json").write_text(json.dumps({"error": "kubeconfig missing"}))
    assert probe_mod.status("r-1") == {"state": "failed", "error": "kubeconfig missing"}
    assert probe_mod.status("r-2") == {"state": "unknown"}
    with pytest.raises(Exception, match="run_id"):
        probe_mod.status("../etc/passwd")


def test_a_long_run_reports_progress_and_ends_on_stop(tmp_path, monkeypatch):
    """The upgrade's probe runs until the upgrade ends: `progress` summarizes the open loop
    while it runs (the error budget between nodes), `stop` ends it early, and the result is
    written for `fetch`. The loops are stand-ins; the main loop is the module's own."""
    from tests.unit.modules.khm_load import utils as all_utils  # noqa: PLC0415

    monkeypatch.setattr(
        probe_mod, "__salt__", {"config.get": lambda *a, **k: {"runs_dir": str(tmp_path)}},
        raising=False,
    )  # fmt: skip
    monkeypatch.setattr(
        probe_mod, "__utils__",
        {**all_utils("chaos_http", "chaos_analysis", "chaos_probe_loops"),
         "chaos_http.kubeconfig_context": lambda path: (None, "https://198.18.0.10:8443")},
        raising=False,
    )  # fmt: skip

    def open_loop(self):
        seq = 0
        while time.time() < self.end:
            self.requests.append([seq, seq * 0.1, 0, 5.0, 6.0, 200, "", "", 1.0])
            seq += 1
            time.sleep(0.1)

    def idle(self):
        while time.time() < self.end:
            time.sleep(0.05)

    monkeypatch.setattr(loops.Probe, "open_loop", open_loop)
    for name in ("keep_alive", "lease_poll", "arp_watch", "writer", "watch_loop"):
        monkeypatch.setattr(loops.Probe, name, idle)
    monkeypatch.setattr(loops.Probe, "read_back", lambda self, wait: {"present": set()})
    monkeypatch.setattr(loops.Probe, "clean_up", lambda self, names: None)
    monkeypatch.setattr(probe_mod, "PROGRESS_EVERY_S", 0.3)

    done = {}
    runner = threading.Thread(target=lambda: done.update(probe_mod.run("up-1", duration=600)))
    started = time.time()
    runner.start()
    deadline = time.time() + 10
    while probe_mod.progress("up-1") is None and time.time() < deadline:
        time.sleep(0.1)
    seen = probe_mod.progress("up-1")
    assert seen and seen["count"] >= 1 and seen["failed"] == 0, seen
    assert probe_mod.stop("up-1") == {"stopped": True}
    runner.join(timeout=30)
    assert not runner.is_alive() and time.time() - started < 30  # not 600 s
    result = probe_mod.fetch("up-1", wait=5)
    assert result["requests"] and result["readback"]["lost"] == []
    assert probe_mod.progress("up-1") is None  # fetch removed the run's files
