"""Drive the kubeha formula on the lab the way an operator does on a real master.

Everything here goes through the lab's Salt master (`salt`, `salt-run`), except handing a
kubeconfig to the client machine, which stands in for an operator's laptop. Used by
`make demo` (lab/demo.py) and the end-to-end tests (tests/lab/test_bootstrap.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from lab.api import Lab
from lab.run import LabError

CLUSTER = "lab"
CLIENT_KUBECONFIG = "/root/.kube/config"


@dataclass
class StateRun:
    """A highstate's outcome per minion: how many states, which changed, which failed."""

    states: dict[str, int] = field(default_factory=dict)
    changed: dict[str, list[str]] = field(default_factory=dict)
    failed: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not any(self.failed.values())

    @property
    def changes(self) -> int:
        return sum(len(c) for c in self.changed.values())

    def describe(self) -> str:
        parts = [
            f"{m}: {self.states[m]} states, {len(self.changed[m])} changed"
            + (f", FAILED {self.failed[m]}" if self.failed[m] else "")
            for m in sorted(self.states)
        ]
        return "; ".join(parts)


def state_run(result: dict[str, Any]) -> StateRun:
    """Summarise `salt ... state.apply --out=json` ({minion: {state_id: {...}}})."""
    run = StateRun()
    for minion, states in result.items():
        if not isinstance(states, dict):
            # A render error comes back as a list of messages.
            run.states[minion], run.changed[minion] = 0, []
            run.failed[minion] = [str(states)]
            continue
        run.states[minion] = len(states)
        run.changed[minion] = [s["__id__"] for s in states.values() if s.get("changes")]
        run.failed[minion] = [
            f"{s['__id__']}: {s.get('comment', '')[:300]}"
            for s in states.values()
            if s.get("result") is False
        ]
    return run


@dataclass
class OrchStep:
    id: str
    result: bool
    seconds: float
    comment: str


def orch_steps(result: dict[str, Any]) -> list[OrchStep]:
    """The steps of `salt-run state.orch ... --out=json`, in the order they ran."""
    data = result.get("data", result)
    (steps,) = data.values() if len(data) == 1 else (data,)
    if not isinstance(steps, dict):
        raise LabError(f"orchestration did not run: {steps}")
    out = []
    for step in sorted(steps.values(), key=lambda s: s.get("__run_num__", 0)):
        changes = step.get("changes") or {}
        ret = changes.get("return") if isinstance(changes, dict) else None
        comment = ret.get("comment") if isinstance(ret, dict) and "comment" in ret else None
        out.append(
            OrchStep(
                id=step["__id__"],
                result=bool(step["result"]),
                seconds=round(step.get("duration", 0) / 1000.0, 1),
                comment=str(comment or step.get("comment", "")),
            )
        )
    return out


def sync(lab: Lab) -> None:
    """Deliver _modules, _states, _runners... to every minion and to the master."""
    lab.salt("*", "saltutil.sync_all", timeout=300)
    lab.salt_run("saltutil.sync_all", timeout=300)


def highstate(lab: Lab, target: str = "cp-*") -> StateRun:
    # Long Salt timeouts: a first converge installs packages on two busy cores, and a minion
    # too busy to answer saltutil.find_job within the default 10 s would be dropped from the
    # result while it is still applying.
    result = lab.salt("--timeout=900", target, "state.apply", timeout=1200)
    run = state_run(result)
    missing = sorted(set(lab.control_planes if target == "cp-*" else []) - set(run.states))
    if missing:
        raise LabError(f"state.apply: no answer from {missing} (still running, or down)")
    return run


def bootstrap(lab: Lab, **pillar: Any) -> list[OrchStep]:
    arg = "pillar=" + json.dumps({"cluster": CLUSTER, **pillar})
    return orch_steps(lab.salt_run("state.orch", "orch.bootstrap", arg, timeout=2400))


def upgrade(lab: Lab, timeout: float = 3600, **pillar: Any) -> tuple[list[OrchStep], str]:
    """`salt-run state.orch orch.upgrade`: its steps (empty when it was refused while
    rendering) and everything it printed, which says why."""
    arg = "pillar=" + json.dumps({"cluster": CLUSTER, **pillar})
    proc = lab.salt_cli(
        "salt-run", "--out=json", "state.orch", "orch.upgrade", arg, timeout=timeout
    )
    try:
        steps = orch_steps(json.loads(proc.stdout))
    except (json.JSONDecodeError, KeyError, TypeError, LabError):
        steps = []
    return steps, proc.stdout + proc.stderr


def kubeconfig_to_client(lab: Lab, source: str = "cp-1", client: str = "client") -> None:
    """Copy the admin kubeconfig to the client machine (an operator's laptop), mode 0600."""
    text = lab.exec(source, "cat", "/etc/kubernetes/admin.conf").stdout
    lab.sh(client, f"umask 077; mkdir -p /root/.kube; cat > {CLIENT_KUBECONFIG}", input=text)


def steady_state_report(lab: Lab, out_dir: str, duration: int = 60, rate: int = 5) -> dict:
    return lab.salt_run(
        "kubeha_report.steady_state",
        CLUSTER,
        "probe=client",
        f"duration={duration}",
        f"rate={rate}",
        f"kubeconfig={CLIENT_KUBECONFIG}",
        f"out_dir={out_dir}",
        timeout=duration + 600,
    )
