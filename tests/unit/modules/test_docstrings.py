"""Every public function of our Salt modules has a docstring with an example (STYLE.md):
execution modules and runners a CLI example naming ``<module>.<function>``, states an SLS
example using ``<state>.<function>``."""

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
CLI = sorted([*(REPO / "_modules").glob("*.py"), *(REPO / "_runners").glob("*.py")])
STATES = sorted((REPO / "_states").glob("*.py"))


def _public(path: Path):
    tree = ast.parse(path.read_text())
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
            yield node.name, ast.get_docstring(node) or ""


def _virtualname(path: Path) -> str:
    found = re.search(r'^__virtualname__ = "([^"]+)"', path.read_text(), re.M)
    return found.group(1) if found else path.stem


@pytest.mark.parametrize("path", CLI, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_public_functions_have_cli_examples(path):
    name = _virtualname(path)
    missing = [
        fn for fn, doc in _public(path) if "CLI Example:" not in doc or f"{name}.{fn}" not in doc
    ]
    assert not missing, f"{path.name}: no CLI example in {missing}"


@pytest.mark.parametrize("path", STATES, ids=lambda p: p.stem)
def test_states_have_sls_examples(path):
    name = _virtualname(path)
    missing = [
        fn
        for fn, doc in _public(path)
        if ".. code-block:: yaml" not in doc or f"{name}.{fn}" not in doc
    ]
    assert not missing, f"{path.name}: no SLS example in {missing}"
