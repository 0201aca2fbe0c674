//! Address sets as sorted, disjoint, merged ranges (IPv4 and IPv6 apart):
//! built from networks, looked up by binary search, complemented for a
//! geoip category with `reverse_match`, and turned back into the fewest
//! prefixes for the kernel's LPM tries.
//!
//! Neighbours: `ip` (geoip categories), `routing::ipset` (the matcher of
//! `ip(...)`, `dip(...)`, `sip(...)`), `routing::kernel` (LPM entries).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::config::IpNet;

/// A set of addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpRanges {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

fn merge<T: Ord + Copy + num::One>(mut r: Vec<(T, T)>) -> Vec<(T, T)> {
    r.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(r.len());
    for (lo, hi) in r {
        match out.last_mut() {
            // Overlapping or adjacent.
            Some(last) if last.1 == T::MAX || lo <= last.1.plus_one() => {
                if hi > last.1 {
                    last.1 = hi;
                }
            }
            _ => out.push((lo, hi)),
        }
    }
    out.shrink_to_fit();
    out
}

fn complement<T: Ord + Copy + num::One>(r: &[(T, T)]) -> Vec<(T, T)> {
    let mut out = Vec::with_capacity(r.len() + 1);
    let mut next = Some(T::MIN);
    for &(lo, hi) in r {
        if let Some(n) = next {
            if lo > n {
                out.push((n, lo.minus_one()));
            }
        }
        next = if hi == T::MAX {
            None
        } else {
            Some(hi.plus_one())
        };
    }
    if let Some(n) = next {
        out.push((n, T::MAX));
    }
    out
}

fn find<T: Ord + Copy>(r: &[(T, T)], x: T) -> bool {
    let i = r.partition_point(|&(lo, _)| lo <= x);
    i > 0 && r[i - 1].1 >= x
}

/// The fewest aligned blocks covering `lo..=hi` of a `bits`-bit space, as
/// (start, prefix length).
fn blocks(mut lo: u128, hi: u128, bits: u32, out: &mut Vec<(u128, u8)>) {
    // The last address of the block of 2^size_log addresses at lo.
    let block_end = |lo: u128, size_log: u32| {
        let span = if size_log >= 128 {
            u128::MAX
        } else {
            (1u128 << size_log) - 1
        };
        lo.checked_add(span)
    };
    loop {
        // The largest aligned block at lo that stays within hi.
        let mut size_log = if lo == 0 {
            bits
        } else {
            lo.trailing_zeros().min(bits)
        };
        while size_log > 0 && block_end(lo, size_log).map_or(true, |e| e > hi) {
            size_log -= 1;
        }
        out.push((lo, (bits - size_log) as u8));
        let end = block_end(lo, size_log).unwrap_or(u128::MAX);
        if end >= hi {
            return;
        }
        lo = end + 1;
    }
}

/// Small arithmetic the two widths share.
mod num {
    pub trait One: Sized {
        const MIN: Self;
        const MAX: Self;
        fn plus_one(self) -> Self;
        fn minus_one(self) -> Self;
    }
    impl One for u32 {
        const MIN: u32 = 0;
        const MAX: u32 = u32::MAX;
        fn plus_one(self) -> u32 {
            self + 1
        }
        fn minus_one(self) -> u32 {
            self - 1
        }
    }
    impl One for u128 {
        const MIN: u128 = 0;
        const MAX: u128 = u128::MAX;
        fn plus_one(self) -> u128 {
            self + 1
        }
        fn minus_one(self) -> u128 {
            self - 1
        }
    }
}

/// The first and last address of a network.
fn span4(addr: u32, prefix: u8) -> (u32, u32) {
    let host = u32::MAX.checked_shr(u32::from(prefix)).unwrap_or(0);
    (addr & !host, addr | host)
}

fn span6(addr: u128, prefix: u8) -> (u128, u128) {
    let host = u128::MAX.checked_shr(u32::from(prefix)).unwrap_or(0);
    (addr & !host, addr | host)
}

impl IpRanges {
    pub fn from_nets(nets: &[IpNet]) -> IpRanges {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for n in nets {
            match n.addr {
                IpAddr::V4(a) => v4.push(span4(a.into(), n.prefix.min(32))),
                IpAddr::V6(a) => v6.push(span6(a.into(), n.prefix.min(128))),
            }
        }
        IpRanges {
            v4: merge(v4),
            v6: merge(v6),
        }
    }

    /// Every address not in the set (of both families).
    pub fn complement(&self) -> IpRanges {
        IpRanges {
            v4: complement(&self.v4),
            v6: complement(&self.v6),
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => find(&self.v4, u32::from(a)),
            IpAddr::V6(a) => find(&self.v6, u128::from(a)),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// How many ranges (after merging).
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// Bytes held.
    pub fn memory(&self) -> usize {
        self.v4.capacity() * 8 + self.v6.capacity() * 32
    }

    /// The set as the fewest networks.
    pub fn to_nets(&self) -> Vec<IpNet> {
        let mut out = Vec::new();
        let mut b = Vec::new();
        for &(lo, hi) in &self.v4 {
            b.clear();
            blocks(lo.into(), hi.into(), 32, &mut b);
            out.extend(b.iter().map(|&(a, p)| IpNet {
                addr: IpAddr::V4(Ipv4Addr::from(a as u32)),
                prefix: p,
            }));
        }
        for &(lo, hi) in &self.v6 {
            b.clear();
            blocks(lo, hi, 128, &mut b);
            out.extend(b.iter().map(|&(a, p)| IpNet {
                addr: IpAddr::V6(Ipv6Addr::from(a)),
                prefix: p,
            }));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        let (a, p) = s.split_once('/').unwrap();
        IpNet {
            addr: a.parse().unwrap(),
            prefix: p.parse().unwrap(),
        }
    }

    #[test]
    fn merge_lookup_complement_and_back_to_networks() {
        let nets = [
            net("192.0.2.0/25"),
            net("192.0.2.128/25"),
            net("198.51.100.7/32"),
            net("198.51.100.0/30"),
            net("2001:db8::/33"),
            net("2001:db8:8000::/33"),
        ];
        let r = IpRanges::from_nets(&nets);
        assert_eq!(r.len(), 4);
        assert_eq!(
            r.to_nets(),
            vec![
                net("192.0.2.0/24"),
                net("198.51.100.0/30"),
                net("198.51.100.7/32"),
                net("2001:db8::/32")
            ]
        );
        for (ip, yes) in [
            ("192.0.2.255", true),
            ("192.0.3.0", false),
            ("198.51.100.4", false),
            ("198.51.100.7", true),
            ("2001:db8:ffff::1", true),
            ("2001:db9::", false),
            ("0.0.0.0", false),
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(r.contains(ip), yes, "{ip}");
            assert_eq!(r.complement().contains(ip), !yes, "{ip}");
        }
        let everything = IpRanges::from_nets(&[net("0.0.0.0/0"), net("::/0")]);
        assert_eq!(everything.to_nets(), vec![net("0.0.0.0/0"), net("::/0")]);
        assert!(everything.complement().is_empty());
        assert_eq!(
            IpRanges::default().complement().to_nets(),
            vec![net("0.0.0.0/0"), net("::/0")]
        );
    }
}
