"""The steady-state report's pure parts (runner kubeha_report): the verdicts against the
runbook's goals, and the Markdown a person reads. Input: a report the lab wrote
(samples/steady_state_report.json, from `make demo`), and variants of it that fail."""

import copy
import json
from pathlib import Path

import pytest

from tests.unit.modules.khm_load import load

report_runner = load("_runners", "kubeha_report")
apiserver = load("_modules", "apiserver")
RECORDED = json.loads((Path(__file__).parent / "samples" / "steady_state_report.json").read_text())


def _verdict(probe: dict, problems: list[str] | None = None) -> dict[str, dict]:
    got = report_runner.verdicts(probe, problems or [])
    return {v["goal"].split(" (")[0].split(" through")[0]: v for v in got}


@pytest.mark.parametrize(
    ("p95", "passes", "measured"),
    [
        (26.233, True, "26.233 ms"),
        (499.999, True, "499.999 ms"),
        (500.0, False, "500.0 ms"),  # the runbook's goal is "under 500 ms"
        (1234.5, False, "1234.5 ms"),
        (None, False, "no successful request"),  # every request failed: no p95 at all
    ],
)
def test_ttfb_goal_is_p95_under_500_ms(p95, passes, measured):
    probe = {"count": 300, "errors": 0}
    if p95 is not None:
        probe["ttfb_p95_ms"] = p95
    ttfb = _verdict(probe)["TTFB p95"]
    assert ttfb["goal"] == "TTFB p95 through the VIP < 500 ms (runbook)"
    assert (ttfb["pass"], ttfb["measured"]) == (passes, measured)


def test_one_failed_request_fails_the_run():
    assert _verdict({"ttfb_p95_ms": 20, "errors": 0, "count": 300})["no failed request"] == {
        "goal": "no failed request",
        "measured": "0 of 300",
        "pass": True,
    }
    failed = _verdict({"ttfb_p95_ms": 20, "errors": 1, "count": 300})["no failed request"]
    assert failed["measured"] == "1 of 300" and failed["pass"] is False
    # a probe that returned no counts at all is not a run without errors
    assert _verdict({"ttfb_p95_ms": 20})["no failed request"]["pass"] is False


def test_cluster_problems_are_listed_and_fail():
    ok = _verdict({"errors": 0}, [])["cluster healthy"]
    assert ok["measured"] == "healthy" and ok["pass"] is True
    problems = ["etcd: https://198.18.0.12:2379 unhealthy", "VIP held by 2 nodes: cp-1, cp-3"]
    sick = _verdict({"errors": 0}, problems)["cluster healthy"]
    assert sick["measured"] == "; ".join(problems) and sick["pass"] is False


def test_the_recorded_verdicts_are_what_verdicts_says():
    assert report_runner.verdicts(RECORDED["probe"], RECORDED["problems"]) == RECORDED["verdicts"]


def test_the_recorded_percentiles_are_nearest_rank_of_its_own_timeline():
    """p95/p99/max in the lab's report are observed requests of its timeline (nearest rank)."""
    probe = RECORDED["probe"]
    samples = [ms for _, ms, err in probe["timeline"] if ms is not None and not err]
    assert len(samples) == probe["ok"] == 300
    again = apiserver._summarize(samples, probe["errors"])
    for key in ("ttfb_p95_ms", "ttfb_p99_ms", "ttfb_max_ms"):
        assert again[key] == probe[key], key
        assert again[key] in samples


def _section(text: str, title: str) -> list[str]:
    lines = text.split(f"## {title}\n\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert lines[1].startswith("|---"), lines
    return lines[2:]  # the rows, below header and rule


def test_markdown_of_the_recorded_run():
    text = report_runner.markdown(RECORDED)
    assert text.startswith("# kubeha lab: steady state, 60 s\n")
    assert (
        "Probe: `client` -> `https://198.18.0.10:8443/api/v1/namespaces/default/pods`, "
        "5 requests/s for 60 s, a fresh TLS connection each." in text
    )
    assert _section(text, "Verdict") == [
        "| TTFB p95 through the VIP < 500 ms (runbook) | 26.233 ms | PASS |",
        "| no failed request | 0 of 300 | PASS |",
        "| cluster healthy (VIP, HAProxy, etcd, Nodes, Leases) | healthy | PASS |",
    ]
    assert _section(text, "Time to first byte through the VIP") == [
        "| 300 | 300 | 0 | 14.295 | 26.233 | 38.809 | 55.917 | 237.4 |"
    ]
    assert "![timeline](steady-state-lab.png)" in text  # next to the .md: the file name only
    assert _section(text, "VIP") == ["| 198.18.0.10 | keepalived-haproxy | cp-3 | yes |"]
    assert _section(text, "Nodes") == [
        f"| cp-{i} | Ready | v1.30.0 | no | control-plane |" for i in (1, 2, 3)
    ]
    haproxy = _section(text, "HAProxy backends (as each control plane's HAProxy sees them)")
    assert len(haproxy) == 9 and haproxy[4] == "| cp-2 | cp-2 | UP | L7OK | 27 |"
    assert (
        _section(text, "etcd")[0]
        == "| https://198.18.0.11:2379 | 3.5.1 | leader | 0.8 MiB | 2 | 443 |"
    )
    assert _section(text, "Leader election") == [
        "| kube-controller-manager | cp-1 | 0 | 2026-11-26T23:34:42.099772Z | 5 |",
        "| kube-scheduler | cp-1 | 0 | 2026-11-26T23:34:42.169696Z | 5 |",
    ]


def test_markdown_of_a_failing_run_with_parts_of_the_snapshot_missing():
    report = copy.deepcopy(RECORDED)
    probe = report["probe"]
    probe.update(errors=12, ok=288, ttfb_p95_ms=812.5, ttfb_max_ms=3001.2)
    problems = ["node cp-2: NodeStatusUnknown"]
    report["verdicts"] = report_runner.verdicts(probe, problems)
    report.pop("timeline_png")  # matplotlib missing on the master: no PNG
    snap = report["snapshot"]
    snap["nodes"] = "listing nodes: 503 Service Unavailable"  # a failed read, not a list
    snap["haproxy"] = {}
    snap["vip"].update(holders=[], readyz={"ok": False})
    snap["leases"][0].update(holder_node="cp-3", transitions=1)
    snap["etcd"][1]["db_size"] = 64 * 1048576
    text = report_runner.markdown(report)
    assert _section(text, "Verdict") == [
        "| TTFB p95 through the VIP < 500 ms (runbook) | 812.5 ms | FAIL |",
        "| no failed request | 12 of 300 | FAIL |",
        "| cluster healthy (VIP, HAProxy, etcd, Nodes, Leases) | node cp-2: NodeStatusUnknown "
        "| FAIL |",
    ]
    assert "![timeline]" not in text
    assert "HAProxy backends" not in text  # no data: no empty section
    assert _section(text, "VIP") == ["| 198.18.0.10 | keepalived-haproxy | - | no |"]
    assert text.split("## Nodes\n\n", 1)[1].startswith(
        "| node | status | kubelet | cordoned | roles |\n|---|---|---|---|---|\n\n"
    )  # the header alone: the rows could not be read
    assert "| https://198.18.0.12:2379 | 3.5.1 | follower | 64.0 MiB |" in text
    assert "| kube-controller-manager | cp-3 | 1 |" in text
