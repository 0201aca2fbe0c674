//! The TC program routes LAN flows as the userspace evaluator
//! (`dae::routing::Rules`) says: the rules compiled into the program's maps
//! (`dae::routing::kernel`) are loaded into the real kernel and the program
//! is run on crafted frames (BPF_PROG_TEST_RUN); its verdict, read from the
//! flow map, must equal the evaluator's on random flows over every kind of
//! condition, negations and the fallback.
//!
//! Needs root (loading eBPF); skips loudly without it.

mod common;
#[path = "common/dat.rs"]
mod dat;

use std::net::{IpAddr, SocketAddr};

use common::Rng;
use dae::config::{parse_str, Config};
use dae::ebpf::shared::{self, FlowKey, FlowVerdict, Settings, TARGET_BLOCK, TARGET_GROUP};
use dae::ebpf::{AttachMode, Datapath, Object};
use dae::routing::kernel::{bypass_prefixes, Compiled, KernelRouting, Learner};
use dae::routing::{Flow, Lan, Rules, Target, L4};

const TC_ACT_OK: u32 = 0;
const TC_ACT_SHOT: u32 = 2;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A config whose rules use every routing function.
const RULES: &str = r#"
config dae 'config'
	list lan_interface 'br-lan'

config node 'n1'
	option link 'socks5://203.0.113.80:1080'

config group 'proxy'
	list node 'n1'

config group 'other'
	list node 'n1'

config routing 'routing'
	list rule 'dip(203.0.113.7) -> block'
	list rule 'dip(203.0.113.0/28) && !dport(80) -> proxy'
	list rule 'sip(192.0.2.64/26) && dport(8000-8100, 443) -> other'
	list rule 'mac(02:00:5e:00:53:01) && !l4proto(udp) -> proxy'
	list rule 'dscp(46) -> block'
	list rule 'domain(suffix: proxied.example) -> proxy'
	list rule 'domain(full: blocked.example, keyword: ads) && ipversion(4) -> block'
	list rule 'sport(50000-50010) && !sip(192.0.2.70) -> other'
	list rule 'pname(curl) -> block'
	list rule '!pname(curl) && dip(2001:db8:1::/48) -> other'
	list rule 'ipversion(6) && !dip(2001:db8::/32) -> proxy'
	option fallback 'direct'
"#;

fn config(text: &str) -> Config {
    parse_str(text).unwrap_or_else(|e| panic!("config: {e:?}"))
}

fn groups(c: &Config) -> Vec<String> {
    c.groups.iter().map(|g| g.name.clone()).collect()
}

fn target_code(t: Target) -> u32 {
    match t {
        Target::Direct => shared::TARGET_DIRECT,
        Target::Block => TARGET_BLOCK,
        Target::Group(i) => TARGET_GROUP + i as u32,
    }
}

struct TestFlow {
    src: SocketAddr,
    dst: SocketAddr,
    mac: [u8; 6],
    dscp: u8,
    /// TCP: a SYN (else a later segment). UDP has none.
    syn: bool,
    l4: L4,
}

fn ip_proto(l4: L4) -> u8 {
    match l4 {
        L4::Tcp => 6,
        L4::Udp => 17,
    }
}

/// An Ethernet frame of `f`: IPv4 or IPv6, then a TCP or UDP header.
fn frame(f: &TestFlow) -> Vec<u8> {
    let mut p = vec![0x02, 0, 0x5e, 0, 0x53, 0xfe];
    p.extend_from_slice(&f.mac);
    let mut l4 = Vec::new();
    l4.extend_from_slice(&f.src.port().to_be_bytes());
    l4.extend_from_slice(&f.dst.port().to_be_bytes());
    match f.l4 {
        L4::Tcp => {
            l4.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0]);
            l4.push(5 << 4);
            l4.push(if f.syn { 0x02 } else { 0x10 });
            l4.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]);
        }
        L4::Udp => {
            // Length, checksum (none), then a payload.
            l4.extend_from_slice(&[0, 8 + 4, 0, 0]);
            l4.extend_from_slice(b"ping");
        }
    }
    let proto = ip_proto(f.l4);
    match (f.src.ip(), f.dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            p.extend_from_slice(&[0x08, 0x00]);
            p.extend_from_slice(&[0x45, f.dscp << 2]);
            p.extend_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, 0, 64, proto, 0, 0]);
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            p.extend_from_slice(&[0x86, 0xdd]);
            p.extend_from_slice(&[0x60 | (f.dscp << 2) >> 4, ((f.dscp << 2) & 0x0f) << 4, 0, 0]);
            p.extend_from_slice(&(l4.len() as u16).to_be_bytes());
            p.extend_from_slice(&[proto, 64]);
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
        }
        _ => unreachable!("one family per flow"),
    }
    p.extend_from_slice(&l4);
    p
}

fn key(f: &TestFlow) -> FlowKey {
    let addr = |ip: IpAddr| {
        let mut a = [0u8; 16];
        match ip {
            IpAddr::V4(v4) => a[..4].copy_from_slice(&v4.octets()),
            IpAddr::V6(v6) => a = v6.octets(),
        }
        a
    };
    FlowKey {
        saddr: addr(f.src.ip()),
        daddr: addr(f.dst.ip()),
        sport: u16::from_ne_bytes(f.src.port().to_be_bytes()),
        dport: u16::from_ne_bytes(f.dst.port().to_be_bytes()),
        proto: ip_proto(f.l4),
        ipv6: u8::from(f.src.is_ipv6()),
        reserved: [0; 2],
    }
}

/// The program, loaded with `text`'s routing in force.
struct Program {
    dp: Datapath,
    routing: KernelRouting,
    flows: aya::maps::HashMap<aya::maps::MapData, FlowKey, FlowVerdict>,
    learner: Learner,
}

impl Program {
    fn load(text: &str, fail_closed: bool) -> Program {
        let c = config(text);
        let settings = Settings {
            // A port nothing listens on: proxied flows find no relay.
            listener_port: 1,
            tproxy_mark: 0x0800_0000,
            so_mark: 0x0800_0001,
            fail_closed: u32::from(fail_closed),
            routing_slot: 0,
        };
        // The object built into the binary, as dae loads it.
        let mut dp = Datapath::load(&Object::Embedded, settings, AttachMode::Netlink)
            .expect("load the TC program");
        let mut routing = KernelRouting::new();
        routing
            .install(
                &mut dp,
                Compiled::new(&c.routing, &groups(&c)),
                &bypass_prefixes(&[]),
            )
            .expect("install the rules");
        let flows = aya::maps::HashMap::try_from(dp.take_map(shared::FLOWS_MAP).unwrap()).unwrap();
        let mut learner = Learner::new(dp.take_map(shared::DOMAINS_MAP).unwrap()).unwrap();
        learner.follow(&routing);
        Program {
            dp,
            routing,
            flows,
            learner,
        }
    }

    fn reinstall(&mut self, text: &str) {
        let c = config(text);
        self.routing
            .install(
                &mut self.dp,
                Compiled::new(&c.routing, &groups(&c)),
                &bypass_prefixes(&[]),
            )
            .expect("install the new rules");
        self.learner.follow(&self.routing);
    }

    /// Runs the program on `f`: its return code and the flow's verdict.
    fn run(&mut self, f: &TestFlow) -> (u32, Option<u32>) {
        let rc = self.dp.run_on(&frame(f)).expect("run the program");
        let verdict = self.flows.get(&key(f), 0).ok().map(|v| v.target);
        (rc, verdict)
    }
}

fn lan(f: &TestFlow) -> Lan {
    Lan {
        source: f.src,
        mac: f.mac,
        dscp: f.dscp,
    }
}

/// Runs the program on `f` and checks its verdict is the userspace
/// evaluator's, with the name `learned` for its destination if any; the
/// verdict and the program's return code.
fn agree(
    prog: &mut Program,
    rules: &Rules,
    learned: &[(&str, &str)],
    f: &TestFlow,
) -> (Target, u32) {
    let domain = learned
        .iter()
        .find(|(ip, _)| ip.parse::<IpAddr>().unwrap() == f.dst.ip())
        .map(|(_, n)| *n);
    let expect = rules.decide(&Flow {
        remote: f.dst,
        l4: f.l4,
        domain,
        lan: Some(lan(f)),
    });
    // A UDP flow has no SYN to say it is new: one of an earlier random
    // flow's 5-tuple (another MAC or DSCP) would keep that one's verdict.
    if f.l4 == L4::Udp {
        let _ = prog.flows.remove(&key(f));
    }
    let (rc, verdict) = prog.run(f);
    assert_eq!(
        verdict,
        Some(target_code(expect)),
        "flow {} -> {} mac {:02x?} dscp {} domain {domain:?}: kernel {verdict:?}, userspace {expect:?}",
        f.src,
        f.dst,
        f.mac,
        f.dscp
    );
    (expect, rc)
}

#[test]
fn the_program_decides_as_the_userspace_evaluator_on_random_flows() {
    if !is_root() {
        eprintln!("SKIPPED: loading eBPF needs root");
        return;
    }
    let c = config(RULES);
    let rules = Rules::new(&c.routing, &groups(&c));
    let mut prog = Program::load(RULES, false);

    // Names learned from DNS answers for some destinations.
    let learned: &[(&str, &str)] = &[
        ("203.0.113.100", "www.proxied.example"),
        ("203.0.113.101", "blocked.example"),
        ("203.0.113.102", "cdn.ads.example"),
        ("203.0.113.103", "plain.example"),
        ("2001:db8:2::100", "v6.proxied.example"),
        ("2001:db8:2::101", "blocked.example"),
    ];
    for (ip, name) in learned {
        prog.learner.learn(name, &[ip.parse().unwrap()], 300);
    }

    let v4_dst = [
        "203.0.113.7",
        "203.0.113.1",
        "203.0.113.15",
        "203.0.113.16",
        "203.0.113.100",
        "203.0.113.101",
        "203.0.113.102",
        "203.0.113.103",
        "198.51.100.9",
    ];
    let v4_src = [
        "192.0.2.10",
        "192.0.2.64",
        "192.0.2.70",
        "192.0.2.127",
        "192.0.2.128",
    ];
    let v6_dst = [
        "2001:db8:1::1",
        "2001:db8:1:ffff::9",
        "2001:db8:2::100",
        "2001:db8:2::101",
        "2001:db8:3::1",
        "2606:4700::1111",
    ];
    let v6_src = ["2001:db8:ff::10", "2001:db8:ff::11"];
    let ports: [u16; 10] = [80, 443, 7999, 8000, 8050, 8100, 8101, 50000, 50010, 50011];
    let macs = [[2, 0, 0x5e, 0, 0x53, 1], [2, 0, 0x5e, 0, 0x53, 2]];
    let dscps = [0u8, 46, 10];

    let mut rng = Rng(0x5eed_0000_dae0_0001);
    let mut seen = std::collections::HashSet::new();
    for i in 0..3000u32 {
        let v6 = rng.next() % 4 == 0;
        let (src, dst) = if v6 {
            (*rng.pick(&v6_src), *rng.pick(&v6_dst))
        } else {
            (*rng.pick(&v4_src), *rng.pick(&v4_dst))
        };
        let f = TestFlow {
            // Distinct source ports keep flows apart.
            src: SocketAddr::new(
                src.parse().unwrap(),
                if rng.next() % 3 == 0 {
                    *rng.pick(&ports)
                } else {
                    20000 + (i % 20000) as u16
                },
            ),
            dst: SocketAddr::new(dst.parse().unwrap(), *rng.pick(&ports)),
            mac: *rng.pick(&macs),
            dscp: *rng.pick(&dscps),
            syn: true,
            l4: *rng.pick(&[L4::Tcp, L4::Tcp, L4::Udp]),
        };
        let (expect, rc) = agree(&mut prog, &rules, learned, &f);
        let want_rc = if expect == Target::Block {
            TC_ACT_SHOT
        } else {
            TC_ACT_OK
        };
        assert_eq!(rc, want_rc, "{} -> {}", f.src, f.dst);
        seen.insert(format!("{:?} {expect:?}", f.l4));
    }
    // Every outcome came up.
    for t in ["Direct", "Block", "Group(0)", "Group(1)"] {
        for l4 in ["Tcp", "Udp"] {
            let t = format!("{l4} {t}");
            assert!(seen.contains(&t), "no random flow went {t}: {seen:?}");
        }
    }
}

#[test]
fn dns_bypass_and_later_packets_and_reloads() {
    if !is_root() {
        eprintln!("SKIPPED: loading eBPF needs root");
        return;
    }
    let mut prog = Program::load(RULES, false);
    let flow = |src: &str, dst: &str, syn: bool| TestFlow {
        src: src.parse().unwrap(),
        dst: dst.parse().unwrap(),
        mac: [2, 0, 0x5e, 0, 0x53, 9],
        dscp: 0,
        syn,
        l4: L4::Tcp,
    };
    let udp = |src: &str, dst: &str| TestFlow {
        syn: false,
        l4: L4::Udp,
        ..flow(src, dst, false)
    };

    // DNS is the DNS path's, never routed.
    let dns = flow("192.0.2.10:40000", "203.0.113.1:53", true);
    assert_eq!(prog.run(&dns).1, None);
    // The router's own addresses and loopback are never routed.
    let local = flow("192.0.2.10:40001", "127.0.0.1:443", true);
    assert_eq!(prog.run(&local), (TC_ACT_OK, None));

    // A proxied flow's SYN finds no relay: fail open passes it.
    let proxied = flow("192.0.2.10:40002", "203.0.113.1:443", true);
    assert_eq!(prog.run(&proxied), (TC_ACT_OK, Some(TARGET_GROUP)));

    // A flow first seen mid-way (no SYN) is decided all the same.
    let later = flow("192.0.2.10:40003", "203.0.113.7:443", false);
    assert_eq!(prog.run(&later), (TC_ACT_SHOT, Some(TARGET_BLOCK)));

    // UDP: DNS stays the DNS path's; other datagrams are routed, and a
    // proxied one finding no relay passes (fail open).
    assert_eq!(prog.run(&udp("192.0.2.10:40100", "203.0.113.1:53")).1, None);
    let udp_proxied = udp("192.0.2.10:40101", "203.0.113.9:443");
    assert_eq!(prog.run(&udp_proxied), (TC_ACT_OK, Some(TARGET_GROUP)));
    let udp_blocked = udp("192.0.2.10:40102", "203.0.113.7:443");
    assert_eq!(prog.run(&udp_blocked), (TC_ACT_SHOT, Some(TARGET_BLOCK)));
    // Sniffing: a domain rule could decide these flows, whose addresses
    // no DNS answer named. TCP is handed over to sniff on any port, UDP
    // only to 443 (a QUIC Initial is the one place UDP names a domain).
    let sniffs = |prog: &mut Program, f: &TestFlow| {
        assert_eq!(prog.run(f).1, Some(shared::TARGET_DIRECT));
        prog.flows.get(&key(f), 0).unwrap().sniff != 0
    };
    let tcp_8443 = flow("192.0.2.10:40103", "198.51.100.9:8443", true);
    let udp_443 = udp("192.0.2.10:40104", "198.51.100.9:443");
    let udp_8443 = udp("192.0.2.10:40105", "198.51.100.9:8443");
    assert!(sniffs(&mut prog, &tcp_8443));
    assert!(sniffs(&mut prog, &udp_443));
    assert!(!sniffs(&mut prog, &udp_8443));

    // New rules: new SYNs follow them, a known flow keeps its verdict.
    let before = flow("192.0.2.10:40004", "203.0.113.9:443", true);
    assert_eq!(prog.run(&before).1, Some(TARGET_GROUP));
    prog.reinstall(&RULES.replace(
        "list rule 'dip(203.0.113.0/28) && !dport(80) -> proxy'",
        "list rule 'dip(203.0.113.0/28) && !dport(80) -> block'",
    ));
    let after = flow("192.0.2.10:40005", "203.0.113.9:443", true);
    assert_eq!(prog.run(&after), (TC_ACT_SHOT, Some(TARGET_BLOCK)));
    let before_again = flow("192.0.2.10:40004", "203.0.113.9:443", false);
    assert_eq!(prog.run(&before_again), (TC_ACT_OK, Some(TARGET_GROUP)));
    // Its SYN again (a new connection on the same port) decides anew.
    assert_eq!(prog.run(&before).1, Some(TARGET_BLOCK));
    // A UDP flow has no SYN: it follows the new rules at its next
    // datagram.
    assert_eq!(prog.run(&udp_proxied), (TC_ACT_SHOT, Some(TARGET_BLOCK)));

    // Learned names stop counting when their domain rules change.
    prog.learner.learn(
        "a.proxied.example",
        &["203.0.113.200".parse().unwrap()],
        300,
    );
    let named = flow("192.0.2.10:40006", "203.0.113.200:443", true);
    assert_eq!(prog.run(&named).1, Some(TARGET_GROUP));
    prog.reinstall(&RULES.replace("suffix: proxied.example", "suffix: elsewhere.example"));
    let named_again = flow("192.0.2.10:40007", "203.0.113.200:443", true);
    assert_eq!(prog.run(&named_again).1, Some(shared::TARGET_DIRECT));
}

#[test]
fn fail_closed_drops_proxied_flows_without_a_relay() {
    if !is_root() {
        eprintln!("SKIPPED: loading eBPF needs root");
        return;
    }
    let mut prog = Program::load(RULES, true);
    let f = TestFlow {
        src: "192.0.2.10:40010".parse().unwrap(),
        dst: "203.0.113.1:443".parse().unwrap(),
        mac: [2, 0, 0x5e, 0, 0x53, 9],
        dscp: 0,
        syn: true,
        l4: L4::Tcp,
    };
    assert_eq!(prog.run(&f), (TC_ACT_SHOT, Some(TARGET_GROUP)));
    // UDP too: a proxied flow with no relay socket is dropped.
    let udp = TestFlow {
        syn: false,
        l4: L4::Udp,
        ..f
    };
    assert_eq!(prog.run(&udp), (TC_ACT_SHOT, Some(TARGET_GROUP)));
    // A direct flow is not the failure policy's business.
    let direct = TestFlow {
        dst: "198.51.100.9:443".parse().unwrap(),
        ..f
    };
    assert_eq!(prog.run(&direct), (TC_ACT_OK, Some(shared::TARGET_DIRECT)));
}

/// Rule sets from dat files (`geoip:`, `geosite:`) decide in the kernel as
/// in user space: the categories are expanded into LPM prefixes (a
/// `reverse_match` one as the prefixes of its complement) and the
/// geosite's domains set the bits of the DNS-learned addresses.
#[test]
fn rule_sets_decide_in_the_kernel_as_in_userspace() {
    if !is_root() {
        eprintln!("SKIPPED: loading eBPF needs root");
        return;
    }
    let dir = common::TempDir::new("kernel-geodata");
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    std::fs::write(
        dir.path("geoip.dat"),
        dat::geoip(&[
            (
                "lab",
                vec![
                    (ip("203.0.113.0"), 26),
                    (ip("203.0.113.200"), 30),
                    (ip("2001:db8:1::"), 48),
                ],
                false,
            ),
            ("clients", vec![(ip("192.0.2.64"), 26)], false),
            ("rev", vec![(ip("2001:db8::"), 33)], true),
        ]),
    )
    .unwrap();
    use dat::{domain, Kind};
    std::fs::write(
        dir.path("geosite.dat"),
        dat::geosite(&[(
            "ads",
            vec![
                domain(Kind::Domain, "ads.example", &[]),
                domain(Kind::Full, "track.example", &[]),
                domain(Kind::Plain, "beacon", &[]),
            ],
        )]),
    )
    .unwrap();
    let text = format!(
        "config dae 'config'\n\toption geodata_dir '{}'\n\
         config node 'n1'\n\toption link 'socks5://203.0.113.80:1080'\n\
         config group 'proxy'\n\tlist node 'n1'\n\
         config group 'other'\n\tlist node 'n1'\n\
         config routing 'routing'\n\
         \tlist rule 'domain(geosite:ads) -> block'\n\
         \tlist rule 'dip(geoip:lab) && !dport(80) -> proxy'\n\
         \tlist rule 'sip(geoip:clients) && dip(geoip:lab) -> other'\n\
         \tlist rule 'ipversion(6) && dip(geoip:rev) -> other'\n\
         \toption fallback 'direct'\n",
        dir.0.display()
    );
    let c = config(&text);
    let rules = Rules::new(&c.routing, &groups(&c));
    let mut prog = Program::load(&text, false);
    let learned: &[(&str, &str)] = &[
        ("203.0.113.5", "x.ads.example"),
        ("198.51.100.9", "track.example"),
        ("198.51.100.10", "my-beacon.example"),
        ("2001:db8:1::5", "plain.example"),
    ];
    for (a, name) in learned {
        prog.learner.learn(name, &[a.parse().unwrap()], 300);
    }
    let dst4 = [
        "203.0.113.0",
        "203.0.113.5",
        "203.0.113.63",
        "203.0.113.64",
        "203.0.113.199",
        "203.0.113.200",
        "203.0.113.203",
        "203.0.113.204",
        "198.51.100.9",
        "198.51.100.10",
        "198.51.100.11",
    ];
    let src4 = ["192.0.2.10", "192.0.2.64", "192.0.2.127", "192.0.2.128"];
    let dst6 = [
        "2001:db8:1::5",
        "2001:db8:1:ffff::1",
        "2001:db8:2::1",
        "2001:db8:7fff::1",
        "2001:db8:8000::1",
        "2001:db9::1",
    ];
    let mut rng = Rng(0x5eed_0000_9e0d_a7a1);
    let mut seen = std::collections::HashSet::new();
    for i in 0..2000u32 {
        let v6 = rng.below(3) == 0;
        let (src, dst) = if v6 {
            ("2001:db8:ff::10", *rng.pick(&dst6))
        } else {
            (*rng.pick(&src4), *rng.pick(&dst4))
        };
        let f = TestFlow {
            src: SocketAddr::new(src.parse().unwrap(), 20000 + (i % 20000) as u16),
            dst: SocketAddr::new(dst.parse().unwrap(), *rng.pick(&[80u16, 443])),
            mac: [2, 0, 0x5e, 0, 0x53, 1],
            dscp: 0,
            syn: true,
            l4: *rng.pick(&[L4::Tcp, L4::Tcp, L4::Udp]),
        };
        let (expect, _) = agree(&mut prog, &rules, learned, &f);
        seen.insert(format!("{:?} {expect:?}", f.l4));
    }
    for t in ["Direct", "Block", "Group(0)", "Group(1)"] {
        for l4 in ["Tcp", "Udp"] {
            let t = format!("{l4} {t}");
            assert!(seen.contains(&t), "no random flow went {t}: {seen:?}");
        }
    }
}
