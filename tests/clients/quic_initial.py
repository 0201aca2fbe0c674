"""The first flight of a real QUIC client, for the sniffing tests.

aioquic's client connects to SERVER_NAME in QUIC VERSION (1 or 2) and its
first datagrams (the Initial packets with its ClientHello) go to
127.0.0.1:PORT, where the test reads them. ALPN_COUNT extra ALPN values make
the ClientHello larger than one Initial packet holds, as post-quantum key
shares do. Prints how many datagrams it sent.

Usage: quic_initial.py PORT SERVER_NAME VERSION ALPN_COUNT
"""

import socket
import sys

from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet import QuicProtocolVersion


def main():
    port, server_name = int(sys.argv[1]), sys.argv[2]
    version = {"1": QuicProtocolVersion.VERSION_1, "2": QuicProtocolVersion.VERSION_2}[
        sys.argv[3]
    ]
    alpn = ["h3"] + [f"sniff-test-{i:04d}" for i in range(int(sys.argv[4]))]
    config = QuicConfiguration(
        is_client=True,
        server_name=server_name,
        alpn_protocols=alpn,
        supported_versions=[version],
    )
    connection = QuicConnection(configuration=config)
    addr = ("127.0.0.1", port)
    connection.connect(addr, now=0.0)
    sent = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for data, _ in connection.datagrams_to_send(now=0.0):
            sock.sendto(data, addr)
            sent += 1
    print(sent)


if __name__ == "__main__":
    main()
