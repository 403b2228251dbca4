"""kubeha_rules_vip: the vip_heal keys the model refuses, each with the key and the fix."""

from __future__ import annotations

import pytest
import yaml

from tests.conftest import REPO
from tests.unit.modules.khm_load import load

rules = load("_modules", "kubeha_rules_vip")
DEFAULTS = yaml.safe_load((REPO / "salt/kubeha/parameters/defaults.yaml").read_text())["values"]


def model(**heal) -> dict:
    return {"vip_heal": {**DEFAULTS["vip_heal"], **heal}, "vrrp": DEFAULTS["vrrp"],
            "vip": {"provider": "keepalived-haproxy"}}  # fmt: skip


def test_the_defaults_pass_with_etcd_leader_moves_and_the_handover_on():
    assert rules.problems(model()) == []
    assert DEFAULTS["vip_heal"]["move_etcd_leader"] is True
    assert DEFAULTS["vip_heal"]["handover_s"] == 30
    assert rules.problems(model(move_etcd_leader=False, handover_s=0)) == []


@pytest.mark.parametrize("value", [-1, 3601, "30", True])
def test_a_bad_handover_time_is_refused(value):
    (problem,) = rules.problems(model(handover_s=value))
    assert problem.startswith("kubeha:vip_heal:handover_s:") and "0-3600" in problem


def test_move_etcd_leader_must_be_a_boolean():
    (problem,) = rules.problems(model(move_etcd_leader="yes"))
    assert problem.startswith("kubeha:vip_heal:move_etcd_leader: 'yes' is not true or false")


def test_act_without_nopreempt_is_refused_with_the_fix():
    bad = model()
    bad["vrrp"] = {**bad["vrrp"], "nopreempt": False}
    (problem,) = rules.problems(bad)
    assert "act needs kubeha:vrrp:nopreempt: true" in problem
