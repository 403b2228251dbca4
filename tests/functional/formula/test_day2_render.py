"""Day 2 on a real master and minions: the orchestrations render as one runner step each
(backup then prune), refuse what they cannot run, and kubeha.day2 configures the beacons on
a control plane idempotently (a second apply changes nothing)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def run_cli(salt_master, example_minions):
    cli = salt_master.salt_run_cli(timeout=180)
    assert cli.run("saltutil.sync_all").returncode == 0
    return cli


def _steps(ret) -> dict:
    assert ret.returncode == 0, ret.stdout
    (steps,) = ret.data.values()
    return steps


def _args(step: dict) -> dict:
    return {k: v for item in step["salt"] if isinstance(item, dict) for k, v in item.items()}


def test_backup_is_take_then_prune_and_prune_needs_the_backup(run_cli):
    steps = _steps(run_cli.run("state.orch_show_sls", "orch.etcd_backup",
                               pillar={"cluster": "example", "reason": "schedule"}))  # fmt: skip
    take = _args(steps["kubeha-etcd-backup-example-take"])
    prune = _args(steps["kubeha-etcd-backup-example-prune"])
    assert take["name"] == "kubeha_backup.take" and take["reason"] == "schedule"
    assert prune["name"] == "kubeha_backup.prune"
    assert prune["require"] == [{"salt": "kubeha-etcd-backup-example-take"}]


@pytest.mark.parametrize(
    ("orch", "pillar", "runner", "expected"),
    [
        (
            "orch.etcd_restore_drill",
            {"stamp": "20260101T000000Z"},
            "kubeha_drill.run",
            {"stamp": "20260101T000000Z"},
        ),
        ("orch.etcd_defrag", {"reason": "beacon"}, "kubeha_defrag.run", {"reason": "beacon"}),
        (
            "orch.certs_renew",
            {"reason": "beacon", "trigger": "cp-2"},
            "kubeha_certs.renew",
            {"reason": "beacon", "trigger": "cp-2"},
        ),
    ],
)
def test_one_runner_step_each(run_cli, orch, pillar, runner, expected):
    (step,) = _steps(run_cli.run("state.orch_show_sls", orch,
                                 pillar={"cluster": "example", **pillar})).values()  # fmt: skip
    args = _args(step)
    assert args["name"] == runner and args["cluster"] == "example"
    assert {k: args[k] for k in expected} == expected


@pytest.mark.parametrize(
    ("orch", "pillar", "message"),
    [
        ("orch.etcd_backup", {}, "say which cluster"),
        ("orch.etcd_defrag", {"cluster": "example", "reason": "whenever"}, "reason must be"),
        ("orch.certs_renew", {"cluster": "example", "reason": "schedule"}, "reason must be"),
    ],
)
def test_refusals_render_no_step(run_cli, orch, pillar, message):
    ret = run_cli.run("state.orch_show_sls", orch, pillar=pillar)
    assert message in ret.stdout + str(ret.data)


def _by_id(ret) -> dict:
    return {s["__id__"]: s for s in ret.data.values()}


def test_day2_beacons_are_configured_once(salt_master, example_minions):
    cli = salt_master.salt_cli(timeout=300)
    first = cli.run("state.apply", "kubeha.day2", minion_tgt="cp-1")
    assert first.returncode == 0, first.stdout
    states = _by_id(first)
    # Salt's beacon.present reports an added beacon in its comment, not in changes.
    for sid, beacon in (("kubeha-day2-beacons-certs-present", "kubeha_certs"),
                        ("kubeha-day2-beacons-etcd-frag-present", "kubeha_etcd_frag")):  # fmt: skip
        assert states[sid]["result"] is True
        assert f"Adding {beacon} to beacons" in str(states[sid]["comment"]), states[sid]
    second = _by_id(cli.run("state.apply", "kubeha.day2", minion_tgt="cp-1"))
    for sid in ("kubeha-day2-beacons-certs-present", "kubeha-day2-beacons-etcd-frag-present"):
        assert second[sid]["result"] is True and second[sid]["changes"] == {}
        assert "in correct state" in str(second[sid]["comment"]), second[sid]
    assert [s for s, v in second.items() if v.get("changes")] == []
    listed = cli.run("beacons.list", "return_yaml=False", minion_tgt="cp-1").data
    certs = {k: v for item in listed["kubeha_certs"] for k, v in item.items()}
    assert certs["cluster"] == "prod-cp" and certs["renew_before_days"] == 30
    frag = {k: v for item in listed["kubeha_etcd_frag"] for k, v in item.items()}
    assert frag["fragmented_mb"] == 512 and frag["metrics_url"].endswith(":2381/metrics")
