//! One geosite category read from a dat file into a compiled domain set:
//! suffix (`domain:`) and full names into one `names::NameTable`, keywords
//! (`plain`) into a list, regexes compiled with `regex_lite`.
//!
//! The file: `GeoSiteList { repeated GeoSite entry = 1 }`, `GeoSite {
//! string country_code = 1; repeated Domain domain = 2 }`, `Domain { Type
//! type = 1 (0 plain, 1 regex, 2 domain, 3 full); string value = 2;
//! repeated Attribute attribute = 3 }`, `Attribute { string key = 1; ... }`.
//! Only the named category is read; an `@attr` filter keeps the domains
//! that carry every attribute named (v2ray's meaning; the lists' own
//! attribute names may start with `!`, as `@!cn`).
//!
//! Neighbours: `proto` (the reader), `names` (the table), `mod` (the
//! loader that caches these).

use std::fs::File;
use std::path::Path;

use super::names::{Builder, NameTable};
use super::proto::{Reader, LEN, VARINT};

/// A geosite category, compiled.
pub struct SiteSet {
    names: NameTable,
    keywords: Vec<String>,
    regexes: Vec<regex_lite::Regex>,
    /// Domains read (after the attribute filter).
    entries: usize,
}

impl SiteSet {
    /// Whether `name` (lowercase, no final dot) is in the category.
    pub fn matches(&self, name: &str) -> bool {
        self.names.matches(name)
            || self.keywords.iter().any(|k| name.contains(k.as_str()))
            || self.regexes.iter().any(|r| r.is_match(name))
    }

    pub fn entries(&self) -> usize {
        self.entries
    }

    /// Bytes held, the regexes counted by their source only (regex_lite
    /// keeps their programs small but does not say how small).
    pub fn memory(&self) -> usize {
        self.names.memory()
            + self
                .keywords
                .iter()
                .map(|k| k.capacity() + 24)
                .sum::<usize>()
            + self
                .regexes
                .iter()
                .map(|r| r.as_str().len() * 8 + 64)
                .sum::<usize>()
    }
}

/// A name as the set keeps it: lowercase, no final dot.
fn normalized(value: &str) -> Vec<u8> {
    let v = value.strip_suffix('.').unwrap_or(value);
    v.to_ascii_lowercase().into_bytes()
}

/// Reads `category` (ASCII case ignored) of the geosite file at `path`,
/// keeping the domains that carry every attribute of `attrs` (lowercase).
/// Errors say what is wrong; the caller names the file and category.
pub fn read(path: &Path, category: &str, attrs: &[String]) -> Result<SiteSet, String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    let mut r = Reader::new(file).map_err(|e| e.to_string())?;
    let (_, end) = match r.find_entry(category)? {
        Ok(span) => span,
        Err(seen) => return Err(super::no_category(&seen)),
    };
    let mut names = Builder::default();
    let mut keywords = Vec::new();
    let mut regexes = Vec::new();
    let mut entries = 0;
    let mut value = Vec::new();
    let mut key = Vec::new();
    let mut carried = vec![false; attrs.len()];
    while let Some((field, wire)) = r.key(end)? {
        if field != 2 || wire != LEN {
            r.skip(wire, end)?;
            continue;
        }
        let dend = r.len_end(end)?;
        let mut kind = 0;
        value.clear();
        carried.iter_mut().for_each(|c| *c = false);
        while let Some((f, w)) = r.key(dend)? {
            match (f, w) {
                (1, VARINT) => kind = r.varint()?,
                // A CIDR's address bytes: the file is a geoip file.
                (1, LEN) => return Err(super::OTHER_KIND_IP.into()),
                (2, LEN) => r.small_bytes(dend, 4096, &mut value)?,
                (3, LEN) => {
                    let aend = r.len_end(dend)?;
                    while let Some((af, aw)) = r.key(aend)? {
                        if (af, aw) == (1, LEN) {
                            r.small_bytes(aend, 256, &mut key)?;
                            for (i, a) in attrs.iter().enumerate() {
                                if key.eq_ignore_ascii_case(a.as_bytes()) {
                                    carried[i] = true;
                                }
                            }
                        } else {
                            r.skip(aw, aend)?;
                        }
                    }
                }
                _ => r.skip(w, dend)?,
            }
        }
        if !carried.iter().all(|c| *c) {
            continue;
        }
        if value.is_empty() {
            // Would match every name as a keyword, or none as a name.
            return Err(format!("a domain with no value before byte {dend}"));
        }
        let text = std::str::from_utf8(&value)
            .map_err(|_| format!("a domain that is not UTF-8 before byte {dend}"))?;
        match kind {
            0 => keywords.push(text.to_lowercase()),
            1 => regexes.push(
                regex_lite::Regex::new(text)
                    .map_err(|e| format!("the regex '{text}' does not compile: {e}"))?,
            ),
            2 | 3 => names
                .add(&normalized(text), kind == 2)
                .map_err(|e| format!("'{text}': {e}"))?,
            k => return Err(format!("unknown domain type {k} before byte {dend}")),
        }
        entries += 1;
    }
    keywords.shrink_to_fit();
    regexes.shrink_to_fit();
    Ok(SiteSet {
        names: names.build(),
        keywords,
        regexes,
        entries,
    })
}
