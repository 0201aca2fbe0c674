"""A DNS-over-QUIC server (RFC 9250) for dae's tests, on aioquic.

Debian packages no DoQ server, so the tests use aioquic (PyPI), a
well-known QUIC stack, and this thin front on it: each query stream's
message is relayed over UDP to a real DNS server (unbound, started by the
test) and its answer written back on the same stream. It writes one line
per event to stdout ("ready", "connection", "query NAME"), which the tests
read to count connections.

Usage: doq_server.py HOST PORT CERT KEY UPSTREAM_HOST UPSTREAM_PORT [--silent SUFFIX]
Queries for names ending in SUFFIX get no answer (a server gone quiet).
"""
import asyncio
import socket
import struct
import sys

from aioquic.asyncio import QuicConnectionProtocol, serve
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import HandshakeCompleted, StreamDataReceived


def say(line):
    print(line, flush=True)


def qname(message):
    labels, i = [], 12
    while i < len(message) and message[i] != 0:
        n = message[i]
        labels.append(message[i + 1:i + 1 + n].decode("ascii", "replace"))
        i += 1 + n
    return ".".join(labels) + "."


class DoqProtocol(QuicConnectionProtocol):
    upstream = None
    silent = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.buffers = {}

    def quic_event_received(self, event):
        if isinstance(event, HandshakeCompleted):
            say("connection")
        elif isinstance(event, StreamDataReceived):
            buf = self.buffers.setdefault(event.stream_id, bytearray())
            buf.extend(event.data)
            if event.end_stream:
                del self.buffers[event.stream_id]
                asyncio.ensure_future(self.answer(event.stream_id, bytes(buf)))

    async def answer(self, stream_id, framed):
        if len(framed) < 2:
            return
        (length,) = struct.unpack("!H", framed[:2])
        query = framed[2:2 + length]
        name = qname(query)
        say(f"query {name}")
        if self.silent and name.endswith(self.silent):
            return
        loop = asyncio.get_running_loop()
        reply = await loop.run_in_executor(None, relay, query, self.upstream)
        if reply is None:
            return
        self._quic.send_stream_data(stream_id, struct.pack("!H", len(reply)) + reply, end_stream=True)
        self.transmit()


def relay(query, upstream):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(3)
        s.sendto(query, upstream)
        try:
            reply, _ = s.recvfrom(65535)
        except socket.timeout:
            return None
    # DoQ answers carry id 0, as the query did.
    return reply


async def main():
    host, port, cert, key, up_host, up_port = sys.argv[1:7]
    if "--silent" in sys.argv:
        DoqProtocol.silent = sys.argv[sys.argv.index("--silent") + 1]
    DoqProtocol.upstream = (up_host, int(up_port))
    config = QuicConfiguration(alpn_protocols=["doq"], is_client=False)
    config.load_cert_chain(cert, key)
    await serve(host, int(port), configuration=config, create_protocol=DoqProtocol)
    say("ready")
    await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main())
