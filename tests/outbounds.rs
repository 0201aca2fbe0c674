//! DNS through proxy nodes, in the namespace lab, against real proxy
//! servers from Debian's packages.
//!
//! The proxies run on the upstream side (`PREFIX-up`, 198.51.100.2); a
//! firewall rule there (nftables) drops and counts every packet from the
//! router's own addresses to the lab's unbound (203.0.113.53), so an answer
//! reaches dae (on the router) only through a proxy, and the counter shows
//! any query that leaked out directly: it must stay at zero.
//!
//! What is shown: UDP, TCP and DoT upstreams through every kind of node
//! (SOCKS5, HTTP, Shadowsocks with each AEAD cipher, Trojan, VLESS, VMess;
//! trojan-gfw, ss-server, microsocks, dante and v2ray as servers); a wrong
//! password fails with SERVFAIL and the health check marks the node down;
//! killing the node in use fails queries with SERVFAIL until the check
//! moves the group to its second node; with no node alive the group says
//! so (log, `dae status`) and nothing goes direct.
//!
//! Needs root and the lab's tools; skips loudly without them.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::lab::{self, Lab, LabUpstream, ROUTER_WAN_V4, ROUTER_WAN_V6, UPSTREAM_V4, UPSTREAM_V6};
use common::proxies::{self, Server};
use common::tls::TestCa;
use common::{b64, query, udp_exchange, wait_until, Dae};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

/// Where the proxies listen (the upstream namespace's WAN address).
const PROXY: &str = "198.51.100.2";
const UUID: &str = "b831381d-6324-4d53-ad4f-8cda48b30811";
const RECORDS: &[&str] = &[
    "udp.lab.example. 300 IN A 192.0.2.81",
    "tcp.lab.example. 300 IN A 192.0.2.82",
    "dot.lab.example. 300 IN A 192.0.2.83",
];

fn can_run() -> bool {
    lab::can_run() && proxies::all_installed()
}

/// The lab's unbound: plain and DoT (certificate for 203.0.113.53), out
/// of the router's direct reach (see `fence`).
fn upstream(lab: &Lab, ca: &TestCa) -> LabUpstream {
    fence(lab);
    let (cert, key) = ca.server("dot", &[&format!("IP:{UPSTREAM_V4}")]);
    LabUpstream::start_with(
        lab,
        RECORDS,
        &format!(
            "  interface: {UPSTREAM_V4}@853\n  tls-port: 853\n  tls-service-key: \"{}\"\n  \
             tls-service-pem: \"{}\"\n",
            key.display(),
            cert.display()
        ),
    )
}

/// In the upstream namespace: drop and count whatever the router itself
/// sends to unbound's addresses (the proxies there reach it locally).
fn fence(lab: &Lab) {
    let rules = format!(
        "table inet fence {{\n  chain input {{\n    type filter hook input priority 0;\n    \
         ip saddr {ROUTER_WAN_V4} ip daddr {UPSTREAM_V4} counter drop\n    \
         ip6 saddr {ROUTER_WAN_V6} ip6 daddr {UPSTREAM_V6} counter drop\n  }}\n}}\n"
    );
    lab.nft("up", &rules);
}

/// Packets the fence dropped: queries that tried to go direct.
fn leaked(lab: &Lab) -> u64 {
    lab.run("up", "nft", &["list", "table", "inet", "fence"])
        .split("counter packets ")
        .skip(1)
        .filter_map(|rest| rest.split(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// The HTTP server the TCP health check asks, next to unbound.
fn check_target(lab: &Lab) -> Server {
    proxies::httpd(lab, "up", UPSTREAM_V4, 8080)
}

/// dae on the router: three upstreams (UDP, TCP, DoT) picked by name, and
/// every dial routed to group `proxy` of `nodes` (name, link).
fn config(ca: &TestCa, nodes: &[(&str, String)], policy: &str) -> String {
    let mut c = format!(
        "config dae 'config'\n\toption log_level 'debug'\n\toption ca_file '{ca}'\n\
         \toption check_interval '5'\n\toption tcp_check_url 'http://{UPSTREAM_V4}:8080/'\n\
         \toption udp_check_dns '{UPSTREAM_V4}:53'\n\n\
         config dns 'dns'\n\tlist dns_listen '@LISTEN@'\n\toption upstream_timeout '3'\n\
         \toption cache_size '0'\n\
         \tlist request_rule 'qname(suffix: tcp.lab.example) -> lab_tcp'\n\
         \tlist request_rule 'qname(suffix: dot.lab.example) -> lab_dot'\n\
         \toption request_fallback 'lab_udp'\n\n\
         config upstream 'lab_udp'\n\toption address 'udp://{UPSTREAM_V4}:53'\n\n\
         config upstream 'lab_tcp'\n\toption address 'tcp://{UPSTREAM_V4}:53'\n\n\
         config upstream 'lab_dot'\n\toption address 'tls://{UPSTREAM_V4}:853'\n\n",
        ca = ca.cert.display()
    );
    for (name, link) in nodes {
        c.push_str(&format!("config node '{name}'\n\toption link '{link}'\n\n"));
    }
    c.push_str(&format!(
        "config group 'proxy'\n\toption policy '{policy}'\n"
    ));
    for (name, _) in nodes {
        c.push_str(&format!("\tlist node '{name}'\n"));
    }
    c.push_str("\nconfig routing 'routing'\n\toption fallback 'proxy'\n");
    c
}

/// Asks dae (listening in the router namespace) one question over UDP.
fn ask(lab: &Lab, dae: &Dae, name: &str) -> Option<Message> {
    let addr = dae.addr;
    let q = query(name, RecordType::A, false);
    let reply = lab.within("router", move || {
        udp_exchange(addr, &q, Duration::from_secs(8))
    })?;
    Message::from_vec(&reply).ok()
}

fn data(m: &Message) -> Vec<String> {
    m.answers.iter().map(|r| r.data.to_string()).collect()
}

/// Asks `udp`, `tcp` and `dot.lab.example` (as `which` lists them) and
/// expects each one's address; `how` names the way in failure messages.
fn expect_answers(lab: &Lab, dae: &Dae, which: &[&str], how: &str) {
    for kind in which {
        let name = format!("{kind}.lab.example.");
        let want = RECORDS
            .iter()
            .find(|r| r.starts_with(&name))
            .and_then(|r| r.split(' ').next_back())
            .unwrap();
        let m = ask(lab, dae, &name);
        assert_eq!(
            m.as_ref().map(data),
            Some(vec![want.to_string()]),
            "{name} {how}: {:?}\n{}",
            rcode(&m),
            dae.log()
        );
    }
}

fn rcode(m: &Option<Message>) -> Option<ResponseCode> {
    m.as_ref().map(|m| m.metadata.response_code)
}

/// Nothing went direct: the fence dropped nothing, and unbound saw no
/// query from the router's addresses.
fn assert_no_leak(lab: &Lab, up: &LabUpstream) {
    assert_eq!(
        leaked(lab),
        0,
        "packets from the router went straight to unbound"
    );
    for name in ["udp.lab.example.", "tcp.lab.example.", "dot.lab.example."] {
        let router: Vec<IpAddr> = up
            .sources(name)
            .into_iter()
            .filter(|s| s.to_string() == ROUTER_WAN_V4 || s.to_string() == ROUTER_WAN_V6)
            .collect();
        assert!(router.is_empty(), "{name} went direct: {router:?}");
    }
}

fn ss_link(method: &str, password: &str, port: u16) -> String {
    format!(
        "ss://{}@{PROXY}:{port}#ss-{method}",
        b64(format!("{method}:{password}").as_bytes())
    )
}

fn vmess_link(port: u16, security: &str, tls: bool) -> String {
    let json = format!(
        "{{\"v\":\"2\",\"ps\":\"vmess-{security}\",\"add\":\"{PROXY}\",\"port\":\"{port}\",\"id\":\"{UUID}\",\
         \"aid\":\"0\",\"scy\":\"{security}\",\"net\":\"tcp\",\"type\":\"none\",\"tls\":\"{}\",\"sni\":\"proxy.lab.example\"}}",
        if tls { "tls" } else { "" }
    );
    format!("vmess://{}", b64(json.as_bytes()))
}

/// v2ray's inbounds: VMess (plain and TLS), VLESS, Trojan (TLS),
/// Shadowsocks and HTTP.
fn v2ray_inbounds(cert: &std::path::Path, key: &std::path::Path) -> String {
    let tls = format!(
        "{{\"security\": \"tls\", \"tlsSettings\": {{\"certificates\": [{{\"certificateFile\": \"{}\", \"keyFile\": \"{}\"}}]}}}}",
        cert.display(),
        key.display()
    );
    format!(
        "[{{\"listen\": \"{PROXY}\", \"port\": 10001, \"protocol\": \"vmess\", \"settings\": {{\"clients\": [{{\"id\": \"{UUID}\", \"alterId\": 0}}]}}}},\
          {{\"listen\": \"{PROXY}\", \"port\": 10002, \"protocol\": \"vmess\", \"settings\": {{\"clients\": [{{\"id\": \"{UUID}\", \"alterId\": 0}}]}}, \"streamSettings\": {tls}}},\
          {{\"listen\": \"{PROXY}\", \"port\": 10003, \"protocol\": \"vless\", \"settings\": {{\"clients\": [{{\"id\": \"{UUID}\"}}], \"decryption\": \"none\"}}}},\
          {{\"listen\": \"{PROXY}\", \"port\": 10004, \"protocol\": \"trojan\", \"settings\": {{\"clients\": [{{\"password\": \"v2-trojan\"}}]}}, \"streamSettings\": {tls}}},\
          {{\"listen\": \"{PROXY}\", \"port\": 10005, \"protocol\": \"shadowsocks\", \"settings\": {{\"method\": \"chacha20-ietf-poly1305\", \"password\": \"v2-ss\", \"network\": \"tcp,udp\"}}}},\
          {{\"listen\": \"{PROXY}\", \"port\": 10006, \"protocol\": \"http\", \"settings\": {{\"accounts\": [{{\"user\": \"u\", \"pass\": \"p\"}}]}}}}]"
    )
}

#[test]
fn dns_goes_through_every_kind_of_node() {
    if !can_run() {
        return;
    }
    let lab = Lab::up();
    let ca = TestCa::new("outbounds");
    let up = upstream(&lab, &ca);
    let _http = check_target(&lab);
    let (cert, key) = ca.server("proxy", &["DNS:proxy.lab.example", &format!("IP:{PROXY}")]);
    let _v2ray = proxies::v2ray(&lab, "up", &v2ray_inbounds(&cert, &key), (PROXY, 10006));
    let _trojan = proxies::trojan(&lab, "up", PROXY, 10443, "gfw-pass", &cert, &key);
    let _socks = proxies::microsocks(&lab, "up", PROXY, 1080, Some(("user", "pass")));
    let _dante = proxies::dante(&lab, "up", PROXY, 1081, UPSTREAM_V4);
    let mut ss = Vec::new();
    for (i, m) in ["aes-128-gcm", "aes-256-gcm", "chacha20-ietf-poly1305"]
        .iter()
        .enumerate()
    {
        ss.push(proxies::ss_server(
            &lab,
            "up",
            PROXY,
            8388 + i as u16,
            m,
            "ss-pass",
        ));
    }

    // (node link, carries UDP)
    let mut nodes: Vec<(String, bool)> = vec![
        (format!("socks5://user:pass@{PROXY}:1080"), false),
        (format!("socks5://{PROXY}:1081"), true),
        (format!("http://u:p@{PROXY}:10006"), false),
        (
            format!("trojan://gfw-pass@{PROXY}:10443?sni=proxy.lab.example"),
            true,
        ),
        (
            format!("trojan://v2-trojan@{PROXY}:10004?sni=proxy.lab.example"),
            true,
        ),
        (
            format!("vless://{UUID}@{PROXY}:10003?encryption=none&security=none&type=tcp"),
            true,
        ),
        (vmess_link(10001, "aes-128-gcm", false), true),
        (vmess_link(10001, "chacha20-poly1305", false), true),
        (vmess_link(10001, "none", false), true),
        (vmess_link(10002, "aes-128-gcm", true), true),
        (ss_link("chacha20-ietf-poly1305", "v2-ss", 10005), true),
    ];
    for (i, m) in ["aes-128-gcm", "aes-256-gcm", "chacha20-ietf-poly1305"]
        .iter()
        .enumerate()
    {
        nodes.push((ss_link(m, "ss-pass", 8388 + i as u16), true));
    }
    for (link, udp) in &nodes {
        let dae = Dae::start_in(
            Some(&lab.ns("router")),
            &config(&ca, &[("n", link.clone())], "min"),
            &[],
        );
        expect_answers(&lab, &dae, &["tcp", "dot"], link);
        let m = ask(&lab, &dae, "udp.lab.example.");
        if *udp {
            assert_eq!(
                m.as_ref().map(data),
                Some(vec!["192.0.2.81".to_string()]),
                "udp through {link}: {:?}\n{}",
                rcode(&m),
                dae.log()
            );
        } else {
            // The node carries no UDP: SERVFAIL, never direct.
            assert_eq!(
                rcode(&m),
                Some(ResponseCode::ServFail),
                "udp through {link}"
            );
        }
    }
    assert_no_leak(&lab, &up);
}

#[test]
fn a_wrong_password_fails_cleanly_and_the_check_marks_the_node_down() {
    if !can_run() {
        return;
    }
    let lab = Lab::up();
    let ca = TestCa::new("outbounds-pw");
    let up = upstream(&lab, &ca);
    let _http = check_target(&lab);
    let _ss = proxies::ss_server(&lab, "up", PROXY, 8388, "aes-256-gcm", "right");
    let dae = Dae::start_in(
        Some(&lab.ns("router")),
        &config(
            &ca,
            &[("bad", ss_link("aes-256-gcm", "wrong", 8388))],
            "min",
        ),
        &[],
    );
    for name in ["udp.lab.example.", "tcp.lab.example."] {
        let m = ask(&lab, &dae, name);
        assert_eq!(rcode(&m), Some(ResponseCode::ServFail), "{name}: {m:?}");
    }
    assert!(
        wait_until(Duration::from_secs(10), || {
            let s = dae.status();
            s["groups"][0]["nodes"][0]["tcp4"]["alive"] == false
                && s["groups"][0]["nodes"][0]["udp4"]["alive"] == false
        }),
        "the check marks the node down: {}",
        dae.status()
    );
    assert!(dae.log().contains("no node alive"), "{}", dae.log());
    // Still serving: the next query is answered (SERVFAIL) at once.
    assert_eq!(
        rcode(&ask(&lab, &dae, "udp.lab.example.")),
        Some(ResponseCode::ServFail)
    );
    assert_no_leak(&lab, &up);
}

#[test]
fn a_dead_node_fails_over_to_the_second_and_nothing_goes_direct() {
    if !can_run() {
        return;
    }
    let lab = Lab::up();
    let ca = TestCa::new("outbounds-failover");
    let up = upstream(&lab, &ca);
    let _http = check_target(&lab);
    let mut first = proxies::ss_server(&lab, "up", PROXY, 8388, "aes-128-gcm", "one");
    let mut second = proxies::ss_server(&lab, "up", PROXY, 8389, "aes-128-gcm", "two");
    let dae = Dae::start_in(
        Some(&lab.ns("router")),
        &config(
            &ca,
            &[
                ("first", ss_link("aes-128-gcm", "one", 8388)),
                ("second", ss_link("aes-128-gcm", "two", 8389)),
            ],
            "fixed(0)",
        ),
        &[],
    );
    // fixed(0) takes the first node while it is alive.
    let m = ask(&lab, &dae, "udp.lab.example.");
    assert_eq!(
        m.as_ref().map(data),
        Some(vec!["192.0.2.81".to_string()]),
        "{}",
        dae.log()
    );
    assert!(wait_until(Duration::from_secs(10), || {
        dae.status()["groups"][0]["nodes"][0]["udp4"]["checked"] == true
    }));
    assert_eq!(dae.status()["groups"][0]["selected"]["udp4"], "first");

    first.stop();
    // Until the check sees it, queries through the dead node fail (SERVFAIL,
    // not an answer from elsewhere).
    let m = ask(&lab, &dae, "tcp.lab.example.");
    assert!(
        matches!(rcode(&m), Some(ResponseCode::ServFail))
            || m.as_ref().map(data) == Some(vec!["192.0.2.82".into()]),
        "{m:?}"
    );
    // fixed(N) never moves: with its node down the group has none.
    assert!(
        wait_until(Duration::from_secs(12), || {
            dae.status()["groups"][0]["selected"]["udp4"].is_null()
        }),
        "{}",
        dae.status()
    );
    assert_eq!(
        rcode(&ask(&lab, &dae, "udp.lab.example.")),
        Some(ResponseCode::ServFail)
    );
    drop(dae);

    // A min policy moves to the second node.
    let mut first = proxies::ss_server(&lab, "up", PROXY, 8388, "aes-128-gcm", "one");
    let dae = Dae::start_in(
        Some(&lab.ns("router")),
        &config(
            &ca,
            &[
                ("first", ss_link("aes-128-gcm", "one", 8388)),
                ("second", ss_link("aes-128-gcm", "two", 8389)),
            ],
            "min",
        ),
        &[],
    );
    assert!(wait_until(Duration::from_secs(10), || {
        let s = dae.status();
        s["groups"][0]["nodes"][0]["udp4"]["checked"] == true
            && s["groups"][0]["nodes"][1]["udp4"]["checked"] == true
    }));
    let in_use = dae.status()["groups"][0]["selected"]["udp4"]
        .as_str()
        .unwrap()
        .to_string();
    let (dead, other) = if in_use == "first" {
        first.stop();
        ("first", "second")
    } else {
        second.stop();
        ("second", "first")
    };
    assert!(
        wait_until(Duration::from_secs(12), || {
            dae.status()["groups"][0]["selected"]["udp4"] == other
        }),
        "the group moves from {dead} to {other}: {}",
        dae.status()
    );
    for name in ["udp.lab.example.", "tcp.lab.example.", "dot.lab.example."] {
        let m = ask(&lab, &dae, name);
        assert_eq!(
            rcode(&m),
            Some(ResponseCode::NoError),
            "{name} through {other}: {}",
            dae.log()
        );
    }

    // Both gone: SERVFAIL, and the group says so.
    first.stop();
    second.stop();
    assert!(
        wait_until(Duration::from_secs(12), || {
            dae.status()["groups"][0]["selected"]["tcp4"].is_null()
        }),
        "{}",
        dae.status()
    );
    for name in ["udp.lab.example.", "tcp.lab.example.", "dot.lab.example."] {
        assert_eq!(
            rcode(&ask(&lab, &dae, name)),
            Some(ResponseCode::ServFail),
            "{name}"
        );
    }
    assert!(dae.log().contains("no node alive"), "{}", dae.log());
    let text = std::process::Command::new(env!("CARGO_BIN_EXE_dae"))
        .args(["status", "-s"])
        .arg(dae.status_socket())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("tcp none alive"), "{text}");
    assert_no_leak(&lab, &up);
}

#[test]
fn direct_dials_are_bound_to_the_wan_interface() {
    if !lab::can_run() {
        return;
    }
    let lab = Lab::up();
    let _up = LabUpstream::start(&lab, RECORDS);
    let uci = |wan: &str| {
        format!(
            "config dae 'config'\n\toption wan_interface '{wan}'\n\n\
             config dns 'dns'\n\tlist dns_listen '@LISTEN@'\n\toption upstream_timeout '2'\n\
             \toption request_fallback 'lab'\n\n\
             config upstream 'lab'\n\toption address 'udp://{UPSTREAM_V4}:53'\n\n\
             config routing 'routing'\n\tlist rule 'dport(53) -> direct'\n"
        )
    };
    let dae = Dae::start_in(Some(&lab.ns("router")), &uci("wan0"), &[]);
    let m = ask(&lab, &dae, "udp.lab.example.");
    assert_eq!(
        m.as_ref().map(data),
        Some(vec!["192.0.2.81".to_string()]),
        "{}",
        dae.log()
    );
    drop(dae);
    // Bound to the LAN bridge, the upstream is out of reach: SERVFAIL.
    let dae = Dae::start_in(Some(&lab.ns("router")), &uci("br-lan"), &[]);
    assert_eq!(
        rcode(&ask(&lab, &dae, "udp.lab.example.")),
        Some(ResponseCode::ServFail)
    );
}

#[test]
fn a_node_given_by_host_name_is_looked_up_direct_through_the_plain_upstream() {
    if !can_run() {
        return;
    }
    let lab = Lab::up();
    let ca = TestCa::new("outbounds-name");
    let up = upstream(&lab, &ca);
    let _http = check_target(&lab);
    let _ss = proxies::ss_server(&lab, "up", PROXY, 8388, "aes-128-gcm", "named");
    // The router's own resolver for the proxy's name, on its loopback.
    let names = Server::start(
        &lab,
        "router",
        "unbound",
        "unbound",
        &["-d", "-c", "@DIR@/unbound.conf"],
        &[(
            "unbound.conf",
            format!(
                "server:\n  interface: 127.0.0.1@5300\n  do-daemonize: no\n  use-syslog: no\n  \
                 logfile: \"\"\n  verbosity: 1\n  log-queries: yes\n  chroot: \"\"\n  username: \"\"\n  \
                 directory: \"@DIR@\"\n  pidfile: \"\"\n  module-config: \"iterator\"\n  \
                 local-zone: \"proxy.lab.example.\" static\n  \
                 local-data: \"proxy.lab.example. 300 IN A {PROXY}\"\n"
            ),
        )],
    )
    .wait_tcp(&lab, "router", "127.0.0.1", 5300);
    // The first plain upstream at an IP address looks names up.
    let uci = config(
        &ca,
        &[(
            "named",
            format!(
                "ss://{}@proxy.lab.example:8388#named",
                b64(b"aes-128-gcm:named")
            ),
        )],
        "min",
    )
    .replace(
        "config upstream 'lab_udp'",
        "config upstream 'names'\n\toption address 'udp://127.0.0.1:5300'\n\nconfig upstream 'lab_udp'",
    );
    let dae = Dae::start_in(Some(&lab.ns("router")), &uci, &[]);
    expect_answers(&lab, &dae, &["udp", "tcp"], "");
    assert!(
        names
            .log()
            .to_ascii_lowercase()
            .contains("proxy.lab.example. a in"),
        "the proxy's name was asked: {}",
        names.log()
    );
    assert_eq!(
        dae.status()["groups"][0]["nodes"][0]["server"],
        "proxy.lab.example:8388"
    );
    assert_no_leak(&lab, &up);
}

#[test]
fn ipv6_upstreams_go_through_a_node_over_ipv6_and_are_checked_per_version() {
    if !can_run() {
        return;
    }
    const PROXY_V6: &str = "2001:db8:2::2";
    let lab = Lab::up();
    let ca = TestCa::new("outbounds-v6");
    let up = upstream(&lab, &ca);
    let _http4 = check_target(&lab);
    let _http6 = proxies::httpd(&lab, "up", UPSTREAM_V6, 8080);
    let _ss = proxies::ss_server(&lab, "up", PROXY_V6, 8388, "chacha20-ietf-poly1305", "six");
    let link = format!(
        "ss://{}@[{PROXY_V6}]:8388#six",
        b64(b"chacha20-ietf-poly1305:six")
    );
    let uci = config(&ca, &[("six", link)], "min")
        .replace(
            &format!("option address 'udp://{UPSTREAM_V4}:53'"),
            &format!("option address 'udp://[{UPSTREAM_V6}]:53'"),
        )
        .replace(
            &format!("option address 'tcp://{UPSTREAM_V4}:53'"),
            &format!("option address 'tcp://[{UPSTREAM_V6}]:53'"),
        )
        .replace(
            &format!("option tcp_check_url 'http://{UPSTREAM_V4}:8080/'"),
            &format!("option tcp_check_url 'http://{UPSTREAM_V4}:8080/,{UPSTREAM_V6}'"),
        )
        .replace(
            &format!("option udp_check_dns '{UPSTREAM_V4}:53'"),
            &format!("option udp_check_dns '{UPSTREAM_V4}:53,{UPSTREAM_V6}'"),
        );
    let dae = Dae::start_in(Some(&lab.ns("router")), &uci, &[]);
    expect_answers(&lab, &dae, &["udp", "tcp"], "");
    // Every path of the node is checked, IPv4 and IPv6.
    assert!(
        wait_until(Duration::from_secs(10), || {
            let n = &dae.status()["groups"][0]["nodes"][0];
            ["tcp4", "udp4", "tcp6", "udp6"]
                .iter()
                .all(|p| n[p]["checked"] == true && n[p]["alive"] == true)
        }),
        "{}",
        dae.status()
    );
    // unbound heard the question over IPv6, from the proxy's side.
    let sources = up.sources("udp.lab.example.");
    assert!(
        !sources.is_empty() && sources.iter().all(|s| s.to_string() == UPSTREAM_V6),
        "{sources:?}"
    );
    assert_no_leak(&lab, &up);
}
