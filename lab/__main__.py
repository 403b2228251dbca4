"""python -m lab up|down|status|exec|salt|salt-run|fault|logs (run as root).

python -m lab up [--workers N] [--client]
python -m lab down
python -m lab status [--json]
python -m lab exec NODE -- CMD...
python -m lab salt 'cp-*' test.ping
python -m lab salt-run manage.up
python -m lab fault NODE power-off|power-on|cable-cut|cable-restore|freeze|thaw
python -m lab logs NODE UNIT [-n LINES]
"""

from __future__ import annotations

import argparse
import json
import sys

from lab import faults, lifecycle, machine, saltmaster, status
from lab.api import Lab
from lab.run import LabError, say


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lab", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="bring the lab up, or repair it (idempotent)")
    up.add_argument("--workers", type=int, default=0, help="worker machines w-1..w-N")
    up.add_argument("--client", action="store_true", help="also the client machine (.100)")
    sub.add_parser("down", help="remove every machine, mount, link, namespace and process")
    st = sub.add_parser("status", help="machines, their switches and services")
    st.add_argument("--json", action="store_true")
    ex = sub.add_parser("exec", help="run a command inside a machine")
    ex.add_argument("node")
    ex.add_argument("cmd", nargs=argparse.REMAINDER)
    for name in ("salt", "salt-run"):
        p = sub.add_parser(name, help=f"{name} against the lab master", add_help=False)
        p.add_argument("args", nargs=argparse.REMAINDER)
    fa = sub.add_parser("fault", help="power-off/on, cable-cut/restore, freeze/thaw")
    fa.add_argument("node")
    fa.add_argument("kind", choices=faults.KINDS)
    lg = sub.add_parser("logs", help="a unit's journal inside a machine")
    lg.add_argument("node")
    lg.add_argument("unit")
    lg.add_argument("-n", "--lines", type=int, default=200)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    lab = Lab()
    try:
        if args.command == "up":
            report = lifecycle.up(workers=args.workers, client=args.client)
            for part, seconds in report.timings.items():
                say(f"  {part:<12} {seconds:6.1f}s")
            say(
                f"lab up in {report.total:.1f}s: "
                + ", ".join(f"{n}={ip}" for n, ip in report.machines.items())
            )
            say("every minion answered test.ping")
            return 0
        if args.command == "down":
            lifecycle.down()
            say("lab down: no kha- namespace, link, mount, cgroup or process left")
            return 0
        if args.command == "status":
            info = status.collect()
            print(json.dumps(info, indent=2) if args.json else status.render(info))
            return 0
        if args.command == "exec":
            cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
            if not cmd:
                raise LabError("usage: python -m lab exec NODE -- CMD...")
            return machine.interactive(lab.init_pid(args.node), cmd)
        if args.command in ("salt", "salt-run"):
            return saltmaster.interactive(args.command, args.args)
        if args.command == "fault":
            event = faults.inject(args.node, args.kind)
            print(json.dumps(event.to_json(), sort_keys=True))
            return 0
        if args.command == "logs":
            print(lab.logs(args.node, args.unit, args.lines), end="")
            return 0
    except LabError as err:
        print(f"lab: {err}", file=sys.stderr)
        return 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
