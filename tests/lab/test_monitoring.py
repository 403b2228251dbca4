"""
Runbook step 12 on the lab's built cluster (issue 16): `orch.monitoring` sets up Prometheus
on the client machine (its client certificate signed by the cluster CA, the key made there),
every target of every control plane answers (apiserver, KCM, scheduler with the client
certificate and RBAC; etcd, HAProxy, node exporter), every query of the RED dashboard
returns series, the textfile metrics agree with the cluster (one VIP holder, the one the gate
sees), and a chaos scenario fires the matching alert within its `for:` window, shows on the
dashboard's chaos marker, and resolves after.

The control planes' side (node exporter, the textfile schedule, HAProxy's exporter port) is
converged by highstate first; etcd's metrics listener and the KCM/scheduler bind address
come from the kubeadm configuration the lab pillar built the cluster with.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from lab import formula
from lab.api import Lab

pytestmark = [pytest.mark.lab, pytest.mark.root]

CLUSTER = formula.CLUSTER
HANG = 120  # seconds the apiserver is frozen: KubeAPIDown's window with room to spare
# The lab's scrape and evaluation interval (pillar/kubeha/lab.sls) and the scrape timeout.
INTERVAL, SCRAPE_TIMEOUT = 10, 10
JOBS = ("apiserver", "kube-controller-manager", "kube-scheduler", "etcd", "haproxy", "node")


def _query(lab: Lab, expr: str) -> list[dict]:
    # As a keyword: Salt's CLI would read a positional "a=b" as one.
    return lab.salt_run("kubeha_monitoring.query", CLUSTER, f"expr={expr}", timeout=120)


@pytest.fixture(scope="module")
def monitored(lab: Lab) -> Iterator[dict]:
    """The built cluster converged by highstate, then `salt-run state.orch orch.monitoring`:
    its runner return (certificate, targets)."""
    formula.sync(lab)
    gate = lab.salt_run("kubeha_gate.final", CLUSTER, "wait=120", timeout=400)
    assert gate.get("result"), f"the lab has no healthy cluster (run test_bootstrap.py): {gate}"
    run = formula.highstate(lab)
    assert run.ok, run.describe()
    arg = "pillar=" + json.dumps({"cluster": CLUSTER})
    ret = lab.salt_run("state.orch", "orch.monitoring", arg, timeout=1500)
    (step,) = formula.orch_steps(ret)
    data = ret.get("data", ret)
    (steps,) = data.values()
    out = next(iter(steps.values()))["changes"]["return"]
    print(f"[monitoring] {step.comment} in {step.seconds} s")
    yield {"step": step, "return": out}


def test_every_target_of_every_control_plane_is_up(lab: Lab, monitored: dict):
    step, out = monitored["step"], monitored["return"]
    assert step.result, step.comment
    found = {(t["job"], t["instance"]): t for t in out["targets"]}
    for job in JOBS:
        for node in lab.control_planes:
            target = found.get((job, node))
            assert target, f"no target {job}/{node}: {sorted(found)}"
            assert target["health"] == "up", f"{job}/{node}: {target['error']}"
    cert = out["certificate"]
    assert cert["usable"], cert
    key = lab.exec("client", "stat", "-c", "%a %U", "/etc/prometheus/kubeha/client.key").stdout
    assert key.split()[0] == "640", key
    # The key never left the host: no control plane has it.
    for node in lab.control_planes:
        assert lab.exec(node, "test", "-e", "/etc/prometheus/kubeha/client.key",
                        check=False).returncode != 0  # fmt: skip


def test_a_second_run_keeps_the_certificate_and_changes_nothing(lab: Lab, monitored: dict):
    ret = lab.salt_run("kubeha_monitoring.setup", CLUSTER, timeout=900)
    assert ret["result"], ret["comment"]
    assert ret["certificate"]["signed"] is False, ret["certificate"]


def test_every_dashboard_query_returns_series(lab: Lab, monitored: dict):
    queries = lab.salt("client", "kubeha_monitoring.dashboard_queries")["client"]
    assert len(queries) >= 10, queries
    # Rates need two scrapes and the recording rules one evaluation after them.
    deadline = time.monotonic() + 180
    while True:
        empty = [q for q in queries if not _query(lab, q)]
        if not empty or time.monotonic() > deadline:
            break
        time.sleep(10)
    assert not empty, f"dashboard queries with no series: {empty}"


def test_textfile_metrics_agree_with_the_cluster(lab: Lab, monitored: dict):
    gate = lab.salt_run("kubeha_gate.final", CLUSTER, "wait=60", timeout=300)
    holders = gate["snapshot"]["vip"]["holders"]
    deadline = time.monotonic() + 60
    while True:
        held = {r["metric"]["instance"] for r in _query(lab, "kubeha_vip_holder == 1")}
        if held == set(holders) or time.monotonic() > deadline:
            break
        time.sleep(5)
    assert held == set(holders), f"Prometheus says {held}, the gate {holders}"
    certs = _query(lab, 'kubeha_certificate_expiry_timestamp_seconds{certificate="apiserver"}')
    assert {r["metric"]["instance"] for r in certs} == set(lab.control_planes)
    for row in certs:  # kubeadm's leaf certificates: about a year ahead
        assert 300 * 86400 < row["value"] - time.time() < 366 * 86400, row
    leaders = _query(lab, "sum by (name) (leader_election_master_status)")
    assert {r["metric"]["name"]: r["value"] for r in leaders} == {
        "kube-controller-manager": 1, "kube-scheduler": 1}  # fmt: skip


def test_a_hung_apiserver_fires_kube_api_down_and_it_resolves(lab: Lab, monitored: dict):
    """apiserver-hang (SIGSTOP) on a control plane that does not hold the VIP, for longer
    than KubeAPIDown's `for: 1m` plus a scrape and an evaluation: the alert fires for that
    instance during the fault, the chaos marker shows the window, and the alert is gone
    once the process runs again."""
    gate = lab.salt_run("kubeha_gate.final", CLUSTER, "wait=60", timeout=300)
    target = next(n for n in lab.control_planes if n not in gate["snapshot"]["vip"]["holders"])
    fault = {"cluster": CLUSTER, "scenario": "apiserver-hang", "target": target,
             "duration": HANG, "label": "monitoring"}  # fmt: skip
    arg = "pillar=" + json.dumps(fault)
    started = time.time()
    lab.salt_cli("salt-run", "--async", "state.orch", "orch.chaos", arg)
    fired_at = None
    while time.time() - started < HANG and fired_at is None:
        for alert in lab.salt_run("kubeha_monitoring.alerts", CLUSTER, timeout=120):
            if (alert["name"], alert["state"]) == ("KubeAPIDown", "firing"):
                assert alert["labels"]["instance"] == target, alert
                fired_at = time.time() - started
        time.sleep(5)
    assert fired_at is not None, f"KubeAPIDown never fired during a {HANG} s hang"
    print(f"[monitoring] KubeAPIDown for {target} firing {fired_at:.0f} s after the fault began")
    # for: 1m after up == 0 is first recorded (a scrape interval plus its timeout), then an
    # evaluation interval; 15 s more for a busy 2-core machine.
    assert fired_at < 60 + INTERVAL + SCRAPE_TIMEOUT + INTERVAL + 15, fired_at
    marker = _query(lab, f'max_over_time(kubeha_chaos_fault{{instance="{target}"}}[5m])')
    assert marker and marker[0]["value"] == 1, marker
    deadline = time.time() + 240
    while time.time() < deadline:
        names = {a["name"] for a in lab.salt_run("kubeha_monitoring.alerts", CLUSTER,
                                                 timeout=120)}  # fmt: skip
        if "KubeAPIDown" not in names and time.time() - started > HANG:
            break
        time.sleep(5)
    assert "KubeAPIDown" not in names, "KubeAPIDown still held after the apiserver resumed"
    gate = lab.salt_run("kubeha_gate.final", CLUSTER, "wait=300", timeout=600)
    assert gate.get("result"), gate.get("comment")
