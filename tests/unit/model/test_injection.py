"""
Pillar strings are untrusted: every string key of the model that reaches a file, a command
or a script refuses a newline, a quote that breaks out, a command substitution and a `;`,
with the key named. The keys come from the model itself, so a key added later without a
rule fails here.
"""

from __future__ import annotations

import copy

import pytest

HOSTILE = {
    "newline": "{valid}\n",
    "quote-break": "{valid}';touch /tmp/pwned;'",
    "command substitution": "$(touch /tmp/pwned)",
    "semicolon": "{valid};reboot",
}


def _string_leaves(tree, path=()):
    """(path, value) of every string in the model, list items and mapping values too."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from _string_leaves(value, (*path, key))
    elif isinstance(tree, list):
        for index, value in enumerate(tree):
            yield from _string_leaves(value, (*path, index))
    elif isinstance(tree, str):
        yield path, tree


def _set(model: dict, path: tuple, value) -> dict:
    out = copy.deepcopy(model)
    parent = out
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return out


def _key(path: tuple) -> str:
    """How a refusal names the key: list items of strings by their list, the rest fully."""
    if isinstance(path[-1], int):
        path = path[:-1]
    return "kubeha:" + ":".join(str(p) for p in path)


def _every_string_key(example: dict) -> list[tuple]:
    model = copy.deepcopy(example)
    # Keys that are empty (off) by default must refuse hostile input just as well, and a
    # mapping or list that is empty by default gets one entry to attack.
    model["packages"]["versions"] = {"kubeadm": "1.30.0-1.1"}
    model["apiserver"]["cert_sans"] = ["api.example.com"]
    model["apiserver"]["extra_args"] = {"audit-log-maxage": "7"}
    model["etcd"]["extra_args"] = {"quota-backend-bytes": "8589934592"}
    model["kubelet"]["extra_args"] = {"max-pods": "110"}
    model["kubeadm"]["ignore_preflight_errors"] = ["Swap"]
    model["upgrade"]["order"] = ["cp-2", "cp-3", "cp-1"]
    model["node"]["sysctls"]["net.ipv4.ip_forward"] = "1"  # a value may be written as text
    model["haproxy"]["check"]["exclude"] = ["etcd"]
    model["apiserver"]["etcd_servers"] = "all"
    model["chaos"]["power_off"] = ["/usr/bin/ipmitool", "-H", "{node}-bmc", "power", "off"]
    model["chaos"]["power_on"] = ["/usr/bin/ipmitool", "-H", "{node}-bmc", "power", "on"]
    return [(model, path, value) for path, value in _string_leaves(model)]


def test_the_model_has_the_string_keys_we_expect(example):
    keys = {_key(p) for _, p, _ in _every_string_key(example)}
    # A sample, to make sure the walk reaches nested, listed and optional keys.
    for key in (
        "kubeha:cluster:name",
        "kubeha:vip:interface",
        "kubeha:node:kernel_modules",
        "kubeha:node:sysctls:net.ipv4.ip_forward",
        "kubeha:control_plane:0:name",
        "kubeha:vrrp:auth_pass",
        "kubeha:apiserver:oidc:issuer_url",
    ):
        assert key in keys, sorted(keys)
    assert len(keys) > 60


@pytest.mark.parametrize("attack", sorted(HOSTILE))
def test_every_string_key_refuses_injection(salt_funcs, example, attack):
    missed = []
    for model, path, valid in _every_string_key(example):
        hostile = HOSTILE[attack].format(valid=valid)
        problems = salt_funcs["kubeha_model.check"](_set(model, path, hostile))
        key = _key(path)
        if not any(p.startswith(key) for p in problems):
            missed.append(f"{key} = {hostile!r}: {problems}")
    assert not missed, "\n".join(missed)


@pytest.mark.parametrize("attack", sorted(HOSTILE))
def test_mapping_keys_refuse_injection(salt_funcs, example, attack):
    """sysctl names and extra_args flag names reach files and command lines too."""
    for section, mapping in (("node", "sysctls"), ("apiserver", "extra_args")):
        model = copy.deepcopy(example)
        model[section][mapping] = {HOSTILE[attack].format(valid="a-b"): "1"}
        problems = salt_funcs["kubeha_model.check"](model)
        assert any(p.startswith(f"kubeha:{section}:{mapping}") for p in problems), problems


def test_node_name_with_a_trailing_newline_is_refused(salt_funcs, example):
    """`$` matches before a trailing newline: names are checked with a full match."""
    model = copy.deepcopy(example)
    model["control_plane"][1]["name"] = "cp-2\n"
    problems = salt_funcs["kubeha_model.check"](model)
    assert any(p.startswith("kubeha:control_plane:1:name") for p in problems), problems


def test_the_example_model_passes(salt_funcs, example):
    for model, _, _ in _every_string_key(example)[:1]:
        assert salt_funcs["kubeha_model.check"](model) == []
