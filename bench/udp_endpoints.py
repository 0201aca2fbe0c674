"""Live UDP endpoints for bench/proxy.sh (MODE=udp): the memory a proxy
spends per LAN UDP socket it relays. Standard library only.

  udp_endpoints.py sink ADDR PORT
      Reads and drops every datagram sent to ADDR:PORT.
  udp_endpoints.py open ADDR PORT N
      Opens N UDP sockets (N client ports), sends one datagram from each to
      ADDR:PORT, prints "open N" and keeps them until it is killed, so the
      proxy holds an endpoint (association) for each.

Neighbours: bench/proxy.sh starts the sink in the lab's upstream namespace
and the opener on the LAN client, and reads the proxy's VmRSS in between.
"""
import socket
import sys
import time


def sink(addr, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, port))
    while True:
        s.recv(65535)


def open_many(addr, port, n):
    held = []
    for i in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.sendto(b"endpoint %d" % i, (addr, port))
        held.append(s)
        if i % 100 == 99:
            time.sleep(0.01)  # paced: the point is memory, not a burst
    print(f"open {len(held)}", flush=True)
    while True:
        time.sleep(3600)


def main():
    verb, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if verb == "sink":
        sink(addr, port)
    elif verb == "open":
        open_many(addr, port, int(sys.argv[4]))
    else:
        sys.exit(f"usage: {sys.argv[0]} sink ADDR PORT | open ADDR PORT N")


if __name__ == "__main__":
    main()
