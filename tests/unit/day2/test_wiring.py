"""How the day-2 pieces are wired: the documented master config and the reactor map agree,
the lab's master runs the documented schedule for its own cluster, the lab's object store
and the lab pillar name the same bucket and credentials, and the reactors start the right
orchestration for a beacon's event (and nothing for a malformed one)."""

from __future__ import annotations

import yaml

from lab import s3server, saltmaster
from tests.conftest import REPO

REACTORS = REPO / "salt" / "reactor" / "reactors.yaml"


def test_documented_reactors_equal_the_reactor_map():
    documented = yaml.safe_load(saltmaster.DOCUMENTED_CONFIG.read_text())["reactor"]
    assert documented == yaml.safe_load(REACTORS.read_text())
    for entry in documented:
        for sls_list in entry.values():
            for sls in sls_list:
                assert (REPO / "salt" / sls.removeprefix("salt://")).is_file(), sls


def test_the_lab_master_runs_the_documented_schedule_for_the_lab():
    cfg = saltmaster.config()
    assert {
        "kubeha-etcd-backup-lab",
        "kubeha-etcd-restore-drill-lab",
        "kubeha-etcd-defrag-lab",
    } <= set(cfg["schedule"])
    backup = cfg["schedule"]["kubeha-etcd-backup-lab"]
    assert backup["function"] == "state.orchestrate" and backup["args"] == ["orch.etcd_backup"]
    assert backup["kwargs"]["pillar"] == {"cluster": "lab", "reason": "schedule"}
    assert backup["cron"] == "7 * * * *" and backup["maxrunning"] == 1
    assert cfg["reactor"] == yaml.safe_load(REACTORS.read_text())


def test_the_lab_object_store_matches_the_lab_pillar():
    pillar = yaml.safe_load((REPO / "pillar/kubeha/day2-lab.sls").read_text())["kubeha"]
    s3 = pillar["backup"]["s3"]
    assert s3["endpoint"] == s3server.ENDPOINT
    assert (s3["bucket"], s3["region"]) == (s3server.BUCKET, s3server.REGION)
    assert (s3["access_key"], s3["secret_key"]) == (s3server.ACCESS_KEY, s3server.SECRET_KEY)


def _render_reactor(name: str, tag: str, data: dict):
    """Render a reactor SLS the way the master does: jinja with tag and data, then YAML."""
    import salt.config
    import salt.loader
    import salt.template

    opts = salt.config.master_config(None)
    opts.update(file_client="local", file_roots={"base": [str(REPO / "salt")]})
    renderers = salt.loader.render(opts, {})
    return salt.template.compile_template(
        str(REPO / "salt" / "reactor" / name),
        renderers,
        opts["renderer"],
        opts["renderer_blacklist"],
        opts["renderer_whitelist"],
        tag=tag,
        data=data,
    )


def test_the_certificate_reactor_orchestrates_the_beacons_cluster():
    data = {"id": "cp-2", "cluster": "lab", "renew_before_days": 30, "_stamp": "x"}
    out = _render_reactor("certs.sls", "salt/beacon/cp-2/kubeha_certs/expiring", data)
    (call,) = out["kubeha-reactor-certs-renew"]["runner.state.orchestrate"]
    args = {k: v for item in call["args"] for k, v in item.items()}
    assert args["mods"] == "orch.certs_renew"
    assert args["pillar"] == {"cluster": "lab", "reason": "beacon", "trigger": "cp-2"}
    # Older Salt: the beacon's fields under data.data.
    nested = _render_reactor("certs.sls", "t", {"id": "cp-1", "data": {"cluster": "lab"}})
    assert "kubeha-reactor-certs-renew" in nested


def test_a_malformed_event_starts_nothing():
    for cluster in ("lab; salt '*' cmd.run reboot", "", None, ["lab"], "Lab"):
        out = _render_reactor("etcd_defrag.sls", "t", {"id": "cp-1", "cluster": cluster})
        assert not out, (cluster, out)
    ok = _render_reactor("etcd_defrag.sls", "t", {"id": "cp-1", "cluster": "lab"})
    (call,) = ok["kubeha-reactor-etcd-defrag"]["runner.state.orchestrate"]
    assert {k: v for i in call["args"] for k, v in i.items()}["mods"] == "orch.etcd_defrag"
