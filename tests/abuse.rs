//! Clients and upstreams that misbehave, against the real `dae` binary:
//! a flood of failing queries must not flood the log.
//!
//! Everything runs on loopback with real servers (unbound) or plain sockets
//! that never answer.

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use common::*;
use hickory_proto::rr::RecordType;

/// 10,000 queries that all fail (their upstream never answers) write a
/// handful of lines and one summary per kind, not a line per query; the
/// summaries account for every line left out.
#[test]
fn a_burst_of_failing_queries_writes_a_bounded_log() {
    // An upstream that takes queries and never answers.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let uci = config(
        &[("dead", silent.local_addr().unwrap())],
        "\toption request_fallback 'dead'\n\toption upstream_timeout '1'\n",
    )
    .replace("option log_level 'debug'", "option log_level 'info'");
    let dae = Dae::start(&uci);
    let lines_before = dae.log().lines().count();

    // The client never reads: only dae's log and counters matter here.
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    let total = 10_000u64;
    for i in 0..total {
        let q = query(&format!("n{i}.flood.example."), RecordType::A, false);
        client.send_to(&q, dae.addr).unwrap();
        if i % 200 == 199 {
            // Paced so that dae's receive buffer keeps up.
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    // Each query fails: at once (too many wait already) or after 1 s.
    let answered = wait_until(Duration::from_secs(20), || {
        let s = dae.status();
        s["dns"]["queries"] == s["dns"]["servfail"] && s["dns"]["queries"].as_u64() > Some(0)
    });
    let status = dae.status();
    assert!(answered, "{}", status["dns"]);
    let failed = status["dns"]["servfail"].as_u64().unwrap();
    assert!(failed > 9_000, "{}", status["dns"]);
    // Every window ends 10 s after its first line; the daemon writes the
    // summaries within 2 s of that.
    std::thread::sleep(Duration::from_secs(13));
    let log = dae.log();
    let new: Vec<&str> = log.lines().skip(lines_before).collect();
    let shown = || format!("{} lines:\n{}", new.len(), new.join("\n"));
    assert!(new.len() <= 30, "{}", shown());
    // Every failure is either written or counted in a summary.
    let mut accounted = 0;
    let mut summaries = 0;
    for line in &new {
        assert!(line.contains(" WARN "), "{}", shown());
        match line.split_once("… ") {
            Some((_, rest)) => {
                let (n, tail) = rest.split_once(' ').unwrap();
                assert!(tail.starts_with("more in the last 10 s like: "), "{line}");
                accounted += n.replace(',', "").parse::<u64>().unwrap();
                summaries += 1;
            }
            None => accounted += 1,
        }
    }
    assert!(summaries >= 1, "{}", shown());
    assert_eq!(accounted, failed, "{}", shown());
    assert!(dae.stop().is_some());
}
