"""Import one of the repo's Salt modules by file path, for configure_loader_modules."""

import importlib.util
import inspect
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def load(kind: str, name: str):
    """kind: '_modules', '_states' or '_utils'; registered as khm_<kind>_<name>."""
    mod_name = f"khm{kind}_{name}"
    if mod_name in sys.modules:
        return sys.modules[mod_name]
    spec = importlib.util.spec_from_file_location(mod_name, REPO / kind / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


def utils(*names: str) -> dict:
    """A ``__utils__`` for unit tests: the public functions of _utils/<name>.py, keyed
    ``<name>.<function>`` as Salt's loader keys them."""
    out = {}
    for name in names:
        module = load("_utils", name)
        for attr, value in vars(module).items():
            if not attr.startswith("_") and inspect.isfunction(value):
                out[f"{name}.{attr}"] = value
    return out


def all_utils() -> dict:
    """Every ``_utils`` module's public functions, as Salt's loader offers them to any
    module: a test that mocks only ``cmd.run_all`` keeps working whichever helper the module
    under test runs its commands through."""
    return utils(*sorted(p.stem for p in (REPO / "_utils").glob("*.py")))
