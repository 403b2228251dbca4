"""The chaos report (runner kubeha_chaos_report): runs measured by chaos_analysis.measure
from probe and watcher records, grouped into one row per profile and scenario (trials
aggregated), the runbook-vs-kubeha table, and the files written (JSON, Markdown, PNGs)."""

import json

import pytest

from tests.unit.modules.khm_load import load, utils

report = load("_runners", "kubeha_chaos_report")
analysis = load("_utils", "chaos_analysis")
verdicts_util = load("_utils", "chaos_verdicts")
T0 = 1_700_000_000.0
SLO = {"writes_lost": 0, "power-off": {"failed": 0, "stall_s": 1.5, "vip_failover_s": 1}}


@pytest.fixture(autouse=True)
def _utils():
    report.__utils__ = utils("chaos_analysis", "chaos_verdicts", "chaos_plot", "chaos_report_md")


def _run(profile, failed=0, gap=0.6, label="power-off@vip-holder", in_flight=False):
    """A power-off of cp-1 at T0+5 measured from synthetic records; ``in_flight``: the
    request sent 20 ms before it waits out the client's 10 s timeout."""
    requests = []
    for i in range(300):
        due = T0 + i * 0.1
        if T0 + 5.0 <= due < T0 + 5.0 + gap:  # SYN retransmit
            requests.append([i, due, 0.5, 1000.0, 1005.0, 200, "", "", 990.0])
        else:
            requests.append([i, due, 0.5, 20.0, 25.0, 200, "", "", 15.0])
    for i in range(failed):
        requests[60 + i] = [60 + i, T0 + 6.0 + i * 0.1, 0.5, None, 300.0, None, "reset", "", None]
    if in_flight:
        requests[49] = [49, T0 + 4.98, 0.5, None, 10_000.0, None, "timeout", "", 15.0]
    probe = {"t0": T0, "end": T0 + 30, "requests": requests, "keepalive": [], "watch": [],
             "writes": [[1, T0 + 1, 10.0, 200, ""]], "leases": [],
             "readback": {"acked": 1, "lost": [], "unacked_but_applied": []},
             "options": {"path": "/api/v1/pods", "rate": 10, "timeout": 10}}  # fmt: skip
    watch = {
        "cp-1": [{"t": T0, "k": "vip", "v": True},
                 {"t": T0, "k": "hap", "v": {"cp-1": "UP/L7OK", "cp-2": "UP/L7OK"}}],
        "cp-2": [{"t": T0, "k": "vip", "v": False}, {"t": T0 + 5 + gap, "k": "vip", "v": True},
                 {"t": T0, "k": "hap", "v": {"cp-1": "UP/L7OK", "cp-2": "UP/L7OK"}},
                 {"t": T0 + 7, "k": "hap", "v": {"cp-1": "DOWN/L4TOUT", "cp-2": "UP/L7OK"}}],
    }  # fmt: skip
    fault = {"scenario": "power-off", "targets": ["cp-1"], "at": T0 + 5.0,
             "reverted_at": T0 + 25.0, "dead": {"cp-1": T0 + 5.0}}  # fmt: skip
    measured = analysis.measure(probe, watch, fault)
    verdicts = verdicts_util.verdicts(measured, SLO, "power-off")
    return {"run_id": f"lab-power-off-{profile}-{failed}-{gap}", "scenario": "power-off",
            "profile": profile, "label": label, "targets": ["cp-1"], "duration_s": 20.0,
            "fault": fault, "t0": T0, "end": T0 + 30, "macs": {"cp-1": "a", "cp-2": "b"},
            "measured": measured, "verdicts": verdicts, "pass": all(v["pass"] for v in verdicts),
            "recovered_s": 12.0, "probe_options": probe["options"],
            "raw": {"requests": requests}}  # fmt: skip


def test_a_measured_power_off_passes_its_slo():
    run = _run("kubeha")
    assert run["measured"]["vip"]["moved_s"] == 0.6
    assert run["measured"]["haproxy"]["detection_s"] == {"cp-2": {"cp-1": 2.0}}
    assert run["pass"], run["verdicts"]


def test_trials_are_one_row_judged_on_every_trial():
    runs = [_run("kubeha", gap=g) for g in (0.5, 0.6, 0.7, 0.9)] + [_run("kubeha", failed=1)]
    (row,) = report.rows({"runs": runs})
    assert row["trials"] == 5 and row["failed"] == 1 and row["failed_per_trial"] == [0, 0, 0, 0, 1]
    assert row["vip_failover_p95_s"] == max(row["vip_failover_s"])  # p95 of 5 = the worst
    assert not row["pass"] and row["failed_goals"] == ["failed requests <= 0"]


def test_a_request_lost_with_the_powered_off_holder_is_shown_not_judged():
    run = _run("kubeha", in_flight=True)
    assert run["pass"], run["verdicts"]
    (row,) = report.rows({"runs": [run, _run("kubeha")]})
    assert row["failed"] == 1 and row["in_flight_at_power_off"] == 1 and row["pass"]
    assert row["longest_stall_s"] == 10.001 and row["judged_stall_s"] < 1.5
    text = report.markdown({"cluster": "lab", "generated_at": "now", "runs": [run]})
    assert "| 1 / 300 (1 in flight at the power-off) | 1.00 s (10.00 s in flight) |" in text


def test_markdown_puts_runbook_and_kubeha_side_by_side():
    runs = [_run("runbook", failed=7, gap=3.5), _run("kubeha")]
    text = report.markdown({"cluster": "lab", "generated_at": "now", "runs": runs})
    assert "## Runbook vs kubeha (same machine, same run)" in text
    line = next(x for x in text.splitlines() if x.startswith("| power-off@vip-holder |"))
    runbook, kubeha = line.split("|")[2:4]
    assert "7 failed" in runbook and "0 failed" in kubeha
    assert "| runbook | power-off@vip-holder | cp-1 | 1 | 7 / 300 |" in text
    assert "FAIL: " in text and "| PASS |" in text


def test_add_writes_json_markdown_and_pictures(tmp_path):
    pytest.importorskip("matplotlib")
    files = report.add("lab", _run("kubeha"), str(tmp_path), slo=SLO)
    names = sorted(p.split("/")[-1] for p in files)
    assert names == ["chaos-lab.json", "chaos-lab.md", "chaos-lab.png"]
    assert (tmp_path / "chaos-lab-kubeha-power-off-vip-holder.png").stat().st_size > 5000
    report.add("lab", _run("kubeha", gap=0.8), str(tmp_path), slo=SLO)
    saved = json.loads((tmp_path / "chaos-lab.json").read_text())
    assert len(saved["runs"]) == 2 and saved["rows"][0]["trials"] == 2
    md = (tmp_path / "chaos-lab.md").read_text()
    assert "](chaos-lab-kubeha-power-off-vip-holder.png)" in md
    assert report.reset("lab", str(tmp_path))["removed"]
    assert not list(tmp_path.glob("chaos-lab*"))


def test_the_leader_table_tells_spurious_transitions_from_the_faulted_nodes():
    """A soak where the KCM left the faulted node and the scheduler left a healthy one."""
    run = _run("leader 3/2.5/0.5", label="soak: netem@lease-holder 600s")
    run.update(scenario="netem", duration_s=600.0)
    base = {"failover_s": 8.0, "new_holder_seen_s": 8.5, "errors": 0, "timeline": []}
    run["measured"]["leases"] = {
        "kube-controller-manager": {**base, "before": "cp-1", "after": "cp-3",
                                    "transitions": 1, "off_target": 1, "spurious": 0},
        "kube-scheduler": {**base, "before": "cp-2", "after": "cp-3",
                           "transitions": 1, "off_target": 0, "spurious": 1},
    }  # fmt: skip
    (row,) = report.rows({"runs": [run]})
    assert (row["spurious_transitions"], row["transitions"]) == (1, 1)
    text = report.markdown({"cluster": "lab", "generated_at": "now", "runs": [run]})
    assert "1 spurious, 2 in all, in 600 s on cp-1" in text
    assert "kube-scheduler: cp-2 -> cp-3, failover 8.00 s, 1 transition(s), 0 off" in text


def test_a_report_measured_before_the_split_is_split_from_its_timelines(tmp_path):
    run = _run("leader 3/2.5/0.5", label="soak: netem@lease-holder 600s")
    run.update(scenario="netem", duration_s=600.0, targets=["cp-3"])
    at = run["fault"]["at"]
    run["measured"]["leases"] = {  # as measured before the split: no off_target/spurious
        "kube-controller-manager": {"before": "cp-3", "after": "cp-1", "failover_s": 14.0,
                                    "new_holder_seen_s": 14.5, "transitions": 1, "errors": 0,
                                    "timeline": [[at - 5, "cp-3", 26], [at + 20, "cp-1", 27]]},
        "kube-scheduler": {"before": "cp-1", "after": "cp-1", "failover_s": None,
                           "new_holder_seen_s": None, "transitions": 0, "errors": 0,
                           "timeline": [[at - 5, "cp-1", 20]]},
    }  # fmt: skip
    run["verdicts"] = [{"goal": "leader transitions (spurious) <= 0", "measured": "1",
                        "pass": False}]  # fmt: skip
    run["pass"] = False
    (tmp_path / "chaos-lab.json").write_text(json.dumps({"cluster": "lab", "runs": [run]}))
    report.split_transitions("lab", str(tmp_path))
    got = json.loads((tmp_path / "chaos-lab.json").read_text())
    kcm = got["runs"][0]["measured"]["leases"]["kube-controller-manager"]
    assert (kcm["transitions"], kcm["off_target"], kcm["spurious"]) == (1, 1, 0)
    assert got["runs"][0]["verdicts"][0] == {
        "goal": "leader transitions (spurious) <= 0", "measured": "0", "pass": True}  # fmt: skip
    assert got["runs"][0]["pass"] and "split on" in got["notes"][-1]
    report.split_transitions("lab", str(tmp_path))  # once only: no second note
    assert len(json.loads((tmp_path / "chaos-lab.json").read_text())["notes"]) == 1
