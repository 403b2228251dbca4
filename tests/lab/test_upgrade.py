"""
Issue 13 end to end on the lab: `orch.upgrade` on a cluster built at 1.29 with an apiserver
flag that 1.31 refuses (the lab-v1-29 and lab-gce-flag pillar profiles), the chaos probe
the product's own probe (chaos:probe_minion: the client) watching through the VIP.

In order: refusals change nothing (a backwards target, a version the repository lacks, an
unhealthy cluster); a dry run prints the hops; the upgrade to 1.31.0 goes through 1.30
(every node), then fails on its first control plane at 1.31 (the new kube-apiserver exits on
the flag), which is rolled back to 1.30 and serves, the run stopping there and naming it;
with the flag gone from pillar, the same command finishes the upgrade. Over both upgrade runs
(the rollback included) the probe sees no failed request, no stall over the goal and no
acknowledged write lost.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from lab import formula, lifecycle
from lab.api import Lab
from lab.config import STATE

pytestmark = [pytest.mark.lab, pytest.mark.root]

P = f"kubeha-upgrade-{formula.CLUSTER}-"
CPS = ("cp-1", "cp-2", "cp-3")
STALL_GOAL_S = 2.0  # issue 13: longest stall <= 2 s through the whole upgrade


def _profiles(lab: Lab, names: list[str]) -> None:
    if names:
        lab.salt("cp-*", "grains.setval", "kubeha_profile", json.dumps(names))
    else:
        lab.salt("cp-*", "grains.delkey", "kubeha_profile", "force=True")
    lab.salt("cp-*", "saltutil.refresh_pillar", "wait=True")


def _versions(lab: Lab) -> dict:
    return lab.salt_run("kubeha_upgrade.node_versions", formula.CLUSTER)


def _packages(lab: Lab) -> dict:
    return lab.salt("cp-*", "pkg.version", "kubeadm", "kubelet", "kubectl")


def _report() -> dict:
    """The last orch.upgrade's report (kubeha_upgrade_run.report, in the master's cache)."""
    return json.loads((STATE / "master/cache/kubeha/reports/upgrade-lab.json").read_text())


def _clients_saw_nothing(report: dict) -> dict:
    """The product's own probe (chaos:probe_minion, the client) over one orch.upgrade run."""
    probe = report["probe"]
    assert probe and "count" in probe, probe
    assert probe["count"] > 50, probe
    assert probe["failed"] == 0, probe["failed_by_cause"]
    assert probe["longest_stall_s"] <= STALL_GOAL_S, probe
    assert probe["writes"]["acked"] > 20 and probe["writes"]["lost"] == [], probe["writes"]
    return probe


@pytest.fixture(scope="module")
def old_cluster(lab: Lab) -> Iterator[Lab]:
    """Fresh machines, a cluster built at 1.29 with the flag 1.31 refuses, the probe on."""
    lifecycle.down()
    fresh = Lab.up(client=True)
    formula.sync(fresh)
    _profiles(fresh, ["v1-29", "gce-flag"])
    failed = [s for s in formula.bootstrap(fresh) if not s.result]
    assert not failed, failed
    formula.kubeconfig_to_client(fresh)  # the probe's kubeconfig (chaos:probe_kubeconfig)
    try:
        yield fresh
    finally:
        # Back to the lab's own pillar; the upgraded nodes keep 1.31 by their grain.
        _profiles(fresh, [])


def test_refusals_change_nothing(old_cluster: Lab):
    before = (_versions(old_cluster), _packages(old_cluster))
    assert set(before[0].values()) == {"v1.29.15"}, before
    _, text = formula.upgrade(old_cluster, version="1.28.0")
    assert "kubeadm does not downgrade" in text, text[-2000:]
    _, text = formula.upgrade(old_cluster, version="1.31.7")
    assert "1.31.7 is not in the 1.31 package repository" in text, text[-2000:]
    # An unhealthy cluster: the precheck's final gate refuses while cp-1's HAProxy has
    # cp-3's apiserver in maintenance (a leftover of someone's work; cheaper to undo in a
    # test than a powered-off node, which the bootstrap tests already cover).
    old_cluster.salt("cp-1", "haproxy_runtime.disable_server", "cp-3")
    try:
        steps, text = formula.upgrade(old_cluster, version="1.31.0")
        by_id = {s.id.removeprefix(P): s for s in steps}
        assert not by_id["precheck"].result, text[-2000:]
        assert "not healthy" in by_id["precheck"].comment
        assert "cp-3 MAINT" in by_id["precheck"].comment, by_id["precheck"].comment
        assert not by_id["backup"].result  # never ran
    finally:
        old_cluster.salt("cp-1", "haproxy_runtime.enable_server", "cp-3")
    gate = old_cluster.salt_run("kubeha_gate.final", formula.CLUSTER)
    assert gate["result"], gate
    assert (_versions(old_cluster), _packages(old_cluster)) == before


def test_dry_run_prints_the_hops_and_changes_nothing(old_cluster: Lab):
    steps, text = formula.upgrade(old_cluster, version="1.31.0", dry_run=True)
    assert [s.id for s in steps] == [f"{P}plan"], text[-2000:]
    plan = steps[0].comment
    assert "v1.29.15 -> 1.31.0" in plan, plan
    assert "hop to 1.30." in plan and "hop to 1.31.0" in plan, plan
    assert plan.index("control-plane cp-2 (kubeadm upgrade apply)") < plan.index(
        "control-plane cp-3"
    )
    assert set(_versions(old_cluster).values()) == {"v1.29.15"}


def test_a_node_the_new_version_refuses_is_rolled_back_and_the_run_stops(old_cluster: Lab):
    steps, text = formula.upgrade(old_cluster, version="1.31.0")
    by_id = {s.id.removeprefix(P): s for s in steps}
    hop1 = sorted(k for k in by_id if k.startswith("1.30.") and not k.endswith("-budget"))
    assert len(hop1) == 3 and all(by_id[k].result for k in hop1), {k: by_id[k] for k in hop1}
    failed = by_id["1.31.0-cp-2"]
    assert not failed.result, text[-3000:]
    assert "upgrade of cp-2 to v1.31.0 stopped" in failed.comment
    assert "rolled back to v1.30." in failed.comment and "again" in failed.comment
    assert not by_id["1.31.0-cp-3"].result  # not reached
    # Between nodes the error budget held (the probe's summary so far each time).
    budgets = [s for k, s in by_id.items() if k.endswith("-budget") and s.result]
    assert len(budgets) == 3 and all("0 failed" in s.comment for s in budgets), budgets
    versions = _versions(old_cluster)
    assert all(v.startswith("v1.30.") for v in versions.values()), versions
    gate = old_cluster.salt_run("kubeha_gate.final", formula.CLUSTER)
    assert gate["result"], gate
    report = _report()
    assert report["summary"]["rolled_back"] == {"cp-2": versions["cp-2"]}, report["summary"]
    probe = _clients_saw_nothing(report)  # the failure and the rollback included
    print(f"run 1 (hop to 1.30, cp-2 rolled back at 1.31): {probe['count']} requests, "
          f"p95 {probe['ttfb_p95_ms']} ms, longest stall {probe['longest_stall_s']} s")  # fmt: skip


def test_without_the_flag_the_same_command_finishes_and_clients_saw_nothing(old_cluster):
    _profiles(old_cluster, ["v1-29"])  # the operator drops the flag from pillar
    started = time.monotonic()
    steps, text = formula.upgrade(old_cluster, version="1.31.0")
    took = time.monotonic() - started
    failed = [s for s in steps if not s.result]
    assert not failed, text[-3000:]
    assert set(_versions(old_cluster).values()) == {"v1.31.0"}
    report = next(s for s in steps if s.id.endswith("-report"))
    assert "report in" in report.comment
    report = _report()
    probe = _clients_saw_nothing(report)
    summary = report["summary"]
    print(f"run 2 finished the upgrade in {took:.0f} s ({summary['kubeadm_share']:.0%} in "
          f"kubeadm): {probe['count']} requests, p95 {probe['ttfb_p95_ms']} ms, longest stall "
          f"{probe['longest_stall_s']} s, writes {probe['writes']['acked']} acknowledged, "
          f"lost {probe['writes']['lost']}")  # fmt: skip
