#!/usr/bin/env python3
"""A web server for the lab's proxy tests: HTTP on ports 80 and 8080, HTTPS on 443
(certificate and key given), on every address of its namespace, IPv4 and
IPv6. It answers
each request with a line naming the peer it saw and the Host asked, and logs
the same line to stdout, so a test can tell which way a flow came.

Usage: web.py [CERT KEY]   (without them, no HTTPS)
"""
import http.server
import socket
import socketserver
import ssl
import sys
import threading


class Handler(http.server.BaseHTTPRequestHandler):
    def do_HEAD(self):
        # dae's health check.
        self.send_response(204)
        self.end_headers()

    def do_GET(self):
        peer = self.client_address[0]
        if peer.startswith("::ffff:"):
            peer = peer[len("::ffff:"):]
        line = "peer=%s host=%s path=%s" % (
            peer,
            self.headers.get("Host", ""),
            self.path,
        )
        print(line, flush=True)
        body = (line + "\n").encode()
        if self.path.startswith("/big"):
            body += b"x" * (1024 * 1024)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    """Dual-stack: IPv4 peers show as themselves, not ::ffff:a.b.c.d."""

    address_family = socket.AF_INET6
    daemon_threads = True
    allow_reuse_address = True

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


def main():
    servers = [Server(("::", 80), Handler), Server(("::", 8080), Handler)]
    if len(sys.argv) == 3:
        tls = Server(("::", 443), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(sys.argv[1], sys.argv[2])
        tls.socket = ctx.wrap_socket(tls.socket, server_side=True)
        servers.append(tls)
    for s in servers[1:]:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    print("serving", flush=True)
    servers[0].serve_forever()


if __name__ == "__main__":
    main()
