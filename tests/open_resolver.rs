//! The plain listeners are not an open resolver: in the namespace lab, dae
//! listens on `0.0.0.0:53` of the router and answers the LAN client, but
//! drops queries from beyond its own subnets and from its WAN side (counted
//! in `dae status`, logged once per source), until `allow_remote` opens it.

mod common;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

use common::lab::{self, Lab, LabUpstream, CLIENT_V4, ROUTER_WAN_V4, UPSTREAM_V4};
use common::{query, Dae};
use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;

const RECORDS: &[&str] = &["www.lab.example. 300 IN A 192.0.2.80"];
/// The router's LAN address.
const ROUTER_LAN_V4: &str = "192.0.2.1";
/// The upstream namespace's address on the router's WAN link.
const WAN_PEER_V4: &str = "198.51.100.2";

/// dae on the router with a plain listener on every address, no
/// interception.
fn router_config(general: &str, dns: &str) -> String {
    format!(
        "config dae 'config'\n\toption log_level 'info'\n{general}\n\
         config dns 'dns'\n\tlist dns_listen '0.0.0.0:53'\n\toption request_fallback 'lab'\n{dns}\n\
         config upstream 'lab'\n\toption address 'udp://{UPSTREAM_V4}:53'\n"
    )
}

/// One UDP exchange from `src` (an address of namespace `which`); the
/// answer, or `None` after `timeout`.
fn ask_from(lab: &Lab, which: &str, src: &str, server: &str, timeout: Duration) -> Option<Message> {
    let src: IpAddr = src.parse().unwrap();
    let server = SocketAddr::new(server.parse().unwrap(), 53);
    let q = query("www.lab.example.", RecordType::A, false);
    let reply = lab.within(which, move || {
        let s = UdpSocket::bind(SocketAddr::new(src, 0)).unwrap();
        s.set_read_timeout(Some(timeout)).unwrap();
        s.send_to(&q, server).unwrap();
        let mut buf = vec![0u8; 4096];
        let (n, _) = common::recv_from(&s, &mut buf).ok()?;
        buf.truncate(n);
        Some(buf)
    })?;
    Some(Message::from_vec(&reply).expect("the reply parses"))
}

/// One TCP exchange from `src`: whether an answer came.
fn tcp_from(lab: &Lab, which: &str, src: &str, server: &str) -> bool {
    use std::io::{Read, Write};
    let src: IpAddr = src.parse().unwrap();
    let server = SocketAddr::new(server.parse().unwrap(), 53);
    let q = query("www.lab.example.", RecordType::A, false);
    lab.within(which, move || {
        let sock = nix::sys::socket::socket(
            nix::sys::socket::AddressFamily::Inet,
            nix::sys::socket::SockType::Stream,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        let IpAddr::V4(v4) = src else { unreachable!() };
        let local = nix::sys::socket::SockaddrIn::from(std::net::SocketAddrV4::new(v4, 0));
        nix::sys::socket::bind(std::os::fd::AsRawFd::as_raw_fd(&sock), &local).unwrap();
        let SocketAddr::V4(to) = server else {
            unreachable!()
        };
        let to = nix::sys::socket::SockaddrIn::from(to);
        if nix::sys::socket::connect(std::os::fd::AsRawFd::as_raw_fd(&sock), &to).is_err() {
            return false;
        }
        let mut s = std::net::TcpStream::from(sock);
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut frame = (q.len() as u16).to_be_bytes().to_vec();
        frame.extend_from_slice(&q);
        if s.write_all(&frame).is_err() {
            return false;
        }
        let mut len = [0u8; 2];
        s.read_exact(&mut len).is_ok()
    })
}

fn dropped(d: &Dae) -> u64 {
    d.status()["dns_listen_dropped"]
        .as_u64()
        .expect("dns_listen_dropped")
}

#[test]
fn plain_listeners_answer_only_local_subnets_unless_allow_remote() {
    if !lab::can_run() {
        return;
    }
    let lab = Lab::up();
    let _up = LabUpstream::start(&lab, RECORDS);
    let t = Duration::from_secs(3);
    // How long a dropped query is waited for.
    let quiet = Duration::from_secs(1);
    let d = Dae::start_in(
        Some(&lab.ns("router")),
        &router_config("\toption wan_interface 'wan0'\n", ""),
        &[],
    );

    // The LAN client, on the router's LAN subnet: answered.
    let m = ask_from(&lab, "client", CLIENT_V4, ROUTER_LAN_V4, t)
        .unwrap_or_else(|| panic!("the LAN client got no answer:\n{}", d.log()));
    assert_eq!(m.answers.len(), 1);
    assert!(tcp_from(&lab, "client", CLIENT_V4, ROUTER_LAN_V4));

    // A host on the WAN link, and one beyond it: dropped, over UDP and TCP.
    for _ in 0..3 {
        assert!(ask_from(&lab, "up", WAN_PEER_V4, ROUTER_WAN_V4, quiet).is_none());
    }
    assert!(ask_from(&lab, "up", UPSTREAM_V4, ROUTER_WAN_V4, quiet).is_none());
    assert!(!tcp_from(&lab, "up", UPSTREAM_V4, ROUTER_WAN_V4));
    assert_eq!(dropped(&d), 5, "{}", d.status());
    let log = d.log();
    let lines = |src: &str| {
        log.lines()
            .filter(|l| l.contains(&format!("dropped queries from {src}:")))
            .count()
    };
    assert_eq!(lines(WAN_PEER_V4), 1, "one line per source:\n{log}");
    assert_eq!(lines(UPSTREAM_V4), 1, "one line per source:\n{log}");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_dae"))
        .args(["status", "-s"])
        .arg(d.status_socket())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("local sources only, 5 queries from elsewhere dropped"),
        "{text}"
    );

    // Without wan_interface and with no default route, the WAN link is a
    // subnet of the router like any other: answered. Beyond it: dropped.
    let outcome = d.reload(&router_config("", ""));
    assert!(outcome.contains("reloaded"), "{outcome}");
    assert!(ask_from(&lab, "up", WAN_PEER_V4, ROUTER_WAN_V4, t).is_some());
    assert!(ask_from(&lab, "up", UPSTREAM_V4, ROUTER_WAN_V4, quiet).is_none());

    // Opened on purpose: answered, with a warning.
    let before = d.log().len();
    let outcome = d.reload(&router_config("", "\toption allow_remote '1'\n"));
    assert!(outcome.contains("reloaded"), "{outcome}");
    assert!(
        d.log()[before..].contains("option 'allow_remote': is on"),
        "{}",
        d.log()
    );
    assert!(ask_from(&lab, "up", UPSTREAM_V4, ROUTER_WAN_V4, t).is_some());
    assert!(tcp_from(&lab, "up", UPSTREAM_V4, ROUTER_WAN_V4));
    assert_eq!(d.stop(), Some(0));
}
