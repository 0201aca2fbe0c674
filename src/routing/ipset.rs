//! Address sets: a compiled `ip(...)`, `dip(...)` or `sip(...)`, the one
//! address matcher of the DNS response rules (`controller::rules`) and the
//! routing rules (`routing`).
//!
//! The networks written in the rule become sorted ranges, looked up by
//! binary search; geoip categories stay shared (`Rc`) and are looked up the
//! same way, so a rule naming `geoip:cn` costs no copy of it.
//!
//! Neighbours: `config` (the parsed `IpList`), `geodata` (the categories
//! and `IpRanges`).

use std::net::IpAddr;

use crate::config::IpList;
use crate::geodata::ranges::IpRanges;
use crate::geodata::IpRef;

/// A compiled address list.
#[derive(Debug)]
pub struct IpSet {
    own: IpRanges,
    sets: Vec<IpRef>,
}

impl IpSet {
    pub fn new(list: &IpList) -> IpSet {
        IpSet {
            own: IpRanges::from_nets(&list.nets),
            sets: list.sets.clone(),
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.own.contains(ip) || self.sets.iter().any(|s| s.set.ranges.contains(ip))
    }
}
