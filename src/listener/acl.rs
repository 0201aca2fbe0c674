//! Who the plain `dns_listen` listeners answer: by default only loopback
//! and the subnets of the router's own non-WAN interfaces, as dnsmasq's
//! `localservice` does on OpenWrt, so that a listener on `0.0.0.0:53` or a
//! WAN address is not an open resolver. `option allow_remote '1'` answers
//! everyone. Queries from elsewhere are dropped, counted (`dae status`) and
//! logged once per source per minute.
//!
//! Which interface is WAN: `option wan_interface`, and those that hold a
//! default route (`/proc/net/route`, `/proc/net/ipv6_route`). Interfaces
//! listed in `lan_interface` are always local, and a router whose only
//! interfaces hold the default route (an access point on the LAN) keeps
//! their subnets local: without them nobody could ask. Link-local sources
//! are answered: no router forwards them, so they cannot be spoofed from
//! afar.
//!
//! The subnets are re-read (`getifaddrs`) when they are older than
//! `REFRESH`, and at a query from an unknown source when they are older
//! than `MISS_REREAD`, so addresses that come and go are followed at the
//! cost of one read per second at most under a flood from outside.
//!
//! Neighbours: `listener` (owns it for the plain listeners), `udp` and
//! `tcp` (ask it per datagram and per connection), `daemon` (the policy
//! from the config, the counter for `dae status`).

use std::cell::{Cell, RefCell};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use crate::config::IpNet;

/// Subnets older than this are re-read before a check.
const REFRESH: Duration = Duration::from_secs(30);
/// A query from an unknown source re-reads subnets older than this.
const MISS_REREAD: Duration = Duration::from_secs(1);
/// One log line per dropped source in this long.
const LOG_EVERY: Duration = Duration::from_secs(60);
/// Sources remembered for `LOG_EVERY`; past it, the oldest are forgotten.
const LOGGED_MAX: usize = 256;

/// What the config says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// `option allow_remote`: answer any source.
    pub allow_remote: bool,
    /// `option wan_interface`.
    pub wan: Option<String>,
    /// `list lan_interface`: always local.
    pub lan: Vec<String>,
}

/// The source check of the plain listeners.
#[derive(Default)]
pub struct LocalOnly {
    policy: RefCell<Policy>,
    nets: RefCell<Vec<IpNet>>,
    read_at: Cell<Option<Instant>>,
    dropped: Cell<u64>,
    /// Sources logged in the last `LOG_EVERY` (a list: at most `LOGGED_MAX`).
    logged: RefCell<Vec<(IpAddr, Instant)>>,
}

impl LocalOnly {
    /// Follows a new config (at start and on reload).
    pub fn set_policy(&self, policy: Policy) {
        if *self.policy.borrow() != policy {
            *self.policy.borrow_mut() = policy;
            self.read_at.set(None);
        }
    }

    /// Queries dropped because of their source, since start.
    pub fn dropped(&self) -> u64 {
        self.dropped.get()
    }

    /// Whether a query from `src` is answered; counts and logs a drop.
    pub fn allows(&self, src: IpAddr) -> bool {
        if self.policy.borrow().allow_remote {
            return true;
        }
        let src = plain(src);
        if src.is_loopback() || is_link_local(src) {
            return true;
        }
        let now = Instant::now();
        match self.read_at.get().map(|t| now.duration_since(t)) {
            Some(age) if age < REFRESH => {
                if self.known(src) {
                    return true;
                }
                if age >= MISS_REREAD {
                    self.reread(now);
                }
            }
            _ => self.reread(now),
        }
        if self.known(src) {
            return true;
        }
        self.dropped.set(self.dropped.get() + 1);
        self.log_once(src, now);
        false
    }

    fn known(&self, src: IpAddr) -> bool {
        self.nets.borrow().iter().any(|n| n.contains(src))
    }

    fn reread(&self, now: Instant) {
        self.read_at.set(Some(now));
        match local_subnets(&self.policy.borrow()) {
            Ok(nets) => *self.nets.borrow_mut() = nets,
            // Keep what was known; loopback still works.
            Err(e) => log::warn!("dns: cannot read the interfaces' addresses: {e}"),
        }
    }

    fn log_once(&self, src: IpAddr, now: Instant) {
        let mut logged = self.logged.borrow_mut();
        logged.retain(|(_, t)| now.duration_since(*t) < LOG_EVERY);
        if logged.len() >= LOGGED_MAX || logged.iter().any(|(ip, _)| *ip == src) {
            return;
        }
        logged.push((src, now));
        log::warn!(
            "dns: dropped queries from {src}: not on a subnet of this router's LAN side \
             (option allow_remote '1' in section dns answers everyone)"
        );
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn plain(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// One interface address with its subnet.
#[derive(Clone)]
struct Addr {
    interface: String,
    net: IpNet,
}

/// The subnets `policy` counts as local, from the interfaces' addresses
/// now.
fn local_subnets(policy: &Policy) -> std::io::Result<Vec<IpNet>> {
    let addrs: Vec<Addr> = crate::netif::addresses()?
        .into_iter()
        .filter_map(|a| {
            Some(Addr {
                net: subnet(a.addr, u32::from(a.prefix?)),
                interface: a.interface,
            })
        })
        .collect();
    let defaults = default_route_interfaces();
    Ok(choose(&addrs, policy, &defaults))
}

/// Keeps the subnets of the interfaces that are not WAN (see the module
/// doc), without duplicates.
fn choose(addrs: &[Addr], policy: &Policy, defaults: &[String]) -> Vec<IpNet> {
    let real = |a: &&Addr| !a.net.addr.is_loopback() && !is_link_local(a.net.addr);
    let is_wan = |name: &str| -> bool {
        if policy.lan.iter().any(|l| l == name) {
            return false;
        }
        policy.wan.as_deref() == Some(name) || defaults.iter().any(|d| d == name)
    };
    let mut local: Vec<IpNet> = addrs
        .iter()
        .filter(real)
        .filter(|a| !is_wan(&a.interface))
        .map(|a| a.net)
        .collect();
    if local.is_empty() {
        // Only default-route interfaces: an access point on the LAN.
        local = addrs
            .iter()
            .filter(real)
            .filter(|a| policy.wan.as_deref() != Some(a.interface.as_str()))
            .map(|a| a.net)
            .collect();
    }
    let mut out = Vec::new();
    for n in local {
        if !out.contains(&n) {
            out.push(n);
        }
    }
    out
}

fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
    }
}

/// `ip/prefix` with the host bits cleared.
fn subnet(ip: IpAddr, prefix: u32) -> IpNet {
    let addr = match ip {
        IpAddr::V4(v4) => {
            let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
    };
    IpNet {
        addr,
        prefix: prefix as u8,
    }
}

/// The interfaces that hold a default route (IPv4 or IPv6).
fn default_route_interfaces() -> Vec<String> {
    let v4 = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    let v6 = std::fs::read_to_string("/proc/net/ipv6_route").unwrap_or_default();
    defaults_of(&v4, &v6)
}

/// From the text of `/proc/net/route` (Iface Destination Gateway Flags
/// RefCnt Use Metric Mask ...) and `/proc/net/ipv6_route` (dest, dest
/// prefix length, ... interface last): the interfaces of `0.0.0.0/0` and
/// `::/0`.
fn defaults_of(v4: &str, v6: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in v4.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() > 7 && f[1] == "00000000" && f[7] == "00000000" {
            out.push(f[0].to_string());
        }
    }
    for line in v6.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let zero = "0".repeat(32);
        // Not "lo": the kernel's unreachable default lives there.
        if f.len() == 10 && f[0] == zero && f[1] == "00" && f[9] != "lo" {
            out.push(f[9].to_string());
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(interface: &str, net: &str) -> Addr {
        let (ip, prefix) = net.split_once('/').unwrap();
        Addr {
            interface: interface.into(),
            net: subnet(ip.parse().unwrap(), prefix.parse().unwrap()),
        }
    }

    fn nets(v: &[IpNet]) -> Vec<String> {
        v.iter()
            .map(|n| format!("{}/{}", n.addr, n.prefix))
            .collect()
    }

    #[test]
    fn default_routes_from_proc() {
        let v4 =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                  wan\t00000000\t0264A8C6\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                  br-lan\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
        let v6 = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 20010db8000200000000000000000002 00000400 00000001 00000000 00000003 wan6\n\
                  00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200 lo\n\
                  20010db8000100000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001 br-lan\n";
        assert_eq!(defaults_of(v4, v6), ["wan", "wan6"]);
    }

    #[test]
    fn wan_subnets_are_left_out() {
        let addrs = [
            addr("lo", "127.0.0.1/8"),
            addr("br-lan", "192.0.2.1/24"),
            addr("br-lan", "2001:db8:1::1/64"),
            addr("br-lan", "fe80::1/64"),
            addr("wan", "198.51.100.1/24"),
        ];
        let by_route = choose(&addrs, &Policy::default(), &["wan".into()]);
        assert_eq!(nets(&by_route), ["192.0.2.0/24", "2001:db8:1::/64"]);
        let named = Policy {
            wan: Some("br-lan".into()),
            ..Policy::default()
        };
        assert_eq!(nets(&choose(&addrs, &named, &[])), ["198.51.100.0/24"]);
        // A wan_interface adds to the default-route holders.
        let wan_named = Policy {
            wan: Some("wan".into()),
            ..Policy::default()
        };
        let defaults = ["wan6".to_string()];
        let mut more = addrs.to_vec();
        more.push(addr("wan6", "2001:db8:2::1/64"));
        assert_eq!(
            nets(&choose(&more, &wan_named, &defaults)),
            ["192.0.2.0/24", "2001:db8:1::/64"]
        );
        // No default route, no wan_interface: every subnet is local.
        assert_eq!(nets(&choose(&addrs, &Policy::default(), &[])).len(), 3);
    }

    #[test]
    fn an_access_point_keeps_its_only_subnet() {
        let addrs = [addr("br-lan", "192.0.2.2/24")];
        let local = choose(&addrs, &Policy::default(), &["br-lan".into()]);
        assert_eq!(nets(&local), ["192.0.2.0/24"]);
        // A lan_interface is local even with the default route.
        let lan = Policy {
            lan: vec!["br-lan".into()],
            ..Policy::default()
        };
        let both = [
            addr("br-lan", "192.0.2.2/24"),
            addr("wan", "198.51.100.1/24"),
        ];
        let defaults = ["br-lan".to_string(), "wan".to_string()];
        assert_eq!(nets(&choose(&both, &lan, &defaults)), ["192.0.2.0/24"]);
    }

    #[test]
    fn loopback_and_mapped_sources() {
        let acl = LocalOnly::default();
        assert!(acl.allows("127.0.0.1".parse().unwrap()));
        assert!(acl.allows("::1".parse().unwrap()));
        assert!(acl.allows("::ffff:127.0.0.1".parse().unwrap()));
        assert!(acl.allows("fe80::1234".parse().unwrap()));
        // A documentation address no interface of a test machine holds.
        assert!(!acl.allows("203.0.113.201".parse().unwrap()));
        assert_eq!(acl.dropped(), 1);
        acl.set_policy(Policy {
            allow_remote: true,
            ..Policy::default()
        });
        assert!(acl.allows("203.0.113.201".parse().unwrap()));
        assert_eq!(acl.dropped(), 1);
    }
}
