//! Reading `/etc/config/dae`: UCI text in, a checked `Config` or every
//! problem out.
//!
//! Two passes. The first is driven by `schema::SCHEMA`: section types,
//! named sections, unknown options, one value or many, required options and
//! every scalar value. The second builds the typed `Config` and checks what
//! needs the other sections: rules and the upstreams they name, groups and
//! their nodes, routing targets. All problems are collected, each naming
//! its section and option.
//!
//! Neighbours: `schema` (the table), `rule` (rule syntax), `url` (addresses),
//! `model` (the result).

use std::net::IpAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::str::FromStr;
use std::time::Duration;

use uci_rs::{Uci, UciCommand};

use super::check;
use super::model::*;
use super::rule::{self, Arg};
use super::schema::{self, SectionSchema};
use super::subscription;
use super::url;
use super::ConfigError;
use crate::geodata;

/// The functions a routing rule may use.
pub const ROUTING_FUNCTIONS: &[&str] = &[
    "dip",
    "sip",
    "dport",
    "sport",
    "l4proto",
    "ipversion",
    "domain",
    "mac",
    "pname",
    "dscp",
];

/// Routing targets that are not group names.
const ROUTING_RESERVED: &[&str] = &["direct", "block", "must_direct"];

/// One section as read, with its schema.
struct Section<'a> {
    ty: String,
    name: String,
    options: Vec<(String, &'a Vec<String>)>,
    schema: &'static SectionSchema,
}

impl Section<'_> {
    fn values(&self, opt: &str) -> &[String] {
        self.options
            .iter()
            .find(|(n, _)| n == opt)
            .map_or(&[], |(_, v)| v.as_slice())
    }

    /// The value of a single-valued option, or its default.
    fn one(&self, opt: &str) -> Option<&str> {
        self.values(opt)
            .last()
            .map(String::as_str)
            .or_else(|| self.schema.option(opt).and_then(|o| o.default))
    }
}

#[derive(Default)]
struct Problems(Vec<ConfigError>);

impl Problems {
    fn add(&mut self, s: &Section, option: Option<&str>, message: impl Into<String>) {
        self.0.push(ConfigError {
            section: Some((s.ty.clone(), s.name.clone())),
            option: option.map(String::from),
            message: message.into(),
        });
    }
}

/// Parses and checks UCI text.
pub fn parse(text: &str) -> Result<Config, Vec<ConfigError>> {
    let text = &super::quoting::normalize(text).map_err(|message| {
        vec![ConfigError {
            section: None,
            option: None,
            message: format!("not a valid UCI file: {message}"),
        }]
    })?;
    let uci = uci_rs::parse_raw_to_uci("dae", text.to_string()).map_err(|e| {
        vec![ConfigError {
            section: None,
            option: None,
            message: format!("not a valid UCI file: {}", e.message),
        }]
    })?;
    if let Some(e) = written_for_go_dae(&uci) {
        return Err(vec![e]);
    }
    let mut problems = Problems::default();
    // UCI merges sections of the same name whatever their types, so a name
    // used twice must be caught in the text itself.
    let declared = declared_sections(text);
    let mut clashing = Vec::new();
    for (i, (ty, name)) in declared.iter().enumerate() {
        if let Some((other, _)) = declared[..i].iter().find(|(t, n)| n == name && t != ty) {
            clashing.push(name.clone());
            problems.0.push(ConfigError {
                section: Some((ty.clone(), name.clone())),
                option: None,
                message: format!("the name '{name}' is already used by a '{other}' section"),
            });
        }
    }
    let mut sections = Vec::new();
    for (ty, name) in uci.get_all_sections() {
        let options = uci.get_all_options(&name).unwrap_or_default();
        match schema::section(&ty) {
            Some(schema) => sections.push(Section {
                ty,
                name,
                options,
                schema,
            }),
            None => problems.0.push(ConfigError {
                section: Some((ty.clone(), name)),
                option: None,
                message: format!(
                    "unknown section type '{ty}' (known: {})",
                    schema::SCHEMA
                        .iter()
                        .map(|s| s.ty)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }),
        }
    }
    for i in 0..sections.len() {
        // A clash merged two sections into one: its options are a mix, and
        // the clash is the problem to report.
        if !clashing.contains(&sections[i].name) {
            check_generic(i, &sections, &mut problems);
        }
    }
    let config = build(&sections, &mut problems);
    if problems.0.is_empty() {
        Ok(config)
    } else {
        Err(problems.0)
    }
}

/// `option geodata_dir` of the `dae` section (its default when unset),
/// read without checking the rest of the file: `dae geodata` lists the
/// rule sets even while a rule naming a missing one makes the file invalid.
pub fn geodata_dir(text: &str) -> Result<PathBuf, String> {
    let text = super::quoting::normalize(text)?;
    let uci = uci_rs::parse_raw_to_uci("dae", text).map_err(|e| e.message)?;
    let set = uci
        .get_all_sections()
        .into_iter()
        .filter(|(ty, _)| ty == "dae")
        .find_map(|(_, name)| uci.get_option_last(&name, "geodata_dir").ok()?.1);
    Ok(PathBuf::from(set.unwrap_or_else(|| {
        crate::geodata::DEFAULT_DIR.to_string()
    })))
}

/// ImmortalWrt's `dae` package (the Go dae) has the same name and
/// /etc/config/dae; its UCI section only points at a config.dae with
/// `option config_file`. Such a file gets one error that says so, not one
/// per unknown name.
fn written_for_go_dae(uci: &Uci) -> Option<ConfigError> {
    uci.get_all_sections().into_iter().find_map(|(ty, name)| {
        let options = uci.get_all_options(&name).unwrap_or_default();
        let file = options.iter().find(|(o, _)| o == "config_file")?;
        Some(ConfigError {
            section: Some((ty, name)),
            option: Some("config_file".to_string()),
            message: format!(
                "this file is written for the Go dae (daeuniverse/dae), which reads {:?}; \
                 this dae is configured in UCI options: start from its default config \
                 (`dae schema --json` lists the options) and see \
                 \"Moving from the Go dae\" in openwrt/README.md",
                file.1.first().map(String::as_str).unwrap_or("")
            ),
        })
    })
}

/// The `config TYPE 'NAME'` lines of the text, in order (named ones only).
fn declared_sections(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let rest = line.trim_start().strip_prefix("config")?;
            if !rest.starts_with(char::is_whitespace) {
                return None;
            }
            let mut words = rest.split_whitespace().map(|w| w.trim_matches(['\'', '"']));
            let ty = words.next()?;
            let name = words.next().filter(|n| !n.starts_with('#'))?;
            Some((ty.to_string(), name.to_string()))
        })
        .collect()
}

/// The schema-driven checks of one section (`all[index]`).
fn check_generic(index: usize, all: &[Section], p: &mut Problems) {
    let s = &all[index];
    let earlier = &all[..index];
    if s.schema.single && earlier.iter().any(|o| o.ty == s.ty) {
        p.add(s, None, format!("only one '{}' section is allowed", s.ty));
    }
    if s.schema.named {
        if s.name.starts_with('@') {
            p.add(
                s,
                None,
                format!("needs a name, as in: config {} 'NAME'", s.ty),
            );
        } else if !s
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            p.add(
                s,
                None,
                "a section name may hold only letters, digits and '_'",
            );
        }
    }
    for (name, values) in &s.options {
        let Some(o) = s.schema.option(name) else {
            let known: Vec<&str> = s.schema.options.iter().map(|o| o.name).collect();
            p.add(
                s,
                Some(name),
                format!("unknown option (known: {})", known.join(", ")),
            );
            continue;
        };
        if !o.list && values.len() > 1 {
            p.add(
                s,
                Some(name),
                format!("takes one value, {} were given", values.len()),
            );
        }
        for v in values.iter() {
            if v.is_empty() {
                p.add(s, Some(name), "is empty");
            } else if let Err(e) = schema::check_scalar(o.kind, v) {
                p.add(s, Some(name), e);
            }
        }
    }
    for o in s.schema.options.iter().filter(|o| o.required) {
        if s.values(o.name).is_empty() {
            p.add(s, Some(o.name), "is missing (required)");
        }
    }
}

/// A fallback section for a single type that is absent: defaults only.
fn defaults(ty: &str) -> Section<'static> {
    Section {
        ty: ty.to_string(),
        name: ty.to_string(),
        options: Vec::new(),
        schema: schema::section(ty).expect("a known section type"),
    }
}

fn build(sections: &[Section], p: &mut Problems) -> Config {
    fn of<'s, 'a>(
        sections: &'s [Section<'a>],
        ty: &'static str,
    ) -> impl Iterator<Item = &'s Section<'a>> {
        sections
            .iter()
            .filter(move |s| s.ty == ty && s.schema.named && !s.name.starts_with('@'))
    }

    let upstreams: Vec<Upstream> = of(sections, "upstream")
        .filter_map(|s| {
            if ["asis", "reject", "accept"].contains(&s.name.as_str()) {
                p.add(
                    s,
                    None,
                    format!(
                        "'{}' is reserved for rules and cannot name an upstream",
                        s.name
                    ),
                );
            }
            let address = s.one("address")?;
            match url::upstream(address) {
                Ok(url) => Some(Upstream {
                    name: s.name.clone(),
                    bootstrap: s.one("bootstrap").and_then(|a| a.parse().ok()),
                    allow_insecure: flag(s, "allow_insecure"),
                    url,
                }),
                Err(e) => {
                    p.add(s, Some("address"), e);
                    None
                }
            }
        })
        .collect();
    let upstream_names: Vec<String> = of(sections, "upstream").map(|s| s.name.clone()).collect();

    let nodes: Vec<Node> = of(sections, "node")
        .filter_map(|s| {
            let link = s.one("link")?;
            match url::check_share_link(link) {
                Ok(()) => Some(Node {
                    name: s.name.clone(),
                    link: link.to_string(),
                }),
                Err(e) => {
                    p.add(s, Some("link"), e);
                    None
                }
            }
        })
        .collect();
    let node_names: Vec<String> = of(sections, "node").map(|s| s.name.clone()).collect();

    let subscriptions: Vec<Subscription> = of(sections, "subscription")
        .filter_map(|s| {
            let url = s.one("url")?;
            Some(Subscription {
                name: s.name.clone(),
                url: url.to_string(),
                interval: s
                    .one("interval")
                    .and_then(subscription::interval)
                    .unwrap_or(Duration::from_secs(86400)),
                enabled: s
                    .one("enabled")
                    .and_then(schema::bool_value)
                    .unwrap_or(true),
            })
        })
        .collect();
    let sub_names: Vec<String> = of(sections, "subscription")
        .map(|s| s.name.clone())
        .collect();

    let groups: Vec<Group> = of(sections, "group")
        .map(|s| {
            if ROUTING_RESERVED.contains(&s.name.as_str()) {
                p.add(
                    s,
                    None,
                    format!(
                        "'{}' is reserved for routing and cannot name a group",
                        s.name
                    ),
                );
            }
            let members: Vec<String> = s.values("node").to_vec();
            for m in &members {
                if !node_names.contains(m) {
                    p.add(
                        s,
                        Some("node"),
                        format!("no node section is named '{m}'{}", known(&node_names)),
                    );
                }
            }
            let subs: Vec<String> = s.values("subscription").to_vec();
            for m in &subs {
                if !sub_names.contains(m) {
                    p.add(
                        s,
                        Some("subscription"),
                        format!(
                            "no subscription section is named '{m}'{}",
                            known(&sub_names)
                        ),
                    );
                }
            }
            if members.is_empty() && subs.is_empty() {
                p.add(
                    s,
                    Some("node"),
                    "is missing: a group needs a list node or a list subscription",
                );
            }
            let mut filters = Vec::new();
            for f in s.values("filter") {
                match subscription::filter(f) {
                    Ok(f) => filters.push(f),
                    Err(e) => p.add(s, Some("filter"), format!("'{f}': {e}")),
                }
            }
            if !filters.is_empty() && subs.is_empty() {
                p.add(
                    s,
                    Some("filter"),
                    "filters pick nodes of subscriptions, and the group lists none",
                );
            }
            // Subscription nodes come and go: fixed(N) counts the group's
            // own nodes only.
            let policy =
                match group_policy(s.one("policy").unwrap_or("min_moving_avg"), members.len()) {
                    Ok(pol) => pol,
                    Err(e) => {
                        p.add(s, Some("policy"), e);
                        GroupPolicy::MinMovingAvg
                    }
                };
            Group {
                name: s.name.clone(),
                nodes: members,
                subscriptions: subs,
                filters,
                policy,
            }
        })
        .collect();
    let group_names: Vec<String> = groups.iter().map(|g| g.name.clone()).collect();

    let general_section = sections.iter().find(|s| s.ty == "dae");
    let general = general(general_section.unwrap_or(&defaults("dae")));
    let geodata = geodata::Loader::new(&general.geodata_dir);
    let dns_default = defaults("dns");
    let dns = dns(
        sections
            .iter()
            .find(|s| s.ty == "dns")
            .unwrap_or(&dns_default),
        &upstreams,
        &upstream_names,
        &geodata,
        p,
    );
    let routing_default = defaults("routing");
    let routing = routing(
        sections
            .iter()
            .find(|s| s.ty == "routing")
            .unwrap_or(&routing_default),
        &group_names,
        &geodata,
        p,
    );

    Config {
        general,
        dns,
        upstreams,
        nodes,
        groups,
        routing,
        subscriptions,
    }
}

fn known(names: &[String]) -> String {
    if names.is_empty() {
        String::from(" (none are defined)")
    } else {
        format!(" (defined: {})", names.join(", "))
    }
}

fn flag(s: &Section, opt: &str) -> bool {
    s.one(opt).and_then(schema::bool_value).unwrap_or(false)
}

fn number(s: &Section, opt: &str) -> u64 {
    s.one(opt).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// The `dae` section. Its values were checked by the generic pass; a value
/// that failed there falls back to a harmless one (the config is refused
/// anyway).
fn general(s: &Section) -> General {
    General {
        enabled: flag(s, "enabled"),
        log_level: match s.one("log_level") {
            Some("error") => log::LevelFilter::Error,
            Some("warn") => log::LevelFilter::Warn,
            Some("debug") => log::LevelFilter::Debug,
            Some("trace") => log::LevelFilter::Trace,
            _ => log::LevelFilter::Info,
        },
        lan_interfaces: {
            let mut v: Vec<String> = Vec::new();
            for i in s.values("lan_interface") {
                if !v.contains(i) {
                    v.push(i.clone());
                }
            }
            v
        },
        tproxy_port: number(s, "tproxy_port") as u16,
        so_mark: s
            .one("so_mark")
            .and_then(|m| schema::parse_mark(m).ok())
            .unwrap_or(0),
        wan_interface: s.one("wan_interface").map(str::to_string),
        fail_closed: flag(s, "fail_closed"),
        bpf_object: s.one("bpf_object").map(PathBuf::from),
        ca_file: PathBuf::from(s.one("ca_file").unwrap_or_default()),
        status_socket: PathBuf::from(s.one("status_socket").unwrap_or_default()),
        geodata_dir: PathBuf::from(s.one("geodata_dir").unwrap_or_default()),
        subscription_dir: PathBuf::from(s.one("subscription_dir").unwrap_or_default()),
        check: CheckSettings {
            interval: Duration::from_secs(number(s, "check_interval").max(5)),
            tolerance: Duration::from_millis(number(s, "check_tolerance")),
            tcp: s
                .one("tcp_check_url")
                .and_then(|v| check::tcp_check_url(v).ok())
                .unwrap_or_else(|| check::tcp_check_url(check::DEFAULT_TCP_CHECK).unwrap()),
            udp: s
                .one("udp_check_dns")
                .and_then(|v| check::udp_check_dns(v).ok())
                .unwrap_or_else(|| check::udp_check_dns(check::DEFAULT_UDP_CHECK).unwrap()),
        },
    }
}

fn dns(
    s: &Section,
    upstreams: &[Upstream],
    names: &[String],
    geodata: &geodata::Loader,
    p: &mut Problems,
) -> DnsConfig {
    let index = |name: &str| upstreams.iter().position(|u| u.name == name);
    let mut listen = Vec::new();
    for v in s.values("dns_listen") {
        match url::listen_address(v) {
            Ok(a) if !listen.contains(&a) => listen.push(a),
            Ok(_) => {}
            Err(e) => p.add(s, Some("dns_listen"), e),
        }
    }
    let mut rules = |opt: &str, response: bool| -> Vec<DnsRule> {
        s.values(opt)
            .iter()
            .filter_map(
                |text| match dns_rule(text, response, names, &index, geodata) {
                    Ok(r) => Some(r),
                    Err(e) => {
                        p.add(s, Some(opt), format!("\"{text}\": {e}"));
                        None
                    }
                },
            )
            .collect()
    };
    let request_rules = rules("request_rule", false);
    let response_rules = rules("response_rule", true);
    let mut fallback = |opt: &str, response: bool, default: DnsTarget| -> DnsTarget {
        let v = s.one(opt).unwrap_or_default();
        match dns_target(v, response, names, &index) {
            Ok(t) => t,
            Err(e) => {
                p.add(s, Some(opt), e);
                default
            }
        }
    };
    let request_fallback = fallback("request_fallback", false, DnsTarget::Asis);
    let response_fallback = fallback("response_fallback", true, DnsTarget::Accept);
    let mut fixed_domain_ttl: Vec<(String, u32)> = Vec::new();
    for v in s.values("fixed_domain_ttl") {
        match fixed_ttl(v) {
            Ok((name, ttl)) => {
                fixed_domain_ttl.retain(|(n, _)| *n != name);
                fixed_domain_ttl.push((name, ttl));
            }
            Err(e) => p.add(s, Some("fixed_domain_ttl"), e),
        }
    }
    DnsConfig {
        listen,
        allow_remote: flag(s, "allow_remote"),
        cache_size: number(s, "cache_size") as usize,
        ipversion_prefer: match s.one("ipversion_prefer") {
            Some("4") => IpVersionPrefer::V4,
            Some("6") => IpVersionPrefer::V6,
            _ => IpVersionPrefer::Both,
        },
        request_rules,
        request_fallback,
        response_rules,
        response_fallback,
        fixed_domain_ttl,
        serve_stale: flag(s, "serve_stale"),
        stale_window: Duration::from_secs(number(s, "stale_window")),
        upstream_timeout: Duration::from_secs(number(s, "upstream_timeout").max(1)),
    }
}

fn fixed_ttl(v: &str) -> Result<(String, u32), String> {
    let (name, secs) = v
        .rsplit_once(':')
        .ok_or_else(|| format!("\"{v}\" is not NAME:SECONDS"))?;
    let name = url::host_name(name)?;
    match secs.parse::<u32>() {
        Ok(t) if t <= 604_800 => Ok((name, t)),
        _ => Err(format!(
            "\"{v}\": '{secs}' is not a number of seconds from 0 to 604800"
        )),
    }
}

fn dns_target(
    v: &str,
    response: bool,
    names: &[String],
    index: &dyn Fn(&str) -> Option<usize>,
) -> Result<DnsTarget, String> {
    match (v, response) {
        ("reject", _) => Ok(DnsTarget::Reject),
        ("asis", false) => Ok(DnsTarget::Asis),
        ("accept", true) => Ok(DnsTarget::Accept),
        ("asis", true) => Err("'asis' is for request rules; a response can be accepted, rejected or asked again at an upstream".into()),
        ("accept", false) => Err("'accept' is for response rules; a request goes to an upstream, 'asis' or 'reject'".into()),
        (name, _) => match index(name) {
            Some(i) => Ok(DnsTarget::Upstream {
                index: i,
                name: name.into(),
            }),
            // Defined but broken upstreams are reported at the upstream.
            None if names.iter().any(|n| n == name) => Ok(DnsTarget::Reject),
            None => Err(format!(
                "no upstream is named '{name}'{}",
                known(names)
            )),
        },
    }
}

fn dns_rule(
    text: &str,
    response: bool,
    names: &[String],
    index: &dyn Fn(&str) -> Option<usize>,
    geodata: &geodata::Loader,
) -> Result<DnsRule, String> {
    let r = rule::parse(text)?;
    let mut conditions = Vec::new();
    for c in &r.conditions {
        let matcher = match (c.function.as_str(), response) {
            ("qname", _) => DnsMatcher::Qname(domain_patterns(&c.args, geodata)?),
            ("qtype", _) => DnsMatcher::Qtype(c.args.iter().map(qtype).collect::<Result<_, _>>()?),
            ("upstream", true) => DnsMatcher::Upstream(
                c.args
                    .iter()
                    .map(|a| {
                        let v = plain(a, "upstream")?;
                        if v == "asis" || names.iter().any(|n| n == v) {
                            Ok(v.to_string())
                        } else {
                            Err(format!(
                                "upstream({v}): no upstream is named '{v}'{}",
                                known(names)
                            ))
                        }
                    })
                    .collect::<Result<_, String>>()?,
            ),
            ("ip", true) => DnsMatcher::Ip(ip_list(&c.args, "ip", geodata)?),
            (f, _) => {
                let allowed = if response {
                    "qname, qtype, upstream, ip"
                } else {
                    "qname, qtype"
                };
                return Err(format!(
                    "'{f}' cannot be used in a {} rule (allowed: {allowed})",
                    if response { "response" } else { "request" }
                ));
            }
        };
        conditions.push(DnsCondition {
            negated: c.negated,
            matcher,
        });
    }
    if !r.target.args.is_empty() {
        return Err(format!("the target '{}' takes no arguments", r.target.name));
    }
    Ok(DnsRule {
        conditions,
        target: dns_target(&r.target.name, response, names, index)?,
        text: text.to_string(),
    })
}

/// An argument that must not have a key.
fn plain<'a>(a: &'a Arg, function: &str) -> Result<&'a str, String> {
    match &a.key {
        None => Ok(&a.value),
        Some(k) if k == "geoip" || k == "geosite" || k == "ext" => Err(format!(
            "{function}({k}:{}): rule sets are taken by qname(), domain() (geosite:, ext:) \
             and ip(), dip(), sip() (geoip:, ext:)",
            a.value
        )),
        Some(k) => Err(format!("{function}() takes no '{k}:' key")),
    }
}

/// The networks of `ip(...)`, `dip(...)` or `sip(...)`: addresses,
/// networks, `geoip:NAME` and `ext:FILE:NAME`.
fn ip_list(args: &[Arg], function: &str, geodata: &geodata::Loader) -> Result<IpList, String> {
    let mut list = IpList::default();
    for a in args {
        match a.key.as_deref() {
            Some(k @ ("geoip" | "ext")) => {
                let set = geodata.ip(k, &a.value)?;
                if !list.sets.iter().any(|s| Rc::ptr_eq(s, &set)) {
                    list.sets.push(set);
                }
            }
            _ => list.nets.push(cidr(plain(a, function)?)?),
        }
    }
    Ok(list)
}

fn domain_patterns(args: &[Arg], geodata: &geodata::Loader) -> Result<Vec<DomainPattern>, String> {
    args.iter()
        .map(|a| match a.key.as_deref() {
            None | Some("suffix") => Ok(DomainPattern::Suffix(url::host_name(&a.value)?)),
            Some("full") => Ok(DomainPattern::Full(url::host_name(&a.value)?)),
            Some("keyword") => Ok(DomainPattern::Keyword(a.value.to_ascii_lowercase())),
            Some("regex") => regex_lite::Regex::new(&a.value)
                .map(DomainPattern::Regex)
                .map_err(|e| format!("bad regex '{}': {e}", a.value)),
            Some(k @ ("geosite" | "ext")) => geodata.site(k, &a.value).map(DomainPattern::Set),
            Some(k) => Err(format!(
                "unknown key '{k}:' (allowed: suffix, full, keyword, regex, geosite, ext)"
            )),
        })
        .collect()
}

fn qtype(a: &Arg) -> Result<u16, String> {
    let v = plain(a, "qtype")?;
    if let Ok(n) = v.parse::<u16>() {
        return Ok(n);
    }
    match hickory_proto::rr::RecordType::from_str(&v.to_ascii_uppercase()) {
        Ok(hickory_proto::rr::RecordType::Unknown(_)) | Err(_) => Err(format!(
            "'{v}' is not a record type (a name like aaaa or mx, or a number)"
        )),
        Ok(t) => Ok(u16::from(t)),
    }
}

/// `addr/prefix` or a bare address; host bits are cleared.
fn cidr(v: &str) -> Result<IpNet, String> {
    let (addr, prefix) = match v.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (v, None),
    };
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("'{v}' is not an IP address or network (like 192.0.2.0/24)"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => max,
        Some(p) => match p.parse::<u8>() {
            Ok(n) if n <= max => n,
            _ => return Err(format!("'{v}': the prefix length must be 0 to {max}")),
        },
    };
    let addr = match addr {
        IpAddr::V4(a) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4((u32::from(a) & mask).into())
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6((u128::from(a) & mask).into())
        }
    };
    Ok(IpNet { addr, prefix })
}

fn group_policy(v: &str, nodes: usize) -> Result<GroupPolicy, String> {
    Ok(match v {
        "random" => GroupPolicy::Random,
        "min" => GroupPolicy::Min,
        "min_avg10" => GroupPolicy::MinAvg10,
        "min_moving_avg" => GroupPolicy::MinMovingAvg,
        other => {
            let n = other
                .strip_prefix("fixed(")
                .and_then(|r| r.strip_suffix(')'))
                .and_then(|n| n.trim().parse::<usize>().ok())
                .ok_or_else(|| {
                    format!("\"{other}\" is not a policy (random, fixed(N), min, min_avg10, min_moving_avg)")
                })?;
            if n >= nodes {
                return Err(format!(
                    "fixed({n}): the group has {nodes} node(s), counted from 0"
                ));
            }
            GroupPolicy::Fixed(n)
        }
    })
}

fn port_range(v: &str) -> Result<(u16, u16), String> {
    match v.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (url::port_number(a)?, url::port_number(b)?);
            if a > b {
                return Err(format!("'{v}': the range runs backwards"));
            }
            Ok((a, b))
        }
        None => url::port_number(v).map(|p| (p, p)),
    }
}

/// Checks a routing condition and types its arguments.
fn routing_matcher(
    c: &rule::Condition,
    geodata: &geodata::Loader,
) -> Result<RoutingMatcher, String> {
    let f = c.function.as_str();
    let each = |parse: &dyn Fn(&str) -> Result<(), String>| -> Result<Vec<String>, String> {
        c.args
            .iter()
            .map(|a| {
                let v = plain(a, f)?;
                parse(v)?;
                Ok(v.to_string())
            })
            .collect()
    };
    let ok = |_: &str| Ok(());
    let word = |allowed: &'static [&'static str]| {
        move |v: &str| {
            if allowed.contains(&v) {
                Ok(())
            } else {
                Err(format!(
                    "{f}({v}): not an allowed value ({})",
                    allowed.join(", ")
                ))
            }
        }
    };
    if c.args.is_empty() {
        return Err(format!("{f}() needs at least one value"));
    }
    Ok(match f {
        "dip" | "sip" => {
            let nets = ip_list(&c.args, f, geodata)?;
            if f == "dip" {
                RoutingMatcher::Dip(nets)
            } else {
                RoutingMatcher::Sip(nets)
            }
        }
        "dport" | "sport" => {
            let ports = each(&ok)?
                .iter()
                .map(|v| port_range(v))
                .collect::<Result<Vec<_>, _>>()?;
            if f == "dport" {
                RoutingMatcher::Dport(ports)
            } else {
                RoutingMatcher::Sport(ports)
            }
        }
        "l4proto" => RoutingMatcher::L4proto(
            each(&word(&["tcp", "udp"]))?
                .iter()
                .map(|v| v == "udp")
                .collect(),
        ),
        "ipversion" => {
            RoutingMatcher::IpVersion(each(&word(&["4", "6"]))?.iter().map(|v| v == "6").collect())
        }
        "domain" => RoutingMatcher::Domain(domain_patterns(&c.args, geodata)?),
        "mac" => RoutingMatcher::Mac(
            c.args
                .iter()
                .map(|a| {
                    // `aa:bb:...` reads as key `aa`; put it back together.
                    let mac = match &a.key {
                        Some(k) => format!("{k}:{}", a.value),
                        None => a.value.clone(),
                    };
                    let bytes: Vec<u8> = mac
                        .split(':')
                        .filter(|p| p.len() == 2)
                        .filter_map(|p| u8::from_str_radix(p, 16).ok())
                        .collect();
                    <[u8; 6]>::try_from(bytes.as_slice())
                        .ok()
                        .filter(|_| mac.len() == 17)
                        .ok_or_else(|| {
                            format!("mac({mac}): not a MAC address like 02:00:5e:00:53:01")
                        })
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        "pname" => RoutingMatcher::Pname(each(&ok)?),
        "dscp" => RoutingMatcher::Dscp(
            each(&|v: &str| match v.parse::<u8>() {
                Ok(n) if n < 64 => Ok(()),
                _ => Err(format!("dscp({v}): not a number from 0 to 63")),
            })?
            .iter()
            .filter_map(|v| v.parse().ok())
            .collect(),
        ),
        _ => {
            return Err(format!(
                "'{f}' is not a routing function (allowed: {})",
                ROUTING_FUNCTIONS.join(", ")
            ))
        }
    })
}

fn routing_target(name: &str, args: &[Arg], groups: &[String]) -> Result<Outbound, String> {
    if !ROUTING_RESERVED.contains(&name) && !groups.iter().any(|g| g == name) {
        return Err(format!(
            "no group is named '{name}' (targets: direct, block, must_direct or a group{})",
            if groups.is_empty() {
                String::new()
            } else {
                format!(": {}", groups.join(", "))
            }
        ));
    }
    match args {
        [] => {}
        [a] if a.key.is_none() && a.value == "must" => {}
        _ => return Err(format!("the target '{name}' takes no arguments but 'must'")),
    }
    Ok(match name {
        "direct" | "must_direct" => Outbound::Direct,
        "block" => Outbound::Block,
        g => Outbound::Group(g.to_string()),
    })
}

fn routing(s: &Section, groups: &[String], geodata: &geodata::Loader, p: &mut Problems) -> Routing {
    let mut rules = Vec::new();
    for text in s.values("rule") {
        let checked = rule::parse(text).and_then(|r| {
            let conditions = r
                .conditions
                .iter()
                .map(|c| routing_matcher(c, geodata).map(|m| (c.negated, m)))
                .collect::<Result<Vec<_>, _>>()?;
            let outbound = routing_target(&r.target.name, &r.target.args, groups)?;
            Ok(RoutingRule {
                conditions,
                outbound,
                text: text.clone(),
            })
        });
        match checked {
            Ok(rule) => rules.push(rule),
            Err(e) => p.add(s, Some("rule"), format!("\"{text}\": {e}")),
        }
    }
    let fallback = match routing_target(s.one("fallback").unwrap_or("direct"), &[], groups) {
        Ok(o) => o,
        Err(e) => {
            p.add(s, Some("fallback"), e);
            Outbound::Direct
        }
    };
    Routing { rules, fallback }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONTRACT: &str = r#"
config dae 'config'
	option enabled '0'
	option log_level 'info'            # error|warn|info|debug|trace
	list lan_interface 'br-lan'
	option tproxy_port '12345'

config dns 'dns'
	option cache_size '4096'           # entries; the cache never grows past it
	option ipversion_prefer '0'        # 0 = both, 4 or 6
	list request_rule 'qname(suffix: lan) -> asis'
	list request_rule 'qtype(aaaa) -> reject'
	option request_fallback 'dns_a'
	list response_rule 'upstream(dns_b) && ip(192.0.2.0/24) -> dns_a'
	option response_fallback 'accept'

config upstream 'dns_a'
	option address 'udp://203.0.113.53:53'  # udp, tcp, tcp+udp, tls, https, h3, quic

config node 'node1'
	option link 'socks5://203.0.113.80:1080'   # share link of any supported kind

config group 'proxy'
	list node 'node1'
	option policy 'min_moving_avg'     # random|fixed(N)|min|min_avg10|min_moving_avg

config routing 'routing'
	list rule 'dip(192.0.2.0/24) -> direct'
	list rule 'dport(53) && l4proto(udp) -> direct'
	option fallback 'proxy'
"#;

    fn errors(text: &str) -> Vec<String> {
        match parse(text) {
            Ok(_) => Vec::new(),
            Err(e) => e.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn the_contract_example_needs_only_its_missing_upstream() {
        // The contract's response rule names dns_b, which it never defines.
        let errs = errors(CONTRACT);
        assert_eq!(errs.len(), 1, "{errs:#?}");
        assert!(
            errs[0].starts_with("dns 'dns', option 'response_rule'"),
            "{}",
            errs[0]
        );
        assert!(errs[0].contains("no upstream is named 'dns_b' (defined: dns_a)"));

        let fixed = format!(
            "{CONTRACT}\nconfig upstream 'dns_b'\n\toption address 'tcp://[2001:db8::53]'\n"
        );
        let c = parse(&fixed).unwrap();
        assert_eq!(c.general.lan_interfaces, vec!["br-lan"]);
        assert_eq!(c.general.tproxy_port, 12345);
        assert_eq!(c.general.so_mark, 0x80);
        assert_eq!(c.dns.cache_size, 4096);
        assert_eq!(c.dns.request_rules.len(), 2);
        assert_eq!(c.dns.request_rules[0].target, DnsTarget::Asis);
        assert_eq!(c.dns.request_rules[1].target, DnsTarget::Reject);
        assert_eq!(
            c.dns.request_fallback,
            DnsTarget::Upstream {
                index: 0,
                name: "dns_a".into()
            }
        );
        assert_eq!(c.upstreams[1].url.port, 53);
        assert_eq!(c.groups[0].nodes, vec!["node1"]);
        assert_eq!(c.routing.fallback, Outbound::Group("proxy".into()));
        assert_eq!(c.routing.rules.len(), 2);
        assert_eq!(c.dns.upstream_timeout, Duration::from_secs(4));
        assert!(c.dns.serve_stale);
    }

    #[test]
    fn an_empty_file_is_all_defaults() {
        let c = parse("").unwrap();
        assert!(!c.general.enabled);
        assert!(c.general.lan_interfaces.is_empty());
        assert_eq!(c.dns.request_fallback, DnsTarget::Asis);
        assert_eq!(c.dns.response_fallback, DnsTarget::Accept);
        assert_eq!(c.general.bpf_object, None);
    }

    #[test]
    fn a_config_of_the_go_dae_says_what_it_is() {
        // ImmortalWrt's net/dae: one section that names its config.dae.
        for ty in ["dae", "v2raya"] {
            let errs = errors(&format!(
                "config {ty} 'config'\n\toption enabled '0'\n\
                 \toption config_file '/etc/dae/config.dae'\n"
            ));
            assert_eq!(errs.len(), 1, "{errs:#?}");
            assert!(errs[0].contains("option 'config_file'"), "{}", errs[0]);
            assert!(errs[0].contains("written for the Go dae"), "{}", errs[0]);
            assert!(errs[0].contains("/etc/dae/config.dae"), "{}", errs[0]);
            assert!(errs[0].contains("Moving from the Go dae"), "{}", errs[0]);
        }
    }

    #[test]
    fn every_problem_is_reported_with_its_place() {
        let errs = errors(
            "config dns 'dns'\n\toption cache_size 'lots'\n\toption colour 'blue'\n\
             \tlist request_rule 'qname(a) -> nowhere'\n\
             config upstream\n\toption address 'udp://192.0.2.1'\n\
             config bogus 'x'\n",
        );
        assert_eq!(errs.len(), 5, "{errs:#?}");
        assert!(errs
            .iter()
            .any(|e| e.contains("unknown section type 'bogus'")));
        assert!(errs.iter().any(|e| e.starts_with(
            "dns 'dns', option 'cache_size': \"lots\" is not a whole number from 0 to 1048576"
        )));
        assert!(errs
            .iter()
            .any(|e| e.starts_with("dns 'dns', option 'colour': unknown option")));
        assert!(errs
            .iter()
            .any(|e| e.contains("no upstream is named 'nowhere'")));
        assert!(errs
            .iter()
            .any(|e| e.starts_with("upstream '@upstream[0]': needs a name")));
    }

    #[test]
    fn rule_checks() {
        let up = "config upstream 'a'\n\toption address 'udp://192.0.2.1'\n";
        for (rule, expect) in [
            (
                "upstream(a) -> a",
                "'upstream' cannot be used in a request rule",
            ),
            ("qname(regex: '(') -> a", "bad regex"),
            ("qtype(bogus) -> a", "'bogus' is not a record type"),
            (
                "qname(geosite:cn) -> a",
                "geosite:cn: /usr/share/v2ray/geosite.dat: ",
            ),
            ("qname(a) -> accept", "'accept' is for response rules"),
            ("qname(a) -> a(x)", "takes no arguments"),
            ("qname(bad..name) -> a", "empty label"),
            ("qname(color: red) -> a", "unknown key 'color:'"),
        ] {
            let errs = errors(&format!(
                "config dns 'dns'\n\tlist request_rule \"{rule}\"\n{up}"
            ));
            assert_eq!(errs.len(), 1, "{rule}: {errs:?}");
            assert!(errs[0].contains(expect), "{rule}: {}", errs[0]);
        }
        for (rule, expect) in [
            ("ip(192.0.2.0/33) -> a", "prefix length"),
            ("ip(nonsense) -> a", "not an IP address"),
            ("upstream(zz) -> a", "no upstream is named 'zz'"),
            ("qname(a) -> asis", "'asis' is for request rules"),
        ] {
            let errs = errors(&format!(
                "config dns 'dns'\n\tlist response_rule \"{rule}\"\n{up}"
            ));
            assert_eq!(errs.len(), 1, "{rule}: {errs:?}");
            assert!(errs[0].contains(expect), "{rule}: {}", errs[0]);
        }
        let ok = parse(&format!(
            "config dns 'dns'\n\tlist response_rule 'upstream(asis) && ip(2001:db8::/32, 192.0.2.7) && qtype(aaaa, 65) -> reject'\n{up}"
        ))
        .unwrap();
        let DnsMatcher::Qtype(t) = &ok.dns.response_rules[0].conditions[2].matcher else {
            panic!()
        };
        assert_eq!(t, &vec![28, 65]);
    }

    #[test]
    fn routing_and_groups() {
        let base = "config node 'n1'\n\toption link 'socks5://192.0.2.9:1080'\n\
                    config group 'g'\n\tlist node 'n1'\n";
        assert!(parse(&format!(
            "{base}config routing 'routing'\n\tlist rule 'mac(02:00:5e:00:53:01) && dport(80-443) && !ipversion(6) -> g(must)'\n"
        ))
        .is_ok());
        for (extra, expect) in [
            (
                "config routing 'routing'\n\tlist rule 'dport(70000) -> direct'\n",
                "not a port",
            ),
            (
                "config routing 'routing'\n\tlist rule 'qname(a) -> direct'\n",
                "not a routing function",
            ),
            (
                "config routing 'routing'\n\toption fallback 'nowhere'\n",
                "no group is named 'nowhere'",
            ),
            (
                "config group 'g2'\n\tlist node 'n9'\n",
                "no node section is named 'n9'",
            ),
            (
                "config group 'g3'\n\tlist node 'n1'\n\toption policy 'fixed(1)'\n",
                "has 1 node(s)",
            ),
            (
                "config node 'n2'\n\toption link 'ftp://x:1'\n",
                "unknown scheme 'ftp'",
            ),
        ] {
            let errs = errors(&format!("{base}{extra}"));
            assert_eq!(errs.len(), 1, "{extra}: {errs:?}");
            assert!(errs[0].contains(expect), "{extra}: {}", errs[0]);
        }
    }

    #[test]
    fn subscriptions_and_the_groups_that_take_them() {
        let good = "config subscription 's1'\n\toption url 'https://sub.example/x?token=1'\n\
                    \toption interval '12h'\n\n\
                    config group 'g'\n\tlist subscription 's1'\n\
                    \tlist filter 'name(keyword: HK) && !name(regex: test)'\n";
        let c = parse(good).unwrap();
        assert_eq!(c.subscriptions[0].interval, Duration::from_secs(43200));
        assert!(c.subscriptions[0].enabled);
        assert_eq!(c.groups[0].subscriptions, vec!["s1"]);
        assert!(c.groups[0].filters[0].matches("HK 1", "s1"));
        let bad = "config subscription 's2'\n\toption url 'ftp://x.example/'\n\
                   \toption interval '30s'\n\toption enabled 'maybe'\n\n\
                   config subscription 's3'\n\n\
                   config group 'g'\n\tlist subscription 'nope'\n\
                   \tlist filter 'name(kw: HK)'\n\n\
                   config group 'h'\n\toption policy 'min'\n";
        let e = errors(bad);
        for want in [
            "subscription 's2', option 'url': scheme 'ftp' is not http or https",
            "subscription 's2', option 'interval': \"30s\" is not a period from 60 s",
            "subscription 's2', option 'enabled': \"maybe\" is not a yes/no value",
            "subscription 's3', option 'url': is missing (required)",
            "group 'g', option 'subscription': no subscription section is named 'nope' (defined: s2, s3)",
            "group 'g', option 'filter': 'name(kw: HK)': unknown key 'kw:'",
            "group 'h', option 'node': is missing: a group needs a list node or a list subscription",
        ] {
            assert!(e.iter().any(|l| l.starts_with(want)), "{want}\n{e:#?}");
        }
    }

    #[test]
    fn a_name_used_by_two_types_is_refused() {
        let errs = errors(
            "config node 'n1'\n\toption link 'socks5://192.0.2.9:1080'\n\
             config group 'g'\n\tlist node 'n1'\n\
             config upstream 'g'\n\toption address 'udp://192.0.2.1'\n",
        );
        assert!(
            errs.iter().any(|e| e
                .starts_with("upstream 'g': the name 'g' is already used by a 'group' section")),
            "{errs:#?}"
        );
    }

    #[test]
    fn values_and_lists() {
        let errs = errors("config dae 'config'\n\toption tproxy_port '0'\n\tlist log_level 'info'\n\tlist log_level 'debug'\n\toption lan_interface 'a/b'\n");
        assert_eq!(errs.len(), 3, "{errs:#?}");
        let errs = errors("config dns 'dns'\n\tlist fixed_domain_ttl 'ddns.example:ten'\n\tlist dns_listen '127.0.0.1'\n");
        assert_eq!(errs.len(), 2, "{errs:#?}");
        let c = parse("config dns 'dns'\n\tlist fixed_domain_ttl 'DDNS.example.:10'\n\tlist dns_listen '[::1]:5353'\n").unwrap();
        assert_eq!(
            c.dns.fixed_domain_ttl,
            vec![("ddns.example".to_string(), 10)]
        );
        assert_eq!(c.dns.listen[0].port(), 5353);
        let errs = errors("config dns 'dns'\nconfig dns 'again'\n");
        assert!(errs[0].contains("only one 'dns' section"), "{errs:?}");
        assert!(errors("config dns 'dns'\n\toption 'unterminated\n")
            .iter()
            .any(|e| e.contains("not a valid UCI file")));
    }
}
