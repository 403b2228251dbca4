"""
Chaos runs: one fault on a healthy cluster, measured the way users feel it, reported
against the SLOs in pillar. ``orch/chaos.sls`` calls ``run``; so can an operator.

A run, in order, stopping with the reason at the first refusal (nothing changed then):

1. the cluster's pillar allows chaos (``kubeha:chaos:enabled``), the scenario exists and
   can run here (power-off needs the site's power switch), the duration is within limits;
2. the cluster passes ``kubeha_gate.final`` (a fault on a sick cluster measures nothing);
3. the target word resolves (``vip-holder``, ``etcd-leader``, ``lease-holder``, ``random``,
   node names, comma-separated), and etcd keeps quorum unless ``force=True``;
4. the watchers (``chaos_watch.node`` on every control plane) and the probe
   (``chaos_probe.run`` on ``kubeha:chaos:probe_minion``) start asynchronously;
5. after ``lead_in`` seconds the fault is injected; a fault that lasts was armed on the node
   to undo itself after ``duration`` (``chaos`` module), power-off gets a detached power-on
   on the master; the runner waits the duration, confirms the revert (doing it if the
   node's timer did not), waits ``settle`` seconds;
6. the probe's and watchers' records are fetched, the final gate must pass again, and the
   measurements (``_utils/chaos_analysis``) and verdicts go into
   ``<report_dir>/chaos-<cluster>.{json,md,png}`` (``kubeha_chaos_report``).

CLI Example:

.. code-block:: bash

    salt-run kubeha_chaos.run lab apiserver-stop target=vip-holder duration=20
    salt-run kubeha_chaos.plan lab etcd-stop target=cp-2,cp-3
"""

from __future__ import annotations

import logging
import os
import random
import secrets
import time
from pathlib import Path

import salt.client

log = logging.getLogger(__name__)

GATE_WAIT_S = 120
RECOVER_WAIT_S = 300
WATCH_FETCH_S = 90  # how long the watchers' records are asked for after the run


def _plan(name: str):
    return __utils__[f"chaos_plan.{name}"]


def _ask(nodes, fun, *args, timeout: float = 60, **kwargs) -> dict:
    return __utils__["kubeha_minions.ask"](__opts__, nodes, fun, *args, timeout=timeout, **kwargs)


def _start(nodes, fun, *args, **kwargs) -> str:
    """Start ``fun`` on ``nodes`` without waiting (salt --async); the job id."""
    client = salt.client.get_local_client(mopts=__opts__)
    try:
        jid = client.cmd_async(list(nodes), fun, arg=list(args), kwarg=kwargs, tgt_type="list")
    finally:
        client.destroy()
    if not jid:
        raise RuntimeError(f"could not start {fun} on {nodes}")
    return jid


def _refused(msg: str) -> dict:
    msg = f"chaos run refused, nothing was changed: {msg}"
    return {"result": False, "retcode": 1, "Error": msg, "comment": msg, "changed": False}


def _vip_url(model: dict) -> str:
    vip = model["vip"]
    return f"https://{vip.get('dns_name') or vip['address']}:{vip['lb_port']}"


def _prepare(cluster, scenario, target, duration, *, force, component, gate_wait):
    """(model, snapshot, targets) or a refusal dict; changes nothing."""
    try:
        model = __salt__["kubeha.model"](cluster)
    except Exception as err:  # noqa: BLE001 - a bad pillar or unknown cluster refuses the run
        return _refused(str(err))
    reason = _plan("refusal")(cluster, model, scenario, duration, component)
    if reason:
        return _refused(reason)
    gate = __salt__["kubeha_gate.final"](cluster, wait=gate_wait)
    if not gate.get("result"):
        return _refused(f"the cluster must be healthy first -- {gate.get('comment')}")
    snap = gate["snapshot"]
    info = _plan("scenario")(scenario)
    targets, why = _plan("resolve")(target or info["default_target"], snap, model, component)
    if why:
        return _refused(why)
    if scenario in ("netem", "node-isolate", "power-off", "etcd-stop", "apiserver-hang") and set(
        targets
    ) == {n["name"] for n in model["control_plane"]}:
        return _refused(f"{scenario} on every control plane leaves nothing to fail over to")
    why = _plan("quorum_refusal")(scenario, targets, snap, model, bool(force))
    if why:
        return _refused(why)
    return model, snap, targets


def plan(cluster, scenario, target=None, duration=20, *, force=False,
         component="kube-controller-manager"):  # fmt: skip
    """
    What ``run`` would do, or why it would refuse, without changing anything (the cluster
    is still gated: it must be healthy).

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_chaos.plan lab power-off target=vip-holder
    """
    prepared = _prepare(
        cluster, scenario, target, duration, force=force, component=component, gate_wait=30
    )
    if isinstance(prepared, dict):
        return prepared
    _model, _snap, targets = prepared
    what = _plan("scenario")(scenario)["what"]
    return {"result": True, "comment": f"{scenario} would hit {', '.join(targets)}: {what}",
            "targets": targets}  # fmt: skip


def _power(model: dict, which: str, node: str) -> dict:
    return __utils__["chaos_power.switch"](model, which, node)


def _inject(scenario, node, model, duration, params) -> dict:
    if scenario == "power-off":
        return _power(model, "off", node)
    fun = _plan("scenario")(scenario)["fun"]
    interface = model["vip"]["interface"]
    kwargs = {
        "apiserver-hang": {"duration": duration},
        "node-isolate": {"duration": duration, "interface": interface},
        "netem": {"duration": duration, "interface": interface, **params["netem"]},
        "etcd-stop": {"duration": duration},
        "leader-kill": {"component": params["component"]},
    }.get(scenario, {})
    ok, ret = _ask(node, fun, timeout=90, **kwargs)[node]
    if not ok:
        raise RuntimeError(f"{scenario} on {node}: {ret}")
    return ret


def _revert(scenario, node, model, run_dir) -> dict:
    """Make sure the fault is gone: the node's timer has usually undone it already."""
    if scenario == "power-off":
        token = run_dir / f"{node}.power-on"
        if token.exists():
            token.unlink()
            return _power(model, "on", node)
        return {"node": node, "note": "powered on by the detached timer"}
    if not _plan("scenario")(scenario)["lasting"]:
        return {"node": node, "note": "nothing to revert"}
    fault = {"node-isolate": "isolate"}.get(scenario, scenario)
    deadline = time.time() + 60
    while True:
        ok, ret = _ask(node, "chaos.revert", fault, timeout=20)[node]
        if ok:
            last = (ret.get("last") or {}).get(fault) or {}
            return {"node": node, "at": last.get("reverted_at") or time.time(),
                    "by": last.get("by"), "log": last.get("log")}  # fmt: skip
        if time.time() > deadline:
            return {"node": node, "error": str(ret)}
        time.sleep(2)


def _fetch_watchers(run_id, cps, deadline_s=WATCH_FETCH_S) -> tuple[dict, dict]:
    """({node: records}, {node: why missing}). A node just back from isolation may lose an
    answer on its way back (its minion reconnects: "Request timed out ... reconnecting" in
    its log), so nodes that did not answer are asked again until ``deadline_s``; the records
    stay on each node until every answer is in (fetched with ``remove=False``), then go."""
    watch, missing, left = {}, {}, list(cps)
    deadline = time.time() + deadline_s
    while left:
        answers = _ask(left, "chaos_watch.fetch", run_id, remove=False, timeout=30)
        for node, (ok, rows) in answers.items():
            if ok and isinstance(rows, list):
                watch[node] = rows
                missing.pop(node, None)
            else:
                missing[node] = str(rows)
        left = [n for n in left if n not in watch]
        if left and time.time() < deadline:
            time.sleep(5)
            continue
        break
    if watch:
        _ask(list(watch), "chaos_watch.discard", run_id, timeout=30)
    for node in missing:
        watch[node] = []
    return watch, missing


def _collect(run_id, probe_minion, cps, wait) -> tuple[dict, dict, dict]:
    ok, probe = _ask(probe_minion, "chaos_probe.fetch", run_id, wait=wait, timeout=wait + 30)[
        probe_minion
    ]
    if not ok:
        raise RuntimeError(f"the probe on {probe_minion} returned no result: {probe}")
    return (probe, *_fetch_watchers(run_id, cps))


def run(cluster, scenario, target=None, duration=20, *, force=False,
        component="kube-controller-manager", delay="200ms", jitter="20ms", loss=20,
        label=None, profile="kubeha", report=True, out_dir=None,
        gate_wait=GATE_WAIT_S, recover_wait=RECOVER_WAIT_S, lead_in=None, settle=None):  # fmt: skip
    """
    Run one chaos scenario on ``cluster`` and report it (see the module's docstring).
    ``label`` names the report row (default ``<scenario>@<target>``; trials with the
    same label are aggregated), ``profile`` which configuration was measured; ``lead_in``
    and ``settle`` override the pillar's seconds probed before and after the fault. A run
    forced below etcd quorum is judged on lost writes and recovery only (requests are
    expected to fail without quorum).

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_chaos.run lab apiserver-hang target=vip-holder duration=20
        salt-run kubeha_chaos.run lab netem target=cp-3 duration=60 delay=200ms loss=20
    """
    duration = float(duration)
    prepared = _prepare(
        cluster, scenario, target, duration, force=force, component=component, gate_wait=gate_wait
    )
    if isinstance(prepared, dict):
        return prepared
    model, snap, targets = prepared
    chaos, probe_cfg = model["chaos"], model["probe"]
    cps = [n["name"] for n in model["control_plane"]]
    run_id = f"{cluster}-{scenario}-{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(2)}"
    run_dir = Path(__opts__["cachedir"]) / "kubeha" / "chaos"
    run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    lead_in = float(chaos["lead_in"] if lead_in is None else lead_in)
    settle = float(chaos["settle"] if settle is None else settle)
    below_quorum = _plan("quorum_refusal")(scenario, targets, snap, model, False) is not None
    total = lead_in + duration + settle
    _start(cps, "chaos_watch.node", run_id, total + 10, model["vip"]["address"],
           instance=model["vrrp"]["instance"])  # fmt: skip
    _start([chaos["probe_minion"]], "chaos_probe.run", run_id, _vip_url(model), total,
           rate=probe_cfg["rate"], timeout=probe_cfg["timeout"],
           kubeconfig=chaos["probe_kubeconfig"], path=probe_cfg["path"],
           namespace=probe_cfg["namespace"], write_interval=probe_cfg["write_interval"],
           keepalive_interval=probe_cfg["keepalive_interval"],
           lease_interval=probe_cfg["lease_interval"], vip=model["vip"]["address"])  # fmt: skip
    macs = {n: ret for n, (ok, ret) in _ask(cps, "network.hw_addr", model["vip"]["interface"],
                                            timeout=20).items() if ok}  # fmt: skip
    started = _wait_probe(run_id, chaos["probe_minion"])
    if "error" in started:
        return _refused(f"the probe did not start on {chaos['probe_minion']}: {started['error']}")
    # The fault lands at a random point between two of the probe's requests. lead_in is a
    # whole number of request intervals: without this the fault came 1-25 ms after a request
    # left, every run, and that request was in flight on the failing node each time (B and
    # the hang lost exactly it in about 1 run in 3); faults do not keep time with clients.
    phase = random.uniform(0.0, 1.0 / float(probe_cfg["rate"]))  # noqa: S311 - not secret
    time.sleep(max(0.0, started["t0"] + lead_in + phase - time.time()))
    params = {"component": component, "netem": {"delay": delay, "jitter": jitter, "loss": loss}}
    faults, errors, went = [], [], {}
    for node in targets:
        try:
            if scenario == "power-off":
                __utils__["chaos_power.arm_power_on"](model, node, duration, run_dir)
            faults.append(_inject(scenario, node, model, duration, params))
            if scenario == "power-off":  # the power went at some instant of [at, until]
                went[node] = [faults[-1]["at"], faults[-1]["until"]]
        except RuntimeError as err:
            errors.append(str(err))
    fault_at = min((f["at"] for f in faults), default=time.time())
    time.sleep(max(0.0, fault_at + duration - time.time()))
    reverts = [_revert(scenario, f["node"], model, run_dir) for f in faults]
    # When the fault ended on the node (its timer's or our revert's time), else now.
    reverted_at = max([r["at"] for r in reverts if r.get("at")] or [time.time()])
    time.sleep(max(0.0, started["t0"] + total - time.time()))
    try:
        probe, watch, unwatched = _collect(run_id, chaos["probe_minion"], cps,
                                           wait=3 * float(probe_cfg["timeout"]) + 90)  # fmt: skip
    except RuntimeError as err:
        probe = None
        lost = str(err)
    gate = __salt__["kubeha_gate.final"](cluster, wait=recover_wait)
    recovered_at = time.time() if gate.get("result") else None
    if probe is None:
        msg = (f"{scenario} on {', '.join(targets)} ran and was reverted, but nothing was "
               f"measured: {lost}; final gate: {gate.get('comment')}")  # fmt: skip
        return {"result": False, "retcode": 1, "Error": msg, "comment": msg, "run_id": run_id}
    healing = _healing(cluster, probe["t0"], time.time())
    fault = {"scenario": scenario, "targets": targets, "at": fault_at,
             "reverted_at": reverted_at, "power_went": went,
             "dead": {n: w[0] for n, w in went.items()}}  # fmt: skip
    measured = __utils__["chaos_analysis.measure"](
        probe, watch, fault, vip_before=snap["vip"].get("holders") or [], unwatched=unwatched
    )
    slo = model.get("slo") or {}
    if below_quorum:  # only what must hold without quorum: no acknowledged write lost
        slo = {"writes_lost": slo.get("writes_lost")}
    judged = __utils__["chaos_verdicts.verdicts"](measured, slo, scenario, component)
    judged.append({"goal": "cluster healthy again (final gate)",
                   "measured": "healthy" if recovered_at else gate.get("comment"),
                   "pass": bool(recovered_at)})  # fmt: skip
    if errors:
        judged.append({"goal": "fault injected", "measured": "; ".join(errors), "pass": False})
    entry = {
        "run_id": run_id, "cluster": cluster, "scenario": scenario, "profile": profile,
        "label": label or f"{scenario}@{target or _plan('scenario')(scenario)['default_target']}",
        "targets": targets, "duration_s": duration, "lead_in_s": lead_in, "settle_s": settle,
        "below_quorum": below_quorum,
        "params": params["netem"] if scenario == "netem" else (
            {"component": component} if scenario == "leader-kill" else {}),
        "fault": {**fault, "injected": faults, "reverts": reverts, "errors": errors},
        "recovered_s": round(recovered_at - reverted_at, 1) if recovered_at else None,
        "before": {"vip": snap["vip"].get("holders"),
                   "leases": {x["name"]: x["holder_node"] for x in snap.get("leases") or []}},
        "macs": macs, "probe_options": probe.get("options"), "t0": probe["t0"], "end": probe["end"],
        "measured": measured, "verdicts": judged, "pass": all(v["pass"] for v in judged),
        "healing": healing,
        "raw": {"requests": probe.get("requests"), "keepalive": probe.get("keepalive"),
                "writes": probe.get("writes"), "arp": probe.get("arp")},
    }  # fmt: skip
    files = []
    if report:
        out = Path(out_dir or chaos.get("report_dir") or run_dir.parent / "reports")
        files = __salt__["kubeha_chaos_report.add"](cluster, entry, str(out), slo=model.get("slo"))
    return _summary(entry, files)


def _healing(cluster: str, start: float, end: float) -> dict | None:
    """The self-healing VIP's beacon reports and decisions during the run (issue 14), for
    the report's timeline; None where the kubeha_vip runner is absent or has no records."""
    try:
        found = __salt__["kubeha_vip.timeline"](cluster, start, end)
    except Exception as err:  # noqa: BLE001 - the chaos report does not depend on it
        log.debug("kubeha chaos: no self-healing records: %s", err)
        return None
    return found if found.get("events") or found.get("decisions") else None


def _wait_probe(run_id: str, minion: str, wait: float = 60) -> dict:
    deadline = time.time() + wait
    while time.time() < deadline:
        ok, ret = _ask(minion, "chaos_probe.status", run_id, timeout=15)[minion]
        if ok and ret.get("state") == "running":
            return ret
        if ok and ret.get("state") == "failed":
            return {"error": ret.get("error")}
        time.sleep(0.5)
    return {"error": f"no sign of the probe after {wait:g} s"}


def _summary(entry: dict, files: list[str]) -> dict:
    requests = entry["measured"]["requests"]
    req, lost = requests["overall"], requests["in_flight_at_power_off"]
    vip = entry["measured"]["vip"]
    words = (f"{entry['scenario']} on {', '.join(entry['targets'])} for {entry['duration_s']:g} s: "
             f"{req['failed']} of {req['count']} requests failed"
             + (f" ({lost} in flight at the power-off, whose switch took "
                f"{requests.get('power_off_window_s')} s)" if lost else "") + ", longest stall "
             f"{req['longest_stall_s']} s, VIP failover {vip.get('failover_s')} s, "
             f"writes lost {entry['measured']['writes']['lost']}")  # fmt: skip
    judged_failed = requests.get("judged_failed") or []
    if judged_failed:  # where each loss fell against the fault: [sent +s, cause, waited s]
        words += "; failed: " + ", ".join(f"sent {s:+g} s, {c}, waited {w:g} s"
                                          for s, c, w in judged_failed)  # fmt: skip
    unwatched = entry["measured"].get("unwatched") or {}
    if unwatched:  # a view the VIP and HAProxy timelines lack: said, not hidden
        words += f"; no watcher records from {', '.join(sorted(unwatched))}"
    failed = [f"{v['goal']} (measured {v['measured']})" for v in entry["verdicts"] if not v["pass"]]
    comment = words + ("; FAILED: " + "; ".join(failed) if failed else "; every SLO met")
    out = {"result": entry["pass"], "comment": comment, "run_id": entry["run_id"],
           "verdicts": entry["verdicts"], "files": files,
           "requests": req, "requests_judged": requests["judged"],
           "in_flight_at_power_off": lost,
           "power_off_window_s": requests.get("power_off_window_s"),
           "vip": {k: v for k, v in vip.items() if k != "timeline"},
           "leases": {k: {x: y for x, y in v.items() if x != "timeline"}
                      for k, v in entry["measured"]["leases"].items()},
           "writes": entry["measured"]["writes"]}  # fmt: skip
    if not entry["pass"]:
        out["retcode"] = 1
    return out


def runs_dir_cleanup(max_age_days: float = 7) -> dict:
    """
    Remove the master's leftover chaos token and log files older than ``max_age_days``.

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_chaos.runs_dir_cleanup
    """
    run_dir = Path(__opts__["cachedir"]) / "kubeha" / "chaos"
    cutoff = time.time() - float(max_age_days) * 86400
    removed = [p.name for p in run_dir.glob("*") if p.is_file() and p.stat().st_mtime < cutoff]
    for name in removed:
        os.unlink(run_dir / name)
    return {"removed": removed}
