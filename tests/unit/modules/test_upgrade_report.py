"""The upgrade report's summary, Markdown and Gantt picture from a recorded run."""

from __future__ import annotations

from tests.unit.modules.khm_load import load

report = load("_utils", "kubeha_upgrade_report")


def _pass(node, version, t0, durations, *, ok=True, rolled_back=None):
    steps, t = [], t0
    for name, seconds in durations:
        steps.append({"node": node, "step": name, "started": t, "ended": t + seconds, "ok": True})
        t += seconds
    if not ok:
        steps[-1]["ok"] = False
    return {"node": node, "version": version, "ok": ok, "rolled_back_to": rolled_back,
            "steps": steps, "seconds": t - t0}  # fmt: skip


RUN = {
    "cluster": "lab",
    "target": "1.31.0",
    "started": 1000.0,
    "passes": [
        _pass("cp-2", "1.31.0", 1000.0, [("lb-drain", 2), ("kubeadm-upgrade", 30), ("gate", 3)]),
        _pass(
            "cp-3",
            "1.31.0",
            1040.0,
            [("lb-drain", 2), ("kubeadm-upgrade", 20), ("static-pods", 10)],
            ok=False,
            rolled_back="v1.30.0",
        ),
    ],  # fmt: skip
}


def test_summary_splits_kubeadm_from_kubeha_time():
    summ = report.summary(RUN)
    assert summ["nodes"] == 2 and summ["failed"] == ["cp-3"]
    assert summ["rolled_back"] == {"cp-3": "v1.30.0"}
    assert summ["total_seconds"] == 72.0  # 1000 -> 1072
    assert summ["kubeadm_seconds"] == 60.0 and summ["kubeha_seconds"] == 7.0
    assert abs(summ["kubeadm_share"] - 60 / 67) < 1e-9
    assert summ["per_step_seconds"]["lb-drain"] == 4.0


def test_markdown_names_every_pass_and_the_rollback():
    data = dict(RUN, summary=report.summary(RUN), node_versions={"cp-2": "v1.31.0"})
    text = report.markdown(data)
    assert "| cp-3 | 1.31.0 | failed, rolled back to v1.30.0 |" in text
    assert "60 s in kubeadm (90%)" in text and "| cp-2 | v1.31.0 |" in text


def test_gantt_is_drawn(tmp_path):
    path = tmp_path / "upgrade.png"
    assert report.gantt(RUN, str(path)) is True
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
    assert report.gantt({"passes": []}, str(tmp_path / "none.png")) is False


def test_the_probe_is_in_the_markdown_and_below_the_gantt(tmp_path):
    probe = {"count": 3, "failed": 1, "failed_by_cause": {"timeout": 1}, "ttfb_p50_ms": 12.0,
             "ttfb_p95_ms": 30.0, "ttfb_p99_ms": 30.0, "ttfb_max_ms": 30.0,
             "longest_stall_s": 10.0, "t0": 990.0, "writes": {"acked": 40, "lost": []},
             "timeline": [[10.0, 12.0, ""], [10.2, 30.0, ""], [10.4, None, "timeout"]]}  # fmt: skip
    data = dict(RUN, probe=probe, summary=report.summary(RUN))
    text = report.markdown(data)
    assert "| 3 | 1 | 12.0 | 30.0 | 30.0 | 30.0 | 10.0 | 40 | [] |" in text
    assert "Failures by cause: {'timeout': 1}" in text
    alone, both = tmp_path / "alone.png", tmp_path / "both.png"
    assert report.gantt(RUN, str(alone)) and report.gantt(data, str(both))
    assert both.stat().st_size > alone.stat().st_size  # a second panel was drawn
