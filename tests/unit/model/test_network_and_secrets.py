"""The VIP against the nodes' real networks, and secrets that never leave the model."""

from __future__ import annotations

import copy
import json

import pytest


def _interfaces(ip: str, netmask: str, name: str = "ens160") -> dict:
    """network.interfaces as Salt returns it on a node (salt.utils.network.interfaces)."""
    return {
        "lo": {"up": True, "inet": [{"address": "127.0.0.1", "netmask": "255.0.0.0"}]},
        name: {
            "up": True,
            "hwaddr": "02:6b:68:61:00:0b",
            "inet": [{"address": ip, "netmask": netmask, "broadcast": "", "label": name}],
        },
    }


def test_vip_outside_the_real_subnet_is_refused_although_the_pillar_prefix_covers_it(
    salt_funcs, example
):
    """192.168.2.10/16 contains 192.168.1.11 on paper; cp-1's ens160 is a /24."""
    model = copy.deepcopy(example)
    model["vip"].update(address="192.168.2.10", prefix=16)
    assert salt_funcs["kubeha_model.check"](model) == []  # the pillar alone looks fine
    problems = salt_funcs["kubeha_model.network_problems"](
        model, "cp-1", _interfaces("192.168.1.11", "255.255.255.0")
    )
    assert any(
        p.startswith("kubeha:vip:address: 192.168.2.10 is outside cp-1's network 192.168.1.0/24")
        for p in problems
    ), problems
    assert any(p.startswith("kubeha:vip:prefix: 16") and "use kubeha:vip:prefix: 24" in p.lower()
               for p in problems), problems  # fmt: skip
    with pytest.raises(Exception, match="outside cp-1's network"):
        salt_funcs["kubeha_model.derive"](
            model, "cp-1", None, _interfaces("192.168.1.11", "255.255.255.0")
        )


def test_vip_on_the_wrong_interface_is_refused(salt_funcs, example):
    problems = salt_funcs["kubeha_model.network_problems"](
        example, "cp-2", _interfaces("192.168.1.12", "255.255.255.0", name="eth0")
    )
    assert problems == [
        "kubeha:vip:interface: ens160 does not carry cp-2's address 192.168.1.12 (it is on "
        "eth0): keepalived would hold the VIP on another link. Set kubeha:vip:interface: eth0."
    ]


def test_matching_network_passes_and_another_host_is_not_judged(salt_funcs, example):
    good = _interfaces("192.168.1.11", "255.255.255.0")
    assert salt_funcs["kubeha_model.network_problems"](example, "cp-1", good) == []
    derived = salt_funcs["kubeha_model.derive"](example, "cp-1", None, good)
    assert derived["is_init_node"]
    # Rendered on a machine that is not cp-1 (its address is not here): nothing to judge.
    elsewhere = _interfaces("10.0.0.5", "255.255.255.0")
    assert salt_funcs["kubeha_model.network_problems"](example, "cp-1", elsewhere) == []


def test_redacted_model_hides_secrets_and_keeps_the_original(salt_funcs, example):
    shown = salt_funcs["kubeha_model.redact"](example)
    assert shown["vrrp"]["auth_pass"] == "<redacted>"
    assert example["vrrp"]["auth_pass"] == "ChangeMe"
    assert "ChangeMe" not in json.dumps(shown)
    unset = copy.deepcopy(example)
    unset["vrrp"]["auth_pass"] = ""
    assert salt_funcs["kubeha_model.redact"](unset)["vrrp"]["auth_pass"] == ""


def test_merge_layers_in_order_without_sharing_dicts(salt_funcs, defaults):
    pillar = {"vip": {"address": "192.168.1.10"}, "vrrp": {"auth_pass": "s3cret"}}
    override = {"vip": {"lb_port": 9443}}
    merged = salt_funcs["kubeha_model.merge"](defaults, {}, pillar, override)
    assert merged["vip"]["address"] == "192.168.1.10" and merged["vip"]["lb_port"] == 9443
    assert merged["vip"]["interface"] == defaults["vip"]["interface"]
    merged["vip"]["address"] = "changed"
    assert pillar["vip"]["address"] == "192.168.1.10"
    # Lists replace (merge_lists False): a pillar's kernel_modules is the whole list.
    only = salt_funcs["kubeha_model.merge"](defaults, {}, {"node": {"kernel_modules": ["x"]}})
    assert only["node"]["kernel_modules"] == ["x"]
