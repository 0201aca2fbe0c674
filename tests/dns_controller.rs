//! The DNS controller end to end: the real `dae` binary on loopback, real
//! upstreams (unbound, and dnsdist where a delay or a drop is needed), real
//! clients (hickory-proto on the wire, dig where a stock resolver's own
//! behaviour is the point). Replies are checked field by field.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

/// Records served by the default lab upstream.
const LAB: &[&str] = &[
    "www.lab.example. 300 IN A 192.0.2.10",
    "www.lab.example. 300 IN AAAA 2001:db8::10",
    "v4only.lab.example. 300 IN A 192.0.2.11",
    "v6only.lab.example. 300 IN AAAA 2001:db8::11",
    "short.lab.example. 2 IN A 192.0.2.12",
    "slow.lab.example. 300 IN A 192.0.2.13",
];

fn big_txt() -> Vec<String> {
    (0..10)
        .map(|i| format!("big.lab.example. 300 IN TXT \"{}{i}\"", "x".repeat(100)))
        .collect()
}

fn lab_with(extra: &[String]) -> Option<Unbound> {
    if !have("unbound") {
        return None;
    }
    let mut records: Vec<&str> = LAB.to_vec();
    records.extend(extra.iter().map(String::as_str));
    Some(Unbound::start(&records))
}

fn lab() -> Option<Unbound> {
    lab_with(&[])
}

fn ttl_of_first_answer(m: &Message) -> u32 {
    m.answers.first().expect("an answer record").ttl
}

#[test]
fn answers_through_the_upstream_with_the_clients_id_and_question() {
    let Some(up) = lab() else { return };
    let dae = Dae::start(&config(
        &[("lab", up.addr())],
        "\toption request_fallback 'lab'\n",
    ));

    let m = ask(dae.addr, "www.lab.example.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.metadata.recursion_available);
    assert_eq!(answers(&m), vec!["192.0.2.10"]);
    assert_eq!(ttl_of_first_answer(&m), 300);

    // The question comes back as the client spelled it (0x20 mixed case).
    let mut q = query("www.lab.example.", RecordType::A, false);
    q[13..16].copy_from_slice(b"WwW");
    let r = udp_exchange(dae.addr, &q, Duration::from_secs(5)).expect("reply");
    assert_eq!(&r[..2], &q[..2], "id");
    assert_eq!(&r[12..12 + 17], &q[12..12 + 17], "question bytes");

    // dig, a stock client, agrees.
    if have("dig") {
        let out = Command::new("dig")
            .args([
                "+tries=1",
                "+time=5",
                "-p",
                &dae.addr.port().to_string(),
                "@127.0.0.1",
                "www.lab.example",
                "AAAA",
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("status: NOERROR"), "{text}");
        assert!(text.contains("2001:db8::10"), "{text}");
    }
}

#[test]
fn cache_hits_count_ttls_down_and_do_not_ask_again() {
    let Some(up) = lab() else { return };
    let dae = Dae::start(&config(
        &[("lab", up.addr())],
        "\toption request_fallback 'lab'\n",
    ));

    let first = ask(dae.addr, "www.lab.example.", RecordType::A);
    assert_eq!(ttl_of_first_answer(&first), 300);
    std::thread::sleep(Duration::from_millis(2100));
    let second = ask(dae.addr, "www.lab.example.", RecordType::A);
    assert_eq!(answers(&second), vec!["192.0.2.10"]);
    let ttl = ttl_of_first_answer(&second);
    assert!((297..=298).contains(&ttl), "TTL after 2.1 s: {ttl}");
    assert_eq!(up.queries("www.lab.example.", "A"), 1, "{}", up.log());
    assert!(dae.log().contains("cache hit"));
}

#[test]
fn negative_answers_are_cached_by_the_soa_minimum() {
    let Some(up) = lab() else { return };
    let dae = Dae::start(&config(
        &[("lab", up.addr())],
        "\toption request_fallback 'lab'\n",
    ));

    for round in 0..2 {
        let m = ask(dae.addr, "nope.lab.example.", RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        assert!(m.answers.is_empty());
        let soa = m.authorities.first().expect("SOA in authority");
        assert_eq!(soa.record_type(), RecordType::SOA);
        if round == 0 {
            assert_eq!(soa.ttl, 60);
            std::thread::sleep(Duration::from_millis(1100));
        } else {
            assert!(soa.ttl <= 59, "SOA TTL counts down: {}", soa.ttl);
        }
    }
    // NODATA (name exists, no such type) is negative too.
    for _ in 0..2 {
        let m = ask(dae.addr, "v4only.lab.example.", RecordType::AAAA);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.answers.is_empty());
    }
    assert_eq!(up.queries("nope.lab.example.", "A"), 1);
    assert_eq!(up.queries("v4only.lab.example.", "AAAA"), 1);
}

#[test]
fn identical_queries_in_flight_share_one_upstream_exchange() {
    let Some(up) = lab() else { return };
    if !have("dnsdist") {
        return;
    }
    // dnsdist holds answers for slow.lab.example for 300 ms.
    let slow = Dnsdist::start(
        up.addr(),
        "www.lab.example.",
        "addAction(QNameRule(\"slow.lab.example.\"), DelayAction(300))",
    );
    let dae = Dae::start(&config(
        &[("slow", slow.addr())],
        "\toption request_fallback 'slow'\n",
    ));

    let socks: Vec<(UdpSocket, Vec<u8>)> = (0..20)
        .map(|_| {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            (s, query("slow.lab.example.", RecordType::A, false))
        })
        .collect();
    for (s, q) in &socks {
        s.send_to(q, dae.addr).unwrap();
    }
    for (s, q) in &socks {
        let mut buf = [0u8; 1500];
        let (n, _) = common::recv_from(s, &mut buf).expect("every client gets an answer");
        let m = Message::from_vec(&buf[..n]).unwrap();
        assert_eq!(m.metadata.id, u16::from_be_bytes([q[0], q[1]]));
        assert_eq!(answers(&m), vec!["192.0.2.13"]);
    }
    assert_eq!(up.queries("slow.lab.example.", "A"), 1, "{}", up.log());
}

/// Two upstreams that answer the same names differently, so a reply shows
/// which one was asked.
fn two_labs(names: &[&str]) -> Option<(Unbound, Unbound)> {
    if !have("unbound") {
        return None;
    }
    let mk = |tag: &str, ip: &str| {
        let mut recs: Vec<String> = Vec::new();
        for n in names {
            recs.push(format!("{n} 300 IN TXT \"{tag}\""));
            recs.push(format!("{n} 300 IN A {ip}"));
            recs.push(format!("{n} 300 IN MX 10 mail-{tag}.lab.example."));
        }
        let r: Vec<&str> = recs.iter().map(String::as_str).collect();
        Unbound::start(&r)
    };
    Some((mk("a", "198.51.100.1"), mk("b", "192.0.2.2")))
}

fn txt_of(dae: &Dae, name: &str) -> String {
    let m = ask(dae.addr, name, RecordType::TXT);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{name}");
    answers(&m).join(",")
}

#[test]
fn request_rules_pick_the_upstream_by_name_and_type() {
    let names = [
        "plain.lab.example.",
        "s1.sub.lab.example.",
        "sub.lab.example.",
        "notsub.lab.example.",
        "exact.lab.example.",
        "x.exact.lab.example.",
        "has-ads-inside.lab.example.",
        "r42.lab.example.",
        "neg.lab.example.",
    ];
    let Some((a, b)) = two_labs(&names) else {
        return;
    };
    let opts = "\toption request_fallback 'a'\n\
        \tlist request_rule 'qname(suffix: sub.lab.example) -> b'\n\
        \tlist request_rule 'qname(full: exact.lab.example) -> b'\n\
        \tlist request_rule 'qname(keyword: ads) -> b'\n\
        \tlist request_rule \"qname(regex: '^r[0-9]+\\.lab') -> b\"\n\
        \tlist request_rule 'qname(neg.lab.example) && !qtype(txt) -> b'\n\
        \tlist request_rule 'qtype(mx) -> b'\n";
    let dae = Dae::start(&config(&[("a", a.addr()), ("b", b.addr())], opts));

    assert_eq!(txt_of(&dae, "plain.lab.example."), "a");
    assert_eq!(
        txt_of(&dae, "s1.sub.lab.example."),
        "b",
        "suffix matches below"
    );
    assert_eq!(
        txt_of(&dae, "sub.lab.example."),
        "b",
        "suffix matches itself"
    );
    assert_eq!(
        txt_of(&dae, "notsub.lab.example."),
        "a",
        "suffix is label-wise"
    );
    assert_eq!(txt_of(&dae, "exact.lab.example."), "b", "full");
    assert_eq!(txt_of(&dae, "x.exact.lab.example."), "a", "full is exact");
    assert_eq!(txt_of(&dae, "has-ads-inside.lab.example."), "b", "keyword");
    assert_eq!(txt_of(&dae, "r42.lab.example."), "b", "regex");
    // neg: A goes to b (not TXT), TXT falls back to a.
    assert_eq!(txt_of(&dae, "neg.lab.example."), "a", "negation");
    let m = ask(dae.addr, "neg.lab.example.", RecordType::A);
    assert_eq!(answers(&m), vec!["192.0.2.2"], "&& with !");
    let m = ask(dae.addr, "plain.lab.example.", RecordType::MX);
    assert_eq!(answers(&m), vec!["10 mail-b.lab.example."], "qtype");
}

#[test]
fn response_rules_accept_reject_or_ask_another_upstream() {
    let names = [
        "resp.lab.example.",
        "gone.lab.example.",
        "loop.lab.example.",
        "tcp.lab.example.",
        "mix.lab.example.",
    ];
    let Some((a, b)) = two_labs(&names) else {
        return;
    };
    // 'at' is a over TCP: a UDP exchange sent on to it goes on over TCP.
    let opts = "\toption request_fallback 'b'\n\
        \tlist response_rule 'upstream(b) && ip(192.0.2.0/24) && qname(resp.lab.example) -> a'\n\
        \tlist response_rule 'qname(full: gone.lab.example) && qtype(a) -> reject'\n\
        \tlist response_rule 'upstream(b) && qname(loop.lab.example) -> a'\n\
        \tlist response_rule 'upstream(a) && qname(loop.lab.example) -> b'\n\
        \tlist response_rule 'upstream(b) && qname(tcp.lab.example, mix.lab.example) -> at'\n\
        \tlist response_rule 'upstream(at) && qname(mix.lab.example) -> b'\n\
        \toption response_fallback 'accept'\n";
    let mut conf = config(&[("a", a.addr()), ("b", b.addr())], opts);
    conf.push_str(&format!(
        "config upstream 'at'\n\toption address 'tcp://{}'\n",
        a.addr()
    ));
    let dae = Dae::start(&conf);

    // b's answer lies in 192.0.2.0/24: asked again at a.
    let m = ask(dae.addr, "resp.lab.example.", RecordType::A);
    assert_eq!(answers(&m), vec!["198.51.100.1"]);
    assert_eq!(b.queries("resp.lab.example.", "A"), 1);
    assert_eq!(a.queries("resp.lab.example.", "A"), 1);
    // The TXT answer has no IP: accepted from b.
    assert_eq!(txt_of(&dae, "resp.lab.example."), "b");

    // Reject: NOERROR, empty answer.
    let m = ask(dae.addr, "gone.lab.example.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());

    // A loop ends in SERVFAIL after the depth limit, with a log line.
    let m = ask(dae.addr, "loop.lab.example.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert!(
        dae.wait_log("form a loop", Duration::from_secs(2)),
        "{}",
        dae.log()
    );
    let asked = a.queries("loop.lab.example.", "A") + b.queries("loop.lab.example.", "A");
    assert_eq!(asked, 3, "three exchanges, then the limit");
    // ... and the daemon still serves.
    assert_eq!(txt_of(&dae, "resp.lab.example."), "b");

    // From b over UDP on to a over TCP.
    let m = ask(dae.addr, "tcp.lab.example.", RecordType::A);
    assert_eq!(answers(&m), vec!["198.51.100.1"]);
    assert_eq!(b.queries("tcp.lab.example.", "A"), 1);
    assert_eq!(a.queries("tcp.lab.example.", "A"), 1);
    // A loop across both kinds keeps its count: b, at, b, then the limit.
    let m = ask(dae.addr, "mix.lab.example.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(b.queries("mix.lab.example.", "A"), 2);
    assert_eq!(a.queries("mix.lab.example.", "A"), 1);
}

#[test]
fn reject_answers_empty_at_once_and_drops_the_cached_entry() {
    let Some(up) = lab() else { return };
    let plain = config(&[("lab", up.addr())], "\toption request_fallback 'lab'\n");
    let rejecting = config(
        &[("lab", up.addr())],
        "\toption request_fallback 'lab'\n\tlist request_rule 'qtype(aaaa) -> reject'\n",
    );
    let dae = Dae::start(&plain);
    assert_eq!(
        answers(&ask(dae.addr, "www.lab.example.", RecordType::AAAA)),
        vec!["2001:db8::10"]
    );
    assert_eq!(up.queries("www.lab.example.", "AAAA"), 1);

    assert!(dae.reload(&rejecting).contains("reloaded"));
    let m = ask(dae.addr, "www.lab.example.", RecordType::AAAA);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty() && m.authorities.is_empty());
    // A is not rejected, and the A query went upstream.
    assert_eq!(
        answers(&ask(dae.addr, "www.lab.example.", RecordType::A)),
        vec!["192.0.2.10"]
    );

    assert!(dae.reload(&plain).contains("reloaded"));
    assert_eq!(
        answers(&ask(dae.addr, "www.lab.example.", RecordType::AAAA)),
        vec!["2001:db8::10"]
    );
    assert_eq!(
        up.queries("www.lab.example.", "AAAA"),
        2,
        "the rejected entry was dropped from the cache"
    );
}

#[test]
fn truncated_answers_make_the_client_retry_over_tcp() {
    let Some(up) = lab_with(&big_txt()) else {
        return;
    };
    let dae = Dae::start(&config(
        &[("lab", up.addr())],
        "\toption request_fallback 'lab'\n",
    ));

    // Without EDNS the answer (~1.1 kB) does not fit 512 bytes: TC, no records.
    let q = query("big.lab.example.", RecordType::TXT, false);
    let r = udp_exchange(dae.addr, &q, Duration::from_secs(5)).expect("udp reply");
    let m = Message::from_vec(&r).unwrap();
    assert!(m.metadata.truncation, "TC set");
    assert!(m.answers.is_empty());
    assert!(r.len() <= 512);

    // Over TCP the whole answer comes.
    let r = tcp_exchange(dae.addr, &q, Duration::from_secs(5)).expect("tcp reply");
    let m = Message::from_vec(&r).unwrap();
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 10);

    // With EDNS 1232 it fits in UDP.
    let q = query("big.lab.example.", RecordType::TXT, true);
    let r = udp_exchange(dae.addr, &q, Duration::from_secs(5)).expect("udp reply");
    let m = Message::from_vec(&r).unwrap();
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 10);
    assert!(m.edns.is_some(), "OPT passed through");

    // A stock client does the TC → TCP dance by itself.
    if have("dig") {
        let out = Command::new("dig")
            .args([
                "+noedns",
                "+tries=1",
                "+time=5",
                "-p",
                &dae.addr.port().to_string(),
                "@127.0.0.1",
                "big.lab.example",
                "TXT",
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Truncated, retrying in TCP mode"), "{text}");
        assert!(text.contains("ANSWER: 10"), "{text}");
    }
}

#[test]
fn tcp_and_tcp_udp_upstreams_reuse_one_connection() {
    let Some(up) = lab_with(&big_txt()) else {
        return;
    };
    let uci = format!(
        "config dae 'config'\n\toption log_level 'debug'\n\n\
         config dns 'dns'\n\tlist dns_listen '@LISTEN@'\n\toption request_fallback 'viatcp'\n\
         \tlist request_rule 'qname(big.lab.example) -> both'\n\n\
         config upstream 'viatcp'\n\toption address 'tcp://{0}'\n\n\
         config upstream 'both'\n\toption address 'tcp+udp://{0}'\n",
        up.addr()
    );
    let dae = Dae::start(&uci);
    for name in ["www", "v4only", "short", "slow", "nope1", "nope2"] {
        let m = ask(dae.addr, &format!("{name}.lab.example."), RecordType::A);
        assert!(
            matches!(
                m.metadata.response_code,
                ResponseCode::NoError | ResponseCode::NXDomain
            ),
            "{name}: {:?}",
            m.metadata.response_code
        );
    }
    let connects = dae
        .log()
        .matches(&format!("tcp {}: connected", up.addr()))
        .count();
    assert_eq!(
        connects,
        1,
        "one pipelined connection for six queries:\n{}",
        dae.log()
    );

    // tcp+udp: UDP first, TCP on truncation; the full answer is cached, so
    // the client's own TCP retry is a cache hit.
    let q = query("big.lab.example.", RecordType::TXT, false);
    let m =
        Message::from_vec(&udp_exchange(dae.addr, &q, Duration::from_secs(5)).unwrap()).unwrap();
    assert!(m.metadata.truncation);
    let m =
        Message::from_vec(&tcp_exchange(dae.addr, &q, Duration::from_secs(5)).unwrap()).unwrap();
    assert_eq!(m.answers.len(), 10);
    assert_eq!(up.queries("big.lab.example.", "TXT"), 2, "one UDP, one TCP");
}

#[test]
fn upstream_failures_answer_servfail_and_the_daemon_keeps_serving() {
    let Some(up) = lab() else { return };
    if !have("dnsdist") {
        return;
    }
    let silent = Dnsdist::start(
        up.addr(),
        "www.lab.example.",
        "addAction(QNameRule(\"slow.lab.example.\"), DropAction())",
    );
    // A port with nobody behind it: ICMP port unreachable.
    let closed = SocketAddr::from(([127, 0, 0, 1], free_port()));
    // A server that echoes our id and question, then claims an answer
    // record that is not there.
    let garbage = UdpSocket::bind("127.0.0.1:0").unwrap();
    let garbage_addr = garbage.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = garbage.recv_from(&mut buf) {
            if n < 12 {
                continue;
            }
            let mut reply = buf[..n].to_vec();
            reply[2] |= 0x80; // QR
            reply[7] = 1; // ANCOUNT 1 ...
            reply.extend_from_slice(&[0xc0, 12, 0, 1]); // ... cut short
            let _ = garbage.send_to(&reply, from);
        }
    });
    let opts = "\toption request_fallback 'silent'\n\toption upstream_timeout '2'\n\
        \tlist request_rule 'qname(refusing.lab.example) -> closed'\n\
        \tlist request_rule 'qname(garbage.lab.example) -> garbage'\n";
    let dae = Dae::start(&config(
        &[
            ("silent", silent.addr()),
            ("closed", closed),
            ("garbage", garbage_addr),
        ],
        opts,
    ));

    let t = Instant::now();
    let m = ask(dae.addr, "slow.lab.example.", RecordType::A);
    let waited = t.elapsed();
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(4),
        "{waited:?}"
    );

    for name in ["refusing.lab.example.", "garbage.lab.example."] {
        let t = Instant::now();
        let m = ask(dae.addr, name, RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail, "{name}");
        assert!(
            t.elapsed() < Duration::from_millis(1500),
            "{name} failed at once, not by timeout"
        );
    }
    assert!(dae.log().contains("upstream 'silent': timed out"));
    assert!(dae.log().contains("upstream 'closed': connection refused"));
    assert!(dae
        .log()
        .contains("upstream 'garbage' sent a malformed answer"));
    assert_eq!(
        answers(&ask(dae.addr, "www.lab.example.", RecordType::A)),
        vec!["192.0.2.10"]
    );
}

#[test]
fn malformed_queries_get_an_error_or_nothing_and_break_nothing() {
    let Some(up) = lab() else { return };
    let dae = Dae::start(&config(
        &[("lab", up.addr())],
        "\toption request_fallback 'lab'\n",
    ));
    let good = query("www.lab.example.", RecordType::A, false);
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 65535];
    let mut reply_to = |pkt: &[u8]| -> Option<Message> {
        s.send_to(pkt, dae.addr).unwrap();
        let (n, _) = common::recv_from(&s, &mut buf).ok()?;
        Some(Message::from_vec(&buf[..n]).expect("our error replies parse"))
    };

    // Dropped: too short for a header, a response, an oversized datagram.
    assert!(reply_to(&[]).is_none());
    assert!(reply_to(&[1, 2, 3, 4, 5]).is_none());
    let mut response = good.clone();
    response[2] |= 0x80;
    assert!(reply_to(&response).is_none());
    assert!(reply_to(&vec![0u8; 5000]).is_none());

    // FORMERR with the id echoed: two questions, a question cut short, garbage.
    let mut two = good.clone();
    two[5] = 2;
    let m = reply_to(&two).expect("FORMERR");
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    assert_eq!(m.metadata.id, u16::from_be_bytes([good[0], good[1]]));
    let m = reply_to(&good[..good.len() - 3]).expect("FORMERR");
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    let mut junk = vec![0xabu8; 300];
    junk[2] = 0x01;
    junk[4] = 0;
    junk[5] = 1;
    let m = reply_to(&junk).expect("FORMERR");
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    // NOTIMP for opcodes other than QUERY (here NOTIFY).
    let mut notify = good.clone();
    notify[2] = (4 << 3) | 1;
    let m = reply_to(&notify).expect("NOTIMP");
    assert_eq!(m.metadata.response_code, ResponseCode::NotImp);

    // An unknown qtype is forwarded like any other.
    let m = ask(dae.addr, "www.lab.example.", RecordType::Unknown(65000));
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);

    // Over TCP: a garbage frame, then a good query on the same connection.
    use std::io::{Read, Write};
    let mut t = std::net::TcpStream::connect(dae.addr).unwrap();
    t.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    t.write_all(&[0, 3, 9, 9, 9]).unwrap();
    let mut frame = (good.len() as u16).to_be_bytes().to_vec();
    frame.extend_from_slice(&good);
    t.write_all(&frame).unwrap();
    let mut len = [0u8; 2];
    t.read_exact(&mut len).unwrap();
    let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
    t.read_exact(&mut msg).unwrap();
    let m = Message::from_vec(&msg).unwrap();
    assert_eq!(answers(&m), vec!["192.0.2.10"]);

    // Still serving normally.
    assert_eq!(
        answers(&ask(dae.addr, "www.lab.example.", RecordType::A)),
        vec!["192.0.2.10"]
    );
}

#[test]
fn tcp_listener_takes_pipelined_queries() {
    let Some(up) = lab() else { return };
    let dae = Dae::start(&config(
        &[("lab", up.addr())],
        "\toption request_fallback 'lab'\n",
    ));
    use std::io::{Read, Write};
    let mut t = std::net::TcpStream::connect(dae.addr).unwrap();
    t.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let names = [
        "www.lab.example.",
        "v4only.lab.example.",
        "slow.lab.example.",
    ];
    let mut ids = Vec::new();
    let mut frames = Vec::new();
    for n in names {
        let q = query(n, RecordType::A, false);
        ids.push(u16::from_be_bytes([q[0], q[1]]));
        frames.extend_from_slice(&(q.len() as u16).to_be_bytes());
        frames.extend_from_slice(&q);
    }
    t.write_all(&frames).unwrap();
    let mut got = Vec::new();
    for _ in names {
        let mut len = [0u8; 2];
        t.read_exact(&mut len).unwrap();
        let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
        t.read_exact(&mut msg).unwrap();
        got.push(Message::from_vec(&msg).unwrap().metadata.id);
    }
    got.sort_unstable();
    ids.sort_unstable();
    assert_eq!(got, ids);
}

#[test]
fn ipversion_prefer_empties_the_other_family_when_the_preferred_one_exists() {
    let Some(up) = lab() else { return };
    let dae = Dae::start(&config(
        &[("lab", up.addr())],
        "\toption request_fallback 'lab'\n\toption ipversion_prefer '4'\n",
    ));
    // www has A: its AAAA answer is empty.
    let m = ask(dae.addr, "www.lab.example.", RecordType::AAAA);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    // v6only has no A: AAAA as usual.
    assert_eq!(
        answers(&ask(dae.addr, "v6only.lab.example.", RecordType::AAAA)),
        vec!["2001:db8::11"]
    );
    // A queries are untouched, and the A answer learned above is a cache hit.
    assert_eq!(
        answers(&ask(dae.addr, "www.lab.example.", RecordType::A)),
        vec!["192.0.2.10"]
    );
    assert_eq!(up.queries("www.lab.example.", "A"), 1);
}

#[test]
fn fixed_domain_ttl_and_serve_stale() {
    let Some(up) = lab() else { return };
    let dae = Dae::start(&config(
        &[("lab", up.addr())],
        "\toption request_fallback 'lab'\n\
         \tlist fixed_domain_ttl 'www.lab.example:7'\n\
         \tlist fixed_domain_ttl 'v4only.lab.example:0'\n",
    ));
    assert_eq!(
        ttl_of_first_answer(&ask(dae.addr, "www.lab.example.", RecordType::A)),
        7
    );
    // TTL 0: never cached, asked every time.
    ask(dae.addr, "v4only.lab.example.", RecordType::A);
    ask(dae.addr, "v4only.lab.example.", RecordType::A);
    assert_eq!(up.queries("v4only.lab.example.", "A"), 2);

    // short.lab.example has TTL 2. After it expires, the stale answer comes
    // at once with TTL 30 while one refresh goes upstream.
    assert_eq!(
        ttl_of_first_answer(&ask(dae.addr, "short.lab.example.", RecordType::A)),
        2
    );
    std::thread::sleep(Duration::from_millis(2500));
    let stale = ask(dae.addr, "short.lab.example.", RecordType::A);
    assert_eq!(answers(&stale), vec!["192.0.2.12"]);
    assert_eq!(ttl_of_first_answer(&stale), 30);
    let end = Instant::now() + Duration::from_secs(5);
    while up.queries("short.lab.example.", "A") < 2 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(up.queries("short.lab.example.", "A"), 2, "one refresh");
    // The refresh's answer replaces the stale entry (upstream logs the
    // query before its answer reaches the cache): fresh again, TTL <= 2.
    let end = Instant::now() + Duration::from_secs(1);
    let mut ttl = u32::MAX;
    while Instant::now() < end {
        ttl = ttl_of_first_answer(&ask(dae.addr, "short.lab.example.", RecordType::A));
        if ttl <= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        ttl <= 2,
        "the refreshed entry replaced the stale one (TTL {ttl})"
    );
}

#[test]
fn asis_on_the_plain_listener_is_refused() {
    let Some(up) = lab() else { return };
    let dae = Dae::start(&config(
        &[("lab", up.addr())],
        "\toption request_fallback 'lab'\n\tlist request_rule 'qname(suffix: lan) -> asis'\n",
    ));
    let m = ask(dae.addr, "nas.lan.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert_eq!(
        answers(&ask(dae.addr, "www.lab.example.", RecordType::A)),
        vec!["192.0.2.10"]
    );
}

#[test]
fn sighup_reloads_a_good_config_and_refuses_a_bad_one() {
    let Some(up) = lab() else { return };
    let first = config(&[("lab", up.addr())], "\toption request_fallback 'lab'\n");
    let dae = Dae::start(&first);
    assert_eq!(
        answers(&ask(dae.addr, "v4only.lab.example.", RecordType::A)),
        vec!["192.0.2.11"]
    );

    // Good: a new rule takes effect; the cache survives.
    let second = config(
        &[("lab", up.addr())],
        "\toption request_fallback 'lab'\n\tlist request_rule 'qname(full: www.lab.example) -> reject'\n",
    );
    assert!(dae.reload(&second).contains("reloaded"));
    assert!(ask(dae.addr, "www.lab.example.", RecordType::A)
        .answers
        .is_empty());
    assert_eq!(
        answers(&ask(dae.addr, "v4only.lab.example.", RecordType::A)),
        vec!["192.0.2.11"]
    );
    assert_eq!(
        up.queries("v4only.lab.example.", "A"),
        1,
        "cache kept across reload"
    );

    // Bad: refused with the reason in the log, the running config stays.
    let bad = second.replace(
        "option request_fallback 'lab'",
        "option request_fallback 'lab'\n\toption cache_size 'lots'",
    );
    let outcome = dae.reload(&bad);
    assert!(outcome.contains("reload refused"), "{outcome}");
    assert!(dae.log().contains("cache_size"), "{}", dae.log());
    assert!(
        ask(dae.addr, "www.lab.example.", RecordType::A)
            .answers
            .is_empty(),
        "old rules still apply"
    );
    assert_eq!(
        answers(&ask(dae.addr, "v4only.lab.example.", RecordType::A)),
        vec!["192.0.2.11"]
    );

    // SIGTERM stops it cleanly.
    assert_eq!(dae.stop(), Some(0));
}

/// A file that serves nothing (a truncated write, a file wiped by hand) is
/// refused on reload with the reason logged, and DNS goes on answering.
#[test]
fn sighup_refuses_a_config_that_serves_nothing() {
    let Some(up) = lab() else { return };
    let good = config(&[("lab", up.addr())], "\toption request_fallback 'lab'\n");
    let dae = Dae::start(&good);
    let listenerless = good.replace("\tlist dns_listen '@LISTEN@'\n", "");
    assert!(!listenerless.contains("dns_listen"));
    // Written as is (`Dae::reload` would add this test's status socket).
    let file = dae.status_socket().with_file_name("dae.uci");
    for (what, text) in [
        ("empty", String::new()),
        (
            "comment-only",
            "# dae\n\n  # the rest was lost\n".to_string(),
        ),
        ("listener-less", listenerless),
    ] {
        let before = dae.log().len();
        std::fs::write(&file, text).unwrap();
        let _ = Command::new("kill")
            .args(["-HUP", &dae.pid().to_string()])
            .status();
        let outcome = wait_until(Duration::from_secs(10), || {
            dae.log()[before..].contains("reload")
                && (dae.log()[before..].contains("reload refused")
                    || dae.log()[before..].contains("reloaded"))
        });
        assert!(outcome, "{what}: no reload outcome: {}", dae.log());
        assert!(
            dae.log()[before..].contains("reload refused"),
            "{what}: {}",
            dae.log()
        );
        assert!(
            dae.log()[before..].contains("nothing to serve"),
            "{what}: {}",
            dae.log()
        );
        assert_eq!(
            answers(&ask(dae.addr, "v4only.lab.example.", RecordType::A)),
            vec!["192.0.2.11"],
            "{what}: still answering"
        );
        let reply = tcp_exchange(
            dae.addr,
            &query("www.lab.example.", RecordType::A, false),
            Duration::from_secs(5),
        );
        assert!(reply.is_some(), "{what}: TCP still answering");
    }
    assert_eq!(dae.stop(), Some(0));
}

#[test]
fn cli_version_and_refusing_to_start_on_a_bad_config() {
    let out = Command::new(env!("CARGO_BIN_EXE_dae"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("dae {}", env!("CARGO_PKG_VERSION"))
    );
    let dir = TempDir::new("cli");
    std::fs::write(
        dir.path("bad.uci"),
        "config dns 'dns'\n\toption cache_size 'x'\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_dae"))
        .args(["run", "-c"])
        .arg(dir.path("bad.uci"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cache_size") && err.contains("not starting"),
        "{err}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_dae"))
        .arg("bogus")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_flood_of_unique_names_is_answered_in_full() {
    let Some(up) = lab() else { return };
    if !have("dnsperf") {
        return;
    }
    let dae = Dae::start(&config(
        &[("lab", up.addr())],
        "\toption request_fallback 'lab'\n",
    ));
    // 40,000 names nobody asked before, 200 in flight at a time: every one
    // goes upstream, so the UDP forwarder's sockets retire and their ids are
    // reused many times over while answers arrive.
    let dir = common::TempDir::new("flood");
    let names: String = (0..40_000)
        .map(|i| format!("f{i}.lab.example A\n"))
        .collect();
    std::fs::write(dir.path("queries"), names).unwrap();
    let out = std::process::Command::new("dnsperf")
        .args(["-s", "127.0.0.1", "-p", &dae.addr.port().to_string()])
        .arg("-d")
        .arg(dir.path("queries"))
        .args(["-n", "1", "-q", "200", "-t", "5", "-l", "120"])
        .output()
        .expect("dnsperf");
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(out.contains("Queries lost:         0 "), "{out}");
    assert!(
        out.contains("NXDOMAIN 40000 (100.00%)"),
        "every answer is the upstream's, none SERVFAIL:\n{out}\n{}",
        dae.log()
    );
}
