"""
End to end on the lab (issue 12): every chaos scenario once through `salt-run state.orch
orch.chaos`, with short faults, on the cluster tests/lab/test_bootstrap.py built; the
verdicts asserted from the measured numbers, with margins for a noisy 2-core machine
(`LIMITS`; the goals themselves are in the pillar's `slo:` and `make chaos` judges the
5-trial and soak runs against them). Also: a run is refused, changing nothing and saying
why, when the cluster's pillar does not allow chaos, when the cluster is unhealthy and when
the fault would take etcd below quorum; and an orchestration killed mid-fault leaves a
cluster that heals itself within the fault's duration.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator

import pytest

from lab import formula, saltmaster
from lab.api import Lab

pytestmark = [pytest.mark.lab, pytest.mark.root]

CLUSTER = formula.CLUSTER
FAULT_S = 8
SHORT = {"duration": FAULT_S, "lead_in": 3, "settle": 8}
# What CI asserts per scenario: (failed requests, longest stall s, VIP failover s) at most.
# The goals (pillar slo:, issue 12) with margins for a loaded 2-core machine; None = not
# asserted (measured and printed).
LIMITS = {
    "apiserver-stop": (0, 2.0, None),
    # The hang's goal is <= 1 failed (issue 12), not met in every run: the requests that
    # reach the frozen apiserver before HAProxy's DOWN (0.45-0.84 s: TLS checks timing out
    # at `timeout connect` 150 ms, fall 2) are lost. leastconn sends every new request there
    # while the frozen server holds fewer long-lived connections than the others (A, just
    # before on the same node, drained them away): measured 0, 3, 0, 2, 3 with 8 s faults
    # and 4 of 400 in a 20 s run on 2026-11-29. CI allows the requests due before DOWN
    # (5 at 10/s) and asserts that none failed after it (_lost_only_before_down).
    "apiserver-hang": (5, 3.0, None),
    # Its stall is printed, not asserted: the fault window itself stays short (1.7 s while
    # the VIP moved), but requests sent 0.4 s after the isolation is lifted waited 6.4 s in
    # one run (the returning node was the VIP holder and etcd's leader; the cause is open
    # in issue 12's note). The failover and failures are asserted.
    "node-isolate": (2, None, 1.5),
    # B: the dead server is DOWN on every HAProxy (0.4 s) before VRRP's takeover (0.6-0.8 s),
    # so no connect to it is pending on the new holder when it goes DOWN. A request in
    # flight on the holder while it dies is lost with it (1 in 13 trials; its client waits
    # out its 10 s timeout), including one opened while the lab's switch was cutting the
    # cable (CI, 2026-11-30: the node's kernel acknowledged its TLS ClientHello). The failed
    # and stall limits here, like the goals, judge the others: a lost request is always a
    # 10 s stall, so 0 failed goes with the 3 s stall. _check allows at most one in flight
    # (10 requests/s) and a switch window short enough for that to hold.
    "power-off": (0, 3.0, 1.5),
    # D's goal is 0 failed (issue 12). With apiserver:etcd_servers: local-first the target's
    # apiserver keeps serving through the other members (its node's HAProxy retries the
    # refused connect on a backup), so nothing of it is cut: 0 of 190 in 4 runs, stall
    # 0.07-0.11 s (docs/chaos.md). CI allows 1 for the noisy machine; the stall is printed,
    # not asserted.
    "etcd-stop": (1, None, None),
    "leader-kill": (0, 2.0, None),
    "netem": (None, None, None),
}


def _run(lab: Lab, scenario: str, **pillar) -> dict:
    arg = "pillar=" + json.dumps({"cluster": CLUSTER, "scenario": scenario, **pillar})
    ret = lab.salt_run("state.orch", "orch.chaos", arg, timeout=900)
    data = ret.get("data", ret)
    (steps,) = data.values()
    assert isinstance(steps, dict), steps
    (step,) = steps.values()
    out = (step.get("changes") or {}).get("return")
    return out if isinstance(out, dict) else {"result": False, "comment": step.get("comment")}


def _runner(lab: Lab, fun: str, *args: str, timeout: float = 900) -> dict:
    return lab.salt_run(fun, CLUSTER, *args, timeout=timeout)


def _active(lab: Lab) -> dict:
    return lab.salt("cp-*", "chaos.active")


@pytest.fixture(scope="module")
def cluster(lab: Lab, tmp_path_factory) -> Iterator[Lab]:
    """The built cluster, healthy, its modules synced, the client's kubeconfig in place,
    each run's report in a temporary directory."""
    formula.sync(lab)
    gate = lab.salt_run("kubeha_gate.final", CLUSTER, "wait=120", timeout=400)
    assert gate.get("result"), f"the lab has no healthy cluster (run test_bootstrap.py): {gate}"
    formula.kubeconfig_to_client(lab)
    lab.reports = tmp_path_factory.mktemp("chaos-reports")
    yield lab
    for node in lab.control_planes:
        lab.salt(node, "chaos.revert", timeout=60)


def _check(lab: Lab, ret: dict, scenario: str) -> None:
    print(f"{scenario}: {ret.get('comment')}")
    assert "requests" in ret, ret
    failed, stall, failover = LIMITS[scenario]
    # All but the requests in flight on a node at its power-off (chaos_verdicts): at 10
    # requests/s, at most one is.
    req = ret["requests_judged"]
    assert ret["in_flight_at_power_off"] <= (1 if scenario == "power-off" else 0), ret["comment"]
    assert ret["requests"]["failed"] - req["failed"] == ret["in_flight_at_power_off"], ret
    if scenario == "power-off":  # the lab's cut is one `ip link` call: milliseconds
        assert 0 <= ret["power_off_window_s"] <= 0.5, ret
    if failed is not None:
        assert req["failed"] <= failed, ret["comment"]
    if stall is not None:
        assert req["longest_stall_s"] <= stall, ret["comment"]
    if failover is not None:
        assert ret["vip"]["failover_s"] is not None and ret["vip"]["failover_s"] <= failover, ret
    assert ret["writes"]["lost"] == 0, ret["writes"]
    assert ret["writes"]["acknowledged"] > 0, ret["writes"]
    recovered = [v for v in ret["verdicts"] if v["goal"].startswith("cluster healthy again")]
    assert recovered and recovered[0]["pass"], recovered
    assert all(a == [] for a in _active(lab).values()), "a fault is still in force"


# --- refusals: nothing changes, the reason is said -----------------------------------


def test_refused_when_the_clusters_pillar_does_not_allow_chaos(cluster: Lab):
    first = cluster.control_planes[0]  # whose pillar the master compiles for the model
    cluster.salt(first, "grains.setval", "kubeha_profile", "chaos-off")
    cluster.salt(first, "saltutil.refresh_pillar", "wait=True")
    try:
        ret = _runner(cluster, "kubeha_chaos.run", "apiserver-stop", "target=vip-holder")
    finally:
        cluster.salt(first, "grains.delkey", "kubeha_profile", "force=True")
        cluster.salt(first, "saltutil.refresh_pillar", "wait=True")
    assert ret["result"] is False and ret["changed"] is False
    assert "nothing was changed" in ret["comment"]
    assert "kubeha:chaos:enabled is false" in ret["comment"]
    assert all(a == [] for a in _active(cluster).values())


def test_refused_below_etcd_quorum_unless_forced(cluster: Lab):
    two = ",".join(cluster.control_planes[:2])
    ret = _run(cluster, "etcd-stop", target=two, duration=FAULT_S)
    assert ret["result"] is False, ret
    assert "leaves 1 of 3 etcd members" in ret["comment"] and "force=true" in ret["comment"]
    for node in cluster.control_planes:
        assert cluster.exec(node, "test", "-e", "/etc/kubernetes/manifests/etcd.yaml",
                            check=False).returncode == 0, node  # fmt: skip


def test_refused_on_an_unhealthy_cluster(cluster: Lab):
    holder = cluster.salt_run("kubeha_status.snapshot", CLUSTER)["vip"]["holders"][0]
    other = next(n for n in cluster.control_planes if n != holder)
    cluster.salt(holder, "haproxy_runtime.disable_server", other)
    try:
        ret = _runner(cluster, "kubeha_chaos.run", "apiserver-stop", "gate_wait=4")
    finally:
        cluster.salt(holder, "haproxy_runtime.enable_server", other)
    assert ret["result"] is False and ret["changed"] is False
    assert "must be healthy first" in ret["comment"] and "not UP" in ret["comment"]
    assert all(a == [] for a in _active(cluster).values())


# --- every scenario once ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("scenario", "target", "extra"),
    [
        ("apiserver-stop", "vip-holder", {}),
        ("apiserver-hang", "vip-holder", {}),
        ("etcd-stop", "etcd-leader", {}),
        ("leader-kill", "lease-holder", {}),
        ("netem", "vip-holder", {"delay": "200ms", "jitter": "20ms", "loss": 20}),
        ("node-isolate", "vip-holder", {}),
        ("power-off", "vip-holder", {}),
    ],
)
def test_scenario(cluster: Lab, scenario: str, target: str, extra: dict):
    ret = _run(cluster, scenario, target=target, out_dir=str(cluster.reports), **SHORT, **extra)
    _check(cluster, ret, scenario)
    if scenario in ("node-isolate", "power-off"):
        # The VIP left the target and answered from another node.
        assert ret["vip"]["moved_to"] and ret["vip"]["before"] != ret["vip"]["moved_to"], ret
    if scenario == "apiserver-hang":
        _lost_only_before_down(cluster)
    if scenario == "leader-kill":
        kcm = ret["leases"]["kube-controller-manager"]
        # A new holder identity took the Lease (failover_s is its acquire time). It may be
        # the killed one's restart on the same node, which competes like any other (seen:
        # cp-2 -> cp-2 after 3.8 s), so the node is not compared.
        assert kcm["failover_s"] is not None and kcm["transitions"] >= 1, kcm


def _lost_only_before_down(lab: Lab) -> None:
    """The last run's failed requests were all due before the VIP holder's HAProxy marked
    the target DOWN (as its watcher saw it), and that DOWN came within 1.5 s of the fault."""
    run = json.loads((lab.reports / f"chaos-{CLUSTER}.json").read_text())["runs"][-1]
    (target,) = run["targets"]
    holder = run["before"]["vip"][0]
    downs = [t for t, status in run["measured"]["haproxy"]["timeline"][holder][target]
             if t >= run["fault"]["at"] and status.startswith("DOWN")]  # fmt: skip
    # Detection is up to 0.6 s by the check's timings (defaults.yaml; 0.45-0.84 s measured).
    assert downs and downs[0] - run["fault"]["at"] <= 1.5, (holder, target, downs)
    # Failed as chaos_analysis.request_stats counts them: an error, or no first byte.
    failed_due = [r[1] for r in run["raw"]["requests"] if r[6] or r[3] is None]
    assert all(due <= downs[0] for due in failed_due), (downs[0], failed_due)


def test_the_report_has_a_row_and_a_picture_per_scenario(cluster: Lab):
    report = json.loads((cluster.reports / f"chaos-{CLUSTER}.json").read_text())
    labels = {row["label"] for row in report["rows"]}
    assert len(labels) == len(LIMITS), labels
    for row in report["rows"]:
        assert (cluster.reports / row["png"]).stat().st_size > 5000, row
    text = (cluster.reports / f"chaos-{CLUSTER}.md").read_text()
    assert "## Verdicts" in text and text.count("![") == len(LIMITS)


# --- the orchestration dies mid-fault ------------------------------------------------


def test_killing_the_orchestration_mid_fault_leaves_a_cluster_that_heals(cluster: Lab):
    """node-isolate on the VIP holder: the master cannot reach the node while its interface
    is down; the orchestration is SIGKILLed then. The node's own timer brings the
    interface back at the end of the fault and the cluster is healthy again."""
    duration = 12
    holder = cluster.salt_run("kubeha_status.snapshot", CLUSTER)["vip"]["holders"][0]
    pillar = json.dumps({"cluster": CLUSTER, "scenario": "node-isolate", "target": holder,
                         "duration": duration, "out_dir": str(cluster.reports),
                         "label": "killed mid-fault"})  # fmt: skip
    orch = subprocess.Popen(  # noqa: S603 - our own salt-run, argument list
        [str(saltmaster.BIN / "salt-run"), "-c", str(saltmaster.HOME), "state.orch",
         "orch.chaos", f"pillar={pillar}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip

    def link(state: str) -> bool:
        out = cluster.exec(holder, "cat", "/sys/class/net/ens160/operstate", check=False)
        return out.stdout.strip() == state

    try:
        deadline = time.monotonic() + 240
        while not link("down"):
            assert time.monotonic() < deadline and orch.poll() is None, "the fault never began"
            time.sleep(0.2)
        down_at = time.monotonic()
        orch.kill()  # SIGKILL: no cleanup of any kind in the orchestration
        orch.wait(timeout=30)
        # The killed run's job file stays in the master's cache and, once its PID is
        # recycled by any salt process, blocks every later orchestration: the operator's
        # step after a kill -9 (README, Chaos scenarios), and proof the run did leave it.
        assert saltmaster.forget_killed_run(orch.pid), "the killed salt-run left no job file"
        while not link("up"):
            assert time.monotonic() - down_at < duration + 10, "the node did not bring its link up"
            time.sleep(0.2)
        healed_after = time.monotonic() - down_at
    finally:
        if orch.poll() is None:
            orch.kill()
    print(f"link back up {healed_after:.1f} s after it went down (fault duration {duration} s)")
    assert healed_after >= duration - 1
    gate = cluster.salt_run("kubeha_gate.final", CLUSTER, "wait=180", timeout=400)
    assert gate.get("result"), gate
    assert cluster.salt(holder, "chaos.active")[holder] == []
