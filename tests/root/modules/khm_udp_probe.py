"""UDP echo server and prober for the netem tests (run inside our namespaces).

python khm_udp_probe.py echo IP PORT
python khm_udp_probe.py probe DST PORT COUNT INTERVAL_S  -> JSON {sent, received, rtts_ms}
"""

import json
import socket
import struct
import sys
import threading
import time


def echo(ip: str, port: int) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((ip, port))
    while True:
        data, peer = sock.recvfrom(2048)
        sock.sendto(data, peer)


def probe(dst: str, port: int, count: int, interval: float) -> dict:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect((dst, port))
    sent: dict[int, float] = {}
    rtts: dict[int, float] = {}
    done = threading.Event()

    def receive():
        sock.settimeout(0.2)
        while not done.is_set():
            try:
                data = sock.recv(2048)
            except (TimeoutError, ConnectionRefusedError):
                continue
            seq = struct.unpack("!I", data[:4])[0]
            if seq in sent and seq not in rtts:
                rtts[seq] = (time.monotonic() - sent[seq]) * 1000.0

    rx = threading.Thread(target=receive, daemon=True)
    rx.start()
    start = time.monotonic()
    for seq in range(count):
        # Paced on a fixed schedule so a slow loop does not stretch the run.
        time.sleep(max(0.0, start + seq * interval - time.monotonic()))
        sent[seq] = time.monotonic()
        sock.send(struct.pack("!I", seq) + b"x" * 60)
    time.sleep(1.5)  # late replies (the delay under test is 200 ms)
    done.set()
    rx.join(timeout=2)
    return {"sent": count, "received": len(rtts), "rtts_ms": sorted(rtts.values())}


if __name__ == "__main__":
    if sys.argv[1] == "echo":
        echo(sys.argv[2], int(sys.argv[3]))
    else:
        print(
            json.dumps(probe(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])))
        )
