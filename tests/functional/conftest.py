"""
A real Salt master and minions (pytest-salt-factories) serving this repository the way
production does: file_roots, pillar_roots and ignores from the documented master config
(docs/examples/master.d/kubeha.conf, as the lab's master), custom modules delivered by
`saltutil.sync_all`.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from lab.saltmaster import documented_config
from tests.conftest import REPO

EXAMPLE_NODES = ("cp-1", "cp-2", "cp-3")


@pytest.fixture(scope="package")
def salt_master(salt_factories):
    overrides = {
        **documented_config(REPO),
        "open_mode": True,
        "log_level_logfile": "info",
    }
    factory = salt_factories.salt_master_daemon("kubeha-master", overrides=overrides)
    with factory.started(start_timeout=120):
        yield factory


@pytest.fixture(scope="package")
def example_minions(salt_master):
    """cp-1..cp-3 of the example cluster (grain kubeha_cluster=example), modules synced."""
    factories = [
        salt_master.salt_minion_daemon(name, overrides={"grains": {"kubeha_cluster": "example"}})
        for name in EXAMPLE_NODES
    ]
    # Start and sync the three minions side by side: each start waits on its own handshake.
    with ThreadPoolExecutor(len(factories)) as pool:
        list(pool.map(lambda f: f.start(start_timeout=180), factories))
    try:
        ret = salt_master.salt_cli(timeout=180).run("saltutil.sync_all", minion_tgt="cp-*")
        assert ret.returncode == 0, ret.stderr
        for name in EXAMPLE_NODES:
            assert "modules.kubeha_model" in ret.data[name]["modules"], ret.data
        yield {f.id: f for f in factories}
    finally:
        with ThreadPoolExecutor(len(factories)) as pool:
            list(pool.map(lambda f: f.terminate(), factories))
