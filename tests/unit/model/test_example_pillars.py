"""The shipped pillars are valid and derive what the runbook (as corrected) describes."""

from __future__ import annotations

import pytest
import yaml

from tests.conftest import REPO
from tests.unit.model.conftest import _merge, pillar

PROFILES = sorted((REPO / "pillar/kubeha/profiles").glob("lab-*.sls"))


def test_example_and_lab_pillars_have_no_problems(salt_funcs, defaults):
    for name in ("example", "lab"):
        model = _merge(defaults, pillar(name))
        assert salt_funcs["kubeha_model.check"](model) == [], name


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.stem)
def test_every_lab_profile_over_the_lab_pillar_has_no_problems(salt_funcs, defaults, profile):
    """A profile is merged over the lab's pillar by a grain (pillar/top.sls): both valid."""
    extra = yaml.safe_load(profile.read_text())["kubeha"]
    model = _merge(_merge(defaults, pillar("lab")), extra)
    assert salt_funcs["kubeha_model.check"](model) == [], profile.name
    assert f"kubeha.profiles.{profile.stem}" in (REPO / "pillar/top.sls").read_text()


def test_example_derives_runbook_roles_and_order(salt_funcs, example):
    derived = {n: salt_funcs["kubeha_model.derive"](example, n) for n in ("cp-1", "cp-2", "cp-3")}
    assert [derived[n]["priority"] for n in ("cp-1", "cp-2", "cp-3")] == [150, 140, 130]
    assert derived["cp-1"]["is_init_node"] and not derived["cp-2"]["is_init_node"]
    assert derived["cp-2"]["peers"] == ["192.168.1.11", "192.168.1.13"]
    # The runbook upgrades cp-2, cp-3, then cp-1.
    assert derived["cp-1"]["upgrade_order"] == ["cp-2", "cp-3", "cp-1"]
    assert derived["cp-1"]["control_plane_endpoint"] == "192.168.1.10:8443"
    assert derived["cp-1"]["kubeadm_api"] == "v1beta3"
    assert derived["cp-1"]["packages"] == {
        "kubeadm": "1.30.0-1.1",
        "kubelet": "1.30.0-1.1",
        "kubectl": "1.30.0-1.1",
        # cri-tools has its own version on pkgs.k8s.io (1.31.1 in the v1.31 repository):
        # whatever the cluster's minor repository offers.
        "cri-tools": None,
    }
    assert derived["cp-1"]["repo_minor"] == "v1.30"
    assert derived["cp-1"]["sandbox_image"] == "registry.k8s.io/pause:3.9"


def test_priority_grain_overrides_the_model(salt_funcs, example):
    assert salt_funcs["kubeha_model.derive"](example, "cp-3", 200)["priority"] == 200


def test_repo_follows_the_newest_package_asked_for(salt_funcs, example, model_with):
    # Mid-upgrade: kubeadm 1.31 first, from the v1.31 repository (docs/facts.md #3).
    model = model_with(example, {"packages": {"versions": {"kubeadm": "1.31.0-1.1"}}})
    derived = salt_funcs["kubeha_model.derive"](model, "cp-2")
    assert derived["repo_minor"] == "v1.31"
    assert derived["packages"]["kubeadm"] == "1.31.0-1.1"
    assert derived["packages"]["kubelet"] == "1.30.0-1.1"


def test_unknown_minion_has_no_node(salt_funcs, example):
    derived = salt_funcs["kubeha_model.derive"](example, "somebody-else")
    assert derived["node"] is None and derived["is_control_plane"] is False
