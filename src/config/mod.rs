//! Config in: `/etc/config/dae` (UCI) read into the typed `Config`.
//!
//! `load_file`/`parse_str` read the UCI text with `uci_rs`, check every
//! section and option, and return either a `Config` that the daemon can use as
//! it is or every problem found, each naming its section and option.
//!
//! - `schema`: every section and option (kinds, defaults, limits, help);
//! - `uci`: the checker that builds the `Config`;
//! - `quoting`: libuci's quoting made readable for `uci_rs`;
//! - `rule`: rule syntax; `url`: addresses and share links; `check`:
//!   health-check targets;
//! - `model`: the typed result.

pub mod check;
pub mod model;
pub(crate) mod quoting;
pub mod rule;
pub mod schema;
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

/// What is valid but will not do what the owner likely meant.
pub fn warnings(config: &Config) -> Vec<ConfigError> {
    let mut out = Vec::new();
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
    out
}
