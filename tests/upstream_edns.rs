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
