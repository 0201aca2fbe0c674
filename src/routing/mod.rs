//! Routing: the `config routing` rules compiled once, and the one evaluator
//! that decides where a flow goes.
//!
//! A flow is what a rule can see of it (`Flow`): its destination, L4
//! protocol, and the domain it is known by; and, for a flow that came from a
//! LAN client, its source, MAC and DSCP. The rules are tried in order; the
//! first whose conditions all hold decides, else the fallback does. A
//! decision is a `Target`: `direct`, `block`, or a group (by index into the
//! config's groups), which the caller turns into a node.
//!
//! For the daemon's own dials (DNS upstreams, health checks) the functions
//! about LAN clients (`sip`, `sport`, `mac`, `dscp`) never hold, so
//! `!sip(...)` always does; `pname` never holds for any flow dae sees.
//!
//! - `domain`: the domain sets of `domain(...)` (and of the DNS rules'
//!   `qname(...)`);
//! - `kernel`: the same rules compiled for the TC program, which routes
//!   LAN flows in the kernel (this evaluator is the reference it is
//!   tested against), and the addresses learned from DNS answers.
//!
//! Neighbours: `config` (the checked rules), `dialer::outbound` (turns a
//! group into a live node for its own dials).

pub mod domain;
pub mod ipset;
pub mod kernel;

use std::net::SocketAddr;

use crate::config::{Outbound, Routing, RoutingMatcher};
use domain::DomainSet;
use ipset::IpSet;

/// Layer-4 protocol of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum L4 {
    Tcp,
    Udp,
}

impl L4 {
    pub fn name(self) -> &'static str {
        match self {
            L4::Tcp => "tcp",
            L4::Udp => "udp",
        }
    }
}

/// One flow, as the routing rules see it.
pub struct Flow<'a> {
    /// Where it goes.
    pub remote: SocketAddr,
    pub l4: L4,
    /// The host name the destination is known by, if any.
    pub domain: Option<&'a str>,
    /// For a flow from a LAN client: what the rules about clients see.
    pub lan: Option<Lan>,
}

/// What a LAN client's flow shows of its client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lan {
    pub source: SocketAddr,
    pub mac: [u8; 6],
    /// The top six bits of the TOS or traffic class.
    pub dscp: u8,
}

/// Where the rules send a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Direct,
    Block,
    /// A group, by its index in the config's groups.
    Group(usize),
}

impl Target {
    fn of(outbound: &Outbound, groups: &[String]) -> Target {
        match outbound {
            Outbound::Direct => Target::Direct,
            Outbound::Block => Target::Block,
            // The config checked that every group a rule names exists.
            Outbound::Group(name) => {
                Target::Group(groups.iter().position(|g| g == name).unwrap_or_default())
            }
        }
    }
}

enum Matcher {
    Dip(IpSet),
    Sip(IpSet),
    Dport(Vec<(u16, u16)>),
    Sport(Vec<(u16, u16)>),
    Mac(Vec<[u8; 6]>),
    Dscp(Vec<u8>),
    /// Per value: true for UDP.
    L4proto(Vec<bool>),
    /// Per value: true for IPv6.
    IpVersion(Vec<bool>),
    Domain(DomainSet),
    /// `pname`: dae sees no process of a LAN flow, and its own dials are
    /// its own.
    Never,
}

fn in_ranges(ranges: &[(u16, u16)], port: u16) -> bool {
    ranges.iter().any(|(a, b)| (*a..=*b).contains(&port))
}

impl Matcher {
    fn new(m: &RoutingMatcher) -> Matcher {
        match m {
            RoutingMatcher::Dip(n) => Matcher::Dip(IpSet::new(n)),
            RoutingMatcher::Dport(p) => Matcher::Dport(p.clone()),
            RoutingMatcher::L4proto(u) => Matcher::L4proto(u.clone()),
            RoutingMatcher::IpVersion(v) => Matcher::IpVersion(v.clone()),
            RoutingMatcher::Domain(d) => Matcher::Domain(DomainSet::new(d)),
            RoutingMatcher::Sip(n) => Matcher::Sip(IpSet::new(n)),
            RoutingMatcher::Sport(p) => Matcher::Sport(p.clone()),
            RoutingMatcher::Mac(m) => Matcher::Mac(m.clone()),
            RoutingMatcher::Dscp(d) => Matcher::Dscp(d.clone()),
            RoutingMatcher::Pname(_) => Matcher::Never,
        }
    }

    fn holds(&self, f: &Flow) -> bool {
        match self {
            Matcher::Dip(set) => set.contains(f.remote.ip()),
            Matcher::Dport(ranges) => in_ranges(ranges, f.remote.port()),
            Matcher::Sip(set) => f.lan.is_some_and(|l| set.contains(l.source.ip())),
            Matcher::Sport(ranges) => f.lan.is_some_and(|l| in_ranges(ranges, l.source.port())),
            Matcher::Mac(macs) => f.lan.is_some_and(|l| macs.contains(&l.mac)),
            Matcher::Dscp(values) => f.lan.is_some_and(|l| values.contains(&l.dscp)),
            Matcher::L4proto(udp) => udp.contains(&(f.l4 == L4::Udp)),
            Matcher::IpVersion(v6) => v6.contains(&f.remote.is_ipv6()),
            Matcher::Domain(set) => f.domain.is_some_and(|n| set.matches(n)),
            Matcher::Never => false,
        }
    }
}

struct Rule {
    /// Each condition with whether it is negated (`!`).
    conditions: Vec<(bool, Matcher)>,
    target: Target,
}

/// The routing rules and fallback, compiled.
pub struct Rules {
    rules: Vec<Rule>,
    fallback: Target,
}

impl Rules {
    /// Compiles `routing`; `groups` are the config's group names in order.
    pub fn new(routing: &Routing, groups: &[String]) -> Rules {
        Rules {
            rules: routing
                .rules
                .iter()
                .map(|r| Rule {
                    conditions: r
                        .conditions
                        .iter()
                        .map(|(negated, m)| (*negated, Matcher::new(m)))
                        .collect(),
                    target: Target::of(&r.outbound, groups),
                })
                .collect(),
            fallback: Target::of(&routing.fallback, groups),
        }
    }

    /// No rules, everything direct.
    pub fn all_direct() -> Rules {
        Rules {
            rules: Vec::new(),
            fallback: Target::Direct,
        }
    }

    /// Whether every rule and the fallback send flows direct.
    pub fn only_direct(&self) -> bool {
        self.fallback == Target::Direct && self.rules.iter().all(|r| r.target == Target::Direct)
    }

    /// Where `flow` goes: the first rule whose conditions all hold, else
    /// the fallback.
    pub fn decide(&self, flow: &Flow) -> Target {
        self.rules
            .iter()
            .find(|r| r.conditions.iter().all(|(neg, m)| m.holds(flow) != *neg))
            .map_or(self.fallback, |r| r.target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DomainPattern, IpNet, RoutingRule};

    fn rule(conditions: Vec<(bool, RoutingMatcher)>, outbound: Outbound) -> RoutingRule {
        RoutingRule {
            conditions,
            outbound,
            text: String::new(),
        }
    }

    fn net(addr: &str, prefix: u8) -> IpNet {
        IpNet {
            addr: addr.parse().unwrap(),
            prefix,
        }
    }

    fn flow<'a>(remote: &str, l4: L4, domain: Option<&'a str>) -> Flow<'a> {
        Flow {
            remote: remote.parse().unwrap(),
            l4,
            domain,
            lan: None,
        }
    }

    #[test]
    fn first_rule_that_holds_decides_else_the_fallback() {
        let groups = ["proxy".to_string(), "other".to_string()];
        let routing = Routing {
            rules: vec![
                rule(
                    vec![(
                        false,
                        RoutingMatcher::Dip(vec![net("192.0.2.0", 24)].into()),
                    )],
                    Outbound::Direct,
                ),
                rule(
                    vec![
                        (
                            false,
                            RoutingMatcher::Domain(vec![DomainPattern::Suffix(
                                "example.com".into(),
                            )]),
                        ),
                        (false, RoutingMatcher::L4proto(vec![false])),
                    ],
                    Outbound::Group("other".into()),
                ),
                rule(
                    vec![(false, RoutingMatcher::Dport(vec![(853, 853)]))],
                    Outbound::Block,
                ),
                // About LAN clients: never holds for our own dials, so its
                // negation always does.
                rule(
                    vec![(true, RoutingMatcher::Sip(vec![net("192.0.2.1", 32)].into()))],
                    Outbound::Group("proxy".into()),
                ),
            ],
            fallback: Outbound::Direct,
        };
        let rules = Rules::new(&routing, &groups);
        assert!(!rules.only_direct());
        let d = |r, l4, dom| rules.decide(&flow(r, l4, dom));
        assert_eq!(
            d("192.0.2.9:53", L4::Udp, Some("a.example.com")),
            Target::Direct
        );
        assert_eq!(
            d("203.0.113.1:53", L4::Tcp, Some("a.example.com")),
            Target::Group(1)
        );
        assert_eq!(
            d("203.0.113.1:53", L4::Udp, Some("a.example.com")),
            Target::Group(0)
        );
        assert_eq!(d("203.0.113.1:853", L4::Udp, None), Target::Block);
        assert_eq!(d("[2001:db8::1]:53", L4::Udp, None), Target::Group(0));

        let plain = Routing {
            rules: vec![rule(
                vec![(false, RoutingMatcher::Pname(vec!["x".into()]))],
                Outbound::Block,
            )],
            fallback: Outbound::Direct,
        };
        let rules = Rules::new(&plain, &groups);
        assert_eq!(d_of(&rules, "203.0.113.1:53"), Target::Direct);
    }

    fn d_of(rules: &Rules, remote: &str) -> Target {
        rules.decide(&flow(remote, L4::Tcp, None))
    }
}
