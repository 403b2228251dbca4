"""Every call a day-2 runner makes to another of our runners through ``__salt__`` binds to
that runner function's signature: the keywords exist and the positional arguments fit. A
renamed keyword (``lb_out(..., drain_timeout=)`` once, for ``wait=``) otherwise shows only
on the lab, as "Passed invalid arguments" in the middle of a rolling operation."""

from __future__ import annotations

import ast
import inspect

import pytest

from tests.conftest import REPO

CALLERS = ("kubeha_backup", "kubeha_drill", "kubeha_restore", "kubeha_defrag", "kubeha_certs")


def _signatures(module: str) -> dict[str, inspect.Signature]:
    """The public functions of _runners/<module>.py as signatures, read without importing."""
    tree = ast.parse((REPO / "_runners" / f"{module}.py").read_text())
    out = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
            args = node.args
            # Only the shape matters: defaults and annotations may name module constants.
            args.defaults = [ast.Constant(None) for _ in args.defaults]
            args.kw_defaults = [d and ast.Constant(None) for d in args.kw_defaults]
            for a in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
                if a is not None:
                    a.annotation = None
            namespace: dict = {}
            exec(f"def {node.name}({ast.unparse(args)}): pass", namespace)  # noqa: S102 - our own source
            out[node.name] = inspect.signature(namespace[node.name])
    return out


def _calls(module: str):
    """(target "mod.fun", positional count, keyword names, line) of each
    ``__salt__["mod.fun"](...)`` in _runners/<module>.py."""
    tree = ast.parse((REPO / "_runners" / f"{module}.py").read_text())
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Subscript)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "__salt__"
            and isinstance(node.func.slice, ast.Constant)
        ):
            if any(isinstance(a, ast.Starred) for a in node.args) or any(
                k.arg is None for k in node.keywords
            ):
                continue  # *args / **kwargs: not checkable here
            yield node.func.slice.value, len(node.args), [k.arg for k in node.keywords], node.lineno


def _ours(target: str) -> bool:
    return (REPO / "_runners" / f"{target.split('.', maxsplit=1)[0]}.py").is_file()


CASES = [(caller, *call) for caller in CALLERS for call in _calls(caller) if _ours(call[0])]


def test_there_are_calls_to_check():
    targets = {c[1] for c in CASES}
    assert {"kubeha_node.lb_out", "kubeha_gate.final", "kubeha_backup.newest"} <= targets


@pytest.mark.parametrize(("caller", "target", "npos", "keywords", "line"), CASES)
def test_the_call_binds(caller, target, npos, keywords, line):
    module, fun = target.split(".")
    signature = _signatures(module).get(fun)
    assert signature is not None, f"_runners/{caller}.py:{line}: {target} does not exist"
    try:
        signature.bind(*range(npos), **dict.fromkeys(keywords))
    except TypeError as err:
        raise AssertionError(f"_runners/{caller}.py:{line}: {target}{signature}: {err}") from err
