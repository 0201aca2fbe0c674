#!/usr/bin/env python3
"""A QUIC peer for the lab's UDP relay tests, on aioquic.

server HOST PORT CERT KEY: answers each stream with "peer=IP" (the
address the connection came from) and logs the same line.

client HOST PORT SERVER_NAME [--big]: connects to HOST (an address) with
SERVER_NAME in its ClientHello (certificate not checked), sends one stream
and prints the answer. With --big the ClientHello carries many ALPN
names, so it is larger than one Initial packet holds and spans two (as
hellos with post-quantum key shares do).
"""
import asyncio
import ssl
import sys

from aioquic.asyncio import QuicConnectionProtocol, connect, serve
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import StreamDataReceived

ALPN = "relay-test"


class Server(QuicConnectionProtocol):
    def quic_event_received(self, event):
        if isinstance(event, StreamDataReceived) and event.end_stream:
            peer = self._quic._network_paths[0].addr[0]
            if peer.startswith("::ffff:"):
                peer = peer[len("::ffff:"):]
            line = "peer=%s" % peer
            print(line, flush=True)
            self._quic.send_stream_data(event.stream_id, line.encode(), end_stream=True)
            self.transmit()


async def run_server(host, port, cert, key):
    config = QuicConfiguration(alpn_protocols=[ALPN], is_client=False)
    config.load_cert_chain(cert, key)
    await serve(host, int(port), configuration=config, create_protocol=Server)
    print("ready", flush=True)
    await asyncio.Future()


async def run_client(host, port, name, big):
    alpn = [ALPN]
    if big:
        alpn = ["padding-%03d-xxxxxxxxxxxxxxxxxxxxxxxx" % i for i in range(40)] + alpn
    config = QuicConfiguration(alpn_protocols=alpn, is_client=True, server_name=name)
    config.verify_mode = ssl.CERT_NONE
    async with connect(host, int(port), configuration=config) as conn:
        reader, writer = await conn.create_stream()
        writer.write(b"hello")
        writer.write_eof()
        answer = await asyncio.wait_for(reader.read(), 5)
        print(answer.decode(), flush=True)


def main():
    if sys.argv[1] == "server":
        asyncio.run(run_server(*sys.argv[2:6]))
    else:
        asyncio.run(asyncio.wait_for(
            run_client(sys.argv[2], sys.argv[3], sys.argv[4], "--big" in sys.argv), 10))


if __name__ == "__main__":
    main()
