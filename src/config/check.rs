//! Health-check targets: where the checks of proxy nodes go.
//!
//! dae's format, one option each: `tcp_check_url 'http://HOST[:PORT][/PATH],IP,IP'`
//! (an HTTP HEAD through the node; the addresses after the URL are where
//! HOST is, so no lookup is needed and nothing leaks to a resolver) and
//! `udp_check_dns 'HOST:PORT,IP,IP'` (a DNS question for HOST through the
//! node). A HOST that is an IP address needs no list. Each IP version is
//! checked with the addresses of that version.
//!
//! Neighbours: `uci` (reads the options), `dialer::check` (runs the checks).

use std::net::IpAddr;

use super::url::{host_name, port_number};

/// `tcp_check_url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckUrl {
    /// Sent as the `Host:` header.
    pub host: String,
    pub port: u16,
    pub path: String,
    pub addresses: Vec<IpAddr>,
}

/// `udp_check_dns`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckDns {
    /// The name asked for (A); an IP host asks for `.` NS instead.
    pub name: Option<String>,
    pub port: u16,
    pub addresses: Vec<IpAddr>,
}

pub const DEFAULT_TCP_CHECK: &str = "http://cp.cloudflare.com,1.1.1.1,2606:4700:4700::1111";
pub const DEFAULT_UDP_CHECK: &str = "dns.google.com:53,8.8.8.8,2001:4860:4860::8888";

/// Splits `host[:port]` / `[v6][:port]` into a host (name or address) and
/// an optional port.
fn authority(a: &str) -> Result<(String, Option<u16>), String> {
    if let Some(rest) = a.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("'{a}': '[' without ']'"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(port_number(p)?),
            None if after.is_empty() => None,
            None => return Err(format!("'{a}': text after ']'")),
        };
        return Ok((h.to_string(), port));
    }
    match a.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => Ok((h.to_string(), Some(port_number(p)?))),
        _ => Ok((a.to_string(), None)),
    }
}

/// The host as an address, or as a checked name with the addresses that
/// must follow it.
fn host_and_addresses(host: &str, rest: &[&str]) -> Result<(Option<String>, Vec<IpAddr>), String> {
    let mut addresses = Vec::new();
    for a in rest {
        let ip = a
            .trim()
            .parse::<IpAddr>()
            .map_err(|_| format!("'{a}' is not an IP address"))?;
        if !addresses.contains(&ip) {
            addresses.push(ip);
        }
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        if !addresses.contains(&ip) {
            addresses.insert(0, ip);
        }
        return Ok((None, addresses));
    }
    let name = host_name(host)?;
    if addresses.is_empty() {
        return Err(format!(
            "give the addresses of '{name}' after it (',IP,IP'): checks never look names up"
        ));
    }
    Ok((Some(name), addresses))
}

pub fn tcp_check_url(v: &str) -> Result<CheckUrl, String> {
    let mut parts = v.split(',');
    let url = parts.next().unwrap_or_default().trim();
    let rest: Vec<&str> = parts.collect();
    let after = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("'{url}' is not an http:// URL"))?;
    let (auth, path) = match after.find('/') {
        Some(i) => (&after[..i], &after[i..]),
        None => (after, "/"),
    };
    if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "the path '{path}' holds spaces or control characters"
        ));
    }
    let (host, port) = authority(auth)?;
    let (name, addresses) = host_and_addresses(&host, &rest)?;
    Ok(CheckUrl {
        host: name.unwrap_or(host),
        port: port.unwrap_or(80),
        path: path.to_string(),
        addresses,
    })
}

pub fn udp_check_dns(v: &str) -> Result<CheckDns, String> {
    let mut parts = v.split(',');
    let first = parts.next().unwrap_or_default().trim();
    let rest: Vec<&str> = parts.collect();
    let (host, port) = authority(first)?;
    let (name, addresses) = host_and_addresses(&host, &rest)?;
    Ok(CheckDns {
        name,
        port: port.unwrap_or(53),
        addresses,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse() {
        let t = tcp_check_url(DEFAULT_TCP_CHECK).unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("cp.cloudflare.com", 80, "/")
        );
        assert_eq!(t.addresses.len(), 2);
        let u = udp_check_dns(DEFAULT_UDP_CHECK).unwrap();
        assert_eq!((u.name.as_deref(), u.port), (Some("dns.google.com"), 53));
        assert_eq!(u.addresses.len(), 2);
    }

    #[test]
    fn addresses_and_errors() {
        let t = tcp_check_url("http://[2001:db8::80]:8080/gen_204").unwrap();
        assert_eq!(t.addresses, vec!["2001:db8::80".parse::<IpAddr>().unwrap()]);
        assert_eq!((t.port, t.path.as_str()), (8080, "/gen_204"));
        let u = udp_check_dns("192.0.2.53:5353").unwrap();
        assert_eq!((u.name, u.port), (None, 5353));
        for (bad, expect) in [
            ("https://x.example,192.0.2.1", "not an http:// URL"),
            ("http://x.example", "give the addresses"),
            ("http://x.example,nope", "not an IP address"),
            ("http://x.example:0,192.0.2.1", "port"),
        ] {
            let e = tcp_check_url(bad).expect_err(bad);
            assert!(e.contains(expect), "{bad}: {e}");
        }
        assert!(udp_check_dns("dns.example:53")
            .unwrap_err()
            .contains("give the addresses"));
    }
}
