//! Request and response rules, compiled for matching.
//!
//! The config hands over checked `DnsRule`s; here each `qname(...)` becomes
//! a `routing::domain::DomainSet` (the matcher the routing rules use too). Rules are tried in order; the first whose conditions all
//! hold gives the target, else the fallback does.
//!
//! Neighbours: `config::model` (what rules mean), `controller` (asks
//! `select` with the facts of one query or answer).

use std::net::IpAddr;

use crate::config::{DnsMatcher, DnsRule, DnsTarget};
use crate::routing::domain::DomainSet;
use crate::routing::ipset::IpSet;

/// What a rule can look at. `qname` is lowercase text without the final dot.
pub struct Facts<'a> {
    pub qname: &'a str,
    pub qtype: u16,
    /// The upstream that answered (response rules), `asis` included.
    pub upstream: Option<&'a str>,
    /// A and AAAA addresses of the answer section (response rules).
    pub answer_ips: &'a [IpAddr],
}

/// An ordered rule list with its fallback.
#[derive(Debug)]
pub struct Rules {
    rules: Vec<Compiled>,
    fallback: DnsTarget,
    needs_qname: bool,
}

#[derive(Debug)]
struct Compiled {
    conditions: Vec<(bool, Condition)>,
    target: DnsTarget,
    text: String,
}

#[derive(Debug)]
enum Condition {
    Qname(DomainSet),
    Qtype(Vec<u16>),
    Upstream(Vec<String>),
    Ip(IpSet),
}

impl Rules {
    pub fn new(rules: &[DnsRule], fallback: DnsTarget) -> Rules {
        let rules: Vec<Compiled> = rules
            .iter()
            .map(|r| Compiled {
                conditions: r
                    .conditions
                    .iter()
                    .map(|c| {
                        let cond = match &c.matcher {
                            DnsMatcher::Qname(p) => Condition::Qname(DomainSet::new(p)),
                            DnsMatcher::Qtype(t) => Condition::Qtype(t.clone()),
                            DnsMatcher::Upstream(u) => Condition::Upstream(u.clone()),
                            DnsMatcher::Ip(n) => Condition::Ip(IpSet::new(n)),
                        };
                        (c.negated, cond)
                    })
                    .collect(),
                target: r.target.clone(),
                text: r.text.clone(),
            })
            .collect();
        let needs_qname = rules.iter().any(|r| {
            r.conditions
                .iter()
                .any(|(_, c)| matches!(c, Condition::Qname(_)))
        });
        Rules {
            rules,
            fallback,
            needs_qname,
        }
    }

    /// Whether any rule looks at the name (if not, callers may skip
    /// rendering it as text).
    pub fn needs_qname(&self) -> bool {
        self.needs_qname
    }

    /// Whether there are no rules, only the fallback.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The target of the first rule that holds, with the rule's text (`None`
    /// for the fallback).
    pub fn select(&self, facts: &Facts) -> (&DnsTarget, Option<&str>) {
        for rule in &self.rules {
            let holds = rule
                .conditions
                .iter()
                .all(|(negated, c)| c.holds(facts) != *negated);
            if holds {
                return (&rule.target, Some(&rule.text));
            }
        }
        (&self.fallback, None)
    }
}

impl Condition {
    fn holds(&self, f: &Facts) -> bool {
        match self {
            Condition::Qname(set) => set.matches(f.qname),
            Condition::Qtype(types) => types.contains(&f.qtype),
            Condition::Upstream(names) => f.upstream.is_some_and(|u| names.iter().any(|n| n == u)),
            Condition::Ip(set) => f.answer_ips.iter().any(|ip| set.contains(*ip)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DnsCondition, DomainPattern, IpNet};

    fn up(i: usize, n: &str) -> DnsTarget {
        DnsTarget::Upstream {
            index: i,
            name: n.into(),
        }
    }

    fn rule(conds: Vec<(bool, DnsMatcher)>, target: DnsTarget) -> DnsRule {
        DnsRule {
            conditions: conds
                .into_iter()
                .map(|(negated, matcher)| DnsCondition { negated, matcher })
                .collect(),
            target,
            text: String::from("test rule"),
        }
    }

    fn facts<'a>(
        qname: &'a str,
        qtype: u16,
        upstream: Option<&'a str>,
        ips: &'a [IpAddr],
    ) -> Facts<'a> {
        Facts {
            qname,
            qtype,
            upstream,
            answer_ips: ips,
        }
    }

    #[test]
    fn response_conditions_see_upstream_and_answer_ips() {
        let net = IpNet {
            addr: "192.0.2.0".parse().unwrap(),
            prefix: 24,
        };
        let rules = Rules::new(
            &[rule(
                vec![
                    (false, DnsMatcher::Upstream(vec!["b".into()])),
                    (false, DnsMatcher::Ip(vec![net].into())),
                ],
                up(0, "a"),
            )],
            DnsTarget::Accept,
        );
        assert!(!rules.needs_qname());
        let inside: [IpAddr; 2] = [
            "198.51.100.1".parse().unwrap(),
            "192.0.2.77".parse().unwrap(),
        ];
        let outside: [IpAddr; 1] = ["2001:db8::1".parse().unwrap()];
        assert_eq!(
            rules.select(&facts("x", 1, Some("b"), &inside)).0,
            &up(0, "a")
        );
        assert_eq!(
            rules.select(&facts("x", 1, Some("a"), &inside)).0,
            &DnsTarget::Accept
        );
        assert_eq!(
            rules.select(&facts("x", 1, Some("b"), &outside)).0,
            &DnsTarget::Accept
        );
        assert_eq!(
            rules.select(&facts("x", 1, Some("b"), &[])).0,
            &DnsTarget::Accept
        );
    }

    #[test]
    fn first_matching_rule_wins_then_fallback() {
        let rules = Rules::new(
            &[
                rule(
                    vec![(
                        false,
                        DnsMatcher::Qname(vec![DomainPattern::Suffix("lan".into())]),
                    )],
                    DnsTarget::Asis,
                ),
                rule(
                    vec![(false, DnsMatcher::Qtype(vec![28]))],
                    DnsTarget::Reject,
                ),
                rule(
                    vec![
                        (
                            true,
                            DnsMatcher::Qname(vec![DomainPattern::Suffix("cn".into())]),
                        ),
                        (false, DnsMatcher::Qtype(vec![1])),
                    ],
                    up(1, "b"),
                ),
            ],
            up(0, "a"),
        );
        assert!(rules.needs_qname());
        assert_eq!(
            rules.select(&facts("nas.lan", 28, None, &[])).0,
            &DnsTarget::Asis
        );
        assert_eq!(
            rules.select(&facts("x.example", 28, None, &[])).0,
            &DnsTarget::Reject
        );
        assert_eq!(
            rules.select(&facts("x.example", 1, None, &[])).0,
            &up(1, "b")
        );
        let (t, text) = rules.select(&facts("x.cn", 1, None, &[]));
        assert_eq!((t, text), (&up(0, "a"), None));
    }
}
