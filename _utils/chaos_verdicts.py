"""
Verdicts of a chaos run: what ``chaos_analysis.measure`` measured, judged against the SLOs
(pillar ``slo:``, docs/pillar.md). Pure functions; the ``kubeha_chaos`` runner and the
report (``kubeha_chaos_report``) call them through ``__utils__["chaos_verdicts.*"]``.

- The failed-requests and stall goals judge every request except those in flight on a node
  at its power-off (``chaos_analysis.in_flight_at_power_off``): no server can answer them.
  The measured text says how many were left out; the report shows them.
- The transitions goal judges the spurious ones: a Lease leaving the faulted node is leader
  election doing its job (docs/chaos.md, "Lease transitions").
"""


def _judge(goal, measured, limit, unit="", also=""):
    passed = measured is not None and measured <= limit
    shown = ("none" if measured is None else f"{measured:g}{unit}") + also
    return {"goal": f"{goal} <= {limit:g}{unit}", "measured": shown, "pass": passed}


def spurious_transitions(lease: dict) -> int:
    """A Lease's spurious transitions; reports from before the split count them all."""
    return lease["spurious"] if "spurious" in lease else lease.get("transitions", 0)


def verdicts(measured, slo, scenario, lease_name="kube-controller-manager"):
    """One verdict per SLO that applies to ``scenario`` (``slo[scenario]`` + global ones)."""
    goals = (slo or {}).get(scenario) or {}
    # Requests in flight on a node at its power-off are lost with it (no server can answer
    # them); the goals judge the others, and the measured text says how many were left out.
    req = measured["requests"].get("judged") or measured["requests"]["overall"]
    lost = measured["requests"].get("in_flight_at_power_off") or 0
    also = f" ({lost} more in flight at the power-off, lost with the node)" if lost else ""
    out = []
    if goals.get("failed") is not None:
        out.append(_judge("failed requests", req["failed"], goals["failed"], also=also))
    if goals.get("stall_s") is not None:
        out.append(_judge("longest stall", req["longest_stall_s"], goals["stall_s"], " s",
                          also=also))  # fmt: skip
    if goals.get("ttfb_p95_ms") is not None:
        p95 = measured["requests"]["fault_window"]["ttfb_p95_ms"]
        out.append(_judge("TTFB p95 in the fault window", p95, goals["ttfb_p95_ms"], " ms"))
    if goals.get("vip_failover_s") is not None:
        out.append(
            _judge("VIP failover", measured["vip"]["failover_s"], goals["vip_failover_s"], " s")
        )
    lease = measured["leases"].get(lease_name) or {}
    if goals.get("leader_failover_s") is not None:
        out.append(_judge(f"{lease_name} leader failover", lease.get("failover_s"),
                          goals["leader_failover_s"], " s"))  # fmt: skip
    if goals.get("transitions") is not None:
        # A Lease leaving the faulted node is leader election doing its job; the goal is
        # about holders that lost it elsewhere (docs/chaos.md, "Lease transitions").
        worst = max((spurious_transitions(x) for x in measured["leases"].values()), default=0)
        out.append(_judge("leader transitions (spurious)", worst, goals["transitions"]))
    lost_limit = (slo or {}).get("writes_lost")
    if lost_limit is not None:
        out.append(_judge("acknowledged writes lost", measured["writes"]["lost"], lost_limit))
    return out
