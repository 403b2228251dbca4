"""
A chain of kubeha's own iptables rules that cannot outlive its bound: the systemd timer
that removes it is armed before any rule is written. ``vip_handover`` forwards the old
holder's connections with one (mangle PREROUTING), ``vip_takeover`` drops the old holder's
adverts with another (filter INPUT).

Every call that runs a command takes the module's ``cmd.run_all`` first; ``ipt`` is the
iptables command line up to the chain's arguments (``["iptables", "-w", "5", "-t",
"mangle"]``). Loaded as ``__utils__["kubeha_timed_chain.<name>"]``.
"""

import shlex

from salt.exceptions import CommandExecutionError


def run(run_all, cmd: list[str], check: bool = True) -> dict:
    """``cmd`` run without a shell (20 s at most); a failure raised when ``check``."""
    res = run_all(cmd, python_shell=False, timeout=20, ignore_retcode=True,
                  output_loglevel="debug")  # fmt: skip
    if check and res["retcode"] != 0:
        raise CommandExecutionError(f"{' '.join(cmd)}: {(res['stderr'] or res['stdout']).strip()}")
    return res


def teardown(ipt: list[str], hook: str, chain: str) -> list[list[str]]:
    """Everything ``install`` adds, removed; each step may find nothing to remove."""
    return [[*ipt, "-D", hook, "-j", chain], [*ipt, "-F", chain], [*ipt, "-X", chain]]


def arm(run_all, unit: str, seconds: float, steps: list[list[str]], timer_argv) -> dict:
    """The timer ``unit`` that runs ``steps`` (``teardown``) after ``seconds``, armed or
    re-armed (the latest call's bound counts). ``timer_argv`` builds the systemd-run command
    (``chaos_revert.systemd_timer_argv``, the chaos faults' own timer)."""
    # A timer of an earlier call would collide with the name; --collect unloads it once
    # stopped.
    run(run_all, ["systemctl", "stop", f"{unit}.timer", f"{unit}.service"], check=False)
    script = "; ".join(f"{shlex.join(cmd)} 2>/dev/null" for cmd in steps) + "; true"
    run(run_all, timer_argv(unit, seconds, ["/bin/sh", "-c", script]))
    return {"unit": f"{unit}.timer", "clears_in_s": round(seconds, 3)}


def install(run_all, ipt: list[str], hook: str, chain: str, rules: list[list[str]], *,
            flush: bool = False) -> int:  # fmt: skip
    """``chain`` made if missing (emptied first with ``flush``), each of ``rules`` appended
    unless there, then jumped to first thing in ``hook``; the number of rules added."""
    if run(run_all, [*ipt, "-nL", chain], check=False)["retcode"] != 0:
        run(run_all, [*ipt, "-N", chain])
    if flush:
        run(run_all, [*ipt, "-F", chain])
    added = 0
    for rule in rules:
        if run(run_all, [*ipt, "-C", chain, *rule], check=False)["retcode"] != 0:
            run(run_all, [*ipt, "-A", chain, *rule])
            added += 1
    if run(run_all, [*ipt, "-C", hook, "-j", chain], check=False)["retcode"] != 0:
        run(run_all, [*ipt, "-I", hook, "1", "-j", chain])
    return added


def clear(run_all, unit: str, steps: list[list[str]]) -> None:
    """``steps`` (``teardown``) now, and the timer that would have run them stopped."""
    for cmd in steps:
        run(run_all, cmd, check=False)
    run(run_all, ["systemctl", "stop", f"{unit}.timer"], check=False)


def rules(run_all, ipt: list[str], chain: str) -> list[str]:
    """The rules in ``chain`` (``-A ...`` lines), none when it does not exist."""
    res = run(run_all, [*ipt, "-S", chain], check=False)
    lines = res["stdout"].splitlines() if res["retcode"] == 0 else []
    return [r for r in lines if r.startswith("-A ")]


def timer_active(run_all, unit: str) -> bool:
    res = run(run_all, ["systemctl", "is-active", f"{unit}.timer"], check=False)
    return res["stdout"].strip() == "active"
