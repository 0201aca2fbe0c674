//! The Shadowsocks dialer against a real server: `ss-server` from
//! shadowsocks-libev, started per test on a loopback port with its UDP
//! relay on, in front of a real unbound.
//!
//! Shown, for each AEAD cipher (aes-128-gcm, aes-256-gcm,
//! chacha20-ietf-poly1305): a DNS question over a proxied stream (2-byte
//! length prefix) and over a proxied datagram path gets the right answer;
//! a TXT answer of more than 0x3FFF bytes (several chunks) comes back
//! whole; several questions pipelined on one stream all get answered; a
//! wrong password ends the stream within seconds instead of hanging, and
//! gives no datagram back.
//!
//! In the namespace lab, for each cipher: a stream to a target given by
//! host name (address type 3), which ss-server in the upstream namespace
//! looks up in that namespace's `/etc/hosts`, the only place it exists.

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command};
use std::time::Duration;

use common::lab::{self, Lab, LabUpstream, TARGET_NAME, UPSTREAM_WAN_V4};
use common::proxies;
use common::{answers, free_port, have, kill, query, wait_until, TempDir, Unbound};
use dae::config::link::{SsConfig, SsMethod};
use dae::dialer::{shadowsocks, BoxStream, Packets, Target};
use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::timeout;

const METHODS: [(SsMethod, &str); 3] = [
    (SsMethod::Aes128Gcm, "aes-128-gcm"),
    (SsMethod::Aes256Gcm, "aes-256-gcm"),
    (SsMethod::Chacha20IetfPoly1305, "chacha20-ietf-poly1305"),
];

const PASSWORD: &str = "correct horse battery staple";
const WAIT: Duration = Duration::from_secs(5);
/// TXT records in `big.lab.example.`: about 24 KB of answer, more than one
/// 0x3FFF-byte chunk.
const BIG_TXT: usize = 120;

/// `ss-server` in the foreground, logging verbosely to a file; killed on
/// drop.
struct SsServer {
    child: Child,
    port: u16,
    dir: TempDir,
}

impl SsServer {
    fn start(method: &str) -> SsServer {
        let dir = TempDir::new("ss-server");
        let port = free_port();
        let log = std::fs::File::create(dir.path("ss.log")).unwrap();
        let child = Command::new("ss-server")
            .args(["-s", "127.0.0.1", "-p", &port.to_string()])
            .args(["-k", PASSWORD, "-m", method, "-u", "-v"])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start ss-server");
        let s = SsServer { child, port, dir };
        let ready = wait_until(Duration::from_secs(10), || {
            let log = s.log();
            log.contains("tcp server listening") && log.contains("udp server listening")
        });
        assert!(ready, "ss-server did not start:\n{}", s.log());
        s
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path("ss.log")).unwrap_or_default()
    }
}

impl Drop for SsServer {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

fn unbound() -> Unbound {
    let mut records = vec![
        "www.lab.example. 300 IN A 192.0.2.80".to_string(),
        "two.lab.example. 300 IN A 192.0.2.2".to_string(),
    ];
    for i in 0..BIG_TXT {
        records.push(format!(
            "big.lab.example. 300 IN TXT \"record {i:03} {}\"",
            "x".repeat(180)
        ));
    }
    let records: Vec<&str> = records.iter().map(String::as_str).collect();
    Unbound::start(&records)
}

fn have_all() -> bool {
    have("ss-server") && have("unbound")
}

fn ss_config(method: SsMethod, password: &str) -> SsConfig {
    SsConfig {
        method,
        password: password.to_string(),
    }
}

async fn proxied_stream(server: &SsServer, conf: &SsConfig, target: SocketAddr) -> BoxStream {
    let tcp = TcpStream::connect(server.addr()).await.unwrap();
    shadowsocks::connect(Box::new(tcp), conf, &target.into())
        .await
        .unwrap()
}

/// Writes length-prefixed queries in one go and flushes.
async fn send_queries(s: &mut BoxStream, queries: &[Vec<u8>]) {
    let mut frame = Vec::new();
    for q in queries {
        frame.extend_from_slice(&(q.len() as u16).to_be_bytes());
        frame.extend_from_slice(q);
    }
    s.write_all(&frame).await.unwrap();
    s.flush().await.unwrap();
}

async fn read_reply(s: &mut BoxStream) -> std::io::Result<Message> {
    let mut len = [0u8; 2];
    s.read_exact(&mut len).await?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut buf).await?;
    Ok(Message::from_vec(&buf).expect("reply parses"))
}

fn id(q: &[u8]) -> u16 {
    u16::from_be_bytes([q[0], q[1]])
}

fn check_big(m: &Message, method: &str) {
    let txt = answers(m);
    assert_eq!(txt.len(), BIG_TXT, "{method}: TXT answers");
    for i in 0..BIG_TXT {
        let want = format!("record {i:03} ");
        assert!(
            txt.iter().any(|t| t.contains(&want)),
            "{method}: missing {want}"
        );
    }
}

#[tokio::test]
async fn stream_answers_single_long_and_pipelined_questions() {
    if !have_all() {
        return;
    }
    let dns = unbound();
    for (method, name) in METHODS {
        let server = SsServer::start(name);
        let conf = ss_config(method, PASSWORD);

        // One question.
        let mut s = proxied_stream(&server, &conf, dns.addr()).await;
        let q = query("www.lab.example.", RecordType::A, false);
        send_queries(&mut s, std::slice::from_ref(&q)).await;
        let m = timeout(WAIT, read_reply(&mut s))
            .await
            .expect("answer in time")
            .unwrap();
        assert_eq!(m.metadata.id, id(&q), "{name}");
        assert_eq!(answers(&m), ["192.0.2.80"], "{name}");

        // A long answer on the same stream.
        let big = query("big.lab.example.", RecordType::TXT, false);
        send_queries(&mut s, std::slice::from_ref(&big)).await;
        let m = timeout(WAIT, read_reply(&mut s))
            .await
            .expect("long answer in time")
            .unwrap();
        assert_eq!(m.metadata.id, id(&big), "{name}");
        assert!(m.to_vec().unwrap().len() > 0x3FFF, "{name}: answer size");
        check_big(&m, name);

        // Three questions pipelined in one write on a fresh stream; unbound
        // may answer them in any order.
        let mut s = proxied_stream(&server, &conf, dns.addr()).await;
        let qs = [
            query("www.lab.example.", RecordType::A, false),
            query("big.lab.example.", RecordType::TXT, false),
            query("two.lab.example.", RecordType::A, false),
        ];
        send_queries(&mut s, &qs).await;
        let mut seen = Vec::new();
        for _ in 0..qs.len() {
            let m = timeout(WAIT, read_reply(&mut s))
                .await
                .expect("pipelined answer in time")
                .unwrap();
            let i = qs
                .iter()
                .position(|q| id(q) == m.metadata.id)
                .expect("an id we asked");
            match i {
                0 => assert_eq!(answers(&m), ["192.0.2.80"], "{name}"),
                1 => check_big(&m, name),
                _ => assert_eq!(answers(&m), ["192.0.2.2"], "{name}"),
            }
            seen.push(i);
        }
        seen.sort();
        assert_eq!(seen, [0, 1, 2], "{name}");

        // The server relayed to unbound (its verbose log names the target).
        assert!(
            server
                .log()
                .contains(&format!("connect to 127.0.0.1:{}", dns.port)),
            "{name}: ss-server log:\n{}",
            server.log()
        );
    }
    assert_eq!(dns.queries("www.lab.example.", "A"), 2 * METHODS.len());
    assert_eq!(dns.queries("big.lab.example.", "TXT"), 2 * METHODS.len());
}

#[tokio::test]
async fn packets_answer() {
    if !have_all() {
        return;
    }
    let dns = unbound();
    for (method, name) in METHODS {
        let server = SsServer::start(name);
        let conf = ss_config(method, PASSWORD);
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        socket.connect(server.addr()).await.unwrap();
        let Packets { mut tx, mut rx } = shadowsocks::cone(socket, &conf).to_target(dns.addr());
        for (qname, want) in [
            ("www.lab.example.", "192.0.2.80"),
            ("two.lab.example.", "192.0.2.2"),
        ] {
            let q = query(qname, RecordType::A, false);
            tx.send(&q).await.unwrap();
            let reply = timeout(WAIT, rx.recv())
                .await
                .unwrap_or_else(|_| panic!("{name}: no datagram back:\n{}", server.log()))
                .unwrap();
            let m = Message::from_vec(&reply).expect("reply parses");
            assert_eq!(m.metadata.id, id(&q), "{name}");
            assert_eq!(answers(&m), [want], "{name}");
        }
    }
    assert_eq!(dns.queries("www.lab.example.", "A"), METHODS.len());
}

/// shadowsocks-libev 3.3.5 does not close a connection that fails to
/// authenticate (it logs "authentication error" and goes silent, whatever
/// its `-t`, so a prober learns nothing): the stream gives no answer and
/// only the caller's timeout ends it. If the server closes instead, the
/// read must end in an error; an answer must never come.
#[tokio::test]
async fn wrong_password_fails_cleanly() {
    if !have_all() {
        return;
    }
    let dns = unbound();
    let target = dns.addr();
    // The three ciphers wait side by side.
    let (a, b, c) = tokio::join!(
        wrong_password(METHODS[0], target),
        wrong_password(METHODS[1], target),
        wrong_password(METHODS[2], target),
    );
    for log in [a, b, c] {
        eprintln!("{log}");
    }
    assert_eq!(dns.queries("www.lab.example.", "A"), 0);
}

/// One cipher's wrong-password case; returns the server's log.
async fn wrong_password((method, name): (SsMethod, &str), target: SocketAddr) -> String {
    let server = SsServer::start(name);
    let conf = ss_config(method, "not the password");

    let mut s = proxied_stream(&server, &conf, target).await;
    let q = query("www.lab.example.", RecordType::A, false);
    send_queries(&mut s, std::slice::from_ref(&q)).await;
    match timeout(Duration::from_secs(2), read_reply(&mut s)).await {
        Err(_) => eprintln!("{name}, wrong password: the stream stays silent"),
        Ok(Err(e)) => eprintln!("{name}, wrong password: {:?}: {e}", e.kind()),
        Ok(Ok(m)) => panic!("{name}: an answer with a wrong password: {m:?}"),
    }
    assert!(
        server.log().contains("authentication error"),
        "{name}: ss-server log:\n{}",
        server.log()
    );
    // Giving up closes it at the server too.
    drop(s);
    assert!(
        wait_until(Duration::from_secs(2), || server
            .log()
            .contains("close a connection from client")),
        "{name}: ss-server log:\n{}",
        server.log()
    );

    // Over UDP the server drops the datagram: nothing comes back.
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.connect(server.addr()).await.unwrap();
    let Packets { mut tx, mut rx } = shadowsocks::cone(socket, &conf).to_target(target);
    tx.send(&q).await.unwrap();
    assert!(
        timeout(Duration::from_millis(500), rx.recv())
            .await
            .is_err(),
        "{name}: a datagram came back with a wrong password"
    );
    assert!(
        server.log().contains("suspicious UDP packet"),
        "{name}: ss-server log:\n{}",
        server.log()
    );
    format!("{name}:\n{}", server.log())
}

/// A stream to a target given by name, for each cipher, in the lab:
/// ss-server in the upstream namespace resolves it from its own
/// `/etc/hosts` and says so in its log.
#[test]
fn stream_to_a_name_the_server_resolves() {
    if !lab::can_run() || !have("ss-server") {
        eprintln!("SKIPPED: needs the lab and ss-server");
        return;
    }
    let lab = Lab::up();
    let _names = lab.upstream_names();
    let _dns = LabUpstream::start(&lab, &["named.lab.example. 300 IN A 192.0.2.77"]);
    for (i, (method, name)) in METHODS.into_iter().enumerate() {
        let port = 8388 + i as u16;
        let server = proxies::ss_server(&lab, "up", UPSTREAM_WAN_V4, port, name, PASSWORD);
        let got = lab.block_on_within("router", move || async move {
            let tcp = TcpStream::connect((UPSTREAM_WAN_V4, port)).await.unwrap();
            let target = Target::Name(TARGET_NAME.into(), 53);
            let conf = ss_config(method, PASSWORD);
            let mut s = shadowsocks::connect(Box::new(tcp), &conf, &target)
                .await
                .expect("a shadowsocks stream");
            let q = query("named.lab.example.", RecordType::A, false);
            send_queries(&mut s, &[q]).await;
            let m = timeout(WAIT, read_reply(&mut s))
                .await
                .unwrap_or_else(|_| panic!("{name}: no answer in {WAIT:?}"))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            answers(&m)
        });
        assert_eq!(got, ["192.0.2.77"], "{name}");
        let log = server.log();
        assert!(
            log.contains(&format!("connect to {TARGET_NAME}:53")),
            "{name}: ss-server log:\n{log}"
        );
    }
}
