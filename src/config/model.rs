//! The typed configuration: what `/etc/config/dae` means once it has been
//! read and checked.
//!
//! Everything here is plain data. `config::load` (in `uci.rs`) builds it from
//! the UCI file and refuses any value that does not fit; the rest of the daemon
//! (controller, forwarders, listeners) only ever sees a `Config` that is valid.
//! Rule *syntax* lives in `rule.rs`; the matchers built from these rules live
//! in `controller::rules`.

use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

/// The whole configuration, in the order the sections appear in the file
/// where order matters (upstreams, nodes, groups).
#[derive(Debug, Clone)]
pub struct Config {
    pub general: General,
    pub dns: DnsConfig,
    pub upstreams: Vec<Upstream>,
    pub nodes: Vec<Node>,
    pub groups: Vec<Group>,
    pub routing: Routing,
    /// `config subscription 'NAME'` sections, in file order.
    pub subscriptions: Vec<Subscription>,
}

/// `config dae 'config'`.
#[derive(Debug, Clone, PartialEq)]
pub struct General {
    /// `option enabled` (default off: a fresh install does nothing).
    pub enabled: bool,
    /// `option log_level` error|warn|info|debug|trace (default info).
    pub log_level: log::LevelFilter,
    /// `list lan_interface`: where the TC program intercepts LAN DNS
    /// (default none: the shipped /etc/config/dae lists `br-lan`; without
    /// any, only the plain `dns_listen` listeners serve).
    pub lan_interfaces: Vec<String>,
    /// `option tproxy_port` (default 12345).
    pub tproxy_port: u16,
    /// `option so_mark`: the socket mark on every connection the daemon makes
    /// itself, so policy routing never sends it back into the proxy
    /// (default 0x80, written in decimal or 0x hex).
    pub so_mark: u32,
    /// `option wan_interface`: direct traffic of ours is bound to this
    /// device (default none: the routing table decides).
    pub wan_interface: Option<String>,
    /// `option fail_closed`: drop LAN DNS while the daemon is away instead of
    /// letting it pass to the server the client asked (default off).
    pub fail_closed: bool,
    /// `option bpf_object`: a compiled TC program to load instead of the
    /// one built into the binary (default none; see `ebpf::Object`).
    pub bpf_object: Option<std::path::PathBuf>,
    /// `option ca_file`: PEM certificates that encrypted upstreams are
    /// checked against (default `/etc/ssl/certs/ca-certificates.crt`).
    pub ca_file: std::path::PathBuf,
    /// `option status_socket`: the Unix socket `dae status` reads (default
    /// `/var/run/dae.sock`).
    pub status_socket: std::path::PathBuf,
    /// Health checks of proxy nodes.
    pub check: CheckSettings,
    /// `option geodata_dir`: where `geosite:`, `geoip:` and relative
    /// `ext:` files are read from (default `/usr/share/v2ray`).
    pub geodata_dir: std::path::PathBuf,
    /// `option subscription_dir`: where the last good list of each
    /// subscription is kept (default `/etc/dae/subscriptions`).
    pub subscription_dir: std::path::PathBuf,
}

/// `check_interval`, `check_tolerance`, `tcp_check_url`, `udp_check_dns`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckSettings {
    pub interval: std::time::Duration,
    /// A min policy keeps its node unless another is faster by this much.
    pub tolerance: std::time::Duration,
    pub tcp: super::check::CheckUrl,
    pub udp: super::check::CheckDns,
}

/// `config dns 'dns'`.
#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// `list dns_listen 'ADDR:PORT'`: plain UDP+TCP DNS listeners (default none).
    pub listen: Vec<SocketAddr>,
    /// `option allow_remote`: the `dns_listen` listeners answer any source
    /// (default off: loopback and the subnets of the router's non-WAN
    /// interfaces only).
    pub allow_remote: bool,
    /// `option cache_size`: entries, 0 turns the cache off (default 4096).
    pub cache_size: usize,
    /// `option ipversion_prefer` 0|4|6 (default 0).
    pub ipversion_prefer: IpVersionPrefer,
    /// `list request_rule`, in order.
    pub request_rules: Vec<DnsRule>,
    /// `option request_fallback`: upstream name, `asis` or `reject` (default asis).
    pub request_fallback: DnsTarget,
    /// `list response_rule`, in order.
    pub response_rules: Vec<DnsRule>,
    /// `option response_fallback`: `accept`, `reject` or an upstream name (default accept).
    pub response_fallback: DnsTarget,
    /// `list fixed_domain_ttl 'NAME:SECONDS'`: names (lowercase, no trailing
    /// dot) whose answers live exactly this long in the cache; 0 = never cached.
    pub fixed_domain_ttl: Vec<(String, u32)>,
    /// `option serve_stale` (default on): answer an expired entry with a short
    /// TTL while one refresh runs (RFC 8767).
    pub serve_stale: bool,
    /// `option stale_window`: seconds after expiry during which a stale entry
    /// may still be served (default 86400).
    pub stale_window: Duration,
    /// `option upstream_timeout`: seconds to wait for one upstream exchange
    /// before the client gets SERVFAIL (default 4; 1..=30).
    pub upstream_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpVersionPrefer {
    Both,
    V4,
    V6,
}

/// `config upstream 'NAME'`.
#[derive(Debug, Clone, PartialEq)]
pub struct Upstream {
    /// The section name: what rules call it by.
    pub name: String,
    /// `option address`.
    pub url: UpstreamUrl,
    /// `option bootstrap`: the address of `url`'s host name, if it is one.
    pub bootstrap: Option<IpAddr>,
    /// `option allow_insecure`: accept any certificate (encrypted schemes).
    pub allow_insecure: bool,
}

/// A parsed upstream address: `scheme://host[:port][/path]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UpstreamUrl {
    pub scheme: Scheme,
    pub host: Host,
    /// The given port, or the scheme's default (53, 853, 443).
    pub port: u16,
    /// Only for https/h3; default `/dns-query`.
    pub path: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `udp://`
    Udp,
    /// `tcp://`
    Tcp,
    /// `tcp+udp://`: UDP first, TCP when the answer is truncated.
    TcpUdp,
    /// `tls://` (DoT, RFC 7858)
    Tls,
    /// `https://` (DoH over HTTP/2, RFC 8484)
    Https,
    /// `h3://` (DoH over HTTP/3)
    H3,
    /// `quic://` (DoQ, RFC 9250)
    Quic,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    Ip(IpAddr),
    /// A domain name, lowercase, without trailing dot.
    Name(String),
}

/// One DNS rule: every condition must hold (`&&`), then `target` applies.
#[derive(Debug, Clone)]
pub struct DnsRule {
    pub conditions: Vec<DnsCondition>,
    pub target: DnsTarget,
    /// The rule as written, for log lines.
    pub text: String,
}

#[derive(Debug, Clone)]
pub struct DnsCondition {
    /// Written with a leading `!`.
    pub negated: bool,
    pub matcher: DnsMatcher,
}

#[derive(Debug, Clone)]
pub enum DnsMatcher {
    /// `qname(...)`: any of the patterns matches the query name.
    Qname(Vec<DomainPattern>),
    /// `qtype(a, aaaa, 65)`: the query type is one of these.
    Qtype(Vec<u16>),
    /// `upstream(name, ...)` (response rules only): the answer came from one
    /// of these upstreams (`asis` is a valid name here).
    Upstream(Vec<String>),
    /// `ip(CIDR, geoip:NAME, ...)` (response rules only): some A/AAAA in
    /// the answer section lies in one of these networks.
    Ip(IpList),
}

/// One `qname(...)` argument. Domains are lowercase, without trailing dot.
#[derive(Debug, Clone)]
pub enum DomainPattern {
    /// `suffix: example.com` (also a bare `example.com`): the name itself
    /// or any name below it.
    Suffix(String),
    /// `full: example.com`: exactly this name.
    Full(String),
    /// `keyword: ample`: the name contains this text.
    Keyword(String),
    /// `regex: '^ex.*'`: the name (lowercase, no trailing dot) matches.
    Regex(regex_lite::Regex),
    /// `geosite:NAME[@attr]`, `ext:FILE:NAME`: a category of a dat file,
    /// read and compiled once (shared by every rule that names it).
    Set(crate::geodata::SiteRef),
}

/// Where a DNS rule sends the query (request rules) or what it does with the
/// answer (response rules).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsTarget {
    /// Ask this upstream (index into `Config::upstreams`, and its name;
    /// shared, as every query that misses the cache carries its target).
    Upstream { index: usize, name: Rc<str> },
    /// Request rules: ask the address the client asked.
    Asis,
    /// Answer at once with NOERROR and an empty answer section.
    Reject,
    /// Response rules: hand the answer to the client.
    Accept,
}

/// An IPv4 or IPv6 network, `addr/prefix`, with the host bits cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNet {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl IpNet {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// The networks of `ip(...)`, `dip(...)` or `sip(...)`: written out, and
/// geoip categories (`geoip:NAME`, `ext:FILE:NAME`), shared.
#[derive(Debug, Clone, Default)]
pub struct IpList {
    pub nets: Vec<IpNet>,
    pub sets: Vec<crate::geodata::IpRef>,
}

impl From<Vec<IpNet>> for IpList {
    fn from(nets: Vec<IpNet>) -> IpList {
        IpList {
            nets,
            sets: Vec::new(),
        }
    }
}

/// `config node 'NAME'`: a proxy server given by its share link.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub name: String,
    /// `option link`, checked for a known scheme and a host and port.
    pub link: String,
}

/// `config subscription 'NAME'`: a provider's URL listing nodes.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscription {
    pub name: String,
    /// `option url`: `http://` or `https://`.
    pub url: String,
    /// `option interval` (default 1d).
    pub interval: Duration,
    /// `option enabled` (default on): off keeps the stored list and never
    /// fetches.
    pub enabled: bool,
}

/// `config group 'NAME'`: nodes and how one of them is picked.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub name: String,
    /// `list node`: node section names, each one existing.
    pub nodes: Vec<String>,
    /// `list subscription`: subscription section names; their nodes that
    /// pass `filters` join the group.
    pub subscriptions: Vec<String>,
    /// `list filter`: a subscription node joins when any filter holds
    /// (none: every node of the group's subscriptions).
    pub filters: Vec<NodeFilter>,
    /// `option policy` (default min_moving_avg).
    pub policy: GroupPolicy,
}

/// One `list filter`: every condition must hold (`&&`).
#[derive(Debug, Clone)]
pub struct NodeFilter {
    /// (negated, condition)
    pub conditions: Vec<(bool, NodeMatcher)>,
    /// As written.
    pub text: String,
}

impl PartialEq for NodeFilter {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

/// A filter's condition on a subscription node.
#[derive(Debug, Clone)]
pub enum NodeMatcher {
    /// `name(...)`: the node's name (its share link's tag) matches any.
    Name(Vec<NamePattern>),
    /// `subtag(...)`: the node came from one of these subscriptions.
    Subtag(Vec<String>),
}

/// One `name(...)` argument.
#[derive(Debug, Clone)]
pub enum NamePattern {
    /// A bare value: exactly this name.
    Full(String),
    /// `keyword: HK`: the name contains this text.
    Keyword(String),
    /// `regex: '^HK'`.
    Regex(regex_lite::Regex),
}

impl NodeFilter {
    /// Whether the node named `name`, from subscription `sub`, passes.
    pub fn matches(&self, name: &str, sub: &str) -> bool {
        self.conditions.iter().all(|(negated, m)| {
            let hit = match m {
                NodeMatcher::Name(pats) => pats.iter().any(|p| match p {
                    NamePattern::Full(f) => f == name,
                    NamePattern::Keyword(k) => name.contains(k.as_str()),
                    NamePattern::Regex(r) => r.is_match(name),
                }),
                NodeMatcher::Subtag(subs) => subs.iter().any(|s| s == sub),
            };
            hit != *negated
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupPolicy {
    Random,
    /// `fixed(N)`: always the N-th node (0-based).
    Fixed(usize),
    Min,
    MinAvg10,
    MinMovingAvg,
}

impl std::fmt::Display for GroupPolicy {
    /// As the config writes it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GroupPolicy::Random => f.write_str("random"),
            GroupPolicy::Fixed(n) => write!(f, "fixed({n})"),
            GroupPolicy::Min => f.write_str("min"),
            GroupPolicy::MinAvg10 => f.write_str("min_avg10"),
            GroupPolicy::MinMovingAvg => f.write_str("min_moving_avg"),
        }
    }
}

/// `config routing 'routing'`: rules for traffic other than DNS answers
/// (and for the daemon's own dials: DNS upstreams, health checks).
#[derive(Debug, Clone)]
pub struct Routing {
    /// `list rule`, in order, checked for syntax, known functions and targets.
    pub rules: Vec<RoutingRule>,
    /// `option fallback` (default direct).
    pub fallback: Outbound,
}

impl Default for Routing {
    fn default() -> Self {
        Routing {
            rules: Vec::new(),
            fallback: Outbound::Direct,
        }
    }
}

/// `cond && !cond -> outbound`, its conditions typed.
#[derive(Debug, Clone)]
pub struct RoutingRule {
    /// (negated, condition)
    pub conditions: Vec<(bool, RoutingMatcher)>,
    pub outbound: Outbound,
    pub text: String,
}

/// One routing function with its arguments; any argument may match.
#[derive(Debug, Clone)]
pub enum RoutingMatcher {
    Dip(IpList),
    Sip(IpList),
    /// Port ranges, inclusive.
    Dport(Vec<(u16, u16)>),
    Sport(Vec<(u16, u16)>),
    /// `tcp` / `udp`: true for UDP.
    L4proto(Vec<bool>),
    /// 4 / 6: true for 6.
    IpVersion(Vec<bool>),
    Domain(Vec<DomainPattern>),
    Mac(Vec<[u8; 6]>),
    Pname(Vec<String>),
    Dscp(Vec<u8>),
}

/// Where a routing rule sends traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    /// `direct`, `must_direct` (and `direct(must)`): out of the router.
    Direct,
    /// `block`: dropped (for DNS upstreams: SERVFAIL).
    Block,
    /// A group name.
    Group(String),
}

impl std::fmt::Display for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outbound::Direct => f.write_str("direct"),
            Outbound::Block => f.write_str("block"),
            Outbound::Group(g) => f.write_str(g),
        }
    }
}
