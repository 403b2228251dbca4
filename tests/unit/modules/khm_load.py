"""Import one of the repo's Salt modules by file path, for configure_loader_modules."""

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def load(kind: str, name: str):
    """kind: '_modules' or '_states'; the module is registered as khm_<kind>_<name>."""
    mod_name = f"khm{kind}_{name}"
    if mod_name in sys.modules:
        return sys.modules[mod_name]
    spec = importlib.util.spec_from_file_location(mod_name, REPO / kind / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module
