#!/usr/bin/env python3
"""A subscription provider for tests/subscriptions.rs: HTTP (or HTTPS with a
certificate and key) on 127.0.0.1:PORT, serving the files of DIR.

  GET /sub/NAME           DIR/NAME, read at each request, with Content-Length;
                          DIR/NAME.mode, if present, changes the answer:
                          "garbage" (an HTML page), "big" (50 MB), "loop"
                          (redirects to itself), "404", "empty" (no body)
  GET /chunked/NAME       the same body, chunked
  GET /close/NAME         the same body, no length: the connection's end ends it
  GET /redirect/N/NAME    N redirects, then /sub/NAME
  HEAD /                  204 (dae's health check through the nodes)

Each request is logged to stdout as "GET PATH".

Usage: subscription.py DIR PORT [CERT KEY]
"""
import http.server
import os
import socketserver
import ssl
import sys

BIG = 50 * 1024 * 1024


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_HEAD(self):
        self.send_response(204)
        self.send_header("Connection", "close")
        self.end_headers()

    def answer(self, code, body=b"", headers=()):
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        print("GET " + self.path, flush=True)
        self.close_connection = True
        parts = self.path.strip("/").split("/")
        kind = parts[0]
        if kind == "redirect" and len(parts) == 3:
            n = int(parts[1])
            to = "/sub/" + parts[2] if n <= 1 else "/redirect/%d/%s" % (n - 1, parts[2])
            return self.answer(302, headers=[("Location", to)])
        if kind not in ("sub", "chunked", "close") or len(parts) != 2:
            return self.answer(404)
        name = parts[1]
        path = os.path.join(sys.argv[1], name)
        mode = ""
        if os.path.exists(path + ".mode"):
            with open(path + ".mode") as f:
                mode = f.read().strip()
        if mode == "garbage":
            return self.answer(200, b"<html><body>Please log in</body></html>\n")
        if mode == "404":
            return self.answer(404)
        if mode == "empty":
            return self.answer(200)
        if mode == "loop":
            return self.answer(302, headers=[("Location", self.path)])
        if mode == "big":
            self.send_response(200)
            self.send_header("Content-Length", str(BIG))
            self.end_headers()
            block = b"A" * 65536
            try:
                for _ in range(BIG // len(block)):
                    self.wfile.write(block)
            except OSError:
                pass
            return
        try:
            with open(path, "rb") as f:
                body = f.read()
        except OSError:
            return self.answer(404)
        if kind == "sub":
            return self.answer(200, body)
        self.send_response(200)
        if kind == "chunked":
            self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        if kind == "chunked":
            for i in range(0, len(body), 100):
                piece = body[i:i + 100]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    server = Server(("127.0.0.1", int(sys.argv[2])), Handler)
    if len(sys.argv) == 5:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(sys.argv[3], sys.argv[4])
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    print("listening", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
