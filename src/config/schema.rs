//! The shape of `/etc/config/dae`: every section type and option, its kind,
//! default, limits and a line of help.
//!
//! The checker (`config::uci`) takes unknown names, list-or-single, required
//! options, defaults and every scalar check (bool, integer ranges, enums,
//! ports) from this table, so what is enforced and what `dae schema --json`
//! tells LuCI cannot drift apart.
//!
//! Neighbours: `config::uci` (the checker), `main` (`dae schema`).

use serde_json::{json, Value};

/// What an option holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// 0/1, true/false, yes/no, on/off.
    Bool,
    /// A whole number within the range.
    Int { min: u64, max: u64 },
    /// One of these words.
    Enum(&'static [&'static str]),
    /// 1 to 65535.
    Port,
    /// A 32-bit mark, decimal or 0x hex.
    Mark,
    /// An IPv4 or IPv6 address.
    IpAddress,
    /// A network interface name.
    Interface,
    /// An absolute file path.
    Path,
    /// `IP:PORT`.
    ListenAddress,
    /// `scheme://host[:port][/path]`.
    UpstreamAddress,
    /// A proxy share link.
    ShareLink,
    /// `http://HOST[:PORT][/PATH],IP,...` (health checks over TCP).
    CheckUrl,
    /// `HOST:PORT,IP,...` (health checks over UDP).
    CheckDns,
    /// `NAME:SECONDS`.
    FixedTtl,
    /// A DNS request rule (`qname`, `qtype` -> upstream | asis | reject).
    RequestRule,
    /// An upstream name, `asis` or `reject`.
    RequestTarget,
    /// A DNS response rule (`qname`, `qtype`, `upstream`, `ip` ->
    /// accept | reject | upstream).
    ResponseRule,
    /// `accept`, `reject` or an upstream name.
    ResponseTarget,
    /// The name of a node section.
    NodeName,
    /// random | fixed(N) | min | min_avg10 | min_moving_avg.
    GroupPolicy,
    /// A routing rule.
    RoutingRule,
    /// `direct`, `block` or a group name.
    RoutingTarget,
    /// `http://` or `https://` URL of a subscription.
    SubscriptionUrl,
    /// A period: seconds, or a number with s, m, h or d.
    Interval { min: u64, max: u64 },
    /// The name of a subscription section.
    SubscriptionName,
    /// `[!]name(keyword: K, regex: R, NAME) && [!]subtag(SUB)`.
    NodeFilter,
}

#[derive(Debug)]
pub struct OptionSchema {
    pub name: &'static str,
    pub kind: Kind,
    /// Written with `list` (several values).
    pub list: bool,
    pub default: Option<&'static str>,
    pub required: bool,
    pub help: &'static str,
}

#[derive(Debug)]
pub struct SectionSchema {
    pub ty: &'static str,
    /// At most one section of this type.
    pub single: bool,
    /// Sections must be named (rules refer to them by name).
    pub named: bool,
    pub help: &'static str,
    pub options: &'static [OptionSchema],
}

impl SectionSchema {
    pub fn option(&self, name: &str) -> Option<&OptionSchema> {
        self.options.iter().find(|o| o.name == name)
    }
}

const fn opt(
    name: &'static str,
    kind: Kind,
    default: Option<&'static str>,
    help: &'static str,
) -> OptionSchema {
    OptionSchema {
        name,
        kind,
        list: false,
        default,
        required: false,
        help,
    }
}

const fn list(name: &'static str, kind: Kind, help: &'static str) -> OptionSchema {
    OptionSchema {
        name,
        kind,
        list: true,
        default: None,
        required: false,
        help,
    }
}

const fn required(name: &'static str, kind: Kind, list: bool, help: &'static str) -> OptionSchema {
    OptionSchema {
        name,
        kind,
        list,
        default: None,
        required: true,
        help,
    }
}

pub const LOG_LEVELS: &[&str] = &["error", "warn", "info", "debug", "trace"];

pub static SCHEMA: &[SectionSchema] = &[
    SectionSchema {
        ty: "dae",
        single: true,
        named: false,
        help: "General settings",
        options: &[
            opt(
                "enabled",
                Kind::Bool,
                Some("0"),
                "Start dae with the router (read by the init script)",
            ),
            opt(
                "log_level",
                Kind::Enum(LOG_LEVELS),
                Some("info"),
                "How much to log",
            ),
            list(
                "lan_interface",
                Kind::Interface,
                "Interfaces whose DNS traffic is intercepted (usually br-lan)",
            ),
            opt(
                "tproxy_port",
                Kind::Port,
                Some("12345"),
                "Port of the transparent listener",
            ),
            opt(
                "so_mark",
                Kind::Mark,
                Some("0x80"),
                "Socket mark on dae's own traffic",
            ),
            opt(
                "wan_interface",
                Kind::Interface,
                None,
                "Bind dae's own direct traffic to this interface (e.g. wan); empty: the routing table decides. dns_listen does not answer its subnets (nor those of interfaces holding a default route)",
            ),
            opt(
                "fail_closed",
                Kind::Bool,
                Some("0"),
                "Drop LAN DNS while dae is not running instead of letting it pass",
            ),
            opt(
                "bpf_object",
                Kind::Path,
                None,
                "A compiled TC program (ebpf/dae_tc.c) to load instead of the one built into dae",
            ),
            opt(
                "ca_file",
                Kind::Path,
                Some("/etc/ssl/certs/ca-certificates.crt"),
                "Certificates encrypted upstreams are checked against (the ca-bundle package)",
            ),
            opt(
                "status_socket",
                Kind::Path,
                Some("/var/run/dae.sock"),
                "Where `dae status` asks the daemon",
            ),
            opt(
                "geodata_dir",
                Kind::Path,
                Some("/usr/share/v2ray"),
                "Where geosite.dat and geoip.dat are (geosite:NAME, geoip:NAME and ext:FILE:NAME in rules; the v2ray-geosite and v2ray-geoip packages)",
            ),
            opt(
                "subscription_dir",
                Kind::Path,
                Some("/etc/dae/subscriptions"),
                "Where the last good list of each subscription is kept (rewritten only when it changes)",
            ),
            opt(
                "check_interval",
                Kind::Int { min: 5, max: 86400 },
                Some("30"),
                "Seconds between health checks of the proxy nodes",
            ),
            opt(
                "check_tolerance",
                Kind::Int { min: 0, max: 60000 },
                Some("50"),
                "Milliseconds a node must be faster by before a min policy switches to it",
            ),
            opt(
                "tcp_check_url",
                Kind::CheckUrl,
                Some(super::check::DEFAULT_TCP_CHECK),
                "Checked over TCP through each node: http://host[:port][/path] then the host's addresses",
            ),
            opt(
                "udp_check_dns",
                Kind::CheckDns,
                Some(super::check::DEFAULT_UDP_CHECK),
                "Asked over UDP through each node: host:port then the host's addresses",
            ),
        ],
    },
    SectionSchema {
        ty: "dns",
        single: true,
        named: false,
        help: "The DNS controller",
        options: &[
            list(
                "dns_listen",
                Kind::ListenAddress,
                "Plain DNS listeners (UDP and TCP), e.g. 127.0.0.1:5335",
            ),
            opt(
                "cache_size",
                Kind::Int {
                    min: 0,
                    max: 1_048_576,
                },
                Some("4096"),
                "Cached answers at most (0: no cache)",
            ),
            opt(
                "ipversion_prefer",
                Kind::Enum(&["0", "4", "6"]),
                Some("0"),
                "Empty AAAA (A) answers for names with A (AAAA) records",
            ),
            list(
                "request_rule",
                Kind::RequestRule,
                "Request rules, first match wins",
            ),
            opt(
                "request_fallback",
                Kind::RequestTarget,
                Some("asis"),
                "Where queries no rule matched go",
            ),
            list(
                "response_rule",
                Kind::ResponseRule,
                "Response rules, first match wins",
            ),
            opt(
                "response_fallback",
                Kind::ResponseTarget,
                Some("accept"),
                "What happens to answers no rule matched",
            ),
            list(
                "fixed_domain_ttl",
                Kind::FixedTtl,
                "NAME:SECONDS, cache this name exactly that long (0: never)",
            ),
            opt(
                "serve_stale",
                Kind::Bool,
                Some("1"),
                "Answer expired entries with TTL 30 while refreshing them",
            ),
            opt(
                "stale_window",
                Kind::Int {
                    min: 0,
                    max: 604_800,
                },
                Some("86400"),
                "Seconds after expiry that an entry may still be served",
            ),
            opt(
                "upstream_timeout",
                Kind::Int { min: 1, max: 30 },
                Some("4"),
                "Seconds to wait for an upstream before SERVFAIL",
            ),
            opt(
                "allow_remote",
                Kind::Bool,
                Some("0"),
                "Answer dns_listen queries from any source, not only loopback and the router's non-WAN subnets",
            ),
        ],
    },
    SectionSchema {
        ty: "upstream",
        single: false,
        named: true,
        help: "A DNS server dae asks",
        options: &[
            required(
                "address",
                Kind::UpstreamAddress,
                false,
                "udp://, tcp://, tcp+udp://, tls://, https://, h3:// or quic:// address",
            ),
            opt(
                "bootstrap",
                Kind::IpAddress,
                None,
                "IP address of the upstream's host name, so it need not be looked up \
                 (otherwise the first plain upstream with an IP address looks it up)",
            ),
            opt(
                "allow_insecure",
                Kind::Bool,
                Some("0"),
                "Accept any certificate (self-signed servers); logged as a warning",
            ),
        ],
    },
    SectionSchema {
        ty: "node",
        single: false,
        named: true,
        help: "A proxy server",
        options: &[required(
            "link",
            Kind::ShareLink,
            false,
            "Share link: socks5, http(s), ss, trojan, vless, vmess",
        )],
    },
    SectionSchema {
        ty: "subscription",
        single: false,
        named: true,
        help: "A provider's URL listing proxy nodes",
        options: &[
            required(
                "url",
                Kind::SubscriptionUrl,
                false,
                "http:// or https:// URL of the node list (base64 or plain share links, or SIP008 JSON)",
            ),
            opt(
                "interval",
                Kind::Interval {
                    min: 60,
                    max: 30 * 86400,
                },
                Some("1d"),
                "How often the list is fetched again: seconds, or with s, m, h or d (1d)",
            ),
            opt(
                "enabled",
                Kind::Bool,
                Some("1"),
                "Fetch it (off: the stored list is used as it is)",
            ),
        ],
    },
    SectionSchema {
        ty: "group",
        single: false,
        named: true,
        help: "Proxy nodes and how one is picked",
        options: &[
            list("node", Kind::NodeName, "Nodes of the group"),
            list(
                "subscription",
                Kind::SubscriptionName,
                "Subscriptions whose nodes (those passing a filter) join the group",
            ),
            list(
                "filter",
                Kind::NodeFilter,
                "name(keyword: HK), name(regex: ^HK), name(NAME), subtag(SUB), ! and &&; a subscription node joins when any filter holds",
            ),
            opt(
                "policy",
                Kind::GroupPolicy,
                Some("min_moving_avg"),
                "random, fixed(N), min, min_avg10 or min_moving_avg",
            ),
        ],
    },
    SectionSchema {
        ty: "routing",
        single: true,
        named: false,
        help: "Routing of other traffic",
        options: &[
            list("rule", Kind::RoutingRule, "Routing rules, first match wins"),
            opt(
                "fallback",
                Kind::RoutingTarget,
                Some("direct"),
                "Where traffic no rule matched goes",
            ),
        ],
    },
];

pub fn section(ty: &str) -> Option<&'static SectionSchema> {
    SCHEMA.iter().find(|s| s.ty == ty)
}

pub fn bool_value(v: &str) -> Option<bool> {
    match v {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// The generic check of one value against its kind: the scalar kinds are
/// fully checked here; the structured kinds (rules, addresses, links) are
/// checked by the caller, which knows the other sections.
pub fn check_scalar(kind: Kind, v: &str) -> Result<(), String> {
    match kind {
        Kind::Bool => bool_value(v).map(|_| ()).ok_or_else(|| {
            format!("\"{v}\" is not a yes/no value (allowed: 0, 1, true, false, yes, no, on, off)")
        }),
        Kind::Int { min, max } => match v.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(()),
            _ => Err(format!("\"{v}\" is not a whole number from {min} to {max}")),
        },
        Kind::Enum(words) => {
            if words.contains(&v) {
                Ok(())
            } else {
                Err(format!("\"{v}\" is not one of: {}", words.join(", ")))
            }
        }
        Kind::Port => super::url::port_number(v).map(|_| ()),
        Kind::Mark => parse_mark(v).map(|_| ()),
        Kind::IpAddress => v
            .parse::<std::net::IpAddr>()
            .map(|_| ())
            .map_err(|_| format!("\"{v}\" is not an IPv4 or IPv6 address")),
        Kind::Interface => {
            let ok = !v.is_empty()
                && v.len() <= 15
                && !v.contains(['/', ':'])
                && !v.chars().any(char::is_whitespace)
                && v != "."
                && v != "..";
            if ok {
                Ok(())
            } else {
                Err(format!(
                    "\"{v}\" is not an interface name (1 to 15 characters, no '/', ':' or spaces)"
                ))
            }
        }
        Kind::CheckUrl => super::check::tcp_check_url(v).map(|_| ()),
        Kind::SubscriptionUrl => super::subscription::url(v).map(|_| ()),
        Kind::Interval { min, max } => match super::subscription::interval(v) {
            Some(d) if (min..=max).contains(&d.as_secs()) => Ok(()),
            _ => Err(format!(
                "\"{v}\" is not a period from {min} s to {max} s (seconds, or a number with s, m, h or d, as 12h)"
            )),
        },
        Kind::CheckDns => super::check::udp_check_dns(v).map(|_| ()),
        Kind::Path => {
            if v.starts_with('/') {
                Ok(())
            } else {
                Err(format!("\"{v}\" is not an absolute path"))
            }
        }
        _ => Ok(()),
    }
}

/// A mark, decimal or 0x hex, that fits 32 bits.
pub fn parse_mark(v: &str) -> Result<u32, String> {
    let n = match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => v.parse::<u32>(),
    };
    n.map_err(|_| format!("\"{v}\" is not a 32-bit mark (decimal, or hex like 0x80)"))
}

fn kind_json(kind: Kind) -> Value {
    match kind {
        Kind::Bool => json!({"type": "bool"}),
        Kind::Int { min, max } => json!({"type": "integer", "min": min, "max": max}),
        Kind::Enum(words) => json!({"type": "enum", "values": words}),
        Kind::Port => json!({"type": "port", "min": 1, "max": 65535}),
        Kind::Mark => json!({"type": "mark"}),
        Kind::IpAddress => json!({"type": "ip_address"}),
        Kind::Interface => json!({"type": "interface"}),
        Kind::Path => json!({"type": "path"}),
        Kind::ListenAddress => json!({"type": "listen_address"}),
        Kind::UpstreamAddress => json!({"type": "upstream_address",
            "schemes": ["udp", "tcp", "tcp+udp", "tls", "https", "h3", "quic"]}),
        Kind::ShareLink => json!({"type": "share_link",
            "schemes": ["socks5", "http", "https", "ss", "trojan", "vless", "vmess"]}),
        Kind::FixedTtl => json!({"type": "fixed_ttl"}),
        Kind::CheckUrl => json!({"type": "check_url"}),
        Kind::CheckDns => json!({"type": "check_dns"}),
        Kind::RequestRule => json!({"type": "dns_request_rule", "functions": ["qname", "qtype"]}),
        Kind::RequestTarget => {
            json!({"type": "dns_request_target", "reserved": ["asis", "reject"], "refers": "upstream"})
        }
        Kind::ResponseRule => {
            json!({"type": "dns_response_rule", "functions": ["qname", "qtype", "upstream", "ip"]})
        }
        Kind::ResponseTarget => {
            json!({"type": "dns_response_target", "reserved": ["accept", "reject"], "refers": "upstream"})
        }
        Kind::NodeName => json!({"type": "reference", "refers": "node"}),
        Kind::GroupPolicy => json!({"type": "group_policy",
            "values": ["random", "fixed(N)", "min", "min_avg10", "min_moving_avg"]}),
        Kind::RoutingRule => json!({"type": "routing_rule",
            "functions": super::uci::ROUTING_FUNCTIONS}),
        Kind::SubscriptionUrl => json!({"type": "subscription_url", "schemes": ["http", "https"]}),
        Kind::Interval { min, max } => json!({"type": "interval", "min": min, "max": max}),
        Kind::SubscriptionName => json!({"type": "reference", "refers": "subscription"}),
        Kind::NodeFilter => json!({"type": "node_filter", "functions": ["name", "subtag"]}),
        Kind::RoutingTarget => {
            json!({"type": "routing_target", "reserved": ["direct", "block", "must_direct"], "refers": "group"})
        }
    }
}

/// The whole table as JSON, for `dae schema --json`.
pub fn schema_json() -> Value {
    let sections: Vec<Value> = SCHEMA
        .iter()
        .map(|s| {
            let options: Vec<Value> = s
                .options
                .iter()
                .map(|o| {
                    let mut v = kind_json(o.kind);
                    v["name"] = json!(o.name);
                    v["list"] = json!(o.list);
                    v["default"] = json!(o.default);
                    v["required"] = json!(o.required);
                    v["help"] = json!(o.help);
                    v
                })
                .collect();
            json!({"type": s.ty, "single": s.single, "named": s.named, "help": s.help, "options": options})
        })
        .collect();
    json!({"package": "dae", "sections": sections})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_passes_its_own_check() {
        for s in SCHEMA {
            for o in s.options {
                if let Some(d) = o.default {
                    check_scalar(o.kind, d).unwrap_or_else(|e| panic!("{}.{}: {e}", s.ty, o.name));
                }
                assert!(!(o.required && o.default.is_some()), "{}.{}", s.ty, o.name);
            }
        }
    }

    #[test]
    fn scalar_checks() {
        assert!(check_scalar(Kind::Bool, "on").is_ok());
        assert!(check_scalar(Kind::Bool, "2")
            .unwrap_err()
            .contains("yes/no"));
        assert!(check_scalar(Kind::Int { min: 1, max: 30 }, "0")
            .unwrap_err()
            .contains("from 1 to 30"));
        assert!(check_scalar(Kind::Int { min: 1, max: 30 }, "-3").is_err());
        assert!(check_scalar(Kind::Enum(LOG_LEVELS), "loud")
            .unwrap_err()
            .contains("error, warn"));
        assert_eq!(parse_mark("0x80"), Ok(128));
        assert_eq!(parse_mark("255"), Ok(255));
        assert!(parse_mark("0x1ffffffff").is_err());
        assert!(check_scalar(Kind::Interface, "br-lan").is_ok());
        assert!(check_scalar(Kind::Interface, "a-very-long-interface-name").is_err());
        assert!(check_scalar(Kind::Path, "lib/x.o").is_err());
    }

    #[test]
    fn json_lists_every_option() {
        let v = schema_json();
        let n: usize = v["sections"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["options"].as_array().unwrap().len())
            .sum();
        let expected: usize = SCHEMA.iter().map(|s| s.options.len()).sum();
        assert_eq!(n, expected);
        assert_eq!(v["sections"][1]["options"][1]["max"], 1_048_576);
    }
}
