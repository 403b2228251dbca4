"""The kubeha_monitoring runner renders the monitoring host's files with minion modules it
loads on the master (``_render_functions``). kubeha_monitoring builds its rules and
dashboard in ``_utils`` (kubeha_prom_rules, kubeha_red_dashboard), so that loader must carry
the utils: without them ``__utils__`` is an empty dict and ``setup`` fails with a KeyError
that no test loading the files by hand would see."""

from __future__ import annotations

import salt.config

from tests.conftest import REPO
from tests.unit.modules.khm_load import load, utils

runner = load("_runners", "kubeha_monitoring")


def test_the_runner_renders_the_rules_and_dashboard_through_salts_loader(tmp_path, monkeypatch):
    opts = salt.config.master_config(None)
    opts.update(
        cachedir=str(tmp_path / "cache"),
        extension_modules=str(tmp_path / "extmods"),  # never what another run synced
        module_dirs=[str(REPO / "_modules")],
        utils_dirs=[str(REPO / "_utils")],
    )
    monkeypatch.setattr(runner, "__opts__", opts, raising=False)
    monkeypatch.setattr(runner, "__context__", {}, raising=False)
    funcs = runner._render_functions()
    by_hand = load("_modules", "kubeha_monitoring")
    builders = utils("kubeha_prom_rules", "kubeha_red_dashboard")
    monkeypatch.setattr(by_hand, "__utils__", builders, raising=False)
    assert funcs["kubeha_monitoring.render_rules"]() == by_hand.render_rules()
    assert funcs["kubeha_monitoring.render_dashboard"]() == by_hand.render_dashboard()
