//! The transparent proxy for TCP in the namespace lab, with the real
//! kernel: the client's connections are routed by the TC program on the
//! router's br-lan (by the domain dae's DNS answered, by address, by a
//! sniffed TLS name) and the proxied ones are relayed by dae through a real
//! Shadowsocks node (ss-server) to a real web server (tests/servers/web.py,
//! which answers with the peer it saw).
//!
//! The router masquerades what leaves by its WAN port, as OpenWrt does: a
//! direct flow reaches the server from the router's WAN address, a proxied
//! one from the node (in the upstream namespace), and the node's log shows
//! the connection: to the sniffed name when there is one (the node looks
//! it up, in the upstream namespace's `/etc/hosts`), else to the address.
//!
//! Rule sets too: a `qname(geosite:...)` request rule rejects the client's
//! query and a `dip(geoip:...)` rule routes its flow, from dat files the
//! test writes.
//!
//! Needs root and the lab's tools; skips loudly without them.

mod common;
#[path = "common/dat.rs"]
mod dat;

use std::time::Duration;

use common::lab::{self, Lab, LabUpstream, NetnsEtc, ROUTER_WAN_V4, UPSTREAM_V4};
use common::proxies::{self, Server};
use common::tls::TestCa;
use common::{b64, query, udp_exchange_from, wait_until, Dae, TempDir};
use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;

const NODE: &str = "203.0.113.80";
/// Reached through the node by the domain dae's DNS answered for it.
const BY_DOMAIN: &str = "203.0.113.81";
/// Reached directly by the domain dae's DNS answered for it.
const DIRECT: &str = "203.0.113.84";
/// Reached through the node by its address.
const BY_ADDRESS: &str = "203.0.113.85";
const BY_ADDRESS_V6: &str = "2001:db8:3::85";
/// Never resolved through dae: routed by its TLS server name.
const BY_SNI: &str = "203.0.113.86";
/// Blocked by its address.
const BLOCKED: &str = "203.0.113.87";
/// Through the node for the client's MAC address only.
const BY_MAC: &str = "203.0.113.88";
/// Through the node for other MAC addresses only.
const NOT_BY_MAC: &str = "203.0.113.89";

const RECORDS: &[&str] = &[
    "www.proxied.example. 300 IN A 203.0.113.81",
    "www.direct.example. 300 IN A 203.0.113.84",
];

fn rules(mac: &str, fail_closed: bool) -> String {
    format!(
        "config dae 'config'\n\toption log_level 'debug'\n\tlist lan_interface 'br-lan'\n\
         \toption tproxy_port '12345'\n\toption bpf_object '{obj}'\n\
         \toption fail_closed '{fc}'\n\toption check_interval '5'\n\
         \toption tcp_check_url 'http://{BY_DOMAIN}/check'\n\n\
         config dns 'dns'\n\toption request_fallback 'lab'\n\n\
         config upstream 'lab'\n\toption address 'udp://{UPSTREAM_V4}:53'\n\n\
         config node 'ss1'\n\toption link 'ss://{ss}@{NODE}:8388'\n\n\
         config group 'proxy'\n\tlist node 'ss1'\n\toption policy 'fixed(0)'\n\n\
         config routing 'routing'\n\
         \tlist rule 'dip({BLOCKED}) -> block'\n\
         \tlist rule 'domain(suffix: proxied.example) -> proxy'\n\
         \tlist rule 'domain(suffix: sni.example) -> proxy'\n\
         \tlist rule 'dip({BY_ADDRESS}, {BY_ADDRESS_V6}) -> proxy'\n\
         \tlist rule 'dport(8080) -> proxy'\n\
         \tlist rule 'mac({mac}) && dip({BY_MAC}) -> proxy'\n\
         \tlist rule '!mac({mac}) && dip({NOT_BY_MAC}) -> proxy'\n\
         \toption fallback 'direct'\n",
        obj = lab::bpf_object().display(),
        fc = u8::from(fail_closed),
        ss = b64(b"aes-256-gcm:lab-secret"),
    )
}

/// The lab with the web server, the node and masquerading on the router.
struct World {
    lab: Lab,
    _dns: LabUpstream,
    web: Server,
    node: Server,
    _ca: TestCa,
    _names: NetnsEtc,
}

fn world() -> Option<World> {
    if !lab::can_run() || !common::have("ss-server") || !common::have("curl") {
        eprintln!("SKIPPED: needs the lab, ss-server and curl");
        return None;
    }
    let lab = Lab::up();
    for a in [
        NODE, BY_DOMAIN, DIRECT, BY_ADDRESS, BY_SNI, BLOCKED, BY_MAC, NOT_BY_MAC,
    ] {
        lab.run(
            "up",
            "ip",
            &["addr", "add", &format!("{a}/32"), "dev", "lo"],
        );
    }
    lab.run(
        "up",
        "ip",
        &["addr", "add", &format!("{BY_ADDRESS_V6}/128"), "dev", "lo"],
    );
    lab.nft(
        "router",
        "table ip nat {\n  chain post {\n    type nat hook postrouting priority 100;\n    \
         oifname \"wan0\" masquerade\n  }\n}\n",
    );
    let dns = LabUpstream::start(&lab, RECORDS);
    let ca = TestCa::new("web");
    let (cert, key) = ca.server("web", &["DNS:sni.example"]);
    let script = lab::repo().join("tests/servers/web.py");
    let web = Server::start(
        &lab,
        "up",
        "web",
        "python3",
        &[
            "-u",
            script.to_str().unwrap(),
            cert.to_str().unwrap(),
            key.to_str().unwrap(),
        ],
        &[],
    )
    .wait_tcp(&lab, "up", BY_DOMAIN, 80);
    // The node's own resolver knows the names the relay sends it.
    let names = lab.upstream_hosts(&[(BY_DOMAIN, "www.proxied.example"), (BY_SNI, "sni.example")]);
    let node = proxies::ss_server(&lab, "up", NODE, 8388, "aes-256-gcm", "lab-secret");
    Some(World {
        lab,
        _dns: dns,
        web,
        node,
        _ca: ca,
        _names: names,
    })
}

/// The client's MAC address, as the router's bridge sees it.
fn client_mac(w: &World) -> String {
    let link = w.lab.run("client", "ip", &["-o", "link", "show", "eth0"]);
    link.split("link/ether ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .expect("the client's MAC")
        .to_string()
}

fn start(w: &World, fail_closed: bool) -> Dae {
    let dae = Dae::start_in(
        Some(&w.lab.ns("router")),
        &rules(&client_mac(w), fail_closed),
        &[],
    );
    // The node is alive once the health check went through it.
    let alive = wait_until(Duration::from_secs(15), || {
        dae.status()["groups"][0]["nodes"][0]["tcp4"]["alive"] == true
    });
    assert!(alive, "node never alive: {}\n{}", dae.status(), dae.log());
    dae
}

/// The client resolves `name` through dae (the query is intercepted).
fn resolve(w: &World, name: &str) {
    let q = query(name, RecordType::A, true);
    let server = lab::dns(UPSTREAM_V4);
    let got = w.lab.within("client", move || {
        udp_exchange_from(server, &q, Duration::from_secs(5))
    });
    assert!(got.is_some(), "no answer for {name}");
}

/// `curl` from the client: the web server's line (`peer=... host=...`),
/// or None when the connection failed.
fn curl(w: &World, args: &[&str]) -> Option<String> {
    let out = w
        .lab
        .cmd("client", "curl")
        .args(["-sS", "--max-time", "5"])
        .args(args)
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.success() && text.starts_with("peer=")).then_some(text)
}

fn peer(line: &str) -> &str {
    line.trim_start_matches("peer=")
        .split(' ')
        .next()
        .unwrap_or_default()
}

fn relayed(dae: &Dae, via: &str) -> u64 {
    dae.status()["relay"]["tcp"][via]["total"]
        .as_u64()
        .unwrap_or(0)
}

fn datapath(dae: &Dae, counter: &str) -> u64 {
    dae.status()["datapath"][counter].as_u64().unwrap_or(0)
}

/// Whether `line` came through the node: from the upstream namespace's own
/// addresses, not from the router.
fn through_node(line: &str) -> bool {
    let p = peer(line);
    p != ROUTER_WAN_V4 && (p.starts_with("203.0.113.") || p.starts_with("2001:db8:3::"))
}

#[test]
fn lan_tcp_is_routed_in_the_kernel_and_proxied_through_the_node() {
    let Some(w) = world() else { return };
    let dae = start(&w, false);

    // By the domain dae's DNS answered: through the node.
    resolve(&w, "www.proxied.example");
    let line = curl(
        &w,
        &[
            "--resolve",
            &format!("www.proxied.example:80:{BY_DOMAIN}"),
            "http://www.proxied.example/by-domain",
        ],
    )
    .unwrap_or_else(|| panic!("no answer by domain\n{}", dae.log()));
    assert!(through_node(&line), "{line}");
    assert!(line.contains("host=www.proxied.example"), "{line}");
    // The sniffed name went to the node, which looked it up itself.
    assert!(
        w.node.log().contains("connect to www.proxied.example:80"),
        "the node's log: {}",
        w.node.log()
    );
    let via_node = relayed(&dae, "ss1");
    assert!(via_node >= 1, "{}", dae.status());

    // A direct name: from the router's WAN address, no relay.
    resolve(&w, "www.direct.example");
    let direct_before = datapath(&dae, "flows_direct");
    let line = curl(
        &w,
        &[
            "--resolve",
            &format!("www.direct.example:80:{DIRECT}"),
            "http://www.direct.example/direct",
        ],
    )
    .expect("direct answer");
    assert_eq!(peer(&line), ROUTER_WAN_V4, "{line}");
    assert_eq!(
        relayed(&dae, "ss1"),
        via_node,
        "the relay moved for a direct flow"
    );
    assert_eq!(
        relayed(&dae, "direct"),
        0,
        "a direct flow went through userspace"
    );
    assert!(datapath(&dae, "flows_direct") > direct_before);

    // By address, IPv4 and IPv6.
    let line = curl(&w, &[&format!("http://{BY_ADDRESS}/by-address")]).expect("by address");
    assert!(through_node(&line), "{line}");
    // No name in the request (the Host is an address): the node gets the
    // address.
    assert!(
        w.node
            .log()
            .contains(&format!("connect to {BY_ADDRESS}:80")),
        "the node's log: {}",
        w.node.log()
    );
    let line = curl(
        &w,
        &["-g", &format!("http://[{BY_ADDRESS_V6}]/by-address-v6")],
    )
    .expect("by address, IPv6");
    assert!(through_node(&line), "{line}");

    // By port, and by the client's MAC address.
    let line = curl(&w, &[&format!("http://{DIRECT}:8080/by-port")]).expect("by port");
    assert!(through_node(&line), "{line}");
    let line = curl(&w, &[&format!("http://{BY_MAC}/by-mac")]).expect("by MAC");
    assert!(through_node(&line), "{line}");
    let line = curl(&w, &[&format!("http://{NOT_BY_MAC}/not-by-mac")]).expect("not by MAC");
    assert_eq!(peer(&line), ROUTER_WAN_V4, "{line}");

    // Never resolved through dae: the TLS server name decides.
    let sniffed_before = datapath(&dae, "flows_sniffed");
    let line = curl(
        &w,
        &[
            "-k",
            "--resolve",
            &format!("sni.example:443:{BY_SNI}"),
            "https://sni.example/by-sni",
        ],
    )
    .expect("by SNI");
    assert!(through_node(&line), "{line}");
    assert!(
        w.node.log().contains("connect to sni.example:443"),
        "the node's log: {}",
        w.node.log()
    );
    assert!(datapath(&dae, "flows_sniffed") > sniffed_before);

    // Blocked: dropped in the kernel (the rule comes before any that
    // looks at domains, so nothing waits for a sniffed name).
    assert!(curl(&w, &["--max-time", "2", &format!("http://{BLOCKED}/")]).is_none());
    assert!(datapath(&dae, "flows_blocked") >= 1);

    // A large answer comes through whole.
    let out = w
        .lab
        .cmd("client", "curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            &format!("http://{BY_ADDRESS}/big"),
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(out.stdout.len() > 1024 * 1024, "{}", out.stdout.len());

    // New rules apply to new flows at once.
    let reload = rules(&client_mac(&w), false).replace(
        &format!("dip({BY_ADDRESS}, {BY_ADDRESS_V6}) -> proxy"),
        &format!("dip({BY_ADDRESS}, {BY_ADDRESS_V6}) -> direct"),
    );
    dae.reload(&reload);
    let line = curl(&w, &[&format!("http://{BY_ADDRESS}/after-reload")]).expect("after reload");
    assert_eq!(peer(&line), ROUTER_WAN_V4, "{line}");

    // New domain rules count for the names the LAN resolved before the
    // reload: the kernel is taught the cached answers again. (The request
    // names no host, so only what DNS taught can route it.)
    let reload = reload.replace(
        "domain(suffix: proxied.example) -> proxy",
        "domain(suffix: direct.example) -> proxy",
    );
    assert!(dae.reload(&reload).contains("reloaded"), "{}", dae.log());
    let line = curl(&w, &[&format!("http://{DIRECT}/relearned")]).expect("after the domain reload");
    assert!(through_node(&line), "{line}\n{}", dae.log());
    assert!(
        dae.log()
            .contains("cached answer(s) taught to the kernel again"),
        "{}",
        dae.log()
    );
}

#[test]
fn a_group_without_a_live_node_refuses_and_never_goes_direct() {
    let Some(mut w) = world() else { return };
    let dae = start(&w, false);
    w.node.stop();
    let down = wait_until(Duration::from_secs(15), || {
        dae.status()["groups"][0]["nodes"][0]["tcp4"]["alive"] == false
    });
    assert!(down, "{}", dae.status());
    let got = curl(&w, &[&format!("http://{BY_ADDRESS}/dead-node")]);
    assert!(got.is_none(), "answered without a node: {got:?}");
    assert!(
        !w.web.log().contains("path=/dead-node"),
        "the flow reached the server: {}",
        w.web.log()
    );
    assert!(dae.status()["relay"]["refused_no_node"].as_u64() >= Some(1));
}

#[test]
fn kill_9_fails_open_or_closed_as_configured() {
    let Some(w) = world() else { return };
    for fail_closed in [false, true] {
        let dae = start(&w, fail_closed);
        dae.kill9();
        // Direct flows work either way.
        let line = curl(&w, &[&format!("http://{DIRECT}/after-kill")]).expect("direct");
        assert_eq!(peer(&line), ROUTER_WAN_V4, "{line}");
        let proxied = curl(
            &w,
            &[&format!("http://{BY_ADDRESS}/after-kill-{fail_closed}")],
        );
        if fail_closed {
            assert!(
                proxied.is_none(),
                "fail_closed let a proxied flow out: {proxied:?}"
            );
        } else {
            let line = proxied.expect("fail open: proxied flows go direct");
            assert_eq!(peer(&line), ROUTER_WAN_V4, "{line}");
        }
    }
}

/// Rule sets in the namespace lab, end to end: `qname(geosite:...) ->
/// reject` answers the client's query empty, and `dip(geoip:...)` sends a
/// flow the fallback would have sent direct through the node, in the
/// kernel.
#[test]
fn geosite_rejects_and_geoip_routes_the_lans_traffic() {
    let Some(w) = world() else { return };
    let data = TempDir::new("lab-geodata");
    std::fs::write(
        data.path("geosite.dat"),
        dat::geosite(&[(
            "ads",
            vec![dat::domain(dat::Kind::Domain, "proxied.example", &[])],
        )]),
    )
    .unwrap();
    std::fs::write(
        data.path("geoip.dat"),
        dat::geoip(&[("lab", vec![(DIRECT.parse().unwrap(), 32)], false)]),
    )
    .unwrap();
    let config = rules(&client_mac(&w), false)
        .replace(
            "\toption fail_closed",
            &format!(
                "\toption geodata_dir '{}'\n\toption fail_closed",
                data.0.display()
            ),
        )
        .replace(
            "\toption request_fallback 'lab'\n",
            "\toption request_fallback 'lab'\n\tlist request_rule 'qname(geosite:ads) -> reject'\n",
        )
        .replace(
            "\tlist rule 'dip(203.0.113.87) -> block'\n",
            "\tlist rule 'dip(203.0.113.87) -> block'\n\tlist rule 'dip(geoip:lab) -> proxy'\n",
        );
    assert!(config.contains("geoip:lab") && config.contains("geosite:ads"));
    let dae = Dae::start_in(Some(&w.lab.ns("router")), &config, &[]);
    let alive = wait_until(Duration::from_secs(15), || {
        dae.status()["groups"][0]["nodes"][0]["tcp4"]["alive"] == true
    });
    assert!(alive, "node never alive: {}\n{}", dae.status(), dae.log());

    // The client's query for a name of geosite:ads: answered, empty.
    let ask = |name: &str| {
        let q = query(name, RecordType::A, true);
        let server = lab::dns(UPSTREAM_V4);
        let (reply, _) = w
            .lab
            .within("client", move || {
                udp_exchange_from(server, &q, Duration::from_secs(5))
            })
            .unwrap_or_else(|| panic!("no answer for {name}"));
        Message::from_vec(&reply).unwrap().answers.len()
    };
    assert_eq!(ask("www.proxied.example."), 0, "{}", dae.log());
    assert_eq!(ask("www.direct.example."), 1, "{}", dae.log());

    // An address of geoip:lab: through the node, where the fallback
    // (direct) would have sent it without the rule set.
    let line = curl(&w, &[&format!("http://{DIRECT}/geoip")]).expect("by geoip");
    assert!(through_node(&line), "{line}\n{}", dae.log());
}
