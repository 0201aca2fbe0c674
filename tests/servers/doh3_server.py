"""A DNS-over-HTTPS server over HTTP/3 (RFC 8484, RFC 9114) for dae's tests,
on aioquic's HTTP/3 layer.

Debian packages no DoH3 server, so the tests use aioquic (PyPI), a
well-known QUIC and HTTP/3 stack, and this thin front on it: each request
to /dns-query (POST with an application/dns-message body, or GET with
?dns=BASE64URL) is relayed over UDP to a real DNS server (unbound, started
by the test) and its answer sent back as a 200 application/dns-message
reply on the same stream. Anything else gets the HTTP error a DoH server
gives (404 for another path, 405 for another method, 415 for a POST of
another type, 400 for a bad GET). It writes one line per event to stdout
("ready", "connection", "query NAME", "id N" for a query whose id is
not 0, "status CODE PATH" for errors),
which the tests read.

Usage: doh3_server.py HOST PORT CERT KEY UPSTREAM_HOST UPSTREAM_PORT [--silent SUFFIX]
Queries for names ending in SUFFIX get no answer (a server gone quiet).
"""
import asyncio
import base64
import socket
import sys

from aioquic.asyncio import QuicConnectionProtocol, serve
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import HandshakeCompleted

DNS_MESSAGE = b"application/dns-message"


def say(line):
    print(line, flush=True)


def qname(message):
    labels, i = [], 12
    while i < len(message) and message[i] != 0:
        n = message[i]
        labels.append(message[i + 1:i + 1 + n].decode("ascii", "replace"))
        i += 1 + n
    return ".".join(labels) + "."


class Doh3Protocol(QuicConnectionProtocol):
    upstream = None
    silent = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic)
        # stream id -> (headers, body so far)
        self.requests = {}

    def quic_event_received(self, event):
        if isinstance(event, HandshakeCompleted):
            say("connection")
        for ev in self.h3.handle_event(event):
            if isinstance(ev, HeadersReceived):
                self.requests[ev.stream_id] = (dict(ev.headers), bytearray())
            elif isinstance(ev, DataReceived) and ev.stream_id in self.requests:
                self.requests[ev.stream_id][1].extend(ev.data)
            else:
                continue
            if ev.stream_ended:
                headers, body = self.requests.pop(ev.stream_id)
                asyncio.ensure_future(self.answer(ev.stream_id, headers, bytes(body)))

    def reply(self, stream_id, status, body=b"", path=b""):
        if status != 200:
            say(f"status {status} {path.decode('ascii', 'replace')}")
        headers = [(b":status", str(status).encode())]
        if body:
            headers += [
                (b"content-type", DNS_MESSAGE),
                (b"content-length", str(len(body)).encode()),
            ]
        self.h3.send_headers(stream_id, headers, end_stream=not body)
        if body:
            self.h3.send_data(stream_id, body, end_stream=True)
        self.transmit()

    async def answer(self, stream_id, headers, body):
        method = headers.get(b":method", b"")
        target = headers.get(b":path", b"")
        path, _, params = target.partition(b"?")
        if path != b"/dns-query":
            return self.reply(stream_id, 404, path=target)
        if method == b"POST":
            if headers.get(b"content-type") != DNS_MESSAGE:
                return self.reply(stream_id, 415, path=target)
            query = body
        elif method == b"GET":
            dns = [p[4:] for p in params.split(b"&") if p.startswith(b"dns=")]
            try:
                query = base64.urlsafe_b64decode(dns[0] + b"=" * (-len(dns[0]) % 4))
            except (IndexError, ValueError):
                return self.reply(stream_id, 400, path=target)
        else:
            return self.reply(stream_id, 405, path=target)
        if len(query) < 12:
            return self.reply(stream_id, 400, path=target)
        name = qname(query)
        say(f"query {name}")
        if query[:2] != b"\0\0":
            # RFC 8484 4.1: a DoH client SHOULD use id 0.
            say(f"id {int.from_bytes(query[:2], 'big')}")
        if self.silent and name.endswith(self.silent):
            return
        loop = asyncio.get_running_loop()
        answer = await loop.run_in_executor(None, relay, query, self.upstream)
        if answer is None:
            return self.reply(stream_id, 502, path=target)
        self.reply(stream_id, 200, answer)


def relay(query, upstream):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(3)
        s.sendto(query, upstream)
        try:
            reply, _ = s.recvfrom(65535)
        except socket.timeout:
            return None
    # The answer carries the query's id (0 from a DoH client).
    return reply


async def main():
    host, port, cert, key, up_host, up_port = sys.argv[1:7]
    if "--silent" in sys.argv:
        Doh3Protocol.silent = sys.argv[sys.argv.index("--silent") + 1]
    Doh3Protocol.upstream = (up_host, int(up_port))
    config = QuicConfiguration(alpn_protocols=H3_ALPN, is_client=False)
    config.load_cert_chain(cert, key)
    await serve(host, int(port), configuration=config, create_protocol=Doh3Protocol)
    say("ready")
    await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main())
