//! SOCKS5 and HTTP CONNECT dialers against real servers from Debian:
//! microsocks (CONNECT, with and without RFC 1929 user/password), dante
//! (UDP ASSOCIATE, rule sets, the username method) and v2ray 4.34's `http`
//! inbound (CONNECT with accounts, plain and inside TLS). Through each, a
//! real unbound on loopback answers a DNS question: length-prefixed over a
//! proxied stream, one datagram each way over a SOCKS5 UDP association.
//! Nodes are described by share links parsed with `config::link::parse`.
//!
//! In the namespace lab, the same servers run in the upstream namespace
//! and are asked for a target by host name (SOCKS5 address type 3,
//! `CONNECT name:port`): only that namespace's `/etc/hosts` knows the
//! name, so only the server can have resolved it.

mod common;

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::lab::{self, Lab, LabUpstream, TARGET_NAME, UPSTREAM_WAN_V4};
use common::proxies;
use common::tls::TestCa;
use common::{answers, free_port, have, query, wait_until, TempDir, Unbound};
use dae::config::link::{self, Auth, Link, Proto};
use dae::config::Host;
use dae::dialer::{http, socks5, BoxStream, Direct, Packets, Target};
use dae::forwarder::tls::{load_roots, TlsClient};
use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Every network step of a test is bounded by this: a hang fails the test.
const STEP: Duration = Duration::from_secs(5);

/// A proxy server in its own process group (dante forks helpers), killed
/// with the whole group on drop, also when the test fails.
struct Server {
    child: Child,
    /// Set by `stop`: its pid and group may belong to others by now.
    stopped: bool,
    port: u16,
    dir: TempDir,
    log: PathBuf,
}

impl Server {
    /// Runs `program args`, output to `<dir>/out.log`, and waits until
    /// `port` takes TCP connections.
    fn start(program: &str, args: &[&str], port: u16, dir: TempDir) -> Server {
        let log = dir.path("out.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("start {program}: {e}"));
        let mut s = Server {
            child,
            stopped: false,
            port,
            dir,
            log,
        };
        let up = wait_until(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(
            up && matches!(s.child.try_wait(), Ok(None)),
            "{program} did not start: {}",
            s.output()
        );
        s
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path(name)).unwrap_or_default()
    }

    /// SIGTERM to the server (dante's main process stops its helpers),
    /// then SIGKILL to whatever of the group is left.
    /// A second call (a test's, then the drop's) does nothing.
    fn stop(&mut self) {
        if std::mem::replace(&mut self.stopped, true) {
            return;
        }
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .stderr(Stdio::null())
            .status();
        wait_until(Duration::from_secs(3), || {
            matches!(self.child.try_wait(), Ok(Some(_)))
        });
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn microsocks(user_password: Option<(&str, &str)>) -> Server {
    let port = free_port();
    let port_text = port.to_string();
    let mut args = vec!["-i", "127.0.0.1", "-p", &port_text];
    if let Some((u, p)) = user_password {
        args.extend(["-u", u, "-P", p]);
    }
    Server::start("microsocks", &args, port, TempDir::new("microsocks"))
}

/// danted on loopback with the given `socksmethod` and extra rules (put
/// before the rule that passes everything from loopback).
fn dante(method: &str, rules: &str) -> Server {
    let dir = TempDir::new("dante");
    let port = free_port();
    let conf = format!(
        "logoutput: {log}\n\
         internal: 127.0.0.1 port = {port}\n\
         external: 127.0.0.1\n\
         socksmethod: {method}\n\
         clientmethod: none\n\
         user.privileged: root\n\
         user.unprivileged: nobody\n\
         client pass {{\n  from: 127.0.0.0/8 to: 0.0.0.0/0\n  log: error\n}}\n\
         {rules}\n\
         socks pass {{\n  from: 127.0.0.0/8 to: 0.0.0.0/0\n  \
         command: connect udpassociate udpreply\n  log: error connect iooperation\n}}\n",
        log = dir.path("danted.log").display()
    );
    std::fs::write(dir.path("danted.conf"), conf).unwrap();
    let conf = dir.path("danted.conf").display().to_string();
    let pid = dir.path("danted.pid").display().to_string();
    Server::start("danted", &["-f", &conf, "-p", &pid, "-N", "1"], port, dir)
}

/// v2ray 4.34 with one `http` inbound (accounts u/p), plain or TLS with a
/// certificate for `proxy.test`.
fn v2ray_http(tls: Option<&TestCa>) -> Server {
    let dir = TempDir::new("v2ray");
    let port = free_port();
    let stream = match tls {
        Some(ca) => {
            let (cert, key) = ca.server("proxy.test", &["DNS:proxy.test"]);
            format!(
                r#","streamSettings":{{"security":"tls","tlsSettings":{{"certificates":[{{"certificateFile":"{}","keyFile":"{}"}}]}}}}"#,
                cert.display(),
                key.display()
            )
        }
        None => String::new(),
    };
    let conf = format!(
        r#"{{"log":{{"loglevel":"debug","access":"{access}"}},
            "inbounds":[{{"listen":"127.0.0.1","port":{port},"protocol":"http",
              "settings":{{"accounts":[{{"user":"u","pass":"p"}}]}}{stream}}}],
            "outbounds":[{{"protocol":"freedom"}}]}}"#,
        access = dir.path("access.log").display()
    );
    std::fs::write(dir.path("v2ray.json"), conf).unwrap();
    let conf = dir.path("v2ray.json").display().to_string();
    Server::start("v2ray", &["-config", &conf], port, dir)
}

/// What a node does before the protocol: TCP to the server, then TLS where
/// the link asks for it (`roots`: the test CA).
async fn dial(link: &Link, roots: Option<&PathBuf>) -> BoxStream {
    let Host::Ip(ip) = link.host else {
        panic!("test links use IP addresses")
    };
    let tcp = tokio::net::TcpStream::connect((ip, link.port))
        .await
        .expect("connect to the proxy");
    match &link.tls {
        None => Box::new(tcp),
        Some(tls) => {
            let roots = roots.map(|p| load_roots(p).unwrap());
            let client = TlsClient::new(&tls.server_name, roots, &[]).unwrap();
            Box::new(client.handshake(tcp).await.expect("TLS to the proxy"))
        }
    }
}

fn auth_of(link: &Link) -> Option<&Auth> {
    match &link.proto {
        Proto::Socks5(auth) | Proto::Http(auth) => auth.as_ref(),
        other => panic!("not a socks5 or http link: {other:?}"),
    }
}

async fn step<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(STEP, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: no result in {STEP:?} (a hang)"))
}

/// One DNS exchange over a stream (RFC 7766 length prefix); the A records.
async fn ask_stream(stream: &mut BoxStream, name: &str) -> Vec<String> {
    let q = query(name, RecordType::A, false);
    let mut frame = (q.len() as u16).to_be_bytes().to_vec();
    frame.extend_from_slice(&q);
    step("DNS over the tunnel", async {
        stream.write_all(&frame).await.unwrap();
        stream.flush().await.unwrap();
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).await.expect("answer length");
        let mut answer = vec![0u8; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut answer).await.expect("answer");
        check_id(&q, &answer)
    })
    .await
}

/// One DNS exchange over a datagram path; the A records.
async fn ask_packets(packets: &mut Packets, name: &str) -> Vec<String> {
    let q = query(name, RecordType::A, false);
    step("DNS over the UDP association", async {
        packets.tx.send(&q).await.expect("send through the relay");
        let answer = packets.rx.recv().await.expect("answer through the relay");
        check_id(&q, &answer)
    })
    .await
}

fn check_id(q: &[u8], answer: &[u8]) -> Vec<String> {
    let m = Message::from_vec(answer).expect("the answer parses");
    assert_eq!(m.metadata.id, u16::from_be_bytes([q[0], q[1]]), "answer id");
    answers(&m)
}

#[tokio::test]
async fn socks5_connect_through_microsocks() {
    if !have("microsocks") || !have("unbound") {
        return;
    }
    let unbound = Unbound::start(&["socks.lab.example. A 192.0.2.1"]);
    let server = microsocks(None);
    let link = link::parse(&format!("socks5://127.0.0.1:{}#plain", server.port)).unwrap();
    let stream = dial(&link, None).await;
    let mut tunnel = step(
        "CONNECT",
        socks5::connect(stream, auth_of(&link), &unbound.addr().into()),
    )
    .await
    .expect("CONNECT through microsocks");
    assert_eq!(
        ask_stream(&mut tunnel, "socks.lab.example.").await,
        ["192.0.2.1"]
    );
    // the same tunnel carries a second question
    assert_eq!(
        ask_stream(&mut tunnel, "socks.lab.example.").await,
        ["192.0.2.1"]
    );
    assert_eq!(unbound.queries("socks.lab.example.", "A"), 2);

    // A closed port: microsocks answers "connection refused" (reply 5).
    let closed = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let e = step(
        "CONNECT to a closed port",
        socks5::connect(dial(&link, None).await, None, &closed.into()),
    )
    .await
    .err()
    .expect("CONNECT to a closed port fails");
    assert_eq!(e.to_string(), "socks5: the target refused the connection");
}

#[tokio::test]
async fn socks5_user_password_with_microsocks() {
    if !have("microsocks") || !have("unbound") {
        return;
    }
    let unbound = Unbound::start(&["auth.lab.example. A 192.0.2.2"]);
    let server = microsocks(Some(("alice", "s3cr:t")));
    let port = server.port;

    // percent-encoded in the link
    let link = link::parse(&format!("socks5://alice:s3cr%3At@127.0.0.1:{port}")).unwrap();
    let mut tunnel = step(
        "CONNECT with user/password",
        socks5::connect(
            dial(&link, None).await,
            auth_of(&link),
            &unbound.addr().into(),
        ),
    )
    .await
    .expect("CONNECT with the right password");
    assert_eq!(
        ask_stream(&mut tunnel, "auth.lab.example.").await,
        ["192.0.2.2"]
    );

    // base64("alice:s3cr:t"), as some clients export it
    let link = link::parse(&format!("socks5://YWxpY2U6czNjcjp0@127.0.0.1:{port}")).unwrap();
    let mut tunnel = step(
        "CONNECT with base64 user info",
        socks5::connect(
            dial(&link, None).await,
            auth_of(&link),
            &unbound.addr().into(),
        ),
    )
    .await
    .expect("CONNECT with base64 user info");
    assert_eq!(
        ask_stream(&mut tunnel, "auth.lab.example.").await,
        ["192.0.2.2"]
    );
    assert_eq!(unbound.queries("auth.lab.example.", "A"), 2);

    let link = link::parse(&format!("socks5://alice:wrong@127.0.0.1:{port}")).unwrap();
    let e = step(
        "CONNECT with a wrong password",
        socks5::connect(
            dial(&link, None).await,
            auth_of(&link),
            &unbound.addr().into(),
        ),
    )
    .await
    .err()
    .expect("a wrong password fails");
    assert_eq!(e.to_string(), "socks5: wrong user name or password");

    let link = link::parse(&format!("socks5://127.0.0.1:{port}")).unwrap();
    let e = step(
        "CONNECT without a password",
        socks5::connect(dial(&link, None).await, None, &unbound.addr().into()),
    )
    .await
    .err()
    .expect("no password fails");
    assert_eq!(
        e.to_string(),
        "socks5: the server accepts none of our authentication methods (needs a user and password?)"
    );
    assert_eq!(unbound.queries("auth.lab.example.", "A"), 2);
}

#[tokio::test]
async fn socks5_udp_associate_through_dante() {
    if !have("danted") || !have("unbound") {
        return;
    }
    let unbound = Unbound::start(&[
        "udp.lab.example. A 192.0.2.3",
        "tcp.lab.example. A 192.0.2.4",
    ]);
    let mut server = dante("none", "");
    let link = link::parse(&format!("socks5h://127.0.0.1:{}", server.port)).unwrap();

    let control = dial(&link, None).await;
    let mut packets = step(
        "UDP ASSOCIATE",
        socks5::associate(
            control,
            auth_of(&link),
            server.addr(),
            &Direct::new(0, None),
        ),
    )
    .await
    .map(|cone| cone.to_target(unbound.addr()))
    .unwrap_or_else(|e| panic!("UDP ASSOCIATE: {e}\n{}", server.file("danted.log")));
    for _ in 0..3 {
        assert_eq!(
            ask_packets(&mut packets, "udp.lab.example.").await,
            ["192.0.2.3"]
        );
    }
    assert_eq!(unbound.queries("udp.lab.example.", "A"), 3);

    // CONNECT through dante too.
    let mut tunnel = step(
        "CONNECT",
        socks5::connect(dial(&link, None).await, None, &unbound.addr().into()),
    )
    .await
    .expect("CONNECT through dante");
    assert_eq!(
        ask_stream(&mut tunnel, "tcp.lab.example.").await,
        ["192.0.2.4"]
    );
    let log = server.file("danted.log");
    assert!(
        log.contains("udpreply"),
        "dante logged no UDP relaying:\n{log}"
    );

    // The association ends with its control connection: recv() fails.
    server.stop();
    let e = step("recv after the server is gone", packets.rx.recv())
        .await
        .expect_err("recv fails once the control connection is closed");
    assert!(e.to_string().starts_with("socks5: "), "{e}");
}

#[tokio::test]
async fn socks5_refusals_from_dante() {
    if !have("danted") || !have("unbound") {
        return;
    }
    let unbound = Unbound::start(&[]);
    let blocked = free_port();
    let server = dante(
        "none",
        &format!(
            "socks block {{\n  from: 0.0.0.0/0 to: 127.0.0.1/32 port = {blocked}\n  log: error\n}}"
        ),
    );
    let link = link::parse(&format!("socks5://127.0.0.1:{}", server.port)).unwrap();
    let e = step(
        "CONNECT to a blocked port",
        socks5::connect(
            dial(&link, None).await,
            None,
            &SocketAddr::from(([127, 0, 0, 1], blocked)).into(),
        ),
    )
    .await
    .err()
    .expect("a blocked target fails");
    assert_eq!(
        e.to_string(),
        "socks5: the server refused the connection (rule set)"
    );
    drop(server);

    // The username method (system accounts): no credentials offered, and
    // a user that does not exist.
    let server = dante("username", "");
    let link = link::parse(&format!("socks5://127.0.0.1:{}", server.port)).unwrap();
    let e = step(
        "CONNECT without credentials",
        socks5::connect(dial(&link, None).await, None, &unbound.addr().into()),
    )
    .await
    .err()
    .expect("no credentials fails");
    assert!(
        e.to_string()
            .contains("accepts none of our authentication methods"),
        "{e}"
    );
    let link = link::parse(&format!(
        "socks5://no-such-user-dae:pw@127.0.0.1:{}",
        server.port
    ))
    .unwrap();
    let e = step(
        "CONNECT as an unknown user",
        socks5::connect(
            dial(&link, None).await,
            auth_of(&link),
            &unbound.addr().into(),
        ),
    )
    .await
    .err()
    .expect("an unknown user fails");
    assert_eq!(e.to_string(), "socks5: wrong user name or password");
}

#[tokio::test]
async fn http_connect_through_v2ray() {
    if !have("v2ray") || !have("unbound") {
        return;
    }
    let unbound = Unbound::start(&["http.lab.example. A 192.0.2.5"]);
    let server = v2ray_http(None);
    let port = server.port;

    let link = link::parse(&format!("http://u:p@127.0.0.1:{port}/#v2ray")).unwrap();
    let mut tunnel = step(
        "HTTP CONNECT",
        http::connect(
            dial(&link, None).await,
            auth_of(&link),
            &unbound.addr().into(),
        ),
    )
    .await
    .expect("CONNECT through v2ray");
    assert_eq!(
        ask_stream(&mut tunnel, "http.lab.example.").await,
        ["192.0.2.5"]
    );
    assert_eq!(
        ask_stream(&mut tunnel, "http.lab.example.").await,
        ["192.0.2.5"]
    );
    assert_eq!(unbound.queries("http.lab.example.", "A"), 2);
    // v2ray 4.34 logs "127.0.0.1:41458 accepted //127.0.0.1:48715".
    let target = unbound.addr().to_string();
    assert!(
        wait_until(Duration::from_secs(3), || server
            .file("access.log")
            .lines()
            .any(|l| l.contains("accepted") && l.ends_with(&target))),
        "v2ray's access log has no {target}:\n{}",
        server.file("access.log")
    );

    let link = link::parse(&format!("http://u:wrong@127.0.0.1:{port}")).unwrap();
    let e = step(
        "HTTP CONNECT with a wrong password",
        http::connect(
            dial(&link, None).await,
            auth_of(&link),
            &unbound.addr().into(),
        ),
    )
    .await
    .err()
    .expect("a wrong password fails");
    assert_eq!(
        e.to_string(),
        "http proxy: authentication failed (wrong user name or password?)"
    );

    let link = link::parse(&format!("http://127.0.0.1:{port}")).unwrap();
    let e = step(
        "HTTP CONNECT without a password",
        http::connect(dial(&link, None).await, None, &unbound.addr().into()),
    )
    .await
    .err()
    .expect("no password fails");
    assert_eq!(e.to_string(), "http proxy: authentication required");
    assert_eq!(unbound.queries("http.lab.example.", "A"), 2);
}

#[tokio::test]
async fn https_connect_through_v2ray_tls() {
    if !have("v2ray") || !have("unbound") || !have("openssl") {
        return;
    }
    let unbound = Unbound::start(&["https.lab.example. A 192.0.2.6"]);
    let ca = TestCa::new("https-proxy");
    let server = v2ray_http(Some(&ca));
    let link = link::parse(&format!(
        "https://u:p@127.0.0.1:{}?sni=proxy.test#tls",
        server.port
    ))
    .unwrap();
    assert_eq!(link.tls.as_ref().unwrap().server_name, "proxy.test");
    let stream = step("TLS to the proxy", dial(&link, Some(&ca.cert))).await;
    let mut tunnel = step(
        "HTTP CONNECT inside TLS",
        http::connect(stream, auth_of(&link), &unbound.addr().into()),
    )
    .await
    .expect("CONNECT through v2ray over TLS");
    assert_eq!(
        ask_stream(&mut tunnel, "https.lab.example.").await,
        ["192.0.2.6"]
    );
    assert_eq!(unbound.queries("https.lab.example.", "A"), 1);
}

/// SOCKS5 (microsocks, dante) and HTTP CONNECT (v2ray) to a target given
/// by name, in the lab: the servers in the upstream namespace look the name
/// up in their own `/etc/hosts`; a name that namespace does not know fails
/// with the server's own answer.
#[test]
fn connect_to_a_name_the_server_resolves() {
    if !lab::can_run() || !have("microsocks") || !have("danted") || !have("v2ray") {
        eprintln!("SKIPPED: needs the lab, microsocks, danted and v2ray");
        return;
    }
    let lab = Lab::up();
    let _names = lab.upstream_names();
    let _dns = LabUpstream::start(&lab, &["named.lab.example. 300 IN A 192.0.2.77"]);
    let _microsocks = proxies::microsocks(&lab, "up", UPSTREAM_WAN_V4, 1080, None);
    let dante = proxies::dante(&lab, "up", UPSTREAM_WAN_V4, 1081, UPSTREAM_WAN_V4);
    let v2ray = proxies::v2ray(
        &lab,
        "up",
        &format!(r#"[{{"listen": "{UPSTREAM_WAN_V4}", "port": 8080, "protocol": "http"}}]"#),
        (UPSTREAM_WAN_V4, 8080),
    );
    let (answers, unknown) = lab.block_on_within("router", || async {
        let server = |port: u16| async move {
            let tcp = tokio::net::TcpStream::connect((UPSTREAM_WAN_V4, port))
                .await
                .expect("connect to the proxy");
            Box::new(tcp) as BoxStream
        };
        let target = Target::Name(TARGET_NAME.into(), 53);
        let mut answers = Vec::new();
        for (what, port) in [("microsocks", 1080), ("dante", 1081)] {
            let mut s = step(what, socks5::connect(server(port).await, None, &target))
                .await
                .unwrap_or_else(|e| panic!("{what}: CONNECT to {target}: {e}"));
            answers.push((what, ask_stream(&mut s, "named.lab.example.").await));
        }
        let mut s = step("v2ray", http::connect(server(8080).await, None, &target))
            .await
            .unwrap_or_else(|e| panic!("v2ray: CONNECT to {target}: {e}"));
        answers.push(("v2ray", ask_stream(&mut s, "named.lab.example.").await));
        // Known nowhere: the server's lookup fails, and it says so.
        let nowhere = Target::Name("nowhere.lab.example".into(), 53);
        let unknown = step(
            "unknown name",
            socks5::connect(server(1080).await, None, &nowhere),
        )
        .await
        .err()
        .map(|e| e.to_string());
        (answers, unknown)
    });
    for (what, got) in answers {
        assert_eq!(got, ["192.0.2.77"], "{what}");
    }
    let unknown = unknown.expect("an unknown name fails");
    assert!(unknown.starts_with("socks5: "), "{unknown}");
    let log = v2ray.log();
    assert!(
        log.contains(&format!("{TARGET_NAME}:53")),
        "v2ray's log names no {TARGET_NAME}:\n{log}"
    );
    drop(dante);
}
