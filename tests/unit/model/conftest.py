"""Load the kubeha model modules through Salt's own loader, as a minion would."""

from __future__ import annotations

import copy

import pytest
import salt.config
import salt.loader
import yaml

from tests.conftest import REPO


@pytest.fixture(scope="session")
def salt_funcs(tmp_path_factory):
    opts = salt.config.minion_config(None)
    cache = tmp_path_factory.mktemp("cache")
    opts.update(
        {
            "file_client": "local",
            "cachedir": str(cache),
            # Our own extension dir: never pick up modules another run synced to the
            # machine's default /var/cache/salt/minion/extmods.
            "extension_modules": str(cache / "extmods"),
            "module_dirs": [str(REPO / "_modules")],
            "utils_dirs": [str(REPO / "_utils")],
            "grains": {},
        }
    )
    return salt.loader.minion_mods(opts, utils=salt.loader.utils(opts))


def _merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@pytest.fixture(scope="session")
def defaults() -> dict:
    return yaml.safe_load((REPO / "salt/kubeha/parameters/defaults.yaml").read_text())["values"]


def pillar(name: str) -> dict:
    """The `kubeha` pillar of a shipped cluster (secrets merged in)."""
    out: dict = {}
    for path in sorted((REPO / "pillar/kubeha").glob(f"{name}*.sls")):
        out = _merge(out, yaml.safe_load(path.read_text())["kubeha"])
    return out


@pytest.fixture
def example(defaults) -> dict:
    """The runbook's cluster as map.jinja merges it: defaults < pillar."""
    return _merge(defaults, pillar("example"))


@pytest.fixture
def model_with():
    """model_with(base, {...}) -> a deep-merged copy, for one-key variations."""
    return _merge
