//! Encrypted upstreams against real servers: DNS over TLS and DNS over
//! HTTPS (HTTP/2) to unbound and to dnsdist, with certificates from a CA the
//! test makes (openssl); the first tests run for both schemes. DNS over QUIC
//! and DNS over HTTPS over HTTP/3 to the aioquic servers of
//! `tests/servers/`, which relay to unbound.
//!
//! Shown: answers come back right; many queries share one connection; a
//! certificate from an untrusted CA or for another name is refused (and
//! taken with allow_insecure); a server restarted mid-run is reconnected;
//! a silent server gives SERVFAIL within the timeout; an upstream given by
//! host name is looked up through the plain upstream; QUIC upstreams are
//! not sent through a proxy node.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::tls::TestCa;
use common::{answers, ask, free_port, have, Dae, Dnsdist, Unbound};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

const RECORDS: &[&str] = &[
    "www.lab.example. 300 IN A 192.0.2.80",
    "dns.lab.example. 300 IN A 127.0.0.1",
];

const SCHEMES: [&str; 2] = ["tls", "https"];

/// unbound answering DoT (`tls`) or DoH (`https`, at /dns-query) on its own
/// port, besides its plain one.
fn encrypted_unbound(scheme: &str, ca: &TestCa, sans: &[&str]) -> Option<(Unbound, u16)> {
    if !have("unbound") || !have("openssl") {
        return None;
    }
    let (cert, key) = ca.server("dns.lab.example", sans);
    let port = free_port();
    let which = if scheme == "tls" {
        "tls-port"
    } else {
        "https-port"
    };
    let extra = format!(
        "  interface: 127.0.0.1@{port}\n  {which}: {port}\n  tls-service-key: \"{}\"\n  \
         tls-service-pem: \"{}\"\n  http-endpoint: \"/dns-query\"\n",
        key.display(),
        cert.display()
    );
    Some((Unbound::start_with(RECORDS, &extra), port))
}

/// A config whose every query goes to `address` over TLS.
fn dot_config(ca_file: &std::path::Path, address: &str, upstream_extra: &str) -> String {
    format!(
        "config dae 'config'\n\toption log_level 'debug'\n\toption ca_file '{}'\n\n\
         config dns 'dns'\n\tlist dns_listen '@LISTEN@'\n\toption request_fallback 'dot'\n\
         \toption upstream_timeout '2'\n\n\
         config upstream 'dot'\n\toption address '{address}'\n{upstream_extra}\n",
        ca_file.display()
    )
}

/// Established TCP connections from this host to `port`.
/// The bootstrap option of the upstreams asked by name.
const BOOTSTRAP: &str = "\toption bootstrap '127.0.0.1'\n";

fn connections_to(port: u16) -> usize {
    let out = Command::new("ss")
        .args([
            "-Htn",
            "state",
            "established",
            &format!("( dport = :{port} )"),
        ])
        .output()
        .expect("ss");
    String::from_utf8_lossy(&out.stdout).lines().count()
}

#[test]
fn encrypted_upstreams_answer_over_one_reused_connection() {
    for scheme in SCHEMES {
        answers_over_one_reused_connection(scheme);
    }
}

fn answers_over_one_reused_connection(scheme: &str) {
    let ca = TestCa::new("reuse");
    let sans = ["DNS:dns.lab.example", "IP:127.0.0.1"];
    let Some((up, port)) = encrypted_unbound(scheme, &ca, &sans) else {
        return;
    };
    // By IP address (the certificate names it), then by name with a
    // bootstrap address (the name is the SNI and must match).
    for (run, (address, extra)) in [
        (format!("{scheme}://127.0.0.1:{port}"), String::new()),
        (
            format!("{scheme}://dns.lab.example:{port}"),
            BOOTSTRAP.to_string(),
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let dae = Dae::start(&dot_config(&ca.cert, &address, &extra));
        let m = ask(dae.addr, "www.lab.example.", RecordType::A);
        assert_eq!(
            m.metadata.response_code,
            ResponseCode::NoError,
            "{}",
            dae.log()
        );
        assert_eq!(answers(&m), vec!["192.0.2.80"]);
        // Twenty more, ten at a time, all different names (no cache).
        twenty_in_parallel(&dae, &format!("n{run}"));
        assert_eq!(
            connections_to(port),
            1,
            "{address}: one connection carries them all:\n{}\n{}",
            ss_all(port),
            dae.log()
        );
        assert_eq!(up.queries(&format!("n{run}1x9.lab.example."), "A"), 1);
        drop(dae);
    }
}

#[test]
fn encrypted_upstreams_refuse_certificates_they_cannot_trust_unless_told_to() {
    for scheme in SCHEMES {
        refuses_certificates(scheme);
    }
}

fn refuses_certificates(scheme: &str) {
    let ca = TestCa::new("trusted");
    let rogue = TestCa::new("rogue");
    let sans = ["DNS:dns.lab.example", "IP:127.0.0.1"];
    let Some((_up, port)) = encrypted_unbound(scheme, &rogue, &sans) else {
        return;
    };
    // Signed by a CA dae does not trust.
    let address = format!("{scheme}://127.0.0.1:{port}");
    refused_with(
        &dot_config(&ca.cert, &address, ""),
        "invalid peer certificate",
    );

    // Trusted CA, but the certificate is for another name.
    refused_with(
        &dot_config(
            &rogue.cert,
            &format!("{scheme}://other.lab.example:{port}"),
            BOOTSTRAP,
        ),
        "not valid for name",
    );

    // allow_insecure takes it, with a warning.
    let dae = Dae::start(&dot_config(
        &ca.cert,
        &address,
        "\toption allow_insecure '1'\n",
    ));
    assert!(dae.log().contains("allow_insecure is set"), "{}", dae.log());
    let m = ask(dae.addr, "www.lab.example.", RecordType::A);
    assert_eq!(answers(&m), vec!["192.0.2.80"]);
}

#[test]
fn encrypted_upstreams_through_dnsdist_survive_a_restart_and_silence_is_servfail() {
    for scheme in SCHEMES {
        survives_restart_and_silence(scheme);
    }
}

fn survives_restart_and_silence(scheme: &str) {
    if !have("dnsdist") {
        return;
    }
    let ca = TestCa::new("dnsdist");
    let Some((up, _)) = encrypted_unbound(scheme, &ca, &["IP:127.0.0.1"]) else {
        return;
    };
    let (cert, key) = ca.server("dnsdist", &["IP:127.0.0.1"]);
    let port = free_port();
    let (cert, key) = (cert.display(), key.display());
    let frontend = if scheme == "tls" {
        format!("addTLSLocal(\"127.0.0.1:{port}\", \"{cert}\", \"{key}\")")
    } else {
        format!("addDOHLocal(\"127.0.0.1:{port}\", \"{cert}\", \"{key}\", \"/dns-query\")")
    };
    let rules =
        format!("{frontend}\naddAction(QNameRule(\"silent.lab.example.\"), DropAction())\n");
    let start = || Dnsdist::start(up.addr(), "www.lab.example.", &rules);
    let dist = start();
    let dae = Dae::start(&dot_config(
        &ca.cert,
        &format!("{scheme}://127.0.0.1:{port}"),
        "",
    ));
    assert_eq!(
        answers(&ask(dae.addr, "www.lab.example.", RecordType::A)),
        vec!["192.0.2.80"]
    );

    // A server that says nothing: SERVFAIL once upstream_timeout (2 s) is up.
    let t = Instant::now();
    let m = ask(dae.addr, "silent.lab.example.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "SERVFAIL came after {:?}",
        t.elapsed()
    );

    // The server goes away and comes back on the same port: the next query
    // finds the old connection dead and opens a new one.
    drop(dist);
    let _dist = start();
    let m = ask(dae.addr, "dns.lab.example.", RecordType::A);
    assert_eq!(answers(&m), vec!["127.0.0.1"], "{}", dae.log());
}

#[test]
fn a_named_dot_upstream_is_looked_up_through_the_plain_one() {
    let ca = TestCa::new("lookup");
    let Some((up, port)) = encrypted_unbound("tls", &ca, &["DNS:dns.lab.example"]) else {
        return;
    };
    let uci = format!(
        "{}config upstream 'plain'\n\toption address 'udp://{}'\n",
        dot_config(&ca.cert, &format!("tls://dns.lab.example:{port}"), ""),
        up.addr()
    );
    let dae = Dae::start(&uci);
    let m = ask(dae.addr, "www.lab.example.", RecordType::A);
    assert_eq!(answers(&m), vec!["192.0.2.80"], "{}", dae.log());
    assert_eq!(up.queries("dns.lab.example.", "A"), 1, "looked up once");
    assert!(dae.log().contains("looked up 127.0.0.1:"), "{}", dae.log());
    let m = ask(dae.addr, "x.lab.example.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(up.queries("dns.lab.example.", "A"), 1, "and kept");
}

fn ss_all(port: u16) -> String {
    let out = Command::new("ss")
        .args(["-Htnp", &format!("( dport = :{port} or sport = :{port} )")])
        .output()
        .expect("ss");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn doh_error_statuses_are_servfail_with_the_reason_logged() {
    let ca = TestCa::new("status");
    let Some((_up, port)) = encrypted_unbound("https", &ca, &["IP:127.0.0.1"]) else {
        return;
    };
    // unbound serves /dns-query only: another path is a 404.
    let base = format!("https://127.0.0.1:{port}");
    refused_with(
        &dot_config(&ca.cert, &format!("{base}/nowhere"), ""),
        "HTTP status 404",
    );
    let dae = Dae::start(&dot_config(&ca.cert, &format!("{base}/dns-query"), ""));
    let m = ask(dae.addr, "www.lab.example.", RecordType::A);
    assert_eq!(answers(&m), vec!["192.0.2.80"]);
}

/// A QUIC server of `tests/servers/` on aioquic, relaying to a real
/// unbound: `doq_server.py` (DoQ) or `doh3_server.py` (DoH over HTTP/3).
/// Its log has a line per connection and per query.
struct QuicServer {
    child: std::process::Child,
    dir: common::TempDir,
    port: u16,
}

/// Where `tests/run-all.sh` installs aioquic (pip --target).
fn pydeps() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/pydeps")
}

fn have_aioquic() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import aioquic"])
        .env("PYTHONPATH", pydeps())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        eprintln!(
            "SKIPPED: aioquic is not installed (tests/run-all.sh installs it: \
             pip install --target target/pydeps aioquic)"
        );
    }
    ok
}

impl QuicServer {
    /// `kind`: "doq" or "doh3".
    fn start(kind: &str, ca: &TestCa, upstream: std::net::SocketAddr, port: u16) -> QuicServer {
        let dir = common::TempDir::new(kind);
        let (cert, key) = ca.server(kind, &["DNS:dns.lab.example", "IP:127.0.0.1"]);
        let log = std::fs::File::create(dir.path("server.log")).unwrap();
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("tests/servers/{kind}_server.py"));
        let child = Command::new("python3")
            .arg(script)
            .args(["127.0.0.1", &port.to_string()])
            .arg(&cert)
            .arg(&key)
            .args([
                "127.0.0.1",
                &upstream.port().to_string(),
                "--silent",
                "silent.lab.example.",
            ])
            .env("PYTHONPATH", pydeps())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start the QUIC server");
        let s = QuicServer { child, dir, port };
        assert!(
            common::wait_until(Duration::from_secs(10), || s.log().contains("ready")),
            "the {kind} server did not start: {}",
            s.log()
        );
        s
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path("server.log")).unwrap_or_default()
    }

    fn count(&self, line: &str) -> usize {
        self.log().lines().filter(|l| *l == line).count()
    }
}

impl Drop for QuicServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Twenty queries, ten at a time, all different names (no cache): each
/// gets its NXDOMAIN.
fn twenty_in_parallel(dae: &Dae, tag: &str) {
    for round in 0..2 {
        let handles: Vec<_> = (0..10)
            .map(|i| {
                let addr = dae.addr;
                let name = format!("{tag}{round}x{i}.lab.example.");
                std::thread::spawn(move || ask(addr, &name, RecordType::A).metadata.response_code)
            })
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap(), ResponseCode::NXDomain, "{}", dae.log());
        }
    }
}

/// Starts dae with `config` and expects SERVFAIL for a query, with `why`
/// in its log.
fn refused_with(config: &str, why: &str) {
    let dae = Dae::start(config);
    let m = ask(dae.addr, "www.lab.example.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert!(dae.log().contains(why), "{}", dae.log());
}

/// Asks over UDP with a long client timeout, so that a slow SERVFAIL is
/// seen (and timed) rather than missed.
fn ask_patiently(dae: &Dae, name: &str) -> hickory_proto::op::Message {
    let q = common::query(name, RecordType::A, false);
    let r = common::udp_exchange(dae.addr, &q, Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no answer:\n{}", dae.log()));
    hickory_proto::op::Message::from_vec(&r).unwrap()
}

/// dae asks `server` by name (`scheme://dns.lab.example:PORT`, the name
/// being the SNI) with a bootstrap address: the first answer, then twenty
/// queries in parallel, each asked once, all over one connection. Returns
/// dae and the upstream's address.
fn named_quic_upstream_answers(scheme: &str, ca: &TestCa, server: &QuicServer) -> (Dae, String) {
    let address = format!("{scheme}://dns.lab.example:{}", server.port);
    let dae = Dae::start(&dot_config(&ca.cert, &address, BOOTSTRAP));
    let m = ask(dae.addr, "www.lab.example.", RecordType::A);
    assert_eq!(
        answers(&m),
        vec!["192.0.2.80"],
        "{}\n{}",
        dae.log(),
        server.log()
    );
    twenty_in_parallel(&dae, "q");
    assert_eq!(
        server.count("query q1x9.lab.example."),
        1,
        "{}",
        server.log()
    );
    assert_eq!(
        server.count("connection"),
        1,
        "one connection for all:\n{}",
        server.log()
    );
    (dae, address)
}

#[test]
fn doq_answers_over_one_connection_and_checks_certificates() {
    if !have("unbound") || !have("openssl") || !have_aioquic() {
        return;
    }
    let ca = TestCa::new("doq");
    let up = Unbound::start(RECORDS);
    let doq = QuicServer::start("doq", &ca, up.addr(), free_port());
    let (dae, address) = named_quic_upstream_answers("quic", &ca, &doq);
    drop(dae);

    // A CA dae does not trust: refused; allow_insecure: taken.
    let rogue = TestCa::new("doq-rogue");
    refused_with(
        &dot_config(&rogue.cert, &address, BOOTSTRAP),
        "invalid peer certificate",
    );
    let insecure = format!("{BOOTSTRAP}\toption allow_insecure '1'\n");
    let dae = Dae::start(&dot_config(&rogue.cert, &address, &insecure));
    assert_eq!(
        answers(&ask(dae.addr, "www.lab.example.", RecordType::A)),
        vec!["192.0.2.80"]
    );
}

#[test]
fn doq_survives_a_server_restart_and_silence_is_servfail() {
    if !have("unbound") || !have("openssl") || !have_aioquic() {
        return;
    }
    let ca = TestCa::new("doq-restart");
    let up = Unbound::start(RECORDS);
    let port = free_port();
    let doq = QuicServer::start("doq", &ca, up.addr(), port);
    let dae = Dae::start(&dot_config(
        &ca.cert,
        &format!("quic://127.0.0.1:{port}"),
        "",
    ));
    assert_eq!(
        answers(&ask(dae.addr, "www.lab.example.", RecordType::A)),
        vec!["192.0.2.80"]
    );

    let t = Instant::now();
    let m = ask_patiently(&dae, "silent.lab.example.");
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "SERVFAIL came after {:?}",
        t.elapsed()
    );

    drop(doq);
    let doq = QuicServer::start("doq", &ca, up.addr(), port);
    let m = ask_patiently(&dae, "dns.lab.example.");
    assert_eq!(
        answers(&m),
        vec!["127.0.0.1"],
        "{}\n{}",
        dae.log(),
        doq.log()
    );
}

#[test]
fn doh3_answers_over_one_connection_and_checks_certificates() {
    if !have("unbound") || !have("openssl") || !have_aioquic() {
        return;
    }
    let ca = TestCa::new("doh3");
    let up = Unbound::start(RECORDS);
    let h3 = QuicServer::start("doh3", &ca, up.addr(), free_port());
    // By name, at the default path.
    let (dae, address) = named_quic_upstream_answers("h3", &ca, &h3);
    // No error status, and every query had id 0 (RFC 8484 4.1).
    assert!(
        !h3.log()
            .lines()
            .any(|l| l.starts_with("status ") || l.starts_with("id ")),
        "{}",
        h3.log()
    );
    drop(dae);

    // By IP address, the path given.
    let base = format!("h3://127.0.0.1:{}", h3.port);
    let dae = Dae::start(&dot_config(&ca.cert, &format!("{base}/dns-query"), ""));
    let m = ask(dae.addr, "dns.lab.example.", RecordType::A);
    assert_eq!(answers(&m), vec!["127.0.0.1"], "{}", dae.log());
    drop(dae);

    // The server serves /dns-query only: another path is a 404, SERVFAIL
    // for the client with the reason logged.
    refused_with(
        &dot_config(&ca.cert, &format!("{base}/nowhere"), ""),
        "HTTP status 404",
    );

    // A CA dae does not trust: refused.
    let rogue = TestCa::new("doh3-rogue");
    refused_with(
        &dot_config(&rogue.cert, &address, BOOTSTRAP),
        "invalid peer certificate",
    );

    // Trusted CA, but the certificate is for another name.
    let other = format!("h3://other.lab.example:{}", h3.port);
    refused_with(
        &dot_config(&ca.cert, &other, BOOTSTRAP),
        "not valid for name",
    );

    // allow_insecure takes it, with a warning.
    let insecure = format!("{BOOTSTRAP}\toption allow_insecure '1'\n");
    let dae = Dae::start(&dot_config(&rogue.cert, &address, &insecure));
    assert!(dae.log().contains("allow_insecure is set"), "{}", dae.log());
    assert_eq!(
        answers(&ask(dae.addr, "www.lab.example.", RecordType::A)),
        vec!["192.0.2.80"],
        "{}",
        dae.log()
    );
}

#[test]
fn doh3_survives_a_server_restart_and_silence_is_servfail() {
    if !have("unbound") || !have("openssl") || !have_aioquic() {
        return;
    }
    let ca = TestCa::new("doh3-restart");
    let up = Unbound::start(RECORDS);
    let port = free_port();
    let h3 = QuicServer::start("doh3", &ca, up.addr(), port);
    let dae = Dae::start(&dot_config(&ca.cert, &format!("h3://127.0.0.1:{port}"), ""));
    assert_eq!(
        answers(&ask(dae.addr, "www.lab.example.", RecordType::A)),
        vec!["192.0.2.80"],
        "{}\n{}",
        dae.log(),
        h3.log()
    );

    // A server that says nothing: SERVFAIL once upstream_timeout (2 s) is
    // up, not later.
    let t = Instant::now();
    let m = ask_patiently(&dae, "silent.lab.example.");
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "SERVFAIL came after {:?}",
        t.elapsed()
    );
    assert_eq!(h3.count("query silent.lab.example."), 1, "{}", h3.log());

    // The server goes away (killed: no CONNECTION_CLOSE) and comes back on
    // the same port knowing nothing of the old connection: the next query
    // finds it dead and opens a new one, in time.
    drop(h3);
    let h3 = QuicServer::start("doh3", &ca, up.addr(), port);
    let t = Instant::now();
    let m = ask_patiently(&dae, "dns.lab.example.");
    assert_eq!(
        answers(&m),
        vec!["127.0.0.1"],
        "{}\n{}",
        dae.log(),
        h3.log()
    );
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(h3.count("connection"), 1, "{}", h3.log());
    // And it stays in use.
    twenty_in_parallel(&dae, "r");
    assert_eq!(h3.count("connection"), 1, "{}", h3.log());
}

#[test]
fn quic_upstreams_are_not_sent_through_a_proxy_node() {
    if !have("openssl") {
        return;
    }
    let ca = TestCa::new("quic-node");
    // A SOCKS5 node that takes TCP connections and never says a word: its
    // first health check hangs, and meanwhile it counts as alive, so the
    // group picks it.
    let hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    for scheme in ["quic", "h3"] {
        let uci = format!(
            "{}config node 'n'\n\toption link 'socks5://{}'\n\n\
             config group 'proxy'\n\tlist node 'n'\n\n\
             config routing 'routing'\n\toption fallback 'proxy'\n",
            dot_config(
                &ca.cert,
                &format!("{scheme}://127.0.0.1:{}", free_port()),
                ""
            ),
            hole.local_addr().unwrap()
        );
        let dae = Dae::start(&uci);
        let t = Instant::now();
        let m = ask(dae.addr, "www.lab.example.", RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        assert!(
            dae.log().contains(&format!(
                "{scheme}:// upstreams cannot go through a proxy node"
            )),
            "{}",
            dae.log()
        );
    }
}
