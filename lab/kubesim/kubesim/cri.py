"""The container records kubelet and crictl share: kubesim's "container runtime".

containerd owns the real containers; here the kubelet starts each container as a process
and records it under /run/kubesim/cri (tmpfs: a power-off forgets them, like containerd's
task state). On a systemd machine every container runs in its own transient scope
(`systemd-run --scope --unit kubesim-<id>.scope`), outside kubelet.service's cgroup, so
`systemctl stop kubelet` leaves the static pods running, as containerd-shim does; a new
kubelet adopts them by PID (checked against /proc/<pid>/stat start time).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
import signal
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(os.environ.get("KUBESIM_CRI_ROOT", "/run/kubesim/cri"))

RUNNING, EXITED, CREATED, UNKNOWN = (
    "CONTAINER_RUNNING",
    "CONTAINER_EXITED",
    "CONTAINER_CREATED",
    "CONTAINER_UNKNOWN",
)
READY, NOTREADY = "SANDBOX_READY", "SANDBOX_NOTREADY"


def new_id() -> str:
    return secrets.token_hex(32)


def image_id(image: str) -> str:
    """A stable sha256 image id for an image reference (containerd reports the digest)."""
    return "sha256:" + hashlib.sha256(image.encode()).hexdigest()


def _stat_fields(pid: int) -> list[str]:
    """/proc/<pid>/stat after the command name (state, ppid, ...); [] if the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return []
    return stat[stat.rfind(")") + 2 :].split()


def proc_start_time(pid: int) -> str | None:
    fields = _stat_fields(pid)
    if fields and fields[0] == "Z":
        return None
    return fields[19] if len(fields) > 19 else None


def pid_writing_to(path: str) -> int:
    """The process whose stdout is `path` (a container's log file: one per container), the
    topmost if it forked; 0 if none."""
    found: dict[int, int] = {}
    for fd in Path("/proc").glob("[0-9]*/fd/1"):
        try:
            if os.readlink(fd) != path:
                continue
            pid = int(fd.parent.parent.name)
            found[pid] = int(_stat_fields(pid)[1])
        except (OSError, ValueError, IndexError):
            continue
    tops = sorted(pid for pid, ppid in found.items() if ppid not in found)
    return tops[0] if tops else 0


@dataclass
class Container:
    id: str
    pod_sandbox_id: str
    name: str
    attempt: int
    image: str
    command: list[str]
    labels: dict[str, str]
    annotations: dict[str, str]
    log_path: str
    state: str = CREATED
    created_at: int = field(default_factory=time.time_ns)
    started_at: int = 0
    finished_at: int = 0
    exit_code: int = 0
    reason: str = ""
    pid: int = 0
    pid_start: str = ""

    @property
    def image_ref(self) -> str:
        return image_id(self.image)

    def alive(self) -> bool:
        return bool(self.pid) and proc_start_time(self.pid) == self.pid_start


@dataclass
class Sandbox:
    id: str
    name: str
    namespace: str
    uid: str
    attempt: int
    labels: dict[str, str]
    annotations: dict[str, str]
    state: str = READY
    created_at: int = field(default_factory=time.time_ns)
    host_network: bool = True
    ip: str = ""


class Records:
    """JSON files under ROOT/{containers,sandboxes}, guarded by one flock."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or ROOT
        (self.root / "containers").mkdir(parents=True, exist_ok=True)
        (self.root / "sandboxes").mkdir(parents=True, exist_ok=True)

    @contextmanager
    def locked(self):
        fd = os.open(self.root / "lock", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _write(self, kind: str, ident: str, doc: dict) -> None:
        path = self.root / kind / f"{ident}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, path)

    def save_container(self, c: Container) -> None:
        self._write("containers", c.id, asdict(c))

    def save_sandbox(self, s: Sandbox) -> None:
        self._write("sandboxes", s.id, asdict(s))

    def containers(self) -> list[Container]:
        out = []
        for path in (self.root / "containers").glob("*.json"):
            try:
                out.append(Container(**json.loads(path.read_text())))
            except (OSError, ValueError, TypeError):
                continue
        return sorted(out, key=lambda c: c.created_at)

    def sandboxes(self) -> list[Sandbox]:
        out = []
        for path in (self.root / "sandboxes").glob("*.json"):
            try:
                out.append(Sandbox(**json.loads(path.read_text())))
            except (OSError, ValueError, TypeError):
                continue
        return sorted(out, key=lambda s: s.created_at)

    def remove_container(self, ident: str) -> None:
        (self.root / "containers" / f"{ident}.json").unlink(missing_ok=True)

    def remove_sandbox(self, ident: str) -> None:
        (self.root / "sandboxes" / f"{ident}.json").unlink(missing_ok=True)

    def find_container(self, prefix: str) -> Container | None:
        matches = [c for c in self.containers() if c.id.startswith(prefix)]
        if len(matches) > 1:
            raise ValueError(f"multiple IDs found with provided prefix: {prefix}")
        return matches[0] if matches else None

    def find_sandbox(self, prefix: str) -> Sandbox | None:
        matches = [s for s in self.sandboxes() if s.id.startswith(prefix)]
        return matches[0] if len(matches) == 1 else None

    def recover(self, c: Container, grace_s: float = 2.0) -> Container | None:
        """A container a dead kubelet left CREATED: killed between recording it and
        recording its start. containerd knows whether its task started; here the task is
        found by its log file. Adopted as RUNNING, or (no process) the record removed, as
        the kubelet's garbage collection removes a container that never ran. Returns None
        when removed. A record younger than `grace_s` is a start still under way."""
        if c.state != CREATED or time.time_ns() - c.created_at < grace_s * 1e9:
            return c
        pid = pid_writing_to(c.log_path)
        with self.locked():
            if pid:
                c.state, c.pid, c.pid_start = RUNNING, pid, proc_start_time(pid) or ""
                c.started_at = c.started_at or time.time_ns()
                self.save_container(c)
                return c
            self.remove_container(c.id)
        return None

    def refresh(self, c: Container) -> Container:
        """Mark a container whose process is gone as exited (what the runtime's task events do)."""
        if c.state == RUNNING and not c.alive():
            with self.locked():
                current = next((x for x in self.containers() if x.id == c.id), c)
                if current.state == RUNNING:
                    current.state = EXITED
                    current.finished_at = time.time_ns()
                    current.exit_code = current.exit_code or 255
                    current.reason = current.reason or "Error"
                    self.save_container(current)
                return current
        return c


def stop_container(records: Records, c: Container, timeout: float) -> Container:
    """CRI StopContainer: SIGTERM, wait `timeout`, then SIGKILL (timeout 0: SIGKILL at once)."""
    if c.state == RUNNING and c.alive():
        try:
            if timeout > 0:
                os.kill(c.pid, signal.SIGTERM)
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline and c.alive():
                    time.sleep(0.05)
            if c.alive():
                os.kill(c.pid, signal.SIGKILL)
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline and c.alive():
                    time.sleep(0.02)
                code = 137
            else:
                code = 0
        except ProcessLookupError:
            code = 0
        with records.locked():
            current = next((x for x in records.containers() if x.id == c.id), c)
            if current.state == RUNNING:
                current.state = EXITED
                current.finished_at = time.time_ns()
                current.exit_code = code
                current.reason = "Error" if code else "Completed"
                records.save_container(current)
            return current
    return records.refresh(c)
