"""The lab as a Python object, for tests and tools.

from lab.api import Lab
lab = Lab.up(client=True)            # or Lab() to attach to a running lab
lab.exec("cp-1", "systemctl", "is-system-running").stdout
lab.salt("cp-*", "test.ping")        # {"cp-1": True, ...} (parsed --out=json)
lab.salt_run("manage.up")
event = lab.fault("cp-2", "power-off")   # FaultEvent(at=<epoch s>, ...)
lab.ip("cp-1"), lab.vip, lab.host_ip
"""

from __future__ import annotations

import subprocess
from typing import Any

from lab import faults, inventory, lifecycle, machine, procs, saltmaster, state
from lab.config import HOST_IP, MIRROR_URL, VIP, machine_from_name
from lab.run import LabError, wait_for


class Lab:
    """A handle on the running lab; every call reads the current record from lab/.state."""

    host_ip = HOST_IP
    vip = VIP
    mirror_url = MIRROR_URL

    @classmethod
    def up(cls, workers: int = 0, client: bool = False) -> Lab:
        """Bring the lab up (or repair it) and return a handle; `last_up` holds the report."""
        report = lifecycle.up(workers=workers, client=client)
        lab = cls()
        lab.last_up = report
        return lab

    def __init__(self) -> None:
        self.last_up: lifecycle.UpReport | None = None

    # --- what is there -----------------------------------------------------------------
    @property
    def nodes(self) -> list[str]:
        """Machines of this lab (on or off), in topology order."""
        names = list(state.load().machines)
        return sorted(names, key=lambda n: machine_from_name(n).ip.split(".")[-1].zfill(3))

    @property
    def control_planes(self) -> list[str]:
        return [n for n in self.nodes if n.startswith("cp-")]

    @property
    def ips(self) -> dict[str, str]:
        return {n: machine_from_name(n).ip for n in self.nodes}

    def ip(self, node: str) -> str:
        return machine_from_name(node).ip

    def is_up(self) -> bool:
        """Every recorded machine powered on and its nspawn alive, services alive."""
        record = state.load()
        if not record.machines or len(record.services) < 2:
            return False
        return all(procs.alive(s) for s in record.services.values()) and all(
            r.power == "on" and r.nspawn and procs.alive(r.nspawn) for r in record.machines.values()
        )

    def exists(self) -> bool:
        """Anything of a lab on the host, healthy or not: a live process of this checkout's
        record, or any kha- namespace, link, mount, cgroup or process (another checkout's
        lab has the same names). Whoever finds one did not start it (tests/lab/conftest.py)."""
        record = state.load()
        tracked = [*record.services.values()]
        tracked += [r.nspawn for r in record.machines.values() if r.nspawn]
        return any(procs.alive(t) for t in tracked) or not inventory.take().empty()

    def _record(self, node: str) -> state.MachineRecord:
        rec = state.load().machines.get(node)
        if rec is None:
            raise LabError(f"{node} is not part of the running lab ({', '.join(self.nodes)})")
        return rec

    def init_pid(self, node: str) -> int:
        """PID (on the host) of the machine's systemd; LabError if it is off."""
        rec = self._record(node)
        if rec.power != "on" or rec.init_pid is None:
            raise LabError(f"{node} is powered off")
        return rec.init_pid

    # --- inside a machine -------------------------------------------------------------
    def exec(
        self,
        node: str,
        *cmd: str,
        timeout: float = 120,
        check: bool = True,
        input: str | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside `node` (as root, PATH set); LabError on failure if `check`."""
        return machine.exec_in(
            self.init_pid(node), list(cmd), timeout=timeout, check=check, input=input, env=env
        )

    def sh(self, node: str, script: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """Run a shell script inside `node` (`sh -c`)."""
        return self.exec(node, "sh", "-c", script, **kwargs)

    def system_state(self, node: str) -> str:
        return machine.system_state(self.init_pid(node))

    def logs(self, node: str, unit: str, lines: int = 200) -> str:
        """The unit's journal inside the machine (this boot)."""
        return self.exec(
            node,
            "journalctl",
            "-u",
            unit,
            "-b",
            "--no-pager",
            "-n",
            str(lines),
            "-o",
            "short-precise",
            check=False,
        ).stdout

    # --- Salt ----------------------------------------------------------------------------
    def salt(self, *args: str, timeout: float = 300) -> Any:
        """`salt ARGS --out=json --static` on the lab master, parsed ({minion: return})."""
        return saltmaster.cli_json("salt", list(args), timeout=timeout)

    def salt_run(self, *args: str, timeout: float = 600) -> Any:
        """`salt-run ARGS --out=json --static` on the lab master, parsed."""
        return saltmaster.cli_json("salt-run", list(args), timeout=timeout)

    def salt_cli(self, program: str, *args: str, timeout: float = 600):
        """Any master-side Salt CLI (salt, salt-run, salt-key, salt-cp), raw text result."""
        return saltmaster.cli(program, list(args), timeout=timeout)

    def wait_minions(self, nodes: list[str] | None = None, timeout: float = 120) -> float:
        """Until each node's minion answers test.ping; returns seconds waited."""
        return lifecycle.wait_minions(nodes or self.nodes, timeout=timeout)

    # --- faults ------------------------------------------------------------------------
    def fault(self, node: str, kind: str) -> faults.FaultEvent:
        """power-off | power-on | cable-cut | cable-restore | freeze | thaw (see lab.faults)."""
        return faults.inject(node, kind)

    def machine_state(self, node: str) -> dict[str, Any]:
        rec = self._record(node)
        return {"power": rec.power, "cable": rec.cable, "frozen": rec.frozen}

    def restore(self, *nodes: str, boot_timeout: float = 120) -> None:
        """Undo every fault on `nodes` (default: all): thaw, plug in, power on; then wait
        until each is running and its minion answers."""
        nodes = nodes or tuple(self.nodes)
        for node in nodes:
            rec = self._record(node)
            if rec.frozen:
                self.fault(node, "thaw")
            if rec.cable == "cut":
                self.fault(node, "cable-restore")
            if rec.power == "off":
                self.fault(node, "power-on")
        for node in nodes:
            wait_for(
                lambda node=node: self.system_state(node) in ("running", "degraded"),
                timeout=boot_timeout,
                what=f"{node} running",
            )
        self.wait_minions(list(nodes), timeout=boot_timeout)
