//! The UDP forwarder over a path that loses packets, in the namespace lab:
//! a firewall rule (nftables) on the upstream side drops every other one of
//! the test's queries (told from other traffic by their length) on their
//! way from the router to the lab's unbound, so each of them loses its
//! first send and is answered only because dae sends it again while it
//! waits (every second, within `upstream_timeout`). Other queries keep
//! arriving meanwhile, as on a real network. Every test query must get its
//! answer, and the counter must show the losses.
//!
//! Needs root and the lab's tools; skips loudly without them.

mod common;

use std::time::Duration;

use common::lab::{self, Lab, LabUpstream, ROUTER_WAN_V4, UPSTREAM_V4};
use common::{query, udp_exchange, Dae};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

const NAMES: usize = 8;

fn records() -> Vec<String> {
    (1..=NAMES)
        .map(|i| format!("n{i}.lossy.example. 300 IN A 192.0.2.{i}"))
        .collect()
}

/// Drops every other UDP datagram of `udp_len` bytes (header included)
/// from the router to unbound, counting. The counter of `numgen` moves only
/// for the datagrams that got that far in the rule.
fn lose_every_other(lab: &Lab, udp_len: usize) {
    let rules = format!(
        "table inet loss {{\n  chain input {{\n    type filter hook input priority 0;\n    \
         ip saddr {ROUTER_WAN_V4} ip daddr {UPSTREAM_V4} udp dport 53 udp length {udp_len} \
         numgen inc mod 2 == 0 counter drop\n  }}\n}}\n"
    );
    lab.nft("up", &rules);
}

fn dropped(lab: &Lab) -> u64 {
    lab.run("up", "nft", &["list", "table", "inet", "loss"])
        .split("counter packets ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next()?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn lost_queries_are_sent_again_and_answered() {
    if !lab::can_run() || !common::have("nft") {
        eprintln!("SKIPPED: needs root, ip, nft and unbound (tests/deps.sh installs them)");
        return;
    }
    let lab = Lab::up();
    let records = records();
    let records: Vec<&str> = records.iter().map(String::as_str).collect();
    let _up = LabUpstream::start(&lab, &records);
    // The test's names all have one length; the others are longer.
    let udp_len = 8 + query("n1.lossy.example.", RecordType::A, false).len();
    lose_every_other(&lab, udp_len);
    let uci = format!(
        "config dae 'config'\n\toption log_level 'debug'\n\n\
         config dns 'dns'\n\tlist dns_listen '@LISTEN@'\n\toption upstream_timeout '4'\n\
         \toption cache_size '0'\n\toption request_fallback 'lab'\n\n\
         config upstream 'lab'\n\toption address 'udp://{UPSTREAM_V4}:53'\n"
    );
    let dae = Dae::start_in(Some(&lab.ns("router")), &uci, &[]);

    // Meanwhile other queries keep arriving, every 10 ms: the socket's
    // reader is woken for each, and its clock for sending again must not
    // be put off by that.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let chatter = {
        let (stop, addr) = (stop.clone(), dae.addr);
        lab.spawn_within("router", move || {
            let mut n = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let q = query(&format!("chatter-{n}.lossy.example."), RecordType::A, false);
                let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                let _ = sock.send_to(&q, addr);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    // One at a time, so the drops fall on first sends and on retransmits
    // alike, whatever the order the datagrams take.
    for i in 1..=NAMES {
        let addr = dae.addr;
        let q = query(&format!("n{i}.lossy.example."), RecordType::A, false);
        let reply = lab
            .within("router", move || {
                udp_exchange(addr, &q, Duration::from_secs(8))
            })
            .and_then(|r| Message::from_vec(&r).ok());
        let m = reply.unwrap_or_else(|| panic!("n{i}: no answer\n{}", dae.log()));
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "n{i}");
        let data: Vec<String> = m.answers.iter().map(|r| r.data.to_string()).collect();
        assert_eq!(data, [format!("192.0.2.{i}")], "n{i}\n{}", dae.log());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    chatter.join().unwrap();
    // Each first send went nowhere: with one send per query every answer
    // above would have been SERVFAIL.
    let lost = dropped(&lab);
    assert_eq!(lost, NAMES as u64, "datagrams dropped by the rule");
}
