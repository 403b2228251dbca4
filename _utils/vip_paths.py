"""
The path from this control plane to each peer, as ``vip_probe.sample`` measures it for
the ``kubeha_vip`` beacon: ICMP echo round trips and losses, and which peers' VRRP adverts
arrive. Raw sockets (root or CAP_NET_RAW), kept by the caller between samples in ``ctx``
(the minion's ``__context__``), every wait bounded.

Loaded as ``__utils__["vip_paths.open_socket"]`` and ``__utils__["vip_paths.measure"]``.
"""

import select
import socket
import struct
import time

ICMP_ECHO, ICMP_REPLY = 8, 0
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def _echo_request(ident: int, seq: int, sent_ns: int) -> bytes:
    """An ICMP echo request whose payload carries the send time (ns, CLOCK_REALTIME)."""
    payload = struct.pack("!Q", sent_ns) + b"kubeha-vip"
    header = struct.pack("!BBHHH", ICMP_ECHO, 0, 0, ident, seq)
    return struct.pack("!BBHHH", ICMP_ECHO, 0, _checksum(header + payload), ident, seq) + payload


def _parse_reply(packet: bytes, ident: int) -> tuple[int, int] | None:
    """(seq, sent_ns) of an echo reply to us in a raw IPv4 packet, else None."""
    if len(packet) < 20:
        return None
    ihl = (packet[0] & 0x0F) * 4
    icmp = packet[ihl:]
    if len(icmp) < 16:
        return None
    kind, _code, _sum, got_id, seq = struct.unpack("!BBHHH", icmp[:8])
    if kind != ICMP_REPLY or got_id != ident:
        return None
    return seq, struct.unpack("!Q", icmp[8:16])[0]


def _rx_ns(ancdata, fallback: int) -> int:
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
            sec, nsec = struct.unpack("qq", data[:16])
            return sec * 1_000_000_000 + nsec
    return fallback


def _raw(proto: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, proto)
    sock.setblocking(False)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    return sock


def open_socket(ctx: dict, key: str, proto: int):
    """The raw socket kept between samples, or the reason there is none."""
    if key not in ctx:
        try:
            ctx[key] = _raw(proto)
        except OSError as err:
            ctx[key] = f"no raw socket ({err.strerror}): root or CAP_NET_RAW needed"
    return ctx[key]


def _drain(sock, handle) -> None:
    while True:
        try:
            packet, anc, _flags, addr = sock.recvmsg(2048, socket.CMSG_SPACE(16))
        except (BlockingIOError, InterruptedError):
            return
        handle(packet, _rx_ns(anc, time.time_ns()), addr[0])


def _vrrp_handler(heard: dict, vrid):
    def handle(packet: bytes, rx_ns: int, source: str) -> None:
        ihl = (packet[0] & 0x0F) * 4 if packet else 0
        body = packet[ihl:]
        # VRRPv2/v3 header: version<<4 | type (1 = advertisement), VRID, priority.
        if len(body) < 3 or body[0] & 0x0F != 1 or (vrid is not None and body[1] != int(vrid)):
            return
        heard[source] = {"at": rx_ns / 1e9, "priority": body[2]}

    return handle


def measure(ctx, sockets, peers: dict, probes: int, timeout: float, *, vrid=None) -> dict:
    """Send ``probes`` echo requests to every peer, spread over the first 40 % of the
    window, and collect the answers until ``timeout``; drain the VRRP socket meanwhile.
    ``sockets``: (ICMP, VRRP), each a socket or the reason there is none."""
    icmp, vrrp = sockets
    start = time.monotonic()
    deadline = start + timeout
    spacing = 0.4 * timeout / max(probes, 1)
    pending, out = {}, {}
    for name in peers:
        out[name] = {"sent": 0, "answered": 0, "rtt_ms": []}
    sends = [(start + k * spacing, name, ip) for k in range(probes) for name, ip in peers.items()]
    by_ip = {ip: name for name, ip in peers.items()}
    heard = ctx["heard"]
    on_vrrp = _vrrp_handler(heard, vrid)

    def on_icmp(packet, rx_ns, source):
        got = _parse_reply(packet, ctx["id"])
        if got and got[0] in pending and pending[got[0]] == source:
            del pending[got[0]]
            name = by_ip[source]
            out[name]["answered"] += 1
            out[name]["rtt_ms"].append(round((rx_ns - got[1]) / 1e6, 3))

    while True:
        now = time.monotonic()
        while sends and sends[0][0] <= now and isinstance(icmp, socket.socket):
            _, name, ip = sends.pop(0)
            ctx["seq"] = (ctx["seq"] + 1) & 0xFFFF
            try:
                icmp.sendto(_echo_request(ctx["id"], ctx["seq"], time.time_ns()), (ip, 0))
                pending[ctx["seq"]] = ip
            except OSError:
                pass  # no route, buffer full: an unanswered probe, as a lost one
            out[name]["sent"] += 1
        if now >= deadline or (not sends and not pending):
            break
        wait = min(deadline, sends[0][0] if sends else deadline) - now
        readable = [s for s in (icmp, vrrp) if isinstance(s, socket.socket)]
        if not readable:
            break
        ready, _, _ = select.select(readable, [], [], max(0.0, wait))
        if icmp in ready:
            _drain(icmp, on_icmp)
        if vrrp in ready:
            _drain(vrrp, on_vrrp)
    if isinstance(vrrp, socket.socket):
        _drain(vrrp, on_vrrp)
    return out
