#!/usr/bin/env python3
"""Writes the seed corpus (fuzz/corpus/TARGET/) from real messages.

DNS: real `dig` and `kdig` queries (many option sets) relayed through a
recording proxy on loopback to a real unbound serving a local zone, so both
the queries and unbound's answers are real bytes. Proxy replies: a real
microsocks answers the SOCKS5 handshake. Configs, rules and share links:
the ones the project's tests and OpenWrt files hold. The proxy protocols
whose servers answer only after real traffic (Trojan, VLESS, VMess,
Shadowsocks) get small hand-built seeds in the harness's own format.

Run from the repository root: python3 fuzz/make-corpus.py
Only loopback is used. Existing seed files of the same name are replaced;
others (regression inputs) are kept.
"""

import hashlib
import os
import re
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")


def put(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---------------------------------------------------------------- DNS

RECORDS = [
    "www.lab.example. 300 IN A 192.0.2.10",
    "www.lab.example. 300 IN A 192.0.2.11",
    "www.lab.example. 300 IN AAAA 2001:db8::10",
    "alias.lab.example. 60 IN CNAME www.lab.example.",
    "lab.example. 3600 IN MX 10 mail.lab.example.",
    "mail.lab.example. 300 IN A 192.0.2.25",
    "txt.lab.example. 300 IN TXT \"v=spf1 -all\" \"second string\"",
    "_dns._udp.lab.example. 300 IN SRV 0 5 53 ns.lab.example.",
    "10.2.0.192.in-addr.arpa. 300 IN PTR www.lab.example.",
    "lab.example. 3600 IN NS ns.lab.example.",
    "ns.lab.example. 3600 IN A 192.0.2.53",
    "big.lab.example. 300 IN TXT \"" + "x" * 250 + "\"",
]
for i in range(12):
    RECORDS.append(f"big.lab.example. 300 IN A 192.0.2.{100 + i}")
    RECORDS.append(f"big.lab.example. 300 IN AAAA 2001:db8::{100 + i:x}")

QUERIES = [
    ("dig", ["www.lab.example", "A"]),
    ("dig", ["www.lab.example", "AAAA", "+dnssec"]),
    ("dig", ["WwW.Lab.EXAMPLE", "A", "+nocookie"]),
    ("dig", ["alias.lab.example", "A", "+bufsize=4096"]),
    ("dig", ["lab.example", "MX", "+norecurse"]),
    ("dig", ["txt.lab.example", "TXT", "+noedns"]),
    ("dig", ["_dns._udp.lab.example", "SRV", "+nsid"]),
    ("dig", ["-x", "192.0.2.10"]),
    ("dig", ["lab.example", "NS", "+cd", "+adflag"]),
    ("dig", ["missing.lab.example", "A"]),
    ("dig", ["lab.example", "SOA", "+edns=0", "+expire"]),
    ("dig", ["big.lab.example", "ANY", "+bufsize=512"]),
    ("dig", ["big.lab.example", "A", "+bufsize=1232", "+padding=128"]),
    ("dig", ["www.lab.example", "A", "+subnet=192.0.2.0/24"]),
    ("dig", ["www.lab.example", "TYPE65"]),
    ("dig", ["outside.example", "A"]),
    ("dig", ["www.lab.example", "A", "+edns=1", "+noednsneg"]),
    ("dig", ["www.lab.example", "CAA", "+ednsopt=65001:c0ffee"]),
    ("kdig", ["www.lab.example", "A"]),
    ("kdig", ["www.lab.example", "AAAA", "+dnssec", "+nsid"]),
    ("kdig", ["big.lab.example", "TXT", "+bufsize=65535"]),
    ("kdig", ["missing.lab.example", "MX", "+noedns"]),
    ("kdig", ["lab.example", "DNSKEY", "+cookie", "+padding"]),
    ("kdig", ["_dns._udp.lab.example", "SRV", "+norecurse"]),
]


def start_unbound(tmp):
    port = free_port()
    conf = (
        f"server:\n  interface: 127.0.0.1@{port}\n  do-daemonize: no\n"
        "  use-syslog: no\n  logfile: \"\"\n  verbosity: 1\n  chroot: \"\"\n"
        f"  username: \"\"\n  directory: \"{tmp}\"\n  pidfile: \"\"\n  do-ip6: no\n"
        "  access-control: 127.0.0.0/8 allow\n  module-config: \"iterator\"\n"
        "  local-zone: \".\" static\n  local-zone: \"lab.example.\" static\n"
        "  local-data: \"lab.example. 3600 IN SOA ns.lab.example. admin.lab.example. 1 3600 600 86400 60\"\n"
    )
    for r in RECORDS:
        conf += f"  local-data: '{r}'\n"
    path = os.path.join(tmp, "unbound.conf")
    with open(path, "w") as f:
        f.write(conf)
    log = open(os.path.join(tmp, "unbound.log"), "w")
    child = subprocess.Popen(["unbound", "-d", "-c", path], stdout=log, stderr=log)
    for _ in range(100):
        with open(os.path.join(tmp, "unbound.log")) as f:
            if "start of service" in f.read():
                return child, port
        time.sleep(0.1)
    child.kill()
    raise SystemExit("unbound did not start")


def dns_seeds():
    tmp = tempfile.mkdtemp(prefix="dae-corpus-")
    unbound, uport = start_unbound(tmp)
    pairs = []
    try:
        front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        front.bind(("127.0.0.1", 0))
        fport = front.getsockname()[1]
        up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        up.connect(("127.0.0.1", uport))
        up.settimeout(2)
        stop = threading.Event()

        def relay():
            front.settimeout(0.2)
            while not stop.is_set():
                try:
                    q, client = front.recvfrom(65535)
                except socket.timeout:
                    continue
                up.send(q)
                try:
                    a = up.recv(65535)
                except socket.timeout:
                    continue
                pairs.append((q, a))
                front.sendto(a, client)

        t = threading.Thread(target=relay)
        t.start()
        for tool, args in QUERIES:
            cmd = [tool, f"@127.0.0.1", "-p", str(fport), "+tries=1", "+time=2"] + args
            if tool == "kdig":
                cmd = [tool, "@127.0.0.1", "-p", str(fport), "+retry=0", "+time=2"] + args
            subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        stop.set()
        t.join()
    finally:
        unbound.terminate()
        unbound.wait()
        shutil.rmtree(tmp)
    if len(pairs) < len(QUERIES) // 2:
        raise SystemExit(f"only {len(pairs)} exchanges recorded")
    for i, (q, a) in enumerate(pairs):
        put("wire_query", f"q{i:02}", q)
        put("wire_response", f"a{i:02}", a)
        put("doh_doq", f"framed{i:02}", struct.pack(">H", len(a)) + a)
        put("doh_doq", f"body{i:02}", a)
        # flags, query length, query, answer (see fuzzing::controller)
        for flags in (0, 1) if i > 4 else (0, 1, 2, 8):
            put("controller", f"c{i:02}-{flags}", bytes([flags]) + struct.pack(">H", len(q)) + q + a)
    # Cut and odd ones, made from real messages.
    q, a = pairs[0]
    put("wire_query", "short", q[:11])
    put("wire_query", "cut-question", q[:20])
    put("wire_response", "cut-answer", a[: len(a) - 3])
    put("controller", "raw-answer", bytes([4]) + struct.pack(">H", len(q)) + q + a)


# ------------------------------------------------------ proxy protocols


def socks5_seeds():
    """Real microsocks replies to our greeting and CONNECT (flags, read
    size, the server's bytes)."""
    port = free_port()
    child = subprocess.Popen(
        ["microsocks", "-i", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        got = b""
        for _ in range(50):
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=2)
                break
            except OSError:
                time.sleep(0.1)
        # a target on loopback that refuses: a real failure reply
        dead = free_port()
        s.sendall(b"\x05\x01\x00")
        got += s.recv(2)
        s.sendall(b"\x05\x01\x00\x01" + socket.inet_aton("127.0.0.1") + struct.pack(">H", dead))
        time.sleep(0.3)
        got += s.recv(64)
        s.close()
    finally:
        child.terminate()
        child.wait()
    put("socks5", "microsocks-refused", bytes([0, 0]) + got)
    put("socks5", "microsocks-refused-trickle", bytes([0, 1]) + got)
    ok = b"\x05\x00" + b"\x05\x00\x00\x01" + socket.inet_aton("127.0.0.1") + b"\x04\x38"
    put("socks5", "connect-ok", bytes([0, 0]) + ok + b"tunnel bytes")
    put("socks5", "connect-ok-v6", bytes([1, 3]) + b"\x05\x00\x05\x00\x00\x04" + bytes(16) + b"\x00\x35")
    put("socks5", "auth", bytes([2, 0]) + b"\x05\x02\x01\x00\x05\x00\x00\x03\x09localhost\x00\x35")
    put("socks5", "auth-refused", bytes([2, 0]) + b"\x05\x02\x01\x01")
    put("socks5", "none-acceptable", bytes([0, 0]) + b"\x05\xff")
    put("socks5", "udp-datagram", bytes([0, 0]) + b"\x00\x00\x00\x01\xc0\x00\x02\x35\x00\x35dns")


def http_seeds():
    for name, reply in [
        ("200", b"HTTP/1.1 200 Connection established\r\n\r\ntunnel"),
        ("200-headers", b"HTTP/1.1 200 OK\r\nProxy-Agent: tinyproxy/1.11.1\r\nX: y\r\n\r\n"),
        ("407", b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"x\"\r\n\r\n"),
        ("403", b"HTTP/1.0 403 Forbidden\r\nContent-Length: 0\r\n\r\n"),
        ("bare-lf", b"HTTP/1.1 200 OK\n\n"),
        ("ssh", b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n"),
        ("cut", b"HTTP/1.1 502 Bad Gateway\r\nConn"),
    ]:
        put("http_proxy", name, bytes([0, 0]) + reply)
        put("http_proxy", name + "-auth-trickle", bytes([2, 1]) + reply)


def chunks(*parts):
    out = b""
    for p in parts:
        out += bytes([len(p)]) + p
    return out


def shadowsocks_seeds():
    dns = bytes.fromhex("12348180000100010000000003777777036c6162076578616d706c65000001000100000001000100000e100004c000020a")
    for cipher in range(3):
        # flags, read size, cut, flip, chunk specs (see fuzzing::shadowsocks_stream)
        head = bytes([cipher, 0]) + struct.pack(">HH", 0, 0xFFFF)
        put("shadowsocks_stream", f"chunks-{cipher}", head + chunks(struct.pack(">H", len(dns)) + dns[:40], dns[40:]))
        put("shadowsocks_stream", f"one-{cipher}", head + chunks(b"x"))
        put("shadowsocks_stream", f"cut-{cipher}", bytes([cipher, 7]) + struct.pack(">HH", 40, 0xFFFF) + chunks(b"abc", b"def"))
        put("shadowsocks_stream", f"flip-{cipher}", bytes([cipher, 0]) + struct.pack(">HH", 0, 50) + chunks(b"abc", b"def"))
        put("shadowsocks_stream", f"raw-{cipher}", bytes([0x80 | cipher, 0, 0, 0, 0, 0]) + os.urandom(80))
        # flags, plaintext (see fuzzing::shadowsocks_packet)
        put("shadowsocks_packet", f"v4-{cipher}", bytes([cipher]) + b"\x01\xc0\x00\x02\x35\x00\x35" + dns)
        put("shadowsocks_packet", f"v6-{cipher}", bytes([4 | cipher]) + b"\x04\x20\x01\x0d\xb8" + bytes(11) + b"\x53\x00\x35" + dns)
        put("shadowsocks_packet", f"name-{cipher}", bytes([cipher]) + b"\x03\x0bexample.com\x00\x35" + dns)
        put("shadowsocks_packet", f"raw-{cipher}", bytes([0x80 | cipher]) + os.urandom(60))


def trojan_vless_vmess_seeds():
    dns = bytes.fromhex("12348180000100010000000003777777036c6162076578616d706c65000001000100000001000100000e100004c000020a")
    v4 = b"\x01\xc0\x00\x02\x35\x00\x35"
    v6 = b"\x04\x20\x01\x0d\xb8" + bytes(11) + b"\x53\x00\x35"
    frame = lambda addr, p: addr + struct.pack(">H", len(p)) + b"\r\n" + p
    put("trojan", "stream", bytes([0, 0]) + b"HTTP/1.1 200 OK\r\n\r\nbody")
    put("trojan", "udp-v4", bytes([2, 0]) + frame(v4, dns) + frame(v4, b"second"))
    put("trojan", "udp-v6", bytes([3, 5]) + frame(v6, dns))
    put("trojan", "udp-other", bytes([2, 0]) + frame(b"\x01\xc0\x00\x02\x36\x00\x35", dns) + frame(v4, dns))
    put("trojan", "udp-name", bytes([2, 0]) + frame(b"\x03\x07example\x00\x35", dns))
    put("trojan", "udp-fallback", bytes([2, 0]) + b"HTTP/1.1 400 Bad Request\r\n\r\n")
    put("vless", "stream", bytes([0, 0]) + b"\x00\x00payload")
    put("vless", "stream-addons", bytes([0, 1]) + b"\x00\x03abcpayload")
    put("vless", "udp", bytes([2, 0]) + b"\x00\x00" + struct.pack(">H", len(dns)) + dns)
    put("vless", "udp-trickle", bytes([3, 1]) + b"\x00\x00" + struct.pack(">H", 3) + b"abc" + struct.pack(">H", 0))
    put("vless", "bad-version", bytes([0, 0]) + b"\x01\x00")
    # flags, read size, cut, flip, header length, n + header, chunk specs
    # (see fuzzing::vmess; the harness seals them as the server would)
    plan = lambda cut, flip, hl, hdr, *cs: struct.pack(">HHH", cut, flip, hl) + bytes([len(hdr)]) + hdr + chunks(*cs)
    for sec in range(3):
        f = sec << 2
        put("vmess", f"stream-{sec}", bytes([f | 0x10, 0]) + plan(0, 0xFFFF, 0, b"\0\0\0", b"hello", b" world"))
        put("vmess", f"udp-{sec}", bytes([f | 2, 0]) + plan(0, 0xFFFF, 0, b"\0\0\0", dns))
        put("vmess", f"trickle-{sec}", bytes([f | 0x11, 3]) + plan(0, 0xFFFF, 0, b"\0\0\0", b"abc", b"", b"def"))
        put("vmess", f"cut-{sec}", bytes([f, 0]) + plan(60, 0xFFFF, 0, b"\0\0\0", b"abc", b"def"))
        put("vmess", f"flip-{sec}", bytes([f | 2, 0]) + plan(0, 70, 0, b"\0\0\0", b"abc"))
    put("vmess", "command", bytes([0x10, 0]) + plan(0, 0xFFFF, 0, b"\0\1\2\x04\0\0\0\0", b"x"))
    put("vmess", "bad-header-len", bytes([0x20, 0]) + plan(0, 0xFFFF, 2, b"\0\0\0", b"x"))
    put("vmess", "raw", bytes([0x80, 0]) + os.urandom(18 + 38))
    put("vmess", "raw-udp", bytes([0x82, 3]) + os.urandom(40))
    put("vmess", "raw-empty", bytes([0x80, 0]))


# ------------------------------------------------------------- config


def rust_strings(text):
    """The "..." literals of Rust source, escapes resolved."""
    out = []
    for m in re.finditer(r'"((?:[^"\\]|\\.)*)"', text, re.S):
        body = re.sub(r"\\\n\s*", "", m.group(1))
        body = body.replace("\\n", "\n").replace("\\t", "\t").replace('\\"', '"').replace("\\\\", "\\")
        out.append(body)
    for m in re.finditer(r'r#"(.*?)"#', text, re.S):
        out.append(m.group(1))
    return out


UUID = "b831381d-6324-4d53-ad4f-8cda48b30811"


def config_seeds():
    strings = []
    for d in ("tests", "src/config", "src/dialer"):
        for dirpath, _, names in os.walk(os.path.join(ROOT, d)):
            for n in sorted(names):
                if n.endswith(".rs"):
                    with open(os.path.join(dirpath, n), encoding="utf-8") as f:
                        strings += rust_strings(f.read())
    with open(os.path.join(ROOT, "openwrt", "files", "dae.config"), encoding="utf-8") as f:
        owrt = f.read()
    configs = [owrt] + [s for s in strings if s.lstrip().startswith("config ") and "{" not in s]
    rules = set()
    for c in configs:
        rules.update(re.findall(r"list (?:request_rule|response_rule|rule) '([^'\n]+)'", c))
    links = set()
    for s in strings:
        m = re.fullmatch(r"(?:socks5h?|https?|ss|trojan|vless|vmess)://.*", s)
        if m and "{}" not in s:
            links.add(s.replace("{UUID_TEXT}", UUID))
    import base64, json
    v2rayn = {"v": "2", "ps": "node", "add": "192.0.2.9", "port": "443", "id": UUID,
              "aid": "0", "scy": "auto", "net": "tcp", "type": "none", "tls": "tls", "sni": "v.example"}
    links.add("vmess://" + base64.b64encode(json.dumps(v2rayn).encode()).decode())
    links.add("ss://" + base64.urlsafe_b64encode(b"chacha20-ietf-poly1305:pw").decode().rstrip("=") + "@192.0.2.8:8388#n")
    for i, c in enumerate(sorted(set(configs))[:40]):
        put("uci", f"config{i:02}", c)
    put("uci", "quoted", "config dns 'dns'\n\tlist request_rule 'qname(full: it'\\''s.example) -> reject'\n")
    put("uci", "double", "config dns \"dns\"\n\toption request_fallback \"a\" # comment\n")
    for i, r in enumerate(sorted(rules)[:40]):
        put("rule", f"rule{i:02}", r)
    for i, l in enumerate(sorted(links)):
        put("link", f"link{i:02}", l)
    return len(configs), len(rules), len(links)


def main():
    dns_seeds()
    socks5_seeds()
    http_seeds()
    shadowsocks_seeds()
    trojan_vless_vmess_seeds()
    print("configs, rules, links:", config_seeds())
    for t in sorted(os.listdir(CORPUS)):
        print(t, len(os.listdir(os.path.join(CORPUS, t))))


if __name__ == "__main__":
    main()
