"""docs/pillar.md documents every key of the model (defaults.yaml), so docs match code."""

from __future__ import annotations

import yaml

from tests.conftest import REPO

# Maps whose keys are the user's own (sysctl names), documented as one entry.
FREE_FORM = {"node:sysctls"}


def leaves(tree: dict, prefix: str = "") -> list[str]:
    out = []
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and path not in FREE_FORM:
            out += leaves(value, f"{path}:")
        else:
            out.append(path)
    return out


def test_every_model_key_is_in_the_pillar_reference():
    defaults = yaml.safe_load((REPO / "salt/kubeha/parameters/defaults.yaml").read_text())
    rows = [line for line in (REPO / "docs/pillar.md").read_text().splitlines() if "|" in line]
    missing = []
    for path in leaves(defaults["values"]):
        parent, _, leaf = path.rpartition(":")
        # A row names the full path, or the parent path with this leaf among `a/b/c` names.
        if not any(
            f"`{path}`" in row
            or (f"`{parent}:" in row and leaf in row.split("`")[1].split(":")[-1].split("/"))
            or (parent and f"`{parent}:" in row and f"{leaf}" in row.split("|")[1])
            for row in rows
        ):
            missing.append(path)
    assert missing == [], f"undocumented in docs/pillar.md: {missing}"
