"""Usage: spoofing.py PORT READY_FILE. Watches the DNS queries that reach UDP port PORT on 127.0.0.1 (a packet
socket on lo, as tcpdump would) until SIGINT, then prints, tab-separated:
the queries seen, the distinct source ports per 1,000 queries, and the
names in random letter case per 1,000 queries (the bench's names are all
lower case: a name with an upper-case letter was randomized by the server,
0x20). Creates READY_FILE once it watches. Needs root. Standard library only.
"""
import signal
import socket
import struct
import sys

port = int(sys.argv[1])
ETH_P_IP = 0x0800
PACKET_OUTGOING = 4
s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
s.bind(("lo", ETH_P_IP))
s.setsockopt(socket.SOL_SOCKET, 33, 32 << 20)  # SO_RCVBUFFORCE
s.settimeout(0.2)
open(sys.argv[2], "w").close()
stop = False


def on_int(*_):
    global stop
    stop = True


signal.signal(signal.SIGINT, on_int)
queries = 0
ports = set()
mixed = 0
while not stop:
    try:
        data, addr = s.recvfrom(65536)
    except (socket.timeout, InterruptedError):
        continue
    if addr[2] == PACKET_OUTGOING or len(data) < 20 or data[9] != 17 or data[16:20] != b"\x7f\x00\x00\x01":
        continue
    udp = data[(data[0] & 0x0F) * 4:]
    if len(udp) < 20 or struct.unpack("!H", udp[2:4])[0] != port:
        continue
    dns = udp[8:]
    if dns[2] & 0x80:
        continue
    queries += 1
    ports.add(struct.unpack("!H", udp[0:2])[0])
    end = 12
    while end < len(dns) and dns[end] != 0:
        end += 1 + dns[end]
    if any(0x41 <= b <= 0x5A for b in dns[12:end]):
        mixed += 1
per = 1000 / queries if queries else 0
print(f"{queries}\t{len(ports) * per:.0f}\t{mixed * per:.0f}")
