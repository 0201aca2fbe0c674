//! One geoip category read from a dat file into an address set.
//!
//! The file: `GeoIPList { repeated GeoIP entry = 1 }`, `GeoIP { string
//! country_code = 1; repeated CIDR cidr = 2; bool reverse_match = 3 }`,
//! `CIDR { bytes ip = 1 (4 or 16 bytes); uint32 prefix = 2 }`. A category
//! with `reverse_match` holds every address its networks do not.
//!
//! Neighbours: `proto` (the reader), `ranges` (the set), `mod` (the loader).

use std::fs::File;
use std::net::IpAddr;
use std::path::Path;

use super::proto::{Reader, LEN, VARINT};
use super::ranges::IpRanges;
use crate::config::IpNet;

/// A geoip category, as address ranges.
pub struct IpSet {
    pub ranges: IpRanges,
    /// Networks read.
    entries: usize,
}

impl IpSet {
    pub fn entries(&self) -> usize {
        self.entries
    }

    pub fn memory(&self) -> usize {
        self.ranges.memory()
    }
}

/// Reads `category` (ASCII case ignored) of the geoip file at `path`.
pub fn read(path: &Path, category: &str) -> Result<IpSet, String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    let mut r = Reader::new(file).map_err(|e| e.to_string())?;
    let (_, end) = match r.find_entry(category)? {
        Ok(span) => span,
        Err(seen) => return Err(super::no_category(&seen)),
    };
    let mut nets = Vec::new();
    let mut reverse = false;
    let mut ip = Vec::new();
    while let Some((field, wire)) = r.key(end)? {
        match (field, wire) {
            (2, LEN) => {
                let cend = r.len_end(end)?;
                let mut prefix = None;
                ip.clear();
                while let Some((f, w)) = r.key(cend)? {
                    match (f, w) {
                        (1, LEN) => r.small_bytes(cend, 16, &mut ip)?,
                        (2, VARINT) => prefix = Some(r.varint()?),
                        // A Domain's value: the file is a geosite file.
                        (2, LEN) => return Err(super::OTHER_KIND_SITE.into()),
                        _ => r.skip(w, cend)?,
                    }
                }
                let (addr, width) = match ip.len() {
                    4 => (
                        IpAddr::from(<[u8; 4]>::try_from(&ip[..]).unwrap_or_default()),
                        32,
                    ),
                    16 => (
                        IpAddr::from(<[u8; 16]>::try_from(&ip[..]).unwrap_or_default()),
                        128,
                    ),
                    n => return Err(format!("an address of {n} bytes before byte {cend}")),
                };
                // proto3 leaves a zero prefix out.
                let prefix = prefix.unwrap_or(0);
                if prefix > width {
                    return Err(format!(
                        "{addr}/{prefix}: the prefix is longer than {width}"
                    ));
                }
                nets.push(IpNet {
                    addr,
                    prefix: prefix as u8,
                });
            }
            (3, VARINT) => reverse = r.varint()? != 0,
            _ => r.skip(wire, end)?,
        }
    }
    let ranges = IpRanges::from_nets(&nets);
    Ok(IpSet {
        ranges: if reverse { ranges.complement() } else { ranges },
        entries: nets.len(),
    })
}
