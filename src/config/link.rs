//! Share links: the one-line node descriptions users paste, parsed into
//! plain data the protocol modules dial with.
//!
//! Formats (the tag after `#` is a display name and is ignored):
//! - `socks5://[user:pass@]host:port` (also `socks5h://`; `user:pass` may be
//!   base64 of itself, as some clients export it);
//! - `http://[user:pass@]host:port`, `https://...[?sni=..&allowInsecure=1]`
//!   (TLS to the proxy);
//! - `ss://BASE64URL(method:password)@host:port[/][?plugin=..]` and
//!   `ss://method:password@host:port` (SIP002), and the legacy
//!   `ss://BASE64(method:password@host:port)`; AEAD ciphers only;
//! - `trojan://password@host:port[?sni=..&peer=..&allowInsecure=1]`
//!   (trojan-gfw URL; TLS always);
//! - `vless://uuid@host:port?encryption=none&security=tls|none&sni=..`
//!   (the Xray VLESS share-link proposal);
//! - `vmess://BASE64(JSON)` (the v2rayN format, version 2).
//!
//! Only the plain TCP transport is supported: WebSocket, gRPC, HTTP
//! camouflage, REALITY, XTLS flows and Shadowsocks plugins are refused with
//! a message saying so.
//!
//! Config input: nothing here dials or imports the dialers.
//!
//! Neighbours: `url` (checks each node's `option link` with `parse`),
//! `dialer::node` and the protocol modules (dial what a `Link` describes).

use std::net::IpAddr;

use super::url::{base64_decode, host, host_name, host_port, port_number};
use super::Host;

/// A proxy node as its share link describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The proxy server.
    pub host: Host,
    pub port: u16,
    pub proto: Proto,
    /// TLS to the proxy server, when the link asks for it (always for
    /// `trojan://` and `https://`).
    pub tls: Option<TlsSettings>,
}

/// TLS to the proxy server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// The name the certificate must carry, sent as SNI (`sni`, `peer` or
    /// `host` parameter; the server's host by default).
    pub server_name: String,
    /// `allowInsecure=1` / `insecure=1`: any certificate is accepted.
    pub allow_insecure: bool,
}

/// User name and password (SOCKS5, HTTP proxies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    pub user: String,
    pub password: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proto {
    Socks5(Option<Auth>),
    /// `http://` (plain) or `https://` (TLS to the proxy).
    Http(Option<Auth>),
    Shadowsocks(SsConfig),
    Trojan {
        password: String,
    },
    Vless {
        uuid: [u8; 16],
    },
    Vmess(VmessConfig),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsConfig {
    pub method: SsMethod,
    pub password: String,
}

/// The Shadowsocks AEAD ciphers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SsMethod {
    Aes128Gcm,
    Aes256Gcm,
    Chacha20IetfPoly1305,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmessConfig {
    pub uuid: [u8; 16],
    pub security: VmessSecurity,
}

/// How VMess protects the body (the header is always AEAD).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmessSecurity {
    Aes128Gcm,
    Chacha20Poly1305,
    /// `none`: the body in the clear (inside TLS, usually).
    None,
}

const SCHEMES: &str = "socks5, socks5h, http, https, ss, trojan, vless, vmess";

const SS_METHODS: &[(&str, SsMethod)] = &[
    ("aes-128-gcm", SsMethod::Aes128Gcm),
    ("aes-256-gcm", SsMethod::Aes256Gcm),
    ("chacha20-ietf-poly1305", SsMethod::Chacha20IetfPoly1305),
    ("chacha20-poly1305", SsMethod::Chacha20IetfPoly1305),
];

const SS_SUPPORTED: &str = "aes-128-gcm, aes-256-gcm, chacha20-ietf-poly1305";

/// Parses a share link; the error names what is wrong with it, after the
/// scheme (`"ss: unknown method 'x' (supported: ...)"`).
pub fn parse(link: &str) -> Result<Link, String> {
    let (scheme, rest) = link
        .split_once("://")
        .ok_or_else(|| format!("not a share link (schemes: {SCHEMES})"))?;
    let body = rest.split_once('#').map_or(rest, |(body, _tag)| body);
    let parsed = match scheme {
        "socks5" | "socks5h" => socks5(body),
        "http" => http(body, false),
        "https" => http(body, true),
        "ss" => shadowsocks(body),
        "trojan" => trojan(body),
        "vless" => vless(body),
        "vmess" => vmess(body),
        _ => return Err(format!("unknown scheme '{scheme}' (known: {SCHEMES})")),
    };
    parsed.map_err(|e| format!("{scheme}: {e}"))
}

/// The parts of `[userinfo@]host:port[/][?query]`.
struct UrlParts<'a> {
    userinfo: Option<&'a str>,
    host: Host,
    port: u16,
    query: Vec<(&'a str, String)>,
}

impl UrlParts<'_> {
    /// The query parameter `key`, percent-decoded (the last one if repeated).
    fn get(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .rev()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn url_parts(body: &str) -> Result<UrlParts<'_>, String> {
    let (main, query) = body.split_once('?').unwrap_or((body, ""));
    // The last '@': a raw '@' in a password is common enough.
    let (userinfo, authority) = match main.rsplit_once('@') {
        Some((u, a)) => (Some(u), a),
        None => (None, main),
    };
    let authority = authority.strip_suffix('/').unwrap_or(authority);
    let (host, port) = server(authority)?;
    let mut params = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v).map_err(|e| format!("parameter '{k}': {e}"))?;
        params.push((k, v));
    }
    Ok(UrlParts {
        userinfo,
        host,
        port,
        query: params,
    })
}

/// `host:port` or `[v6]:port`, port required.
fn server(authority: &str) -> Result<(Host, u16), String> {
    if authority.contains('/') {
        return Err(format!("'{authority}': a path has no meaning here"));
    }
    let (h, port) = host_port(authority)?;
    let host = host(&h, authority.starts_with('['))?;
    let port = port.ok_or_else(|| format!("'{authority}' has no port"))?;
    Ok((host, port))
}

fn host_text(host: &Host) -> String {
    match host {
        Host::Ip(ip) => ip.to_string(),
        Host::Name(name) => name.clone(),
    }
}

/// Decodes `%XX` escapes; the result must be UTF-8. `+` stays `+`.
pub(crate) fn percent_decode(s: &str) -> Result<String, String> {
    if !s.contains('%') {
        return Ok(s.to_string());
    }
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = bytes.get(i + 1).copied().and_then(hex);
            let lo = bytes.get(i + 2).copied().and_then(hex);
            match (hi, lo) {
                (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                _ => return Err(format!("'{s}' has a bad %-escape")),
            }
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("'{s}' is not UTF-8 once %-decoded"))
}

/// A boolean query or JSON flag: `1`/`true` or `0`/`false`/empty.
fn flag(name: &str, v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" => Ok(true),
        "0" | "false" | "" => Ok(false),
        _ => Err(format!("{name} '{v}' is not 0 or 1")),
    }
}

/// A TLS server name: an IP address or a DNS name.
fn server_name(name: &str) -> Result<String, String> {
    if name.parse::<IpAddr>().is_ok() {
        return Ok(name.to_string());
    }
    host_name(name).map_err(|e| format!("TLS server name: {e}"))
}

/// TLS settings from the query: the first of `name_keys` present names the
/// server (the link's host otherwise); `allowInsecure`/`insecure`.
fn tls_from_query(p: &UrlParts, name_keys: &[&str]) -> Result<TlsSettings, String> {
    let name = name_keys
        .iter()
        .filter_map(|k| p.get(k))
        .find(|v| !v.is_empty());
    let server_name = match name {
        Some(n) => server_name(n)?,
        None => host_text(&p.host),
    };
    let mut allow_insecure = false;
    for key in ["allowInsecure", "insecure"] {
        if let Some(v) = p.get(key) {
            allow_insecure |= flag(key, v)?;
        }
    }
    Ok(TlsSettings {
        server_name,
        allow_insecure,
    })
}

/// `type` (the transport) must be tcp, and `headerType` none.
fn only_tcp(net: Option<&str>, header: Option<&str>) -> Result<(), String> {
    match net {
        None | Some("") | Some("tcp") | Some("raw") => {}
        Some(other) => return Err(format!("transport '{other}' is not supported (only tcp)")),
    }
    match header {
        None | Some("") | Some("none") => Ok(()),
        Some(other) => Err(format!(
            "tcp header type '{other}' (camouflage) is not supported (only none)"
        )),
    }
}

/// `user:password` (percent-encoded), or base64 of `user:password`.
fn user_password(userinfo: &str) -> Result<Auth, String> {
    let (user, password) = match userinfo.split_once(':') {
        Some((u, p)) => (percent_decode(u)?, percent_decode(p)?),
        None => {
            let text = percent_decode(userinfo)
                .ok()
                .and_then(|t| base64_decode(&t))
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|t| t.split_once(':').map(|(u, p)| (u.into(), p.into())));
            text.ok_or_else(|| format!("'{userinfo}' is neither user:password nor base64 of it"))?
        }
    };
    if user.is_empty() {
        return Err("an empty user name".into());
    }
    Ok(Auth { user, password })
}

fn socks5(body: &str) -> Result<Link, String> {
    let p = url_parts(body)?;
    let auth = p.userinfo.map(user_password).transpose()?;
    if let Some(a) = &auth {
        // RFC 1929: both 1 to 255 bytes.
        if a.user.len() > 255 || a.password.is_empty() || a.password.len() > 255 {
            return Err("the user name and password must each be 1 to 255 bytes".into());
        }
    }
    Ok(Link {
        host: p.host,
        port: p.port,
        proto: Proto::Socks5(auth),
        tls: None,
    })
}

fn http(body: &str, tls: bool) -> Result<Link, String> {
    let p = url_parts(body)?;
    let auth = p.userinfo.map(user_password).transpose()?;
    let tls = if tls {
        Some(tls_from_query(&p, &["sni", "peer"])?)
    } else {
        None
    };
    Ok(Link {
        host: p.host,
        port: p.port,
        proto: Proto::Http(auth),
        tls,
    })
}

fn ss_method(name: &str) -> Result<SsMethod, String> {
    let lower = name.to_ascii_lowercase();
    if let Some(&(_, m)) = SS_METHODS.iter().find(|(n, _)| *n == lower) {
        return Ok(m);
    }
    if lower.starts_with("2022-blake3-") {
        return Err(format!(
            "method '{name}' (Shadowsocks 2022) is not supported (supported: {SS_SUPPORTED})"
        ));
    }
    let stream = ["cfb", "cfb1", "cfb8", "ctr", "ofb"]
        .iter()
        .any(|mode| lower.ends_with(&format!("-{mode}")))
        || [
            "rc4",
            "rc4-md5",
            "rc4-md5-6",
            "table",
            "salsa20",
            "chacha20",
            "chacha20-ietf",
            "xchacha20",
        ]
        .contains(&lower.as_str());
    if stream {
        return Err(format!(
            "stream cipher '{name}' is not supported (insecure; supported: {SS_SUPPORTED})"
        ));
    }
    Err(format!(
        "unknown method '{name}' (supported: {SS_SUPPORTED})"
    ))
}

fn ss_config(method: &str, password: String) -> Result<SsConfig, String> {
    let method = ss_method(method)?;
    if password.is_empty() {
        return Err("an empty password".into());
    }
    Ok(SsConfig { method, password })
}

fn shadowsocks(body: &str) -> Result<Link, String> {
    let main = body.split_once('?').map_or(body, |(m, _)| m);
    if !main.contains('@') {
        return shadowsocks_legacy(main);
    }
    let p = url_parts(body)?;
    let userinfo = p.userinfo.unwrap_or_default();
    let (method, password) = match userinfo.split_once(':') {
        // SIP002 plain user info: both percent-encoded.
        Some((m, pw)) => (percent_decode(m)?, percent_decode(pw)?),
        None => {
            // Some clients percent-encode the base64 padding.
            let text = percent_decode(userinfo)
                .ok()
                .and_then(|t| base64_decode(&t))
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| {
                    format!("'{userinfo}' is neither base64 of method:password nor method:password")
                })?;
            let (m, pw) = text
                .split_once(':')
                .ok_or_else(|| format!("'{text}' (from base64) is not method:password"))?;
            (m.to_string(), pw.to_string())
        }
    };
    let config = ss_config(&method, password)?;
    if let Some(plugin) = p.get("plugin").filter(|v| !v.is_empty()) {
        let name = plugin.split(';').next().unwrap_or(plugin);
        return Err(format!(
            "plugins (obfs, v2ray-plugin) are not supported (this link needs '{name}')"
        ));
    }
    Ok(Link {
        host: p.host,
        port: p.port,
        proto: Proto::Shadowsocks(config),
        tls: None,
    })
}

/// `ss://BASE64(method:password@host:port)`.
fn shadowsocks_legacy(encoded: &str) -> Result<Link, String> {
    let text = base64_decode(encoded)
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or("the link is neither SIP002 (userinfo@host:port) nor base64")?;
    let (userinfo, authority) = text
        .rsplit_once('@')
        .ok_or_else(|| format!("'{text}' (from base64) is not method:password@host:port"))?;
    let (method, password) = userinfo
        .split_once(':')
        .ok_or_else(|| format!("'{text}' (from base64) is not method:password@host:port"))?;
    let config = ss_config(method, password.to_string())?;
    let (host, port) = server(authority)?;
    Ok(Link {
        host,
        port,
        proto: Proto::Shadowsocks(config),
        tls: None,
    })
}

fn trojan(body: &str) -> Result<Link, String> {
    let p = url_parts(body)?;
    let password = percent_decode(
        p.userinfo
            .ok_or("no password (trojan://password@host:port)")?,
    )?;
    if password.is_empty() {
        return Err("an empty password".into());
    }
    only_tcp(p.get("type"), p.get("headerType"))?;
    match p.get("security") {
        None | Some("") | Some("tls") => {}
        Some(other) => {
            return Err(format!(
                "security '{other}' is not supported (trojan runs over tls)"
            ))
        }
    }
    let tls = tls_from_query(&p, &["sni", "peer"])?;
    Ok(Link {
        host: p.host,
        port: p.port,
        proto: Proto::Trojan { password },
        tls: Some(tls),
    })
}

fn vless(body: &str) -> Result<Link, String> {
    let p = url_parts(body)?;
    let id = percent_decode(p.userinfo.ok_or("no UUID (vless://uuid@host:port)")?)?;
    let uuid = parse_uuid(&id).ok_or_else(|| format!("'{id}' is not a UUID"))?;
    match p.get("encryption") {
        None | Some("") | Some("none") => {}
        Some(other) => return Err(format!("encryption '{other}' is not supported (only none)")),
    }
    if let Some(flow) = p.get("flow").filter(|f| !f.is_empty()) {
        return Err(format!(
            "flow '{flow}' (XTLS) is not supported (leave flow empty)"
        ));
    }
    only_tcp(p.get("type"), p.get("headerType"))?;
    let tls = match p.get("security") {
        None | Some("") | Some("none") => None,
        Some("tls") => Some(tls_from_query(&p, &["sni", "peer"])?),
        Some("reality") => {
            return Err("security 'reality' (REALITY) is not supported (only tls or none)".into())
        }
        Some(other) => {
            return Err(format!(
                "security '{other}' is not supported (only tls or none)"
            ))
        }
    };
    Ok(Link {
        host: p.host,
        port: p.port,
        proto: Proto::Vless { uuid },
        tls,
    })
}

/// A string field of the vmess JSON; numbers are taken as their text.
fn json_text(v: &serde_json::Value, field: &str) -> Result<Option<String>, String> {
    match &v[field] {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::String(s) => Ok(Some(s.trim().to_string())),
        serde_json::Value::Number(n) => Ok(Some(n.to_string())),
        serde_json::Value::Bool(b) => Ok(Some(if *b { "1" } else { "0" }.to_string())),
        _ => Err(format!("'{field}' is not a string")),
    }
}

fn vmess(body: &str) -> Result<Link, String> {
    let json = base64_decode(body.trim_end_matches('/'))
        .ok_or("the link is not base64 (vmess://BASE64(JSON), the v2rayN format)")?;
    let v: serde_json::Value =
        serde_json::from_slice(&json).map_err(|_| "the link does not hold JSON")?;
    if !v.is_object() {
        return Err("the link's JSON is not an object".into());
    }
    let text = |field| json_text(&v, field);
    let add = text("add")?
        .filter(|a| !a.is_empty())
        .ok_or("no 'add' (the server's address)")?;
    let bare = add
        .strip_prefix('[')
        .and_then(|a| a.strip_suffix(']'))
        .unwrap_or(&add);
    let host = match bare.parse::<IpAddr>() {
        Ok(ip) => Host::Ip(ip),
        Err(_) => host(bare, false).map_err(|e| format!("'add': {e}"))?,
    };
    let port = text("port")?.ok_or("no 'port'")?;
    let port = port_number(&port).map_err(|e| format!("'port': {e}"))?;
    let id = text("id")?.ok_or("no 'id' (the user's UUID)")?;
    let uuid = parse_uuid(&id).ok_or_else(|| format!("'id' '{id}' is not a UUID"))?;
    match text("aid")?.as_deref() {
        None | Some("") | Some("0") => {}
        Some(aid) => {
            return Err(format!(
                "alterId {aid} (legacy VMess) is not supported: use AEAD (alterId 0)"
            ))
        }
    }
    let security = match text("scy")?.as_deref() {
        None | Some("") | Some("auto") | Some("aes-128-gcm") => VmessSecurity::Aes128Gcm,
        Some("chacha20-poly1305") => VmessSecurity::Chacha20Poly1305,
        Some("none") | Some("zero") => VmessSecurity::None,
        Some(other) => {
            return Err(format!(
                "security 'scy' '{other}' is unknown (auto, aes-128-gcm, chacha20-poly1305, none, zero)"
            ))
        }
    };
    only_tcp(text("net")?.as_deref(), text("type")?.as_deref())?;
    let tls = match text("tls")?.as_deref() {
        None | Some("") | Some("none") => None,
        Some("tls") => {
            let name = [text("sni")?, text("host")?]
                .into_iter()
                .flatten()
                .find(|n| !n.is_empty());
            let server_name = match name {
                Some(n) => server_name(&n)?,
                None => host_text(&host),
            };
            let mut allow_insecure = false;
            for key in ["allowInsecure", "skip-cert-verify"] {
                if let Some(f) = text(key)? {
                    allow_insecure |= flag(key, &f)?;
                }
            }
            Some(TlsSettings {
                server_name,
                allow_insecure,
            })
        }
        Some(other) => return Err(format!("tls '{other}' is not supported (only tls or none)")),
    };
    Ok(Link {
        host,
        port,
        proto: Proto::Vmess(VmessConfig { uuid, security }),
        tls,
    })
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (hex) to its 16 bytes.
fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let bytes = s.as_bytes();
    if bytes.len() != 36 {
        return None;
    }
    let mut out = [0u8; 16];
    let mut n = 0;
    let mut high: Option<u8> = None;
    for (i, &c) in bytes.iter().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            if c != b'-' {
                return None;
            }
            continue;
        }
        let d = (c as char).to_digit(16)? as u8;
        match high.take() {
            None => high = Some(d),
            Some(h) => {
                out[n] = h << 4 | d;
                n += 1;
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Standard base64 with padding, to build test links.
    fn b64(data: &str) -> String {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in data.as_bytes().chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    fn ip(s: &str) -> Host {
        Host::Ip(s.parse().unwrap())
    }

    fn name(s: &str) -> Host {
        Host::Name(s.into())
    }

    fn tls(name: &str, insecure: bool) -> Option<TlsSettings> {
        Some(TlsSettings {
            server_name: name.into(),
            allow_insecure: insecure,
        })
    }

    fn ss(method: SsMethod, password: &str) -> Proto {
        Proto::Shadowsocks(SsConfig {
            method,
            password: password.into(),
        })
    }

    fn auth(user: &str, password: &str) -> Option<Auth> {
        Some(Auth {
            user: user.into(),
            password: password.into(),
        })
    }

    const UUID_TEXT: &str = "1386f85e-657b-4d6e-9d56-78badb75e1fd";
    const UUID: [u8; 16] = [
        0x13, 0x86, 0xf8, 0x5e, 0x65, 0x7b, 0x4d, 0x6e, 0x9d, 0x56, 0x78, 0xba, 0xdb, 0x75, 0xe1,
        0xfd,
    ];

    /// The v2rayN wiki's example (version 2), with the given alterId.
    fn v2rayn_example(aid: &str) -> String {
        format!(
            r#"{{"v":"2","ps":"备注别名","add":"111.111.111.111","port":"32000","id":"{UUID_TEXT}","aid":"{aid}","scy":"zero","net":"tcp","type":"none","host":"www.bbb.com","path":"/","tls":"tls","sni":"www.ccc.com","alpn":"h2,http/1.1","fp":"chrome"}}"#
        )
    }

    #[test]
    fn good_links() {
        let cases: Vec<(String, Host, u16, Proto, Option<TlsSettings>)> = vec![
            // SOCKS5
            ("socks5://203.0.113.80:1080".into(), ip("203.0.113.80"), 1080, Proto::Socks5(None), None),
            (
                "socks5h://us%40er:p%3Ass@[2001:db8::80]:1080#x".into(),
                ip("2001:db8::80"),
                1080,
                Proto::Socks5(auth("us@er", "p:ss")),
                None,
            ),
            (
                // base64("user:pass"), as v2rayN exports it
                "socks5://dXNlcjpwYXNz@Proxy.Example:1080".into(),
                name("proxy.example"),
                1080,
                Proto::Socks5(auth("user", "pass")),
                None,
            ),
            // HTTP(S)
            ("http://203.0.113.80:3128/".into(), ip("203.0.113.80"), 3128, Proto::Http(None), None),
            (
                "https://u:p@proxy.example:443?sni=front.example&allowInsecure=1".into(),
                name("proxy.example"),
                443,
                Proto::Http(auth("u", "p")),
                tls("front.example", true),
            ),
            (
                "https://192.0.2.7:8443".into(),
                ip("192.0.2.7"),
                8443,
                Proto::Http(None),
                tls("192.0.2.7", false),
            ),
            // SIP002, example 1
            (
                "ss://YWVzLTEyOC1nY206dGVzdA@192.168.100.1:8888#Example1".into(),
                ip("192.168.100.1"),
                8888,
                ss(SsMethod::Aes128Gcm, "test"),
                None,
            ),
            // SIP002 plain user info, percent-encoded
            (
                "ss://aes-256-gcm:p%40ss%3Aw%2Brd@[2001:db8::1]:8388/#x".into(),
                ip("2001:db8::1"),
                8388,
                ss(SsMethod::Aes256Gcm, "p@ss:w+rd"),
                None,
            ),
            // base64 padding percent-encoded; the chacha20-poly1305 alias
            (
                format!("ss://{}@ss.example:8388/?", b64("chacha20-poly1305:pw").replace('=', "%3D")),
                name("ss.example"),
                8388,
                ss(SsMethod::Chacha20IetfPoly1305, "pw"),
                None,
            ),
            // legacy: everything in base64
            (
                format!("ss://{}#legacy", b64("AES-256-GCM:pa@ss@203.0.113.80:8388")),
                ip("203.0.113.80"),
                8388,
                ss(SsMethod::Aes256Gcm, "pa@ss"),
                None,
            ),
            // trojan-gfw's example
            (
                "trojan://password1@example.com:443".into(),
                name("example.com"),
                443,
                Proto::Trojan { password: "password1".into() },
                tls("example.com", false),
            ),
            (
                "trojan://%21%3F%23@[2001:db8::2]:8443?peer=t.example&allowInsecure=1&type=tcp&security=tls#HK%201".into(),
                ip("2001:db8::2"),
                8443,
                Proto::Trojan { password: "!?#".into() },
                tls("t.example", true),
            ),
            // VLESS share-link proposal style
            (
                format!("vless://{UUID_TEXT}@qv2ray.net:443?encryption=none&security=tls&sni=s.example&type=tcp&headerType=none#VLESSTCPTLS"),
                name("qv2ray.net"),
                443,
                Proto::Vless { uuid: UUID },
                tls("s.example", false),
            ),
            (
                format!("vless://{}@192.0.2.9:31415?encryption=none#naked", UUID_TEXT.to_uppercase()),
                ip("192.0.2.9"),
                31415,
                Proto::Vless { uuid: UUID },
                None,
            ),
            // v2rayN example with alterId 0
            (
                format!("vmess://{}", b64(&v2rayn_example("0"))),
                ip("111.111.111.111"),
                32000,
                Proto::Vmess(VmessConfig { uuid: UUID, security: VmessSecurity::None }),
                tls("www.ccc.com", false),
            ),
            (
                format!(
                    "vmess://{}",
                    b64(&format!(r#"{{"add":"2001:db8::3","port":443,"id":"{UUID_TEXT}","scy":"chacha20-poly1305","tls":"tls","host":"h.example","skip-cert-verify":true}}"#))
                ),
                ip("2001:db8::3"),
                443,
                Proto::Vmess(VmessConfig { uuid: UUID, security: VmessSecurity::Chacha20Poly1305 }),
                tls("h.example", true),
            ),
            (
                format!(
                    "vmess://{}",
                    b64(&format!(r#"{{"v":2,"add":"v.example","port":"10086","id":"{UUID_TEXT}","aid":0,"net":"tcp","tls":""}}"#))
                ),
                name("v.example"),
                10086,
                Proto::Vmess(VmessConfig { uuid: UUID, security: VmessSecurity::Aes128Gcm }),
                None,
            ),
        ];
        for (link, host, port, proto, tls) in cases {
            let got = parse(&link).unwrap_or_else(|e| panic!("{link}: {e}"));
            assert_eq!(
                got,
                Link {
                    host,
                    port,
                    proto,
                    tls
                },
                "{link}"
            );
        }
    }

    #[test]
    fn bad_links() {
        let vmess = |json: &str| format!("vmess://{}", b64(json));
        let vmess_with = |extra: &str| {
            vmess(&format!(
                r#"{{"add":"192.0.2.1","port":"443","id":"{UUID_TEXT}",{extra}}}"#
            ))
        };
        let cases: Vec<(String, &str)> = vec![
            ("proxy".into(), "not a share link"),
            ("ftp://x:1".into(), "unknown scheme 'ftp'"),
            ("SOCKS5://192.0.2.1:1080".into(), "unknown scheme"),
            ("socks5://203.0.113.80".into(), "socks5: '203.0.113.80' has no port"),
            ("socks5://192.0.2.1:0".into(), "not a port"),
            ("socks5://2001:db8::1:1080".into(), "needs brackets"),
            ("socks5://nocolon@192.0.2.1:1080".into(), "neither user:password nor base64"),
            ("socks5://:pw@192.0.2.1:1080".into(), "empty user name"),
            ("socks5://u:@192.0.2.1:1080".into(), "1 to 255 bytes"),
            ("socks5://u:p%zz@192.0.2.1:1080".into(), "bad %-escape"),
            ("http://192.0.2.1:3128/path".into(), "a path has no meaning"),
            ("https://192.0.2.1:443?sni=bad..name".into(), "TLS server name"),
            ("https://192.0.2.1:443?allowInsecure=maybe".into(), "allowInsecure 'maybe'"),
            // SIP002 example 2: a stream cipher and a plugin
            (
                "ss://cmM0LW1kNTpwYXNzd2Q@192.168.100.1:8888/?plugin=obfs-local%3Bobfs%3Dhttp#Example2".into(),
                "ss: stream cipher 'rc4-md5' is not supported (insecure; supported: aes-128-gcm, aes-256-gcm, chacha20-ietf-poly1305)",
            ),
            // SIP002 example 3 (both forms): Shadowsocks 2022
            (
                "ss://2022-blake3-aes-256-gcm:YctPZ6U7xPPcU%2Bgp3u%2B0tx%2FtRizJN9K8y%2BuKlW2qjlI%3D@192.168.100.1:8888#Example3".into(),
                "ss: method '2022-blake3-aes-256-gcm' (Shadowsocks 2022) is not supported",
            ),
            (
                "ss://2022-blake3-aes-256-gcm:YctPZ6U7xPPcU%2Bgp3u%2B0tx%2FtRizJN9K8y%2BuKlW2qjlI%3D@192.168.100.1:8888/?plugin=v2ray-plugin%3Bserver#Example3".into(),
                "Shadowsocks 2022",
            ),
            (
                "ss://YWVzLTEyOC1nY206dGVzdA@192.168.100.1:8888/?plugin=obfs-local%3Bobfs%3Dhttp".into(),
                "ss: plugins (obfs, v2ray-plugin) are not supported (this link needs 'obfs-local')",
            ),
            // the legacy example of the shadowsocks docs: bf-cfb
            ("ss://YmYtY2ZiOnRlc3RAMTkyLjE2OC4xMDAuMTo4ODg4#example-server".into(), "stream cipher 'bf-cfb'"),
            (format!("ss://{}@h.example:1", b64("aes-256-cfb:x")), "stream cipher 'aes-256-cfb'"),
            (format!("ss://{}@h.example:1", b64("aes-512-gcm:x")), "ss: unknown method 'aes-512-gcm' (supported: "),
            (format!("ss://{}@h.example:1", b64("aes-128-gcm:")), "ss: an empty password"),
            (format!("ss://{}@h.example:1", b64("nocolon")), "is not method:password"),
            ("ss://!!!#x".into(), "neither SIP002"),
            ("ss://aGVsbG8".into(), "not method:password@host:port"),
            // trojan
            ("trojan://x@host:99999".into(), "trojan: '99999' is not a port"),
            ("trojan://host.example:443".into(), "trojan: no password"),
            ("trojan://pw@t.example:443?type=ws&path=%2F".into(), "trojan: transport 'ws' is not supported (only tcp)"),
            ("trojan://pw@t.example:443?type=grpc".into(), "transport 'grpc'"),
            ("trojan://pw@t.example:443?security=reality".into(), "security 'reality'"),
            ("trojan-go://password1234@google.com/?sni=microsoft.com&type=ws".into(), "unknown scheme 'trojan-go'"),
            // VLESS
            ("vless://uuid@proxy.example:443?security=tls".into(), "vless: 'uuid' is not a UUID"),
            ("vless://abc@h.example:1".into(), "vless: 'abc' is not a UUID"),
            (format!("vless://{}@h.example:1", &UUID_TEXT[..35]), "is not a UUID"),
            (format!("vless://{}@h.example:1", UUID_TEXT.replace('-', "_")), "is not a UUID"),
            (format!("vless://{}@h.example:1", UUID_TEXT.replace('d', "g")), "is not a UUID"),
            (
                "vless://b0dd64e4-0fbd-4038-9139-d1f32a68a0dc@qv2ray.net:3279?security=xtls&flow=rprx-xtls-splice#VLESSTCPXTLSSplice".into(),
                "vless: flow 'rprx-xtls-splice' (XTLS) is not supported",
            ),
            (format!("vless://{UUID_TEXT}@qv2ray.net:3279?security=xtls"), "security 'xtls' is not supported"),
            (
                format!("vless://{UUID_TEXT}@192.0.2.1:443?encryption=none&flow=xtls-rprx-vision&security=reality&sni=www.example.com&fp=chrome&pbk=abc&sid=01&type=tcp"),
                "flow 'xtls-rprx-vision'",
            ),
            (
                format!("vless://{UUID_TEXT}@192.0.2.1:443?encryption=none&security=reality&sni=www.example.com&pbk=abc"),
                "vless: security 'reality' (REALITY) is not supported",
            ),
            (
                "vless://399ce595-894d-4d40-add1-7d87f1a3bd10@qv2ray.net:50288?type=kcp&seed=69f04be3-d64e-45a3-8550-af3172c63055#VLESSmKCPSeed".into(),
                "vless: transport 'kcp' is not supported (only tcp)",
            ),
            (format!("vless://{UUID_TEXT}@h.example:1?type=tcp&headerType=http"), "header type 'http'"),
            (format!("vless://{UUID_TEXT}@h.example:1?encryption=aes-128-gcm"), "encryption 'aes-128-gcm'"),
            (format!("vless://{UUID_TEXT}@h.example"), "has no port"),
            // VMess: the v2rayN example as it is (alterId 100)
            (
                format!("vmess://{}", b64(&v2rayn_example("100"))),
                "vmess: alterId 100 (legacy VMess) is not supported: use AEAD (alterId 0)",
            ),
            ("vmess://!!!".into(), "vmess: the link is not base64"),
            ("vmess://aGVsbG8".into(), "vmess: the link does not hold JSON"),
            ("vmess://WzFd".into(), "not an object"),
            // base64('{"add":"192.0.2.80","port":"443","id":"x"}')
            ("vmess://eyJhZGQiOiIxOTIuMC4yLjgwIiwicG9ydCI6IjQ0MyIsImlkIjoieCJ9".into(), "vmess: 'id' 'x' is not a UUID"),
            (vmess(r#"{"port":"443"}"#), "no 'add'"),
            (vmess(r#"{"add":"192.0.2.1"}"#), "no 'port'"),
            (vmess(r#"{"add":"192.0.2.1","port":"0"}"#), "'port': '0' is not a port"),
            (vmess(r#"{"add":"192.0.2.1","port":"443"}"#), "no 'id'"),
            (vmess_with(r#""net":"ws""#), "vmess: transport 'ws' is not supported (only tcp)"),
            (vmess_with(r#""net":"grpc""#), "transport 'grpc'"),
            (vmess_with(r#""type":"http""#), "header type 'http'"),
            (vmess_with(r#""scy":"aes-256-cfb""#), "'scy' 'aes-256-cfb' is unknown"),
            (vmess_with(r#""aid":4"#), "alterId 4"),
            (vmess_with(r#""tls":"reality""#), "tls 'reality' is not supported"),
            (vmess_with(r#""add":"a..b""#), "'add': 'a..b' has an empty label"),
        ];
        for (link, expect) in cases {
            let e = parse(&link).expect_err(&link);
            assert!(e.contains(expect), "{link}: {e}");
        }
    }

    #[test]
    fn uuids() {
        assert_eq!(parse_uuid(UUID_TEXT), Some(UUID));
        assert_eq!(parse_uuid(&UUID_TEXT.to_uppercase()), Some(UUID));
        assert_eq!(parse_uuid("1386f85e657b4d6e9d5678badb75e1fd"), None);
        assert_eq!(parse_uuid("+386f85e-657b-4d6e-9d56-78badb75e1fd"), None);
        assert_eq!(parse_uuid("1386f85e-657b-4d6e-9d56-78badb75e1fé"), None);
    }

    #[test]
    fn percent_escapes() {
        assert_eq!(percent_decode("a%2Fb%2bc+").unwrap(), "a/b+c+");
        assert_eq!(percent_decode("%E4%BD%A0").unwrap(), "你");
        assert!(percent_decode("%").is_err());
        assert!(percent_decode("%+1").is_err());
        assert!(percent_decode("%ff").is_err());
    }
}
