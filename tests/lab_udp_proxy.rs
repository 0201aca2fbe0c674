//! The transparent proxy for UDP in the namespace lab, with the real
//! kernel: the client's datagrams are routed by the TC program on the
//! router's br-lan, and the proxied ones are relayed by dae's UDP endpoint
//! pool through a real Shadowsocks node (ss-server `-u`) to a real UDP echo
//! server (tests/servers/udp_echo.py, which answers with the peer it saw)
//! or a real QUIC server (tests/servers/quic_echo.py on aioquic).
//!
//! The router masquerades what leaves by its WAN port, as OpenWrt does: a
//! direct flow reaches the echo from the router's WAN address, a proxied
//! one from the node (in the upstream namespace).
//!
//! Shown: proxied by address (the echo sees the node), full cone (a reply
//! from a second address and port the client never sent to reaches it
//! through the same endpoint), direct (the router's WAN address, and the
//! relay's counters do not move), QUIC routed by the SNI of a client that
//! never resolved the name through dae (also with a ClientHello spanning
//! two Initial packets), garbage to UDP 443 relayed by address, and a
//! flood of distinct source ports that keeps the endpoints at their bound
//! (dae's memory is printed), and a group whose node is down drops the
//! flow (counted, warned) and never sends it direct. Through a SOCKS5
//! node (dante's UDP ASSOCIATE) one endpoint carries a client socket's
//! datagrams to two remotes, each reply from its remote's own address. The
//! NAT timeouts' expiry is shown by the pool's unit tests
//! (src/relay/udp.rs) on paused time: the config has no timeout to
//! shorten.
//!
//! Needs root, the lab's tools, ss-server and aioquic; skips loudly
//! without them.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::Duration;

use common::lab::{self, Lab, LabUpstream, NetnsEtc, ROUTER_WAN_V4, UPSTREAM_V4};
use common::proxies::{self, Server};
use common::tls::TestCa;
use common::{b64, wait_until, Dae};

const NODE: &str = "203.0.113.80";
/// Proxied by address; its echo also answers "cone" from `SECOND`.
const ECHO: &str = "203.0.113.91";
const SECOND: &str = "203.0.113.93";
/// Direct (the fallback).
const DIRECT: &str = "203.0.113.92";
/// A QUIC server never resolved through dae: routed by its SNI only.
const QUIC: &str = "203.0.113.94";
const QUIC_NAME: &str = "www.quic.example";
/// Proxied by address; gets garbage on UDP 443.
const GARBAGE: &str = "203.0.113.95";
const PORT: u16 = 7000;
const SECOND_PORT: u16 = 7001;

fn config() -> String {
    format!(
        "config dae 'config'\n\toption log_level 'debug'\n\tlist lan_interface 'br-lan'\n\
         \toption tproxy_port '12345'\n\toption bpf_object '{obj}'\n\
         \toption check_interval '5'\n\
         \toption tcp_check_url 'http://{UPSTREAM_V4}/'\n\
         \toption udp_check_dns '{UPSTREAM_V4}:53'\n\n\
         config dns 'dns'\n\toption request_fallback 'lab'\n\n\
         config upstream 'lab'\n\toption address 'udp://{UPSTREAM_V4}:53'\n\n\
         config node 'ss1'\n\toption link 'ss://{ss}@{NODE}:8388'\n\n\
         config group 'proxy'\n\tlist node 'ss1'\n\toption policy 'fixed(0)'\n\n\
         config routing 'routing'\n\
         \tlist rule 'domain(suffix: quic.example) -> proxy'\n\
         \tlist rule 'domain(suffix: direct.example) -> direct'\n\
         \tlist rule 'dip({ECHO}, {GARBAGE}) -> proxy'\n\
         \toption fallback 'direct'\n",
        obj = lab::bpf_object().display(),
        ss = b64(b"aes-256-gcm:lab-secret"),
    )
}

fn pydeps() -> std::path::PathBuf {
    lab::repo().join("target/pydeps")
}

fn have_aioquic() -> bool {
    Command::new("python3")
        .args(["-c", "import aioquic"])
        .env("PYTHONPATH", pydeps())
        .status()
        .is_ok_and(|s| s.success())
}

struct World {
    lab: Lab,
    _dns: LabUpstream,
    echo: Server,
    quic: Server,
    node: Server,
    _ca: TestCa,
    _names: NetnsEtc,
}

fn world() -> Option<World> {
    if !lab::can_run() || !common::have("ss-server") || !have_aioquic() {
        eprintln!("SKIPPED: needs the lab, ss-server and aioquic (tests/deps.sh installs them)");
        return None;
    }
    let lab = Lab::up();
    for a in [NODE, ECHO, SECOND, DIRECT, QUIC, GARBAGE] {
        lab.run(
            "up",
            "ip",
            &["addr", "add", &format!("{a}/32"), "dev", "lo"],
        );
    }
    lab.nft(
        "router",
        "table ip nat {\n  chain post {\n    type nat hook postrouting priority 100;\n    \
         oifname \"wan0\" masquerade\n  }\n}\n",
    );
    let dns = LabUpstream::start(&lab, &[]);
    let script = lab::repo().join("tests/servers/udp_echo.py");
    let listen: Vec<String> = vec![
        format!("{ECHO}:{PORT}"),
        format!("{SECOND}:{SECOND_PORT}"),
        format!("{DIRECT}:{PORT}"),
        format!("{GARBAGE}:443"),
    ];
    let mut args = vec!["-u", script.to_str().unwrap()];
    args.extend(listen.iter().map(String::as_str));
    let echo = Server::start(&lab, "up", "udp_echo", "python3", &args, &[]);
    let ca = TestCa::new("quic");
    let (cert, key) = ca.server("quic", &[&format!("DNS:{QUIC_NAME}")]);
    let quic_script = lab::repo().join("tests/servers/quic_echo.py");
    let pythonpath = format!("PYTHONPATH={}", pydeps().display());
    let quic = Server::start(
        &lab,
        "up",
        "quic_echo",
        "env",
        &[
            &pythonpath,
            "python3",
            "-u",
            quic_script.to_str().unwrap(),
            "server",
            QUIC,
            "443",
            cert.to_str().unwrap(),
            key.to_str().unwrap(),
        ],
        &[],
    );
    let ready = wait_until(Duration::from_secs(10), || {
        echo.log().contains("ready") && quic.log().contains("ready")
    });
    assert!(ready, "servers: {}\n{}", echo.log(), quic.log());
    // The node's own resolver knows the name the relay sends it.
    let names = lab.upstream_hosts(&[(QUIC, QUIC_NAME)]);
    let node = proxies::ss_server(&lab, "up", NODE, 8388, "aes-256-gcm", "lab-secret");
    Some(World {
        lab,
        _dns: dns,
        echo,
        quic,
        node,
        _ca: ca,
        _names: names,
    })
}

fn start(w: &World) -> Dae {
    let dae = Dae::start_in(Some(&w.lab.ns("router")), &config(), &[]);
    let alive = wait_until(Duration::from_secs(20), || {
        dae.status()["groups"][0]["nodes"][0]["udp4"]["alive"] == true
    });
    assert!(
        alive,
        "node never alive for UDP: {}\n{}",
        dae.status(),
        dae.log()
    );
    dae
}

/// From one client socket: sends each datagram to `to`, then collects
/// `want` replies (or what comes within 3 s), with where each came from.
fn exchange(
    w: &World,
    to: &str,
    port: u16,
    sends: &[&[u8]],
    want: usize,
) -> Vec<(String, SocketAddr)> {
    let to = SocketAddr::new(to.parse().unwrap(), port);
    let sends: Vec<Vec<u8>> = sends.iter().map(|s| s.to_vec()).collect();
    w.lab.within("client", move || {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut got = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        for d in &sends {
            s.send_to(d, to).unwrap();
        }
        let mut buf = [0u8; 2048];
        while got.len() < want && std::time::Instant::now() < deadline {
            if let Ok((n, from)) = s.recv_from(&mut buf) {
                got.push((String::from_utf8_lossy(&buf[..n]).into_owned(), from));
            }
        }
        got
    })
}

/// The address in a `peer=IP:PORT` line.
fn peer_ip(line: &str) -> &str {
    let p = line.rsplit("peer=").next().unwrap_or_default();
    p.rsplit_once(':').map_or(p, |(ip, _)| ip)
}

/// From the node (in the upstream namespace), not from the router.
fn through_node(line: &str) -> bool {
    let p = peer_ip(line);
    p != ROUTER_WAN_V4 && p.starts_with("203.0.113.")
}

fn udp(dae: &Dae) -> serde_json::Value {
    dae.status()["relay"]["udp"].clone()
}

fn quic_client(w: &World, big: bool) -> String {
    let script = lab::repo().join("tests/servers/quic_echo.py");
    let mut cmd = w.lab.cmd("client", "python3");
    cmd.env("PYTHONPATH", pydeps())
        .arg(script)
        .args(["client", QUIC, "443", QUIC_NAME]);
    if big {
        cmd.arg("--big");
    }
    let out = cmd.output().expect("run the QUIC client");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn lan_udp_is_relayed_through_the_node_full_cone_and_by_quic_sni() {
    let Some(w) = world() else { return };
    let dae = start(&w);

    // Proxied by address: the echo sees the node.
    let got = exchange(&w, ECHO, PORT, &[b"echo"], 1);
    assert_eq!(got.len(), 1, "no answer: {}\n{}", w.echo.log(), dae.log());
    assert!(through_node(&got[0].0), "{got:?}");
    assert_eq!(got[0].1, SocketAddr::new(ECHO.parse().unwrap(), PORT));
    let s = udp(&dae);
    assert_eq!(s["ways"]["ss1"]["endpoints"], 1, "{s}");
    assert!(
        s["ways"]["ss1"]["datagrams_down"].as_u64() >= Some(1),
        "{s}"
    );

    // Full cone: the second remote's reply, from its own address and port,
    // reaches the client through the same endpoint.
    let got = exchange(&w, ECHO, PORT, &[b"cone"], 2);
    assert_eq!(got.len(), 2, "{got:?}\n{}\n{}", w.echo.log(), dae.log());
    let second = got
        .iter()
        .find(|(line, _)| line.starts_with("second "))
        .unwrap_or_else(|| panic!("no reply from the second remote: {got:?}"));
    assert_eq!(
        second.1,
        SocketAddr::new(SECOND.parse().unwrap(), SECOND_PORT)
    );
    assert!(through_node(&second.0), "{got:?}");
    let s = udp(&dae);
    // One endpoint for the new client socket (the first one's is still live).
    assert_eq!(s["ways"]["ss1"]["total"], 2, "{s}");

    // Direct: from the router's WAN address, and the relay did not move.
    let before = udp(&dae);
    let got = exchange(&w, DIRECT, PORT, &[b"direct"], 1);
    assert_eq!(got.len(), 1, "no direct answer: {}", w.echo.log());
    assert_eq!(peer_ip(&got[0].0), ROUTER_WAN_V4, "{got:?}");
    let after = udp(&dae);
    assert_eq!(
        before["ways"], after["ways"],
        "the relay moved for a direct flow"
    );
    assert!(after["ways"]["direct"].is_null(), "{after}");

    // QUIC to an address never resolved through dae: the SNI decides, the
    // node is given the name (it resolves it), and the client's replies
    // come from the address it dialed.
    let sniffed = udp(&dae)["sniffed"].as_u64().unwrap_or(0);
    for big in [false, true] {
        let out = quic_client(&w, big);
        let line = out
            .lines()
            .find(|l| l.starts_with("peer="))
            .unwrap_or_else(|| {
                panic!(
                    "QUIC (big hello: {big}) failed: {out}\n{}\n{}",
                    w.quic.log(),
                    dae.log()
                )
            });
        assert!(through_node(line), "big hello {big}: {line}");
    }
    let s = udp(&dae);
    assert_eq!(s["sniffed"].as_u64(), Some(sniffed + 2), "{s}");
    // The big hello took two Initials (two datagrams) to read.
    let log = dae.log();
    assert!(
        log.contains(&format!("QUIC for {QUIC_NAME} (after 1 datagrams)"))
            && log.contains(&format!("QUIC for {QUIC_NAME} (after 2 datagrams)")),
        "{log}"
    );

    // Garbage to UDP 443: no name to sniff; relayed by address.
    let got = exchange(&w, GARBAGE, 443, &[b"\x00not quic at all"], 1);
    assert_eq!(got.len(), 1, "{}\n{}", w.echo.log(), dae.log());
    assert!(through_node(&got[0].0), "{got:?}");
    assert_eq!(udp(&dae)["sniffed"].as_u64(), Some(sniffed + 2));

    let text = Command::new(env!("CARGO_BIN_EXE_dae"))
        .args(["status", "-s"])
        .arg(dae.status_socket())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("udp relay via ss1:"), "{text}");

    // New rules apply to new flows at once.
    dae.reload(&config().replace(
        &format!("dip({ECHO}, {GARBAGE}) -> proxy"),
        &format!("dip({ECHO}, {GARBAGE}) -> direct"),
    ));
    let got = exchange(&w, ECHO, PORT, &[b"after reload"], 1);
    assert_eq!(got.len(), 1, "{}", dae.log());
    assert_eq!(peer_ip(&got[0].0), ROUTER_WAN_V4, "{got:?}");
}

#[test]
fn a_flood_of_source_ports_keeps_the_endpoints_at_their_bound() {
    let Some(w) = world() else { return };
    let dae = start(&w);
    let capacity = udp(&dae)["capacity"].as_u64().unwrap();
    let rss_before = dae.memory_kib("VmRSS");
    let ports = capacity as u16 + 2000;
    let to = SocketAddr::new(ECHO.parse().unwrap(), PORT);
    w.lab.within("client", move || {
        for i in 0..ports {
            // Each from its own source port (20000 and up).
            let s = UdpSocket::bind(("0.0.0.0", 20000 + i)).unwrap();
            s.send_to(b"flood", to).unwrap();
            if i % 64 == 63 {
                // Paced a little: the router's socket buffer is not the
                // point here.
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    });
    // Settled: the relay took every datagram that reached it.
    let total = |s: &serde_json::Value| s["ways"]["ss1"]["total"].as_u64().unwrap_or(0);
    let mut last = u64::MAX;
    let settled = wait_until(Duration::from_secs(30), || {
        std::thread::sleep(Duration::from_millis(500));
        let now = total(&udp(&dae));
        std::mem::replace(&mut last, now) == now
    });
    let s = udp(&dae);
    assert!(settled, "{s}");
    assert!(
        total(&s) > capacity,
        "fewer endpoints made than the bound: {s}"
    );
    assert!(s["endpoints"].as_u64().unwrap() <= capacity, "{s}");
    assert!(s["evicted"].as_u64() >= Some(1), "{s}");
    let rss_after = dae.memory_kib("VmRSS");
    eprintln!(
        "flood of {ports} source ports: {} endpoints live, {} evicted; dae VmRSS {rss_before} KiB -> {rss_after} KiB, VmHWM {} KiB",
        s["endpoints"],
        s["evicted"],
        dae.memory_kib("VmHWM")
    );
    // Bounded: the pool's bound, not the flood's size, sets the growth.
    assert!(
        rss_after - rss_before < 32 * 1024,
        "{rss_before} -> {rss_after} KiB"
    );
    // Still serving.
    let got = exchange(&w, ECHO, PORT, &[b"after"], 1);
    assert_eq!(got.len(), 1, "{s}");
}

#[test]
fn a_group_without_a_live_udp_node_drops_and_never_goes_direct() {
    let Some(mut w) = world() else { return };
    let dae = start(&w);
    w.node.stop();
    let down = wait_until(Duration::from_secs(20), || {
        dae.status()["groups"][0]["nodes"][0]["udp4"]["alive"] == false
    });
    assert!(down, "{}", dae.status());
    let got = exchange(&w, ECHO, PORT, &[b"dead node"], 1);
    assert!(got.is_empty(), "answered without a node: {got:?}");
    assert!(
        !w.echo.log().contains(&format!("peer={ROUTER_WAN_V4}")),
        "the flow went direct: {}",
        w.echo.log()
    );
    let s = udp(&dae);
    assert!(s["refused_no_node"].as_u64() >= Some(1), "{s}");
    assert!(
        dae.log()
            .contains("group 'proxy' has no live node: its UDP flows are dropped"),
        "{}",
        dae.log()
    );
}

/// Through a SOCKS5 node (dante's UDP ASSOCIATE) the relay works the same:
/// one endpoint per client socket, replies from each remote's own address.
#[test]
fn lan_udp_is_relayed_through_a_socks5_node() {
    let Some(w) = world() else { return };
    let _dante = proxies::dante(&w.lab, "up", NODE, 1080, UPSTREAM_V4);
    let ss = format!("ss://{}@{NODE}:8388", b64(b"aes-256-gcm:lab-secret"));
    // Both remotes routed to the group (the kernel decides per
    // destination).
    let socks = config()
        .replace(&ss, &format!("socks5://{NODE}:1080"))
        .replace(
            &format!("dip({ECHO}, {GARBAGE})"),
            &format!("dip({ECHO}, {SECOND}, {GARBAGE})"),
        );
    assert!(
        socks.contains("socks5://") && socks.contains(SECOND),
        "{socks}"
    );
    let dae = Dae::start_in(Some(&w.lab.ns("router")), &socks, &[]);
    let alive = wait_until(Duration::from_secs(20), || {
        dae.status()["groups"][0]["nodes"][0]["udp4"]["alive"] == true
    });
    assert!(alive, "{}\n{}", dae.status(), dae.log());

    // One client socket to two remotes: both answer, each from its own
    // address, through the node; one endpoint carries both.
    let to_second = SocketAddr::new(SECOND.parse().unwrap(), SECOND_PORT);
    let got = w.lab.within("client", move || {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 2048];
        // The second remote once the first answered: the node's path is
        // open by then and known to be full cone, so it carries both.
        for to in [SocketAddr::new(ECHO.parse().unwrap(), PORT), to_second] {
            s.send_to(b"hello", to).unwrap();
            let deadline = std::time::Instant::now() + Duration::from_secs(3);
            let want = got.len() + 1;
            while got.len() < want && std::time::Instant::now() < deadline {
                if let Ok((n, from)) = s.recv_from(&mut buf) {
                    got.push((String::from_utf8_lossy(&buf[..n]).into_owned(), from));
                }
            }
        }
        got
    });
    assert_eq!(got.len(), 2, "{got:?}\n{}\n{}", w.echo.log(), dae.log());
    for (line, from) in &got {
        assert!(through_node(line), "{got:?}");
        assert!(
            *from == SocketAddr::new(ECHO.parse().unwrap(), PORT) || *from == to_second,
            "{got:?}"
        );
    }
    assert_ne!(got[0].1, got[1].1, "{got:?}");
    let s = udp(&dae);
    assert_eq!(s["ways"]["ss1"]["total"], 1, "one endpoint: {s}");
    assert!(
        s["ways"]["ss1"]["datagrams_down"].as_u64() >= Some(2),
        "{s}"
    );
}
