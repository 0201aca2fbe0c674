//! The rule-set benchmark's worker (bench/geodata.sh runs it): writes a
//! synthetic geosite.dat and geoip.dat, then, each in a fresh process,
//! loads one big category the way the daemon does (through the config) and
//! reports the time, the RSS it added and the time per match; and the same
//! domains written inline (the hash sets of `routing::domain`), the peer
//! the ratios are taken against.
//!
//! Usage: geodata_bench generate DIR | geosite DIR | inline DIR | geoip DIR

#[path = "../tests/common/dat.rs"]
mod dat;

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::time::Instant;

use dae::config::parse_str;
use dae::routing::domain::DomainSet;
use dae::routing::ipset::IpSet;

const BIG_DOMAINS: usize = 100_000;
const BIG_CIDRS: usize = 10_000;
const OTHER_CATEGORIES: usize = 1000;
const OTHER_DOMAINS: usize = 300;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const TLDS: &[&str] = &["com", "cn", "net", "org", "com.cn", "io", "top", "xyz"];

/// A realistic name: one or two labels of 3 to 14 letters and digits,
/// then a TLD.
fn name(rng: &mut Rng) -> String {
    let mut out = String::new();
    for _ in 0..1 + rng.below(2) {
        let len = 3 + rng.below(12);
        for _ in 0..len {
            out.push(b"abcdefghijklmnopqrstuvwxyz0123456789"[rng.below(36)] as char);
        }
        out.push('.');
    }
    out.push_str(TLDS[rng.below(TLDS.len())]);
    out
}

fn big_names() -> Vec<String> {
    let mut rng = Rng(0x6e05_17e0_0000_0001);
    (0..BIG_DOMAINS).map(|_| name(&mut rng)).collect()
}

fn generate(dir: &Path) {
    let mut rng = Rng(0x6e05_17e0_0000_0002);
    let mut site = Vec::new();
    let other = |i: usize, rng: &mut Rng, out: &mut Vec<u8>| {
        let domains: Vec<dat::Domain> = (0..OTHER_DOMAINS)
            .map(|_| dat::domain(dat::Kind::Domain, &name(rng), &[]))
            .collect();
        dat::site_entry(out, &format!("other-{i}"), &domains, false);
    };
    for i in 0..OTHER_CATEGORIES / 2 {
        other(i, &mut rng, &mut site);
    }
    let big: Vec<dat::Domain> = big_names()
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let kind = if i % 5 == 0 {
                dat::Kind::Full
            } else {
                dat::Kind::Domain
            };
            dat::domain(kind, n, &[])
        })
        .collect();
    dat::site_entry(&mut site, "big", &big, false);
    for i in OTHER_CATEGORIES / 2..OTHER_CATEGORIES {
        other(i, &mut rng, &mut site);
    }
    std::fs::write(dir.join("geosite.dat"), &site).unwrap();

    let mut ip = Vec::new();
    let nets = |n: usize, rng: &mut Rng| -> Vec<(IpAddr, u8)> {
        (0..n)
            .map(|i| {
                if i % 6 == 0 {
                    let a = u128::from(rng.next()) << 64;
                    (IpAddr::V6(Ipv6Addr::from(a)), 32 + rng.below(17) as u8)
                } else {
                    let a = rng.next() as u32;
                    (IpAddr::V4(Ipv4Addr::from(a)), 12 + rng.below(13) as u8)
                }
            })
            .collect()
    };
    for i in 0..OTHER_CATEGORIES {
        if i == OTHER_CATEGORIES / 2 {
            dat::ip_entry(&mut ip, "big", &nets(BIG_CIDRS, &mut rng), false);
        }
        dat::ip_entry(&mut ip, &format!("other-{i}"), &nets(20, &mut rng), false);
    }
    std::fs::write(dir.join("geoip.dat"), &ip).unwrap();
    println!(
        "generated geosite.dat {:.1} MB ({} + 1 categories), geoip.dat {:.1} MB",
        site.len() as f64 / 1e6,
        OTHER_CATEGORIES,
        ip.len() as f64 / 1e6
    );
}

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Query names: half below or equal to names of the set, half not in it.
fn queries() -> Vec<String> {
    let names = big_names();
    let mut rng = Rng(0x6e05_17e0_0000_0003);
    (0..200_000)
        .map(|i| {
            if i % 2 == 0 {
                let n = &names[rng.below(names.len())];
                if i % 4 == 0 {
                    format!("www.{n}")
                } else {
                    n.clone()
                }
            } else {
                format!("cdn.{}", name(&mut rng))
            }
        })
        .collect()
}

fn time_matches(set: &DomainSet, qs: &[String]) -> (f64, usize) {
    let mut hits = 0;
    // Warm up, then the best of three passes.
    for q in qs.iter().take(10_000) {
        hits += usize::from(set.matches(q));
    }
    let mut best = f64::MAX;
    for _ in 0..3 {
        hits = 0;
        let t = Instant::now();
        for q in qs {
            hits += usize::from(black_box(set.matches(black_box(q))));
        }
        best = best.min(t.elapsed().as_secs_f64() * 1e9 / qs.len() as f64);
    }
    (best, hits)
}

/// The set as the daemon holds it (the config stays alive beside it).
fn domain_set(config: &str) -> (DomainSet, dae::config::Config, f64, u64) {
    let before = rss_kib();
    let t = Instant::now();
    let c = parse_str(config).unwrap_or_else(|e| panic!("{e:?}"));
    let dae::config::RoutingMatcher::Domain(p) = &c.routing.rules[0].conditions[0].1 else {
        unreachable!()
    };
    let set = DomainSet::new(p);
    let load = t.elapsed().as_secs_f64() * 1000.0;
    (set, c, load, rss_kib().saturating_sub(before))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (mode, dir) = match args.as_slice() {
        [_, m, d] => (m.as_str(), Path::new(d)),
        _ => {
            eprintln!("usage: geodata_bench generate|geosite|inline|geoip DIR");
            std::process::exit(2)
        }
    };
    let head = format!(
        "config dae 'config'\n\toption geodata_dir '{}'\nconfig routing 'routing'\n",
        dir.display()
    );
    match mode {
        "generate" => generate(dir),
        "geosite" => {
            let qs = queries();
            let (set, _config, load, rss) = domain_set(&format!(
                "{head}\tlist rule 'domain(geosite:big) -> block'\n"
            ));
            let (ns, hits) = time_matches(&set, &qs);
            println!("geosite load_ms={load:.1} rss_kib={rss} match_ns={ns:.0} hits={hits}");
        }
        "inline" => {
            let qs = queries();
            let names = big_names();
            let mut args = String::new();
            for (i, n) in names.iter().enumerate() {
                if !args.is_empty() {
                    args.push_str(", ");
                }
                if i % 5 == 0 {
                    args.push_str("full: ");
                }
                args.push_str(n);
            }
            let text = format!("{head}\tlist rule 'domain({args}) -> block'\n");
            drop(names);
            let (set, _config, load, rss) = domain_set(&text);
            drop(text);
            let (ns, hits) = time_matches(&set, &qs);
            println!("inline load_ms={load:.1} rss_kib={rss} match_ns={ns:.0} hits={hits}");
        }
        "geoip" => {
            let before = rss_kib();
            let t = Instant::now();
            let c = parse_str(&format!("{head}\tlist rule 'dip(geoip:big) -> block'\n"))
                .unwrap_or_else(|e| panic!("{e:?}"));
            let dae::config::RoutingMatcher::Dip(list) = &c.routing.rules[0].conditions[0].1 else {
                unreachable!()
            };
            let set = IpSet::new(list);
            let load = t.elapsed().as_secs_f64() * 1000.0;
            let rss = rss_kib().saturating_sub(before);
            let mut rng = Rng(7);
            let addrs: Vec<IpAddr> = (0..200_000)
                .map(|i| {
                    if i % 6 == 0 {
                        IpAddr::V6(Ipv6Addr::from(
                            u128::from(rng.next()) << 64 | u128::from(rng.next()),
                        ))
                    } else {
                        IpAddr::V4(Ipv4Addr::from(rng.next() as u32))
                    }
                })
                .collect();
            let t = Instant::now();
            let mut hits = 0;
            for a in &addrs {
                hits += usize::from(black_box(set.contains(black_box(*a))));
            }
            let ns = t.elapsed().as_secs_f64() * 1e9 / addrs.len() as f64;
            let lpm = dae::routing::kernel::Compiled::new(&c.routing, &[])
                .lpm
                .len();
            println!(
                "geoip load_ms={load:.1} rss_kib={rss} match_ns={ns:.0} hits={hits} lpm_entries={lpm}"
            );
        }
        _ => {
            eprintln!("unknown mode {mode}");
            std::process::exit(2)
        }
    }
}
