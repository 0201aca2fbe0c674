//! Spoofing defence of the plain UDP forwarder, seen from outside: what a
//! real upstream (unbound on loopback) receives, captured with a packet
//! socket on `lo`, and what clients get back.
//!
//! - Many misses at once leave from many source ports, none reused after
//!   its round, and with the name's letters in random case (0x20); each
//!   client still gets its own spelling back.
//! - An answer in the wrong letter case (a forger who guessed port and id)
//!   is not taken: a crafted upstream answers every query first with a
//!   forged address in the wrong case, then genuinely.
//! - An upstream that does not keep the case still gets its answers taken
//!   (after a few, dae stops randomizing for it and says so).

mod common;

use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::capture::Capture;
use common::{Dae, Unbound};
use hickory_proto::op::{Message, ResponseCode};

const QUERIES: usize = 2000;
const IN_FLIGHT: usize = 50;
/// Queries one upstream socket carries at most (one round of `sendmmsg`).
const MAX_PER_PORT: usize = 32;

fn uci(upstream: SocketAddr) -> String {
    format!(
        "config dae 'config'\n\toption log_level 'debug'\n\n\
         config dns 'dns'\n\tlist dns_listen '@LISTEN@'\n\toption request_fallback 'up'\n\n\
         config upstream 'up'\n\toption address 'udp://{upstream}'\n"
    )
}

/// A query (type A, RD set) for `name` exactly as spelled, with id `id`
/// (hickory-proto writes names in lower case).
fn query_as_spelled(name: &str, id: u16) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    q.extend_from_slice(&wire_name(name));
    q.extend_from_slice(&[0, 1, 0, 1]);
    q
}

/// A name in wire form, as spelled.
fn wire_name(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in text.split('.').filter(|l| !l.is_empty()) {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

/// The question section (name, type, class) of a message.
fn question(msg: &[u8]) -> &[u8] {
    let mut at = 12;
    while msg[at] != 0 {
        at += 1 + usize::from(msg[at]);
    }
    &msg[12..at + 5]
}

#[test]
fn misses_leave_from_fresh_ports_in_random_case_and_clients_get_their_own_case() {
    if !common::have("unbound") {
        return;
    }
    let up = Unbound::start(&["Case1.Spoof.lab.example. 300 IN A 192.0.2.7"]);
    let Some(capture) = Capture::start(up.port) else {
        return;
    };
    let dae = Dae::start(&uci(up.addr()));

    // 2000 names nobody asked before, in the client's own mixed case; 50
    // in flight at a time.
    let names: Vec<String> = (0..QUERIES)
        .map(|i| format!("Sp{i}.MixedCase.Spoof.Lab.Example."))
        .collect();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(6))).unwrap();
    let mut sent: HashMap<u16, Vec<u8>> = HashMap::new();
    let mut next = 0;
    let mut replies = 0;
    let mut buf = [0u8; 4096];
    while replies < QUERIES {
        while next < QUERIES && sent.len() < IN_FLIGHT {
            let id = next as u16;
            let q = query_as_spelled(&names[next], id);
            sock.send_to(&q, dae.addr).unwrap();
            sent.insert(id, q);
            next += 1;
        }
        let n = match sock.recv(&mut buf) {
            Ok(n) => n,
            Err(e) => panic!(
                "{replies} of {QUERIES} answered, then {e}\n{}",
                dae.log()
                    .lines()
                    .rev()
                    .take(30)
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
        };
        let reply = &buf[..n];
        let id = u16::from_be_bytes([reply[0], reply[1]]);
        let q = sent.remove(&id).expect("a reply to a query in flight");
        // The client's own spelling comes back, byte for byte.
        assert_eq!(
            question(reply),
            question(&q),
            "the reply's question is not the client's"
        );
        let m = Message::from_vec(reply).unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        replies += 1;
    }
    // A name with a record (unbound writes its owner name as it stores it,
    // not as asked: only the question is the client's).
    let q = query_as_spelled("cASE1.sPOOF.LAB.example.", 7);
    let reply = common::udp_exchange(dae.addr, &q, Duration::from_secs(5)).unwrap();
    assert_eq!(question(&reply), question(&q));
    let m = Message::from_vec(&reply).unwrap();
    let data: Vec<String> = m.answers.iter().map(|r| r.data.to_string()).collect();
    assert_eq!(data, ["192.0.2.7"]);

    let seen = capture.stop();
    // What unbound received for the 2000 names: each name's first send.
    let mut first: HashMap<Vec<u8>, (u16, Vec<u8>)> = HashMap::new();
    for s in &seen {
        let lower = s.qname().to_ascii_lowercase();
        first
            .entry(lower)
            .or_insert_with(|| (s.src_port, s.qname().to_vec()));
    }
    let ours: Vec<(&String, &(u16, Vec<u8>))> = names
        .iter()
        .filter_map(|n| {
            let wire = wire_name(n);
            first
                .get(&wire.to_ascii_lowercase())
                .map(|f| (n, f))
                .or_else(|| panic!("{n} never reached the upstream"))
        })
        .collect();
    let mut per_port: HashMap<u16, usize> = HashMap::new();
    let mut randomized = 0;
    for (name, (port, sent_as)) in &ours {
        *per_port.entry(*port).or_default() += 1;
        let client = wire_name(name);
        if *sent_as != client {
            randomized += 1;
        }
    }
    let ports: HashSet<u16> = per_port.keys().copied().collect();
    let busiest = per_port.values().max().copied().unwrap_or(0);
    eprintln!(
        "{QUERIES} misses, {IN_FLIGHT} in flight: {} distinct source ports (busiest carried {busiest}), \
         {randomized} names in another case than the client's",
        ports.len()
    );
    assert!(
        busiest <= MAX_PER_PORT,
        "a source port carried {busiest} queries: ports are reused"
    );
    assert!(
        ports.len() >= QUERIES / MAX_PER_PORT,
        "only {} distinct source ports for {QUERIES} queries",
        ports.len()
    );
    // ~30 letters each: a name keeps the client's case by chance once in 2^30.
    assert!(
        randomized >= QUERIES * 99 / 100,
        "only {randomized} of {QUERIES} names reached the upstream in random case"
    );
}

/// The address forged answers carry, and the genuine one.
const FORGED: [u8; 4] = [203, 0, 113, 66];
const GENUINE: [u8; 4] = [192, 0, 2, 1];

/// An answer to `query` carrying `ip`, echoing the question with its
/// letters' case set by `case` (applied to each letter).
fn answer(query: &[u8], ip: [u8; 4], case: impl Fn(u8) -> u8) -> Vec<u8> {
    let q = question(query);
    let mut a = query[..2].to_vec();
    a.extend_from_slice(&[0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]);
    let name_len = q.len() - 4;
    let mut at = 0;
    let mut echoed = q.to_vec();
    while at < name_len && echoed[at] != 0 {
        let len = usize::from(echoed[at]);
        for b in &mut echoed[at + 1..at + 1 + len] {
            *b = case(*b);
        }
        at += 1 + len;
    }
    a.extend_from_slice(&echoed);
    a.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
    a.extend_from_slice(&ip);
    a
}

/// A crafted upstream on loopback: for each query, `respond` gives the
/// datagrams to send back, with a pause before each.
fn crafted_upstream(
    respond: impl Fn(&[u8]) -> Vec<(Duration, Vec<u8>)> + Send + 'static,
) -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicBool>) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let addr = sock.local_addr().unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = stop.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                continue;
            };
            for (pause, datagram) in respond(&buf[..n]) {
                std::thread::sleep(pause);
                let _ = sock.send_to(&datagram, from);
            }
        }
    });
    (addr, stop)
}

fn flip(b: u8) -> u8 {
    if b.is_ascii_alphabetic() {
        b ^ 0x20
    } else {
        b
    }
}

#[test]
fn a_forged_answer_in_the_wrong_case_is_not_taken() {
    // First a forgery with the right port and id but the name's case
    // flipped, then the genuine answer, in the case it was asked.
    let (upstream, stop) = crafted_upstream(|q| {
        vec![
            (Duration::ZERO, answer(q, FORGED, flip)),
            (Duration::from_millis(30), answer(q, GENUINE, |b| b)),
        ]
    });
    let dae = Dae::start(&uci(upstream));
    for i in 0..5 {
        let name = format!("Forged{i}.Spoof.Lab.Example.");
        let q = query_as_spelled(&name, 100 + i);
        let reply = common::udp_exchange(dae.addr, &q, Duration::from_secs(5))
            .unwrap_or_else(|| panic!("{name}: no answer\n{}", dae.log()));
        let m = Message::from_vec(&reply).unwrap();
        let data: Vec<String> = m.answers.iter().map(|r| r.data.to_string()).collect();
        assert_eq!(data, ["192.0.2.1"], "{name}: the forged answer was taken");
        assert_eq!(question(&reply), question(&q));
    }
    assert!(!dae.log().contains("do not keep the letter case"));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
}

#[test]
fn an_upstream_that_does_not_keep_the_case_is_still_answered() {
    let (upstream, stop) = crafted_upstream(|q| {
        vec![(
            Duration::ZERO,
            answer(q, GENUINE, |b| b.to_ascii_lowercase()),
        )]
    });
    let dae = Dae::start(&uci(upstream));
    for i in 0..6 {
        let name = format!("Lower{i}.Spoof.Lab.Example.");
        let q = query_as_spelled(&name, 200 + i);
        let started = Instant::now();
        let reply = common::udp_exchange(dae.addr, &q, Duration::from_secs(5))
            .unwrap_or_else(|| panic!("{name}: no answer\n{}", dae.log()));
        let m = Message::from_vec(&reply).unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{name}");
        let data: Vec<String> = m.answers.iter().map(|r| r.data.to_string()).collect();
        assert_eq!(data, ["192.0.2.1"], "{name}");
        assert_eq!(question(&reply), question(&q), "{name}");
        eprintln!("{name}: answered in {:?}", started.elapsed());
    }
    assert!(
        dae.log().contains("do not keep the letter case"),
        "{}",
        dae.log()
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
}
