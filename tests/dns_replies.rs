//! What dae's replies carry, end to end (issue 16, items 3, 7 and 8): the
//! real `dae` binary on loopback between real clients (raw queries parsed
//! with hickory-proto; dig and kdig where a stock client's view adds to it)
//! and its upstreams: unbound where a real server can play the part, and
//! a small crafted UDP server in this file where the upstream must misbehave
//! on purpose (send a COOKIE to a client that sent none, non-query opcodes,
//! TTLs with the top bit set, answers without RA).

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use common::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

const COOKIE: u16 = 10;
const NSID: u16 = 3;
const PADDING: u16 = 12;
const EDE: u16 = 15;
/// The server half of the COOKIE the crafted upstream sends.
const SERVER_COOKIE: [u8; 16] = *b"crafted-srvcooki";

/// A UDP DNS server on loopback that answers by the first label of the
/// question (see `Crafted::answer`), and keeps every query it got.
struct Crafted {
    addr: SocketAddr,
    queries: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Crafted {
    fn start() -> Crafted {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let queries = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen, stopped) = (queries.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !stopped.load(Ordering::Relaxed) {
                let Ok((n, from)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                let q = buf[..n].to_vec();
                seen.lock().unwrap().push(q.clone());
                for (i, reply) in Crafted::answer(&q).into_iter().enumerate() {
                    if i > 0 {
                        std::thread::sleep(Duration::from_millis(30));
                    }
                    let _ = socket.send_to(&reply, from);
                }
            }
        });
        Crafted {
            addr,
            queries,
            stop,
            thread: Some(thread),
        }
    }

    /// Queries whose first label is `label`, as they arrived.
    fn queries_for(&self, label: &str) -> Vec<Vec<u8>> {
        let q = self.queries.lock().unwrap();
        q.iter()
            .filter(|q| first_label(q).as_deref() == Some(label))
            .cloned()
            .collect()
    }

    /// The datagrams answering `q`, by its first label:
    /// - `cookie`: A 192.0.2.20, and an OPT record (even to a query without
    ///   one) with a COOKIE (the client's half echoed, or 8 bytes of 0xaa,
    ///   and ours), an NSID, padding and an Extended DNS Error;
    /// - `norecurse`: A 192.0.2.22, RA clear;
    /// - `huge`: A 192.0.2.23 with TTL 2^31;
    /// - `mixed`: A 192.0.2.24 TTL 300, and an additional A with TTL 2^32-1;
    /// - `bogus`: three datagrams that are not answers to it (opcode
    ///   NOTIFY, QR clear, another name), each with A 192.0.2.66, then the
    ///   answer, A 192.0.2.21;
    /// - anything else: NXDOMAIN.
    fn answer(q: &[u8]) -> Vec<Vec<u8>> {
        let Some(label) = first_label(q) else {
            return Vec::new();
        };
        let Some(qend) = question_end(q) else {
            return Vec::new();
        };
        let head = |flags: u16, an: u16, ar: u16| {
            let mut r = q[..2].to_vec();
            r.extend_from_slice(&flags.to_be_bytes());
            for count in [1, an, 0, ar] {
                r.extend_from_slice(&u16::to_be_bytes(count));
            }
            r.extend_from_slice(&q[12..qend]);
            r
        };
        const QR_RD_RA: u16 = 0x8180;
        match label.as_str() {
            "cookie" => {
                let client_half = client_cookie(q).unwrap_or([0xaa; 8]);
                let mut cookie = client_half.to_vec();
                cookie.extend_from_slice(&SERVER_COOKIE);
                let opt = opt_record(
                    &[
                        (COOKIE, &cookie),
                        (NSID, b"crafted-nsid"),
                        (PADDING, &[0; 32]),
                        (EDE, b"\x00\x00crafted note"),
                    ],
                    4096,
                );
                let mut r = head(QR_RD_RA, 1, 1);
                r.extend_from_slice(&a_record(300, [192, 0, 2, 20]));
                r.extend_from_slice(&opt);
                vec![r]
            }
            "norecurse" => {
                let mut r = head(0x8100, 1, 0);
                r.extend_from_slice(&a_record(300, [192, 0, 2, 22]));
                vec![r]
            }
            "huge" => {
                let mut r = head(QR_RD_RA, 1, 0);
                r.extend_from_slice(&a_record(0x8000_0000, [192, 0, 2, 23]));
                vec![r]
            }
            "mixed" => {
                let mut r = head(QR_RD_RA, 1, 1);
                r.extend_from_slice(&a_record(300, [192, 0, 2, 24]));
                r.extend_from_slice(&a_record(u32::MAX, [192, 0, 2, 25]));
                vec![r]
            }
            "bogus" => {
                let bad = [192, 0, 2, 66];
                let mut notify = head(QR_RD_RA | (4 << 11), 1, 0);
                notify.extend_from_slice(&a_record(300, bad));
                let mut not_response = head(0x0180, 1, 0);
                not_response.extend_from_slice(&a_record(300, bad));
                let mut other_name = head(QR_RD_RA, 1, 0);
                other_name[13] ^= 0x01; // b'b' -> b'c'
                other_name.extend_from_slice(&a_record(300, bad));
                let mut good = head(QR_RD_RA, 1, 0);
                good.extend_from_slice(&a_record(300, [192, 0, 2, 21]));
                vec![notify, not_response, other_name, good]
            }
            _ => vec![head(0x8183, 0, 0)],
        }
    }
}

impl Drop for Crafted {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The question's first label, lowercased (an upstream query may come in
/// mixed case).
fn first_label(q: &[u8]) -> Option<String> {
    let len = usize::from(*q.get(12)?);
    let label = q.get(13..13 + len)?;
    Some(String::from_utf8_lossy(label).to_ascii_lowercase())
}

fn question_end(q: &[u8]) -> Option<usize> {
    let mut at = 12;
    loop {
        let len = usize::from(*q.get(at)?);
        at += 1 + len;
        if len == 0 {
            return Some(at + 4).filter(|&e| e <= q.len());
        }
    }
}

/// The EDNS options of `m`'s OPT record, if it has one (assumed to follow
/// the question directly, as in the queries here).
fn options_after_question(m: &[u8]) -> Option<Vec<(u16, Vec<u8>)>> {
    let at = question_end(m)?;
    if m.get(at..at + 3)? != [0, 0, 41] {
        return None;
    }
    let rdlen = usize::from(u16::from_be_bytes([m[at + 9], m[at + 10]]));
    let mut options = Vec::new();
    let mut r = at + 11;
    while r + 4 <= at + 11 + rdlen {
        let code = u16::from_be_bytes([m[r], m[r + 1]]);
        let len = usize::from(u16::from_be_bytes([m[r + 2], m[r + 3]]));
        options.push((code, m.get(r + 4..r + 4 + len)?.to_vec()));
        r += 4 + len;
    }
    Some(options)
}

fn client_cookie(q: &[u8]) -> Option<[u8; 8]> {
    let options = options_after_question(q)?;
    let (_, c) = options.iter().find(|(code, _)| *code == COOKIE)?;
    c.get(..8)?.try_into().ok()
}

fn a_record(ttl: u32, ip: [u8; 4]) -> Vec<u8> {
    let mut r = vec![0xc0, 12, 0, 1, 0, 1];
    r.extend_from_slice(&ttl.to_be_bytes());
    r.extend_from_slice(&[0, 4]);
    r.extend_from_slice(&ip);
    r
}

fn opt_record(options: &[(u16, &[u8])], udp_size: u16) -> Vec<u8> {
    let mut rdata = Vec::new();
    for (code, data) in options {
        rdata.extend_from_slice(&code.to_be_bytes());
        rdata.extend_from_slice(&(data.len() as u16).to_be_bytes());
        rdata.extend_from_slice(data);
    }
    let mut r = vec![0, 0, 41];
    r.extend_from_slice(&udp_size.to_be_bytes());
    r.extend_from_slice(&[0, 0, 0, 0]);
    r.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    r.extend_from_slice(&rdata);
    r
}

/// A query for `name` with EDNS (payload 1232) and these options in its
/// OPT record.
fn query_with_options(name: &str, options: &[(u16, &[u8])]) -> Vec<u8> {
    let mut q = query(name, RecordType::A, true);
    let opt = q.len() - 11;
    assert_eq!(&q[opt..opt + 3], &[0, 0, 41], "hickory puts OPT last");
    q.truncate(opt);
    q.extend_from_slice(&opt_record(options, 1232));
    q
}

fn exchange(dae: &Dae, q: &[u8]) -> (Vec<u8>, Message) {
    let r = udp_exchange(dae.addr, q, Duration::from_secs(5)).expect("a reply");
    let m = Message::from_vec(&r).expect("the reply parses");
    assert_eq!(r[..2], q[..2], "reply id");
    (r, m)
}

fn option_codes(m: &Message) -> Vec<u16> {
    let Some(e) = &m.edns else { return Vec::new() };
    e.options()
        .as_ref()
        .iter()
        .map(|(c, _)| u16::from(*c))
        .collect()
}

fn crafted_dae(crafted: &Crafted) -> Dae {
    Dae::start(&config(
        &[("crafted", crafted.addr)],
        "\toption request_fallback 'crafted'\n",
    ))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Item 3: a cached answer carries no options of another client's exchange
/// (RFC 7873 §5.3), and the client's own options do not go upstream.
#[test]
fn cached_answers_carry_our_opt_and_no_other_exchanges_options() {
    let crafted = Crafted::start();
    let dae = crafted_dae(&crafted);

    let first_cookie = *b"client-1";
    let q = query_with_options("cookie.lab.example.", &[(COOKIE, &first_cookie)]);
    let (r, m) = exchange(&dae, &q);
    assert_eq!(answers(&m), vec!["192.0.2.20"]);
    // The upstream saw no COOKIE of the client's (nor any option).
    let seen = crafted.queries_for("cookie");
    assert_eq!(seen.len(), 1);
    assert_eq!(
        options_after_question(&seen[0]),
        Some(Vec::new()),
        "query upstream: {:02x?}",
        seen[0]
    );
    // Our OPT record: our payload size, and of the upstream's options only
    // its Extended DNS Error.
    let e = m.edns.as_ref().expect("an OPT record for an EDNS client");
    assert_eq!(e.max_payload(), 1232);
    assert_eq!(option_codes(&m), vec![EDE]);
    assert!(!contains(&r, &SERVER_COOKIE), "the upstream's cookie");

    // A second client, another cookie: a cache hit, with none of the first
    // client's exchange in it.
    let second_cookie = *b"client-2";
    let q = query_with_options("cookie.lab.example.", &[(COOKIE, &second_cookie)]);
    let (r, m) = exchange(&dae, &q);
    assert_eq!(answers(&m), vec!["192.0.2.20"]);
    assert_eq!(crafted.queries_for("cookie").len(), 1, "a cache hit");
    assert!(!contains(&r, &first_cookie), "the first client's cookie");
    assert_eq!(option_codes(&m), vec![EDE]);

    // A client without EDNS gets no OPT record, though the upstream sent one.
    let q = query("cookie.lab.example.", RecordType::A, false);
    let (r, m) = exchange(&dae, &q);
    assert_eq!(answers(&m), vec!["192.0.2.20"]);
    assert!(m.edns.is_none(), "no OPT: {r:02x?}");
    assert_eq!(u16::from_be_bytes([r[10], r[11]]), 0, "ARCOUNT");

    // kdig, a stock client with a cookie of its own, sees no COOKIE, no NSID.
    if have("kdig") {
        let out = Command::new("kdig")
            .args([
                "+cookie",
                "+nsid",
                "+retry=0",
                "+time=5",
                "-p",
                &dae.addr.port().to_string(),
                "@127.0.0.1",
                "cookie.lab.example",
                "A",
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("192.0.2.20"), "{text}");
        assert!(text.contains("EDNS PSEUDOSECTION"), "{text}");
        assert!(!text.contains("COOKIE"), "{text}");
        assert!(!text.contains("NSID"), "{text}");
    }
}

/// Item 3 with a real upstream: unbound tells its NSID to whoever asks for
/// it; through dae, nobody's request for it goes upstream, so a client that
/// did not ask never gets it from the cache.
#[test]
fn an_upstreams_nsid_is_not_replayed_from_the_cache() {
    if !have("unbound") || !have("dig") {
        return;
    }
    let up = Unbound::start_with(
        &["www.lab.example. 300 IN A 192.0.2.10"],
        "  nsid: \"ascii_lab-unbound\"\n",
    );
    let dae = Dae::start(&config(
        &[("lab", up.addr())],
        "\toption request_fallback 'lab'\n",
    ));
    let dig = |extra: &[&str]| {
        let port = dae.addr.port().to_string();
        let mut args = vec!["+tries=1", "+time=5", "-p", &port, "@127.0.0.1"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["www.lab.example", "A"]);
        let out = Command::new("dig").args(&args).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // The first client asks for the NSID; the second does not.
    let first = dig(&["+nsid"]);
    assert!(first.contains("192.0.2.10"), "{first}");
    let second = dig(&[]);
    assert!(second.contains("192.0.2.10"), "{second}");
    assert_eq!(up.queries("www.lab.example.", "A"), 1, "a cache hit");
    assert!(!second.contains("lab-unbound"), "{second}");
    assert!(!second.contains("NSID"), "{second}");
    // dae does not offer one of its own either.
    assert!(!first.contains("NSID"), "{first}");
}

/// Item 3: each client's own size; without EDNS, 512 bytes and no OPT.
#[test]
fn a_cache_hit_fits_each_clients_own_size() {
    if !have("unbound") {
        return;
    }
    let txt: Vec<String> = (0..10)
        .map(|i| format!("big.lab.example. 300 IN TXT \"{}{i}\"", "x".repeat(100)))
        .collect();
    let records: Vec<&str> = txt.iter().map(String::as_str).collect();
    let up = Unbound::start(&records);
    let dae = Dae::start(&config(
        &[("lab", up.addr())],
        "\toption request_fallback 'lab'\n",
    ));
    let with_size = |size: u16| {
        let mut q = query("big.lab.example.", RecordType::TXT, true);
        let at = q.len() - 11 + 3;
        q[at..at + 2].copy_from_slice(&size.to_be_bytes());
        q
    };
    // Cached by a client that takes it all.
    let (r, m) = exchange(&dae, &with_size(4096));
    assert_eq!(m.answers.len(), 10);
    assert!(r.len() > 1000 && r.len() <= 1232, "{} bytes", r.len());
    // A client offering 600: truncated, with our OPT.
    let (r, m) = exchange(&dae, &with_size(600));
    assert!(m.metadata.truncation && m.answers.is_empty());
    assert!(r.len() <= 600);
    assert_eq!(m.edns.as_ref().map(|e| e.max_payload()), Some(1232));
    // Without EDNS: 512 at most, truncated, no OPT.
    let q = query("big.lab.example.", RecordType::TXT, false);
    let (r, m) = exchange(&dae, &q);
    assert!(m.metadata.truncation && m.answers.is_empty());
    assert!(r.len() <= 512 && m.edns.is_none());
    // Over TCP the whole answer, from the cache.
    let asked = up.queries("big.lab.example.", "TXT");
    let r = tcp_exchange(dae.addr, &with_size(600), Duration::from_secs(5)).expect("tcp");
    assert_eq!(Message::from_vec(&r).unwrap().answers.len(), 10);
    assert_eq!(up.queries("big.lab.example.", "TXT"), asked, "a cache hit");
}

/// A query in EDNS version `version`.
fn query_in_version(name: &str, version: u8) -> Vec<u8> {
    let mut q = query(name, RecordType::A, true);
    let opt = q.len() - 11;
    q[opt + 6] = version;
    q
}

/// Checks a BADVERS reply (RFC 6891 §6.1.3): no records, the low rcode bits
/// 0, our OPT record (version 0) with extended rcode 1 (16 >> 4).
fn assert_badvers(q: &[u8], r: &[u8]) {
    let m = Message::from_vec(r).expect("the reply parses");
    assert_eq!(r[..2], q[..2], "id");
    assert_eq!(r[3] & 0x0f, 0, "header rcode bits");
    assert!(m.answers.is_empty() && m.authorities.is_empty());
    let e = m.edns.as_ref().expect("an OPT record");
    assert_eq!((e.rcode_high(), e.version()), (1, 0), "{r:02x?}");
}

/// Item 7: a query in an EDNS version above 0 gets BADVERS, cached name or
/// not, and never goes upstream.
#[test]
fn edns_versions_above_0_get_badvers() {
    let Some(up) = have("unbound").then(|| {
        Unbound::start(&[
            "www.lab.example. 300 IN A 192.0.2.10",
            "new.lab.example. 300 IN A 192.0.2.11",
        ])
    }) else {
        return;
    };
    let dae = Dae::start(&config(
        &[("lab", up.addr())],
        "\toption request_fallback 'lab'\n",
    ));
    // Cached from an EDNS 0 query ...
    let (_, m) = exchange(&dae, &query("www.lab.example.", RecordType::A, true));
    assert_eq!(answers(&m), vec!["192.0.2.10"]);
    // ... asked in EDNS 1.
    let q = query_in_version("www.lab.example.", 1);
    let r = udp_exchange(dae.addr, &q, Duration::from_secs(5)).expect("a reply");
    assert_badvers(&q, &r);
    // Not cached: the same, and unbound never hears of it.
    let q = query_in_version("new.lab.example.", 1);
    let r = udp_exchange(dae.addr, &q, Duration::from_secs(5)).expect("a reply");
    assert_badvers(&q, &r);
    let r = tcp_exchange(dae.addr, &q, Duration::from_secs(5)).expect("a reply");
    assert_badvers(&q, &r);
    assert_eq!(up.queries("new.lab.example.", "A"), 0, "{}", up.log());
    // kdig agrees, and version 0 still works.
    if have("kdig") {
        let out = Command::new("kdig")
            .args([
                "+edns=1",
                "+retry=0",
                "+time=5",
                "-p",
                &dae.addr.port().to_string(),
                "@127.0.0.1",
                "www.lab.example",
                "A",
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("BADVERS"), "{text}");
    }
    let (_, m) = exchange(&dae, &query("new.lab.example.", RecordType::A, true));
    assert_eq!(answers(&m), vec!["192.0.2.11"]);
}

/// Item 8: an upstream's REFUSED reaches the client (as from dnsmasq and
/// unbound as forwarders), uncached; the response rules may still send it
/// on to another upstream.
#[test]
fn an_upstream_refusal_is_passed_on_or_sent_on_by_the_rules() {
    if !have("unbound") {
        return;
    }
    let refusing = Unbound::start_with(
        &["www.lab.example. 300 IN A 192.0.2.10"],
        "  local-zone: \"refused.lab.example.\" always_refuse\n  \
         local-zone: \"elsewhere.lab.example.\" always_refuse\n",
    );
    let other = Unbound::start(&["elsewhere.lab.example. 300 IN A 192.0.2.30"]);
    let opts = "\toption request_fallback 'strict'\n\
        \tlist response_rule 'upstream(strict) && qname(elsewhere.lab.example) -> other'\n";
    let dae = Dae::start(&config(
        &[("strict", refusing.addr()), ("other", other.addr())],
        opts,
    ));
    for _ in 0..2 {
        let m = ask(dae.addr, "refused.lab.example.", RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::Refused);
        assert!(m.metadata.recursion_available);
    }
    assert_eq!(
        refusing.queries("refused.lab.example.", "A"),
        2,
        "not cached"
    );
    assert!(dae.log().contains("upstream 'strict' refused the query"));
    let m = ask(dae.addr, "elsewhere.lab.example.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(answers(&m), vec!["192.0.2.30"]);
}

/// Item 8: RA on every answer, whatever the upstream said: to its clients
/// dae is a recursive service.
#[test]
fn answers_say_recursion_is_available() {
    let crafted = Crafted::start();
    let dae = crafted_dae(&crafted);
    for _ in 0..2 {
        let m = ask(dae.addr, "norecurse.lab.example.", RecordType::A);
        assert_eq!(answers(&m), vec!["192.0.2.22"]);
        assert!(m.metadata.recursion_available);
    }
    assert_eq!(crafted.queries_for("norecurse").len(), 1);
}

/// Item 8: datagrams that are not answers to the query (an opcode other
/// than QUERY, QR clear, another name) are not taken; the answer after them
/// is.
#[test]
fn only_a_standard_response_to_the_question_is_taken() {
    let crafted = Crafted::start();
    let dae = crafted_dae(&crafted);
    let m = ask(dae.addr, "bogus.lab.example.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(answers(&m), vec!["192.0.2.21"]);
}

/// Item 8: what follows the question and the OPT record in a client's
/// query (here: 40 bytes of junk) is not sent upstream; nor are records in
/// sections a query leaves empty.
#[test]
fn a_clients_trailing_bytes_are_not_forwarded() {
    let crafted = Crafted::start();
    let dae = crafted_dae(&crafted);
    let clean = query("junk.lab.example.", RecordType::A, true);
    let mut q = clean.clone();
    q.extend_from_slice(&[0x5a; 40]);
    let (_, m) = exchange(&dae, &q);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    let seen = crafted.queries_for("junk");
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].len(), clean.len(), "{:02x?}", seen[0]);
    assert!(!contains(&seen[0], &[0x5a; 8]));
    assert_eq!(&seen[0][4..12], &clean[4..12], "counts");
}

/// Item 8: TTLs of 2^31 and more count as 0 (RFC 2181 §8), on the way
/// through and in the cache.
#[test]
fn ttls_with_the_top_bit_set_count_as_zero() {
    let crafted = Crafted::start();
    let dae = crafted_dae(&crafted);
    // Passed through with TTL 0, and not cached.
    for _ in 0..2 {
        let m = ask(dae.addr, "huge.lab.example.", RecordType::A);
        assert_eq!(answers(&m), vec!["192.0.2.23"]);
        assert_eq!(m.answers[0].ttl, 0);
    }
    assert_eq!(crafted.queries_for("huge").len(), 2, "TTL 0: not cached");
    // Cached by the answer's TTL; the additional record's TTL is 0.
    for _ in 0..2 {
        let m = ask(dae.addr, "mixed.lab.example.", RecordType::A);
        assert_eq!(answers(&m), vec!["192.0.2.24"]);
        assert!(m.answers[0].ttl <= 300);
        assert_eq!(m.additionals.len(), 1);
        assert_eq!(m.additionals[0].ttl, 0);
    }
    assert_eq!(crafted.queries_for("mixed").len(), 1, "cached");
}
