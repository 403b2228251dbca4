"""kubeha_rules_vip: the vip_heal keys the model refuses, each with the key and the fix."""

from __future__ import annotations

import yaml

from tests.conftest import REPO
from tests.unit.modules.khm_load import load

rules = load("_modules", "kubeha_rules_vip")
DEFAULTS = yaml.safe_load((REPO / "salt/kubeha/parameters/defaults.yaml").read_text())["values"]


def model(**heal) -> dict:
    return {"vip_heal": {**DEFAULTS["vip_heal"], **heal}, "vrrp": DEFAULTS["vrrp"],
            "vip": {"provider": "keepalived-haproxy"}}  # fmt: skip


def test_the_defaults_pass_and_etcd_leader_moves_are_off_until_soaked():
    assert rules.problems(model()) == []
    assert DEFAULTS["vip_heal"]["move_etcd_leader"] is False
    assert rules.problems(model(move_etcd_leader=True)) == []


def test_move_etcd_leader_must_be_a_boolean():
    (problem,) = rules.problems(model(move_etcd_leader="yes"))
    assert problem.startswith("kubeha:vip_heal:move_etcd_leader: 'yes' is not true or false")


def test_act_without_nopreempt_is_refused_with_the_fix():
    bad = model()
    bad["vrrp"] = {**bad["vrrp"], "nopreempt": False}
    (problem,) = rules.problems(bad)
    assert "act needs kubeha:vrrp:nopreempt: true" in problem
