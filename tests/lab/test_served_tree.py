"""
Issue 9, on the lab: a minion of the lab's master (configured from the documented
docs/examples/master.d/kubeha.conf) sees the formula and nothing else. The lab master's
keys, job cache and pillar live in lab/.state, next to the checkout's pillar/, .git and
.venv: none of them may be fetched.
"""

from __future__ import annotations

import pytest

from lab import saltmaster
from tests.functional.formula.test_served_tree import ALLOWED_TOPS, FORBIDDEN

pytestmark = [pytest.mark.lab, pytest.mark.root]

LAB_STATE_PATHS = (
    "lab/.state/keys/cp-3.pem",
    "lab/.state/master/pki/master.pem",
    "pillar/kubeha/lab.sls",
    ".venv/bin/python",
)


def test_lab_master_serves_what_the_documented_config_says(lab):
    cfg = saltmaster.config()
    assert {k: cfg[k] for k in saltmaster.SERVING_KEYS} == saltmaster.documented_config()


def test_a_minion_lists_only_the_formula(lab):
    files = lab.salt("cp-2", "cp.list_master")["cp-2"]
    assert isinstance(files, list) and files, files
    tops = {f.split("/", 1)[0] for f in files}
    assert tops <= ALLOWED_TOPS, sorted(tops - ALLOWED_TOPS)
    assert "_modules/kubeha_model.py" in files and "orch/bootstrap.sls" in files
    assert len(files) < 1000, len(files)
    print(f"cp-2 sees {len(files)} files from the master")


@pytest.mark.parametrize("path", (*LAB_STATE_PATHS, *FORBIDDEN))
def test_a_minion_cannot_fetch_keys_pillar_or_caches(lab, path):
    got = lab.salt("cp-2", "cp.get_file_str", f"salt://{path}")["cp-2"]
    assert got in (False, None, ""), f"salt://{path} was served: {str(got)[:120]}"
    if path.startswith("lab/.state/keys/"):
        # The file exists on the master's disk: only the file roots keep it away.
        assert (saltmaster.KEYS / path.rsplit("/", 1)[1]).exists()
