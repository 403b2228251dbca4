"""
Ask minions from the master's side (runners): one call, one result shape for every caller.

``ask(opts, nodes, fun, ...)`` returns ``{node: (ok, return)}`` for every node asked: a node
that did not answer, answered "Minion did not return", failed (retcode != 0) or returned
Salt's own error text maps to ``(False, message)``. Runners use it as
``__utils__["kubeha_minions.ask"](__opts__, ...)``.
"""

import salt.client
import salt.utils.user

# What Salt returns instead of raising when a function is missing or failed on the minion.
ERROR_PREFIXES = ("ERROR", "Traceback", "The minion function", "Minion did not return")


def _client(opts):
    """A LocalClient that authenticates as the process it runs in. An orchestration started
    by the reactor runs with ``opts["user"] = "Reactor"`` (salt/runners/state.py,
    orchestrate: ``__opts__["user"] = __user__``), so LocalClient would read the master key
    of a user "Reactor" that does not exist and every publish would fail with "Master runs
    as 'root', but user in payload is 'root'"."""
    return salt.client.get_local_client(mopts={**opts, "user": salt.utils.user.get_user()})


def _verdict(node, fun, ret, retcode) -> tuple[bool, object]:
    if isinstance(ret, str) and ret.startswith("Minion did not return"):
        return False, f"{node} did not answer {fun} ({ret}): is the machine up?"
    if (retcode or 0) != 0 or (isinstance(ret, str) and ret.startswith(ERROR_PREFIXES)):
        return False, ret
    return True, ret


def ask(opts, nodes, fun, *args, timeout=30, **kwargs):
    """{node: (ok, return)} for ``fun(*args, **kwargs)`` on each of ``nodes``."""
    nodes = [nodes] if isinstance(nodes, str) else list(nodes)
    client = _client(opts)
    try:
        res = client.cmd(
            nodes,
            fun,
            arg=list(args),
            kwarg=kwargs,
            tgt_type="list",
            timeout=timeout,
            full_return=True,
        )
    finally:
        client.destroy()
    out = {}
    for node in nodes:
        answer = res.get(node)
        if not isinstance(answer, dict):
            out[node] = (False, f"{node} did not answer {fun} within {timeout:g} s")
            continue
        out[node] = _verdict(node, fun, answer.get("ret"), answer.get("retcode"))
    return out


def ask_steps(opts, nodes, steps, timeout=30):
    """{node: [(ok, return) for each step]} for ``steps``, ``[(fun, args, kwargs)]``, run in
    order on each of ``nodes`` in one job (Salt's compound command: one publish, one round
    trip, however many steps; each step runs whether an earlier one failed or not, so a step
    that depends on one checks for itself). The functions must differ."""
    nodes = [nodes] if isinstance(nodes, str) else list(nodes)
    funs = [fun for fun, _, _ in steps]
    if len(set(funs)) != len(funs):
        raise ValueError(f"ask_steps: a function twice in {funs}")
    # A compound job takes its keyword arguments inside each step's argument list.
    args = [[*a, {"__kwarg__": True, **kw}] if kw else list(a) for _, a, kw in steps]
    client = _client(opts)
    try:
        res = client.cmd(nodes, funs, arg=args, tgt_type="list", timeout=timeout,
                         full_return=True)  # fmt: skip
    finally:
        client.destroy()
    out = {}
    for node in nodes:
        answer = res.get(node)
        if not isinstance(answer, dict) or not isinstance(answer.get("ret"), dict):
            why = answer.get("ret") if isinstance(answer, dict) else None
            out[node] = [(False, f"{node} did not answer {fun} within {timeout:g} s"
                          + (f" ({why})" if why else "")) for fun in funs]  # fmt: skip
            continue
        codes = answer.get("retcode")
        codes = codes if isinstance(codes, dict) else {}
        out[node] = [
            _verdict(node, fun, answer["ret"].get(fun), codes.get(fun, 1))
            if fun in answer["ret"] else (False, f"{node} returned nothing for {fun}")
            for fun in funs
        ]  # fmt: skip
    return out


def start(opts, nodes, fun, *args, **kwargs):
    """Start ``fun(*args, **kwargs)`` on ``nodes`` without waiting (``salt --async``); the
    job id. For what runs longer than a call should wait: probes, watchers."""
    nodes = [nodes] if isinstance(nodes, str) else list(nodes)
    client = _client(opts)
    try:
        jid = client.cmd_async(nodes, fun, arg=list(args), kwarg=kwargs, tgt_type="list")
    finally:
        client.destroy()
    if not jid:
        raise RuntimeError(f"could not start {fun} on {', '.join(nodes)}")
    return jid
