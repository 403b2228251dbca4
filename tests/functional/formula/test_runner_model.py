"""The master-side model (runner kubeha.model) equals what the states see, and refuses alike."""

from __future__ import annotations

import pytest

from tests.conftest import REPO
from tests.unit.model.test_refusals import RUNBOOK_KUBEADM_CONFIG


@pytest.fixture(scope="module")
def run_cli(salt_master, example_minions):
    cli = salt_master.salt_run_cli(timeout=180)
    ret = cli.run("saltutil.sync_all")
    assert ret.returncode == 0, ret.stderr
    # sync_all lists only what it changed (nothing when an earlier test synced), so ask the
    # master's runner loader what it has now: every runner of _runners/ must be there.
    docs = cli.run("doc.runner")
    assert docs.returncode == 0, docs.stderr
    loaded = {name.split(".", 1)[0] for name in docs.data}
    ours = {path.stem for path in (REPO / "_runners").glob("*.py")}
    assert ours and ours <= loaded, sorted(ours - loaded)
    assert {"kubeha.model", "kubeha.check", "kubeha.minions"} <= set(docs.data)
    return cli


def test_model_of_the_example_cluster(run_cli):
    ret = run_cli.run("kubeha.model", "example")
    assert ret.returncode == 0, ret.stdout + ret.stderr
    model = ret.data
    assert model["minions"] == ["cp-1", "cp-2", "cp-3"]
    assert [n["name"] for n in model["control_plane"]] == ["cp-1", "cp-2", "cp-3"]
    assert model["derived"]["init_node"] == "cp-1"
    assert model["derived"]["control_plane_endpoint"] == "192.168.1.10:8443"
    # Runner returns go to the job cache and the event bus: the secret never does.
    assert model["vrrp"]["auth_pass"] == "<redacted>"


def test_unknown_cluster_says_what_to_do(run_cli):
    ret = run_cli.run("kubeha.model", "nope")
    assert ret.returncode != 0
    assert "no minion has the grain kubeha_cluster=nope" in ret.stdout + ret.stderr


def test_bad_pillar_is_refused_on_the_master_too(run_cli):
    bad = {"kubeha": RUNBOOK_KUBEADM_CONFIG}
    ret = run_cli.run("kubeha.check", "example", pillar_override=bad)
    assert ret.returncode == 1, (ret.stdout, ret.stderr)
    assert ret.data["result"] is False
    assert "v1beta4 exists only from kubeadm v1.31" in ret.data["comment"]
    # kubeha.model, used by orchestrations while rendering, raises instead.
    ret = run_cli.run("kubeha.model", "example", pillar_override=bad)
    assert ret.returncode != 0
    assert "v1beta4 exists only from kubeadm v1.31" in ret.stdout + ret.stderr


def test_check_of_a_valid_cluster(run_cli):
    ret = run_cli.run("kubeha.check", "example")
    assert ret.returncode == 0, ret.stdout
    assert ret.data == {
        "result": True,
        "comment": "kubeha: cluster example is valid: control planes ['cp-1', 'cp-2', 'cp-3']",
    }
