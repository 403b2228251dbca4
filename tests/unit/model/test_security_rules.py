"""The model's security keys: refused before anything renders, with the key and the fix;
the admission objects follow the model (actions, failure policy, exempt namespaces, version)."""

from __future__ import annotations

import copy

import pytest

REFUSED = {
    "Deny with Warn": (
        {"validation_actions": ["Deny", "Warn"]},
        ["kubeha:security:admission:validation_actions", "Deny and Warn together"],
    ),
    "unknown action": (
        {"validation_actions": ["Block"]},
        ["kubeha:security:admission:validation_actions", "['Block'] unknown"],
    ),
    "no action": ({"validation_actions": []}, ["at least one action"]),
    "failure policy": (
        {"failure_policy": "Abort"},
        ["kubeha:security:admission:failure_policy", "Fail, Ignore"],
    ),
    "exempt namespace not a label": (
        {"exempt_namespaces": ["Kube_System"]},
        ["kubeha:security:admission:exempt_namespaces", "DNS label"],
    ),
}


def _with(example: dict, **admission) -> dict:
    model = copy.deepcopy(example)
    model["security"]["admission"].update(admission)
    return model


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_bad_security_keys_are_refused(salt_funcs, example, case):
    change, words = REFUSED[case]
    problems = salt_funcs["kubeha_model.check"](_with(example, **change))
    assert any(all(w in p for w in words) for p in problems), problems


def test_example_and_warn_audit_pass(salt_funcs, example):
    assert salt_funcs["kubeha_model.check"](example) == []
    watch = _with(example, validation_actions=["Warn", "Audit"], failure_policy="Ignore")
    assert salt_funcs["kubeha_model.check"](watch) == []


def test_admission_objects_follow_the_model(salt_funcs, example):
    build = salt_funcs["kubeha_security.admission_objects"]
    policy, binding = build(_with(example, validation_actions=["Audit"], failure_policy="Ignore"))
    assert policy["spec"]["failurePolicy"] == "Ignore"
    assert binding["spec"]["validationActions"] == ["Audit"]
    selector = binding["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"]
    assert selector == [
        {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system"]}
    ]
    (_, unscoped) = build(_with(example, exempt_namespaces=[]))
    assert "matchResources" not in unscoped["spec"]
    assert build(_with(example, enabled=False)) == []
    older = copy.deepcopy(example)
    older["kubernetes"]["version"] = "1.29.15"
    assert build(older) == []
    assert not salt_funcs["kubeha_security.admission_served"](older)
