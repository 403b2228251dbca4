"""
What the master serves: the formula and the extension directories, never the repository.

The documented master config (docs/examples/master.d/kubeha.conf) is the one mechanism the
lab, the functional tests and production use; it serves <checkout>/salt, whose links reach
the extension directories. Everything under a file root is readable by every minion.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from lab.saltmaster import DOCUMENTED_CONFIG, documented_config
from tests.conftest import REPO

EXTENSIONS = sorted(p.name for p in REPO.iterdir() if p.is_dir() and p.name.startswith("_"))
SERVED_LINKS = {*EXTENSIONS, "orch"}


def test_documented_config_serves_only_the_formula_directory():
    cfg = yaml.safe_load(DOCUMENTED_CONFIG.read_text())
    assert cfg["file_roots"] == {"base": ["/srv/kubeha/salt"]}
    assert cfg["pillar_roots"] == {"base": ["/srv/kubeha/pillar"]}
    relocated = documented_config(Path("/x/checkout"))
    assert relocated["file_roots"] == {"base": ["/x/checkout/salt"]}
    assert relocated["pillar_roots"] == {"base": ["/x/checkout/pillar"]}


def test_every_extension_directory_is_linked_and_nothing_else():
    """A new _beacons/ or _engines/ directory must be linked here to reach the minions;
    any other link could serve something that is not the formula."""
    links = {p.name: os.readlink(p) for p in (REPO / "salt").iterdir() if p.is_symlink()}
    assert set(links) == SERVED_LINKS, links
    assert all(target == f"../{name}" for name, target in links.items()), links


def test_the_served_tree_holds_no_pillar_key_cache_or_git_file():
    served = []
    for root, _dirs, files in os.walk(REPO / "salt", followlinks=True):
        for name in files:
            path = Path(root, name)
            served.append(path.resolve().relative_to(REPO))
    tops = {p.parts[0] for p in served}
    assert tops <= {"salt", *SERVED_LINKS}, tops
    secret_like = (".pem", ".pub", ".key", ".p")
    assert not [p for p in served if p.suffix in secret_like or ".git" in p.parts]
    # What minions see is a few hundred files, not the checkout (tens of thousands).
    assert 50 < len(served) < 1000, len(served)
