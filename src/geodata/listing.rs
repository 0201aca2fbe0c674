//! What the dat files of `geodata_dir` hold, for `dae geodata` and the
//! LuCI rule pickers: for each file, its kind (geosite or geoip, told by the
//! first entry's fields, since `ext:FILE:NAME` may name either) and each
//! category's name (lowercase, as rules write it), entry count and, for
//! geosite, the attributes its domains carry.
//!
//! One streaming pass per file through `proto::Reader`: geoip networks are
//! skipped by their length, geosite domains are walked for their attribute
//! keys only; nothing but the names, counts and attributes is kept. A file
//! that does not parse is reported with its error (and no categories).
//!
//! Neighbours: `proto` (the reader), `site` and `ip` (the loaders, which
//! read the same messages in full), `main` (the command).

use std::fs::File;
use std::path::{Path, PathBuf};

use super::proto::{Reader, LEN};

/// The two kinds of dat file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Site,
    Ip,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Site => "geosite",
            Kind::Ip => "geoip",
        }
    }
}

/// One category of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Category {
    /// Lowercase, as `geosite:NAME` writes it.
    pub name: String,
    /// Domains or networks.
    pub entries: u64,
    /// The attribute keys its domains carry (lowercase, sorted, each once);
    /// empty for geoip.
    pub attributes: Vec<String>,
}

/// What one file holds: its kind (`None`: no category has an entry to
/// tell) and categories, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contents {
    pub kind: Option<Kind>,
    pub categories: Vec<Category>,
}

/// One file of the directory, read or not.
#[derive(Debug)]
pub struct FileReport {
    /// The name in the directory (`geosite.dat`).
    pub name: String,
    pub path: PathBuf,
    pub contents: Result<Contents, String>,
}

impl FileReport {
    /// What a rule writes before a category of this file: `geosite:` and
    /// `geoip:` for the two default files (unless one holds the other kind),
    /// else `ext:NAME:`.
    pub fn prefix(&self) -> String {
        let kind = self.contents.as_ref().ok().and_then(|c| c.kind);
        match (self.name.as_str(), kind) {
            ("geosite.dat", None | Some(Kind::Site)) => "geosite:".into(),
            ("geoip.dat", None | Some(Kind::Ip)) => "geoip:".into(),
            _ => format!("ext:{}:", self.name),
        }
    }
}

/// The files of `dir`: geosite.dat and geoip.dat always (an error when
/// missing), then every other `*.dat` file, by name.
pub fn list_dir(dir: &Path) -> Vec<FileReport> {
    let mut names = vec!["geosite.dat".to_string(), "geoip.dat".to_string()];
    if let Ok(rd) = std::fs::read_dir(dir) {
        let mut more: Vec<String> = rd
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_file())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.ends_with(".dat") && !names.contains(n))
            .collect();
        more.sort();
        names.extend(more);
    }
    names
        .into_iter()
        .map(|name| {
            let path = dir.join(&name);
            let contents = read_file(&path);
            FileReport {
                name,
                path,
                contents,
            }
        })
        .collect()
}

/// Reads one file's categories.
pub fn read_file(path: &Path) -> Result<Contents, String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    let mut r = Reader::new(file).map_err(|e| e.to_string())?;
    let mut out = Contents {
        kind: None,
        categories: Vec::new(),
    };
    let file_end = r.file_len();
    let mut code = Vec::new();
    while let Some((field, wire)) = r.key(file_end)? {
        if field != 1 || wire != LEN {
            r.skip(wire, file_end)?;
            continue;
        }
        let end = r.len_end(file_end)?;
        let mut cat = Category {
            name: String::new(),
            entries: 0,
            attributes: Vec::new(),
        };
        while let Some((f, w)) = r.key(end)? {
            match (f, w) {
                (1, LEN) => {
                    r.small_bytes(end, 1024, &mut code)?;
                    cat.name = String::from_utf8_lossy(&code).to_ascii_lowercase();
                }
                (2, LEN) => {
                    let item_end = r.len_end(end)?;
                    cat.entries += 1;
                    entry(&mut r, item_end, &mut out.kind, &mut cat.attributes)?;
                }
                _ => r.skip(w, end)?,
            }
        }
        cat.attributes.sort();
        cat.attributes.dedup();
        out.categories.push(cat);
    }
    Ok(out)
}

/// Walks one entry (a `Domain` or a `CIDR`) to `end`: the first one of the
/// file tells its kind (a CIDR starts with its address bytes, field 1; a
/// domain with its type, a varint, or its value, field 2); a domain's
/// attribute keys are added to `attrs`, a network is skipped.
fn entry(
    r: &mut Reader,
    end: u64,
    kind: &mut Option<Kind>,
    attrs: &mut Vec<String>,
) -> Result<(), String> {
    let mut key = Vec::new();
    while let Some((f, w)) = r.key(end)? {
        let k = *kind.get_or_insert(if (f, w) == (1, LEN) {
            Kind::Ip
        } else {
            Kind::Site
        });
        match (k, f, w) {
            (Kind::Ip, _, _) => return r.seek_to(end),
            (Kind::Site, 3, LEN) => {
                let aend = r.len_end(end)?;
                while let Some((af, aw)) = r.key(aend)? {
                    if (af, aw) == (1, LEN) {
                        r.small_bytes(aend, 256, &mut key)?;
                        let a = String::from_utf8_lossy(&key).to_ascii_lowercase();
                        if !attrs.contains(&a) {
                            attrs.push(a);
                        }
                    } else {
                        r.skip(aw, aend)?;
                    }
                }
            }
            (Kind::Site, _, _) => r.skip(w, end)?,
        }
    }
    Ok(())
}
