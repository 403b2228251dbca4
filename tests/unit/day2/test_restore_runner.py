"""The disaster-restore runner (_runners/kubeha_restore.py) on a simulated stacked cluster:
three control planes whose kubelet runs exactly the static pods whose manifests are in
/etc/kubernetes/manifests (moving one aside stops the pod at once). It checks the upstream
order (every apiserver down before any etcd, every etcd down before any member is
restored, etcd healthy before the apiservers start), that each member is restored with its
own name and peer URL, the same --initial-cluster and one new token, the refusals that
change nothing, and where a failed run stops and what it says."""

from __future__ import annotations

import json

import pytest

from tests.unit.modules.khm_load import load, utils

NODES = {"cp-1": "198.18.0.11", "cp-2": "198.18.0.12", "cp-3": "198.18.0.13"}
MANIFESTS = "/etc/kubernetes/manifests"
PODS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd")
DATA = "/var/lib/etcd"
STAMP = "20260101T120000Z"
MANIFEST = {"etcd": {"sha256": "ab" * 32, "hash": 4242, "revision": 777, "total_keys": 321}}


class Cluster:
    """What the runner can see and change on the control planes, and the log of it."""

    def __init__(self):
        self.files = {n: {f"{MANIFESTS}/{p}.yaml" for p in PODS} for n in NODES}
        self.dirs = {n: {DATA} for n in NODES}
        self.calls: list[tuple] = []  # (fun, node, args, kwargs)
        self.fail: dict[tuple[str, str], str] = {}  # (fun, node) -> error
        self.status_hash = MANIFEST["etcd"]["hash"]
        self.bump_ok = True

    def running(self, node: str) -> set[str]:
        return {p for p in PODS if f"{MANIFESTS}/{p}.yaml" in self.files[node]}

    def _one(self, node, fun, args, kwargs):
        if (fun, node) in self.fail:
            return False, self.fail[(fun, node)]
        if fun == "service.restart":  # the only call a worker gets
            return True, True
        files, dirs = self.files[node], self.dirs[node]
        if fun == "file.mkdir":
            dirs.add(args[0])
            return True, True
        if fun == "file.file_exists":
            return True, args[0] in files
        if fun == "file.directory_exists":
            return True, args[0] in dirs
        if fun == "file.rename":
            src, dst = args
            for pool in (files, dirs):
                if src in pool:
                    pool.discard(src)
                    pool.add(dst)
                    return True, True
            return False, f"{src} does not exist"
        if fun == "file.remove":
            dirs.discard(args[0])
            return True, True
        if fun == "crictl.ps":
            return True, [{"name": args[0]}] if args[0] in self.running(node) else []
        if fun == "kubeha_archive.fetch":
            files.add(kwargs["dest"])
            return True, {"path": kwargs["dest"]}
        if fun == "etcd_snapshot.status":
            return True, {"integrity": "sha256", "hash": self.status_hash, "revision": 777}
        if fun == "etcd_snapshot.supports_bump_revision":
            return True, self.bump_ok
        if fun == "etcd_snapshot.restore":
            assert not self.running(node) & {"etcd", "kube-apiserver"}, self.running(node)
            assert kwargs["data_dir"] not in dirs, "restore into a data dir that exists"
            dirs.add(kwargs["data_dir"])
            return True, {"data_dir": kwargs["data_dir"]}
        raise AssertionError(f"unexpected {fun}")

    def ask(self, opts, nodes, fun, *args, timeout=60, **kwargs):
        nodes = [nodes] if isinstance(nodes, str) else list(nodes)
        out = {}
        for node in nodes:
            self.calls.append((fun, node, args, kwargs))
            out[node] = self._one(node, fun, args, kwargs)
        return out

    def index(self, fun, node=None, arg0=None, last=False) -> int:
        hits = [
            i
            for i, (f, n, a, _) in enumerate(self.calls)
            if f == fun and node in (None, n) and (arg0 is None or (a and arg0 in str(a[0])))
        ]
        assert hits, (fun, node, arg0)
        return hits[-1] if last else hits[0]


@pytest.fixture
def rig(tmp_path):
    runner = load("_runners", "kubeha_restore")
    cluster, fired, gates = Cluster(), [], []
    for node in NODES:
        (tmp_path / "pki" / "minions").mkdir(parents=True, exist_ok=True)
        (tmp_path / "pki" / "minions" / node).write_text(f"PEM of {node}")
    model = {
        "control_plane": [{"name": n, "ip": ip} for n, ip in NODES.items()],
        "etcd": {"data_dir": DATA},
        "drill": {"etcd_dir": "/opt/etcd"},
        "backup": {"stage_dir": "/var/lib/kubeha/backups"},
    }

    def gate(name):
        def check(*args, **kwargs):
            gates.append((name, len(cluster.calls)))
            return {"result": True, "comment": f"{name} ok"}

        return check

    runner.__opts__ = {"cachedir": str(tmp_path / "cache"), "pki_dir": str(tmp_path / "pki")}
    runner.__utils__ = {
        **utils("kubeha_day2"),
        "kubeha_minions.ask": cluster.ask,
        "kubeha_s3.presign_get": lambda conn, bucket, key, expires: f"https://s3/{key}",
        "kubeha_sealed.seal": lambda order, pem, node, purpose, ttl: {"for": node, **order},
    }
    runner.__salt__ = {
        "kubeha.model": lambda c: json.loads(json.dumps(model)),
        "kubeha_backup.newest": lambda c, stamp: {
            "stamp": stamp,
            "manifest": MANIFEST,
            "keys": {"etcd.db": f"kubeha/lab/{stamp}/etcd.db"},
            "sizes": {"etcd.db": 12345},
        },
        "kubeha_backup.storage": lambda c, m: (object(), {"bucket": "b"}, "kubeha/lab/"),
        "kubeha_gate.etcd_healthy": gate("etcd"),
        "kubeha_gate.apiservers_ready": gate("apiservers"),
        "kubeha_gate.final": gate("final"),
        "event.send": lambda tag, data: fired.append((tag, data)),
    }
    runner.cluster, runner.fired, runner.gates = cluster, fired, gates
    runner.records = tmp_path / "cache" / "kubeha" / "day2" / "lab"
    return runner


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"stamp": STAMP}, {"confirm": True}, {"stamp": STAMP, "confirm": "true"}],
)
def test_refused_unless_named_and_confirmed_and_nothing_is_asked(rig, kwargs):
    out = rig.run("lab", **kwargs)
    assert out["result"] is False and out["retcode"] == 1
    assert "Nothing was changed" in out["comment"]
    assert rig.cluster.calls == [] and rig.fired == []


def test_the_whole_cluster_is_restored_in_the_upstream_order(rig):
    out = rig.run("lab", stamp=STAMP, confirm=True, bump_revision=0)
    assert out["result"] is True, out
    c = rig.cluster
    # Every node fetched and verified the snapshot before the first change.
    first_change = c.index("file.rename")
    for node in NODES:
        assert c.index("etcd_snapshot.status", node) < first_change
    # Every apiserver stopped before any etcd; every etcd before any restore.
    last_api_stop = c.index("file.rename", arg0=f"{MANIFESTS}/kube-apiserver.yaml", last=True)
    first_etcd_stop = c.index("file.rename", arg0=f"{MANIFESTS}/etcd.yaml")
    last_etcd_stop = c.index("file.rename", arg0=f"{MANIFESTS}/etcd.yaml", last=True)
    first_restore = c.index("etcd_snapshot.restore")
    assert last_api_stop < first_etcd_stop <= last_etcd_stop < first_restore
    restores = [(n, kw) for f, n, _, kw in c.calls if f == "etcd_snapshot.restore"]
    assert [n for n, _ in restores] == list(NODES)
    initial = ",".join(f"{n}=https://{ip}:2380" for n, ip in NODES.items())
    tokens = set()
    for node, kw in restores:
        assert kw["name"] == node and kw["initial_cluster"] == initial
        assert kw["initial_advertise_peer_urls"] == f"https://{NODES[node]}:2380"
        assert kw["data_dir"] == DATA and kw["bump_revision"] == 0
        assert kw["mark_compacted"] is False and kw["etcdutl"] == "/opt/etcd/etcdutl"
        tokens.add(kw["initial_cluster_token"])
    assert len(tokens) == 1 and STAMP.lower() in tokens.pop()
    # The old data kept aside on every node, the manifests all back, the staging removed.
    for node in NODES:
        assert f"{DATA}.before-restore-{STAMP}" in c.dirs[node]
        assert c.running(node) == set(PODS)
        assert not any("/restore-" in d for d in c.dirs[node])
    # etcd healthy before the apiservers start; apiservers ready before the rest; final last.
    at = dict(rig.gates)
    first_api_start = next(
        i
        for i, (f, _, a, _) in enumerate(c.calls)
        if f == "file.rename" and a[1] == f"{MANIFESTS}/kube-apiserver.yaml"
    )
    assert c.index("file.rename", arg0="etcd.yaml", last=True) < at["etcd"] <= first_api_start
    assert at["apiservers"] <= c.index("file.rename", arg0="kube-scheduler.yaml", last=True)
    assert [g for g, _ in rig.gates] == ["etcd", "apiservers", "final"]
    assert [s["step"] for s in out["steps"]][0] == "precheck"
    assert out["steps"][-1]["step"] == "final gate"
    record = json.loads((rig.records / "restore.json").read_text())
    assert record["result"] is True and record["stamp"] == STAMP
    assert rig.fired == []


def test_the_default_asks_for_bump_revision_and_mark_compacted(rig):
    out = rig.run("lab", stamp=STAMP, confirm=True)
    assert out["result"] is True, out
    kws = [kw for f, _, _, kw in rig.cluster.calls if f == "etcd_snapshot.restore"]
    assert {kw["bump_revision"] for kw in kws} == {rig.DEFAULT_BUMP}
    assert all(kw["mark_compacted"] is True for kw in kws)


@pytest.mark.parametrize("problem", ["hash", "no-bump"])
def test_a_failed_precheck_changes_nothing(rig, problem):
    if problem == "hash":
        rig.cluster.status_hash = 1
    else:
        rig.cluster.bump_ok = False
    out = rig.run("lab", stamp=STAMP, confirm=True)
    assert out["result"] is False
    assert "at 'precheck'" in out["comment"] and "Nothing was changed" in out["comment"]
    assert ("does not verify" if problem == "hash" else "--bump-revision") in out["comment"]
    assert not any(f == "file.rename" for f, *_ in rig.cluster.calls)
    assert all(rig.cluster.running(n) == set(PODS) for n in NODES)
    assert rig.fired[0][0] == "kubeha/restore/lab/failed"


def test_a_failed_member_restore_stops_with_etcd_down_and_says_where_things_are(rig):
    rig.cluster.fail[("etcd_snapshot.restore", "cp-2")] = "etcdutl: boom"
    out = rig.run("lab", stamp=STAMP, confirm=True, bump_revision=0)
    assert out["result"] is False
    assert "at 'restore every member'" in out["comment"] and "boom" in out["comment"]
    assert f"{DATA}.before-restore-{STAMP}" in out["comment"]
    assert f"/etc/kubernetes/kubeha-restore-{STAMP}" in out["comment"]
    # Nothing was started again on a half-restored cluster, and cp-3 was not touched.
    assert all(rig.cluster.running(n) == set() for n in NODES)
    assert not any(f == "etcd_snapshot.restore" and n == "cp-3" for f, n, *_ in rig.cluster.calls)
    assert rig.gates == []
    assert rig.fired[0][0] == "kubeha/restore/lab/failed"
    record = json.loads((rig.records / "restore.json").read_text())
    assert record["result"] is False and "restore every member" in record["error"]


def test_every_kubelet_is_restarted_after_the_restore_the_workers_too(rig):
    model = rig.__salt__["kubeha.model"]("lab")
    model["workers"] = [{"name": "w-1", "ip": "192.0.2.21"}]
    rig.__salt__["kubeha.model"] = lambda c: model
    out = rig.run("lab", stamp=STAMP, confirm=True, bump_revision=0)
    assert out["result"] is True, out
    c = rig.cluster
    restarted = [n for f, n, a, _ in c.calls if f == "service.restart" and a == ("kubelet",)]
    assert restarted == [*NODES, "w-1"]
    # After the scheduler is back, before the final gate.
    assert c.index("file.rename", arg0="kube-scheduler", last=True) < c.index(
        "service.restart", "w-1"
    )
