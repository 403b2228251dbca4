"""`python -m lab status`: machines, their switches, their systemd, and the host services."""

from __future__ import annotations

from typing import Any

from lab import inventory, machine, procs, state
from lab.config import HOST_IP, MIRROR_URL, SALT_RET_PORT


def collect() -> dict[str, Any]:
    record = state.load()
    machines = {}
    order = sorted(record.machines, key=lambda n: int(record.machines[n].machine.ip.split(".")[3]))
    for name in order:
        rec = record.machines[name]
        m = rec.machine
        alive = rec.power == "on" and rec.nspawn is not None and procs.alive(rec.nspawn)
        if rec.frozen:
            systemd = "frozen"
        elif alive and rec.init_pid is not None:
            systemd = machine.system_state(rec.init_pid)
        else:
            systemd = "off"
        machines[name] = {
            "ip": m.ip,
            "role": m.role,
            "power": rec.power,
            "cable": rec.cable,
            "frozen": rec.frozen,
            "systemd": systemd,
            "nspawn_pid": rec.nspawn.pid if alive and rec.nspawn else None,
        }
    services = {
        name: {"pid": t.pid, "alive": procs.alive(t)} for name, t in record.services.items()
    }
    return {
        "up": bool(machines),
        "machines": machines,
        "services": services,
        "salt_master": f"{HOST_IP}:{SALT_RET_PORT}",
        "apt_mirror": MIRROR_URL,
        "base": record.base,
        "leftovers": None if machines else inventory.take().describe(),
    }


def render(info: dict[str, Any]) -> str:
    if not info["up"]:
        return f"lab is down (on the host: {info['leftovers']})"
    lines = [f"{'machine':<8} {'ip':<14} {'role':<14} {'power':<6} {'cable':<8} systemd"]
    for name, m in info["machines"].items():
        lines.append(
            f"{name:<8} {m['ip']:<14} {m['role']:<14} {m['power']:<6} "
            f"{m['cable']:<8} {m['systemd']}"
        )
    for name, s in info["services"].items():
        lines.append(f"service {name}: pid {s['pid']} {'alive' if s['alive'] else 'DEAD'}")
    lines.append(f"salt-master {info['salt_master']}, apt mirror {info['apt_mirror']}")
    return "\n".join(lines)
