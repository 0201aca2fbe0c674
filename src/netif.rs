//! The router's own interface addresses, read with `getifaddrs`: what the
//! plain DNS listeners count as local (`listener::acl`) and what the
//! kernel's routing never routes (`routing::kernel`).

use std::io;
use std::net::IpAddr;

/// One address of one interface.
pub struct IfAddr {
    pub interface: String,
    pub addr: IpAddr,
    /// The length of its netmask, when the kernel gives one.
    pub prefix: Option<u8>,
}

/// Every IPv4 and IPv6 address of every interface now.
pub fn addresses() -> io::Result<Vec<IfAddr>> {
    let mut out = Vec::new();
    for a in nix::ifaddrs::getifaddrs()? {
        let Some(address) = a.address else {
            continue;
        };
        let mask = a.netmask;
        let (addr, prefix) = if let Some(v4) = address.as_sockaddr_in() {
            let prefix =
                mask.and_then(|m| m.as_sockaddr_in().map(|m| u32::from(m.ip()).count_ones()));
            (IpAddr::V4(v4.ip()), prefix)
        } else if let Some(v6) = address.as_sockaddr_in6() {
            let prefix =
                mask.and_then(|m| m.as_sockaddr_in6().map(|m| u128::from(m.ip()).count_ones()));
            (IpAddr::V6(v6.ip()), prefix)
        } else {
            continue;
        };
        out.push(IfAddr {
            interface: a.interface_name,
            addr,
            prefix: prefix.map(|p| p as u8),
        });
    }
    Ok(out)
}
