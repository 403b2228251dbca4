"""The rolling upgrade's plan (hops, order, resume) and a node ahead of pillar."""

from __future__ import annotations

import copy

import pytest

from tests.unit.modules.khm_load import load

plan = load("_utils", "kubeha_upgrade_plan")

REPOS = {
    "1.29": ["1.29.0-1.1", "1.29.3-1.1"],
    "1.30": ["1.30.0-1.1", "1.30.2-1.1"],
    "1.31": ["1.31.0-1.1"],
}
CPS = ["cp-1", "cp-2", "cp-3"]


def test_one_minor_is_one_hop_to_the_target():
    assert plan.hops("1.30.0", "1.31.0", REPOS) == ["1.31.0"]


def test_two_minors_pass_through_the_newest_patch_between():
    """kubeadm never skips a minor (docs/facts.md #12)."""
    assert plan.hops("1.29.0", "1.31.0", REPOS) == ["1.30.2", "1.31.0"]


def test_a_patch_upgrade_and_no_upgrade():
    assert plan.hops("1.30.0", "1.30.2", REPOS) == ["1.30.2"]
    assert plan.hops("1.31.0", "1.31.0", REPOS) == []


@pytest.mark.parametrize(
    ("current", "target", "why"),
    [
        ("1.31.0", "1.30.0", "kubeadm does not downgrade"),
        ("1.30.0", "2.0.0", "major version"),
        ("1.30.0", "1.31.5", r"not in the 1.31 package repository \(it offers 1.31.0\)"),
        ("1.29.0", "1.31.0", "offers no kubeadm"),
    ],
)
def test_refusals_name_the_reason(current, target, why):
    repos = {k: v for k, v in REPOS.items() if not (why == "offers no kubeadm" and k == "1.30")}
    with pytest.raises(ValueError, match=why):
        plan.hops(current, target, repos)


def test_order_is_the_runbooks_then_workers_in_batches():
    groups = plan.order(CPS, [], ["w-1", "w-2", "w-3"], batch=2)
    assert groups == [
        ("control-plane", ["cp-2"]),
        ("control-plane", ["cp-3"]),
        ("control-plane", ["cp-1"]),
        ("worker", ["w-1", "w-2"]),
        ("worker", ["w-3"]),
    ]


def test_plan_marks_apply_on_the_first_and_skips_nodes_already_there():
    whole = plan.plan(
        cluster="lab", current="1.29.0", target="1.31.0", available=REPOS,
        control_planes=CPS, upgrade_order=["cp-2", "cp-3", "cp-1"], workers=["w-1"],
        node_versions={"cp-2": "v1.30.2", "cp-3": "v1.29.0", "cp-1": "v1.29.0", "w-1": None},
    )  # fmt: skip
    first, second = whole["hops"]
    assert first["version"] == "1.30.2" and second["version"] == "1.31.0"
    assert [g["nodes"] for g in first["groups"]] == [["cp-2"], ["cp-3"], ["cp-1"], ["w-1"]]
    assert [g["first"] for g in first["groups"]] == [True, False, False, False]
    # cp-2 already runs 1.30.2: a re-run resumes after it (still upgraded in hop two).
    assert [g["skip"] for g in first["groups"]] == [True, False, False, False]
    assert not any(g["skip"] for g in second["groups"])
    assert first["groups"][0]["steps"][0] == "lb-drain"
    assert first["groups"][3]["steps"][0] == "cordon-drain"


def test_packages_index_versions():
    index = (
        "Package: kubeadm\nVersion: 1.31.0-1.1\nArchitecture: amd64\n\n"
        "Package: kubelet\nVersion: 1.31.0-1.1\n\n"
        "Package: kubeadm\nVersion: 1.31.1-1.1\nDescription: x\n continued\n"
    )
    assert plan.parse_packages_index(index) == ["1.31.0-1.1", "1.31.1-1.1"]


def test_a_node_the_upgrade_moved_ahead_of_pillar_keeps_its_version(salt_funcs, example):
    """A highstate after the upgrade must not downgrade: the grain wins when newer."""
    model = copy.deepcopy(example)
    ahead = salt_funcs["kubeha_model.derive"](model, "cp-2", None, None, "1.31.0")
    assert ahead["version"] == "1.31.0" and ahead["pillar_behind"] is True
    assert ahead["packages"]["kubelet"] == "1.31.0-1.1" and ahead["repo_minor"] == "v1.31"
    assert ahead["kubeadm_api"] == "v1beta4"
    behind = salt_funcs["kubeha_model.derive"](model, "cp-2", None, None, "1.29.0")
    assert behind["version"] == "1.30.0" and behind["pillar_behind"] is False
    assert behind["packages"]["kubelet"] == "1.30.0-1.1"


def test_go_durations_read_like_kubeadm():
    values = load("_utils", "kubeha_values")
    assert values.go_seconds("5m0s") == 300 and values.go_seconds("1h30m") == 5400
    assert values.go_seconds("60s") == 60 and values.go_seconds("1.5s") == 1.5
    with pytest.raises(ValueError, match="not a Go duration"):
        values.go_seconds("60")  # a bare number is not a Go duration
