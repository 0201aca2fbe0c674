//! Domain sets: a compiled `qname(...)` or `domain(...)`, the one domain
//! matcher of the DNS rules (`controller::rules`) and the routing rules
//! (`routing`).
//!
//! Suffixes and full names go into hash sets, keywords and regexes into
//! lists, so a name is matched by walking its label boundaries rather than
//! by scanning every pattern. Geosite categories (`geosite:NAME`) come
//! compiled from `geodata` and stay shared by every rule naming them.
//!
//! Neighbours: `config::rule` (parses the patterns), `geodata` (the
//! categories), `controller::rules`, `routing`.

use std::collections::HashSet;

use crate::config::DomainPattern;
use crate::geodata::SiteRef;

/// A compiled `qname(...)`.
#[derive(Debug, Default)]
pub struct DomainSet {
    suffixes: HashSet<String>,
    full: HashSet<String>,
    keywords: Vec<String>,
    regexes: Vec<regex_lite::Regex>,
    sets: Vec<SiteRef>,
}

impl DomainSet {
    pub fn new(patterns: &[DomainPattern]) -> DomainSet {
        let mut set = DomainSet::default();
        for p in patterns {
            match p {
                DomainPattern::Suffix(s) => {
                    set.suffixes.insert(s.clone());
                }
                DomainPattern::Full(s) => {
                    set.full.insert(s.clone());
                }
                DomainPattern::Keyword(s) => set.keywords.push(s.clone()),
                DomainPattern::Regex(r) => set.regexes.push(r.clone()),
                DomainPattern::Set(s) => {
                    if !set.sets.iter().any(|x| std::rc::Rc::ptr_eq(x, s)) {
                        set.sets.push(s.clone())
                    }
                }
            }
        }
        set
    }

    /// Whether `name` (lowercase, no final dot) matches: a suffix matches the
    /// name itself and every name below it, never a name that merely ends
    /// with the same letters (`example.com` does not match `badexample.com`).
    pub fn matches(&self, name: &str) -> bool {
        if self.full.contains(name) {
            return true;
        }
        if !self.suffixes.is_empty() {
            let mut rest = name;
            loop {
                if self.suffixes.contains(rest) {
                    return true;
                }
                match rest.find('.') {
                    Some(dot) => rest = &rest[dot + 1..],
                    None => break,
                }
            }
        }
        self.keywords.iter().any(|k| name.contains(k.as_str()))
            || self.regexes.iter().any(|r| r.is_match(name))
            || self.sets.iter().any(|s| s.set.matches(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_patterns() {
        let set = DomainSet::new(&[
            DomainPattern::Suffix("example.com".into()),
            DomainPattern::Full("exact.example.org".into()),
            DomainPattern::Keyword("tracker".into()),
            DomainPattern::Regex(regex_lite::Regex::new("^ad[0-9]+\\.").unwrap()),
        ]);
        for yes in [
            "example.com",
            "www.example.com",
            "a.b.example.com",
            "exact.example.org",
            "my-tracker.net",
            "ad12.example.net",
        ] {
            assert!(set.matches(yes), "{yes}");
        }
        for no in [
            "badexample.com",
            "example.com.evil",
            "sub.exact.example.org",
            "example.org",
            "ad.example.net",
            "",
        ] {
            assert!(!set.matches(no), "{no}");
        }
    }
}
