"""
End to end on the lab (issue 14): the self-healing VIP on the cluster test_bootstrap.py built,
the goals asserted from measured numbers.

- an impaired VIP holder (C: 200 ms +- 20 ms, 20 % loss for 60 s, `orch.chaos`): the VIP
  leaves it within 10 s, requests after the move succeed, the connections open at the move
  are kept (few failures before it), TTFB p95 over the whole fault window < 500 ms,
  at most one move and no flap (the VIP never returns to the old holder; a VRRP transient
  beside the lossy holder, a backup missing its adverts, stays under a second),
  the beacons' reports counted (no storm);
- C on a node that does not hold the VIP: no move;
- nothing reported while all is well;
- two apiservers hung: the VIP is pinned on the survivor, and the pin undone once they are
  ready again for `recover_after`;
- VRRP between the holder and a backup filtered (two holders): the second one is released,
  the VIP never leaves the holder, and the release ends once VRRP passes again;
- the salt-master stopped, then the holder powered off: VRRP alone moves the VIP.

The lab pillar shortens `vip_heal:cooldown` and `recover_after`; everything else runs
with the formula's defaults.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from lab import formula, procs, state
from lab.api import Lab
from tests.unit.modules.khm_load import load

analysis = load("_utils", "chaos_analysis")

pytestmark = [pytest.mark.lab, pytest.mark.root]

CLUSTER = formula.CLUSTER
C = {"delay": "200ms", "jitter": "20ms", "loss": 20}
# The goals for C on the holder. The VIP's move and p95 < 500 ms over the whole
# fault window are asserted (the p95 where the test reads it); 0 failed is printed, and the
# failures before the move are bounded: with the handover (vip_heal:handover_s) the
# connections open at the move are kept, and 0-6 requests failed per run before it, on the
# impaired holder itself (its HAProxy killing sessions still connecting to backends its
# checks cannot reach, a request lost three times, a VRRP transient; docs/chaos.md).
MOVE_WITHIN_S = 10.0
FAILED_AFTER_MOVE = 2  # 0 measured over 553-571 requests; margin for a noisy 2-core host
# 11-23 failed before the handover (16 runs); 0-4 with it (7 runs; 11-12 in two where VRRP
# put the VIP on a node not yet forwarding, since fixed); with the takeover 0-3, once 6 (4
# resets from a 0.1 s VRRP transient to the bystander before its FAULT arrived, 2026-11-29);
# a margin for a noisy host.
FAILED_BEFORE_MOVE = 8
# A VRRP transient (a backup holding the VIP beside the lossy holder until its next advert
# arrives): one delayed advert (200 ms) plus polling; 1 s is the margin on a noisy host.
TRANSIENT_S = 1.0
# Reports a run may cause per node: a path turning bad and back, the VIP leaving or
# arriving, keepalived's state (on the old holder up to three: BACKUP on hearing the
# target's takeover, FAULT at its release, BACKUP when that is lifted), the VRRP peer
# heard, and slack for a check on a busy host. Seen: 4-9 on the impaired holder.
REPORTS_PER_NODE = 10
# Seconds without a report before a test starts: the beacon's etcd-leader reading (5 s) and
# slack.
QUIET_S = 8.0


def _transients(timeline: list, holder: str, until: int) -> list[tuple[float, list]]:
    """(seconds, nodes) of each stretch before row ``until`` where the VIP sat on the holder
    and another node at once."""
    out = []
    for (at, held), nxt in zip(timeline[:until], timeline[1 : until + 1], strict=False):
        if holder in held and len(held) > 1:
            out.append((round(nxt[0] - at, 3), held))
    return out


def _run(lab: Lab, scenario: str, **pillar) -> dict:
    arg = "pillar=" + json.dumps({"cluster": CLUSTER, "scenario": scenario, **pillar})
    ret = lab.salt_run("state.orch", "orch.chaos", arg, timeout=900)
    (steps,) = ret.get("data", ret).values()
    (step,) = steps.values()
    out = (step.get("changes") or {}).get("return")
    assert isinstance(out, dict), step
    return out


def _last_run(lab: Lab) -> dict:
    return json.loads((lab.reports / f"chaos-{CLUSTER}.json").read_text())["runs"][-1]


def _holders(lab: Lab) -> list[str]:
    """Who holds the VIP, read in each machine (no Salt: also without a master)."""
    out = []
    for node in lab.control_planes:
        if lab.machine_state(node)["power"] != "on":
            continue
        text = lab.exec(node, "ip", "-o", "-4", "addr", "show", "dev", "ens160", check=False)
        if f" {lab.vip}/" in text.stdout:
            out.append(node)
    return out


def _status(lab: Lab) -> dict:
    return lab.salt_run("kubeha_vip.status", CLUSTER, timeout=120)


def _until(what: str, check, timeout: float, every: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(every)


def _settled(lab: Lab) -> None:
    """No override in force, no cooldown left, one holder and, with the default
    vip_heal:move_etcd_leader, etcd's leader known and not on the holder (the runner's
    handover done), and no report for QUIET_S (the beacons read etcd's leader every 5 s:
    the last handover's reports come that late): each test starts from there."""

    def quiet():
        s = _status(lab)
        views = s["views"].values()
        leaders = [v["holds"] for v in views if v.get("etcd_leader")]
        now = time.time()
        recent = lab.salt_run("kubeha_vip.timeline", CLUSTER, str(now - QUIET_S), str(now))
        return (s["override"] is None and s["cooldown_left_s"] == 0 and not recent["events"]
                and len(_holders(lab)) == 1 and leaders == [False])  # fmt: skip

    _until("the self-healing VIP idle", quiet, timeout=120, every=2)


def _keepalived_marks(lab: Lab) -> dict:
    """Per control plane: keepalived's main PID and the reloads its journal shows this boot
    (keepalived logs "Reloading" on SIGHUP): a priority change must change neither."""
    out = {}
    for node in lab.control_planes:
        pid = lab.exec(node, "systemctl", "show", "-p", "MainPID", "--value", "keepalived",
                       check=False).stdout.strip()  # fmt: skip
        out[node] = (pid, lab.logs(node, "keepalived", lines=100000).count("Reloading"))
    return out


def _decisions(lab: Lab, start: float, end: float) -> list[dict]:
    found = lab.salt_run("kubeha_vip.timeline", CLUSTER, str(start), str(end), timeout=120)
    return [d for d in found["decisions"] if d["action"] != "none"]


@pytest.fixture(scope="module")
def healing(lab: Lab, tmp_path_factory) -> Iterator[Lab]:
    """The built cluster with the formula's VIP layer applied (tracked files, the beacon),
    its modules synced, the client's kubeconfig in place."""
    formula.sync(lab)
    gate = lab.salt_run("kubeha_gate.final", CLUSTER, "wait=120", timeout=400)
    assert gate.get("result"), f"the lab has no healthy cluster (run test_bootstrap.py): {gate}"
    run = formula.state_run(lab.salt("--timeout=600", "cp-*", "state.apply",
                                     "kubeha.lb.keepalived", timeout=900))  # fmt: skip
    assert run.ok, run.failed
    formula.kubeconfig_to_client(lab)
    lab.reports = tmp_path_factory.mktemp("heal-reports")

    def reported():
        views = _status(lab)["views"]
        return all(views[n]["holds"] is not None for n in lab.control_planes)

    _until("a first report from every control plane", reported, timeout=120, every=2)
    yield lab
    for node in lab.control_planes:
        lab.salt(node, "chaos.revert", timeout=60)


def test_nothing_is_reported_while_all_is_well(healing: Lab):
    _settled(healing)
    start = time.time()
    time.sleep(15)
    found = healing.salt_run("kubeha_vip.timeline", CLUSTER, str(start), str(time.time()))
    assert found["events"] == [] and found["decisions"] == [], found


def test_an_impaired_non_holder_moves_nothing(healing: Lab):
    _settled(healing)
    (holder,) = _holders(healing)
    other = next(n for n in healing.control_planes if n != holder)
    ret = _run(healing, "netem", target=other, duration=20, lead_in=3, settle=5,
               out_dir=str(healing.reports), label="heal: netem@non-holder", **C)  # fmt: skip
    run = _last_run(healing)
    print(f"C on {other}: {ret['comment']}; decisions {_decisions(healing, run['t0'], run['end'])}")
    seen = [h for _, h in run["measured"]["vip"]["timeline"]]
    while seen and seen[0] == []:  # the watch's first row, before any node answered it
        seen.pop(0)
    assert seen == [[holder]], run["measured"]["vip"]["timeline"]
    # No VIP decision. etcd's leadership leaves the impaired node when it led etcd
    # (vip_heal:move_etcd_leader): a decision of its own, printed above.
    decided = _decisions(healing, run["t0"], run["end"])
    assert [d for d in decided if d["action"] != "etcd-leader"] == [], decided


def test_an_impaired_holder_loses_the_vip_fast_and_once(healing: Lab):
    _settled(healing)
    (holder,) = _holders(healing)
    marks = _keepalived_marks(healing)
    ret = _run(healing, "netem", target="vip-holder", duration=60, lead_in=5, settle=10,
               out_dir=str(healing.reports), label="heal: netem@vip-holder", **C)  # fmt: skip
    run = _last_run(healing)
    vip, window = run["measured"]["vip"], run["measured"]["requests"]["fault_window"]
    heal = run.get("healing") or {}
    counts = {}
    for event in heal.get("events") or []:
        counts[event["node"]] = counts.get(event["node"], 0) + 1
    # The VIP's decisions; an etcd-leader handover (vip_heal:move_etcd_leader) is printed
    # with them but is not a VIP move.
    decided = [d for d in heal.get("decisions") or [] if d["action"] != "none"]
    acted = [d for d in decided if d["action"] != "etcd-leader"]
    fault_at = run["fault"]["at"]
    moves = [(round(d["at"] - fault_at, 2), d["action"], d.get("target"), d.get("moved_s"))
             for d in decided]  # fmt: skip
    print(
        f"C on {holder}: VIP moved to {vip['moved_to']} after {vip['moved_s']} s, answered "
        f"after {vip['failover_s']} s; fault window {window['count']} requests, "
        f"{window['failed']} failed {window['failed_by_cause']}, TTFB p50/p95/p99/max "
        f"{window['ttfb_p50_ms']}/{window['ttfb_p95_ms']}/{window['ttfb_p99_ms']}/"
        f"{window['ttfb_max_ms']} ms; beacon reports {counts}; decisions (s after the "
        f"fault, action, target, move took s) {moves}"
    )
    # The clients' view before the fault, and in the fault window before and after the move
    # (the first row the VIP sits on the new holder alone: the probe's moved_s counts a node
    # beside the old holder, which is right for a node cut off, not for a VRRP transient).
    timeline = [h for _, h in vip["timeline"]]
    assert vip["moved_to"] and holder not in vip["moved_to"], ret["comment"]
    # Where the VIP ended, alone: the probe's moved_to names the first node seen beside the
    # holder, which may be a backup's VRRP transient (below) rather than the move's target.
    assert len(timeline[-1]) == 1 and timeline[-1] != [holder], vip["timeline"]
    target = timeline[-1][0]
    first = timeline.index([target])
    moved_at = vip["timeline"][first][0]
    raw = (run.get("raw") or {}).get("requests") or []
    split = {
        "before the fault": analysis.request_stats(raw, run["t0"], fault_at),
        "fault, VIP on the holder": analysis.request_stats(raw, fault_at, moved_at),
        "fault, VIP moved": analysis.request_stats(raw, moved_at, run["fault"]["reverted_at"]),
    }
    print("TTFB p50/p95 ms (count, failed): " + "; ".join(
        f"{k} {x['ttfb_p50_ms']}/{x['ttfb_p95_ms']} ({x['count']}, {x['failed']})"
        for k, x in split.items()))  # fmt: skip
    after = _keepalived_marks(healing)
    print(f"keepalived (main PID, reloads) before {marks}, after {after}")
    print(f"VIP timeline: {[(round(t - fault_at, 3), h) for t, h in vip['timeline']]}; "
          f"on {target} alone after {round(moved_at - fault_at, 3)} s")  # fmt: skip
    # The VIP left the impaired holder, once, for good.
    assert moved_at - fault_at <= MOVE_WITHIN_S, vip
    assert all(h == [target] for h in timeline[first:]), timeline
    # Before that the holder kept it. The impaired holder's adverts are lost 20 % of the time
    # and the lab's netem (NFQUEUE, a Python daemon on a 2-core host) can hold them in bursts:
    # a backup that misses down_timer_adverts of them in a row takes the VIP and hands it back
    # at the holder's next advert (VRRP's own, not an override's flap: twice in one CI run,
    # 0.1 s each; 0 in 15 lab runs, docs/chaos.md item 9). Such a transient must stay short
    # and keep the holder in it.
    doubled = _transients(vip["timeline"], holder, first)
    print(f"VRRP transients before the move (s, nodes): {doubled}")
    assert all(h == [] or holder in h for h in timeline[:first]), timeline
    assert all(lasted <= TRANSIENT_S for lasted, _ in doubled), doubled
    # At most one decision, a move. VRRP may move the VIP itself before the runner acts
    # (a backup missing the holder's adverts wins the election: once in 15 runs), or elect
    # the other healthy node in the same second as the runner's move (once in 5). Either
    # way the VIP left the impaired holder once and for good, asserted above; the runner
    # must not move it again.
    assert [d["action"] for d in acted] in ([], ["move"]), acted
    if not acted:
        print(f"VRRP moved the VIP to {target} before the runner acted")
    elif acted[0]["target"] == target:
        assert acted[0].get("moved"), acted  # the runner saw its move land
    else:
        print(f"VRRP elected {target} while the runner moved the VIP to {acted[0]['target']}")
    # No storm: a handful of reports per node over the whole run.
    assert all(n <= REPORTS_PER_NODE for n in counts.values()), counts
    # The clients' view: once the VIP has moved, requests through it succeed.
    moved = split["fault, VIP moved"]
    assert moved["count"] > 100 and moved["failed"] <= FAILED_AFTER_MOVE, moved
    # The connections open at the move are kept (the handover): what fails is the
    # impaired holder's own doing before it.
    before = split["fault, VIP on the holder"]
    assert before["failed"] <= FAILED_BEFORE_MOVE, (before, window["failed_by_cause"])
    # Issue 14's goal itself: TTFB p95 through the VIP over the whole fault window. It holds
    # while fewer than 5 % of the requests (30 of 600) fall before the move: 16-23 in six
    # runs since the takeover and the beacon's immediate confirmation (p95 29-65 ms); 28-41
    # before them (p95 up to 1.6 s).
    assert window["ttfb_p95_ms"] < 500, (window, before)
    # The priorities and the release changed through tracked files: no reload, no restart.
    assert after == marks, (marks, after)


def test_two_failed_apiservers_pin_the_vip_on_the_survivor(healing: Lab):
    _settled(healing)
    (holder,) = _holders(healing)
    other = next(n for n in healing.control_planes if n != holder)
    survivor = next(n for n in healing.control_planes if n not in (holder, other))
    start, hang = time.time(), 25
    for node in (holder, other):
        assert healing.salt(node, "chaos.apiserver_hang", str(hang))[node]["fault"]
    try:
        _until(f"the VIP on {survivor}", lambda: _holders(healing) == [survivor], timeout=30)
        moved_s = time.time() - start

        # The VIP arrives before the runner's decision ends (it waits for the VIP on the
        # target, then lifts the releases) and records its override only then.
        def pinned():
            status = _status(healing)
            return status if (status["override"] or {}).get("kind") == "pin" else None

        status = _until("the pin recorded", pinned, timeout=20, every=1)
        assert status["override"]["target"] == survivor, status
        tracked = healing.salt(survivor, "keepalived_track.read")[survivor]
        assert tracked["priority"] == 253, tracked
        print(f"pinned on {survivor} {moved_s:.1f} s after two apiservers hung")
    finally:
        for node in (holder, other):
            healing.salt(node, "chaos.revert", "apiserver-hang", timeout=60)
    # Ready again: the pin is undone after recover_after (+ a tick); the VIP stays.
    _until("the pin undone", lambda: _status(healing)["override"] is None, timeout=90, every=2)
    assert _holders(healing) == [survivor]
    assert healing.salt(survivor, "keepalived_track.read")[survivor]["priority"] == 0
    actions = [d["action"] for d in _decisions(healing, start, time.time())]
    print(f"decisions {actions}")
    # etcd's leader leaves the survivor once it holds the VIP, when it led etcd (seen on
    # the lab): a decision of its own, not a VIP move.
    assert [a for a in actions if a != "etcd-leader"] == ["pin", "undo"], actions


def _vrrp_filter(lab: Lab, node: str, peer_ip: str, add: bool) -> None:
    op = "-I" if add else "-D"
    for chain, way in (("INPUT", "-s"), ("OUTPUT", "-d")):
        lab.exec(node, "iptables", op, chain, way, peer_ip, "-p", "112", "-m", "comment",
                 "--comment", "kubeha-test-split", "-j", "DROP", check=add)  # fmt: skip


def test_two_holders_keep_one_and_release_the_other_until_vrrp_passes(healing: Lab):
    _settled(healing)
    (holder,) = _holders(healing)
    cut = next(n for n in healing.control_planes if n != holder)
    start = time.time()
    _vrrp_filter(healing, cut, healing.ip(holder), add=True)
    try:
        # cut stops hearing the holder, takes the VIP too, and is released again.
        released = _until(f"{cut} released", lambda: healing.salt(
            cut, "keepalived_track.read")[cut]["release"] == 1, timeout=30)  # fmt: skip
        assert released
        _until(f"only {holder} holding", lambda: _holders(healing) == [holder], timeout=10)
        split_at = time.time()
        time.sleep(5)
        assert _holders(healing) == [holder]
        assert healing.salt(cut, "keepalived_track.read")[cut]["release"] == 1
    finally:
        _vrrp_filter(healing, cut, healing.ip(holder), add=False)
    _until("the release lifted", lambda: _status(healing)["override"] is None, timeout=90,
           every=2)  # fmt: skip
    assert healing.salt(cut, "keepalived_track.read")[cut]["release"] == 0
    assert _holders(healing) == [holder]
    acts = _decisions(healing, start, time.time())
    assert [d["action"] for d in acts][:1] == ["split"] and acts[-1]["action"] == "undo", acts
    print(f"split resolved {split_at - start:.1f} s after VRRP was cut: {acts}")


def test_vrrp_alone_moves_the_vip_while_the_master_is_down(healing: Lab):
    _settled(healing)
    (holder,) = _holders(healing)
    master = state.load().services["salt-master"]
    procs.stop(master, timeout=15)
    try:
        event = healing.fault(holder, "power-off")
        others = lambda: [h for h in _holders(healing) if h != holder]  # noqa: E731
        found = _until("another holder", others, timeout=15, every=0.2)
        took = time.time() - event.at
        print(f"master down, {holder} powered off: VIP on {found} after {took:.2f} s")
        assert len(found) == 1 and took < 5
    finally:
        Lab.up(client=True)  # the master back, the machine powered on
        healing.wait_minions(timeout=180)
    gate = healing.salt_run("kubeha_gate.final", CLUSTER, "wait=240", timeout=500)
    assert gate.get("result"), gate
