"""
The site's power switch for power-off chaos runs, run on the master by the ``kubeha_chaos``
runner: ``kubeha:chaos:power_off`` / ``power_on`` are argument lists with ``{node}``
replaced by the node's name (the lab's fault switch; a site's IPMI or PDU command).

Loaded as ``__utils__["chaos_power.*"]``.
"""

import json
import subprocess
import sys
import time

TIMEOUT_S = 180
# A detached power-on after a power-off whose runner died: sleeps, then switches the node
# back on unless the runner removed the token file (it powered the node on itself).
POWER_ON_LATER = (
    "import os, subprocess, sys, time\n"
    "time.sleep(float(sys.argv[2]))\n"
    "try:\n    os.unlink(sys.argv[1])\nexcept FileNotFoundError:\n    sys.exit(0)\n"
    "subprocess.run(sys.argv[3:], timeout=600, check=False)\n"
)


def switch(model: dict, which: str, node: str) -> dict:
    """Run the switch's ``which`` (off/on) command for ``node``. Returns when the power went
    as an interval: it went at some instant of [``at``, ``until``]. A switch may print
    ``{"at": <epoch s>, "until": <epoch s>}`` (``until`` defaults to ``at``); one that prints
    neither gets [its start, its return], since the power went somewhere in between.
    Raises RuntimeError, without quoting the command line (it may hold a credential)."""
    argv = [w.replace("{node}", node) for w in model["chaos"][f"power_{which}"]]
    started = time.time()
    try:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_S,
                             check=False)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as err:
        raise RuntimeError(
            f"the power switch ({which}) for {node} failed: {type(err).__name__}"
        ) from err
    if res.returncode != 0:
        # The command line is not quoted back: a site may pass a credential in it.
        raise RuntimeError(f"the power switch ({which}) for {node} exited {res.returncode}")
    returned = time.time()
    said = {}
    for line in res.stdout.splitlines():
        # A switch may print {"at": <epoch s>, "until": <epoch s>} for when the power went.
        try:
            doc = json.loads(line)
            got = {k: float(doc[k]) for k in ("at", "until") if doc.get(k) is not None}
            said = got or said
        except (ValueError, AttributeError, TypeError, KeyError):
            continue
    at = said.get("at", started)
    until = max(at, said.get("until", at if "at" in said else returned))
    return {"fault": f"power-{which}", "node": node, "at": at, "until": until,
            "returned": returned}  # fmt: skip


def arm_power_on(model: dict, node: str, duration: float, run_dir) -> None:
    """Start the detached power-on for ``node`` (``duration`` + 15 s from now), and its
    token file in ``run_dir``: the runner removes the token when it powers the node on
    itself; a runner that died leaves it, and the node comes back anyway."""
    token = run_dir / f"{node}.power-on"
    token.write_text(str(time.time()))
    argv = [w.replace("{node}", node) for w in model["chaos"]["power_on"]]
    log_path = run_dir / f"{node}.power-on.log"
    with open(log_path, "ab") as out:
        subprocess.Popen(  # noqa: S603 - argument list from the validated pillar
            [sys.executable, "-c", POWER_ON_LATER, str(token), f"{duration + 15:.1f}", *argv],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, close_fds=True,
        )  # fmt: skip
