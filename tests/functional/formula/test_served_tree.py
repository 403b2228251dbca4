"""
What a minion can fetch from a master configured from docs/examples/master.d/kubeha.conf:
the formula and the extension modules, nothing else (no pillar, key, cache or .git file).
The lab runs the same check against its own master (tests/lab/test_served_tree.py).
"""

from __future__ import annotations

import pytest

ALLOWED_TOPS = {
    "top.sls",
    "kubeha",
    "_modules",
    "_states",
    "_runners",
    "_utils",
    "_beacons",
    "orch",
    "reactor",
}
# Paths a minion must not get, whatever the spelling.
FORBIDDEN = (
    "pillar/top.sls",
    "pillar/kubeha/example-secrets.sls",
    ".git/config",
    "tests/conftest.py",
    "lab/saltmaster.py",
    "README.md",
    "../pillar/top.sls",
    "_modules/../../pillar/top.sls",
    "_modules/../pillar/top.sls",
    "kubeha/../../pillar/kubeha/example-secrets.sls",
    "/etc/shadow",
)


@pytest.fixture(scope="module")
def minion_cli(salt_master, example_minions):
    return salt_master.salt_cli(timeout=120)


def test_minion_lists_only_the_formula(minion_cli):
    ret = minion_cli.run("cp.list_master", minion_tgt="cp-2")
    assert ret.returncode == 0, ret.stderr
    files = ret.data
    assert files, "the master serves nothing"
    assert {f.split("/", 1)[0] for f in files} <= ALLOWED_TOPS, sorted(
        {f.split("/", 1)[0] for f in files} - ALLOWED_TOPS
    )
    assert "kubeha/map.jinja" in files and "_modules/kubeha_model.py" in files
    assert "orch/bootstrap.sls" in files
    assert not [f for f in files if "__pycache__" in f or f.endswith(".pyc")]
    assert len(files) < 1000, len(files)


@pytest.mark.parametrize("path", FORBIDDEN)
def test_minion_cannot_fetch_outside_the_formula(minion_cli, path):
    ret = minion_cli.run("cp.get_file_str", f"salt://{path}", minion_tgt="cp-2")
    assert ret.returncode in (0, 1), ret.stderr
    assert ret.data in (False, None, ""), f"salt://{path} was served: {str(ret.data)[:200]}"


def test_minion_fetches_formula_files(minion_cli):
    """The check above must be able to fail: a served file comes back."""
    ret = minion_cli.run("cp.get_file_str", "salt://kubeha/map.jinja", minion_tgt="cp-2")
    assert ret.returncode == 0 and "kubeha_model.merge" in ret.data
