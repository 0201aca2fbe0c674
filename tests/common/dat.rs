//! A protobuf encoder for v2ray's geosite.dat and geoip.dat, written for the
//! tests and the rule-set benchmark (independent of the reader in
//! `dae::geodata`): varints, keys and length-delimited fields, and the
//! messages `GeoSiteList`, `GeoSite`, `Domain`, `Attribute`, `GeoIPList`,
//! `GeoIP`, `CIDR`.

#![allow(dead_code)]

use std::net::IpAddr;

/// The domain kinds of the format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `keyword:`
    Plain = 0,
    Regex = 1,
    /// `domain:` (the name and every name below it)
    Domain = 2,
    Full = 3,
}

pub struct Domain {
    pub kind: Kind,
    pub value: String,
    pub attrs: Vec<String>,
}

pub fn domain(kind: Kind, value: &str, attrs: &[&str]) -> Domain {
    Domain {
        kind,
        value: value.to_string(),
        attrs: attrs.iter().map(|a| a.to_string()).collect(),
    }
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn key(out: &mut Vec<u8>, field: u64, wire: u64) {
    varint(out, field << 3 | wire);
}

fn bytes(out: &mut Vec<u8>, field: u64, b: &[u8]) {
    key(out, field, 2);
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn number(out: &mut Vec<u8>, field: u64, v: u64) {
    key(out, field, 0);
    varint(out, v);
}

/// One `GeoSite` entry (field 1 of the list), `country_code` written
/// first unless `code_last`.
pub fn site_entry(out: &mut Vec<u8>, code: &str, domains: &[Domain], code_last: bool) {
    let mut e = Vec::new();
    if !code_last {
        bytes(&mut e, 1, code.as_bytes());
    }
    for d in domains {
        let mut m = Vec::new();
        // proto3 leaves the default (Plain = 0) out.
        if d.kind != Kind::Plain {
            number(&mut m, 1, d.kind as u64);
        }
        bytes(&mut m, 2, d.value.as_bytes());
        for a in &d.attrs {
            let mut at = Vec::new();
            bytes(&mut at, 1, a.as_bytes());
            number(&mut at, 2, 1);
            bytes(&mut m, 3, &at);
        }
        bytes(&mut e, 2, &m);
    }
    if code_last {
        bytes(&mut e, 1, code.as_bytes());
    }
    bytes(out, 1, &e);
}

/// A whole geosite file.
pub fn geosite(categories: &[(&str, Vec<Domain>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (code, domains) in categories {
        site_entry(&mut out, code, domains, false);
    }
    out
}

/// One `GeoIP` entry.
pub fn ip_entry(out: &mut Vec<u8>, code: &str, nets: &[(IpAddr, u8)], reverse: bool) {
    let mut e = Vec::new();
    bytes(&mut e, 1, code.as_bytes());
    for (addr, prefix) in nets {
        let mut c = Vec::new();
        match addr {
            IpAddr::V4(a) => bytes(&mut c, 1, &a.octets()),
            IpAddr::V6(a) => bytes(&mut c, 1, &a.octets()),
        }
        if *prefix != 0 {
            number(&mut c, 2, u64::from(*prefix));
        }
        bytes(&mut e, 2, &c);
    }
    if reverse {
        number(&mut e, 3, 1);
    }
    bytes(out, 1, &e);
}

/// A geoip category: its code, networks and `reverse_match`.
pub type IpCategory<'a> = (&'a str, Vec<(IpAddr, u8)>, bool);

/// A whole geoip file.
pub fn geoip(categories: &[IpCategory]) -> Vec<u8> {
    let mut out = Vec::new();
    for (code, nets, reverse) in categories {
        ip_entry(&mut out, code, nets, *reverse);
    }
    out
}
