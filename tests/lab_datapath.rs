//! The eBPF datapath in the namespace lab (`tests/lab.sh`), with the real
//! kernel: a client behind the router's `br-lan`, dae on the router with its
//! TC program attached, unbound on the upstream side.
//!
//! What is shown: the client's DNS (UDP and TCP, IPv4 and IPv6, to the real
//! server and to an address with no host) is answered through dae, which
//! asks upstream from the router's own address; other traffic passes
//! untouched; a killed daemon leaves DNS working directly (fail open) or
//! dropped (fail closed); restarts and reloads leave exactly one filter;
//! 10,000 queries from dnsperf lose nothing; the TCX attach mode works too;
//! an object that is not one is refused at start with the loader's reason;
//! loading the program leaves no memory peak (the kernel's BTF is not
//! parsed).
//!
//! Needs root and the lab's tools; skips loudly without them.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use common::lab::{
    self, dns, Lab, LabUpstream, CLIENT_V4, CLIENT_V6, NOBODY_V4, NOBODY_V6, ROUTER_WAN_V4,
    ROUTER_WAN_V6, UPSTREAM_V4, UPSTREAM_V6,
};
use common::{query, tcp_exchange, udp_exchange_from, Dae};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

const RECORDS: &[&str] = &[
    "www.lab.example. 300 IN A 192.0.2.80",
    "www.lab.example. 300 IN AAAA 2001:db8::80",
];

/// The router's config: dae on br-lan, every query to the lab's unbound.
fn router_config(extra_general: &str, extra_dns: &str) -> String {
    format!(
        "config dae 'config'\n\toption log_level 'debug'\n\tlist lan_interface 'br-lan'\n\
         \toption tproxy_port '12345'\n\toption bpf_object '{obj}'\n{extra_general}\n\
         config dns 'dns'\n\toption request_fallback 'lab'\n{extra_dns}\n\
         config upstream 'lab'\n\toption address 'udp://{UPSTREAM_V4}:53'\n",
        obj = lab::bpf_object().display()
    )
}

fn start_dae(lab: &Lab, uci: &str, args: &[&str]) -> Dae {
    Dae::start_in(Some(&lab.ns("router")), uci, args)
}

/// One exchange from the client, over UDP or TCP.
fn client_ask(
    lab: &Lab,
    server: SocketAddr,
    name: &str,
    rtype: RecordType,
    tcp: bool,
    timeout: Duration,
) -> Option<Message> {
    let q = query(name, rtype, true);
    let id = u16::from_be_bytes([q[0], q[1]]);
    let reply = lab.within("client", move || {
        if tcp {
            tcp_exchange(server, &q, timeout)
        } else {
            let (reply, from) = udp_exchange_from(server, &q, timeout)?;
            assert_eq!(from, server, "the reply must come from the address asked");
            Some(reply)
        }
    })?;
    let m = Message::from_vec(&reply).expect("the reply parses");
    assert_eq!(m.metadata.id, id, "reply id");
    Some(m)
}

fn data(m: &Message) -> Vec<String> {
    m.answers.iter().map(|r| r.data.to_string()).collect()
}

fn counter(d: &Dae, name: &str) -> u64 {
    d.status()["datapath"][name].as_u64().unwrap_or(0)
}

#[test]
fn lan_dns_over_udp_and_tcp_v4_and_v6_is_answered_through_dae() {
    if !lab::can_run() {
        return;
    }
    let lab = Lab::up();
    let up = LabUpstream::start(&lab, RECORDS);
    let d = start_dae(&lab, &router_config("", ""), &[]);
    assert_eq!(lab.filters(), 1, "one filter on br-lan");
    // Loading the TC program leaves no peak behind: the loader never
    // parsed the kernel's BTF (5 MB of types here, 30 MB of heap while
    // parsed; 43 MB peak against 13 MB resident before it was hidden).
    let (peak, now) = (d.memory_kib("VmHWM"), d.memory_kib("VmRSS"));
    assert!(
        peak <= now + 4096,
        "peak {peak} KiB against {now} KiB resident after start"
    );

    let servers = [UPSTREAM_V4, NOBODY_V4, UPSTREAM_V6, NOBODY_V6];
    for (i, server) in servers.iter().enumerate() {
        for tcp in [false, true] {
            // A fresh name each time so each query goes upstream.
            let name = format!("n{i}{}.lab.example.", if tcp { "t" } else { "u" });
            let m = client_ask(
                &lab,
                dns(server),
                &name,
                RecordType::A,
                tcp,
                Duration::from_secs(5),
            )
            .unwrap_or_else(|| panic!("no answer from {server} (tcp: {tcp}):\n{}", d.log()));
            // unbound has no such name: NXDOMAIN with the zone's SOA, from
            // the upstream, through dae.
            assert_eq!(
                m.metadata.response_code,
                ResponseCode::NXDomain,
                "{name} via {server}"
            );
            assert_eq!(m.authorities.len(), 1, "SOA for the negative answer");
            let seen = up.sources(&name);
            let router: [IpAddr; 2] = [
                ROUTER_WAN_V4.parse().unwrap(),
                ROUTER_WAN_V6.parse().unwrap(),
            ];
            assert!(
                !seen.is_empty() && seen.iter().all(|s| router.contains(s)),
                "the upstream must see the router ask for {name}, saw {seen:?}"
            );
        }
    }
    // A real answer, its fields as the client sees them.
    for server in [NOBODY_V4, NOBODY_V6] {
        let m = client_ask(
            &lab,
            dns(server),
            "www.lab.example.",
            RecordType::AAAA,
            false,
            Duration::from_secs(5),
        )
        .expect("an answer");
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(data(&m), vec!["2001:db8::80".to_string()]);
        assert!(m.answers[0].ttl <= 300 && m.answers[0].ttl > 290);
        assert!(m.metadata.recursion_available);
    }
    let client: [IpAddr; 2] = [CLIENT_V4.parse().unwrap(), CLIENT_V6.parse().unwrap()];
    assert!(
        up.log()
            .lines()
            .all(|l| !client.iter().any(|c| l.contains(&format!(" info: {c} ")))),
        "the client's queries must never reach the upstream directly:\n{}",
        up.log()
    );
    assert!(counter(&d, "handed") >= 10, "status: {}", d.status());
    assert_eq!(counter(&d, "passed"), 0);
    d.stop();
    assert_eq!(lab.filters(), 0, "stop removes the filter");
    assert_eq!(lab.fwmark_rules(), 0, "stop removes the policy routing");
}

#[test]
fn asis_forwards_to_the_address_the_client_asked() {
    if !lab::can_run() {
        return;
    }
    let lab = Lab::up();
    let up = LabUpstream::start(&lab, RECORDS);
    let uci = router_config(
        "",
        "\tlist request_rule 'qname(suffix: lab.example) -> asis'\n",
    )
    // The fallback upstream is a server nobody runs: only asis can answer.
    .replace(&format!("udp://{UPSTREAM_V4}:53"), "udp://203.0.113.7:53");
    let d = start_dae(&lab, &uci, &[]);
    let m = client_ask(
        &lab,
        dns(UPSTREAM_V6),
        "www.lab.example.",
        RecordType::A,
        false,
        Duration::from_secs(5),
    )
    .unwrap_or_else(|| panic!("no answer:\n{}", d.log()));
    assert_eq!(data(&m), vec!["192.0.2.80".to_string()]);
    assert_eq!(
        up.sources("www.lab.example."),
        vec![ROUTER_WAN_V6.parse::<IpAddr>().unwrap()]
    );
    // asis to an address with no server: SERVFAIL, not silence.
    let m = client_ask(
        &lab,
        dns(NOBODY_V4),
        "x.lab.example.",
        RecordType::A,
        false,
        Duration::from_secs(10),
    )
    .expect("an answer");
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
}

#[test]
fn other_traffic_and_the_routers_own_dns_pass_untouched() {
    if !lab::can_run() {
        return;
    }
    let lab = Lab::up();
    let up = LabUpstream::start(&lab, RECORDS);
    let d = start_dae(&lab, &router_config("", ""), &[]);

    // Echo servers on the upstream side that answer with the source they saw.
    let (udp, tcp) = lab.within("up", || {
        let u = UdpSocket::bind((UPSTREAM_V4, 5300)).unwrap();
        let t = TcpListener::bind((UPSTREAM_V4, 8053)).unwrap();
        (u, t)
    });
    let echo_udp = std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        let (_, from) = udp.recv_from(&mut buf).unwrap();
        udp.send_to(from.to_string().as_bytes(), from).unwrap();
    });
    let echo_tcp = std::thread::spawn(move || {
        let (mut s, from) = tcp.accept().unwrap();
        s.write_all(from.to_string().as_bytes()).unwrap();
    });
    let (u, t) = lab.within("client", || {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.send_to(b"hello", (UPSTREAM_V4, 5300)).unwrap();
        let mut buf = [0u8; 512];
        let n = s.recv(&mut buf).expect("UDP echo");
        let mine = s.local_addr().unwrap().port();
        let udp_seen = (String::from_utf8_lossy(&buf[..n]).into_owned(), mine);
        let mut c = TcpStream::connect((UPSTREAM_V4, 8053)).expect("TCP connect");
        let mine = c.local_addr().unwrap().port();
        let mut text = String::new();
        c.read_to_string(&mut text).unwrap();
        (udp_seen, (text, mine))
    });
    echo_udp.join().unwrap();
    echo_tcp.join().unwrap();
    assert_eq!(
        u.0,
        format!("{CLIENT_V4}:{}", u.1),
        "UDP passes with the client's own source"
    );
    assert_eq!(
        t.0,
        format!("{CLIENT_V4}:{}", t.1),
        "TCP passes with the client's own source"
    );

    // The router's own DNS goes straight out (it never crosses br-lan
    // ingress).
    let r = lab.run(
        "router",
        "dig",
        &[
            "+tries=1",
            "+time=3",
            "@203.0.113.53",
            "www.lab.example.",
            "A",
        ],
    );
    assert!(r.contains("192.0.2.80"), "{r}");
    assert_eq!(
        up.sources("www.lab.example."),
        vec![ROUTER_WAN_V4.parse::<IpAddr>().unwrap()]
    );
    assert_eq!(counter(&d, "seen"), 0, "no port-53 packet crossed br-lan");

    // Garbage to port 53 is taken (it is port 53) and dropped by the
    // listener, which keeps serving.
    lab.within("client", || {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        for junk in [&b"\x01"[..], &[0xff; 40][..], &[0u8; 12][..]] {
            s.send_to(junk, (NOBODY_V4, 53)).unwrap();
        }
    });
    let m = client_ask(
        &lab,
        dns(NOBODY_V4),
        "www.lab.example.",
        RecordType::A,
        false,
        Duration::from_secs(5),
    )
    .expect("still serving");
    assert_eq!(data(&m), vec!["192.0.2.80".to_string()]);
}

#[test]
fn kill_9_fails_open_and_restarts_leave_one_filter() {
    if !lab::can_run() {
        return;
    }
    let lab = Lab::up();
    let up = LabUpstream::start(&lab, RECORDS);
    let uci = router_config("", "");
    let d = start_dae(&lab, &uci, &[]);
    assert!(client_ask(
        &lab,
        dns(UPSTREAM_V4),
        "a.lab.example.",
        RecordType::A,
        false,
        Duration::from_secs(5)
    )
    .is_some());
    d.kill9();
    // The filter stays (netlink TC filters outlive their loader) and passes
    // DNS to the real server: the first query after the kill is answered
    // directly, within a second.
    assert_eq!(lab.filters(), 1);
    let m = client_ask(
        &lab,
        dns(UPSTREAM_V4),
        "b.lab.example.",
        RecordType::A,
        false,
        Duration::from_secs(1),
    )
    .expect("fail open: the upstream answers directly");
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(
        up.sources("b.lab.example."),
        vec![CLIENT_V4.parse::<IpAddr>().unwrap()]
    );
    let m = client_ask(
        &lab,
        dns(UPSTREAM_V6),
        "c.lab.example.",
        RecordType::A,
        true,
        Duration::from_secs(1),
    )
    .expect("fail open over TCP and IPv6");
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(
        up.sources("c.lab.example."),
        vec![CLIENT_V6.parse::<IpAddr>().unwrap()]
    );

    // Start over the stale filter, restart twice, reload: one filter each time.
    let d = start_dae(&lab, &uci, &[]);
    assert!(
        d.log()
            .contains("removed a TC filter left by an earlier run"),
        "{}",
        d.log()
    );
    assert_eq!(lab.filters(), 1);
    d.stop();
    assert_eq!(lab.filters(), 0);
    for _ in 0..2 {
        let d = start_dae(&lab, &uci, &[]);
        assert_eq!(lab.filters(), 1);
        assert!(d.reload(&uci).contains("reloaded"));
        assert_eq!(lab.filters(), 1);
        let m = client_ask(
            &lab,
            dns(NOBODY_V4),
            "www.lab.example.",
            RecordType::A,
            false,
            Duration::from_secs(5),
        )
        .expect("answered after restart and reload");
        assert_eq!(data(&m), vec!["192.0.2.80".to_string()]);
        d.stop();
    }
    assert_eq!(lab.filters(), 0);
    assert_eq!(lab.fwmark_rules(), 0);
}

#[test]
fn fail_closed_drops_dns_while_the_daemon_is_away() {
    if !lab::can_run() {
        return;
    }
    let lab = Lab::up();
    let up = LabUpstream::start(&lab, RECORDS);
    let uci = router_config("\toption fail_closed '1'\n", "");
    let d = start_dae(&lab, &uci, &[]);
    assert!(client_ask(
        &lab,
        dns(UPSTREAM_V4),
        "a.lab.example.",
        RecordType::A,
        false,
        Duration::from_secs(5)
    )
    .is_some());
    d.kill9();
    assert!(
        client_ask(
            &lab,
            dns(UPSTREAM_V4),
            "b.lab.example.",
            RecordType::A,
            false,
            Duration::from_secs(1)
        )
        .is_none(),
        "fail closed: no DNS while dae is away"
    );
    assert!(up.sources("b.lab.example.").is_empty());
    let d = start_dae(&lab, &uci, &[]);
    let m = client_ask(
        &lab,
        dns(UPSTREAM_V4),
        "c.lab.example.",
        RecordType::A,
        false,
        Duration::from_secs(5),
    )
    .expect("back when dae is");
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(
        up.sources("c.lab.example."),
        vec![ROUTER_WAN_V4.parse::<IpAddr>().unwrap()]
    );
    d.stop();
}

#[test]
fn tcx_attach_mode_serves_and_goes_away_with_the_daemon() {
    if !lab::can_run() {
        return;
    }
    let lab = Lab::up();
    let up = LabUpstream::start(&lab, RECORDS);
    let d = start_dae(&lab, &router_config("", ""), &["--tcx"]);
    let m = client_ask(
        &lab,
        dns(NOBODY_V6),
        "www.lab.example.",
        RecordType::A,
        true,
        Duration::from_secs(5),
    )
    .unwrap_or_else(|| panic!("no answer:\n{}", d.log()));
    assert_eq!(data(&m), vec!["192.0.2.80".to_string()]);
    assert_eq!(lab.filters(), 0, "a TCX link is not a netlink filter");
    d.kill9();
    // The link goes with the process: DNS flows directly.
    let m = client_ask(
        &lab,
        dns(UPSTREAM_V4),
        "z.lab.example.",
        RecordType::A,
        false,
        Duration::from_secs(1),
    )
    .expect("fail open");
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(
        up.sources("z.lab.example."),
        vec![CLIENT_V4.parse::<IpAddr>().unwrap()]
    );
}

#[test]
fn ten_thousand_queries_from_dnsperf_lose_nothing() {
    if !lab::can_run() {
        return;
    }
    let lab = Lab::up();
    let _up = LabUpstream::start(&lab, RECORDS);
    let d = start_dae(&lab, &router_config("", ""), &[]);
    let dir = common::TempDir::new("dnsperf");
    // 2,000 names, each asked 5 times (misses first, then hits), in order.
    let mut lines = String::new();
    for round in 0..5 {
        for i in 0..2000 {
            let t = if (i + round) % 2 == 0 { "A" } else { "AAAA" };
            lines.push_str(&format!("p{i}.lab.example {t}\n"));
        }
    }
    std::fs::write(dir.path("queries"), lines).unwrap();
    let out = lab.run(
        "client",
        "dnsperf",
        &[
            "-s",
            NOBODY_V4,
            "-d",
            dir.path("queries").to_str().unwrap(),
            "-n",
            "1",
            "-q",
            "100",
            "-l",
            "120",
            "-t",
            "5",
        ],
    );
    assert!(out.contains("Queries sent:         10000"), "{out}");
    assert!(
        out.contains("Queries lost:         0 "),
        "{out}\n{}",
        d.log()
    );
    assert!(counter(&d, "handed") >= 10_000);
}

#[test]
fn a_broken_bpf_object_is_refused_with_its_reason_and_leaves_nothing() {
    if !lab::can_run() {
        return;
    }
    let lab = Lab::up();
    let dir = common::TempDir::new("badobj");
    let object = dir.path("dae_tc.o");
    std::fs::write(&object, b"not an ELF object\n").unwrap();
    let uci = router_config("", "").replace(
        &lab::bpf_object().display().to_string(),
        &object.display().to_string(),
    );
    std::fs::write(dir.path("dae.uci"), uci).unwrap();
    let out = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.ns("router"),
            env!("CARGO_BIN_EXE_dae"),
        ])
        .arg("run")
        .arg("-c")
        .arg(dir.path("dae.uci"))
        .output()
        .expect("run dae");
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(
        log.contains(&format!("cannot load eBPF object {}", object.display()))
            && log.contains("error parsing"),
        "{log}"
    );
    assert_eq!(lab.filters(), 0, "nothing attached");
}
