"""
The VRRP secret is rendered into keepalived.conf on the node, and nowhere else: not in the
state data `state.show_sls` prints (template context), not in `_mapdata`, not in what the
master's runner returns.
"""

from __future__ import annotations

import json

import pytest

SECRET = "ChangeMe"  # pillar/kubeha/example-secrets.sls


@pytest.fixture(scope="module")
def cli(salt_master, example_minions):
    return salt_master.salt_cli(timeout=180)


@pytest.mark.parametrize("sls", ["kubeha.lb.keepalived.config", "kubeha", "kubeha.preview"])
def test_show_sls_carries_no_secret(cli, sls):
    ret = cli.run("state.show_sls", sls, minion_tgt="cp-1")
    assert ret.returncode == 0, ret.stdout
    text = json.dumps(ret.data)
    assert "kubeha-lb-keepalived-file-managed" in text or sls != "kubeha.lb.keepalived.config"
    assert SECRET not in text
    assert "<redacted>" in text  # the context is there, redacted


def test_mapdata_shows_the_secret_redacted(cli):
    ret = cli.run("state.apply", "kubeha._mapdata", minion_tgt="cp-1")
    assert ret.returncode == 0, ret.stdout
    text = json.dumps(ret.data)
    assert SECRET not in text and "auth_pass: <redacted>" in text
