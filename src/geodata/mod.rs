//! Rule sets from v2ray's dat files: `geosite:NAME[@attr...]`,
//! `geoip:NAME` and `ext:FILE:NAME` in the rules, read from
//! `option geodata_dir` (default `/usr/share/v2ray`, where OpenWrt's
//! v2ray-geosite and v2ray-geoip packages put geosite.dat and geoip.dat).
//!
//! Lean by design: only the categories the config names are read,
//! streaming through the file and skipping the others by their length, and
//! each becomes a compact set built once (`site::SiteSet`,
//! `ip::IpSet`). The sets are shared (`Rc`) by every rule that names them,
//! and a reload reuses a set still held by the running config when its
//! file's size, mtime and inode are unchanged: the loader remembers each
//! set it built by a weak reference, so it never holds one no config uses.
//! The same memory answers `dae status`: the live sets, their entries and
//! their bytes.
//!
//! - `proto`: the protobuf reader; `site`, `ip`: the two kinds of category;
//! - `names`: the compact table of suffixes and full names;
//! - `ranges`: address ranges (lookup, complement, back to prefixes);
//! - `listing`: what the files of a directory hold (`dae geodata`).
//!
//! Neighbours: `config::uci` (asks the loader while checking rules, so a
//! missing file or category is a `dae validate` error), `routing::domain`
//! and `routing::ipset` (match with the sets), `routing::kernel` (expands
//! address sets into LPM entries), `daemon` (status).

mod ip;
pub mod listing;
mod names;
mod proto;
pub mod ranges;
mod site;

use std::cell::{Cell, RefCell};
use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::rc::{Rc, Weak};
use std::time::Instant;

pub use ip::IpSet;
pub use site::SiteSet;

/// The default of `option geodata_dir`.
pub const DEFAULT_DIR: &str = "/usr/share/v2ray";

/// Where a set came from, as the rule wrote it and the file it was read from.
#[derive(Clone, PartialEq, Eq)]
pub struct Source {
    /// `geosite:cn@ads`, `geoip:private`, `ext:my.dat:name` (category and
    /// attributes lowercase).
    pub text: String,
    pub file: PathBuf,
    /// Which build of it: equal serials, the same set.
    pub serial: u64,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.text, self.file.display())
    }
}

/// A set with where it came from. Its `Debug` is the source only (the
/// routing compiler keys conditions by their `Debug` text).
pub struct Loaded<T> {
    pub source: Source,
    pub set: T,
}

impl<T> fmt::Debug for Loaded<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.source.text, self.source.serial)
    }
}

pub type SiteRef = Rc<Loaded<SiteSet>>;
pub type IpRef = Rc<Loaded<IpSet>>;

/// What identifies a file's contents without reading it.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    mtime_ns: i128,
    inode: u64,
}

fn stamp(path: &Path) -> Result<Stamp, String> {
    let m = std::fs::metadata(path).map_err(|e| e.to_string())?;
    Ok(Stamp {
        len: m.len(),
        mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        inode: m.ino(),
    })
}

enum Held {
    Site(Weak<Loaded<SiteSet>>),
    Ip(Weak<Loaded<IpSet>>),
}

struct Built {
    /// `Source::text` and file.
    text: String,
    file: PathBuf,
    stamp: Stamp,
    held: Held,
}

impl Built {
    fn alive(&self) -> bool {
        match &self.held {
            Held::Site(w) => w.strong_count() > 0,
            Held::Ip(w) => w.strong_count() > 0,
        }
    }
}

thread_local! {
    /// Every set built and still held by someone (the daemon is one
    /// thread; tests build on their own threads and see their own).
    static BUILT: RefCell<Vec<Built>> = const { RefCell::new(Vec::new()) };
    static SERIAL: Cell<u64> = const { Cell::new(0) };
}

fn next_serial() -> u64 {
    SERIAL.with(|s| {
        s.set(s.get() + 1);
        s.get()
    })
}

/// The errors of a file of the other kind, named as a geosite or geoip
/// file by `ext:` (each kind's entries have fields the other's lack).
const OTHER_KIND_IP: &str =
    "this is a geoip file (its entries are networks): use it in ip(), dip() or sip()";
const OTHER_KIND_SITE: &str =
    "this is a geosite file (its entries are domains): use it in qname() or domain()";

/// The "no such category" message, with a few of the names there are.
fn no_category(seen: &[String]) -> String {
    if seen.is_empty() {
        return "no such category (the file holds none)".into();
    }
    let mut some: Vec<&str> = seen.iter().map(String::as_str).take(8).collect();
    some.sort_unstable();
    format!(
        "no such category ({} in the file, e.g. {})",
        seen.len(),
        some.join(", ")
    )
}

/// Reads the sets rules name, from one directory.
pub struct Loader {
    dir: PathBuf,
}

/// What a rule argument asks for: the file, the category and filters.
struct Wanted {
    file: PathBuf,
    category: String,
    attrs: Vec<String>,
    text: String,
}

impl Loader {
    pub fn new(dir: &Path) -> Loader {
        Loader {
            dir: dir.to_path_buf(),
        }
    }

    /// Splits `key:value` (`geosite:cn@ads`, `ext:file.dat:cn`); `default`
    /// is the file of the key (`geosite.dat` or `geoip.dat`).
    fn wanted(&self, key: &str, value: &str, default: &str) -> Result<Wanted, String> {
        let (file, spec) = match key {
            "ext" => {
                let (file, spec) = value.rsplit_once(':').ok_or_else(|| {
                    format!("'ext:{value}': write ext:FILE:CATEGORY, e.g. ext:geosite.dat:cn")
                })?;
                if file.is_empty() {
                    return Err(format!("'ext:{value}': the file name is empty"));
                }
                (file, spec)
            }
            _ => (default, value),
        };
        let mut parts = spec.split('@');
        let category = parts.next().unwrap_or_default().to_ascii_lowercase();
        if category.is_empty() {
            return Err(format!("'{key}:{value}': no category name"));
        }
        let mut attrs: Vec<String> = parts.map(str::to_ascii_lowercase).collect();
        if attrs.iter().any(String::is_empty) {
            return Err(format!("'{key}:{value}': an empty attribute after '@'"));
        }
        attrs.sort();
        attrs.dedup();
        let file = if Path::new(file).is_absolute() {
            PathBuf::from(file)
        } else {
            self.dir.join(file)
        };
        let mut text = match key {
            "ext" => format!("ext:{}:{category}", file.display()),
            _ => format!("{key}:{category}"),
        };
        for a in &attrs {
            text.push('@');
            text.push_str(a);
        }
        Ok(Wanted {
            file,
            category,
            attrs,
            text,
        })
    }

    /// A reusable set: same text and file, same file contents, alive.
    fn reuse(w: &Wanted, stamp: Stamp) -> Option<Held> {
        BUILT.with(|b| {
            let mut b = b.borrow_mut();
            b.retain(Built::alive);
            b.iter()
                .find(|x| x.text == w.text && x.file == w.file && x.stamp == stamp)
                .map(|x| match &x.held {
                    Held::Site(s) => Held::Site(s.clone()),
                    Held::Ip(s) => Held::Ip(s.clone()),
                })
        })
    }

    fn remember(w: &Wanted, stamp: Stamp, held: Held) {
        BUILT.with(|b| {
            b.borrow_mut().push(Built {
                text: w.text.clone(),
                file: w.file.clone(),
                stamp,
                held,
            })
        })
    }

    fn source(w: &Wanted) -> Source {
        Source {
            text: w.text.clone(),
            file: w.file.clone(),
            serial: next_serial(),
        }
    }

    /// The domain set of `geosite:SPEC` or `ext:FILE:SPEC`.
    pub fn site(&self, key: &str, value: &str) -> Result<SiteRef, String> {
        let w = self.wanted(key, value, "geosite.dat")?;
        let fail = |e: String| format!("{}: {}: {e}", w.text, w.file.display());
        let stamp = stamp(&w.file).map_err(fail)?;
        if let Some(Held::Site(s)) = Self::reuse(&w, stamp) {
            if let Some(s) = s.upgrade() {
                return Ok(s);
            }
        }
        let start = Instant::now();
        let set = site::read(&w.file, &w.category, &w.attrs).map_err(fail)?;
        log::info!(
            "{}: {} domains, {} KiB, read in {} ms",
            w.text,
            set.entries(),
            set.memory() / 1024,
            start.elapsed().as_millis()
        );
        let loaded = Rc::new(Loaded {
            source: Self::source(&w),
            set,
        });
        Self::remember(&w, stamp, Held::Site(Rc::downgrade(&loaded)));
        Ok(loaded)
    }

    /// The address set of `geoip:NAME` or `ext:FILE:NAME`.
    pub fn ip(&self, key: &str, value: &str) -> Result<IpRef, String> {
        let w = self.wanted(key, value, "geoip.dat")?;
        if !w.attrs.is_empty() {
            return Err(format!(
                "'{key}:{value}': geoip categories take no '@' attributes"
            ));
        }
        let fail = |e: String| format!("{}: {}: {e}", w.text, w.file.display());
        let stamp = stamp(&w.file).map_err(fail)?;
        if let Some(Held::Ip(s)) = Self::reuse(&w, stamp) {
            if let Some(s) = s.upgrade() {
                return Ok(s);
            }
        }
        let start = Instant::now();
        let set = ip::read(&w.file, &w.category).map_err(fail)?;
        log::info!(
            "{}: {} networks, {} KiB, read in {} ms",
            w.text,
            set.entries(),
            set.memory() / 1024,
            start.elapsed().as_millis()
        );
        let loaded = Rc::new(Loaded {
            source: Self::source(&w),
            set,
        });
        Self::remember(&w, stamp, Held::Ip(Rc::downgrade(&loaded)));
        Ok(loaded)
    }
}

/// One live set, for `dae status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub name: String,
    pub file: PathBuf,
    pub entries: usize,
    pub memory: usize,
}

/// The sets some config still holds.
pub fn report() -> Vec<Report> {
    BUILT.with(|b| {
        let mut b = b.borrow_mut();
        b.retain(Built::alive);
        b.iter()
            .filter_map(|x| {
                let (entries, memory) = match &x.held {
                    Held::Site(s) => s.upgrade().map(|s| (s.set.entries(), s.set.memory()))?,
                    Held::Ip(s) => s.upgrade().map(|s| (s.set.entries(), s.set.memory()))?,
                };
                Some(Report {
                    name: x.text.clone(),
                    file: x.file.clone(),
                    entries,
                    memory,
                })
            })
            .collect()
    })
}
