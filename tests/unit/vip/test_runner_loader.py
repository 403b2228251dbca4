"""The kubeha_vip runner through Salt's own loader (as the master runs it): its actions
live in a utils module and reach the minions through another, and Salt keeps each loader's
globals in context variables, so a utils function that called back into the runner's
globals would fail there (LoaderError: no packed value for __utils__) and nowhere in a test
that loads the files by hand. kubeha_minions is replaced by a stand-in cluster in a file."""

from __future__ import annotations

import json
import time

import salt.config
import salt.loader

from tests.conftest import REPO
from tests.unit.vip.test_decide import NODES, impaired

FAKE = REPO / "tests" / "unit" / "vip" / "fake_utils"


def test_a_move_through_salts_loader(tmp_path, monkeypatch):
    cluster = {"calls": [], "nodes": {n: {"priority": 0, "release": 0, "holds": n == "cp-1"}
                                      for n in NODES}}  # fmt: skip
    state_file = tmp_path / "cluster.json"
    state_file.write_text(json.dumps(cluster))
    monkeypatch.setenv("KUBEHA_FAKE_CLUSTER", str(state_file))
    opts = salt.config.master_config(None)
    opts.update(cachedir=str(tmp_path / "cache"), runner_dirs=[str(REPO / "_runners")],
                utils_dirs=[str(FAKE), str(REPO / "_utils")])  # fmt: skip
    folder = tmp_path / "cache" / "kubeha" / "vip" / "lab"
    folder.mkdir(parents=True)
    model = {"at": time.time(), "nodes": NODES, "vip": "198.18.0.10", "mode": "act",
             "provider": "keepalived-haproxy", "instance": "VI_1", "advert_int": 0.2,
             "margin": 50, "cooldown": 60, "recover_after": 30}  # fmt: skip
    (folder / "model.json").write_text(json.dumps(model))
    runners = salt.loader.runner(opts, utils=salt.loader.utils(opts))
    views = impaired("cp-1")
    out = None
    for seq, node in enumerate(NODES, 1):
        event = {"cluster": "lab", "node": node, "seq": seq, "boot": "b", "at": time.time(),
                 "reason": "change", "changed": ["peers"], "view": views[node]}  # fmt: skip
        out = runners["kubeha_vip.react"]("lab", minion=node, event=event)
    moved = [d for d in out["decisions"] if d["action"] == "move"] or [
        h for h in runners["kubeha_vip.history"]("lab") if h["action"] == "move"
    ]
    assert moved and moved[0]["moved"] and moved[0]["target"] == "cp-2", out
    after = json.loads(state_file.read_text())
    assert [n for n in NODES if after["nodes"][n]["holds"]] == ["cp-2"]
    # Priorities with the bystander held in FAULT (one job: the steps of
    # kubeha_minions.ask_steps), the holder's release; no handover nor takeover: the cached
    # settings predate handover_s and vrid.
    assert [c[:2] for c in after["calls"]][:2] == [
        ["keepalived_track.apply", ["cp-2", "cp-3"]],
        ["keepalived_track.write", ["cp-1"]],
    ]
    assert runners["kubeha_vip.status"]("lab")["override"]["kind"] == "move"
