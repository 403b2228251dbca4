"""
Userspace netem: delay, jitter and loss for one interface's egress, through NFQUEUE.

For kernels without ``sch_netem``. An iptables rule (mangle POSTROUTING, ``-o <if>``)
queues the interface's outgoing packets to this daemon, which holds each one for the
delay (plus jitter) and then accepts it, or drops it with the loss probability. Pure
Python netlink (no libnetfilter_queue, no compiled extension) so that it runs on the
minion's own Python (the Salt onedir).

Safety, because a chaos tool must never outlive its welcome:

- the rule uses ``--queue-bypass`` and the queue ``FAIL_OPEN``: if this daemon dies or
  falls behind, packets pass undelayed instead of being dropped;
- the daemon removes its rules on exit (duration reached, SIGTERM, SIGINT, error);
- rules carry the comment ``kubeha-netem:<if>``, so ``netem.clear`` finds and removes
  them even after a SIGKILL.

Protocol: include/uapi/linux/netfilter/nfnetlink_queue.h and nfnetlink.h; the call
sequence follows libnetfilter_queue (bind queue, set copy mode, set flags).

Also a timer (``timer`` sub-command): runs a command after a delay, detached, used by
the tc backend to clear a qdisc when no systemd is there to do it.

Usage::

    python netem_nfqueue.py run --ifname eth0 --queue 4201 --delay-ms 200 --loss-pct 20 \\
        --duration 60 --state /run/kubeha/netem/eth0.json
    python netem_nfqueue.py rules-clear --ifname eth0
    python netem_nfqueue.py timer --after 60 --state F --token T -- tc qdisc del dev eth0 root
"""

import argparse
import contextlib
import heapq
import json
import os
import random
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

NETLINK_NETFILTER = 12
SOL_NETLINK = 270
NETLINK_NO_ENOBUFS = 5
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLMSG_ERROR = 0x2
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET = 0
NFQNL_MSG_VERDICT = 1
NFQNL_MSG_CONFIG = 2
NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQA_CFG_CMD = 1
NFQA_CFG_PARAMS = 2
NFQA_CFG_QUEUE_MAXLEN = 3
NFQA_CFG_MASK = 4
NFQA_CFG_FLAGS = 5
NFQNL_CFG_CMD_BIND = 1
NFQNL_CFG_CMD_UNBIND = 2
NFQNL_COPY_META = 1
NFQA_CFG_F_FAIL_OPEN = 1
NF_DROP = 0
NF_ACCEPT = 1
COMMENT = "kubeha-netem:{ifname}"
TOOLS = ("iptables", "ip6tables")


def _attr(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * ((4 - length % 4) % 4)


def _attrs(data: bytes) -> dict[int, bytes]:
    out, pos = {}, 0
    while pos + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, pos)
        if length < 4:
            break
        out[kind & 0x7FFF] = data[pos + 4 : pos + length]  # strip NLA_F_NESTED/BYTEORDER
        pos += (length + 3) & ~3
    return out


class Queue:
    """One bound NFQUEUE number on a netlink socket."""

    def __init__(self, num: int) -> None:
        self.num = num
        self.seq = 0
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        with contextlib.suppress(OSError):
            self.sock.setsockopt(SOL_NETLINK, NETLINK_NO_ENOBUFS, 1)
        self.sock.bind((0, 0))

    def _send(self, msg_type: int, attrs: bytes, ack: bool = False) -> None:
        self.seq += 1
        body = struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(self.num)) + attrs
        flags = NLM_F_REQUEST | (NLM_F_ACK if ack else 0)
        header = struct.pack(
            "=IHHII", 16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | msg_type, flags, self.seq, 0
        )
        self.sock.send(header + body)
        if ack:
            self._wait_ack()

    def _wait_ack(self) -> None:
        while True:
            data = self.sock.recv(65536)
            pos = 0
            while pos + 16 <= len(data):
                length, kind, _, seq, _ = struct.unpack_from("=IHHII", data, pos)
                if kind == NLMSG_ERROR and seq == self.seq:
                    (err,) = struct.unpack_from("=i", data, pos + 16)
                    if err:
                        raise OSError(-err, f"nfqueue config: {os.strerror(-err)}")
                    return
                pos += (length + 3) & ~3

    def bind(self, maxlen: int = 4096) -> None:
        cmd = struct.pack("!BBH", NFQNL_CFG_CMD_BIND, 0, socket.AF_UNSPEC)
        self._send(NFQNL_MSG_CONFIG, _attr(NFQA_CFG_CMD, cmd), ack=True)
        params = struct.pack("!IB", 0, NFQNL_COPY_META)  # metadata only: we never read data
        self._send(NFQNL_MSG_CONFIG, _attr(NFQA_CFG_PARAMS, params), ack=True)
        self._send(
            NFQNL_MSG_CONFIG, _attr(NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", maxlen)), ack=True
        )
        flags = struct.pack("!I", NFQA_CFG_F_FAIL_OPEN)
        self._send(
            NFQNL_MSG_CONFIG, _attr(NFQA_CFG_MASK, flags) + _attr(NFQA_CFG_FLAGS, flags), ack=True
        )

    def unbind(self) -> None:
        cmd = struct.pack("!BBH", NFQNL_CFG_CMD_UNBIND, 0, socket.AF_UNSPEC)
        with contextlib.suppress(OSError):
            self._send(NFQNL_MSG_CONFIG, _attr(NFQA_CFG_CMD, cmd))
        self.sock.close()

    def packets(self, limit: int = 256) -> list[int]:
        """
        Packet IDs waiting on the socket (non-blocking). Drains what is there, up to limit
        messages, so a burst is timed from one wake-up rather than one loop turn each.
        """
        ids: list[int] = []
        for _ in range(limit):
            try:
                data = self.sock.recv(1 << 20, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            ids += self._packet_ids(data)
        return ids

    @staticmethod
    def _packet_ids(data: bytes) -> list[int]:
        ids, pos = [], 0
        while pos + 16 <= len(data):
            length, kind, _, _, _ = struct.unpack_from("=IHHII", data, pos)
            if length < 16:
                break
            if kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
                attrs = _attrs(data[pos + 20 : pos + length])  # nlmsghdr 16 + nfgenmsg 4
                hdr = attrs.get(NFQA_PACKET_HDR)
                if hdr:
                    ids.append(struct.unpack_from("!I", hdr)[0])
            pos += (length + 3) & ~3
        return ids

    def verdict(self, packet_id: int, verdict: int) -> None:
        self._send(
            NFQNL_MSG_VERDICT, _attr(NFQA_VERDICT_HDR, struct.pack("!II", verdict, packet_id))
        )


def _rule(ifname: str, queue: int) -> list[str]:
    return [
        "POSTROUTING",
        "-o",
        ifname,
        "-m",
        "comment",
        "--comment",
        COMMENT.format(ifname=ifname),
        "-j",
        "NFQUEUE",
        "--queue-num",
        str(queue),
        "--queue-bypass",
    ]


def rules_add(ifname: str, queue: int) -> None:
    for tool in TOOLS:
        cmd = [tool, "-w", "5", "-t", "mangle", "-I", *_rule(ifname, queue)]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=15, check=False)
        if res.returncode != 0 and tool == "iptables":
            raise RuntimeError(f"{' '.join(cmd)}: {res.stderr.strip()}")


def rules_clear(ifname: str) -> int:
    """Delete every rule carrying our comment for this interface; return how many."""
    removed = 0
    tag = COMMENT.format(ifname=ifname)
    for tool in TOOLS:
        res = subprocess.run(
            [tool, "-w", "5", "-t", "mangle", "-S", "POSTROUTING"],
            capture_output=True,
            text=True,
            timeout=15,
            check=False,
        )
        for line in res.stdout.splitlines():
            if f'--comment "{tag}"' in line or f"--comment {tag} " in line + " ":
                args = line.split()[1:]  # "-A POSTROUTING ..." -> delete the same spec
                spec = [a.strip('"') for a in args]
                subprocess.run(
                    [tool, "-w", "5", "-t", "mangle", "-D", *spec],
                    capture_output=True,
                    timeout=15,
                    check=False,
                )
                removed += 1
    return removed


def run(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    stop = {"now": False}

    def _stop(signum, frame):
        stop["now"] = True

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _stop)
    queue = Queue(args.queue)
    queue.bind()
    state = Path(args.state) if args.state else None
    ends = None
    counts = {"queued": 0, "dropped": 0}
    pending: list[tuple[float, int]] = []
    try:
        rules_add(args.ifname, args.queue)
        # The fault is in force from here: the duration counts from now, not from before
        # the iptables calls (slow on a loaded node), and the state file says the same.
        ends = time.monotonic() + args.duration if args.duration > 0 else None
        if state:
            _write_state(state, args, os.getpid())
        while not stop["now"] and (ends is None or time.monotonic() < ends):
            now = time.monotonic()
            due = pending[0][0] - now if pending else 0.5
            wait = min(max(due, 0.0), 0.5)
            if ends is not None:
                wait = min(wait, max(ends - now, 0.0))
            readable, _, _ = select.select([queue.sock], [], [], wait)
            if readable:
                arrived = time.monotonic()
                for pid in queue.packets():
                    counts["queued"] += 1
                    if rng.random() * 100.0 < args.loss_pct:
                        counts["dropped"] += 1
                        queue.verdict(pid, NF_DROP)
                        continue
                    jitter = rng.uniform(-args.jitter_ms, args.jitter_ms) if args.jitter_ms else 0
                    hold = max(args.delay_ms + jitter, 0.0) / 1000.0
                    heapq.heappush(pending, (arrived + hold, pid))
            now = time.monotonic()
            while pending and pending[0][0] <= now:
                queue.verdict(heapq.heappop(pending)[1], NF_ACCEPT)
    finally:
        # Rules first (new packets bypass us), then release what we still hold.
        rules_clear(args.ifname)
        for _, pid in pending:
            with contextlib.suppress(OSError):
                queue.verdict(pid, NF_ACCEPT)
        queue.unbind()
        if state:
            with contextlib.suppress(FileNotFoundError):
                if json.loads(state.read_text()).get("token") == args.token:
                    state.unlink()
        print(json.dumps({"ifname": args.ifname, **counts}), flush=True)
    return 0


def _start_time(pid: int) -> int:
    # Field 22 of /proc/<pid>/stat: with the pid, it names this process for good, so
    # `netem.clear` never signals a process that reused the pid (netem_procs.alive).
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])


def _write_state(path: Path, args: argparse.Namespace, pid: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "backend": "nfqueue",
        "token": args.token,
        "ifname": args.ifname,
        "queue": args.queue,
        "pid": pid,
        "start_time": _start_time(pid),
        "delay_ms": args.delay_ms,
        "jitter_ms": args.jitter_ms,
        "loss_pct": args.loss_pct,
        "started": time.time(),
        "expires": time.time() + args.duration if args.duration > 0 else None,
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


def timer(args: argparse.Namespace) -> int:
    """Sleep, then run the command if the state file still carries our token."""
    time.sleep(args.after)
    state = Path(args.state)
    try:
        current = json.loads(state.read_text())
    except (OSError, ValueError):
        return 0  # cleared meanwhile
    if current.get("token") != args.token:
        return 0  # replaced by a newer setting: not ours to clear
    subprocess.run(args.command, capture_output=True, timeout=30, check=False)
    state.unlink(missing_ok=True)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_run = sub.add_parser("run")
    p_run.add_argument("--ifname", required=True)
    p_run.add_argument("--queue", type=int, required=True)
    p_run.add_argument("--delay-ms", type=float, default=0.0)
    p_run.add_argument("--jitter-ms", type=float, default=0.0)
    p_run.add_argument("--loss-pct", type=float, default=0.0)
    p_run.add_argument("--duration", type=float, default=0.0, help="seconds; 0 = until stopped")
    p_run.add_argument("--state", default="")
    p_run.add_argument("--token", default="")
    p_run.add_argument("--seed", type=int, default=None)
    p_clear = sub.add_parser("rules-clear")
    p_clear.add_argument("--ifname", required=True)
    p_timer = sub.add_parser("timer")
    p_timer.add_argument("--after", type=float, required=True)
    p_timer.add_argument("--state", required=True)
    p_timer.add_argument("--token", required=True)
    p_timer.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.cmd == "run":
        return run(args)
    if args.cmd == "rules-clear":
        print(rules_clear(args.ifname))
        return 0
    if args.command and args.command[0] == "--":
        args.command = args.command[1:]
    return timer(args)


def script_path() -> str:
    """Where this file is (the netem module starts it with the minion's own Python)."""
    return __file__


if __name__ == "__main__":
    sys.exit(main())
