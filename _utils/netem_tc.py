"""
Fault parameters and the ``tc`` netem backend's command lines, for the ``netem``
execution module. Pure functions: nothing here runs a command.

Durations are milliseconds (``200ms``, ``1.5s``, ``300us`` or a bare number of ms),
percentages 0-100 (``20`` or ``20%``), rates as tc spells them (``10mbit``).
"""

import os
import re
from pathlib import Path

from salt.exceptions import CommandExecutionError

KEYS = ("delay", "jitter", "loss", "duplicate", "corrupt", "rate")
NO_NETEM = (
    "this kernel has no sch_netem qdisc ({why}); on Ubuntu install "
    "linux-modules-extra-{release} and `modprobe sch_netem`, or use backend=nfqueue "
    "(userspace delay and loss)"
)


def ms(value):
    """'200ms', '1.5s', '300us', 200 -> milliseconds."""
    match = re.fullmatch(r"\s*([\d.]+)\s*(us|ms|s)?\s*", str(value))
    if not match:
        raise CommandExecutionError(f"not a duration: {value!r} (use 200ms, 1s)")
    number, unit = float(match.group(1)), match.group(2) or "ms"
    return number * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def pct(value):
    """'20%', 20 -> 20.0 (0..100)."""
    try:
        number = float(str(value).rstrip("%"))
    except ValueError as err:
        raise CommandExecutionError(f"not a percentage: {value!r}") from err
    if not 0 <= number <= 100:
        raise CommandExecutionError(f"percentage out of range: {value!r}")
    return number


def seconds(value):
    """A duration in seconds (60, '90s', '1.5s'); 0 for none."""
    if value in (None, "", 0, "0"):
        return 0.0
    return ms(value if re.search(r"[a-z]", str(value)) else f"{value}s") / 1000.0


def normalize(delay=None, jitter=None, loss=None, *, duplicate=None, corrupt=None, rate=None):
    """Validated parameters (ms and %), without the ones not asked for."""

    def given(v):
        return v not in (None, "")

    out = {
        "delay": ms(delay) if given(delay) else None,
        "jitter": ms(jitter) if given(jitter) else None,
        "loss": pct(loss) if given(loss) else None,
        "duplicate": pct(duplicate) if given(duplicate) else None,
        "corrupt": pct(corrupt) if given(corrupt) else None,
        "rate": str(rate) if given(rate) else None,
    }
    if out["jitter"] and not out["delay"]:
        raise CommandExecutionError("jitter needs a delay")
    if out["rate"] and not re.fullmatch(r"[\d.]+\s*[kmgt]?(bit|bps)", out["rate"], re.I):
        raise CommandExecutionError(f"not a rate: {rate!r} (use 10mbit, 500kbit)")
    found = {k: v for k, v in out.items() if v is not None}
    if not found:
        raise CommandExecutionError("no fault given: delay, jitter, loss, duplicate, corrupt, rate")
    return found


def num(value):
    """A number as tc reads it: 200.0 -> '200', 1.5 -> '1.5'."""
    return f"{value:g}"


def _tc(netns):
    return ["tc", *(["-n", netns] if netns else [])]


def command(action, ifname, params, netns=""):
    """``tc qdisc add|change dev IF root netem ...`` as an argument list."""
    cmd = [*_tc(netns), "qdisc", action, "dev", ifname, "root", "netem"]
    if "delay" in params:
        cmd += ["delay", f"{num(params['delay'])}ms"]
        if params.get("jitter"):
            cmd.append(f"{num(params['jitter'])}ms")
    for key in ("loss", "duplicate", "corrupt"):
        if key in params:
            cmd += [key, f"{num(params[key])}%"]
    if "rate" in params:
        cmd += ["rate", params["rate"]]
    return cmd


def clear_command(ifname, netns=""):
    """``tc qdisc del dev IF root``."""
    return [*_tc(netns), "qdisc", "del", "dev", ifname, "root"]


def show_command(ifname, netns=""):
    """``tc qdisc show dev IF``."""
    return [*_tc(netns), "qdisc", "show", "dev", ifname]


def parse_show(text):
    """
    The root netem qdisc of ``tc qdisc show dev IF``, parsed; None when there is none.
    (iproute2 tc/q_netem.c netem_print_opt: "delay %s  %s", "loss %s", ...)
    """
    for line in text.splitlines():
        if not re.match(r"qdisc netem \S+ root\b", line):
            continue
        out = {"raw": line.strip()}
        if m := re.search(r"\bdelay ([\d.]+(?:us|ms|s))(?:\s+([\d.]+(?:us|ms|s)))?", line):
            out["delay"] = ms(m.group(1))
            if m.group(2):
                out["jitter"] = ms(m.group(2))
        for key in ("loss", "duplicate", "corrupt"):
            if m := re.search(rf"\b{key} (?:random )?([\d.]+)%", line):
                out[key] = float(m.group(1))
        if m := re.search(r"\brate (\S+)", line):
            out["rate"] = m.group(1)
        return out
    return None


def no_netem(why, release):
    """The error for a kernel without sch_netem, with the fix."""
    return NO_NETEM.format(why=why, release=release)


def kernel_netem(modprobe=None):
    """
    Whether the kernel offers the netem qdisc: loaded, built in, or loadable by
    ``modprobe()`` (a callable returning (retcode, message), None when there is none).
    Returns {"available", "reason"}; the reason carries the fix when it is not.
    """
    if Path("/sys/module/sch_netem").exists():
        return {"available": True, "reason": "sch_netem is loaded"}
    release = os.uname().release
    builtin = Path(f"/lib/modules/{release}/modules.builtin")
    if builtin.is_file() and "sch_netem.ko" in builtin.read_text():
        return {"available": True, "reason": "sch_netem is built into the kernel"}
    if modprobe is None:
        why = f"sch_netem is not loaded and /lib/modules/{release} has no way to load it"
    else:
        retcode, message = modprobe()
        if retcode == 0:
            return {"available": True, "reason": "modprobe sch_netem loaded it"}
        why = message or "modprobe sch_netem failed"
    return {"available": False, "reason": no_netem(why, release)}
