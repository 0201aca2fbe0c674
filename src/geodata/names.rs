//! A compact set of domain names for the suffix (`domain:`) and full
//! (`full:`) entries of large rule sets: every name in one byte arena, and
//! an open-addressing table of 32-bit slots pointing into it.
//!
//! A name is hashed from its last byte to its first, so while a lookup
//! walks a query name from the end, the hash of each suffix that starts at
//! a label boundary is at hand without hashing again: one probe sequence
//! per label. A slot holds the entry's offset in the arena (24 bits) and 8
//! more bits of its hash, so a probe reads the arena only when those agree.
//! For 100,000 names of realistic length this is about 2.7 MB in two
//! allocations (a `HashSet<String>` takes three to four times that).
//!
//! Neighbours: `site` (builds it from geosite entries and holds it).

/// An entry of the arena: kind byte, length byte, the name.
const KIND_FULL: u8 = 1;
const KIND_SUFFIX: u8 = 2;
/// Arena offsets fit in 24 bits.
const MAX_ARENA: usize = 1 << 24;

fn step(h: u32, b: u8) -> u32 {
    (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
}
const SEED: u32 = 0x811c_9dc5;

/// A name's hash, from its last byte to its first.
fn hash(name: &[u8]) -> u32 {
    name.iter().rev().fold(SEED, |h, &b| step(h, b))
}

/// The names, while they are being read.
#[derive(Default)]
pub struct Builder {
    arena: Vec<u8>,
    offsets: Vec<u32>,
}

impl Builder {
    /// Adds a name (lowercase, no final dot, at most 255 bytes): a suffix
    /// matches itself and every name below it, a full name only itself.
    pub fn add(&mut self, name: &[u8], suffix: bool) -> Result<(), String> {
        let len = u8::try_from(name.len()).map_err(|_| "a name longer than 255 bytes")?;
        if self.arena.len() + 2 + name.len() > MAX_ARENA {
            return Err("more than 16 MB of names in one set".into());
        }
        self.offsets.push(self.arena.len() as u32);
        self.arena
            .push(if suffix { KIND_SUFFIX } else { KIND_FULL });
        self.arena.push(len);
        self.arena.extend_from_slice(name);
        Ok(())
    }

    /// The table: duplicates merged (a suffix covers the full name), the
    /// arena compacted.
    pub fn build(self) -> NameTable {
        let n = self.offsets.len();
        let slots_len = (n * 2).next_power_of_two().max(8);
        let mut t = NameTable {
            arena: Vec::with_capacity(self.arena.len()),
            slots: vec![0; slots_len],
            len: 0,
        };
        for &o in &self.offsets {
            let o = o as usize;
            let kind = self.arena[o];
            let name = &self.arena[o + 2..o + 2 + usize::from(self.arena[o + 1])];
            let h = hash(name);
            match t.find(name, h) {
                Some(at) => t.arena[at] |= kind,
                None => {
                    let at = t.arena.len();
                    t.arena.push(kind);
                    t.arena.push(name.len() as u8);
                    t.arena.extend_from_slice(name);
                    t.insert(at, h);
                }
            }
        }
        t.arena.shrink_to_fit();
        t
    }
}

/// The built set.
pub struct NameTable {
    arena: Vec<u8>,
    /// 0: empty; else the top 8 bits of the hash and the offset + 1.
    slots: Vec<u32>,
    len: usize,
}

impl NameTable {
    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    fn tag(h: u32) -> u32 {
        h & 0xff00_0000
    }

    /// The arena offset of `name`, whose hash is `h`.
    fn find(&self, name: &[u8], h: u32) -> Option<usize> {
        let mut i = h as usize & self.mask();
        loop {
            let s = self.slots[i];
            if s == 0 {
                return None;
            }
            if s & 0xff00_0000 == Self::tag(h) {
                let at = (s & 0x00ff_ffff) as usize - 1;
                let len = usize::from(self.arena[at + 1]);
                if &self.arena[at + 2..at + 2 + len] == name {
                    return Some(at);
                }
            }
            i = (i + 1) & self.mask();
        }
    }

    fn insert(&mut self, at: usize, h: u32) {
        let mut i = h as usize & self.mask();
        while self.slots[i] != 0 {
            i = (i + 1) & self.mask();
        }
        self.slots[i] = Self::tag(h) | (at as u32 + 1);
        self.len += 1;
    }

    /// How many distinct names.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Bytes held.
    pub fn memory(&self) -> usize {
        self.arena.capacity() + self.slots.capacity() * 4
    }

    /// Whether `name` (lowercase, no final dot) is a full name of the set,
    /// or it or a name it lies below is a suffix of the set.
    pub fn matches(&self, name: &str) -> bool {
        if self.len == 0 {
            return false;
        }
        let b = name.as_bytes();
        let mut h = SEED;
        for i in (0..b.len()).rev() {
            h = step(h, b[i]);
            // A suffix starting at a label: the whole name, or after a dot.
            if i == 0 || b[i - 1] == b'.' {
                if let Some(at) = self.find(&b[i..], h) {
                    if i == 0 || self.arena[at] & KIND_SUFFIX != 0 {
                        return true;
                    }
                }
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_and_full_names() {
        let mut b = Builder::default();
        b.add(b"example.com", true).unwrap();
        b.add(b"exact.example.org", false).unwrap();
        b.add(b"example.com", false).unwrap();
        b.add(b"both.example", false).unwrap();
        b.add(b"both.example", true).unwrap();
        let t = b.build();
        assert_eq!(t.len(), 3);
        for yes in [
            "example.com",
            "www.example.com",
            "a.b.example.com",
            "exact.example.org",
            "both.example",
            "x.both.example",
        ] {
            assert!(t.matches(yes), "{yes}");
        }
        for no in [
            "badexample.com",
            "example.com.evil",
            "sub.exact.example.org",
            "example.org",
            "com",
            "",
        ] {
            assert!(!t.matches(no), "{no}");
        }
        assert!(!Builder::default().build().matches("a"));
    }

    #[test]
    fn many_names_agree_with_a_hash_set() {
        let mut b = Builder::default();
        let mut set = std::collections::HashSet::new();
        for i in 0..5000u32 {
            let name = format!("n{}.d{}.example", i * 7919 % 10007, i % 13);
            b.add(name.as_bytes(), i % 3 != 0).unwrap();
            set.insert(name);
        }
        let t = b.build();
        assert_eq!(t.len(), set.len());
        for i in 0..20000u32 {
            let name = format!("n{}.d{}.example", i, i % 13);
            assert_eq!(t.matches(&name), set.contains(&name), "{name}");
        }
    }
}
