//! Where a proxied stream goes: an IP address and port, or a host name
//! and port that the proxy server looks up itself; and the ways the proxy
//! protocols write it.
//!
//! - SOCKS style (RFC 1928; SOCKS5, Shadowsocks, Trojan): `ATYP addr port`,
//!   ATYP 1 IPv4, 3 name (a length byte, then the name), 4 IPv6;
//! - port first (VLESS, VMess): `port ATYP addr`, ATYP 1 IPv4, 2 name,
//!   3 IPv6;
//! - text (HTTP CONNECT, logs): `192.0.2.1:443`, `[2001:db8::1]:443`,
//!   `example.com:443` (`Display`).
//!
//! A name is checked before any protocol writes it: 1 to 255 bytes (one
//! length byte must hold it) of ASCII letters, digits, `-`, `_` and `.`.
//! Anything else is refused with an error that says why, so no name can
//! reach a request line or a header as something else.
//!
//! Neighbours: the protocol modules write it, `node` hands it to them,
//! `relay::tcp` makes names of sniffed domains.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};

/// The longest name a one-byte length can announce.
pub const MAX_NAME_LEN: usize = 255;

const SOCKS_IPV4: u8 = 1;
const SOCKS_NAME: u8 = 3;
const SOCKS_IPV6: u8 = 4;

const PORT_FIRST_IPV4: u8 = 1;
const PORT_FIRST_NAME: u8 = 2;
const PORT_FIRST_IPV6: u8 = 3;

/// The target of a proxied stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// An address the client already chose.
    Addr(SocketAddr),
    /// A host name (no final dot needed) and a port; the proxy server
    /// resolves the name.
    Name(String, u16),
}

impl Target {
    pub fn port(&self) -> u16 {
        match self {
            Target::Addr(a) => a.port(),
            Target::Name(_, port) => *port,
        }
    }

    /// Refuses a name no protocol can carry (see the module doc).
    pub fn check(&self) -> io::Result<()> {
        match self {
            Target::Addr(_) => Ok(()),
            Target::Name(name, _) => name_bytes(name).map(|_| ()),
        }
    }

    /// `ATYP addr port`, SOCKS style, appended to `out`.
    pub fn put_socks(&self, out: &mut Vec<u8>) -> io::Result<()> {
        match self {
            Target::Addr(a) => put_socks_addr(out, *a),
            Target::Name(name, port) => {
                let name = name_bytes(name)?;
                out.push(SOCKS_NAME);
                out.push(name.len() as u8);
                out.extend_from_slice(name);
                out.extend_from_slice(&port.to_be_bytes());
            }
        }
        Ok(())
    }

    /// `port ATYP addr` with VLESS's and VMess's type numbers, appended to
    /// `out`.
    pub fn put_port_first(&self, out: &mut Vec<u8>) -> io::Result<()> {
        out.extend_from_slice(&self.port().to_be_bytes());
        match self {
            Target::Addr(a) => match a.ip() {
                IpAddr::V4(ip) => {
                    out.push(PORT_FIRST_IPV4);
                    out.extend_from_slice(&ip.octets());
                }
                IpAddr::V6(ip) => {
                    out.push(PORT_FIRST_IPV6);
                    out.extend_from_slice(&ip.octets());
                }
            },
            Target::Name(name, _) => {
                let name = name_bytes(name)?;
                out.push(PORT_FIRST_NAME);
                out.push(name.len() as u8);
                out.extend_from_slice(name);
            }
        }
        Ok(())
    }
}

impl From<SocketAddr> for Target {
    fn from(addr: SocketAddr) -> Target {
        Target::Addr(addr)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Addr(a) => write!(f, "{a}"),
            Target::Name(name, port) => write!(f, "{name}:{port}"),
        }
    }
}

/// `ATYP addr port` of an IP address, SOCKS style (the datagram headers
/// use it too).
pub fn put_socks_addr(out: &mut Vec<u8>, addr: SocketAddr) {
    match addr.ip() {
        IpAddr::V4(ip) => {
            out.push(SOCKS_IPV4);
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.push(SOCKS_IPV6);
            out.extend_from_slice(&ip.octets());
        }
    }
    out.extend_from_slice(&addr.port().to_be_bytes());
}

/// The name's bytes once it is known to fit every protocol.
fn name_bytes(name: &str) -> io::Result<&[u8]> {
    let bytes = name.as_bytes();
    // Shown escaped: the name may come from anywhere.
    let shown: String = name
        .chars()
        .take(64)
        .collect::<String>()
        .escape_debug()
        .collect();
    if bytes.is_empty() {
        return Err(refused("the target's host name is empty".into()));
    }
    if bytes.len() > MAX_NAME_LEN {
        return Err(refused(format!(
            "the target's host name '{shown}...' is {} bytes long; proxies carry at most \
             {MAX_NAME_LEN}",
            bytes.len()
        )));
    }
    let fits = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
    if !bytes.iter().all(fits) {
        return Err(refused(format!(
            "the target '{shown}' is not a host name (letters, digits, '-', '_' and '.' only)"
        )));
    }
    Ok(bytes)
}

fn refused(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(n: &str, port: u16) -> Target {
        Target::Name(n.into(), port)
    }

    #[test]
    fn socks_style_bytes() {
        let mut out = Vec::new();
        name("a.example", 443).put_socks(&mut out).unwrap();
        assert_eq!(out, b"\x03\x09a.example\x01\xbb");
        out.clear();
        Target::Addr("192.0.2.1:53".parse().unwrap())
            .put_socks(&mut out)
            .unwrap();
        assert_eq!(out, [1, 192, 0, 2, 1, 0, 53]);
        out.clear();
        Target::Addr("[2001:db8::1]:853".parse().unwrap())
            .put_socks(&mut out)
            .unwrap();
        let mut want = vec![4, 0x20, 0x01, 0x0d, 0xb8];
        want.extend_from_slice(&[0; 11]);
        want.extend_from_slice(&[1, 0x03, 0x55]);
        assert_eq!(out, want);
    }

    #[test]
    fn port_first_bytes() {
        let mut out = Vec::new();
        name("a.example", 443).put_port_first(&mut out).unwrap();
        assert_eq!(out, b"\x01\xbb\x02\x09a.example");
        out.clear();
        Target::Addr("192.0.2.1:53".parse().unwrap())
            .put_port_first(&mut out)
            .unwrap();
        assert_eq!(out, [0, 53, 1, 192, 0, 2, 1]);
    }

    #[test]
    fn the_longest_name_fits_and_one_more_byte_is_refused() {
        let longest = "a".repeat(255);
        let mut out = Vec::new();
        name(&longest, 80).put_socks(&mut out).unwrap();
        assert_eq!(out.len(), 1 + 1 + 255 + 2);
        assert_eq!(out[1], 255);
        let too_long = name(&"a".repeat(256), 80);
        let mut out = Vec::new();
        let e = too_long.put_socks(&mut out).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("256 bytes long"), "{e}");
        assert!(too_long.put_port_first(&mut out).is_err());
        assert!(too_long.check().is_err());
    }

    #[test]
    fn what_is_not_a_host_name_is_refused() {
        for bad in [
            "",
            "a b",
            "a.example\r\nX-Evil: 1",
            "[2001:db8::1]",
            "a:80",
            "é.example",
        ] {
            let e = name(bad, 80).check().unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
        }
        assert!(name("_srv.a-b.example.", 80).check().is_ok());
    }

    #[test]
    fn shown_as_text() {
        assert_eq!(name("a.example", 443).to_string(), "a.example:443");
        let v6 = Target::from("[2001:db8::1]:53".parse::<SocketAddr>().unwrap());
        assert_eq!(v6.to_string(), "[2001:db8::1]:53");
        assert_eq!(v6.port(), 53);
    }
}
