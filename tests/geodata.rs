//! Rule sets from v2ray dat files (`geosite:`, `geoip:`, `ext:`): files
//! written by our own protobuf encoder (`common/dat.rs`), read through the
//! config as `dae validate` and the daemon read them.
//!
//! - the same rule written inline and as a category decides identically on
//!   random names and addresses (routing and DNS rules), for every domain
//!   kind, attribute filters, case, IPv4 and IPv6 networks and
//!   `reverse_match`;
//! - a missing file or category and a corrupt or truncated file are errors
//!   naming the rule, file and category, never a panic;
//! - a set named twice is built once, and a reload reuses it until its file
//!   changes;
//! - end to end with the real binary and unbound: `qname(geosite:...) ->
//!   reject`, `ip(geoip:...)` in a response rule, `dae status`, a reload
//!   with a changed file and one naming a missing category.

mod common;
#[path = "common/dat.rs"]
mod dat;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::rc::Rc;

use common::{answers, ask, have, Dae, Rng, TempDir, Unbound};
use dae::config::{parse_str, Config, DnsMatcher, DnsTarget, DomainPattern, RoutingMatcher};
use dae::controller::rules::{Facts, Rules as DnsRules};
use dae::routing::{Flow, Lan, Rules, Target, L4};
use dat::{domain, Kind};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

fn site_file() -> Vec<u8> {
    let mut out = Vec::new();
    dat::site_entry(
        &mut out,
        "other",
        &[domain(Kind::Domain, "other.example", &[])],
        false,
    );
    dat::site_entry(
        &mut out,
        "Test",
        &[
            domain(Kind::Domain, "Example.COM", &[]),
            domain(Kind::Domain, "sub.example.net.", &[]),
            domain(Kind::Full, "exact.example.org", &[]),
            domain(Kind::Plain, "Tracker", &[]),
            domain(Kind::Regex, r"^ad[0-9]+\.", &[]),
            domain(Kind::Domain, "tagged.example", &["ads"]),
            domain(Kind::Full, "both.example", &["ADS", "!cn"]),
            domain(Kind::Domain, "cn-only.example", &["!cn"]),
        ],
        false,
    );
    // The code after the domains: still found.
    dat::site_entry(
        &mut out,
        "last",
        &[domain(Kind::Domain, "late.example", &[])],
        true,
    );
    out
}

fn v4(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn ip_file() -> Vec<u8> {
    dat::geoip(&[
        (
            "private",
            vec![
                (v4("10.0.0.0"), 8),
                (v4("192.168.0.0"), 16),
                // Host bits set, as some files have them.
                (v4("172.16.5.5"), 12),
                (v4("fc00::"), 7),
                (v4("fe80::"), 10),
            ],
            false,
        ),
        (
            "LAB",
            vec![
                (v4("192.0.2.0"), 24),
                (v4("198.51.100.128"), 25),
                (v4("203.0.113.7"), 32),
                (v4("2001:db8::"), 32),
                (v4("2001:db8::"), 48),
            ],
            false,
        ),
        (
            "rev",
            vec![(v4("192.0.2.0"), 24), (v4("2001:db8:1::"), 48)],
            true,
        ),
    ])
}

/// A directory with geosite.dat, geoip.dat and ext.dat (a copy of the
/// geosite file).
fn data_dir() -> TempDir {
    let dir = TempDir::new("geodata");
    std::fs::write(dir.path("geosite.dat"), site_file()).unwrap();
    std::fs::write(dir.path("geoip.dat"), ip_file()).unwrap();
    std::fs::write(dir.path("ext.dat"), site_file()).unwrap();
    dir
}

fn parse(dir: &Path, body: &str) -> Result<Config, Vec<String>> {
    parse_str(&format!(
        "config dae 'config'\n\toption geodata_dir '{}'\n{body}",
        dir.display()
    ))
    .map_err(|e| e.iter().map(ToString::to_string).collect())
}

fn routing(dir: &Path, rule: &str) -> Rules {
    let c = parse(
        dir,
        &format!("config routing 'routing'\n\tlist rule \"{rule} -> block\"\n"),
    )
    .unwrap_or_else(|e| panic!("{rule}: {e:?}"));
    Rules::new(&c.routing, &[])
}

fn dns(dir: &Path, rule: &str, response: bool) -> DnsRules {
    let opt = if response {
        "response_rule"
    } else {
        "request_rule"
    };
    let c = parse(
        dir,
        &format!("config dns 'dns'\n\tlist {opt} \"{rule} -> reject\"\n"),
    )
    .unwrap_or_else(|e| panic!("{rule}: {e:?}"));
    let rules = if response {
        &c.dns.response_rules
    } else {
        &c.dns.request_rules
    };
    DnsRules::new(rules, DnsTarget::Accept)
}

const LABELS: &[&str] = &[
    "example",
    "com",
    "net",
    "org",
    "sub",
    "exact",
    "tracker",
    "mytracker",
    "ad7",
    "ad",
    "tagged",
    "both",
    "cn-only",
    "other",
    "late",
    "www",
    "x",
    "example-com",
];

/// Random names of 1 to 4 labels from `LABELS`, and the names the rules
/// are about.
fn names() -> Vec<String> {
    let mut rng = Rng(0x5eed_9e05_17e0_0001);
    let mut out: Vec<String> = [
        "example.com",
        "a.example.com",
        "badexample.com",
        "sub.example.net",
        "x.sub.example.net",
        "example.net",
        "exact.example.org",
        "x.exact.example.org",
        "mytracker.net",
        "ad12.example",
        "tagged.example",
        "x.tagged.example",
        "both.example",
        "x.both.example",
        "cn-only.example",
        "late.example",
        "other.example",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for _ in 0..4000 {
        let n = 1 + rng.below(4);
        let labels: Vec<&str> = (0..n).map(|_| *rng.pick(LABELS)).collect();
        out.push(labels.join("."));
    }
    out
}

fn flow_to(name: &str) -> Flow<'_> {
    Flow {
        remote: "203.0.113.1:443".parse().unwrap(),
        l4: L4::Tcp,
        domain: Some(name),
        lan: None,
    }
}

#[test]
fn a_category_decides_as_the_same_rule_written_inline_on_random_names() {
    let dir = data_dir();
    let ext = dir.path("ext.dat");
    let ext_abs = format!("ext:{}:LAST", ext.display());
    let pairs: Vec<(String, &str)> = vec![
        (
            "geosite:TEST".into(),
            r"suffix: example.com, sub.example.net, full: exact.example.org, keyword: tracker, regex: '^ad[0-9]+\.', tagged.example, full: both.example, cn-only.example",
        ),
        (
            "geosite:test@ads".into(),
            "tagged.example, full: both.example",
        ),
        ("geosite:test@ADS@!cn".into(), "full: both.example"),
        (
            "geosite:test@!cn".into(),
            "full: both.example, cn-only.example",
        ),
        ("geosite:other".into(), "other.example"),
        ("ext:ext.dat:last".into(), "late.example"),
        (ext_abs, "late.example"),
        // With inline patterns in the same call.
        (
            "geosite:last, full: x.example".into(),
            "late.example, full: x.example",
        ),
    ];
    let names = names();
    for (set, inline) in &pairs {
        let by_set = routing(&dir.0, &format!("domain({set})"));
        let by_hand = routing(&dir.0, &format!("domain({inline})"));
        let q_set = dns(&dir.0, &format!("qname({set})"), false);
        let q_hand = dns(&dir.0, &format!("qname({inline})"), false);
        let mut hits = 0;
        for n in &names {
            let want = by_hand.decide(&flow_to(n));
            assert_eq!(by_set.decide(&flow_to(n)), want, "domain({set}) on {n}");
            hits += usize::from(want == Target::Block);
            let facts = Facts {
                qname: n,
                qtype: 1,
                upstream: None,
                answer_ips: &[],
            };
            assert_eq!(
                q_set.select(&facts).0,
                q_hand.select(&facts).0,
                "qname({set}) on {n}"
            );
        }
        assert!(
            hits > 0 && hits < names.len(),
            "{set}: {hits} of {} names",
            names.len()
        );
    }
}

/// Random addresses: anywhere, and near the edges of the lab's networks.
fn addresses() -> Vec<IpAddr> {
    let mut rng = Rng(0x5eed_9e01_9000_0002);
    let edges4: [u32; 8] = [
        0x0a00_0000,
        0xac10_0000,
        0xac20_0000,
        0xc0a8_0000,
        0xc000_0200,
        0xc633_6480,
        0xcb00_7107,
        0xc000_0300,
    ];
    let edges6: [u128; 4] = [
        0x2001_0db8 << 96,
        0x2001_0db8_0001 << 80,
        0xfc00 << 112,
        0xfe80 << 112,
    ];
    let mut out = Vec::new();
    for _ in 0..4000 {
        let ip = match rng.below(4) {
            0 => IpAddr::V4(Ipv4Addr::from(rng.next() as u32)),
            1 => {
                let e = *rng.pick(&edges4);
                let d = (rng.next() % 512) as u32;
                IpAddr::V4(Ipv4Addr::from(e.wrapping_add(d).wrapping_sub(256)))
            }
            2 => IpAddr::V6(Ipv6Addr::from(
                u128::from(rng.next()) << 64 | u128::from(rng.next()),
            )),
            _ => {
                let e = *rng.pick(&edges6);
                let d = u128::from(rng.next()) >> rng.below(64);
                IpAddr::V6(Ipv6Addr::from(if rng.below(2) == 0 {
                    e.wrapping_add(d)
                } else {
                    e.wrapping_sub(d)
                }))
            }
        };
        out.push(ip);
    }
    out
}

#[test]
fn a_geoip_category_decides_as_the_same_networks_written_inline() {
    let dir = data_dir();
    let pairs = [
        (
            "geoip:private",
            "10.0.0.0/8, 192.168.0.0/16, 172.16.0.0/12, fc00::/7, fe80::/10",
        ),
        (
            "geoip:lab",
            "192.0.2.0/24, 198.51.100.128/25, 203.0.113.7, 2001:db8::/32",
        ),
        (
            "ext:geoip.dat:Lab, 10.1.2.3",
            "192.0.2.0/24, 198.51.100.128/25, 203.0.113.7, 2001:db8::/32, 10.1.2.3",
        ),
    ];
    let addrs = addresses();
    let lan = |ip: IpAddr| Lan {
        source: SocketAddr::new(ip, 40000),
        mac: [2, 0, 0x5e, 0, 0x53, 1],
        dscp: 0,
    };
    let check = |set_rule: &str, hand_rule: &str| {
        let by_set = routing(&dir.0, set_rule);
        let by_hand = routing(&dir.0, hand_rule);
        let mut hits = 0;
        for &ip in &addrs {
            let f = Flow {
                remote: SocketAddr::new(ip, 443),
                l4: L4::Tcp,
                domain: None,
                lan: Some(lan(ip)),
            };
            let want = by_hand.decide(&f);
            assert_eq!(by_set.decide(&f), want, "{set_rule} on {ip}");
            hits += usize::from(want == Target::Block);
        }
        assert!(hits > 0 && hits < addrs.len(), "{set_rule}: {hits}");
    };
    for (set, inline) in pairs {
        check(&format!("dip({set})"), &format!("dip({inline})"));
        check(&format!("sip({set})"), &format!("sip({inline})"));
        let by_set = dns(&dir.0, &format!("ip({set})"), true);
        let by_hand = dns(&dir.0, &format!("ip({inline})"), true);
        for pair in addrs.chunks(2) {
            let facts = Facts {
                qname: "x.example",
                qtype: 1,
                upstream: Some("asis"),
                answer_ips: pair,
            };
            assert_eq!(
                by_set.select(&facts).0,
                by_hand.select(&facts).0,
                "ip({set}) on {pair:?}"
            );
        }
    }
    // reverse_match: every address the networks do not hold.
    check("dip(geoip:rev)", "!dip(192.0.2.0/24, 2001:db8:1::/48)");
}

fn error_of(dir: &Path, body: &str) -> String {
    match parse(dir, body) {
        Ok(_) => panic!("accepted: {body}"),
        Err(e) => {
            assert_eq!(e.len(), 1, "{e:#?}");
            e[0].clone()
        }
    }
}

#[test]
fn missing_and_broken_files_are_errors_naming_rule_file_and_category() {
    let dir = data_dir();
    let site = dir.path("geosite.dat").display().to_string();
    let rule = |r: &str| format!("config routing 'routing'\n\tlist rule '{r} -> block'\n");
    for (body, needles) in [
        (
            rule("domain(geosite:nope)"),
            vec![
                "domain(geosite:nope)",
                "geosite:nope",
                &site,
                "no such category",
                "3 in the file",
            ],
        ),
        (
            "config dns 'dns'\n\tlist request_rule 'qname(ext:absent.dat:cn) -> reject'\n"
                .to_string(),
            vec!["qname(ext:absent.dat:cn)", "absent.dat", "No such file"],
        ),
        (
            rule("dip(geoip:test)"),
            vec!["geoip:test", "geoip.dat", "no such category"],
        ),
        (
            rule("dip(geoip:lab@x)"),
            vec!["geoip:lab@x", "no '@' attributes"],
        ),
        (rule("domain(geosite:test@)"), vec!["an empty attribute"]),
        (rule("domain(ext:cn)"), vec!["ext:FILE:CATEGORY"]),
        (rule("dport(geoip:lab)"), vec!["rule sets are taken by"]),
    ] {
        let e = error_of(&dir.0, &body);
        for n in needles {
            assert!(e.contains(n), "{body}: {e} (wants {n})");
        }
    }

    // Garbage, truncation inside the category, and bad values inside it.
    let good = site_file();
    let start = good
        .windows(4)
        .position(|w| w == b"Test")
        .expect("the category's code");
    let mut broken: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "garbage",
            b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01".to_vec(),
            "varint",
        ),
        ("text", b"not a dat file at all".to_vec(), ""),
        ("truncated", good[..start + 40].to_vec(), "past"),
    ];
    // A Domain with type 7.
    let mut d = vec![0x08, 7, 0x12, 1, b'a'];
    let mut e = vec![0x0a, 4];
    e.extend_from_slice(b"test");
    e.push(0x12);
    e.push(d.len() as u8);
    e.append(&mut d);
    let mut file = vec![0x0a, e.len() as u8];
    file.extend_from_slice(&e);
    broken.push(("kind", file, "unknown domain type 7"));
    let mut bad_regex = Vec::new();
    dat::site_entry(
        &mut bad_regex,
        "test",
        &[domain(Kind::Regex, "(", &[])],
        false,
    );
    broken.push(("regex", bad_regex, "does not compile"));
    let mut bad_ip = Vec::new();
    dat::ip_entry(&mut bad_ip, "lab", &[(v4("192.0.2.0"), 33)], false);
    std::fs::write(dir.path("badprefix.dat"), bad_ip).unwrap();
    let e = error_of(&dir.0, &rule("dip(ext:badprefix.dat:lab)"));
    assert!(
        e.contains("longer than 32") && e.contains("badprefix.dat"),
        "{e}"
    );
    for (name, bytes, needle) in broken {
        let file = format!("{name}.dat");
        std::fs::write(dir.path(&file), bytes).unwrap();
        let e = error_of(&dir.0, &rule(&format!("domain(ext:{file}:test)")));
        assert!(e.contains(&file) && e.contains(":test"), "{name}: {e}");
        assert!(e.contains(needle), "{name}: {e}");
    }

    // Random damage: an error or a set, never a panic.
    let mut rng = Rng(0x5eed_0bad_da7a_0003);
    for i in 0..400 {
        let mut bytes = good.clone();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(bytes.len());
            bytes[at] = rng.next() as u8;
        }
        if i % 3 == 0 {
            bytes.truncate(rng.below(bytes.len()));
        }
        std::fs::write(dir.path("fuzz.dat"), &bytes).unwrap();
        let _ = parse(&dir.0, &rule("domain(ext:fuzz.dat:test)"));
    }
}

fn first_set(c: &Config, rule: usize) -> Rc<dae::geodata::Loaded<dae::geodata::SiteSet>> {
    match &c.routing.rules[rule].conditions[0].1 {
        RoutingMatcher::Domain(p) => match &p[0] {
            DomainPattern::Set(s) => s.clone(),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_set_is_built_once_and_reused_until_its_file_changes() {
    let dir = data_dir();
    let body = "config routing 'routing'\n\
        \tlist rule 'domain(geosite:test) -> block'\n\
        \tlist rule 'domain(geosite:TeSt) && dport(80) -> direct'\n\
        \tlist rule 'dip(geoip:lab) -> block'\n\
        config dns 'dns'\n\
        \tlist response_rule 'ip(geoip:LAB) -> reject'\n";
    let a = parse(&dir.0, body).unwrap();
    assert!(
        Rc::ptr_eq(&first_set(&a, 0), &first_set(&a, 1)),
        "built once"
    );
    let (RoutingMatcher::Dip(dip), DnsMatcher::Ip(ip)) = (
        &a.routing.rules[2].conditions[0].1,
        &a.dns.response_rules[0].conditions[0].matcher,
    ) else {
        panic!()
    };
    assert!(Rc::ptr_eq(&dip.sets[0], &ip.sets[0]));
    let report = dae::geodata::report();
    assert_eq!(report.len(), 2, "{report:?}");
    assert!(report
        .iter()
        .any(|r| r.name == "geosite:test" && r.entries == 8 && r.memory > 0));
    assert!(report
        .iter()
        .any(|r| r.name == "geoip:lab" && r.entries == 5));

    // A reload while the running config holds it: the same set.
    let b = parse(&dir.0, body).unwrap();
    assert!(Rc::ptr_eq(&first_set(&a, 0), &first_set(&b, 0)), "reused");

    // The file changes: read again.
    let mut changed = site_file();
    dat::site_entry(&mut changed, "more", &[], false);
    std::fs::write(dir.path("geosite.dat"), changed).unwrap();
    let c = parse(&dir.0, body).unwrap();
    assert!(
        !Rc::ptr_eq(&first_set(&a, 0), &first_set(&c, 0)),
        "read again"
    );
    drop((a, b, c));
    assert!(
        dae::geodata::report().is_empty(),
        "nothing held once unused"
    );
}

fn uci(dir: &Path, up: SocketAddr, dns_opts: &str) -> String {
    format!(
        "config dae 'config'\n\toption geodata_dir '{}'\n\
         config dns 'dns'\n\tlist dns_listen '@LISTEN@'\n\toption request_fallback 'up'\n{dns_opts}\
         config upstream 'up'\n\toption address 'udp://{up}'\n",
        dir.display()
    )
}

#[test]
fn the_daemon_rejects_by_geosite_and_geoip_and_reloads_with_new_data() {
    let dir = data_dir();
    // `dae validate` names the rule, file and category.
    std::fs::write(
        dir.path("bad.uci"),
        format!(
            "config dae 'config'\n\toption geodata_dir '{}'\n\
             config dns 'dns'\n\tlist request_rule 'qname(geosite:nope) -> reject'\n",
            dir.0.display()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_dae"))
        .args(["validate", "-c"])
        .arg(dir.path("bad.uci"))
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    for n in [
        "qname(geosite:nope)",
        "geosite.dat",
        "geosite:nope",
        "no such category",
    ] {
        assert!(text.contains(n), "{text} (wants {n})");
    }

    if !have("unbound") {
        return;
    }
    let up = Unbound::start(&[
        "www.example.com. 300 IN A 198.51.100.1",
        "ads.tracker.example. 300 IN A 198.51.100.2",
        "plain.example. 300 IN A 198.51.100.3",
        "lab.example. 300 IN A 192.0.2.80",
        "late.example. 300 IN A 198.51.100.4",
    ]);
    let rules = "\tlist request_rule 'qname(geosite:test) -> reject'\n\
                 \tlist response_rule 'ip(geoip:lab) -> reject'\n";
    let dae = Dae::start(&uci(&dir.0, up.addr(), rules));
    let a = |name: &str| {
        let m = ask(dae.addr, name, RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{name}");
        answers(&m)
    };
    assert!(a("www.example.com.").is_empty(), "suffix in the category");
    assert!(
        a("ads.tracker.example.").is_empty(),
        "keyword in the category"
    );
    assert_eq!(
        up.queries("www.example.com.", "A"),
        0,
        "rejected before upstream"
    );
    assert_eq!(a("plain.example."), vec!["198.51.100.3"]);
    assert!(a("lab.example.").is_empty(), "answer in geoip:lab rejected");
    assert_eq!(up.queries("lab.example.", "A"), 1);
    assert_eq!(a("late.example."), vec!["198.51.100.4"]);

    let status = dae.status();
    let sets = status["rule_sets"].as_array().expect("rule_sets");
    let names: Vec<&str> = sets.iter().filter_map(|s| s["name"].as_str()).collect();
    assert!(
        names.contains(&"geosite:test") && names.contains(&"geoip:lab"),
        "{status}"
    );
    assert!(sets
        .iter()
        .all(|s| s["entries"].as_u64() > Some(0) && s["memory_bytes"].as_u64() > Some(0)));

    // New data: late.example joins the category; a reload reads it.
    let mut changed = Vec::new();
    dat::site_entry(
        &mut changed,
        "test",
        &[domain(Kind::Full, "late.example", &[])],
        false,
    );
    std::fs::write(dir.path("geosite.dat"), changed).unwrap();
    assert!(dae
        .reload(&uci(&dir.0, up.addr(), rules))
        .contains("reloaded"));
    assert!(a("late.example.").is_empty(), "the new data rejects");
    assert_eq!(
        a("www.example.com."),
        vec!["198.51.100.1"],
        "the old data is gone"
    );

    // A reload naming a missing category is refused; the rules stay.
    let bad = "\tlist request_rule 'qname(geosite:gone) -> reject'\n";
    let outcome = dae.reload(&uci(&dir.0, up.addr(), bad));
    assert!(outcome.contains("reload refused"), "{outcome}");
    assert!(dae.log().contains("geosite:gone"), "{}", dae.log());
    assert!(a("late.example.").is_empty(), "the old rules keep serving");
}

/// `dae geodata` with ARGS; its exit code and output.
fn geodata_cmd(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dae"))
        .arg("geodata")
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn dae_geodata_lists_the_categories_of_every_file_and_each_files_error() {
    let dir = data_dir();
    let good = site_file();
    std::fs::write(dir.path("broken.dat"), &good[..good.len() - 3]).unwrap();
    std::fs::write(dir.path("notes.txt"), b"not a dat file").unwrap();
    std::fs::write(dir.path("empty.dat"), b"").unwrap();
    let dir_arg = dir.0.display().to_string();

    let (code, out) = geodata_cmd(&["--json", "--dir", &dir_arg]);
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["dir"], dir_arg);
    let files: Vec<&str> = v["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["file"].as_str().unwrap())
        .collect();
    // The two default files first, then the other *.dat by name.
    assert_eq!(
        files,
        [
            "geosite.dat",
            "geoip.dat",
            "broken.dat",
            "empty.dat",
            "ext.dat"
        ]
    );
    let file = |name: &str| {
        v["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["file"] == name)
            .unwrap()
            .clone()
    };
    let site_categories = serde_json::json!([
        {"name": "other", "entries": 1},
        {"name": "test", "entries": 8, "attributes": ["!cn", "ads"]},
        {"name": "last", "entries": 1},
    ]);
    let site = file("geosite.dat");
    assert_eq!(site["kind"], "geosite");
    assert_eq!(site["prefix"], "geosite:");
    assert_eq!(site["path"], dir.path("geosite.dat").display().to_string());
    assert_eq!(site["categories"], site_categories);
    let ext = file("ext.dat");
    assert_eq!(
        (&ext["kind"], &ext["prefix"]),
        (&"geosite".into(), &"ext:ext.dat:".into())
    );
    assert_eq!(ext["categories"], site_categories);
    let ip = file("geoip.dat");
    assert_eq!(
        (&ip["kind"], &ip["prefix"]),
        (&"geoip".into(), &"geoip:".into())
    );
    assert_eq!(
        ip["categories"],
        serde_json::json!([
            {"name": "private", "entries": 5},
            {"name": "lab", "entries": 5},
            {"name": "rev", "entries": 2},
        ])
    );
    let broken = file("broken.dat");
    assert!(
        broken["error"].as_str().unwrap().contains("past"),
        "{broken}"
    );
    assert!(broken.get("categories").is_none(), "{broken}");
    let empty = file("empty.dat");
    assert_eq!(empty["kind"], serde_json::Value::Null);
    assert_eq!(empty["categories"], serde_json::json!([]));

    // What it lists, the loader reads: every category, every attribute.
    for f in v["files"].as_array().unwrap() {
        let Some(cats) = f["categories"].as_array() else {
            continue;
        };
        for c in cats {
            let arg = format!(
                "{}{}",
                f["prefix"].as_str().unwrap(),
                c["name"].as_str().unwrap()
            );
            let rule = if f["kind"] == "geoip" {
                format!("dip({arg})")
            } else {
                format!("domain({arg})")
            };
            routing(&dir.0, &rule);
            for a in c["attributes"].as_array().into_iter().flatten() {
                routing(&dir.0, &format!("domain({arg}@{})", a.as_str().unwrap()));
            }
        }
    }

    // The text form names each category as a rule writes it.
    let (code, text) = geodata_cmd(&["--dir", &dir_arg]);
    assert_eq!(code, 0, "{text}");
    for line in [
        "geosite.dat: geosite, 3 categories",
        "  geosite:test (8 domains) @!cn @ads",
        "  geoip:lab (5 networks)",
        "  ext:ext.dat:last (1 domains)",
        "empty.dat: no entries, 0 categories",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "no line {line:?} in\n{text}"
        );
    }
    assert!(
        text.lines()
            .any(|l| l.starts_with("broken.dat: ") && l.contains("past")),
        "{text}"
    );

    // -c reads geodata_dir from a config, even one whose rules are wrong.
    let conf = dir.path("dae.uci");
    std::fs::write(
        &conf,
        format!(
            "config dae 'config'\n\toption geodata_dir '{dir_arg}'\nconfig routing 'routing'\n\tlist rule 'domain(geosite:nosuch) -> block'\n"
        ),
    )
    .unwrap();
    let (code, out2) = geodata_cmd(&["--json", "-c", &conf.display().to_string()]);
    assert_eq!((code, out2), (0, out));

    // Nothing readable: exit 1, each file's error still listed.
    let bad = TempDir::new("geodata-bad");
    std::fs::write(bad.path("geosite.dat"), b"\xff\xff\xff").unwrap();
    let (code, out) = geodata_cmd(&["--json", "--dir", &bad.0.display().to_string()]);
    assert_eq!(code, 1, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        v["files"][0]["error"]
            .as_str()
            .unwrap()
            .contains("truncated"),
        "{v}"
    );
    assert!(
        v["files"][1]["error"]
            .as_str()
            .unwrap()
            .contains("No such file"),
        "{v}"
    );
    let (code, _) = geodata_cmd(&["--dir"]);
    assert_eq!(code, 2);
}

#[test]
fn a_file_of_the_other_kind_is_refused_not_read_as_empty_entries() {
    let dir = data_dir();
    // A geoip category read as domains would be entries with no value (an
    // empty keyword matches every name); a geosite one read as networks,
    // entries with no address.
    let e = error_of(
        &dir.0,
        "config routing 'routing'\n\tlist rule 'domain(ext:geoip.dat:lab) -> block'\n",
    );
    assert!(e.contains("geoip.dat") && e.contains("geoip file"), "{e}");
    let e = error_of(
        &dir.0,
        "config routing 'routing'\n\tlist rule 'dip(ext:geosite.dat:test) -> block'\n",
    );
    assert!(
        e.contains("geosite.dat") && e.contains("geosite file"),
        "{e}"
    );
}
