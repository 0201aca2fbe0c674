//! Subscriptions as text: the `config subscription` values (URL, interval),
//! the groups' node filters, and the node lists providers serve.
//!
//! A list is one of:
//! - share links one per line (plain text);
//! - the same, base64 encoded (standard or URL-safe, padded or not: the
//!   v2rayN format);
//! - SIP008 JSON (`{"version": 1, "servers": [...]}`, Shadowsocks).
//!
//! Every link goes through `link::parse`; one that cannot be used is
//! skipped and counted by its reason, never fatal for the rest. Nothing
//! here fetches or stores: that is `dialer::subscription`.
//!
//! Neighbours: `uci` (checks the options with `url`, `interval`, `filter`),
//! `link` (each node), `dialer::subscription` (fetches, keeps and applies
//! the lists).

use std::time::Duration;

use super::link;
use super::model::{NamePattern, NodeFilter, NodeMatcher};
use super::rule;
use super::url::{base64_decode, base64_encode, host, host_port};
use super::Host;

/// A subscription URL, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubUrl {
    pub tls: bool,
    pub host: Host,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl SubUrl {
    /// The `Host` header and the TLS server name: the host as written.
    pub fn host_text(&self) -> String {
        match &self.host {
            Host::Ip(ip) => ip.to_string(),
            Host::Name(n) => n.clone(),
        }
    }

    /// Scheme, host and port only (the path may hold a secret token):
    /// what logs and errors show.
    pub fn origin(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        match &self.host {
            Host::Ip(std::net::IpAddr::V6(ip)) => format!("{scheme}://[{ip}]:{}", self.port),
            _ => format!("{scheme}://{}:{}", self.host_text(), self.port),
        }
    }

    /// Where a redirect's `Location` points from here: an absolute URL, or
    /// a path on the same server.
    pub fn join(&self, location: &str) -> Result<SubUrl, String> {
        if location.starts_with('/') && !location.starts_with("//") {
            return Ok(SubUrl {
                path: location.to_string(),
                ..self.clone()
            });
        }
        let next = url(location)?;
        if self.tls && !next.tls {
            return Err("a redirect from https to http is refused".into());
        }
        Ok(next)
    }
}

/// Parses `http[s]://host[:port][/path[?query]]`.
pub fn url(s: &str) -> Result<SubUrl, String> {
    let (scheme, rest) = s
        .split_once("://")
        .ok_or_else(|| format!("'{s}' is not an http:// or https:// URL"))?;
    let tls = match scheme.to_ascii_lowercase().as_str() {
        "http" => false,
        "https" => true,
        other => return Err(format!("scheme '{other}' is not http or https")),
    };
    let rest = rest.split_once('#').map_or(rest, |(r, _)| r);
    let cut = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(cut);
    if authority.contains('@') {
        return Err("user names and passwords in the URL are not supported".into());
    }
    if path.chars().any(|c| c.is_control() || c == ' ') {
        return Err("the URL has spaces or control characters".into());
    }
    let (h, port) = host_port(authority)?;
    let host = host(&h, authority.starts_with('['))?;
    let path = match path {
        "" => "/".to_string(),
        p if p.starts_with('?') => format!("/{p}"),
        p => p.to_string(),
    };
    Ok(SubUrl {
        tls,
        host,
        port: port.unwrap_or(if tls { 443 } else { 80 }),
        path,
    })
}

/// `3600`, `45s`, `30m`, `12h`, `1d`.
pub fn interval(v: &str) -> Option<Duration> {
    let (digits, unit) = match v.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => v.split_at(i),
        None => (v, "s"),
    };
    let n: u64 = digits.parse().ok()?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return None,
    };
    n.checked_mul(scale).map(Duration::from_secs)
}

/// Parses one `list filter`.
pub fn filter(text: &str) -> Result<NodeFilter, String> {
    let conditions = rule::parse_conditions(text)?
        .into_iter()
        .map(|c| {
            let m = match c.function.as_str() {
                "name" => NodeMatcher::Name(
                    c.args
                        .iter()
                        .map(|a| match a.key.as_deref() {
                            None => Ok(NamePattern::Full(a.value.clone())),
                            Some("keyword") => Ok(NamePattern::Keyword(a.value.clone())),
                            Some("regex") => regex_lite::Regex::new(&a.value)
                                .map(NamePattern::Regex)
                                .map_err(|e| format!("bad regex '{}': {e}", a.value)),
                            Some(k) => Err(format!(
                                "unknown key '{k}:' in name() (allowed: keyword, regex, or a bare name)"
                            )),
                        })
                        .collect::<Result<_, _>>()?,
                ),
                "subtag" => NodeMatcher::Subtag(c.args.iter().map(|a| a.value.clone()).collect()),
                f => return Err(format!("unknown function '{f}' (known: name, subtag)")),
            };
            if c.args.is_empty() {
                return Err(format!("{}() needs an argument", c.function));
            }
            Ok((c.negated, m))
        })
        .collect::<Result<_, String>>()?;
    Ok(NodeFilter {
        conditions,
        text: text.to_string(),
    })
}

/// One usable node of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The link's tag (after `#`, or vmess's `ps`), else its server.
    pub name: String,
    /// The share link, as served (SIP008 entries written as `ss://`).
    pub link: String,
}

/// A list read: its usable nodes, and why the others were skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct List {
    pub entries: Vec<Entry>,
    /// (reason, how many links), in order of first sight.
    pub skipped: Vec<(String, usize)>,
}

/// Distinct skip reasons kept; the rest are counted under one.
const MAX_REASONS: usize = 16;

impl List {
    fn skip(&mut self, reason: String) {
        if let Some(r) = self.skipped.iter_mut().find(|(r, _)| *r == reason) {
            r.1 += 1;
        } else if self.skipped.len() < MAX_REASONS {
            self.skipped.push((reason, 1));
        } else {
            self.skip_other();
        }
    }

    fn skip_other(&mut self) {
        let other = "other reasons";
        match self.skipped.iter_mut().find(|(r, _)| r == other) {
            Some(r) => r.1 += 1,
            None => self.skipped.push((other.to_string(), 1)),
        }
    }

    pub fn skipped_count(&self) -> usize {
        self.skipped.iter().map(|(_, n)| n).sum()
    }

    /// The list as plain text, one link a line: what is stored on disk
    /// (itself a list this module reads).
    pub fn text(&self) -> String {
        let mut out = String::new();
        for e in &self.entries {
            out.push_str(&e.link);
            out.push('\n');
        }
        out
    }

    fn add(&mut self, line: &str) {
        match link::parse(line) {
            Ok(l) => {
                let name = name_of(line).unwrap_or_else(|| match &l.host {
                    Host::Ip(ip) => std::net::SocketAddr::new(*ip, l.port).to_string(),
                    Host::Name(n) => format!("{n}:{}", l.port),
                });
                self.entries.push(Entry {
                    name,
                    link: line.to_string(),
                });
            }
            Err(e) => self.skip(e),
        }
    }
}

/// The display name a link carries: `#tag` (percent-decoded), or the
/// `ps` of a vmess link's JSON; control characters (a `%0A` in a tag)
/// become `?`, so a name cannot forge log lines.
fn name_of(line: &str) -> Option<String> {
    let name = raw_name(line)?;
    Some(
        name.chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect(),
    )
}

fn raw_name(line: &str) -> Option<String> {
    if let Some(b64) = line.strip_prefix("vmess://") {
        let json = base64_decode(b64.split('#').next()?)?;
        let v: serde_json::Value = serde_json::from_slice(&json).ok()?;
        return v["ps"]
            .as_str()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from);
    }
    let tag = line.split_once('#')?.1;
    let name = link::percent_decode(tag).unwrap_or_else(|_| tag.to_string());
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_string())
}

/// Reads a list in any of the formats. An error means the body is not a
/// list at all (garbage, an HTML page); a list of links that are all
/// unusable is a `List` with no entries.
pub fn parse_list(body: &[u8]) -> Result<List, String> {
    let text = std::str::from_utf8(body)
        .map_err(|_| "not a node list: the body is not text (UTF-8)".to_string())?;
    let text = text.trim_start_matches('\u{feff}').trim();
    if text.starts_with('{') {
        return sip008(text);
    }
    if text.contains("://") {
        return Ok(lines(text));
    }
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    if let Some(decoded) = base64_decode(&compact).filter(|_| !compact.is_empty()) {
        if let Ok(inner) = String::from_utf8(decoded) {
            if inner.contains("://") {
                return Ok(lines(&inner));
            }
        }
    }
    if text.is_empty() {
        return Err("the list is empty".into());
    }
    Err("not a node list: neither share links, base64 of them, nor SIP008 JSON".into())
}

fn lines(text: &str) -> List {
    let mut list = List::default();
    for line in text.lines().map(str::trim) {
        if !line.is_empty() && !line.starts_with('#') {
            list.add(line);
        }
    }
    list
}

/// SIP008: `{"servers": [{"server", "server_port", "password", "method",
/// "remarks", "plugin"}]}`.
fn sip008(text: &str) -> Result<List, String> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not a node list: bad JSON: {e}"))?;
    let servers = v["servers"]
        .as_array()
        .ok_or("not a node list: JSON without a \"servers\" array (SIP008)")?;
    let mut list = List::default();
    for s in servers {
        let (Some(server), Some(port), Some(password), Some(method)) = (
            s["server"].as_str(),
            s["server_port"].as_u64(),
            s["password"].as_str(),
            s["method"].as_str(),
        ) else {
            list.skip("sip008: a server without server, server_port, password or method".into());
            continue;
        };
        if s["plugin"].as_str().is_some_and(|p| !p.is_empty()) {
            list.skip("ss: plugins (obfs, v2ray-plugin) are not supported".into());
            continue;
        }
        let userinfo = base64_encode(format!("{method}:{password}").as_bytes());
        let host = if server.contains(':') {
            format!("[{server}]")
        } else {
            server.to_string()
        };
        let mut line = format!("ss://{userinfo}@{host}:{port}");
        if let Some(remarks) = s["remarks"].as_str().filter(|r| !r.is_empty()) {
            line.push('#');
            line.push_str(&percent_encode(remarks));
        }
        list.add(&line);
    }
    Ok(list)
}

/// `%XX` for everything but letters, digits and `-._~`.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOCKS: &str = "socks5://192.0.2.1:1080#HK%2001";
    const SS: &str = "ss://YWVzLTI1Ni1nY206cGFzcw@192.0.2.2:8388#JP 02";

    #[test]
    fn urls() {
        let u = url("https://sub.example/api/v1?token=abc").unwrap();
        assert_eq!((u.tls, u.port), (true, 443));
        assert_eq!(u.host, Host::Name("sub.example".into()));
        assert_eq!(u.path, "/api/v1?token=abc");
        assert_eq!(u.origin(), "https://sub.example:443");
        let u = url("http://[2001:db8::1]:8080").unwrap();
        assert_eq!((u.port, u.path.as_str()), (8080, "/"));
        assert_eq!(u.join("/x").unwrap().path, "/x");
        assert!(url("https://a.example/")
            .unwrap()
            .join("http://b.example/")
            .unwrap_err()
            .contains("https to http"));
        assert!(url("ftp://a.example/").unwrap_err().contains("not http"));
        assert!(url("http://u:p@a.example/")
            .unwrap_err()
            .contains("user names"));
        assert!(url("sub.example").is_err());
    }

    #[test]
    fn intervals() {
        assert_eq!(interval("1d"), Some(Duration::from_secs(86400)));
        assert_eq!(interval("90"), Some(Duration::from_secs(90)));
        assert_eq!(interval("30m"), Some(Duration::from_secs(1800)));
        assert_eq!(interval("12h"), Some(Duration::from_secs(43200)));
        assert_eq!(interval("1w"), None);
        assert_eq!(interval("h"), None);
    }

    #[test]
    fn filters() {
        let f = filter("name(keyword: HK) && !name(regex: '^HK 0[2-9]')").unwrap();
        assert!(f.matches("HK 01", "s"));
        assert!(!f.matches("HK 02", "s"));
        assert!(!f.matches("JP 01", "s"));
        let f = filter("subtag(a) && name('JP 02', keyword: SG)").unwrap();
        assert!(f.matches("JP 02", "a") && f.matches("SG x", "a"));
        assert!(!f.matches("JP 02", "b"));
        assert!(filter("name(foo: x)").unwrap_err().contains("unknown key"));
        assert!(filter("dip(1.2.3.4)")
            .unwrap_err()
            .contains("unknown function"));
        assert!(filter("name(regex: '(')")
            .unwrap_err()
            .contains("bad regex"));
    }

    fn names(l: &List) -> Vec<&str> {
        l.entries.iter().map(|e| e.name.as_str()).collect()
    }

    #[test]
    fn every_format_gives_the_same_nodes() {
        let plain = format!("{SOCKS}\r\n\n{SS}\nvless://bad\n");
        let want = parse_list(plain.as_bytes()).unwrap();
        assert_eq!(names(&want), ["HK 01", "JP 02"]);
        assert_eq!(want.skipped.len(), 1);
        assert!(
            want.skipped[0].0.starts_with("vless:"),
            "{:?}",
            want.skipped
        );
        let std = base64_encode(plain.as_bytes());
        let url_safe: String = std
            .trim_end_matches('=')
            .chars()
            .map(|c| match c {
                '+' => '-',
                '/' => '_',
                c => c,
            })
            .collect();
        let wrapped: String = std
            .as_bytes()
            .chunks(76)
            .map(|c| format!("{}\n", std::str::from_utf8(c).unwrap()))
            .collect();
        for body in [std, url_safe, wrapped] {
            assert_eq!(parse_list(body.as_bytes()).unwrap(), want, "{body}");
        }
    }

    #[test]
    fn sip008_and_vmess_names() {
        let json = r#"{"version": 1, "servers": [
            {"server": "192.0.2.9", "server_port": 8388, "password": "p@ss:w/rd",
             "method": "chacha20-ietf-poly1305", "remarks": "SG 1"},
            {"server": "192.0.2.10", "server_port": 8388, "password": "x",
             "method": "aes-256-gcm", "plugin": "obfs-local"},
            {"server": "2001:db8::5", "server_port": 8388, "password": "x",
             "method": "rc4-md5"}]}"#;
        let l = parse_list(json.as_bytes()).unwrap();
        assert_eq!(names(&l), ["SG 1"]);
        let link = link::parse(&l.entries[0].link).unwrap();
        match link.proto {
            link::Proto::Shadowsocks(c) => assert_eq!(c.password, "p@ss:w/rd"),
            other => panic!("{other:?}"),
        }
        assert_eq!(l.skipped_count(), 2);
        let vmess = format!(
            "vmess://{}",
            base64_encode(
                br#"{"v":"2","ps":"US 3","add":"192.0.2.3","port":"443","id":"b831381d-6324-4d53-ad4f-8cda48b30811","aid":"0","net":"tcp","type":"none","tls":""}"#
            )
        );
        assert_eq!(names(&parse_list(vmess.as_bytes()).unwrap()), ["US 3"]);
        let forged = "socks5://192.0.2.1:1080#a%0Adae: forged\n";
        assert_eq!(
            names(&parse_list(forged.as_bytes()).unwrap()),
            ["a?dae: forged"]
        );
    }

    #[test]
    fn garbage_is_an_error_and_the_stored_text_reads_back() {
        assert!(parse_list(b"<html>hello</html>").is_err());
        assert!(parse_list(b"").is_err());
        assert!(parse_list(&[0xff, 0xfe, 0]).is_err());
        assert!(parse_list(b"{\"a\": 1}").is_err());
        let l = parse_list(format!("{SOCKS}\n{SS}\n").as_bytes()).unwrap();
        assert_eq!(parse_list(l.text().as_bytes()).unwrap(), l);
    }
}
