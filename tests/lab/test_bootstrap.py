"""
End to end on the lab (issue 6): the runbook's cluster built by Salt from bare machines.

In order, on freshly booted machines: a bad pillar is refused before any step; a control
plane powered off mid-bootstrap stops the run at that node with the rest still serving;
powered back on, the same command completes the cluster; a re-run changes nothing and says
so; a second `state.apply` reports zero changes; the API answers through the VIP from the
client within the runbook's TTFB goal.
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from lab import formula, lifecycle
from lab.api import Lab

pytestmark = [pytest.mark.lab, pytest.mark.root]

P = f"kubeha-bootstrap-{formula.CLUSTER}-"


@pytest.fixture(scope="module")
def fresh_lab(lab: Lab) -> Lab:
    """Bare machines: the lab rebuilt from its base image, modules synced, no cluster."""
    lifecycle.down()
    fresh = Lab.up(client=True)
    formula.sync(fresh)
    return fresh


def steps_by_id(steps: list[formula.OrchStep]) -> dict[str, formula.OrchStep]:
    return {s.id.removeprefix(P): s for s in steps}


def test_bad_pillar_is_refused_before_any_step(fresh_lab: Lab):
    bad = {"cluster": formula.CLUSTER, "kubeha": {"vip": {"lb_port": 6443}}}
    proc = fresh_lab.salt_cli(
        "salt-run", "state.orch", "orch.bootstrap", "pillar=" + json.dumps(bad)
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert "orch.bootstrap stopped before any step" in output
    assert "kubeha:vip:lb_port: 6443 equals kubeha:apiserver:port" in output
    # Nothing ran: no node got as far as a kubeadm config.
    for node in fresh_lab.control_planes:
        probe = fresh_lab.exec(node, "test", "-e", "/etc/kubernetes/kubeadm", check=False)
        assert probe.returncode != 0, f"{node} was changed"


def _power_off_after_init(lab: Lab, node: str, events: list) -> None:
    """Power `node` off as soon as the init node has a cluster (before `node` joins)."""
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        done = lab.exec("cp-1", "test", "-e", "/etc/kubernetes/admin.conf", check=False)
        if done.returncode == 0:
            events.append(lab.fault(node, "power-off"))
            return
        time.sleep(0.5)


def test_node_lost_mid_bootstrap_stops_there_and_the_cluster_keeps_serving(fresh_lab: Lab):
    events: list = []
    killer = threading.Thread(target=_power_off_after_init, args=(fresh_lab, "cp-3", events))
    killer.start()
    try:
        steps = steps_by_id(formula.bootstrap(fresh_lab))
    finally:
        killer.join(timeout=60)
    assert events, "cp-3 was never powered off"
    for ok in ("nodes-reachable", "highstate", "init-cp-1", "cni", "join-cp-2", "gate-cp-2"):
        assert steps[ok].result, f"{ok}: {steps[ok].comment}"
    failed = steps["join-cp-3"]
    assert not failed.result
    assert "join of cp-3 stopped" in failed.comment
    assert "did not answer" in failed.comment
    assert "orch.bootstrap" in failed.comment and "again" in failed.comment
    assert not steps["final-gate"].result  # not reached
    # The two joined control planes serve: through the VIP, with a healthy 2-member etcd.
    gate = fresh_lab.salt_run(
        "kubeha_gate.control_plane_ready", formula.CLUSTER, "nodes=[cp-1, cp-2]"
    )
    assert gate["result"], gate
    formula.kubeconfig_to_client(fresh_lab)
    probe = fresh_lab.salt(
        "client",
        "apiserver.ttfb",
        "count=10",
        "interval=0.2",
        f"server=https://{fresh_lab.vip}:8443",
        f"kubeconfig={formula.CLIENT_KUBECONFIG}",
    )["client"]
    assert probe["errors"] == 0 and probe["ok"] == 10, probe


def test_same_command_completes_the_cluster_once_the_node_is_back(fresh_lab: Lab):
    fresh_lab.restore("cp-3")
    started = time.monotonic()
    steps = formula.bootstrap(fresh_lab)
    took = time.monotonic() - started
    failed = [s for s in steps if not s.result]
    assert not failed, failed
    by_id = steps_by_id(steps)
    assert "cp-2 already joined" in by_id["join-cp-2"].comment
    assert "Joined as a control plane" in by_id["join-cp-3"].comment
    assert "cluster lab healthy" in by_id["final-gate"].comment
    print(f"completing bootstrap took {took:.1f}s")


def test_rerun_on_a_built_cluster_changes_nothing_and_says_so(fresh_lab: Lab):
    by_id = steps_by_id(formula.bootstrap(fresh_lab))
    assert all(s.result for s in by_id.values()), by_id
    assert (
        "already exists on cp-1, cp-2, cp-3 and matches the pillar"
        in by_id["no-foreign-cluster"].comment
    )
    assert "No changes made" in by_id["init-cp-1"].comment
    for node in ("cp-2", "cp-3"):
        assert f"{node} already joined as a control plane" in by_id[f"join-{node}"].comment
    for highstate in ("highstate", "highstate-after-join"):
        assert "No changes made" in by_id[highstate].comment, by_id[highstate].comment


def test_second_state_apply_reports_zero_changes(fresh_lab: Lab):
    run = formula.highstate(fresh_lab)
    assert run.ok, run.failed
    assert run.changes == 0, run.changed


def test_ttfb_through_the_vip_meets_the_runbook_goal(fresh_lab: Lab, tmp_path):
    formula.kubeconfig_to_client(fresh_lab)
    ret = formula.steady_state_report(fresh_lab, str(tmp_path), duration=15, rate=5)
    ttfb = ret["ttfb"]
    print(f"steady state TTFB: {ttfb}")
    assert ttfb["errors"] == 0, ret
    # The goal is 500 ms; lab TTFB is ~10-40 ms, so 500 holds on a loaded 2-core machine.
    assert ttfb["ttfb_p95_ms"] < 500, ttfb
    assert all(v["pass"] for v in ret["verdicts"]), ret["verdicts"]
    assert {f.rsplit(".", 1)[1] for f in ret["files"]} == {"json", "md", "png"}
