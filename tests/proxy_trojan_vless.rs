//! The trojan and VLESS dialers against real servers on loopback: trojan-gfw
//! (Debian's `trojan`) and v2ray 4.34 (a trojan inbound over TLS, VLESS
//! inbounds plain and over TLS), with a real unbound as the DNS server
//! behind them and certificates from a test CA, checked by the client.
//!
//! Shown: DNS questions answered over a proxied stream (RFC 7766 length
//! prefix, the first one written in two pieces) and over a proxied datagram
//! path (two in flight at once); the servers log the target we asked for;
//! a wrong password or unknown uuid gives an error, not a hang (whether the
//! server closes, or its fallback answers with something else); a
//! certificate from another CA is refused.
//!
//! In the namespace lab: a stream to a target given by host name (trojan
//! address type 3, VLESS address type 2) through trojan-gfw and v2ray in
//! the upstream namespace, which look the name up in that namespace's
//! `/etc/hosts`, the only place it exists, and log it.

mod common;

use std::future::Future;
use std::io;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::lab::{self, Lab, LabUpstream, TARGET_NAME, UPSTREAM_WAN_V4};
use common::proxies;
use common::tls::TestCa;
use common::{free_port, have, kill, query, wait_until, TempDir, Unbound};
use dae::dialer::{trojan, vless, BoxStream, Packets, Target};
use dae::forwarder::tls::{load_roots, TlsClient};
use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const NAME: &str = "proxied.lab.example.";
const ADDRESS: &str = "192.0.2.53";
const PASSWORD: &str = "correct horse battery staple";
const UUID: &str = "b831381d-6324-4d53-ad4f-8cda48b30811";
/// The certificate's name, which the client checks (and sends as SNI).
const SERVER_NAME: &str = "proxy.test";

/// unbound's zone data: `NAME` is at `ADDRESS`.
const RECORD: &str = "proxied.lab.example. 300 IN A 192.0.2.53";

fn uuid_bytes(text: &str) -> [u8; 16] {
    let hex: String = text.chars().filter(|c| *c != '-').collect();
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
    }
    out
}

/// A proxy server process, killed on drop, its output in a log file.
struct Server {
    child: Child,
    dir: TempDir,
}

impl Server {
    /// Starts `program args` (`@DIR@` in an argument stands for the temp
    /// dir, where `files` are written first); waits for `ready` in the log.
    fn start(program: &str, args: &[&str], files: &[(&str, String)], ready: &str) -> Server {
        let dir = TempDir::new(program);
        for (name, text) in files {
            std::fs::write(dir.path(name), text).unwrap();
        }
        let log = std::fs::File::create(dir.path("server.log")).unwrap();
        let d = dir.0.display().to_string();
        let child = Command::new(program)
            .args(args.iter().map(|a| a.replace("@DIR@", &d)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {program}: {e}"));
        let server = Server { child, dir };
        let up = wait_until(Duration::from_secs(10), || server.log().contains(ready));
        assert!(up, "{program} did not start:\n{}", server.log());
        server
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path("server.log")).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// trojan-gfw serving `PASSWORD` on a free port with a certificate from
/// `ca`; other connections go to the fallback on `fallback_port`.
fn trojan_gfw(ca: &TestCa, fallback_port: u16) -> (Server, u16) {
    let (cert, key) = ca.server(SERVER_NAME, &[&format!("DNS:{SERVER_NAME}")]);
    let port = free_port();
    let config = serde_json::json!({
        "run_type": "server",
        "local_addr": "127.0.0.1",
        "local_port": port,
        "remote_addr": "127.0.0.1",
        "remote_port": fallback_port,
        "password": [PASSWORD],
        "log_level": 0,
        "ssl": { "cert": cert, "key": key },
    });
    let server = Server::start(
        "trojan",
        &["-c", "@DIR@/config.json"],
        &[("config.json", config.to_string())],
        "trojan service (server) started",
    );
    (server, port)
}

/// Ports of the v2ray inbounds.
struct V2rayPorts {
    trojan_tls: u16,
    vless_plain: u16,
    vless_tls: u16,
}

/// v2ray with a trojan inbound over TLS and VLESS inbounds, plain and over
/// TLS, all sending everything out directly (freedom).
fn v2ray(ca: &TestCa) -> (Server, V2rayPorts) {
    let (cert, key) = ca.server(SERVER_NAME, &[&format!("DNS:{SERVER_NAME}")]);
    let ports = V2rayPorts {
        trojan_tls: free_port(),
        vless_plain: free_port(),
        vless_tls: free_port(),
    };
    let tls = serde_json::json!({
        "network": "tcp",
        "security": "tls",
        "tlsSettings": { "certificates": [{ "certificateFile": cert, "keyFile": key }] },
    });
    let vless = serde_json::json!({ "clients": [{ "id": UUID }], "decryption": "none" });
    let config = serde_json::json!({
        "log": { "loglevel": "debug" },
        "inbounds": [
            { "listen": "127.0.0.1", "port": ports.trojan_tls, "protocol": "trojan",
              "settings": { "clients": [{ "password": PASSWORD }] }, "streamSettings": tls },
            { "listen": "127.0.0.1", "port": ports.vless_plain, "protocol": "vless",
              "settings": vless },
            { "listen": "127.0.0.1", "port": ports.vless_tls, "protocol": "vless",
              "settings": vless, "streamSettings": tls },
        ],
        "outbounds": [{ "protocol": "freedom" }],
    });
    let server = Server::start(
        "v2ray",
        &["-config", "@DIR@/config.json"],
        &[("config.json", config.to_string())],
        // Not "Logger started", which comes before the listeners.
        "v2ray.com/core: V2Ray",
    );
    (server, ports)
}

/// A fallback "web server": answers every connection with an HTTP error
/// and closes it, as the nginx behind a real trojan server would.
fn http_fallback() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let _ = conn.set_read_timeout(Some(Duration::from_millis(200)));
            let _ = conn.read(&mut [0u8; 4096]);
            let _ = conn.write_all(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    port
}

/// A TCP port nobody listens on.
fn closed_port() -> u16 {
    free_port()
}

fn tls_client(ca_file: &Path) -> TlsClient {
    let roots = load_roots(ca_file).expect("CA file loads");
    TlsClient::new(SERVER_NAME, Some(roots), &[]).expect("TLS client")
}

/// A TCP connection to the proxy on `port`, with TLS if `tls` is given.
async fn dial(port: u16, tls: Option<&TlsClient>) -> io::Result<BoxStream> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    tcp.set_nodelay(true)?;
    match tls {
        None => Ok(Box::new(tcp)),
        Some(tls) => match tls.handshake(tcp).await {
            Ok(s) => Ok(Box::new(s)),
            Err(e) => Err(io::Error::other(format!("TLS: {e}"))),
        },
    }
}

/// The whole test step must finish in 5 s: a wrong password must not hang.
async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(5), fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: no result in 5 s (hangs)"))
}

/// Checks a reply: it answers `q` with `ADDRESS`.
fn check_reply(q: &[u8], reply: &[u8]) -> io::Result<()> {
    let m = Message::from_vec(reply).map_err(|e| io::Error::other(format!("reply: {e}")))?;
    assert_eq!(m.metadata.id, u16::from_be_bytes([q[0], q[1]]), "reply id");
    let got: Vec<String> = m.answers.iter().map(|r| r.data.to_string()).collect();
    assert_eq!(got, vec![ADDRESS.to_string()], "answer");
    Ok(())
}

/// Two questions over one proxied stream, the first written in two pieces
/// (length, then message), the second in one.
async fn ask_over_stream(mut s: BoxStream) -> io::Result<()> {
    for round in 0..2 {
        let q = query(NAME, RecordType::A, false);
        let len = (q.len() as u16).to_be_bytes();
        if round == 0 {
            s.write_all(&len).await?;
            s.write_all(&q).await?;
        } else {
            s.write_all(&[&len[..], &q[..]].concat()).await?;
        }
        s.flush().await?;
        let n = s.read_u16().await?;
        let mut reply = vec![0u8; usize::from(n)];
        s.read_exact(&mut reply).await?;
        check_reply(&q, &reply)?;
    }
    Ok(())
}

/// Two questions in flight at once over a proxied datagram path.
async fn ask_over_packets(mut p: Packets) -> io::Result<()> {
    let q1 = query(NAME, RecordType::A, false);
    let q2 = query(NAME, RecordType::A, false);
    p.tx.send(&q1).await?;
    p.tx.send(&q2).await?;
    let r1 = p.rx.recv().await?;
    let r2 = p.rx.recv().await?;
    // UDP may reorder.
    let (r1, r2) = if r1[..2] == q1[..2] {
        (r1, r2)
    } else {
        (r2, r1)
    };
    check_reply(&q1, &r1)?;
    check_reply(&q2, &r2)
}

/// Which protocol, with which secret.
#[derive(Clone, Copy)]
enum Proto<'a> {
    Trojan(&'a str),
    Vless(&'a [u8; 16]),
}

async fn stream_via(
    proto: Proto<'_>,
    port: u16,
    tls: Option<&TlsClient>,
    target: SocketAddr,
) -> io::Result<()> {
    let s = dial(port, tls).await?;
    let s = match proto {
        Proto::Trojan(password) => trojan::connect(s, password, &target.into()).await?,
        Proto::Vless(uuid) => vless::connect(s, uuid, &target.into()).await?,
    };
    ask_over_stream(s).await
}

async fn packets_via(
    proto: Proto<'_>,
    port: u16,
    tls: Option<&TlsClient>,
    target: SocketAddr,
) -> io::Result<()> {
    let s = dial(port, tls).await?;
    let p = match proto {
        Proto::Trojan(password) => trojan::cone(s, password, &target.into())?,
        Proto::Vless(uuid) => vless::cone(s, uuid, &target.into())?,
    }
    .to_target(target);
    ask_over_packets(p).await
}

/// DNS over a stream and over packets through one proxy inbound.
async fn answers_through(
    what: &str,
    proto: Proto<'_>,
    port: u16,
    tls: Option<&TlsClient>,
    dns: SocketAddr,
) {
    within(what, stream_via(proto, port, tls, dns))
        .await
        .unwrap_or_else(|e| panic!("{what}: DNS over a stream: {e}"));
    within(what, packets_via(proto, port, tls, dns))
        .await
        .unwrap_or_else(|e| panic!("{what}: DNS over packets: {e}"));
}

/// A wrong secret fails both ways, with the protocol's error.
async fn refused_through(
    what: &str,
    proto: Proto<'_>,
    port: u16,
    tls: Option<&TlsClient>,
    dns: SocketAddr,
) -> Vec<String> {
    let mut errors = Vec::new();
    let e = within(what, stream_via(proto, port, tls, dns))
        .await
        .expect_err("a stream with a wrong secret must fail");
    errors.push(e.to_string());
    let e = within(what, packets_via(proto, port, tls, dns))
        .await
        .expect_err("packets with a wrong secret must fail");
    errors.push(e.to_string());
    eprintln!("{what}: {errors:?}");
    errors
}

fn servers_installed(programs: &[&str]) -> bool {
    programs.iter().all(|p| have(p))
}

#[tokio::test]
async fn trojan_gfw_carries_dns_over_stream_and_udp() {
    if !servers_installed(&["trojan", "unbound", "openssl"]) {
        return;
    }
    let unbound = Unbound::start(&[RECORD]);
    let ca = TestCa::new("trojan");
    let (server, port) = trojan_gfw(&ca, closed_port());
    let tls = tls_client(&ca.cert);

    answers_through(
        "trojan-gfw",
        Proto::Trojan(PASSWORD),
        port,
        Some(&tls),
        unbound.addr(),
    )
    .await;

    let log = server.log();
    let target = unbound.addr();
    assert!(
        log.contains(&format!("requested connection to {target}")),
        "trojan-gfw log:\n{log}"
    );
    assert!(
        log.contains(&format!("requested UDP associate to {target}")),
        "trojan-gfw log:\n{log}"
    );
    assert!(
        !log.contains("not trojan request"),
        "trojan-gfw log:\n{log}"
    );
    let asked = |n| wait_until(Duration::from_secs(2), || unbound.queries(NAME, "A") == n);
    assert!(asked(4), "unbound log:\n{}", unbound.log());
}

#[tokio::test]
async fn trojan_gfw_wrong_password_fails_cleanly() {
    if !servers_installed(&["trojan", "unbound", "openssl"]) {
        return;
    }
    let unbound = Unbound::start(&[RECORD]);
    let ca = TestCa::new("trojan-bad");
    let tls = tls_client(&ca.cert);

    // The fallback port is closed: trojan-gfw closes the connection.
    let (server, port) = trojan_gfw(&ca, closed_port());
    let errors = refused_through(
        "trojan-gfw, closed fallback",
        Proto::Trojan("wrong"),
        port,
        Some(&tls),
        unbound.addr(),
    )
    .await;
    assert!(
        errors[1].contains("trojan: the server closed the connection"),
        "{errors:?}"
    );
    let log = server.log();
    assert_eq!(
        log.matches("not trojan request").count(),
        2,
        "trojan-gfw log:\n{log}"
    );
    assert!(!log.contains("requested"), "trojan-gfw log:\n{log}");

    // The fallback is a web server: its answer is no trojan frame.
    let (_server, port) = trojan_gfw(&ca, http_fallback());
    let errors = refused_through(
        "trojan-gfw, web fallback",
        Proto::Trojan("wrong"),
        port,
        Some(&tls),
        unbound.addr(),
    )
    .await;
    assert!(
        errors[1].contains("trojan: the server sent address type 0x48"),
        "{errors:?}"
    );
    assert_eq!(unbound.queries(NAME, "A"), 0, "{}", unbound.log());

    // A certificate from another CA is refused.
    let other = TestCa::new("trojan-other");
    let e = within("other CA", dial(port, Some(&tls_client(&other.cert))))
        .await
        .err()
        .expect("a certificate from another CA must be refused");
    assert!(e.to_string().contains("TLS"), "{e}");
}

#[tokio::test]
async fn v2ray_trojan_and_vless_carry_dns() {
    if !servers_installed(&["v2ray", "unbound", "openssl"]) {
        return;
    }
    let unbound = Unbound::start(&[RECORD]);
    let ca = TestCa::new("v2ray");
    let (server, ports) = v2ray(&ca);
    let tls = tls_client(&ca.cert);
    let uuid = uuid_bytes(UUID);
    let dns = unbound.addr();

    answers_through(
        "v2ray trojan",
        Proto::Trojan(PASSWORD),
        ports.trojan_tls,
        Some(&tls),
        dns,
    )
    .await;
    answers_through(
        "v2ray vless",
        Proto::Vless(&uuid),
        ports.vless_plain,
        None,
        dns,
    )
    .await;
    answers_through(
        "v2ray vless+tls",
        Proto::Vless(&uuid),
        ports.vless_tls,
        Some(&tls),
        dns,
    )
    .await;

    let asked = |n| wait_until(Duration::from_secs(2), || unbound.queries(NAME, "A") == n);
    assert!(asked(12), "unbound log:\n{}", unbound.log());
    // v2ray's access log (written a moment after the connection): each
    // path asked for the DNS server, TCP and UDP.
    for net in ["tcp", "udp"] {
        let accepted = format!("accepted {net}:{dns}");
        let three = wait_until(Duration::from_secs(2), || {
            server.log().matches(&accepted).count() == 3
        });
        assert!(
            three,
            "{accepted} three times, v2ray log:\n{}",
            server.log()
        );
    }
}

#[tokio::test]
async fn v2ray_wrong_password_or_uuid_fails_cleanly() {
    if !servers_installed(&["v2ray", "unbound", "openssl"]) {
        return;
    }
    let unbound = Unbound::start(&[RECORD]);
    let ca = TestCa::new("v2ray-bad");
    let (server, ports) = v2ray(&ca);
    let tls = tls_client(&ca.cert);
    let stranger = uuid_bytes("00000000-1111-2222-3333-444444444444");
    let dns = unbound.addr();

    let errors = refused_through(
        "v2ray trojan",
        Proto::Trojan("wrong"),
        ports.trojan_tls,
        Some(&tls),
        dns,
    )
    .await;
    assert!(
        errors[1].contains("trojan: the server closed the connection"),
        "{errors:?}"
    );
    for (what, port, tls) in [
        ("v2ray vless", ports.vless_plain, None),
        ("v2ray vless+tls", ports.vless_tls, Some(&tls)),
    ] {
        let errors = refused_through(what, Proto::Vless(&stranger), port, tls, dns).await;
        // The packets path may already fail writing its second datagram:
        // v2ray resets the connection it refused.
        for (i, e) in errors.iter().enumerate() {
            assert!(
                e.contains("vless: the server closed the connection before answering")
                    || (i == 1 && e.contains("Connection reset by peer")),
                "{errors:?}"
            );
        }
    }
    assert_eq!(unbound.queries(NAME, "A"), 0, "{}", unbound.log());
    let log = server.log();
    assert!(!log.contains(" accepted "), "v2ray log:\n{log}");
    let rejected = |why: &str| log.matches(&format!("rejected  {why}")).count();
    assert_eq!(
        rejected("v2ray.com/core/proxy/trojan: not a valid user"),
        2,
        "v2ray log:\n{log}"
    );
    assert_eq!(
        rejected("v2ray.com/core/proxy/vless/encoding: invalid request user id"),
        4,
        "v2ray log:\n{log}"
    );
}

/// Streams to a target given by name, in the lab: trojan-gfw, and v2ray's
/// trojan (TLS) and VLESS (plain and TLS) inbounds, all in the upstream
/// namespace, resolve it from their own `/etc/hosts`.
#[test]
fn streams_to_a_name_the_servers_resolve() {
    if !lab::can_run() || !servers_installed(&["trojan", "v2ray"]) {
        eprintln!("SKIPPED: needs the lab, trojan and v2ray");
        return;
    }
    let lab = Lab::up();
    let _names = lab.upstream_names();
    let _dns = LabUpstream::start(&lab, &[RECORD]);
    let ca = TestCa::new("names");
    let (cert, key) = ca.server(SERVER_NAME, &[&format!("DNS:{SERVER_NAME}")]);
    let trojan_gfw = proxies::trojan(&lab, "up", UPSTREAM_WAN_V4, 443, PASSWORD, &cert, &key);
    let tls = format!(
        r#"{{"network": "tcp", "security": "tls", "tlsSettings": {{"certificates": [{{"certificateFile": "{}", "keyFile": "{}"}}]}}}}"#,
        cert.display(),
        key.display()
    );
    let vless = format!(r#"{{"clients": [{{"id": "{UUID}"}}], "decryption": "none"}}"#);
    let inbounds = format!(
        r#"[{{"listen": "{a}", "port": 8443, "protocol": "trojan",
              "settings": {{"clients": [{{"password": "{PASSWORD}"}}]}}, "streamSettings": {tls}}},
            {{"listen": "{a}", "port": 8001, "protocol": "vless", "settings": {vless}}},
            {{"listen": "{a}", "port": 8444, "protocol": "vless", "settings": {vless},
              "streamSettings": {tls}}}]"#,
        a = UPSTREAM_WAN_V4
    );
    let v2ray = proxies::v2ray(&lab, "up", &inbounds, (UPSTREAM_WAN_V4, 8444));
    let ca_file = ca.cert.clone();
    let results = lab.block_on_within("router", move || async move {
        let tls = tls_client(&ca_file);
        let uuid = uuid_bytes(UUID);
        let target = Target::Name(TARGET_NAME.into(), 53);
        let mut results = Vec::new();
        for (what, port, with_tls) in [
            ("trojan-gfw", 443, true),
            ("v2ray trojan", 8443, true),
            ("v2ray vless", 8001, false),
            ("v2ray vless tls", 8444, true),
        ] {
            let result = within(what, async {
                let tcp = TcpStream::connect((UPSTREAM_WAN_V4, port)).await?;
                let s: BoxStream = if with_tls {
                    Box::new(
                        tls.handshake(tcp)
                            .await
                            .map_err(|e| io::Error::other(e.to_string()))?,
                    )
                } else {
                    Box::new(tcp)
                };
                let s = if what.contains("trojan") {
                    trojan::connect(s, PASSWORD, &target).await?
                } else {
                    vless::connect(s, &uuid, &target).await?
                };
                ask_over_stream(s).await
            })
            .await;
            results.push((what, result.map_err(|e| e.to_string())));
        }
        results
    });
    for (what, result) in results {
        assert_eq!(result, Ok(()), "{what}");
    }
    let want = format!("{TARGET_NAME}:53");
    for (what, log) in [("trojan-gfw", trojan_gfw.log()), ("v2ray", v2ray.log())] {
        assert!(log.contains(&want), "{what} names no {want}:\n{log}");
    }
}
