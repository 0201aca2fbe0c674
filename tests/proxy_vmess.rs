//! The VMess dialer (`dae::dialer::vmess`, AEAD header) against a real
//! v2ray (Debian's 4.34) with a vmess inbound (alterId 0) on loopback and a
//! freedom outbound to a real unbound.
//!
//! Shown, for each body security (aes-128-gcm, chacha20-poly1305, none):
//! DNS over a proxied stream (length-prefixed, several queries on one
//! stream, a long answer over several chunks) and over a proxied datagram
//! path (UDP, several queries on one path), with v2ray's access log naming
//! the target; a write of many pipelined queries split over several of our
//! chunks; a clean end of the stream after our shutdown; a wrong uuid fails cleanly within seconds over both; and
//! VMess inside TLS (v2ray's tls stream settings, our rustls client).
//!
//! In the namespace lab, for each security: a stream to a target given by
//! host name (address type 2), which v2ray in the upstream namespace looks
//! up in that namespace's `/etc/hosts`, the only place it exists.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::lab::{self, Lab, LabUpstream, TARGET_NAME, UPSTREAM_WAN_V4};
use common::proxies;
use common::tls::TestCa;
use common::{free_port, have, kill, wait_until, TempDir, Unbound};
use dae::config::link::{VmessConfig, VmessSecurity};
use dae::dialer::{vmess, BoxStream, Packets, Target};
use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

const UUID_TEXT: &str = "b831381d-6324-4d53-ad4f-8cda48b30811";
const UUID: [u8; 16] = [
    0xb8, 0x31, 0x38, 0x1d, 0x63, 0x24, 0x4d, 0x53, 0xad, 0x4f, 0x8c, 0xda, 0x48, 0xb3, 0x08, 0x11,
];

const SECURITIES: [VmessSecurity; 3] = [
    VmessSecurity::Aes128Gcm,
    VmessSecurity::Chacha20Poly1305,
    VmessSecurity::None,
];

/// TXT records making an answer of several KiB (v2ray's chunks carry at
/// most 2 KiB).
const LONG_RECORDS: usize = 40;

fn records() -> Vec<String> {
    let mut r = vec![String::from("a.lab.example. 300 IN A 192.0.2.1")];
    for i in 0..LONG_RECORDS {
        r.push(format!(
            "long.lab.example. 300 IN TXT \"{i:03}-{}\"",
            "x".repeat(180)
        ));
    }
    r
}

fn unbound() -> Unbound {
    let r = records();
    let refs: Vec<&str> = r.iter().map(String::as_str).collect();
    Unbound::start(&refs)
}

/// v2ray with one vmess inbound (our uuid, alterId 0) on a free loopback
/// port, TLS on it when given a certificate; killed on drop.
struct V2ray {
    child: Child,
    port: u16,
    dir: TempDir,
}

impl V2ray {
    fn start(tls: Option<(&Path, &Path)>) -> V2ray {
        let dir = TempDir::new("v2ray");
        let port = free_port();
        let stream = match tls {
            Some((cert, key)) => format!(
                r#", "streamSettings": {{"network": "tcp", "security": "tls",
                   "tlsSettings": {{"certificates": [{{"certificateFile": "{}", "keyFile": "{}"}}]}}}}"#,
                cert.display(),
                key.display()
            ),
            None => String::new(),
        };
        let conf = format!(
            r#"{{
  "log": {{"loglevel": "info", "access": "{access}", "error": "{error}"}},
  "policy": {{"levels": {{"0": {{"handshake": 2}}}}}},
  "inbounds": [{{
    "listen": "127.0.0.1", "port": {port}, "protocol": "vmess",
    "settings": {{"clients": [{{"id": "{UUID_TEXT}", "alterId": 0}}]}}{stream}
  }}],
  "outbounds": [{{"protocol": "freedom", "settings": {{}}}}]
}}"#,
            access = dir.path("access.log").display(),
            error = dir.path("error.log").display(),
        );
        std::fs::write(dir.path("config.json"), conf).unwrap();
        let out = std::fs::File::create(dir.path("stdout.log")).unwrap();
        let child = Command::new("v2ray")
            .arg("-config")
            .arg(dir.path("config.json"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start v2ray");
        let v = V2ray { child, port, dir };
        let up = wait_until(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(up, "v2ray did not start:\n{}", v.logs());
        v
    }

    fn logs(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.path(name)).unwrap_or_default();
        format!(
            "--- stdout\n{}--- error.log\n{}--- access.log\n{}",
            read("stdout.log"),
            read("error.log"),
            read("access.log")
        )
    }

    fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path("access.log")).unwrap_or_default()
    }
}

impl Drop for V2ray {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

fn have_all() -> bool {
    have("v2ray") && have("unbound")
}

fn config(security: VmessSecurity) -> VmessConfig {
    VmessConfig {
        uuid: UUID,
        security,
    }
}

async fn tcp(port: u16) -> BoxStream {
    Box::new(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect to v2ray"),
    )
}

/// One DNS exchange over a stream (2-byte length prefix), with a deadline.
async fn ask_stream(s: &mut BoxStream, name: &str, rtype: RecordType) -> (Message, usize) {
    let q = common::query(name, rtype, false);
    let exchange = async {
        let mut frame = (q.len() as u16).to_be_bytes().to_vec();
        frame.extend_from_slice(&q);
        s.write_all(&frame).await?;
        s.flush().await?;
        let mut len = [0u8; 2];
        s.read_exact(&mut len).await?;
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
        s.read_exact(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    let reply = timeout(Duration::from_secs(10), exchange)
        .await
        .expect("answer within 10 s")
        .expect("answer over the vmess stream");
    let m = Message::from_vec(&reply).expect("reply parses");
    assert_eq!(m.metadata.id, u16::from_be_bytes([q[0], q[1]]), "reply id");
    (m, reply.len())
}

/// One DNS exchange over a datagram path, with a deadline.
async fn ask_packets(p: &mut Packets, name: &str) -> Message {
    let q = common::query(name, RecordType::A, false);
    let reply = timeout(Duration::from_secs(10), async {
        p.tx.send(&q).await?;
        p.rx.recv().await
    })
    .await
    .expect("answer within 10 s")
    .expect("answer over the vmess datagram path");
    let m = Message::from_vec(&reply).expect("reply parses");
    assert_eq!(m.metadata.id, u16::from_be_bytes([q[0], q[1]]), "reply id");
    m
}

fn first_a(m: &Message) -> String {
    common::answers(m).first().cloned().unwrap_or_default()
}

/// Several queries and a long answer on one stream, for `security`.
async fn stream_session(s: &mut BoxStream, v2: &V2ray, security: VmessSecurity) {
    for _ in 0..3 {
        let (m, _) = ask_stream(s, "a.lab.example.", RecordType::A).await;
        assert_eq!(first_a(&m), "192.0.2.1", "{security:?}:\n{}", v2.logs());
    }
    let (m, len) = ask_stream(s, "long.lab.example.", RecordType::TXT).await;
    assert_eq!(m.answers.len(), LONG_RECORDS, "{security:?}");
    assert!(
        len > 3 * 2048,
        "{security:?}: answer of {len} bytes is not long"
    );
    let (m, _) = ask_stream(s, "a.lab.example.", RecordType::A).await;
    assert_eq!(
        first_a(&m),
        "192.0.2.1",
        "{security:?} after the long answer"
    );
    pipelined(s, security).await;
}

/// Many queries in one write of more than 16 KiB: our side splits it into
/// several chunks, with a DNS frame across a chunk boundary.
async fn pipelined(s: &mut BoxStream, security: VmessSecurity) {
    const N: usize = 600;
    let mut frames = Vec::new();
    let mut ids = std::collections::HashSet::new();
    while ids.len() < N {
        let q = common::query("a.lab.example.", RecordType::A, false);
        if ids.insert(u16::from_be_bytes([q[0], q[1]])) {
            frames.extend_from_slice(&(q.len() as u16).to_be_bytes());
            frames.extend_from_slice(&q);
        }
    }
    assert!(frames.len() > 16 * 1024);
    let exchange = async {
        s.write_all(&frames).await?;
        s.flush().await?;
        for _ in 0..N {
            let mut len = [0u8; 2];
            s.read_exact(&mut len).await?;
            let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
            s.read_exact(&mut buf).await?;
            let m = Message::from_vec(&buf).expect("reply parses");
            assert!(ids.remove(&m.metadata.id), "{security:?}: unexpected id");
            assert_eq!(first_a(&m), "192.0.2.1");
        }
        Ok::<_, std::io::Error>(())
    };
    timeout(Duration::from_secs(10), exchange)
        .await
        .expect("pipelined answers within 10 s")
        .expect("pipelined answers");
}

#[tokio::test]
async fn stream_each_security() {
    if !have_all() {
        return;
    }
    let dns = unbound();
    let v2 = V2ray::start(None);
    for security in SECURITIES {
        let s = vmess::connect(tcp(v2.port).await, &config(security), &dns.addr().into()).await;
        let mut s = s.expect("connect");
        stream_session(&mut s, &v2, security).await;
        // Our end chunk makes v2ray close towards unbound, which closes;
        // then the stream ends cleanly on our side.
        s.shutdown().await.expect("shutdown");
        let mut rest = Vec::new();
        let end = timeout(Duration::from_secs(10), s.read_to_end(&mut rest)).await;
        assert_eq!(end.expect("end within 10 s").expect("clean end"), 0);
    }
    assert!(dns.queries("a.lab.example.", "A") >= 12, "{}", dns.log());
    let needle = format!("accepted tcp:{}", dns.addr());
    assert!(
        wait_until(Duration::from_secs(5), || v2
            .access_log()
            .matches(&needle)
            .count()
            >= 3),
        "{}",
        v2.logs()
    );
}

#[tokio::test]
async fn packets_each_security() {
    if !have_all() {
        return;
    }
    let dns = unbound();
    let v2 = V2ray::start(None);
    for security in SECURITIES {
        let p = vmess::cone(tcp(v2.port).await, &config(security), &dns.addr().into())
            .map(|c| c.to_target(dns.addr()));
        let mut p = p.expect("packets");
        for _ in 0..3 {
            let m = ask_packets(&mut p, "a.lab.example.").await;
            assert_eq!(first_a(&m), "192.0.2.1", "{security:?}:\n{}", v2.logs());
        }
    }
    let needle = format!("accepted udp:{}", dns.addr());
    assert!(
        wait_until(Duration::from_secs(5), || v2
            .access_log()
            .matches(&needle)
            .count()
            >= 3),
        "{}",
        v2.logs()
    );
}

#[tokio::test]
async fn wrong_uuid_fails_cleanly() {
    if !have_all() {
        return;
    }
    let dns = unbound();
    let v2 = V2ray::start(None);
    let mut wrong = config(VmessSecurity::Aes128Gcm);
    wrong.uuid[15] ^= 1;
    let started = Instant::now();

    let over_stream = async {
        let mut s = vmess::connect(tcp(v2.port).await, &wrong, &dns.addr().into())
            .await
            .expect("connect builds the request");
        let q = common::query("a.lab.example.", RecordType::A, false);
        let mut frame = (q.len() as u16).to_be_bytes().to_vec();
        frame.extend_from_slice(&q);
        s.write_all(&frame).await.expect("the request goes out");
        s.flush().await.expect("flush");
        let mut len = [0u8; 2];
        s.read_exact(&mut len).await.map(|_| len)
    };
    let over_packets = async {
        let mut p = vmess::cone(tcp(v2.port).await, &wrong, &dns.addr().into())
            .expect("packets builds the request")
            .to_target(dns.addr());
        let q = common::query("a.lab.example.", RecordType::A, false);
        p.tx.send(&q).await.expect("the request goes out");
        p.rx.recv().await
    };
    let (stream_result, packets_result) = timeout(Duration::from_secs(10), async {
        tokio::join!(over_stream, over_packets)
    })
    .await
    .expect("a wrong uuid must fail, not hang");

    let expected = "closed the connection before answering";
    let e = stream_result.expect_err("no answer with a wrong uuid");
    assert!(e.to_string().starts_with("vmess: "), "{e}");
    assert!(e.to_string().contains(expected), "{e}");
    let e = packets_result.expect_err("no answer with a wrong uuid");
    assert!(e.to_string().contains(expected), "{e}");
    assert!(started.elapsed() < Duration::from_secs(8));
    assert_eq!(dns.queries("a.lab.example.", "A"), 0);
    assert!(
        wait_until(Duration::from_secs(5), || {
            let logs = v2.logs();
            logs.matches("invalid user").count() >= 2
        }),
        "v2ray should log the refusals:\n{}",
        v2.logs()
    );
}

#[tokio::test]
async fn over_tls() {
    if !have_all() || !have("openssl") {
        return;
    }
    let dns = unbound();
    let ca = TestCa::new("vmess");
    let (cert, key) = ca.server("vmess.lab.example", &["DNS:vmess.lab.example"]);
    let v2 = V2ray::start(Some((&cert, &key)));
    let roots = dae::forwarder::tls::load_roots(&ca.cert).expect("CA loads");
    let tls = dae::forwarder::tls::TlsClient::new("vmess.lab.example", Some(roots), &[])
        .expect("TLS client");
    let tls_stream = |port: u16| {
        let tls = tls.clone();
        async move {
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("connect to v2ray");
            let s = tls
                .handshake(tcp)
                .await
                .unwrap_or_else(|e| panic!("TLS: {e}"));
            Box::new(s) as BoxStream
        }
    };
    for security in [VmessSecurity::None, VmessSecurity::Aes128Gcm] {
        let s = vmess::connect(
            tls_stream(v2.port).await,
            &config(security),
            &dns.addr().into(),
        )
        .await;
        let mut s = s.expect("connect");
        stream_session(&mut s, &v2, security).await;

        let p = vmess::cone(
            tls_stream(v2.port).await,
            &config(security),
            &dns.addr().into(),
        )
        .map(|c| c.to_target(dns.addr()));
        let mut p = p.expect("packets");
        for _ in 0..2 {
            let m = ask_packets(&mut p, "a.lab.example.").await;
            assert_eq!(first_a(&m), "192.0.2.1", "{security:?} over TLS");
        }
    }
    let needle = format!("accepted udp:{}", dns.addr());
    assert!(
        wait_until(Duration::from_secs(5), || v2.access_log().contains(&needle)),
        "{}",
        v2.logs()
    );
}

/// A stream to a target given by name, for each security, in the lab: v2ray
/// in the upstream namespace resolves it from its own `/etc/hosts`.
#[test]
fn stream_to_a_name_the_server_resolves() {
    if !lab::can_run() || !have("v2ray") {
        eprintln!("SKIPPED: needs the lab and v2ray");
        return;
    }
    let lab = Lab::up();
    let _names = lab.upstream_names();
    let _dns = LabUpstream::start(&lab, &["a.lab.example. 300 IN A 192.0.2.1"]);
    let inbound = format!(
        r#"[{{"listen": "{UPSTREAM_WAN_V4}", "port": 10086, "protocol": "vmess",
             "settings": {{"clients": [{{"id": "{UUID_TEXT}", "alterId": 0}}]}}}}]"#
    );
    let v2ray = proxies::v2ray(&lab, "up", &inbound, (UPSTREAM_WAN_V4, 10086));
    for security in SECURITIES {
        let got = lab.block_on_within("router", move || async move {
            let tcp = tokio::net::TcpStream::connect((UPSTREAM_WAN_V4, 10086))
                .await
                .expect("connect to v2ray");
            let target = Target::Name(TARGET_NAME.into(), 53);
            let mut s = vmess::connect(Box::new(tcp), &config(security), &target)
                .await
                .expect("a vmess stream");
            first_a(&ask_stream(&mut s, "a.lab.example.", RecordType::A).await.0)
        });
        assert_eq!(got, "192.0.2.1", "{security:?}:\n{}", v2ray.log());
    }
    let log = v2ray.log();
    assert!(
        log.contains(&format!("{TARGET_NAME}:53")),
        "v2ray names no {TARGET_NAME}:\n{log}"
    );
}
