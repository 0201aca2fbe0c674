"""Time from starting dae to its first answered query, in milliseconds.

Usage: startup.py DAE_BINARY WORKDIR UPSTREAM_PORT LISTEN_PORT
Starts a fresh dae (its own config in WORKDIR) and asks it a cached-nothing
question every millisecond until one is answered; prints the median of five
starts. Standard library only.
"""
import os
import socket
import statistics
import struct
import subprocess
import sys
import time


def query(qid):
    name = b"".join(bytes([len(p)]) + p for p in b"h1.bench.example".split(b".")) + b"\0"
    return struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + name + struct.pack(">HH", 1, 1)


def one_start(binary, conf):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(0.001)
    t0 = time.monotonic()
    proc = subprocess.Popen([binary, "run", "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        qid = 1
        while time.monotonic() - t0 < 10:
            sock.sendto(query(qid), ("127.0.0.1", PORT))
            try:
                data, _ = sock.recvfrom(4096)
                # An answer to any query sent so far: on a busy machine the
                # first answer takes longer than the 1 ms between queries.
                if len(data) >= 2 and 1 <= struct.unpack(">H", data[:2])[0] <= qid:
                    return (time.monotonic() - t0) * 1000
            except (socket.timeout, ConnectionRefusedError):
                pass
            qid = (qid + 1) & 0xFFFF
        return float("nan")
    finally:
        proc.terminate()
        proc.wait()
        sock.close()


binary, work, up_port, PORT = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
conf = os.path.join(work, "startup.uci")
with open(conf, "w") as f:
    f.write(
        "config dae 'config'\n\toption log_level 'error'\n"
        f"\toption status_socket '{work}/startup.sock'\n\n"
        f"config dns 'dns'\n\tlist dns_listen '127.0.0.1:{PORT}'\n"
        "\toption request_fallback 'up'\n\n"
        f"config upstream 'up'\n\toption address 'udp://127.0.0.1:{up_port}'\n"
    )
print(f"{statistics.median(one_start(binary, conf) for _ in range(5)):.1f}")
