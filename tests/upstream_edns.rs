//! The EDNS payload size dae offers its plain UDP upstreams, and answers
//! that do not fit: a client offering 65535 makes dae offer 1232 (DNS Flag
//! Day 2020), whatever the upstream would send; a large answer comes back
//! truncated and dae asks again over TCP, so the client still gets all of
//! it over UDP. The upstream is unbound on loopback, allowed to send UDP
//! answers of any size (`max-udp-size: 65535`), and what it receives is
//! captured with a packet socket on `lo`.

mod common;

use std::time::Duration;

use common::capture::Capture;
use common::{Dae, Unbound};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use std::str::FromStr;

/// TXT records of `big.lab.example.`: about 5 kB together, more than 1232
/// and more than a 4096-byte receive buffer.
const TXT_RECORDS: usize = 24;

fn records() -> Vec<String> {
    (0..TXT_RECORDS)
        .map(|i| format!("big.lab.example. 300 IN TXT \"{i:02}{}\"", "x".repeat(198)))
        .collect()
}

fn query_offering(name: &str, payload: u16) -> Vec<u8> {
    let mut m = Message::new(0x4242, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_str(name).unwrap(), RecordType::TXT));
    let mut e = Edns::new();
    e.set_max_payload(payload);
    m.set_edns(e);
    m.to_vec().unwrap()
}

#[test]
fn a_large_answer_comes_whole_over_tcp_and_the_upstream_is_offered_1232() {
    if !common::have("unbound") {
        return;
    }
    let records = records();
    let records: Vec<&str> = records.iter().map(String::as_str).collect();
    let up = Unbound::start_with(&records, "  max-udp-size: 65535\n");
    let Some(capture) = Capture::start(up.port) else {
        return;
    };
    let dae = Dae::start(&format!(
        "config dae 'config'\n\toption log_level 'debug'\n\n\
         config dns 'dns'\n\tlist dns_listen '@LISTEN@'\n\toption request_fallback 'up'\n\n\
         config upstream 'up'\n\toption address 'udp://{}'\n",
        up.addr()
    ));
    let q = query_offering("big.lab.example.", 65535);
    let reply = common::udp_exchange(dae.addr, &q, Duration::from_secs(6))
        .unwrap_or_else(|| panic!("no answer\n{}", dae.log()));
    let m = Message::from_vec(&reply).unwrap();
    assert_eq!(
        m.metadata.response_code,
        ResponseCode::NoError,
        "{}",
        dae.log()
    );
    assert!(!m.metadata.truncation, "the client got a truncated answer");
    assert_eq!(m.answers.len(), TXT_RECORDS, "{} bytes", reply.len());
    assert!(reply.len() > 4096, "{} bytes", reply.len());

    let seen = capture.stop();
    let offered: Vec<u16> = seen
        .iter()
        .filter(|s| {
            s.qname()
                .eq_ignore_ascii_case(b"\x03big\x03lab\x07example\x00")
        })
        .filter_map(|s| Some(Message::from_vec(&s.dns).ok()?.edns?.max_payload()))
        .collect();
    assert!(!offered.is_empty(), "no UDP query reached the upstream");
    assert!(
        offered.iter().all(|&size| size == 1232),
        "the upstream was offered {offered:?}"
    );
    assert!(dae.log().contains("asking again over TCP"), "{}", dae.log());
}

/// A big answer to `query`: its header and question, then `TXT_RECORDS`
/// TXT records of 200 bytes (about 5 kB), never marked truncated.
fn big_answer(query: &[u8]) -> Vec<u8> {
    let mut end = 12;
    while query[end] != 0 {
        end += 1 + usize::from(query[end]);
    }
    let mut a = query[..2].to_vec();
    a.extend_from_slice(&[0x81, 0x80, 0, 1]);
    a.extend_from_slice(&(TXT_RECORDS as u16).to_be_bytes());
    a.extend_from_slice(&[0, 0, 0, 0]);
    a.extend_from_slice(&query[12..end + 5]);
    for i in 0..TXT_RECORDS {
        a.extend_from_slice(&[0xc0, 0x0c, 0, 16, 0, 1, 0, 0, 0, 60, 0, 201, 200]);
        a.extend_from_slice(format!("{i:02}{}", "y".repeat(198)).as_bytes());
    }
    a
}

/// An upstream that ignores the payload size offered: its UDP answers are
/// as long as they come (5 kB, more than dae's receive buffer); it
/// answers over TCP too.
#[test]
fn an_answer_longer_than_the_receive_buffer_is_asked_again_over_tcp() {
    use std::io::{Read, Write};
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = udp.local_addr().unwrap();
    let tcp = std::net::TcpListener::bind(addr).unwrap();
    udp.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = stop.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
            if let Ok((n, from)) = udp.recv_from(&mut buf) {
                let _ = udp.send_to(&big_answer(&buf[..n]), from);
            }
        }
    });
    std::thread::spawn(move || {
        for mut conn in tcp.incoming().flatten() {
            let mut len = [0u8; 2];
            while conn.read_exact(&mut len).is_ok() {
                let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
                if conn.read_exact(&mut q).is_err() {
                    break;
                }
                let a = big_answer(&q);
                let _ = conn.write_all(&(a.len() as u16).to_be_bytes());
                let _ = conn.write_all(&a);
            }
        }
    });
    let dae = Dae::start(&format!(
        "config dae 'config'\n\toption log_level 'debug'\n\n\
         config dns 'dns'\n\tlist dns_listen '@LISTEN@'\n\toption request_fallback 'up'\n\n\
         config upstream 'up'\n\toption address 'udp://{addr}'\n"
    ));
    let q = query_offering("huge.lab.example.", 65535);
    let reply = common::udp_exchange(dae.addr, &q, Duration::from_secs(6))
        .unwrap_or_else(|| panic!("no answer\n{}", dae.log()));
    let m = Message::from_vec(&reply).unwrap();
    assert_eq!(
        m.metadata.response_code,
        ResponseCode::NoError,
        "{}",
        dae.log()
    );
    assert_eq!(m.answers.len(), TXT_RECORDS);
    assert!(dae.log().contains("asking again over TCP"), "{}", dae.log());
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
}
