"""
Issue 9, on real nodes: the model is judged against each control plane's real network, not
the pillar's own claim. The lab's nodes are 198.18.0.1x/24 on ens160.
"""

from __future__ import annotations

import json

import pytest

from lab import formula

pytestmark = [pytest.mark.lab, pytest.mark.root]

# On paper 198.18.1.10/16 contains every node; on the nodes, ens160 is a /24.
WIDE = {"kubeha": {"vip": {"address": "198.18.1.10", "prefix": 16}}}


def test_the_lab_pillar_fits_the_nodes_networks(lab):
    assert lab.salt_run("kubeha.network_problems", formula.CLUSTER) == []


def test_a_vip_outside_the_real_subnet_is_refused_on_the_master(lab):
    problems = lab.salt_run(
        "kubeha.network_problems", formula.CLUSTER, "pillar_override=" + json.dumps(WIDE)
    )
    for node in ("cp-1", "cp-2", "cp-3"):
        assert any(
            p.startswith(f"kubeha:vip:address: 198.18.1.10 is outside {node}'s network "
                         "198.18.0.0/24")
            for p in problems
        ), problems  # fmt: skip
    assert any("kubeha:vip:prefix: 16" in p and "Use kubeha:vip:prefix: 24" in p for p in problems)


def test_a_vip_outside_the_real_subnet_is_refused_on_the_node_before_any_change(lab):
    proc = lab.salt_cli(
        "salt", "cp-2", "state.apply", "kubeha._mapdata", "pillar=" + json.dumps(WIDE)
    )
    out = proc.stdout + proc.stderr
    assert "kubeha:vip:address: 198.18.1.10 is outside cp-2's network 198.18.0.0/24" in out, out
    assert "nothing was changed" in out
