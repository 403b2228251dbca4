"""`make demo`: the runbook's HA control plane built by Salt on the lab, then measured.

    python -m lab.demo [--duration 60] [--reports reports/]

Steps (each printed with its elapsed time): lab up (cold or warm), sync the modules, converge
the control planes (`salt 'cp-*' state.apply`), `salt-run state.orch orch.bootstrap`, a
second `state.apply` that must change nothing, a kubeconfig for the client machine, a
steady-state probe from the client through the VIP and its report, then the rolling upgrade
to the pillar's `upgrade:target_version` (`salt-run state.orch orch.upgrade`, the probe
watching) and its report, all under reports/. `--no-upgrade` stops after the steady state.
The lab stays up afterwards for exploring; `make lab-down` removes it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from lab import formula
from lab.api import Lab
from lab.run import LabError

REPO = Path(__file__).resolve().parent.parent


class Steps:
    """Numbered progress lines with elapsed time per step and overall."""

    def __init__(self, total: int) -> None:
        self.total, self.n, self.t0 = total, 0, time.monotonic()

    def run(self, title: str, func):
        self.n += 1
        print(f"[demo] {self.n}/{self.total} {title} ...", flush=True)
        started = time.monotonic()
        result = func()
        took, overall = time.monotonic() - started, time.monotonic() - self.t0
        print(f"[demo] {self.n}/{self.total} {title}: done in {took:.1f}s ({overall:.0f}s so far)")
        return result


def _converge(lab: Lab) -> formula.StateRun:
    run = formula.highstate(lab)
    print(f"[demo]   {run.describe()}")
    if not run.ok:
        raise LabError(f"state.apply failed: {run.failed}")
    return run


def _bootstrap(lab: Lab) -> None:
    steps = formula.bootstrap(lab)
    for step in steps:
        mark = "ok " if step.result else "FAILED"
        print(f"[demo]   {mark} {step.id} ({step.seconds}s): {step.comment[:160]}")
    failed = [s for s in steps if not s.result]
    if failed:
        raise LabError(f"orch.bootstrap stopped at {failed[0].id}: {failed[0].comment}")


def _second_apply(lab: Lab) -> None:
    run = _converge(lab)
    if run.changes:
        raise LabError(f"the second state.apply changed things: {run.changed}")


def _report(lab: Lab, reports: Path, duration: int) -> dict:
    ret = formula.steady_state_report(lab, str(reports), duration=duration)
    ttfb = ret["ttfb"]
    print(
        f"[demo]   {ttfb['count']} requests, {ttfb['errors']} errors; TTFB p50 "
        f"{ttfb['ttfb_p50_ms']} ms, p95 {ttfb['ttfb_p95_ms']} ms, p99 {ttfb['ttfb_p99_ms']} ms, "
        f"max {ttfb['ttfb_max_ms']} ms; longest stall {ttfb['longest_stall_ms']} ms"
    )
    for verdict in ret["verdicts"]:
        mark = "PASS" if verdict["pass"] else "FAIL"
        print(f"[demo]   {mark} {verdict['goal']}: {verdict['measured']}")
    return ret


def _upgrade(lab: Lab, reports: Path) -> dict:
    steps, text = formula.upgrade(lab, report_dir=str(reports))
    if not steps:
        raise LabError(f"orch.upgrade was refused: {text[-1500:]}")
    for step in steps:
        mark = "ok " if step.result else "FAILED"
        print(f"[demo]   {mark} {step.id} ({step.seconds}s): {step.comment[:160]}")
    written = reports / f"upgrade-{formula.CLUSTER}.json"
    report = json.loads(written.read_text()) if written.exists() else {}
    probe = report.get("probe") or {}
    print(
        f"[demo]   through the VIP during the upgrade: {probe.get('count')} requests, "
        f"{probe.get('failed')} failed, p95 {probe.get('ttfb_p95_ms')} ms, longest stall "
        f"{probe.get('longest_stall_s')} s, writes lost {(probe.get('writes') or {}).get('lost')}"
    )
    print(f"[demo]   report: {reports}/upgrade-{formula.CLUSTER}.{{json,md,png}}")
    failed = [s for s in steps if not s.result]
    if failed:
        raise LabError(f"orch.upgrade stopped at {failed[0].id}: {failed[0].comment}")
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=60, help="steady-state probe, seconds")
    parser.add_argument("--reports", default=str(REPO / "reports"))
    parser.add_argument("--no-upgrade", action="store_true", help="stop after the steady state")
    args = parser.parse_args()
    reports = Path(args.reports).resolve()
    steps = Steps(7 if args.no_upgrade else 8)
    try:
        lab = steps.run("lab up (cp-1..3 + client)", lambda: Lab.up(client=True))
        steps.run("sync kubeha's modules to minions and master", lambda: formula.sync(lab))
        steps.run("salt 'cp-*' state.apply", lambda: _converge(lab))
        steps.run("salt-run state.orch orch.bootstrap (cluster lab)", lambda: _bootstrap(lab))
        steps.run(
            "second salt 'cp-*' state.apply (must change nothing)", lambda: _second_apply(lab)
        )
        steps.run("kubeconfig for the client machine", lambda: formula.kubeconfig_to_client(lab))
        ret = steps.run(
            f"{args.duration}s steady-state probe through the VIP + report",
            lambda: _report(lab, reports, args.duration),
        )
        if not args.no_upgrade:
            steps.run(
                "salt-run state.orch orch.upgrade (to upgrade:target_version, probe on)",
                lambda: _upgrade(lab, reports),
            )
    except LabError as err:
        print(f"[demo] FAILED: {err}", file=sys.stderr)
        return 1
    print(f"[demo] report: {', '.join(ret['files'])}")
    print("[demo] the lab is still up: `python -m lab status`; `make lab-down` removes it")
    return 0 if ret["result"] else 2


if __name__ == "__main__":
    sys.exit(main())
