"""
End to end on the lab (issue 15): maintenance under the chaos probe, which measures from the
client machine through the VIP (open loop at 10/s, a fresh TLS connection per request, a
writer whose acknowledged writes are read back):

- a rolling etcd defrag (`orch.etcd_defrag`): followers first, the leader last after handing
  leadership away, each node out of the pools meanwhile: 0 failed requests, 0 lost writes;
- a certificate renewal of all three control planes started the way production starts it:
  the `kubeha_certs` beacon (its threshold raised above the certificates' days left by the
  `certs-soon` lab profile) -> the reactor -> `orch.certs_renew`, once for the three beacons;
  0 failed requests; the new expiry on disk and on the wire (the certificate each
  kube-apiserver serves); the master's admin kubeconfig refreshed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from lab import formula
from lab.api import Lab
from lab.saltmaster import HOME
from tests.unit.modules.khm_load import load

pytestmark = [pytest.mark.lab, pytest.mark.root]

CLUSTER = formula.CLUSTER
analysis = load("_utils", "chaos_analysis")
VIP_URL = "https://198.18.0.10:8443"


def _record_path(job: str):
    return HOME / "cache" / "kubeha" / "day2" / CLUSTER / f"{job}.json"


def _history(job: str) -> list[dict]:
    path = _record_path(job).with_suffix(".jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture(scope="module")
def cluster(lab: Lab) -> Iterator[Lab]:
    formula.sync(lab)
    gate = lab.salt_run("kubeha_gate.final", CLUSTER, "wait=120", timeout=400)
    assert gate.get("result"), f"the lab has no healthy cluster (run test_bootstrap.py): {gate}"
    formula.kubeconfig_to_client(lab)
    yield lab


class Probe:
    """chaos_probe.run on the client for `duration` s, started asynchronously."""

    def __init__(self, lab: Lab, name: str, duration: int) -> None:
        self.lab, self.run_id = lab, f"day2-{name}-{int(time.time())}"
        proc = lab.salt_cli(
            "salt",
            "--async",
            "client",
            "chaos_probe.run",
            self.run_id,
            VIP_URL,
            str(duration),
            "rate=10",
            "timeout=10",
            f"kubeconfig={formula.CLIENT_KUBECONFIG}",
            "vip=198.18.0.10",
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            state = lab.salt("client", "chaos_probe.status", self.run_id, timeout=30)["client"]
            if state.get("state") == "running":
                return
            assert state.get("state") != "failed", state
            time.sleep(1)
        raise AssertionError(f"the probe {self.run_id} did not start")

    def result(self, wait: float) -> dict:
        # --timeout: the salt CLI's own 5 s (then find_job polls) gave up on a client busy
        # probing, and the answer was missing (KeyError 'client').
        got = self.lab.salt(
            f"--timeout={int(wait) + 60}",
            "client",
            "chaos_probe.fetch",
            self.run_id,
            f"wait={wait}",
            timeout=wait + 120,
        ).get("client")
        assert isinstance(got, dict) and "requests" in got, got
        return {
            "requests": analysis.request_stats(got["requests"]),
            "writes": analysis.write_stats(got),
        }


def _fragment(lab: Lab) -> None:
    """Free pages in every member: write 1500 keys of 2 KiB, delete them, compact."""
    script = (
        "set -e; E='etcdctl --cacert=/etc/kubernetes/pki/etcd/ca.crt "
        "--cert=/etc/kubernetes/pki/etcd/healthcheck-client.crt "
        "--key=/etc/kubernetes/pki/etcd/healthcheck-client.key'; export ETCDCTL_API=3; "
        "v=$(head -c 2048 /dev/zero | tr '\\0' x); "
        'for i in $(seq 1 1500); do echo "put /kubeha-test/frag/$i $v"; done > /tmp/ops; '
        "for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15; do "
        '  sed -n "$(( (i-1)*100+1 )),$(( i*100 ))p" /tmp/ops | '
        "  (echo; cat; echo; echo) | $E txn >/dev/null; done; "
        "$E del /kubeha-test/frag/ --prefix >/dev/null; "
        "rev=$($E get / --prefix --keys-only --limit=1 -w json | python3 -c "
        '\'import json,sys; print(json.load(sys.stdin)["header"]["revision"])\'); '
        "$E compact $rev --physical >/dev/null; rm -f /tmp/ops"
    )
    lab.sh("cp-1", script, timeout=300)


def test_rolling_defrag_under_the_probe(cluster: Lab):
    _fragment(cluster)
    plan = cluster.salt_run("kubeha_defrag.plan", CLUSTER)
    assert plan["ok"], plan
    leader = next(m["node"] for m in plan["order"] if m["leader"])
    assert plan["order"][-1]["node"] == leader, plan["order"]
    probe = Probe(cluster, "defrag", 70)
    time.sleep(3)
    started = time.monotonic()
    ret = cluster.salt_run(
        "state.orch", "orch.etcd_defrag", "pillar=" + json.dumps({"cluster": CLUSTER}), timeout=600
    )
    took = time.monotonic() - started
    (step,) = formula.orch_steps(ret)
    outcome = json.loads(_record_path("defrag").read_text())
    assert step.result, outcome
    nodes = [m["node"] for m in outcome["members"]]
    assert sorted(nodes) == sorted(cluster.control_planes) and nodes[-1] == leader
    assert "moved" in outcome["members"][-1]["leader_away"], outcome["members"][-1]
    assert outcome["freed_bytes"] > 0, outcome
    measured = probe.result(wait=120)
    sizes = [
        (m["node"], m["defrag_s"], m["db_size_before"], m["db_size_after"])
        for m in outcome["members"]
    ]
    print(f"defrag: {outcome['comment']} (orch {took:.1f} s); members {sizes}; probe {measured}")
    assert measured["requests"]["count"] > 500
    assert measured["requests"]["failed"] == 0, measured["requests"]["failed_by_cause"]
    assert measured["writes"]["lost"] == 0 and measured["writes"]["acknowledged"] > 0
    assert cluster.salt_run("kubeha_gate.final", CLUSTER, "wait=60", timeout=300)["result"]


def _served(lab: Lab) -> dict[str, dict]:
    ips = lab.ips
    return {
        n: lab.salt(n, "kubeha_pki.served", ips[n], "6443", timeout=60)[n]
        for n in lab.control_planes
    }


def _on_disk(lab: Lab) -> dict[str, dict]:
    got = lab.salt("cp-*", "kubeha_pki.inventory", timeout=60)
    return {n: {c["name"]: c for c in inv["certificates"]} for n, inv in got.items()}


def _set_profile(lab: Lab, profile: str | None) -> None:
    target = "cp-*"
    if profile:
        lab.salt(target, "grains.setval", "kubeha_profile", profile)
    else:
        lab.salt(target, "grains.delkey", "kubeha_profile", "force=True")
    lab.salt(target, "saltutil.refresh_pillar", "wait=True")
    applied = formula.state_run(lab.salt(target, "state.apply", "kubeha.day2", timeout=300))
    assert applied.ok, applied.describe()


def test_certificate_renewal_from_the_beacon_under_the_probe(cluster: Lab):
    cluster.salt_run("kubeha_certs.cooldown_clear", CLUSTER)
    served_before, disk_before = _served(cluster), _on_disk(cluster)
    renewals_before = len(_history("certs"))
    admin = HOME / "cache" / "kubeha" / CLUSTER / "admin.conf"
    admin_before = admin.stat().st_mtime if admin.exists() else 0
    probe = Probe(cluster, "certs", 150)
    started = time.time()
    try:
        # The beacons now see every certificate below the threshold (365 days).
        _set_profile(cluster, "certs-soon")
        deadline = time.monotonic() + 420
        while time.monotonic() < deadline:
            done = [h for h in _history("certs")[renewals_before:] if h.get("at", 0) > started]
            if done:
                break
            time.sleep(3)
        else:
            raise AssertionError("no renewal recorded within 420 s of the beacons' threshold")
    finally:
        _set_profile(cluster, None)
    outcome = done[0]
    measured = probe.result(wait=200)
    print(
        f"certs: {outcome.get('comment')}; per node "
        f"{[(n['node'], n['total_s'], n['out_of_pools_s']) for n in outcome.get('nodes', [])]}; "
        f"probe {measured}"
    )
    assert outcome["result"], outcome
    assert outcome["reason"] == "beacon" and outcome["trigger"] in cluster.control_planes
    assert sorted(n["node"] for n in outcome["nodes"]) == sorted(cluster.control_planes)
    # One renewal for three beacons, and none after it (cooldown, renotify).
    time.sleep(10)
    assert len([h for h in _history("certs") if h.get("at", 0) > started]) == 1
    served_after, disk_after = _served(cluster), _on_disk(cluster)
    for node in cluster.control_planes:
        old, new = disk_before[node]["apiserver"], disk_after[node]["apiserver"]
        assert new["not_after"] > old["not_after"] and new["serial"] != old["serial"], node
        assert (
            disk_after[node]["admin.conf"]["not_after"]
            > disk_before[node]["admin.conf"]["not_after"]
        )
        assert served_after[node]["serial"] == new["serial"] != served_before[node]["serial"], node
        assert served_after[node]["not_after"] == new["not_after"], node
    assert admin.exists() and admin.stat().st_mtime > admin_before
    assert oct(admin.stat().st_mode & 0o777) == "0o600"
    assert measured["requests"]["failed"] == 0, measured["requests"]["failed_by_cause"]
    assert measured["writes"]["lost"] == 0 and measured["writes"]["acknowledged"] > 0
    assert cluster.salt_run("kubeha_gate.final", CLUSTER, "wait=60", timeout=300)["result"]
