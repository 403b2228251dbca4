"""
The cluster model's rules for chaos runs: ``chaos:`` (whether faults are allowed, the probe
minion, the site's power switch, limits), ``probe:`` (the probe's rate and timeouts) and
``slo:`` (the goals each scenario is judged on). String kinds are checked by
``kubeha_rules_strings``; shapes, numbers and what goes together here.

Run by ``kubeha_model.check`` with the other rule sets; messages have the same form
(``kubeha:<key>: <what is wrong>. <the fix>``).

CLI Example:

.. code-block:: bash

    salt-call kubeha_rules_chaos.problems "$(cat model.json)"
"""

from __future__ import annotations

__virtualname__ = "kubeha_rules_chaos"

SCENARIOS = ("apiserver-stop", "apiserver-hang", "node-isolate", "power-off", "netem",
             "etcd-stop", "leader-kill")  # fmt: skip
GOALS = ("failed", "stall_s", "ttfb_p95_ms", "vip_failover_s", "leader_failover_s", "transitions")
# key: (lowest, highest) for the numbers of chaos: and probe:.
LIMITS = {
    ("chaos", "max_duration"): (1, 86400),
    ("chaos", "lead_in"): (0, 600),
    ("chaos", "settle"): (0, 600),
    ("probe", "rate"): (0.1, 200),
    ("probe", "timeout"): (0.5, 300),
    ("probe", "write_interval"): (0.01, 60),
    ("probe", "keepalive_interval"): (0.01, 60),
    ("probe", "lease_interval"): (0.05, 60),
}


def __virtual__():
    return __virtualname__


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _chaos(model: dict) -> list[str]:
    chaos = model.get("chaos") or {}
    out = []
    if not isinstance(chaos.get("enabled", False), bool):
        out.append("kubeha:chaos:enabled: must be true or false.")
    minion = chaos.get("probe_minion") or ""
    cps = {n.get("name") for n in model.get("control_plane") or [] if isinstance(n, dict)}
    if chaos.get("enabled") and not minion:
        out.append(
            "kubeha:chaos:probe_minion: chaos is enabled but no probe is named; set it to a "
            "minion outside the control plane that has a kubeconfig for the cluster."
        )
    if minion in cps:
        out.append(
            f"kubeha:chaos:probe_minion: {minion} is a control plane; the probe must measure "
            "from outside (a control plane is what the faults hit). Use a client or bastion."
        )
    off, on = chaos.get("power_off") or [], chaos.get("power_on") or []
    for key, argv in (("power_off", off), ("power_on", on)):
        if not isinstance(argv, list):
            out.append(f"kubeha:chaos:{key}: must be a list of words (a command without a shell).")
        elif argv and not (isinstance(argv[0], str) and argv[0].startswith("/")):
            out.append(
                f"kubeha:chaos:{key}: start with the command's absolute path, not {argv[0]!r}."
            )
        elif argv and not any("{node}" in str(w) for w in argv):
            out.append(f"kubeha:chaos:{key}: no word holds {{node}}; which node would it switch?")
    if bool(off) != bool(on):
        out.append(
            "kubeha:chaos:power_off/power_on: set both (a node powered off must come back) or "
            "neither (power-off is then unavailable)."
        )
    return out


def _limits(model: dict) -> list[str]:
    out = []
    for (section, key), (low, high) in LIMITS.items():
        value = (model.get(section) or {}).get(key)
        if not _number(value) or not low <= value <= high:
            out.append(f"kubeha:{section}:{key}: {value!r}; use a number from {low:g} to {high:g}.")
    return out


def _slo(model: dict) -> list[str]:
    slo = model.get("slo")
    if not isinstance(slo, dict):
        return ["kubeha:slo: must be a mapping of scenario: {goal: limit} (see docs/pillar.md)."]
    out = []
    lost = slo.get("writes_lost")
    if lost is not None and (not _number(lost) or lost < 0):
        out.append(f"kubeha:slo:writes_lost: {lost!r}; use a count >= 0 (or null: report only).")
    for name, goals in slo.items():
        if name == "writes_lost":
            continue
        if name not in SCENARIOS:
            out.append(f"kubeha:slo:{name}: not a scenario; use one of {', '.join(SCENARIOS)}.")
            continue
        if not isinstance(goals, dict):
            out.append(f"kubeha:slo:{name}: must be a mapping of goal: limit.")
            continue
        for goal, limit in goals.items():
            if goal not in GOALS:
                out.append(f"kubeha:slo:{name}:{goal}: not a goal; use {', '.join(GOALS)}.")
            elif limit is not None and (not _number(limit) or limit < 0):
                out.append(
                    f"kubeha:slo:{name}:{goal}: {limit!r}; use a number >= 0, or null to "
                    "measure and report without judging."
                )
    return out


def problems(model: dict) -> list[str]:
    """
    Problems of the model's ``chaos:``, ``probe:`` and ``slo:`` sections.

    CLI Example:

    .. code-block:: bash

        salt-call kubeha_rules_chaos.problems "$(cat model.json)"
    """
    out: list[str] = []
    for rule in (_chaos, _limits, _slo):
        try:
            out += rule(model)
        except (KeyError, TypeError, AttributeError) as err:
            out.append(
                f"kubeha:{rule.__name__.lstrip('_')}: malformed section ({err!r}); "
                "see docs/pillar.md."
            )
    return out
