//! Config in: `/etc/config/dae` (UCI) read into the typed `Config`.
//!
//! `load_file`/`parse_str` read the UCI text with `uci_rs`, check every
//! section and option, and return either a `Config` that the daemon can use as
//! it is or every problem found, each naming its section and option.
//!
//! - `schema`: every section and option (kinds, defaults, limits, help);
//! - `uci`: the checker that builds the `Config`;
//! - `quoting`: libuci's quoting made readable for `uci_rs`;
//! - `rule`: rule syntax; `url`: addresses; `link`: share links, parsed
//!   into the typed nodes the dialers use; `check`: health-check targets;
//! - `subscription`: subscription URLs, node filters and the node lists
//!   providers serve;
//! - `model`: the typed result.

pub mod check;
pub mod link;
pub mod model;
pub(crate) mod quoting;
pub mod rule;
pub mod schema;
pub mod subscription;
mod uci;
pub mod url;

pub use model::*;

use std::fmt;
use std::path::Path;

/// One problem in a config file, naming where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Section type and name (`dns`, `dns`) or (`upstream`, `@upstream[0]`).
    pub section: Option<(String, String)>,
    pub option: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.section, &self.option) {
            (Some((ty, name)), Some(opt)) => {
                write!(f, "{ty} '{name}', option '{opt}': {}", self.message)
            }
            (Some((ty, name)), None) => write!(f, "{ty} '{name}': {}", self.message),
            (None, _) => f.write_str(&self.message),
        }
    }
}

/// Reads and checks a UCI file.
pub fn load_file(path: &Path) -> Result<Config, Vec<ConfigError>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![ConfigError {
            section: None,
            option: None,
            message: format!("{}: {e}", path.display()),
        }]
    })?;
    parse_str(&text)
}

/// Checks UCI text.
pub fn parse_str(text: &str) -> Result<Config, Vec<ConfigError>> {
    uci::parse(text)
}

/// The `geodata_dir` a UCI file sets (or the default), the rest of the
/// file unchecked.
pub fn geodata_dir(path: &Path) -> Result<std::path::PathBuf, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    uci::geodata_dir(&text).map_err(|e| format!("{}: not a valid UCI file: {e}", path.display()))
}

/// A config that serves nothing: no `dns_listen` and no `lan_interface`.
/// An empty or truncated file parses as one, so the daemon refuses it (at
/// start, on reload and in `dae validate`) rather than stop answering.
pub fn nothing_to_serve(config: &Config) -> Option<ConfigError> {
    if !config.dns.listen.is_empty() || !config.general.lan_interfaces.is_empty() {
        return None;
    }
    Some(ConfigError {
        section: None,
        option: None,
        message: "nothing to serve: set list dns_listen (section dns) or list lan_interface \
                  (section dae); an empty or cut-short file looks like this"
            .into(),
    })
}

/// What is valid but will not do what the owner likely meant.
pub fn warnings(config: &Config) -> Vec<ConfigError> {
    let mut out = Vec::new();
    if config.dns.allow_remote && !config.dns.listen.is_empty() {
        out.push(ConfigError {
            section: Some(("dns".to_string(), "dns".to_string())),
            option: Some("allow_remote".into()),
            message: "is on: dns_listen answers any source; a listener the internet can \
                      reach makes this router an open resolver (an amplifier for attacks)"
                .into(),
        });
    }
    if config.general.lan_interfaces.is_empty() {
        // Without interception every query comes by `dns_listen`, where no
        // original destination exists: `asis` can only answer REFUSED.
        let dns = Some(("dns".to_string(), "dns".to_string()));
        let uses_asis = config
            .dns
            .request_rules
            .iter()
            .any(|r| r.target == DnsTarget::Asis);
        if uses_asis {
            out.push(ConfigError {
                section: dns.clone(),
                option: Some("request_rule".into()),
                message: "'asis' has no server to go to without lan_interface: those queries \
                          get REFUSED on dns_listen"
                    .into(),
            });
        }
        if config.dns.request_fallback == DnsTarget::Asis && !config.dns.listen.is_empty() {
            out.push(ConfigError {
                section: dns,
                option: Some("request_fallback".into()),
                message: "is 'asis' (the default) and there is no lan_interface: queries no \
                          rule sends to an upstream get REFUSED on dns_listen; name an upstream"
                    .into(),
            });
        }
    }
    for r in &config.routing.rules {
        let pname = r.conditions.iter().find_map(|(negated, m)| match m {
            RoutingMatcher::Pname(_) => Some(*negated),
            _ => None,
        });
        if let Some(negated) = pname {
            out.push(ConfigError {
                section: Some(("routing".into(), "routing".into())),
                option: Some("rule".into()),
                message: format!(
                    "'{}': pname() never holds for LAN traffic or dae's own dials (dae sees no \
                     process behind a flow), so this rule {}",
                    r.text,
                    if negated {
                        "holds as if the pname() were not there"
                    } else {
                        "never applies"
                    }
                ),
            });
        }
    }
    out.extend(udp_to_http_only_groups(config));
    out
}

/// A rule (or the fallback) that can send UDP to a group none of whose
/// nodes carries UDP (HTTP proxies only): those flows are refused, never
/// sent direct.
fn udp_to_http_only_groups(config: &Config) -> Vec<ConfigError> {
    let http_only = |group: &str| {
        let Some(g) = config.groups.iter().find(|g| g.name == group) else {
            return false;
        };
        // Subscription nodes are not known here: they may carry UDP.
        !g.nodes.is_empty()
            && g.subscriptions.is_empty()
            && g.nodes.iter().all(|n| {
                config.nodes.iter().any(|node| {
                    node.name == *n
                        && matches!(link::parse(&node.link), Ok(l) if matches!(l.proto, link::Proto::Http(_)))
                })
            })
    };
    // A condition that never holds for UDP: `l4proto(tcp)`, `!l4proto(udp)`.
    let excludes_udp = |(negated, m): &(bool, RoutingMatcher)| match m {
        RoutingMatcher::L4proto(udp) => udp.contains(&true) == *negated,
        _ => false,
    };
    let mut out = Vec::new();
    let routing = Some(("routing".to_string(), "routing".to_string()));
    for r in &config.routing.rules {
        match &r.outbound {
            Outbound::Group(g) if http_only(g) && !r.conditions.iter().any(excludes_udp) => {
                out.push(ConfigError {
                    section: routing.clone(),
                    option: Some("rule".into()),
                    message: format!(
                        "'{}': can send UDP to group '{g}', whose nodes are all HTTP proxies \
                         (they carry no UDP): those flows will be refused, never sent direct; \
                         add l4proto(tcp) to the rule, or a node that carries UDP to the group",
                        r.text
                    ),
                });
            }
            _ => {}
        }
    }
    if let Outbound::Group(g) = &config.routing.fallback {
        if http_only(g) {
            out.push(ConfigError {
                section: routing,
                option: Some("fallback".into()),
                message: format!(
                    "sends UDP no rule catches to group '{g}', whose nodes are all HTTP \
                     proxies (they carry no UDP): those flows will be refused, never sent \
                     direct; route UDP elsewhere with a rule (l4proto(udp) -> ...)"
                ),
            });
        }
    }
    out
}
