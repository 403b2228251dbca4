"""
End to end on the lab (issue 6): the runbook's cluster built by Salt from bare machines.

In order, on freshly booted machines: a bad pillar is refused before any step; a control
plane powered off mid-bootstrap stops the run at that node with the rest still serving;
powered back on, the same command completes the cluster; a re-run changes nothing and says
so; a second `state.apply` reports zero changes; the API answers through the VIP from the
client within the runbook's TTFB goal; a control plane reset and joined again after the
certificate key expired gets a fresh key through the same gated path.
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


def _join_data(lab: Lab) -> dict:
    return json.loads(lab.exec("cp-1", "cat", "/etc/kubernetes/kubeadm/join-data.json").stdout)


def test_a_control_plane_rejoins_after_the_certificate_key_expired(fresh_lab: Lab):
    """Issue 6: a control plane joined later follows the same gated path and gets a fresh
    certificate key when the stored one expired. cp-3 is reset as an operator would
    (`kubeadm reset` removes its etcd member, then its Node is deleted); two hours are
    made to pass for the key: kubeadm-certs is gone (its owner token expired and the
    garbage collector took it, FACTS 11) and the stored expiry is in the past."""
    admin = "--kubeconfig=/etc/kubernetes/admin.conf"
    fresh_lab.exec("cp-3", "kubeadm", "reset", "-f", timeout=300)
    fresh_lab.exec("cp-1", "kubectl", admin, "delete", "node", "cp-3", timeout=60)
    fresh_lab.exec(
        "cp-1", "kubectl", admin, "-n", "kube-system", "delete", "secret", "kubeadm-certs"
    )
    old_key = _join_data(fresh_lab)["certificate_key"]
    expire = (
        "import json, pathlib; p = pathlib.Path('/etc/kubernetes/kubeadm/join-data.json'); "
        "d = json.loads(p.read_text()); d['certificate_key_expires'] = 0; "
        "p.write_text(json.dumps(d))"
    )
    fresh_lab.exec("cp-1", "python3", "-c", expire)

    started = time.monotonic()
    by_id = steps_by_id(formula.bootstrap(fresh_lab))
    took = time.monotonic() - started
    assert all(s.result for s in by_id.values()), {k: s.comment for k, s in by_id.items()}
    assert "Joined as a control plane" in by_id["join-cp-3"].comment
    assert "cp-2 already joined" in by_id["join-cp-2"].comment
    assert "3 etcd members" in by_id["final-gate"].comment
    fresh = _join_data(fresh_lab)
    assert fresh["certificate_key"] != old_key
    assert fresh["certificate_key_expires"] > time.time() + 3600
    secret = fresh_lab.exec(
        "cp-1", "kubectl", admin, "-n", "kube-system", "get", "secret", "kubeadm-certs"
    )
    assert secret.returncode == 0
    print(f"re-join of cp-3 with a fresh certificate key took {took:.1f}s")
