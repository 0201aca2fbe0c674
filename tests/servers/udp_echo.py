#!/usr/bin/env python3
"""A UDP echo server for the lab's UDP relay tests: it listens on every
ADDR:PORT given and answers each datagram, from the address and port it
arrived on, with a line naming the peer it saw ("peer=IP:PORT"), so a test
can tell which way a flow came (from the router's WAN address: direct;
from the proxy node: relayed). A datagram that starts with "cone" is also
answered from the NEXT address in the list ("second peer=IP:PORT"): a
reply from a remote the client never sent to, which only a full-cone path
carries back. Each datagram is logged to stdout the same way.

Usage: udp_echo.py ADDR:PORT [ADDR:PORT ...]
"""
import selectors
import socket
import sys


def parse(text):
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def main():
    socks = []
    for spec in sys.argv[1:]:
        host, port = parse(spec)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        s = socket.socket(family, socket.SOCK_DGRAM)
        s.bind((host, port))
        s.setblocking(False)
        socks.append(s)
    sel = selectors.DefaultSelector()
    for i, s in enumerate(socks):
        sel.register(s, selectors.EVENT_READ, i)
    print("ready", flush=True)
    while True:
        for key, _ in sel.select():
            s = key.fileobj
            try:
                data, peer = s.recvfrom(65535)
            except OSError:
                continue
            line = "peer=%s:%d" % (peer[0], peer[1])
            print("%s:%d %s len=%d" % (*s.getsockname()[:2], line, len(data)), flush=True)
            try:
                s.sendto(line.encode(), peer)
                if data.startswith(b"cone") and len(socks) > 1:
                    other = socks[(key.data + 1) % len(socks)]
                    other.sendto(("second " + line).encode(), peer)
            except OSError as e:
                print("send to %s: %s" % (peer, e), flush=True)


if __name__ == "__main__":
    main()
