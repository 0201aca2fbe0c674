//! Addresses in the config: upstream URLs (`scheme://host[:port][/path]`),
//! host names, listen addresses, and the check of proxy share links.
//!
//! Neighbours: `config::uci` (calls these while checking options),
//! `config::model` (`UpstreamUrl`, `Host`, `Scheme`).

use std::net::{IpAddr, SocketAddr};

use super::model::{Host, Scheme, UpstreamUrl};

const SCHEMES: &[(&str, Scheme, u16)] = &[
    ("udp", Scheme::Udp, 53),
    ("tcp", Scheme::Tcp, 53),
    ("tcp+udp", Scheme::TcpUdp, 53),
    ("tls", Scheme::Tls, 853),
    ("https", Scheme::Https, 443),
    ("h3", Scheme::H3, 443),
    ("quic", Scheme::Quic, 853),
];

/// The default DoH path.
pub const DOH_PATH: &str = "/dns-query";

/// Checks a DNS host name and returns it lowercase without a final dot.
pub fn host_name(s: &str) -> Result<String, String> {
    let name = s.strip_suffix('.').unwrap_or(s).to_ascii_lowercase();
    if name.is_empty() {
        return Err("an empty name".into());
    }
    if name.len() > 253 {
        return Err(format!("'{s}' is longer than 253 characters"));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(format!("'{s}' has an empty label (two dots in a row?)"));
        }
        if label.len() > 63 {
            return Err(format!("'{s}' has a label longer than 63 characters"));
        }
        if !label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!(
                "'{s}' is not a valid name (letters, digits, '-', '_' and dots only)"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("'{s}' has a label starting or ending with '-'"));
        }
    }
    Ok(name)
}

/// Splits `host[:port]` / `[v6][:port]`.
pub(crate) fn host_port(authority: &str) -> Result<(String, Option<u16>), String> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("'{authority}': '[' without ']'"))?;
        match after {
            "" => (h, None),
            p => (
                h,
                Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| format!("'{authority}': expected ':port' after ']'"))?,
                ),
            ),
        }
    } else if authority.matches(':').count() > 1 {
        return Err(format!(
            "'{authority}': an IPv6 address needs brackets, as in [2001:db8::1]:53"
        ));
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) => Some(port_number(p)?),
    };
    Ok((host.to_string(), port))
}

/// A port 1..=65535.
pub fn port_number(p: &str) -> Result<u16, String> {
    match p.parse::<u32>() {
        Ok(n) if (1..=65535).contains(&n) => Ok(n as u16),
        _ => Err(format!("'{p}' is not a port (1 to 65535)")),
    }
}

/// A host: an IPv4 address, an IPv6 address (`bracketed`) or a DNS name.
pub(crate) fn host(h: &str, bracketed: bool) -> Result<Host, String> {
    if h.is_empty() {
        return Err("no host".into());
    }
    if let Ok(ip) = h.parse::<IpAddr>() {
        if ip.is_ipv6() != bracketed {
            return Err(format!(
                "'{h}': IPv6 addresses go in brackets, IPv4 ones do not"
            ));
        }
        return Ok(Host::Ip(ip));
    }
    if bracketed {
        return Err(format!("'{h}' in brackets is not an IPv6 address"));
    }
    if h.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(format!("'{h}' is not a valid IPv4 address"));
    }
    Ok(Host::Name(host_name(h)?))
}

/// Parses an upstream address.
pub fn upstream(s: &str) -> Result<UpstreamUrl, String> {
    let known = || {
        SCHEMES
            .iter()
            .map(|(n, _, _)| *n)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (scheme_text, rest) = s
        .split_once("://")
        .ok_or_else(|| format!("'{s}' is not scheme://host[:port] (schemes: {})", known()))?;
    let &(_, scheme, default_port) = SCHEMES
        .iter()
        .find(|(n, _, _)| n.eq_ignore_ascii_case(scheme_text))
        .ok_or_else(|| format!("unknown scheme '{scheme_text}' (known: {})", known()))?;
    if rest.contains(['@', '?', '#']) {
        return Err(format!(
            "'{s}': user names, queries and fragments are not allowed"
        ));
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let (h, port) = host_port(authority)?;
    let host = host(&h, authority.starts_with('['))?;
    let path = match scheme {
        Scheme::Https | Scheme::H3 => Some(if path.is_empty() || path == "/" {
            DOH_PATH.to_string()
        } else {
            path.to_string()
        }),
        _ if path.is_empty() || path == "/" => None,
        _ => {
            return Err(format!(
                "'{s}': a path is only allowed for https:// and h3://"
            ))
        }
    };
    Ok(UpstreamUrl {
        scheme,
        host,
        port: port.unwrap_or(default_port),
        path,
    })
}

/// `IP:PORT` or `[IPv6]:PORT`, port required.
pub fn listen_address(s: &str) -> Result<SocketAddr, String> {
    s.parse::<SocketAddr>().map_err(|_| {
        format!("'{s}' is not an address with a port (like 127.0.0.1:5353 or [::1]:5353)")
    })
}

/// Decodes standard or URL-safe base64, padding optional.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// Standard base64 with padding (RFC 4648): HTTP Basic credentials,
/// Shadowsocks links built from SIP008 lists.
pub fn base64_encode(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Checks a proxy share link by parsing it fully (`link::parse`).
pub fn check_share_link(link: &str) -> Result<(), String> {
    super::link::parse(link).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_urls() {
        let u = upstream("udp://203.0.113.53").unwrap();
        assert_eq!((u.scheme, u.port, u.path), (Scheme::Udp, 53, None));
        let u = upstream("tcp+udp://[2001:db8::53]:5353").unwrap();
        assert_eq!(u.host, Host::Ip("2001:db8::53".parse().unwrap()));
        assert_eq!((u.scheme, u.port), (Scheme::TcpUdp, 5353));
        let u = upstream("https://Dns.Example.").unwrap();
        assert_eq!(u.host, Host::Name("dns.example".into()));
        assert_eq!((u.port, u.path.as_deref()), (443, Some(DOH_PATH)));
        let u = upstream("h3://dns.example:8443/q").unwrap();
        assert_eq!(u.path.as_deref(), Some("/q"));
        assert_eq!(upstream("tls://dns.example").unwrap().port, 853);
        assert_eq!(upstream("quic://192.0.2.1").unwrap().port, 853);
    }

    #[test]
    fn bad_upstream_urls() {
        for (s, expect) in [
            ("203.0.113.53", "scheme://"),
            ("dns://203.0.113.53", "unknown scheme 'dns'"),
            ("udp://2001:db8::1", "needs brackets"),
            ("udp://203.0.113.53:0", "not a port"),
            ("udp://203.0.113.53:70000", "not a port"),
            ("udp://", "no host"),
            ("udp://user@203.0.113.53", "not allowed"),
            ("udp://203.0.113.53/path", "only allowed for https"),
            ("udp://999.1.1.1", "not a valid IPv4"),
            ("udp://bad_-.example", "starting or ending with '-'"),
            ("udp://[192.0.2.1]", "IPv4 ones do not"),
            ("udp://[dns.example]", "not an IPv6"),
            ("tcp://a..b", "empty label"),
        ] {
            let e = upstream(s).expect_err(s);
            assert!(e.contains(expect), "{s}: {e}");
        }
    }

    #[test]
    fn share_links() {
        for ok in [
            "socks5://203.0.113.80:1080",
            "socks5://user:pass@[2001:db8::80]:1080",
            "http://203.0.113.80:3128",
            "ss://YWVzLTI1Ni1nY206cGFzcw@203.0.113.80:8388#name",
            // Legacy: base64("aes-256-gcm:pass@203.0.113.80:8388")
            "ss://YWVzLTI1Ni1nY206cGFzc0AyMDMuMC4xMTMuODA6ODM4OA#name",
            "trojan://secret@proxy.example:443?sni=proxy.example#x",
            "vless://1386f85e-657b-4d6e-9d56-78badb75e1fd@proxy.example:443?security=tls",
            // base64('{"add":"203.0.113.80","port":"443",
            //   "id":"1386f85e-657b-4d6e-9d56-78badb75e1fd"}')
            "vmess://eyJhZGQiOiIyMDMuMC4xMTMuODAiLCJwb3J0IjoiNDQzIiwiaWQiOiIxMzg2Zjg1ZS02NTdiLTRkNmUtOWQ1Ni03OGJhZGI3NWUxZmQifQ==",
        ] {
            check_share_link(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for (bad, expect) in [
            ("ftp://x:1", "unknown scheme"),
            ("socks5://203.0.113.80", "has no port"),
            ("vmess://!!!", "not base64"),
            ("vmess://aGVsbG8", "does not hold JSON"),
            ("trojan://x@host:99999", "not a port"),
            ("proxy", "not a share link"),
            ("vless://uuid@proxy.example:443", "'uuid' is not a UUID"),
            (
                "ss://cmM0LW1kNTpwYXNzd2Q@192.0.2.1:8888",
                "stream cipher 'rc4-md5'",
            ),
        ] {
            let e = check_share_link(bad).expect_err(bad);
            assert!(e.contains(expect), "{bad}: {e}");
        }
    }

    #[test]
    fn base64_both_alphabets() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("-_8").unwrap(), vec![0xfb, 0xff]);
        assert!(base64_decode("a b").is_none());
    }
}
