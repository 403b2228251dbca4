"""The kubeha_vip beacon (_beacons/kubeha_vip.py): its configuration check, the hysteresis
of every signal, and that it reports a change once, never a number or an override alone,
and nothing while all stays as it was. Samples are made up; no sleeps, no network."""

from __future__ import annotations

import copy
import os
from unittest.mock import patch

import pytest

from tests.unit.modules.khm_load import load

beacon = load("_beacons", "kubeha_vip")
BASE = [
    {"cluster": "lab"},
    {"node": "cp-1"},
    {"vip": "198.18.0.10"},
    {"peers": {"cp-2": "198.18.0.12", "cp-3": "198.18.0.13"}},
    {"vrid": 51},
    {"advert_int": 0.2},
    {"interval": 1},
    {"disable_during_state_run": False},
]


def config(**changes) -> list:
    out = [item for item in copy.deepcopy(BASE) if next(iter(item)) not in changes]
    return out + [{k: v} for k, v in changes.items() if v is not None]


def test_a_good_configuration_passes():
    assert beacon.validate(config()) == (True, "Valid beacon configuration.")
    assert beacon.validate(config(probes=5, rtt_bad_ms=150, probe_timeout=0.5))[0]


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"cluster": "Lab_1"}, "cluster"),
        ({"node": "cp-1; reboot"}, "node"),
        ({"vip": "198.18.0.300"}, "vip"),
        ({"peers": {"cp-1": "198.18.0.11"}}, "peer 'cp-1'"),
        ({"peers": {"cp-2": "nowhere"}}, "not IPv4"),
        ({"peers": []}, "peers must map"),
        ({"probes": 0}, "probes must be a whole number"),
        ({"probes": 2.5}, "probes must be a whole number"),
        ({"fall": True}, "fall"),
        ({"rtt_good_ms": 120}, "rtt_good_ms must be below rtt_bad_ms"),
        ({"loss_good_pct": 30}, "loss_good_pct must be below"),
        ({"rtt_bad_ms": 250, "probe_timeout": 0.2}, "below probe_timeout"),
        ({"probe_timeout": 0.9}, "room in the interval"),
        ({"colour": "blue"}, "unknown option"),
        ({"state_file": "relative/x.json"}, "absolute"),
        ({"etcd_metrics": "file:///etc/shadow"}, "etcd_metrics"),
        ({"etcd_metrics": "http://127.0.0.1:2381/metrics; reboot"}, "etcd_metrics"),
        ({"vip": None}, "vip is required"),
    ],
)
def test_a_bad_configuration_is_refused_precisely(change, words):
    ok, why = beacon.validate(config(**change))
    assert not ok and words in why, why
    assert beacon.validate({"cluster": "lab"}) == (
        False, "Configuration for kubeha_vip beacon must be a list of dicts.")  # fmt: skip


def test_a_trigger_turns_after_fall_and_rise_and_neutral_breaks_the_runs():
    t: dict = {}
    assert beacon.track(t, "unknown", 2, 3) is None
    assert beacon.track(t, "good", 2, 3) == "good"  # the first definite sample sets it
    assert beacon.track(t, "bad", 2, 3) == "good"
    assert beacon.track(t, "neutral", 2, 3) == "good"
    assert beacon.track(t, "bad", 2, 3) == "good"
    assert beacon.track(t, "bad", 2, 3) == "bad"
    for _ in range(2):
        assert beacon.track(t, "good", 2, 3) == "bad"
    assert beacon.track(t, "neutral", 2, 3) == "bad"
    for _ in range(2):
        assert beacon.track(t, "good", 2, 3) == "bad"
    assert beacon.track(t, "good", 2, 3) == "good"


CFG = beacon._config(config())


def sample(rtts: list[float], sent: int = 3) -> dict:
    return {"sent": sent, "answered": len(rtts), "rtt_ms": rtts}


@pytest.mark.parametrize(
    ("history", "kind"),
    [
        ([sample([0.3, 0.4, 0.5])], "good"),
        ([sample([201.0, 199.0, 230.0])], "bad"),  # C: 200 ms +- 20 ms
        ([sample([])], "bad"),  # nothing answered
        ([sample([45.0, 61.0, 58.0])], "neutral"),  # the soak's 20 ms +- 10 ms at both ends
        ([sample([0.3, 0.3])] * 5 + [sample([0.3, 0.3, 0.3])], "bad"),  # 5 of 18 lost: 28 %
        ([sample([0.3, 0.3, 0.3])] * 9 + [sample([0.3, 0.3])], "good"),  # 1 of 30 lost
        ([sample([], sent=0)], "unknown"),
    ],
)
def test_path_samples_are_classified_by_rtt_and_windowed_loss(history, kind):
    assert beacon.path_sample(history, CFG)[0] == kind


def raw(*, rtt=0.4, holds=True, ka="MASTER", api=True, vip=True, up=3, heard=(), overrides=None):
    peers = {p: sample([rtt] * 3) for p in ("cp-2", "cp-3")}
    return {"holds_vip": holds, "keepalived": ka, "overrides": overrides or {"priority": 0},
            "peers": peers, "apiserver": {"ok": api, "code": 200 if api else 500, "ms": 9.0},
            "vip": {"ok": vip, "code": 200, "ms": 31.0}, "haproxy": {"up": up, "total": 3},
            "vrrp": {h: {"age_s": 0.1, "priority": 140} for h in heard}}  # fmt: skip


def run(st: dict, sample_raw: dict, now: float = 1000.0) -> list:
    return beacon.report(st, beacon.assess(st, sample_raw, CFG), CFG, now)


def test_first_report_once_then_nothing_while_all_stays_the_same():
    st = {"boot": "1-1"}
    first = run(st, raw())
    assert [e["tag"] for e in first] == ["first"]
    assert first[0]["view"]["peers"]["cp-2"] == {"state": "good", "rtt_ms": 0.4, "loss_pct": 0.0,
                                                  "answered": 3, "sent": 3}  # fmt: skip
    for rtt in (0.3, 12.0, 40.0, 0.5, 49.0):  # numbers move, states do not
        assert run(st, raw(rtt=rtt)) == []
    # The runner's own overrides on this node never make an event (no feedback loop).
    assert run(st, raw(overrides={"priority": 253, "release": 0})) == []


def test_the_first_report_waits_for_the_background_results_a_few_samples():
    st = {"boot": "1-1"}
    early = raw()
    del early["apiserver"], early["vip"], early["haproxy"]
    assert run(st, early) == [] and run(st, early) == []
    assert [e["tag"] for e in run(st, raw())] == ["first"]
    st2 = {"boot": "1-1"}
    for _ in range(int(CFG["first_after"]) - 1):
        assert run(st2, early) == []
    assert run(st2, early)[0]["view"]["apiserver"]["state"] is None


def test_a_bad_path_is_reported_after_fall_samples_and_good_after_rise():
    st = {"boot": "1-1"}
    run(st, raw())
    assert run(st, raw(rtt=210.0)) == []
    (event,) = run(st, raw(rtt=210.0))
    assert event["tag"] == "change" and event["changed"] == ["peers"]
    assert event["view"]["peers"]["cp-3"]["state"] == "bad"
    assert event["view"]["peers"]["cp-3"]["rtt_ms"] == 210.0
    assert event["seq"] == 2 and event["cluster"] == "lab" and event["node"] == "cp-1"
    back = [run(st, raw(rtt=0.4)) for _ in range(int(CFG["rise"]))]
    assert back[:-1] == [[]] * (int(CFG["rise"]) - 1) and back[-1][0]["changed"] == ["peers"]


def test_vip_moves_and_vrrp_silence_are_changes():
    st = {"boot": "1-1"}
    run(st, raw(holds=False, ka="BACKUP", heard=["cp-2"]))
    (event,) = run(st, raw(holds=True, ka="MASTER", heard=[]))
    assert event["changed"] == ["holds_vip", "keepalived", "vrrp_from"]
    # An advert older than 3 x advert_int + one interval is no longer heard.
    quiet = raw(holds=True, ka="MASTER")
    quiet["vrrp"] = {"cp-2": {"age_s": 1.7, "priority": 140}}
    assert run(st, quiet) == []
    quiet["vrrp"] = {"cp-2": {"age_s": 1.5, "priority": 140}}
    assert run(st, quiet)[0]["view"]["vrrp_from"] == ["cp-2"]


def test_a_longer_master_down_timer_hears_peers_longer():
    """down_timer_adverts 6 x 0.1 s + 1 s: an advert 1.55 s old is still heard, 1.65 s not."""
    cfg = beacon._config(config(advert_int=0.1, down_timer_adverts=6))
    raw_heard = raw(holds=True, ka="MASTER")
    raw_heard["vrrp"] = {"cp-2": {"age_s": 1.55, "priority": 140}}
    assert beacon.assess({"boot": "1-1"}, raw_heard, cfg)["vrrp_from"] == ["cp-2"]
    raw_heard["vrrp"] = {"cp-2": {"age_s": 1.65, "priority": 140}}
    assert beacon.assess({"boot": "1-1"}, raw_heard, cfg)["vrrp_from"] == []
    assert not beacon.validate(config(down_timer_adverts=2.5))[0]
    assert not beacon.validate(config(down_timer_adverts=101))[0]


def test_haproxy_counts_only_as_none_up_or_some_up():
    st = {"boot": "1-1"}
    run(st, raw(up=3))
    assert run(st, raw(up=2)) == []
    assert run(st, raw(up=0))[0]["changed"] == ["haproxy"]


def test_a_reloaded_beacon_in_the_same_process_does_not_repeat_itself(tmp_path):
    path = tmp_path / "vip-beacon.json"
    st = {"boot": "1-1"}
    (first,) = run(st, raw())
    beacon._save(st, path, first)
    again = {"boot": "1-2"}
    beacon._restore(again, path)
    assert again["sent"] == st["sent"] and again["boot"] == "1-1"
    assert run(again, raw()) == []
    other = {"boot": "2-2"}
    with patch.object(os, "getpid", return_value=os.getpid() + 1):
        beacon._restore(other, path)  # another minion process: a fresh first report
    assert "sent" not in other and run(other, raw())[0]["tag"] == "first"


def test_beacon_never_waits_for_the_background_and_returns_the_event(tmp_path):
    calls = []

    def fake_sample(peers, **kwargs):
        calls.append(kwargs)
        return raw()

    beacon.__context__ = {}
    beacon.__salt__ = {"vip_probe.sample": fake_sample}
    events = beacon.beacon(config(state_file=str(tmp_path / "b.json")))
    assert [e["tag"] for e in events] == ["first"] and calls[0]["wait"] is False
    assert calls[0]["timeout"] == 0.3 and calls[0]["vrid"] == 51
    assert beacon.beacon(config(state_file=str(tmp_path / "b.json"))) == []
    assert (tmp_path / "b.json").exists()


def _scripted(tmp_path, rtts: list[float]):
    """The beacon with vip_probe.sample answering ``rtts`` in turn; the calls made."""
    calls = []

    def fake_sample(peers, **kwargs):
        calls.append(kwargs)
        return raw(rtt=rtts[min(len(calls), len(rtts)) - 1])

    beacon.__context__ = {}
    beacon.__salt__ = {"vip_probe.sample": fake_sample}
    return calls, lambda: beacon.beacon(config(state_file=str(tmp_path / "b.json")))


def test_a_path_gone_bad_is_confirmed_in_the_same_interval(tmp_path):
    calls, tick = _scripted(tmp_path, [0.4, 210.0, 210.0, 210.0])
    assert [e["tag"] for e in tick()] == ["first"] and len(calls) == 1
    # One bad sample: the next is taken at once (fall 2), and the verdict goes out now.
    (event,) = tick()
    assert len(calls) == 3 and event["view"]["peers"]["cp-2"]["state"] == "bad"
    assert tick() == [] and len(calls) == 4  # bad and known: one sample per interval again


def test_a_lone_bad_sample_is_confirmed_away_and_nothing_is_sent(tmp_path):
    calls, tick = _scripted(tmp_path, [0.4, 210.0, 0.4, 0.4])
    tick()
    assert tick() == [] and len(calls) == 3
    assert tick() == [] and len(calls) == 4


def test_the_confirmation_stays_within_the_intervals_budget(tmp_path):
    calls, tick = _scripted(tmp_path, [0.4, 210.0, 210.0])
    tick()
    beacon_config = config(state_file=str(tmp_path / "b.json"), probe_timeout=0.8)
    assert beacon.beacon(beacon_config) == [] and len(calls) == 2  # no room: next interval


def test_a_slow_answer_that_does_not_fail_never_flaps_the_state():
    st = {"boot": "1-1"}
    run(st, raw())
    slow = raw()
    for ms in (1900.0, 600.0, 1500.0, 1999.0, 700.0, 1200.0):  # C through the VIP: slow, ok
        slow["vip"] = {"ok": True, "code": 200, "ms": ms}
        assert run(st, slow) == []
    failing = raw(vip=False)
    failing["vip"]["ms"] = 2000.0
    assert run(st, failing) == [] and run(st, failing)[0]["changed"] == ["vip"]


def test_a_restored_beacon_waits_for_its_background_results_before_comparing(tmp_path):
    path = tmp_path / "vip-beacon.json"
    st = {"boot": "1-1"}
    (first,) = run(st, raw())
    beacon._save(st, path, first)
    again = {"boot": "1-2"}
    beacon._restore(again, path)
    early = raw()
    del early["apiserver"], early["vip"], early["haproxy"]
    assert run(again, early) == [] and run(again, raw()) == []


def test_the_report_carries_its_reason_for_the_runner():
    (event,) = run({"boot": "1-1"}, raw())
    assert event["tag"] == event["reason"] == "first"


def test_etcd_leadership_is_reported_only_where_configured_and_kept_between_reads():
    """vip_heal:move_etcd_leader: the beacon reads etcd_server_is_leader every few samples;
    a change of leadership is an event, a sample without a reading keeps the last one."""
    assert beacon.validate(config(etcd_metrics="http://127.0.0.1:2381/metrics"))[0]
    st = {"boot": "1-1"}
    assert "etcd_leader" not in run(st, raw())[0]["view"]  # not configured
    cfg = beacon._config(config(etcd_metrics="http://127.0.0.1:2381/metrics"))
    st = {"boot": "1-1"}

    def go(sample_raw):
        return beacon.report(st, beacon.assess(st, sample_raw, cfg), cfg, 1000.0)

    first = go({**raw(), "etcd": {"leader": True, "error": ""}})
    assert first[0]["view"]["etcd_leader"] is True
    assert go(raw()) == []  # no reading this sample: the last one stands
    (change,) = go({**raw(), "etcd": {"leader": False, "error": ""}})
    assert change["changed"] == ["etcd_leader"] and change["view"]["etcd_leader"] is False


def test_a_new_or_reloaded_beacon_does_not_report_etcd_leadership_it_has_not_read_yet(
    tmp_path,
):
    """The background answers etcd's leadership a sample late: a new beacon reads it once
    at start (a local read), and one reloaded in the same minion process keeps the last
    one reported, so neither reports None and then the answer (two events, measured on the
    lab after a highstate reloaded the beacons)."""
    reads = []

    def fake_sample(peers, **kwargs):
        return raw()  # the etcd read is still running in the background

    beacon.__context__ = {}
    beacon.__salt__ = {
        "vip_probe.sample": fake_sample,
        "vip_probe.etcd_leader": lambda url, timeout: reads.append(url) or {"leader": False},
    }
    cfg = config(state_file=str(tmp_path / "b.json"), etcd_metrics="http://127.0.0.1:2381/m")
    (first,) = beacon.beacon(cfg)
    assert first["tag"] == "first" and first["view"]["etcd_leader"] is False
    assert reads == ["http://127.0.0.1:2381/m"]
    assert beacon.beacon(cfg) == []
    beacon.__context__ = {}  # the beacon reloaded in the same process: restored, not read
    assert beacon.beacon(cfg) == [] and len(reads) == 1
