"""orch.bootstrap renders on the master, strictly serial, and refuses bad input first."""

from __future__ import annotations

import pytest

from tests.unit.model.test_refusals import RUNBOOK_KUBEADM_CONFIG


@pytest.fixture(scope="module")
def run_cli(salt_master, example_minions):
    cli = salt_master.salt_run_cli(timeout=180)
    assert cli.run("saltutil.sync_all").returncode == 0
    return cli


def _requires(step: dict) -> list[str]:
    for fun_args in step.values():
        if isinstance(fun_args, list):
            for arg in fun_args:
                if isinstance(arg, dict) and "require" in arg:
                    return [list(r.values())[0] for r in arg["require"]]
    return []


def test_bootstrap_renders_one_node_at_a_time(run_cli):
    ret = run_cli.run("state.orch_show_sls", "orch.bootstrap", pillar={"cluster": "example"})
    assert ret.returncode == 0, ret.stdout
    (steps,) = ret.data.values()  # keyed by the master's minion id
    p = "kubeha-bootstrap-example-"
    expected = [
        "nodes-reachable",
        "no-foreign-cluster",
        "highstate",
        "init-cp-1",
        "gate-cp-1",
        "cni",
        "join-cp-2",
        "gate-cp-2",
        "join-cp-3",
        "gate-cp-3",
        "join-secrets-forgotten",
        "highstate-after-join",
        "final-gate",
    ]
    assert sorted(steps) == sorted(p + e for e in expected)
    # Each step requires exactly the one before it: a strict chain, no batch.
    for before, after in zip(expected, expected[1:], strict=False):
        assert _requires(steps[p + after]) == [p + before], after
    gate = steps[p + "gate-cp-3"]["salt"]
    assert {"nodes": ["cp-1", "cp-2", "cp-3"]} in gate
    # The model the orchestration rendered with is redacted: no secret in the output.
    assert "ChangeMe" not in ret.stdout


def _render_errors(ret) -> str:
    """orch_show_sls answers a failed render with a list of errors instead of steps."""
    assert isinstance(ret.data, dict), ret.stdout + ret.stderr
    (rendered,) = ret.data.values()
    assert isinstance(rendered, list), rendered
    return "\n".join(rendered)


def test_bootstrap_needs_a_cluster(run_cli):
    ret = run_cli.run("state.orch_show_sls", "orch.bootstrap")
    assert 'pillar=\'{"cluster": "<name>"}\'' in _render_errors(ret)


def test_bootstrap_refuses_a_bad_pillar_before_any_step(run_cli):
    pillar = {"cluster": "example", "kubeha": RUNBOOK_KUBEADM_CONFIG}
    errors = _render_errors(run_cli.run("state.orch_show_sls", "orch.bootstrap", pillar=pillar))
    assert "orch.bootstrap stopped before any step: kubeha: the cluster model" in errors
    assert "v1beta4 exists only from kubeadm v1.31" in errors
    # Salt appends its own Jinja traceback; the operator's message comes first.
    assert (
        errors.index("v1beta4 exists only") < errors.find("Traceback") or "Traceback" not in errors
    )


def test_chaos_is_one_runner_step_with_the_operators_arguments(run_cli):
    pillar = {"cluster": "example", "scenario": "etcd-stop", "target": "cp-2,cp-3",
              "duration": 30, "force": True, "ignored": "x"}  # fmt: skip
    ret = run_cli.run("state.orch_show_sls", "orch.chaos", pillar=pillar)
    assert ret.returncode == 0, ret.stdout
    (steps,) = ret.data.values()
    (step,) = steps.values()
    args = {k: v for item in step["salt"] if isinstance(item, dict) for k, v in item.items()}
    args.pop("order", None)  # Salt's own
    assert args == {"name": "kubeha_chaos.run", "cluster": "example", "scenario": "etcd-stop",
                    "target": "cp-2,cp-3", "duration": 30, "force": True}  # fmt: skip


def test_chaos_needs_a_cluster_and_a_scenario(run_cli):
    ret = run_cli.run("state.orch_show_sls", "orch.chaos", pillar={"cluster": "example"})
    assert "say which cluster and scenario" in _render_errors(ret)
