//! The UDP relay's path through a node (`Node::cone`) against real
//! servers in the namespace lab: ss-server (`-u`), dante (UDP ASSOCIATE),
//! trojan-gfw, and v2ray's VLESS and VMess inbounds, all in the upstream
//! namespace, with two UDP echo peers of the test's own there
//! (203.0.113.53 and 198.51.100.2, one port each).
//!
//! Shown, through ONE path per node:
//! - SOCKS5, Shadowsocks, Trojan (full cone): a datagram to each peer, and
//!   each reply comes back naming its peer's address; a datagram to a
//!   name only the upstream namespace's `/etc/hosts` knows reaches the
//!   first peer (so the server resolved it) and its reply names the peer.
//! - VLESS, VMess (one target per path): the first peer answers, a
//!   datagram to the second is refused with `Unsupported` and goes
//!   nowhere; a path opened for the name reaches the first peer.
//!
//! Without the lab: an HTTP node refuses UDP with its message, and
//! `dae validate` warns about a rule that can send UDP to a group of HTTP
//! nodes only (and not about one pinned to `l4proto(tcp)`).

mod common;

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::lab::{self, Lab, UPSTREAM_V4, UPSTREAM_WAN_V4};
use common::proxies;
use common::tls::TestCa;
use common::{b64, TempDir};
use dae::dialer::{ConePackets, Direct, Node, Target};
use dae::forwarder::tls::load_roots;

const PROXY: &str = UPSTREAM_WAN_V4;
const UUID: &str = "b831381d-6324-4d53-ad4f-8cda48b30811";
/// Known only to the upstream namespace's `/etc/hosts`: the first peer.
const ECHO_NAME: &str = "echo.lab.example";
const PEER_A: (&str, u16) = (UPSTREAM_V4, 7001);
const PEER_B: (&str, u16) = (UPSTREAM_WAN_V4, 7002);
/// Every network step is bounded by this: a hang fails the test.
const STEP: Duration = Duration::from_secs(5);

fn addr((ip, port): (&str, u16)) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), port)
}

/// UDP echo peers in a namespace: each sends every datagram back to
/// where it came from; they stop when the guard drops.
struct EchoPeers {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl EchoPeers {
    fn start(lab: &Lab, ns: &str, peers: &[SocketAddr]) -> EchoPeers {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for &peer in peers {
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            let stop = stop.clone();
            threads.push(lab.spawn_within(ns, move || {
                let s = UdpSocket::bind(peer).unwrap_or_else(|e| panic!("bind {peer}: {e}"));
                s.set_read_timeout(Some(Duration::from_millis(100)))
                    .unwrap();
                ready_tx.send(()).unwrap();
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((n, from)) = s.recv_from(&mut buf) {
                        let _ = s.send_to(&buf[..n], from);
                    }
                }
            }));
            ready_rx.recv_timeout(STEP).expect("the echo peer is up");
        }
        EchoPeers { stop, threads }
    }
}

impl Drop for EchoPeers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn vmess_link(port: u16) -> String {
    let json = format!(
        "{{\"v\":\"2\",\"ps\":\"vmess\",\"add\":\"{PROXY}\",\"port\":\"{port}\",\"id\":\"{UUID}\",\
         \"aid\":\"0\",\"scy\":\"aes-128-gcm\",\"net\":\"tcp\",\"type\":\"none\",\"tls\":\"\"}}"
    );
    format!("vmess://{}", b64(json.as_bytes()))
}

fn ss_link(port: u16) -> String {
    format!(
        "ss://{}@{PROXY}:{port}#ss",
        b64(b"chacha20-ietf-poly1305:ss-pass")
    )
}

async fn step<T>(
    what: &str,
    fut: impl std::future::Future<Output = io::Result<T>>,
) -> io::Result<T> {
    tokio::time::timeout(STEP, fut)
        .await
        .unwrap_or_else(|_| Err(io::Error::other(format!("{what}: no result in 5 s"))))
}

/// Sends `data` to `to` and waits for one reply: (its data, its source).
async fn exchange(
    p: &mut ConePackets,
    to: &Target,
    data: &[u8],
) -> io::Result<(Vec<u8>, SocketAddr)> {
    step("send", p.tx.send_to(data, to)).await?;
    step("reply", p.rx.recv_from()).await
}

/// A full-cone node: one path, datagrams to both peers and to the name,
/// each reply naming its peer.
async fn full_cone(node: &Node, direct: &Direct) -> Result<(), String> {
    let (a, b) = (addr(PEER_A), addr(PEER_B));
    let mut p = node
        .cone(direct, &a.into(), STEP)
        .await
        .map_err(|e| format!("cone: {e}"))?;
    if !p.full_cone {
        return Err("the path says it is not full cone".into());
    }
    // Both sent before either reply is read: one path, two remotes.
    step("send to A", p.tx.send_to(b"to a", &a.into()))
        .await
        .map_err(|e| e.to_string())?;
    step("send to B", p.tx.send_to(b"to b", &b.into()))
        .await
        .map_err(|e| e.to_string())?;
    let mut got = Vec::new();
    for _ in 0..2 {
        let r = step("reply", p.rx.recv_from())
            .await
            .map_err(|e| e.to_string())?;
        got.push(r);
    }
    got.sort();
    let want = vec![(b"to a".to_vec(), a), (b"to b".to_vec(), b)];
    let canon = |v: Vec<(Vec<u8>, SocketAddr)>| -> Vec<(Vec<u8>, SocketAddr)> {
        v.into_iter()
            .map(|(d, s)| (d, SocketAddr::new(s.ip().to_canonical(), s.port())))
            .collect()
    };
    if canon(got.clone()) != want {
        return Err(format!("replies {got:?}, want {want:?}"));
    }
    let name = Target::Name(ECHO_NAME.into(), PEER_A.1);
    let (d, from) = exchange(&mut p, &name, b"to the name")
        .await
        .map_err(|e| format!("to {name}: {e}"))?;
    if (
        d.as_slice(),
        SocketAddr::new(from.ip().to_canonical(), from.port()),
    ) != (&b"to the name"[..], a)
    {
        return Err(format!("to {name}: reply {d:?} from {from}"));
    }
    Ok(())
}

/// A one-target node: the first peer answers, the second is refused; a
/// path opened for the name reaches the first peer.
async fn one_target(node: &Node, direct: &Direct) -> Result<(), String> {
    let (a, b) = (addr(PEER_A), addr(PEER_B));
    let mut p = node
        .cone(direct, &a.into(), STEP)
        .await
        .map_err(|e| format!("cone: {e}"))?;
    if p.full_cone {
        return Err("the path says it is full cone".into());
    }
    let r = exchange(&mut p, &a.into(), b"to a")
        .await
        .map_err(|e| e.to_string())?;
    if r != (b"to a".to_vec(), a) {
        return Err(format!("reply {r:?}"));
    }
    match p.tx.send_to(b"to b", &b.into()).await {
        Err(e) if e.kind() == io::ErrorKind::Unsupported => {}
        other => return Err(format!("a second target: {other:?}")),
    }
    // Still there for the first target.
    let r = exchange(&mut p, &a.into(), b"again")
        .await
        .map_err(|e| e.to_string())?;
    if r.0 != b"again" {
        return Err(format!("after the refusal: {r:?}"));
    }
    let name = Target::Name(ECHO_NAME.into(), PEER_A.1);
    let mut p = node
        .cone(direct, &name, STEP)
        .await
        .map_err(|e| format!("cone to {name}: {e}"))?;
    let (d, _) = exchange(&mut p, &name, b"to the name")
        .await
        .map_err(|e| format!("to {name}: {e}"))?;
    if d != b"to the name" {
        return Err(format!("to {name}: reply {d:?}"));
    }
    Ok(())
}

#[test]
fn every_protocol_through_one_path() {
    if !lab::can_run() || !proxies::all_installed() {
        eprintln!("SKIPPED: needs the lab and the proxy servers");
        return;
    }
    let lab = Lab::up();
    // Before the servers start: they read it when they start.
    let _names = lab.upstream_hosts(&[(UPSTREAM_V4, ECHO_NAME)]);
    let _peers = EchoPeers::start(&lab, "up", &[addr(PEER_A), addr(PEER_B)]);
    let ca = TestCa::new("proxy-udp");
    let (cert, key) = ca.server("proxy", &["DNS:proxy.lab.example"]);
    let _ss = proxies::ss_server(&lab, "up", PROXY, 8388, "chacha20-ietf-poly1305", "ss-pass");
    let dante = proxies::dante(&lab, "up", PROXY, 1081, UPSTREAM_V4);
    let trojan = proxies::trojan(&lab, "up", PROXY, 10443, "gfw-pass", &cert, &key);
    let inbounds = format!(
        "[{{\"listen\": \"{PROXY}\", \"port\": 10001, \"protocol\": \"vmess\", \"settings\": {{\"clients\": [{{\"id\": \"{UUID}\", \"alterId\": 0}}]}}}},\
          {{\"listen\": \"{PROXY}\", \"port\": 10003, \"protocol\": \"vless\", \"settings\": {{\"clients\": [{{\"id\": \"{UUID}\"}}], \"decryption\": \"none\"}}}}]"
    );
    let v2ray = proxies::v2ray(&lab, "up", &inbounds, (PROXY, 10003));
    let nodes: Vec<(&str, String, bool)> = vec![
        ("shadowsocks", ss_link(8388), true),
        ("socks5", format!("socks5://{PROXY}:1081"), true),
        (
            "trojan",
            format!("trojan://gfw-pass@{PROXY}:10443?sni=proxy.lab.example"),
            true,
        ),
        (
            "vless",
            format!("vless://{UUID}@{PROXY}:10003?encryption=none&security=none&type=tcp"),
            false,
        ),
        ("vmess", vmess_link(10001), false),
    ];
    let ca_file = ca.cert.clone();
    let results = lab.block_on_within("router", move || async move {
        let direct = Direct::new(0, None);
        let mut results = Vec::new();
        for (what, link, cone) in nodes {
            let node = Node::new(what, &link, || load_roots(&ca_file), None);
            let result = match node {
                Err(e) => Err(format!("the link: {e}")),
                Ok(n) if cone => full_cone(&n, &direct).await,
                Ok(n) => one_target(&n, &direct).await,
            };
            results.push((what, result));
        }
        results
    });
    for (what, result) in results {
        assert_eq!(
            result,
            Ok(()),
            "{what}\ndante:\n{}\ntrojan:\n{}\nv2ray:\n{}",
            std::fs::read_to_string(dante.dir.path("danted.log")).unwrap_or_default(),
            trojan.log(),
            v2ray.log()
        );
    }
}

#[tokio::test]
async fn an_http_node_refuses_udp() {
    let node = Node::new(
        "web",
        "http://192.0.2.8:3128",
        || Err("no TLS".into()),
        None,
    )
    .expect("an http node");
    let target = Target::Addr("192.0.2.53:53".parse().unwrap());
    let e = node
        .cone(&Direct::new(0, None), &target, STEP)
        .await
        .err()
        .expect("refused");
    assert_eq!(e.kind(), io::ErrorKind::Unsupported);
    assert_eq!(e.to_string(), "an HTTP proxy carries no UDP");
}

fn validate(dir: &TempDir, text: &str) -> (Option<i32>, String) {
    let path = dir.path("udp.uci");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_dae"))
        .args(["validate", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn validate_warns_about_udp_to_http_only_groups() {
    let dir = TempDir::new("validate-udp");
    let head =
        "config dns 'dns'\n\tlist dns_listen '127.0.0.1:5353'\n\toption request_fallback 'up'\n\n\
        config upstream 'up'\n\toption address 'udp://192.0.2.53'\n\n\
        config node 'web1'\n\toption link 'http://192.0.2.8:3128'\n\n\
        config node 'web2'\n\toption link 'https://192.0.2.9:443'\n\n\
        config node 'ss'\n\toption link 'socks5://192.0.2.10:1080'\n\n\
        config group 'web'\n\tlist node 'web1'\n\tlist node 'web2'\n\n\
        config group 'mixed'\n\tlist node 'web1'\n\tlist node 'ss'\n\n";
    let text = format!(
        "{head}config routing 'routing'\n\
         \tlist rule 'dport(443) -> web'\n\
         \tlist rule 'l4proto(tcp) -> web'\n\
         \tlist rule '!l4proto(udp) && dport(80) -> web'\n\
         \tlist rule 'l4proto(tcp, udp) -> web'\n\
         \tlist rule 'dport(8443) -> mixed'\n\
         \toption fallback 'web'\n"
    );
    let (code, err) = validate(&dir, &text);
    assert_eq!(code, Some(0), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 3, "{err}");
    assert!(
        lines[0].contains(
            "routing 'routing', option 'rule': 'dport(443) -> web': can send UDP to group 'web'"
        ) && lines[0].contains("refused, never sent direct"),
        "{err}"
    );
    assert!(lines[1].contains("'l4proto(tcp, udp) -> web'"), "{err}");
    assert!(
        lines[2].contains("option 'fallback': sends UDP no rule catches to group 'web'"),
        "{err}"
    );
    // Pinned to TCP everywhere: no warning.
    let text = format!(
        "{head}config routing 'routing'\n\tlist rule 'l4proto(tcp) -> web'\n\
         \tlist rule 'dport(443) -> mixed'\n"
    );
    let (code, err) = validate(&dir, &text);
    assert_eq!((code, err.as_str()), (Some(0), ""));
}
