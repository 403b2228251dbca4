"""Every public function of our modules has a docstring with a CLI example (STYLE.md)."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
OURS = sorted(p for p in (REPO / "_modules").glob("*.py") if not p.name.startswith("kubeha_"))


@pytest.mark.parametrize("path", OURS, ids=lambda p: p.stem)
def test_public_functions_have_cli_examples(path):
    tree = ast.parse(path.read_text())
    missing = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
            doc = ast.get_docstring(node) or ""
            if "CLI Example:" not in doc or f"{path.stem}.{node.name}" not in doc:
                missing.append(node.name)
    assert not missing, f"{path.name}: no CLI example in {missing}"
