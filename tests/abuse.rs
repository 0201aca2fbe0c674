//! Clients and upstreams that misbehave, against the real `dae` binary:
//! a flood of failing queries must not flood the log.
//!
//! Everything runs on loopback with real servers (unbound) or plain sockets
//! that never answer.

mod common;

use std::io::Write;
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

/// The resident memory of a process, in KiB (`VmRSS` of /proc/PID/status).
fn rss_kib(pid: u32) -> u64 {
    common::proc_status_kib(pid, "VmRSS")
}

/// A TCP connection whose receive buffer is 4 kB (set before connecting,
/// so the window stays small).
fn connect_small_window(to: std::net::SocketAddr) -> std::net::TcpStream {
    use nix::sys::socket::{self as sock, sockopt, AddressFamily, SockFlag, SockType};
    let fd = sock::socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    sock::setsockopt(&fd, sockopt::RcvBuf, &4096).unwrap();
    let std::net::SocketAddr::V4(v4) = to else {
        panic!("{to}: IPv4 only")
    };
    sock::connect(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &sock::SockaddrIn::from(v4),
    )
    .unwrap();
    std::net::TcpStream::from(fd)
}

/// 256 TCP clients that send queries with large answers and never read
/// them: dae's memory stays bounded (answers queued per connection and in
/// all are capped, and a write that does not progress closes the
/// connection), and a newcomer that reads is served: the full listener
/// closes the worst offender instead of refusing it.
#[test]
fn tcp_clients_that_never_read_pin_no_memory_and_lock_nobody_out() {
    if !have("unbound") {
        return;
    }
    // About 16 kB per answer: 16 TXT records of 4 strings of 250 bytes.
    let records: Vec<String> = (0..16)
        .map(|i| {
            let s = format!("{i:02}{}", "y".repeat(248));
            format!("big.lab.example. 300 IN TXT \"{s}\" \"{s}\" \"{s}\" \"{s}\"")
        })
        .collect();
    let refs: Vec<&str> = records.iter().map(String::as_str).collect();
    let up = Unbound::start(&refs);
    let uci = format!(
        "config dae 'config'\n\toption log_level 'info'\n\n\
         config dns 'dns'\n\tlist dns_listen '@LISTEN@'\n\toption request_fallback 'up'\n\n\
         config upstream 'up'\n\toption address 'tcp://{}'\n",
        up.addr()
    );
    let dae = Dae::start(&uci);
    let big = query("big.lab.example.", RecordType::TXT, true);
    let answer = tcp_exchange(dae.addr, &big, Duration::from_secs(5)).expect("big answer");
    assert!(answer.len() > 16_000, "{} bytes", answer.len());
    let before = rss_kib(dae.pid());

    // Each sends 16 queries (about 256 kB of answers) and never reads, with
    // a small receive buffer so that the kernel holds little of them.
    let mut hogs = Vec::new();
    for _ in 0..256 {
        let mut s = connect_small_window(dae.addr);
        let mut frames = Vec::new();
        for _ in 0..16 {
            let q = query("big.lab.example.", RecordType::TXT, true);
            frames.extend_from_slice(&(q.len() as u16).to_be_bytes());
            frames.extend_from_slice(&q);
        }
        s.write_all(&frames).unwrap();
        hogs.push(s);
    }
    // The peak while they sit there.
    let mut peak = 0;
    for _ in 0..30 {
        std::thread::sleep(Duration::from_millis(100));
        peak = peak.max(rss_kib(dae.pid()));
    }
    eprintln!("dae resident: {before} KiB before, {peak} KiB with 256 clients that never read");

    // Before the caps dae grew by 18 MiB here (answers queued for clients
    // that do not read); with them, by about 6 (the 4 MiB budget).
    assert!(
        peak < before + 12 * 1024,
        "dae grew from {before} KiB to {peak} KiB"
    );
    // A client that reads gets its answer, over TCP and UDP.
    let reply = tcp_exchange(dae.addr, &big, Duration::from_secs(5));
    assert!(reply.is_some(), "a reading TCP client was turned away");
    let m = ask(dae.addr, "big.lab.example.", RecordType::TXT);
    assert!(m.metadata.truncation || !m.answers.is_empty());
    // A client that takes no answer for 10 s is closed: the hogs' sockets
    // go (before, each stayed for as long as its client did).
    let sockets = || {
        std::fs::read_dir(format!("/proc/{}/fd", dae.pid()))
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|l| l.to_string_lossy().starts_with("socket:"))
            .count()
    };
    assert!(sockets() > 100, "{} sockets", sockets());
    assert!(
        wait_until(Duration::from_secs(25), || sockets() < 32),
        "{} sockets still open",
        sockets()
    );
    drop(hogs);
    assert!(dae.stop().is_some());
}
