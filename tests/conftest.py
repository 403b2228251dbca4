"""Shared pytest set-up: tiers and the skip rules for tests that need root."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _root_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, real daemons); CI runs it as root"
    if shutil.which("ip") is None:
        return "needs iproute2 (ip netns); `make test` installs it"
    return None


def pytest_collection_modifyitems(config, items):
    reason = _root_reason()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if "root" in item.keywords or "lab" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def repo() -> Path:
    """The repository root (file_roots are [<repo>/salt, <repo>])."""
    return REPO


@pytest.fixture(scope="session")
def salt_factories_config(tmp_path_factory):
    """Keep pytest-salt-factories' master/minion trees in pytest's temp dir, not in /tmp."""
    return {"root_dir": tmp_path_factory.mktemp("salt-factories")}


def pytest_sessionfinish(session, exitstatus):
    """Salt daemons started by pytest-salt-factories keep forwarding log records while
    pytest closes its streams; without this each one prints a "--- Logging error ---"
    traceback that buries the real summary."""
    import logging

    logging.raiseExceptions = False
