"""How the self-healing VIP is wired: the reactor hands a kubeha_vip report to the runner
(and nothing for a malformed one), the lab's master runs the documented tick, the served
tree carries the beacon, and keepalived.conf tracks the files keepalived_track writes."""

from __future__ import annotations

import jinja2
import yaml

from lab import saltmaster
from tests.conftest import REPO
from tests.unit.day2.test_wiring import _render_reactor


def _call(out: dict) -> dict:
    (call,) = out["kubeha-reactor-vip"]["runner.kubeha_vip.react"]
    return {k: v for item in call["args"] for k, v in item.items()}


def test_the_vip_reactor_hands_the_report_to_the_runner():
    view = {"peers": {"cp-1": {"state": "bad", "rtt_ms": 201.5}}}
    data = {"id": "cp-2", "cluster": "lab", "node": "cp-2", "seq": 3, "changed": ["peers"],
            "view": view, "_stamp": "x"}  # fmt: skip
    args = _call(_render_reactor("vip.sls", "salt/beacon/cp-2/kubeha_vip/change", data))
    assert args["cluster"] == "lab" and args["minion"] == "cp-2"
    assert args["event"]["view"]["peers"]["cp-1"]["rtt_ms"] == 201.5
    nested = _render_reactor("vip.sls", "salt/beacon/cp-1/kubeha_vip/first",
                             {"data": {"cluster": "lab", "node": "cp-1"}})  # fmt: skip
    assert _call(nested)["event"] == {"cluster": "lab", "node": "cp-1"}


def test_a_malformed_vip_report_starts_nothing():
    for cluster in ("lab; salt '*' cmd.run reboot", "", None, ["lab"], "Lab"):
        out = _render_reactor("vip.sls", "salt/beacon/cp-1/kubeha_vip/change",
                              {"cluster": cluster, "node": "cp-1"})  # fmt: skip
        assert not out, (cluster, out)


def test_the_lab_master_ticks_the_vip_runner_as_documented():
    documented = yaml.safe_load(saltmaster.DOCUMENTED_CONFIG.read_text())
    tick = documented["schedule"]["kubeha-vip-tick"]
    assert tick == {"function": "kubeha_vip.tick", "seconds": 10, "maxrunning": 1}
    cfg = saltmaster.config()
    assert cfg["schedule"]["kubeha-vip-tick"] == tick
    assert {"salt/beacon/*/kubeha_vip/*": ["salt://reactor/vip.sls"]} in cfg["reactor"]


def test_the_beacon_is_served_and_keepalived_tracks_the_files_the_module_writes():
    assert (REPO / "salt" / "_beacons" / "kubeha_vip.py").is_file()
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    template = (REPO / "salt/kubeha/files/keepalived/keepalived.conf.jinja").read_text()
    kubeha = {
        "vrrp": {"instance": "VI_7", "version": 3, "router_id": 51, "advert_int": 0.1,
                 "down_timer_adverts": 6, "nopreempt": True, "garp_master_refresh": 10,
                 "unicast": False,
                 "check": {"interval": 1, "timeout": 1, "fall": 3, "rise": 2}},
        "derived": {"node": {"name": "cp-1", "ip": "198.18.0.11"}, "priority": 150,
                    "peers": []},
        "vip": {"address": "198.18.0.10", "prefix": 24, "interface": "ens160"},
        "haproxy": {"local_port": 8404},
    }  # fmt: skip
    text = env.from_string(template).render(kubeha=kubeha, salt={})
    assert 'file "/run/kubeha/keepalived/VI_7.priority"\n    weight 1\n' in text
    assert 'file "/run/kubeha/keepalived/VI_7.release"\n    weight 0\n' in text
    block = text[text.index("vrrp_instance VI_7") :]
    assert "track_file {\n        kubeha_priority\n        kubeha_release\n    }" in block
    assert "    advert_int 0.1\n" in block and "    down_timer_adverts 6\n" in block
    # The RFC's 3 is keepalived's default: not written, so keepalived < 2.2.3 reads it.
    kubeha["vrrp"]["down_timer_adverts"] = 3
    assert "down_timer_adverts" not in env.from_string(template).render(kubeha=kubeha, salt={})
    tmpfiles = (REPO / "salt/kubeha/lb/keepalived/heal.sls").read_text()
    assert "d /run/kubeha/keepalived 0755 root root -" in tmpfiles


def test_a_chaos_report_shows_the_beacons_reports_and_the_decisions(tmp_path):
    """kubeha_chaos.run adds kubeha_vip.timeline to the run; the report lists it and the
    run's picture draws it (issue 14, item 5)."""
    from tests.unit.modules.khm_load import utils
    from tests.unit.modules.test_chaos_report import T0, _run, report

    report.__utils__ = utils("chaos_analysis", "chaos_verdicts", "chaos_plot", "chaos_report_md")
    run = _run("kubeha")
    run["healing"] = {
        "events": [{"at": T0 + 6.1, "received": T0 + 6.2, "node": "cp-2", "reason": "change"},
                   {"at": T0 + 6.3, "received": T0 + 6.4, "node": "cp-3", "reason": "change"}],
        "decisions": [{"at": T0 + 6.4, "action": "none", "reason": "one voice"},
                      {"at": T0 + 6.5, "action": "move", "target": "cp-2",
                       "reason": "cp-1 scores 100"}],
    }  # fmt: skip
    files = report.add("lab", run, str(tmp_path))
    text = (tmp_path / "chaos-lab.md").read_text()
    assert "- self-healing VIP: 2 beacon reports {'cp-2': 1, 'cp-3': 1}" in text
    assert "+6.5 s move cp-2 (cp-1 scores 100)" in text and "one voice" not in text
    assert any(f.endswith(".png") for f in files)
