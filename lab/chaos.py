"""`make chaos`: every chaos scenario on the lab, kubeha vs the runbook's access layer, and
the leader-election profiles, into reports/chaos-lab.{json,md,png}.

    python -m lab.chaos [--fresh] [--reports reports/] [--trials 5] [--soak 600]
                        [--parts kubeha,runbook,etcd-elects,leader,heal] [--commit]

Steps (each printed with its elapsed time): lab up and a built cluster (`--fresh`: the
machines rebuilt from the base image, converged and bootstrapped as `make demo` does), the
report started anew, then per part:

- kubeha: every scenario through `salt-run state.orch orch.chaos` with the formula's
  defaults, B (the VIP holder powered off) `--trials` times, C on the VIP holder and on a
  node that does not hold it, D on the etcd leader and on two of three members (forced);
- runbook: the same scenarios with the runbook's access layer (pillar profile
  lab-runbook, kubeha_profile grain) and the runbook's kubeadm defaults in the static pods
  (local etcd only, leader election 15/10/2);
- etcd-elects: kubeha's defaults but etcd electing its leader alone
  (vip_heal:move_etcd_leader: false, profile etcd-elects): B `--trials` times and C on the
  VIP holder, each with etcd's leader put on the holder first (the case the default avoids);
- leader: for each Lease timer profile, SIGKILL of the KCM and scheduler leaders and a
  `--soak` seconds netem run (C) on the control plane holding the KCM Lease, counting Lease
  transitions: those off the impaired node (its holder could not renew) apart from the
  spurious ones (a holder on a healthy node lost its Lease; the SLO's 0).
- heal (the self-healing VIP, issue 14): C on the VIP holder and on a node that does not
  hold it for 60 s each, then a `--soak` seconds soak of 20 ms +- 10 ms jitter on every
  control plane, counting VIP moves, the beacons' reports and the runner's decisions
  (goal: none beyond each beacon's first report).

The static pods' flags are edited in place on each node, one node at a time (what
`kubeadm upgrade` would render from a changed ClusterConfiguration); the formula's
defaults are restored at the end. The lab stays up.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

from lab import formula, lifecycle
from lab.api import Lab
from lab.demo import Steps
from lab.manifests import set_flags, wait_readyz
from lab.run import LabError

REPO = Path(__file__).resolve().parent.parent
CLUSTER = formula.CLUSTER
DEFAULTS = yaml.safe_load((REPO / "salt/kubeha/parameters/defaults.yaml").read_text())["values"]
LAB_PILLAR = yaml.safe_load((REPO / "pillar/kubeha/lab.sls").read_text())["kubeha"]
# (lease, renew, retry): kubeadm's defaults, the runbook's usual 5/3/1, and the fastest the
# model's rules accept (renew deadline above two etcd election timeouts).
LEADER_PROFILES = [(15, 10, 2), (5, 3, 1), (3, 2.5, 0.5)]


def _model_leader() -> tuple:
    le = {**DEFAULTS["leader_election"], **LAB_PILLAR.get("leader_election", {})}
    return le["lease_duration"], le["renew_deadline"], le["retry_period"]


def _etcd_servers(lab: Lab, mode: str) -> str:
    if mode == "all":
        return ",".join(f"https://{lab.ip(n)}:2379" for n in lab.control_planes)
    if mode == "local-first":
        return f"https://127.0.0.1:{DEFAULTS['haproxy']['etcd_proxy']['port']}"
    return "https://127.0.0.1:2379"


def _seconds(value) -> str:
    """As kubeha_kubeadm_config renders a duration flag (whole seconds, else ms)."""
    number = float(value)
    return f"{int(number)}s" if number == int(number) else f"{int(number * 1000)}ms"


def static_pods(lab: Lab, etcd_servers: str, leader: tuple) -> list[str]:
    """The apiservers' --etcd-servers and the KCM/scheduler Lease timers on every control
    plane, one node at a time; what changed."""
    changed = []
    lease, renew, retry = leader
    timers = {"leader-elect-lease-duration": _seconds(lease),
              "leader-elect-renew-deadline": _seconds(renew),
              "leader-elect-retry-period": _seconds(retry)}  # fmt: skip
    for node in lab.control_planes:
        if set_flags(
            lab, node, "kube-apiserver", {"etcd-servers": _etcd_servers(lab, etcd_servers)}
        ):
            changed.append(f"{node}/kube-apiserver")
            wait_readyz(lab, node)
        for component in ("kube-controller-manager", "kube-scheduler"):
            if set_flags(lab, node, component, timers):
                changed.append(f"{node}/{component}")
    return changed


def use_profile(lab: Lab, profile: str) -> None:
    """The access layer of `profile` (kubeha's pillar, or the runbook's lab profile):
    keepalived and HAProxy (`state.apply kubeha.lb`)."""
    if profile in ("runbook", "etcd-elects"):
        lab.salt("cp-*", "grains.setval", "kubeha_profile", profile)
    else:
        lab.salt("cp-*", "grains.delkey", "kubeha_profile", "force=True")
    lab.salt("cp-*", "saltutil.refresh_pillar", "wait=True")
    # The profiles differ in the access layer only: apply that (kubeha.lb), not everything.
    result = lab.salt("--timeout=600", "cp-*", "state.apply", "kubeha.lb", timeout=900)
    run = formula.state_run(result)
    if not run.ok or set(run.states) != set(lab.control_planes):
        raise LabError(f"state.apply kubeha.lb with profile {profile} failed: {run.failed}")


def healthy(lab: Lab, wait: int = 300) -> dict:
    gate = lab.salt_run("kubeha_gate.final", CLUSTER, f"wait={wait}", timeout=wait + 120)
    if not gate.get("result"):
        raise LabError(f"the cluster is not healthy: {gate.get('comment')}")
    return gate


def chaos(lab: Lab, scenario: str, **pillar) -> dict:
    """One `salt-run state.orch orch.chaos` run; its runner return."""
    arg = "pillar=" + json.dumps({"cluster": CLUSTER, "scenario": scenario, **pillar})
    ret = lab.salt_run("state.orch", "orch.chaos", arg, timeout=1800 + pillar.get("duration", 20))
    data = ret.get("data", ret)
    (steps,) = data.values() if len(data) == 1 else (data,)
    step = next(iter(steps.values())) if isinstance(steps, dict) else {}
    out = (step.get("changes") or {}).get("return") or {"comment": step.get("comment", steps)}
    mark = "PASS" if out.get("result") else "FAIL"
    print(f"[chaos]   {mark} {pillar.get('label', scenario)}: {out.get('comment', '')[:400]}",
          flush=True)  # fmt: skip
    return out


def non_holder(lab: Lab) -> str:
    holders = healthy(lab)["snapshot"]["vip"]["holders"]
    return next(n for n in lab.control_planes if n not in holders)


def scenarios(lab: Lab, profile: str, trials: int, reports: Path) -> None:
    common = {"profile": profile, "out_dir": str(reports)}
    chaos(lab, "apiserver-stop", target="vip-holder", duration=20, **common)
    chaos(lab, "apiserver-hang", target="vip-holder", duration=20, **common)
    chaos(lab, "node-isolate", target="vip-holder", duration=20, **common)
    for _ in range(trials):
        chaos(lab, "power-off", target="vip-holder", duration=20, **common)
    chaos(lab, "netem", target="vip-holder", duration=40, **common)
    other = non_holder(lab)
    chaos(lab, "netem", target=other, duration=40, label="netem@non-holder", **common)
    chaos(lab, "etcd-stop", target="etcd-leader", duration=20, **common)
    chaos(lab, "leader-kill", target="lease-holder", duration=20, **common)
    chaos(lab, "leader-kill", target="lease-holder", duration=20, component="kube-scheduler",
          label="leader-kill@lease-holder (scheduler)", **common)  # fmt: skip
    two = [n for n in lab.control_planes if n != healthy(lab)["snapshot"]["vip"]["holders"][0]]
    chaos(lab, "etcd-stop", target=",".join(two), duration=15, force=True,
          label="etcd-stop@2-of-3 (quorum lost, forced)", **common)  # fmt: skip


def _leader_on_holder(lab: Lab) -> None:
    """etcd's leadership handed to the VIP holder (etcdctl move-leader), the worst case for
    B and C when nothing keeps it off."""
    holder = healthy(lab)["snapshot"]["vip"]["holders"][0]
    got = lab.salt(holder, "etcdctl.move_leader", holder, "command_timeout=10s", timeout=60)
    leader = ((got.get(holder) or {}).get("leader") or {}).get("name")
    print(f"[chaos]   etcd leader {leader}, VIP on {holder}", flush=True)


def etcd_elects(lab: Lab, trials: int, reports: Path) -> None:
    """vip_heal:move_etcd_leader off (profile etcd-elects): the runner's model compiled anew
    (unpin does, and lifts nothing on a healthy cluster), then B `trials` times and C on the
    holder, etcd's leader put on the holder before each, against the kubeha part's rows."""
    lab.salt_run("kubeha_vip.unpin", CLUSTER)
    common = {"profile": "kubeha, etcd elects", "out_dir": str(reports)}
    for _ in range(trials):
        _leader_on_holder(lab)
        chaos(lab, "power-off", target="vip-holder", duration=20, **common)
    _leader_on_holder(lab)
    chaos(lab, "netem", target="vip-holder", duration=40, **common)


def leader_profiles(lab: Lab, soak: int, reports: Path) -> None:
    for lease, renew, retry in LEADER_PROFILES:
        name = f"leader {lease:g}/{renew:g}/{retry:g}"
        changed = static_pods(lab, DEFAULTS["apiserver"]["etcd_servers"], (lease, renew, retry))
        print(f"[chaos]   {name}: static pods changed {changed}", flush=True)
        healthy(lab)
        time.sleep(2 * lease)  # every component has (re)acquired under the new timers
        common = {"profile": name, "out_dir": str(reports)}
        for _ in range(3):
            chaos(lab, "leader-kill", target="lease-holder", duration=max(20, 2 * lease), **common)
        scheduler = "leader-kill@lease-holder (scheduler)"
        chaos(lab, "leader-kill", target="lease-holder", duration=max(20, 2 * lease),
              component="kube-scheduler", label=scheduler, **common)  # fmt: skip
        if soak:
            # C where it can hurt the Leases most: on the node that holds them (the issue's
            # "random node" may well be one that holds nothing).
            chaos(lab, "netem", target="lease-holder", duration=soak,
                  label=f"soak: netem@lease-holder {soak}s", **common)  # fmt: skip


def heal(lab: Lab, soak: int, reports: Path) -> None:
    """The self-healing VIP (issue 14): C on the holder, C on a non-holder, and the soak."""
    common = {"profile": "kubeha", "out_dir": str(reports)}
    chaos(lab, "netem", target="vip-holder", duration=60, label="heal: netem@vip-holder 60s",
          **common)  # fmt: skip
    chaos(lab, "netem", target=non_holder(lab), duration=60, label="heal: netem@non-holder 60s",
          **common)  # fmt: skip
    if soak:
        jitter_soak(lab, soak, reports)


def jitter_soak(lab: Lab, seconds: int, reports: Path) -> dict:
    """20 ms +- 10 ms on every control plane for ``seconds`` (orch.chaos refuses a fault on
    every node, so the netem faults are armed here, each undone by its node's timer): the
    VIP must not move and the beacons must not report (their first report came before)."""
    healthy(lab)
    run_id = f"lab-heal-soak-{int(time.time())}"
    lab.salt_cli("salt", "--async", "cp-*", "chaos_watch.node", run_id, str(seconds + 10),
                 lab.vip)  # fmt: skip
    start = time.time()
    armed = lab.salt("cp-*", "chaos.netem", str(seconds), "delay=20ms", "jitter=10ms", "loss=0",
                     timeout=120)  # fmt: skip
    print(f"[chaos]   soak: 20 ms +- 10 ms on {sorted(armed)} for {seconds} s", flush=True)
    time.sleep(seconds + 12)
    end = time.time()
    watch = lab.salt("cp-*", "chaos_watch.fetch", run_id, timeout=120)
    changes = {n: [r for r in rows if r.get("k") == "vip"] for n, rows in watch.items()
               if isinstance(rows, list)}  # fmt: skip
    moves = sum(max(0, len(rows) - 1) for rows in changes.values())
    found = lab.salt_run("kubeha_vip.timeline", CLUSTER, str(start), str(end), timeout=120)
    acted = [d for d in found["decisions"] if d["action"] != "none"]
    quiet = moves == 0 and not found["events"] and not acted
    result = {"seconds": seconds, "vip_changes_seen": moves, "reports": len(found["events"]),
              "decisions": len(acted), "pass": quiet}  # fmt: skip
    text = (f"Soak (self-healing VIP): 20 ms +- 10 ms jitter on every control plane for "
            f"{seconds} s: VIP changes seen by the nodes {moves}, beacon reports "
            f"{result['reports']}, decisions that acted {len(acted)} (goal 0, 0, 0): "
            f"{'PASS' if result['pass'] else 'FAIL'}.")  # fmt: skip
    lab.salt_run("kubeha_chaos_report.note", CLUSTER, str(reports), text)
    print(f"[chaos]   {'PASS' if result['pass'] else 'FAIL'} {text}", flush=True)
    return result


def _commit(reports: Path) -> None:
    files = sorted(str(p.relative_to(REPO)) for p in reports.glob("chaos-lab*"))
    subprocess.run(["git", "-C", str(REPO), "add", "--", *files], check=True)
    subprocess.run(["git", "-C", str(REPO), "commit", "-m", "make chaos: reports/chaos-lab.*",
                    "--", *files], check=True)  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fresh", action="store_true", help="rebuild the machines first")
    parser.add_argument("--reports", default=str(REPO / "reports"))
    parser.add_argument("--trials", type=int, default=5, help="B (power-off) trials")
    parser.add_argument("--soak", type=int, default=600, help="seconds of C per timer profile")
    parser.add_argument("--parts", default="kubeha,runbook,etcd-elects,leader,heal")
    parser.add_argument("--commit", action="store_true", help="git commit the report files")
    args = parser.parse_args()
    reports = Path(args.reports).resolve()
    parts = args.parts.split(",")
    steps = Steps(3 + len(parts))
    model_etcd = DEFAULTS["apiserver"]["etcd_servers"]
    try:
        lab = steps.run("lab up and a built cluster", lambda: _cluster(args.fresh))
        steps.run("new report", lambda: lab.salt_run(
            "kubeha_chaos_report.reset", CLUSTER, f"out_dir={reports}"))  # fmt: skip
        if "kubeha" in parts:
            steps.run("kubeha's defaults: every scenario", lambda: (
                use_profile(lab, "kubeha"), static_pods(lab, model_etcd, _model_leader()),
                healthy(lab), scenarios(lab, "kubeha", args.trials, reports)))  # fmt: skip
        if "runbook" in parts:
            steps.run("the runbook's access layer: every scenario", lambda: (
                use_profile(lab, "runbook"), static_pods(lab, "local", (15, 10, 2)),
                healthy(lab), scenarios(lab, "runbook", args.trials, reports)))  # fmt: skip
        if "etcd-elects" in parts:
            steps.run("kubeha, etcd electing alone: B and C on a holder that leads etcd",
                      lambda: (use_profile(lab, "etcd-elects"),
                               static_pods(lab, model_etcd, _model_leader()), healthy(lab),
                               etcd_elects(lab, args.trials, reports)))  # fmt: skip
        if "leader" in parts:
            steps.run("leader-election profiles", lambda: (
                use_profile(lab, "kubeha"), leader_profiles(lab, args.soak, reports)))  # fmt: skip
        if "heal" in parts:
            steps.run("the self-healing VIP: C on holder and non-holder, jitter soak",
                      lambda: (use_profile(lab, "kubeha"),
                               static_pods(lab, model_etcd, _model_leader()), healthy(lab),
                               heal(lab, args.soak, reports)))  # fmt: skip
        steps.run("kubeha's defaults back", lambda: (
            use_profile(lab, "kubeha"), static_pods(lab, model_etcd, _model_leader()),
            healthy(lab)))  # fmt: skip
    except LabError as err:
        print(f"[chaos] FAILED: {err}", file=sys.stderr)
        return 1
    report = json.loads((reports / f"chaos-{CLUSTER}.json").read_text())
    for row in report.get("rows", []):
        print(f"[chaos] {'PASS' if row['pass'] else 'FAIL'} {row['profile']}: {row['label']}")
    if args.commit:
        _commit(reports)
    print(f"[chaos] report: {reports}/chaos-{CLUSTER}.md; the lab is still up")
    return 0


def _cluster(fresh: bool) -> Lab:
    if fresh:
        lifecycle.down()
    lab = Lab.up(client=True)
    formula.sync(lab)
    gate = lab.salt_run("kubeha_gate.final", CLUSTER, "wait=10", timeout=300)
    if not gate.get("result"):
        run = formula.highstate(lab)
        if not run.ok:
            raise LabError(f"state.apply failed: {run.failed}")
        failed = [s for s in formula.bootstrap(lab) if not s.result]
        if failed:
            raise LabError(f"orch.bootstrap stopped at {failed[0].id}: {failed[0].comment}")
    formula.kubeconfig_to_client(lab)
    return lab


if __name__ == "__main__":
    sys.exit(main())
