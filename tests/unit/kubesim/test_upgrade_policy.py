"""kubeadm upgrade version policy (phases/upgrade/policy.go)."""

from __future__ import annotations

import pytest
from kubesim.kubeadm.errors import KubeadmError
from kubesim.kubeadm.upgrade_checks import enforce_policy
from kubesim.versions import Version

V = Version.parse


def test_target_newer_than_kubeadm_needs_force():
    with pytest.raises(KubeadmError) as err:
        enforce_policy(V("v1.30.0"), V("v1.31.0"), V("v1.30.0"), force=False)
    assert 'is higher than the kubeadm version "v1.30.0"' in err.value.message
    assert "--force" in err.value.message


def test_skipping_a_minor_is_fatal_even_with_force():
    with pytest.raises(KubeadmError) as err:
        enforce_policy(V("v1.29.15"), V("v1.31.0"), V("v1.31.0"), force=True)
    assert "kubeadm can upgrade only 1 minor version at a time" in err.value.message


def test_one_minor_with_matching_kubeadm_passes(capsys):
    # no exception, and no "skipping since the --force flag is set" notice either
    assert enforce_policy(V("v1.30.0"), V("v1.31.0"), V("v1.31.0"), force=False) is None
    assert capsys.readouterr().out == ""
    # the same target from a kubeadm one minor behind is the skippable error: the pass above
    # is not unconditional
    with pytest.raises(KubeadmError):
        enforce_policy(V("v1.30.0"), V("v1.31.0"), V("v1.30.0"), force=False)
    enforce_policy(V("v1.30.0"), V("v1.31.0"), V("v1.30.0"), force=True)
    assert "Found 1 potential version compatibility errors" in capsys.readouterr().out
