//! Fuzzing harnesses: one `pub fn TARGET(data: &[u8])` per parser that
//! reads bytes or text from outside (clients, upstreams, proxy servers, the
//! config file), each feeding `data` to that parser the way the daemon
//! does and checking what must hold whatever the input.
//!
//! Two callers share them: the libFuzzer targets in `fuzz/` (a crate of its
//! own, each `fuzz_targets/TARGET.rs` one call to the function here), and
//! `tests/fuzz_corpus.rs`, which replays the seed corpus in
//! `fuzz/corpus/TARGET/` as an ordinary test. They live in the library,
//! not in `fuzz/`, because many parsers are private to their modules; those
//! are reached here through `pub(crate)` items, so the only public item is
//! this module, hidden from the docs: it is not part of dae's API.
//!
//! A harness panics only on a defect: a panic inside a parser, or a
//! property broken (named in the panic message). Errors the parsers return
//! for bad input are the expected outcome and are dropped.
//!
//! Nothing here sends a packet anywhere but to loopback: the controller
//! harness's upstream is a socket on 127.0.0.1, and the proxy protocols
//! talk over in-memory `tokio::io::duplex` pipes.
//!
//! Neighbours: every module with a parser (`wire`, `controller`, `config`,
//! `dialer`, `forwarder`).

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio::net::{TcpListener, UdpSocket};

use crate::config::link::{Auth, SsConfig, SsMethod, VmessConfig, VmessSecurity};
use crate::config::{self, Config};
use crate::controller::{Client, Controller, Step, Transport};
use crate::dialer::{self, BoxStream};
use crate::wire::{self, flag, QueryError};

/// A harness: panics on a defect, returns on anything else.
pub type Harness = fn(&[u8]);

/// Every target, by the name of its corpus directory and fuzz target.
pub const TARGETS: &[(&str, Harness)] = &[
    ("wire_query", wire_query),
    ("wire_response", wire_response),
    ("controller", controller),
    ("uci", uci),
    ("rule", rule),
    ("link", link),
    ("socks5", socks5),
    ("http_proxy", http_proxy),
    ("shadowsocks_stream", shadowsocks_stream),
    ("shadowsocks_packet", shadowsocks_packet),
    ("trojan", trojan),
    ("vless", vless),
    ("vmess", vmess),
    ("doh_doq", doh_doq),
    ("sniff", sniff),
];

/// How long a harness waits on anything before calling it a hang.
const HANG: Duration = Duration::from_secs(10);

thread_local! {
    /// One runtime for every run on this thread (a runtime per input
    /// would cost more than most parsers).
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread tokio runtime");
}

/// Runs `f` to its end on this thread's runtime, in a fresh `LocalSet`
/// (the daemon's tasks are `spawn_local`), which is dropped with whatever
/// it still holds.
fn block_on<F: Future>(f: F) -> F::Output {
    RUNTIME.with(|rt| tokio::task::LocalSet::new().block_on(rt, f))
}

/// `f`, or a panic if it takes longer than `HANG`.
async fn no_hang<F: Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(HANG, f).await {
        Ok(out) => out,
        Err(_) => panic!("{what}: no progress in {HANG:?} (a hang)"),
    }
}

/// A little reader over `data`, for harnesses that take several fields.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn byte(&mut self) -> u8 {
        let (&b, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        b
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.byte(), self.byte()])
    }

    /// The next `n` bytes (fewer at the end).
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.0.split_at(n.min(self.0.len()));
        self.0 = b;
        a
    }

    fn rest(self) -> &'a [u8] {
        self.0
    }
}

// ---------------------------------------------------------------- DNS

/// A client's query: `wire::parse_query` and everything the controller
/// builds from a query it accepted.
pub fn wire_query(data: &[u8]) {
    let info = match wire::parse_query(data) {
        Ok(info) => info,
        Err(QueryError::Drop(_)) => return,
        Err(QueryError::Reply(code, _)) => {
            let mut out = Vec::new();
            wire::header_only_reply(data, code, &mut out);
            assert_eq!(out.len(), wire::HEADER_LEN);
            assert_eq!(wire::id(&out), wire::id(data));
            return;
        }
    };
    assert!(info.question_end <= data.len());
    let mut text = String::new();
    wire::name_to_text(info.qname(data), &mut text);
    let _ = wire::NameText(info.qname(data)).to_string();
    let mut out = Vec::new();
    wire::empty_reply(data, &info, wire::rcode::SERVFAIL, &mut out);
    assert!(
        wire::response_matches(&out, info.id, data, &info),
        "an empty reply answers its query"
    );
    assert!(out.len() <= info.udp_limit(), "an empty reply fits UDP");
    let mut big = out.clone();
    big.resize(70_000, 0);
    wire::fit_udp(&mut big, data, &info);
    assert!(big.len() <= info.udp_limit(), "fit_udp fits");
    assert_ne!(wire::flags(&big) & flag::TC, 0, "a cut reply says TC");
    let (q, qi) = wire::with_qtype(data, &info, wire::rtype::AAAA);
    assert_eq!(wire::parse_query(&q).map(|i| i.qtype), Ok(qi.qtype));
}

/// An upstream's answer: `wire::scan_response`, and the TTL patching the
/// cache does with what it found.
pub fn wire_response(data: &[u8]) {
    let Ok(scan) = wire::scan_response(data) else {
        return;
    };
    let mut copy = data.to_vec();
    for &at in &scan.ttl_offsets {
        wire::set_ttl(&mut copy, usize::from(at), 7);
    }
    if let Some(at) = scan.soa_ttl_at {
        wire::set_ttl(&mut copy, usize::from(at), 7);
    }
    // TTLs are record fields, not structure: the answer reads the same.
    let again = wire::scan_response(&copy).expect("patched TTLs keep the answer readable");
    assert_eq!(again.answer_count, scan.answer_count);
    assert_eq!(again.answer_ips, scan.answer_ips);
    assert_eq!(again.ttl_offsets, scan.ttl_offsets);
    // As a stored answer replayed to a query for its own question.
    if let Ok(info) = wire::parse_query(&query_of(data)) {
        let query = query_of(data);
        let mut out = Vec::new();
        wire::patch_answer(
            data,
            scan.ttl_offsets.iter().copied(),
            &query,
            &info,
            |t| t / 2,
            &mut out,
        );
        assert_eq!(out.len(), data.len());
    }
}

/// The query `response` answers: its header (as a query, no records but
/// the question) and first question.
fn query_of(response: &[u8]) -> Vec<u8> {
    let mut q = response.to_vec();
    if q.len() >= wire::HEADER_LEN {
        q[2] &= !0x80;
        q[6..12].fill(0);
    }
    q
}

/// The config of the controller harness, its upstreams all on `port` of
/// 127.0.0.1 (UDP and TCP): request and response rules of each kind,
/// upstreams over UDP, TCP and TCP+UDP (so answers come in both framings,
/// and a response rule can send an answer on), and, in the second,
/// `ipversion_prefer` (two resolutions per A/AAAA query).
fn controller_configs(port: u16) -> Vec<Config> {
    let base = format!(
        "config dns 'dns'\n\
         \tlist dns_listen '127.0.0.1:0'\n\
         \toption upstream_timeout '2'\n\
         \tlist request_rule 'qname(suffix: reject.example) -> reject'\n\
         \tlist request_rule 'qname(suffix: asis.example) -> asis'\n\
         \tlist request_rule 'qtype(mx) -> b'\n\
         \tlist request_rule 'qtype(txt) -> c'\n\
         \toption request_fallback 'a'\n\
         \tlist response_rule 'upstream(a) && ip(192.0.2.0/24) -> b'\n\
         \tlist response_rule 'qname(full: gone.example) && qtype(a) -> reject'\n\
         \tlist response_rule 'upstream(a) && ip(2001:db8::/32) -> reject'\n\
         \toption response_fallback 'accept'\n\
         \tlist fixed_domain_ttl 'fixed.example:30'\n\
         config upstream 'a'\n\toption address 'udp://127.0.0.1:{port}'\n\
         config upstream 'b'\n\toption address 'tcp://127.0.0.1:{port}'\n\
         config upstream 'c'\n\toption address 'tcp+udp://127.0.0.1:{port}'\n"
    );
    let prefer = base.replace(
        "\toption upstream_timeout",
        "\toption ipversion_prefer '4'\n\toption upstream_timeout",
    );
    [base, prefer]
        .iter()
        .map(|text| config::parse_str(text).expect("the controller harness's config"))
        .collect()
}

/// The sockets the controller harness's upstreams send to (UDP and TCP
/// on one port), and the configs naming them, made once per thread.
struct Upstream {
    udp: UdpSocket,
    tcp: TcpListener,
    configs: Vec<Config>,
}

thread_local! {
    static UPSTREAM: RefCell<Option<Rc<Upstream>>> = const { RefCell::new(None) };
}

async fn upstream() -> Rc<Upstream> {
    if let Some(u) = UPSTREAM.with(|u| u.borrow().clone()) {
        return u;
    }
    // A UDP port whose TCP twin is free too.
    let (udp, tcp) = 'bound: {
        for _ in 0..100 {
            let udp = UdpSocket::bind("127.0.0.1:0")
                .await
                .expect("a loopback UDP socket");
            let at = udp.local_addr().expect("its address");
            if let Ok(tcp) = TcpListener::bind(at).await {
                break 'bound (udp, tcp);
            }
        }
        panic!("no loopback port free for both UDP and TCP");
    };
    let configs = controller_configs(udp.local_addr().expect("its address").port());
    let u = Rc::new(Upstream { udp, tcp, configs });
    UPSTREAM.with(|slot| *slot.borrow_mut() = Some(u.clone()));
    u
}

/// The controller on a raw client packet, with its cache in front:
/// `data` is a flags byte, a 2-byte query length, the query, then the
/// upstream's answer. The query goes through `Controller::handle`; a miss
/// goes upstream (`pursue`, as the listener does) to loopback sockets that
/// answer with the fuzzed answer (its id and question made those of the
/// query they got, unless flags bit 2 says raw) followed, over UDP, by a
/// SERVFAIL that ends the exchange if the fuzzed one is refused; then the
/// same query comes again and meets the cache.
///
/// Flags: bit 0 TCP client, bit 1 the client asked the upstream itself
/// (for `asis`), bit 2 raw answer (over TCP: raw bytes, no length
/// prefix), bit 3 `ipversion_prefer`.
pub fn controller(data: &[u8]) {
    let mut input = Input(data);
    let flags = input.byte();
    let qlen = usize::from(input.u16());
    let query = input.take(qlen);
    let answer = input.rest();
    let raw = flags & 4 != 0;
    block_on(async {
        let upstream = upstream().await;
        // Whatever an earlier run left on the socket.
        let mut scratch = vec![0u8; 65536];
        while upstream.udp.try_recv_from(&mut scratch).is_ok() {}
        let config = &upstream.configs[usize::from(flags & 8 != 0)];
        let controller = Controller::new(config).expect("a controller");
        let client = Client {
            transport: if flags & 1 != 0 {
                Transport::Tcp
            } else {
                Transport::Udp
            },
            addr: "127.0.0.1:5353".parse().expect("an address"),
            asked: (flags & 2 != 0).then(|| upstream.udp.local_addr().expect("its address")),
        };
        for round in 0..2 {
            let mut out = Vec::new();
            let pending = match controller.handle(query, &client, &mut out) {
                Step::Dropped => return,
                Step::Replied => None,
                Step::Pending(p) => Some(p),
            };
            if let Some(p) = pending {
                let (tx, rx) = tokio::sync::oneshot::channel();
                controller.pursue(p, client, move |reply| {
                    let _ = tx.send(reply.to_vec());
                    None
                });
                let udp = serve_udp(&upstream.udp, answer, raw);
                let tcp = serve_tcp(&upstream.tcp, answer, raw);
                out = no_hang("a query sent upstream", async {
                    tokio::select! {
                        reply = rx => reply.expect("the controller answers every pending query"),
                        _ = udp => unreachable!("the upstream serves until the answer comes"),
                        _ = tcp => unreachable!("the upstream serves until the answer comes"),
                    }
                })
                .await;
            }
            check_client_reply(query, &client, &out, round);
        }
    });
}

/// The fuzzed `answer` as the answer to `sent` (see `controller`): raw,
/// with only the id made `sent`'s; or with `sent`'s id and question in
/// place of its own (when its own can be found).
fn answer_to(sent: &[u8], answer: &[u8], raw: bool) -> Vec<u8> {
    let Ok(info) = wire::parse_query(sent) else {
        panic!("the controller sent upstream a query it cannot read itself: {sent:02x?}");
    };
    let mut reply = answer.to_vec();
    if reply.len() >= 2 {
        reply[..2].copy_from_slice(&sent[..2]);
    }
    // The end of the answer's own first question.
    let mut at = wire::HEADER_LEN;
    let own_end = loop {
        match answer.get(at) {
            None => break None,
            Some(0) => break Some(at + 1 + 4),
            Some(&len) if len & 0xc0 != 0 => break Some(at + 2 + 4),
            Some(&len) => at += 1 + usize::from(len),
        }
    };
    match own_end {
        Some(end) if !raw && end <= answer.len() => {
            reply.truncate(wire::HEADER_LEN);
            reply.extend_from_slice(&sent[wire::HEADER_LEN..info.question_end]);
            reply.extend_from_slice(&answer[end..]);
            reply
        }
        _ => reply,
    }
}

/// Answers every query on `socket` with the fuzzed answer, then a
/// SERVFAIL for the same question.
async fn serve_udp(socket: &UdpSocket, answer: &[u8], raw: bool) {
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok((n, from)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        let sent = &buf[..n];
        let _ = socket.send_to(&answer_to(sent, answer, raw), from).await;
        let info = wire::parse_query(sent).expect("read by answer_to");
        let mut servfail = sent[..info.question_end].to_vec();
        wire::set_flags(&mut servfail, flag::QR | flag::RD | flag::RA | 2);
        servfail[4..12].copy_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
        let _ = socket.send_to(&servfail, from).await;
    }
}

/// Answers every query on each connection to `listener` with the fuzzed
/// answer behind its length (raw: the bytes alone, and the connection
/// closed).
async fn serve_tcp(listener: &TcpListener, answer: &[u8], raw: bool) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            continue;
        };
        let answer = answer.to_vec();
        connections.spawn_local(async move {
            let mut len = [0u8; 2];
            while conn.read_exact(&mut len).await.is_ok() {
                let mut sent = vec![0u8; usize::from(u16::from_be_bytes(len))];
                if conn.read_exact(&mut sent).await.is_err() {
                    return;
                }
                let reply = answer_to(&sent, &answer, raw);
                let mut framed = Vec::with_capacity(reply.len() + 2);
                if !raw {
                    framed.extend_from_slice(&(reply.len().min(65535) as u16).to_be_bytes());
                }
                framed.extend_from_slice(&reply);
                if conn.write_all(&framed).await.is_err() || raw {
                    return;
                }
            }
        });
    }
}

/// What every reply to a client must be.
fn check_client_reply(query: &[u8], client: &Client, out: &[u8], round: usize) {
    assert!(
        out.len() >= wire::HEADER_LEN,
        "round {round}: a {}-byte reply",
        out.len()
    );
    assert_eq!(
        wire::id(out),
        wire::id(query),
        "round {round}: the client's id"
    );
    assert_ne!(wire::flags(out) & flag::QR, 0, "round {round}: QR set");
    if let Ok(info) = wire::parse_query(query) {
        if client.transport == Transport::Udp {
            assert!(
                out.len() <= info.udp_limit(),
                "round {round}: a {}-byte UDP reply for a client taking {}",
                out.len(),
                info.udp_limit()
            );
        }
        assert!(
            out.len() < wire::HEADER_LEN + 4
                || wire::read_u16(out, 4) == Some(0)
                || out.get(wire::HEADER_LEN..info.question_end)
                    == Some(&query[wire::HEADER_LEN..info.question_end]),
            "round {round}: the reply's question is the client's, as the client wrote it"
        );
    }
}

// ------------------------------------------------------------- config

/// UCI text: the whole reader (quoting, `uci_rs`, the checks), and the
/// quoting on its own: what it writes, it reads back the same. (Only
/// without backslashes: its output is for `uci_rs`, which keeps them
/// inside double quotes, where libuci's reading, which `normalize` does,
/// takes them as escapes.)
pub fn uci(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let (false, Ok(normal)) = (text.contains('\\'), config::quoting::normalize(text)) {
        let again = config::quoting::normalize(&normal).expect("normalized text reads again");
        assert_eq!(again, normal, "normalizing is idempotent");
    }
    if let Ok(config) = config::parse_str(text) {
        let _ = config::warnings(&config);
    }
}

/// A rule line (`request_rule`, `response_rule`, routing `rule`).
pub fn rule(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = config::rule::parse(text);
    // And inside a config, where it is checked against its section.
    if !text.contains(['\n', '\'']) {
        for opt in ["request_rule", "response_rule"] {
            let _ = config::parse_str(&format!(
                "config dns 'dns'\n\tlist {opt} '{text}'\n\
                 config upstream 'a'\n\toption address 'udp://192.0.2.53'\n"
            ));
        }
        let _ = config::parse_str(&format!("config routing 'routing'\n\tlist rule '{text}'\n"));
    }
}

/// A share link.
pub fn link(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = crate::config::link::parse(text);
}

// ---------------------------------------------------- proxy protocols

/// A stream whose reads return at most `max` bytes each (the state
/// machines must cope with a reply cut anywhere).
struct Trickle {
    inner: DuplexStream,
    max: usize,
}

impl AsyncRead for Trickle {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let max = self.max.min(buf.remaining());
        let mut part = buf.take(max);
        let r = Pin::new(&mut self.inner).poll_read(cx, &mut part);
        let n = part.filled().len();
        // SAFETY: `part` wrote `n` initialized bytes into `buf`'s unfilled part.
        unsafe { buf.assume_init(n) };
        buf.advance(n);
        r
    }
}

impl AsyncWrite for Trickle {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A stream to a "server" that has sent `reply` and closed its side; what
/// the client writes is kept (room for all of it) and never read. Reads
/// return at most `max` bytes (at least 1).
async fn server_sent(reply: &[u8], max: u8) -> (BoxStream, DuplexStream) {
    let (client, mut server) = tokio::io::duplex(reply.len() + 256 * 1024);
    server.write_all(reply).await.expect("room for the reply");
    server.shutdown().await.expect("the server's side closes");
    let max = if max == 0 {
        usize::MAX
    } else {
        usize::from(max)
    };
    (Box::new(Trickle { inner: client, max }), server)
}

/// Reads a proxied stream to its end (bounded: the reply is all there is).
async fn drain(stream: &mut BoxStream) {
    let mut buf = [0u8; 4096];
    let mut total = 0usize;
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            break;
        }
        total += n;
        assert!(total <= 1 << 20, "more bytes out than went in");
    }
}

/// Receives datagrams until the path fails (it must: the reply ends).
async fn drain_packets(rx: &mut dyn dialer::PacketRx) {
    for _ in 0..100_000 {
        if rx.recv().await.is_err() {
            return;
        }
    }
    panic!("100000 datagrams out of one finite reply");
}

fn target(v6: bool) -> SocketAddr {
    if v6 {
        "[2001:db8::53]:53".parse().expect("an address")
    } else {
        "192.0.2.53:53".parse().expect("an address")
    }
}

fn auth() -> Auth {
    Auth {
        user: "user".into(),
        password: "password".into(),
    }
}

/// A SOCKS5 server's replies (method, authentication, CONNECT), and a
/// datagram from its UDP relay. `data`: flags (bit 0 IPv6 target, bit 1
/// with a user and password), the read size, the server's bytes.
pub fn socks5(data: &[u8]) {
    let mut input = Input(data);
    let flags = input.byte();
    let max = input.byte();
    let reply = input.rest();
    let target = target(flags & 1 != 0);
    if let Some((_, payload)) = dialer::socks5::parse_udp(reply) {
        assert!(payload.len() <= reply.len().saturating_sub(10));
    }
    let auth = (flags & 2 != 0).then(auth);
    block_on(no_hang("socks5", async {
        let (stream, _server) = server_sent(reply, max).await;
        if let Ok(mut s) = dialer::socks5::connect(stream, auth.as_ref(), &target.into()).await {
            drain(&mut s).await;
        }
    }));
}

/// An HTTP proxy's reply to CONNECT. `data`: flags (bit 1 with a user and
/// password), the read size, the proxy's bytes.
pub fn http_proxy(data: &[u8]) {
    let mut input = Input(data);
    let flags = input.byte();
    let max = input.byte();
    let reply = input.rest();
    let auth = (flags & 2 != 0).then(auth);
    block_on(no_hang("http proxy", async {
        let (stream, _server) = server_sent(reply, max).await;
        if let Ok(mut s) = dialer::http::connect(stream, auth.as_ref(), &target(false).into()).await
        {
            drain(&mut s).await;
        }
    }));
}

fn ss_config(selector: u8) -> SsConfig {
    SsConfig {
        method: match selector % 3 {
            0 => SsMethod::Aes128Gcm,
            1 => SsMethod::Aes256Gcm,
            _ => SsMethod::Chacha20IetfPoly1305,
        },
        password: "fuzz".into(),
    }
}

/// A Shadowsocks server's stream, two ways. Raw (flags bit 7 set): the
/// bytes themselves (a wrong key, garbage). Sealed: the rest of `data` is
/// cut into chunks (a length byte, then that many bytes) that a server
/// with our key seals; then the sealed stream is cut at a fuzzed length
/// and a fuzzed byte flipped (when those are inside it). `data`: flags
/// (bits 0-1 cipher), read size, cut (2 bytes), flip (2 bytes), the rest.
pub fn shadowsocks_stream(data: &[u8]) {
    let mut input = Input(data);
    let flags = input.byte();
    let max = input.byte();
    let cut = usize::from(input.u16());
    let flip = usize::from(input.u16());
    let rest = input.rest();
    let config = ss_config(flags);
    block_on(no_hang("shadowsocks stream", async {
        let wire = if flags & 0x80 != 0 {
            rest.to_vec()
        } else {
            let mut wire = sealed_by_server(&config, rest).await;
            if cut > 0 && cut < wire.len() {
                wire.truncate(cut);
            }
            if let Some(b) = wire.get_mut(flip) {
                *b ^= 0x01;
            }
            wire
        };
        let (stream, _server) = server_sent(&wire, max).await;
        let target = target(false);
        if let Ok(mut s) = dialer::shadowsocks::connect(stream, &config, &target.into()).await {
            drain(&mut s).await;
        }
    }));
}

/// What a Shadowsocks server with `config`'s key sends when it writes
/// each chunk of `chunks` (length byte, bytes) in a write of its own.
async fn sealed_by_server(config: &SsConfig, chunks: &[u8]) -> Vec<u8> {
    let (ours, mut theirs) = tokio::io::duplex(4 * chunks.len() + 64 * 1024);
    let mut server = dialer::shadowsocks::connect(Box::new(ours), config, &target(false).into())
        .await
        .expect("a shadowsocks stream");
    let mut input = Input(chunks);
    while !input.0.is_empty() {
        let n = usize::from(input.byte());
        let chunk = input.take(n);
        server.write_all(chunk).await.expect("room for the chunk");
    }
    server.flush().await.expect("room for the stream");
    drop(server);
    let mut wire = Vec::new();
    theirs
        .read_to_end(&mut wire)
        .await
        .expect("the sealed stream");
    wire
}

/// A datagram from a Shadowsocks server's UDP relay, raw (flags bit 7) or
/// sealed with our key around the fuzzed plaintext (address header and
/// payload), as the server seals it: a salt, then the plaintext under the
/// salt's subkey with nonce zero. `data`: flags (bits 0-1 cipher; bit 2
/// once chose the target, which replies no longer name), the rest.
pub fn shadowsocks_packet(data: &[u8]) {
    use dialer::shadowsocks::{open_datagram, Cipher};
    use ring::aead::{Aad, Nonce};
    let mut input = Input(data);
    let flags = input.byte();
    let rest = input.rest();
    let cipher = Cipher::new(&ss_config(flags));
    let mut datagram = if flags & 0x80 != 0 {
        rest.to_vec()
    } else {
        let salt = [7u8; 32];
        let salt = &salt[..cipher.key_len()];
        let mut out = salt.to_vec();
        out.extend_from_slice(rest);
        let tag = cipher
            .session_key(salt)
            .expect("a subkey")
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key([0; 12]),
                Aad::empty(),
                &mut out[salt.len()..],
            )
            .expect("sealing a datagram");
        out.extend_from_slice(tag.as_ref());
        out
    };
    let len = datagram.len();
    if let Ok((_, payload)) = open_datagram(&cipher, &mut datagram) {
        assert!(payload.start <= payload.end && payload.end <= len);
    }
}

/// A trojan server's bytes after our request: the stream as is, or UDP
/// frames. `data`: flags (bit 0 IPv6 target, bit 1 UDP), read size, the
/// server's bytes.
pub fn trojan(data: &[u8]) {
    let mut input = Input(data);
    let flags = input.byte();
    let max = input.byte();
    let reply = input.rest();
    let target = target(flags & 1 != 0);
    block_on(no_hang("trojan", async {
        let (stream, _server) = server_sent(reply, max).await;
        if flags & 2 != 0 {
            let mut p = dialer::trojan::cone(stream, "password", &target.into())
                .expect("a trojan datagram path")
                .to_target(target);
            let _ = p.tx.send(b"query").await;
            drain_packets(&mut *p.rx).await;
        } else {
            let mut s = dialer::trojan::connect(stream, "password", &target.into())
                .await
                .expect("a trojan stream");
            drain(&mut s).await;
        }
    }));
}

/// A VLESS server's response header and what follows: the stream, or UDP
/// frames. `data` as for `trojan`.
pub fn vless(data: &[u8]) {
    let mut input = Input(data);
    let flags = input.byte();
    let max = input.byte();
    let reply = input.rest();
    let target = target(flags & 1 != 0);
    let uuid = [0x5a; 16];
    block_on(no_hang("vless", async {
        let (stream, _server) = server_sent(reply, max).await;
        if flags & 2 != 0 {
            let mut p = dialer::vless::cone(stream, &uuid, &target.into())
                .expect("a vless datagram path")
                .to_target(target);
            let _ = p.tx.send(b"query").await;
            drain_packets(&mut *p.rx).await;
        } else {
            let mut s = dialer::vless::connect(stream, &uuid, &target.into())
                .await
                .expect("a vless stream");
            let _ = s.write_all(b"query").await;
            drain(&mut s).await;
        }
    }));
}

/// A VMess server's reply, two ways. Raw (flags bit 7): the bytes as
/// they are (a server with other keys, garbage: the sealed header length
/// must fail, never panic). Sealed: the harness plays the server: it opens
/// our request as a VMess server does, and answers under the response
/// keys with a header and body chunks built from the fuzzed plan; then
/// the reply is cut at a fuzzed length and a fuzzed byte flipped (when
/// inside it).
///
/// `data`: flags (bit 0 IPv6 target, bit 1 UDP, bits 2-3 security: AES,
/// ChaCha20, none; bit 4 an end chunk after the rest; bit 5 a fuzzed
/// header length; bit 7 raw), read size, cut (2 bytes), flip (2 bytes),
/// then: the header length (2 bytes, used with bit 5), a byte n and n
/// bytes of header after the echoed auth byte, and chunk specs (a length
/// byte, those bytes) to the end. Raw: the server's bytes after flags and
/// read size.
pub fn vmess(data: &[u8]) {
    let mut input = Input(data);
    let flags = input.byte();
    let max = input.byte();
    let target = target(flags & 1 != 0);
    let config = VmessConfig {
        uuid: [0x5a; 16],
        security: match (flags >> 2) & 3 {
            0 => VmessSecurity::Aes128Gcm,
            1 => VmessSecurity::Chacha20Poly1305,
            _ => VmessSecurity::None,
        },
    };
    block_on(no_hang("vmess", async {
        let (ours, theirs) = tokio::io::duplex(data.len() * 4 + 256 * 1024);
        let ours: BoxStream = Box::new(Trickle {
            inner: ours,
            max: if max == 0 {
                usize::MAX
            } else {
                usize::from(max)
            },
        });
        let server = async {
            let mut theirs = theirs;
            let reply = if flags & 0x80 != 0 {
                input.rest().to_vec()
            } else {
                vmess_server_reply(&mut theirs, &config, flags, input).await
            };
            theirs.write_all(&reply).await.expect("room for the reply");
            theirs.shutdown().await.expect("the server's side closes");
            theirs
        };
        let client = async {
            if flags & 2 != 0 {
                let mut p = dialer::vmess::cone(ours, &config, &target.into())
                    .expect("a vmess datagram path")
                    .to_target(target);
                p.tx.send(b"query").await.expect("room for the query");
                drain_packets(&mut *p.rx).await;
            } else {
                let mut s = dialer::vmess::connect(ours, &config, &target.into())
                    .await
                    .expect("a vmess stream");
                s.write_all(b"query").await.expect("room for the query");
                s.flush().await.expect("room for the query");
                drain(&mut s).await;
            }
        };
        // The server's end lives until the client is done with it.
        let (_theirs, ()) = tokio::join!(server, client);
    }));
}

/// Reads our VMess request off `from` as the server does, and returns
/// the reply `plan` describes (see `vmess`).
async fn vmess_server_reply(
    from: &mut DuplexStream,
    config: &VmessConfig,
    flags: u8,
    mut plan: Input<'_>,
) -> Vec<u8> {
    use dialer::vmess::{cmd_key, gcm_seal, kdf, kdf16, sha256_16, BodyCipher};
    use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
    let open = |key: &[u8; 16], iv: &[u8], aad: &[u8], sealed: &mut Vec<u8>| {
        let key = LessSafeKey::new(UnboundKey::new(&aead::AES_128_GCM, key).expect("a key"));
        let nonce = Nonce::try_assume_unique_for_key(&iv[..12]).expect("a nonce");
        let n = key
            .open_in_place(nonce, Aad::from(aad), sealed)
            .expect("our request opens with our keys")
            .len();
        sealed.truncate(n);
    };
    let cmd = cmd_key(&config.uuid);
    let mut head = [0u8; 16 + 18 + 8];
    from.read_exact(&mut head).await.expect("a request");
    let (id, rest) = head.split_at(16);
    let (sealed_len, nonce) = rest.split_at(18);
    let mut len = sealed_len.to_vec();
    let key = kdf16(&cmd, &[b"VMess Header AEAD Key_Length", id, nonce]);
    let iv = kdf(&cmd, &[b"VMess Header AEAD Nonce_Length", id, nonce]);
    open(&key, &iv, id, &mut len);
    let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
    let mut header = vec![0u8; len + 16];
    from.read_exact(&mut header)
        .await
        .expect("a request header");
    let key = kdf16(&cmd, &[b"VMess Header AEAD Key", id, nonce]);
    let iv = kdf(&cmd, &[b"VMess Header AEAD Nonce", id, nonce]);
    open(&key, &iv, id, &mut header);
    let body_iv: [u8; 16] = header[1..17].try_into().expect("16 bytes");
    let body_key: [u8; 16] = header[17..33].try_into().expect("16 bytes");
    let auth_v = header[33];

    let cut = usize::from(plan.u16());
    let flip = usize::from(plan.u16());
    let fuzzed_len = plan.u16();
    let n = usize::from(plan.byte());
    let mut resp_header = vec![auth_v];
    resp_header.extend_from_slice(plan.take(n));
    let resp_key = sha256_16(&body_key);
    let resp_iv = sha256_16(&body_iv);
    let header_len = if flags & 0x20 != 0 {
        fuzzed_len
    } else {
        resp_header.len() as u16
    };
    let mut reply = Vec::new();
    let key = kdf16(&resp_key, &[b"AEAD Resp Header Len Key"]);
    let iv = kdf(&resp_iv, &[b"AEAD Resp Header Len IV"]);
    gcm_seal(&key, &iv[..12], &[], &header_len.to_be_bytes(), &mut reply).expect("sealing");
    let key = kdf16(&resp_key, &[b"AEAD Resp Header Key"]);
    let iv = kdf(&resp_iv, &[b"AEAD Resp Header IV"]);
    gcm_seal(&key, &iv[..12], &[], &resp_header, &mut reply).expect("sealing");
    let mut body = BodyCipher::new(config.security, &resp_key, resp_iv).expect("a body cipher");
    while !plan.0.is_empty() {
        let n = usize::from(plan.byte());
        body.seal_chunk(plan.take(n), &mut reply)
            .expect("sealing a chunk");
    }
    if flags & 0x10 != 0 {
        body.seal_chunk(&[], &mut reply).expect("sealing the end");
    }
    if cut > 0 && cut < reply.len() {
        reply.truncate(cut);
    }
    if let Some(b) = reply.get_mut(flip) {
        *b ^= 0x01;
    }
    reply
}

// ------------------------------------------------------ DoH and DoQ

/// What DoH and DoQ take from a reply: a DoQ stream's 2-byte length
/// framing, a DoH body's checks, and the match against the question.
pub fn doh_doq(data: &[u8]) {
    #[cfg(feature = "doq")]
    if let Ok(message) = crate::forwarder::quic::unframe(data) {
        assert_eq!(message.len() + 2, data.len());
    }
    #[cfg(any(feature = "doh", feature = "doh3"))]
    if crate::forwarder::doh::check_body(data).is_ok() {
        assert!(data.len() >= wire::HEADER_LEN);
        if let Ok(info) = wire::parse_query(&query_of(data)) {
            let _ = wire::response_matches(data, 0, &query_of(data), &info);
        }
    }
}

// ---------------------------------------------------------- sniffers

/// The first bytes of a LAN flow: the TCP sniffers on the prefixes a relay
/// feeds them as the bytes come, and the QUIC sniffer on the input cut
/// into up to three datagrams at places its first two bytes choose. A name
/// found must be a lowercase host name.
pub fn sniff(data: &[u8]) {
    use crate::sniff::{sniff_stream, QuicSniffer, Sniffed};
    let check = |found: &Sniffed| {
        if let Sniffed::Domain(d) = found {
            assert!(
                !d.is_empty()
                    && d.len() <= 253
                    && d.bytes().all(|b| b.is_ascii_lowercase()
                        || b.is_ascii_digit()
                        || b == b'-'
                        || b == b'_'
                        || b == b'.'),
                "not a lowercase host name: {d:?}"
            );
        }
    };
    // Every short prefix, then one in 64 (a relay reads in chunks).
    let n = data.len().min(crate::sniff::STREAM_PREFIX_MAX + 64);
    for end in (0..=n).filter(|e| *e < 256 || e % 64 == 0 || *e == n) {
        check(&sniff_stream(&data[..end]));
    }
    let (cuts, rest) = data.split_at(data.len().min(2));
    let mut at = 0;
    let mut quic = QuicSniffer::default();
    for &cut in cuts.iter().chain(std::iter::once(&255)) {
        let end = (at + usize::from(cut) * 8).min(rest.len());
        check(&quic.feed(&rest[at..end]));
        at = end;
    }
}
