//! The answer cache: an LRU of whole answers in wire form, bounded by entry
//! count (`cache_size`) and by the size of one entry.
//!
//! An entry keeps the upstream's bytes as they came (TTLs already adjusted
//! for `fixed_domain_ttl` and negative answers) plus the offsets of every TTL
//! field, so a hit is one copy and a few patches: the client's id and
//! question case, and each TTL counted down by the entry's age. An expired
//! entry may still be served for `stale_window` with a short TTL while one
//! refresh runs (RFC 8767). The cache belongs to the controller and outlives
//! reloads; only its capacity follows the config.
//!
//! Neighbours: `controller` (its only user), `wire` (patching).

use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::rc::Rc;
use std::time::{Duration, Instant};

use lru::LruCache;

use crate::wire::{self, QueryInfo};

/// TTL given to stale answers (RFC 8767 recommends 30 seconds).
pub const STALE_TTL: u32 = 30;
/// Answers larger than this are passed on but not cached, so that the cache's
/// worst case stays `cache_size` × 4 KiB.
pub const MAX_ENTRY_BYTES: usize = 4096;
/// No answer is kept longer than a week, whatever its TTL says.
pub const MAX_LIFE: u32 = 7 * 24 * 3600;

/// One cached answer, in one shared allocation: a small header (when it
/// was stored, how long it lives, the lengths below, a flag), its cache key,
/// the answer in wire form, and the offsets of the answer's TTL fields.
/// Cloning an entry shares it (the cache, the flight's followers).
#[derive(Debug, Clone)]
pub struct Entry(Rc<[u8]>);

/// Header: stored (i64 nanoseconds from `epoch()`), life (u32 seconds),
/// key length (u16), packet length (u16), has_qtype_answer (u8); little
/// endian.
const HEADER: usize = 8 + 4 + 2 + 2 + 1;

thread_local! {
    /// The instant entries count their `stored` time from.
    static EPOCH: Instant = Instant::now();
}

fn epoch() -> Instant {
    EPOCH.with(|e| *e)
}

impl Entry {
    /// `key` may be empty for answers that are shared but never cached.
    pub fn new(
        key: &[u8],
        packet: &[u8],
        ttl_offsets: &[u16],
        stored: Instant,
        life: u32,
        has_qtype_answer: bool,
    ) -> Entry {
        let base = epoch();
        let since = match stored.checked_duration_since(base) {
            Some(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
            None => -i64::try_from(base.duration_since(stored).as_nanos()).unwrap_or(i64::MAX),
        };
        let mut data =
            Vec::with_capacity(HEADER + key.len() + packet.len() + 2 * ttl_offsets.len());
        data.extend_from_slice(&since.to_le_bytes());
        data.extend_from_slice(&life.to_le_bytes());
        data.extend_from_slice(&(key.len() as u16).to_le_bytes());
        data.extend_from_slice(&(packet.len() as u16).to_le_bytes());
        data.push(u8::from(has_qtype_answer));
        data.extend_from_slice(key);
        data.extend_from_slice(packet);
        for o in ttl_offsets {
            data.extend_from_slice(&o.to_le_bytes());
        }
        Entry(Rc::from(data))
    }

    fn u16_at(&self, at: usize) -> usize {
        usize::from(u16::from_le_bytes([self.0[at], self.0[at + 1]]))
    }

    /// When it was stored; TTLs count down from here.
    pub fn stored(&self) -> Instant {
        let mut n = [0u8; 8];
        n.copy_from_slice(&self.0[..8]);
        let since = i64::from_le_bytes(n);
        let d = Duration::from_nanos(since.unsigned_abs());
        if since >= 0 {
            epoch() + d
        } else {
            epoch() - d
        }
    }

    /// Seconds it stays fresh.
    pub fn life(&self) -> u32 {
        u32::from_le_bytes([self.0[8], self.0[9], self.0[10], self.0[11]])
    }

    fn key_len(&self) -> usize {
        self.u16_at(12)
    }

    fn packet_len(&self) -> usize {
        self.u16_at(14)
    }

    /// Whether the answer holds records of the question's type (used by
    /// `ipversion_prefer`).
    pub fn has_qtype_answer(&self) -> bool {
        self.0[16] != 0
    }

    pub fn key(&self) -> &[u8] {
        &self.0[HEADER..HEADER + self.key_len()]
    }

    pub fn packet(&self) -> &[u8] {
        let k = HEADER + self.key_len();
        &self.0[k..k + self.packet_len()]
    }

    fn ttl_offsets(&self) -> impl Iterator<Item = u16> + '_ {
        let start = HEADER + self.key_len() + self.packet_len();
        self.0[start..]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
    }

    /// Whether the entry is still fresh at `now`.
    pub fn is_fresh(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.stored()) < Duration::from_secs(u64::from(self.life()))
    }

    /// Writes the answer for this client with TTLs counted down to `now`.
    pub fn write_fresh(&self, query: &[u8], info: &QueryInfo, now: Instant, out: &mut Vec<u8>) {
        let age = now.saturating_duration_since(self.stored()).as_secs();
        let age = u32::try_from(age).unwrap_or(u32::MAX);
        wire::patch_answer(
            self.packet(),
            self.ttl_offsets(),
            query,
            info,
            |ttl| ttl.saturating_sub(age),
            out,
        );
    }

    /// Writes the answer for this client with every TTL set to `STALE_TTL`.
    pub fn write_stale(&self, query: &[u8], info: &QueryInfo, out: &mut Vec<u8>) {
        wire::patch_answer(
            self.packet(),
            self.ttl_offsets(),
            query,
            info,
            |_| STALE_TTL,
            out,
        );
    }
}

/// What a lookup found.
pub enum Lookup {
    Fresh(Entry),
    /// Expired, but within the stale window: serve it and refresh.
    Stale(Entry),
    Miss,
}

/// Counters for `dae status`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub stale_hits: u64,
    pub misses: u64,
    pub inserts: u64,
    pub evictions: u64,
}

/// The LRU of answers. With capacity 0 it holds nothing.
///
/// It is indexed by a seeded 64-bit hash of the key; each entry keeps its
/// full key, checked on every lookup, so two keys that share a hash can
/// only cost a miss, never a wrong answer.
pub struct Cache {
    lru: Option<LruCache<u64, Entry, PassThrough>>,
    hasher: SeededHash,
    serve_stale: bool,
    stale_window: Duration,
    pub stats: CacheStats,
}

impl Cache {
    pub fn new(capacity: usize, serve_stale: bool, stale_window: Duration) -> Cache {
        let hasher = SeededHash::random();
        Cache {
            lru: NonZeroUsize::new(capacity).map(|c| LruCache::with_hasher(c, PassThrough)),
            hasher,
            serve_stale,
            stale_window,
            stats: CacheStats::default(),
        }
    }

    /// Follows a new config: the capacity (keeping the most recent entries
    /// that fit) and the stale settings.
    pub fn reconfigure(&mut self, capacity: usize, serve_stale: bool, stale_window: Duration) {
        self.serve_stale = serve_stale;
        self.stale_window = stale_window;
        match (NonZeroUsize::new(capacity), self.lru.as_mut()) {
            (None, _) => self.lru = None,
            (Some(c), Some(lru)) => {
                let before = lru.len();
                lru.resize(c);
                self.stats.evictions += (before - lru.len()) as u64;
            }
            (Some(c), None) => self.lru = Some(LruCache::with_hasher(c, PassThrough)),
        }
    }

    pub fn len(&self) -> usize {
        self.lru.as_ref().map_or(0, LruCache::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn capacity(&self) -> usize {
        self.lru.as_ref().map_or(0, |l| l.cap().get())
    }

    fn index(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    pub fn lookup(&mut self, key: &[u8], now: Instant) -> Lookup {
        let h = self.index(key);
        let Some(lru) = self.lru.as_mut() else {
            self.stats.misses += 1;
            return Lookup::Miss;
        };
        let entry = match lru.get(&h) {
            Some(e) if e.key() == key => e,
            _ => {
                self.stats.misses += 1;
                return Lookup::Miss;
            }
        };
        if entry.is_fresh(now) {
            self.stats.hits += 1;
            return Lookup::Fresh(entry.clone());
        }
        let expired_at = entry.stored() + Duration::from_secs(u64::from(entry.life()));
        if self.serve_stale && now.saturating_duration_since(expired_at) < self.stale_window {
            self.stats.stale_hits += 1;
            return Lookup::Stale(entry.clone());
        }
        lru.pop(&h);
        self.stats.misses += 1;
        Lookup::Miss
    }

    /// Looks without counting or reordering (for `ipversion_prefer`).
    pub fn peek_fresh(&self, key: &[u8], now: Instant) -> Option<Entry> {
        let entry = self.lru.as_ref()?.peek(&self.index(key))?;
        (entry.key() == key && entry.is_fresh(now)).then(|| entry.clone())
    }

    /// Stores an entry under its own key.
    pub fn insert(&mut self, entry: Entry) {
        if entry.packet().len() > MAX_ENTRY_BYTES || entry.life() == 0 || entry.key().is_empty() {
            return;
        }
        let h = self.index(entry.key());
        if let Some(lru) = self.lru.as_mut() {
            self.stats.inserts += 1;
            if let Some((old, _)) = lru.push(h, entry) {
                // `push` hands back either the replaced value (same key) or
                // the evicted least recently used entry.
                if old != h {
                    self.stats.evictions += 1;
                }
            }
        }
    }

    pub fn remove(&mut self, key: &[u8]) {
        let h = self.index(key);
        if let Some(lru) = self.lru.as_mut() {
            if lru.peek(&h).is_some_and(|e| e.key() == key) {
                lru.pop(&h);
            }
        }
    }
}

/// The longest key: a 255-byte name, type, class, a flags byte and an IPv6
/// address for `asis` answers.
const MAX_KEY: usize = 255 + 4 + 1 + 16;

/// A cache key built on the stack: the lowercase question name in wire form,
/// type, class, the bits of the query that change the answer (EDNS present,
/// DO, CD), and for `asis` the address the client asked (another server may
/// answer differently).
pub struct Key {
    bytes: [u8; MAX_KEY],
    len: usize,
}

impl Key {
    pub fn new(query: &[u8], info: &QueryInfo, asis_server: Option<IpAddr>) -> Key {
        let mut k = Key {
            bytes: [0; MAX_KEY],
            len: 0,
        };
        let name = info.qname(query);
        for (d, s) in k.bytes.iter_mut().zip(name) {
            *d = s.to_ascii_lowercase();
        }
        k.len = name.len();
        k.push(&info.qtype.to_be_bytes());
        k.push(&info.qclass.to_be_bytes());
        let mut bits = 0u8;
        if let Some(e) = info.edns {
            bits |= 1;
            if e.dnssec_ok {
                bits |= 2;
            }
        }
        if info.flags & wire::flag::CD != 0 {
            bits |= 4;
        }
        k.push(&[bits]);
        match asis_server {
            Some(IpAddr::V4(ip)) => k.push(&ip.octets()),
            Some(IpAddr::V6(ip)) => k.push(&ip.octets()),
            None => {}
        }
        k
    }

    fn push(&mut self, b: &[u8]) {
        self.bytes[self.len..self.len + b.len()].copy_from_slice(b);
        self.len += b.len();
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// The LRU's own hasher: its keys are already seeded hashes.
#[derive(Clone, Copy, Default)]
pub struct PassThrough;

impl BuildHasher for PassThrough {
    type Hasher = PassThroughHasher;
    fn build_hasher(&self) -> PassThroughHasher {
        PassThroughHasher(0)
    }
}

pub struct PassThroughHasher(u64);

impl Hasher for PassThroughHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys come here; stay correct for anything else anyway.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A fast multiplicative hash with a per-process random seed, so that LAN
/// clients cannot aim names at one bucket.
#[derive(Clone, Copy)]
pub struct SeededHash(u64);

impl SeededHash {
    pub fn random() -> SeededHash {
        SeededHash(crate::rand::u64())
    }
}

impl BuildHasher for SeededHash {
    type Hasher = SeededHasher;
    fn build_hasher(&self) -> SeededHasher {
        SeededHasher(self.0)
    }
}

pub struct SeededHasher(u64);

impl Hasher for SeededHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(K);
        }
        let mut tail = [0u8; 8];
        let rest = chunks.remainder();
        tail[..rest.len()].copy_from_slice(rest);
        self.0 =
            (self.0.rotate_left(5) ^ u64::from_le_bytes(tail) ^ rest.len() as u64).wrapping_mul(K);
    }

    fn finish(&self) -> u64 {
        // Mix the high bits down: hashbrown picks buckets from the low bits.
        let h = self.0;
        (h ^ (h >> 32)).wrapping_mul(0xff51_afd7_ed55_8ccd) ^ (h >> 29)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::parse_query;

    fn query(name: &[u8], qtype: u16) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        q.extend_from_slice(name);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&[0, 1]);
        q
    }

    fn entry(key: &[u8], life: u32, stored: Instant) -> Entry {
        // A response to `host.example A` with one record of TTL 100.
        let mut p = query(b"\x04host\x07example\x00", 1);
        p[2] = 0x81;
        p[3] = 0x80;
        p[7] = 1;
        p.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 100, 0, 4, 192, 0, 2, 1]);
        let ttl_at = (p.len() - 10) as u16;
        Entry::new(key, &p, &[ttl_at], stored, life, true)
    }

    #[test]
    fn keys_ignore_case_and_separate_types_and_servers() {
        let a = query(b"\x04HoSt\x07example\x00", 1);
        let b = query(b"\x04host\x07EXAMPLE\x00", 1);
        let c = query(b"\x04host\x07example\x00", 28);
        let (ia, ib, ic) = (
            parse_query(&a).unwrap(),
            parse_query(&b).unwrap(),
            parse_query(&c).unwrap(),
        );
        assert_eq!(
            Key::new(&a, &ia, None).as_bytes(),
            Key::new(&b, &ib, None).as_bytes()
        );
        assert_ne!(
            Key::new(&a, &ia, None).as_bytes(),
            Key::new(&c, &ic, None).as_bytes()
        );
        let asis = Some("192.0.2.53".parse().unwrap());
        assert_ne!(
            Key::new(&a, &ia, None).as_bytes(),
            Key::new(&a, &ia, asis).as_bytes()
        );
    }

    #[test]
    fn ttls_count_down_and_entries_go_stale_then_away() {
        let t0 = Instant::now();
        let mut cache = Cache::new(8, true, Duration::from_secs(60));
        let q = query(b"\x04HOST\x07example\x00", 1);
        let info = parse_query(&q).unwrap();
        let key = Key::new(&q, &info, None);
        cache.insert(entry(key.as_bytes(), 100, t0));

        let mut out = Vec::new();
        match cache.lookup(key.as_bytes(), t0 + Duration::from_millis(30_500)) {
            Lookup::Fresh(e) => {
                e.write_fresh(&q, &info, t0 + Duration::from_millis(30_500), &mut out)
            }
            _ => panic!("expected a fresh hit"),
        }
        assert_eq!(&out[..2], &[0x12, 0x34]);
        assert_eq!(&out[13..17], b"HOST");
        assert_eq!(wire::read_u32(&out, out.len() - 10), Some(70));

        match cache.lookup(key.as_bytes(), t0 + Duration::from_secs(130)) {
            Lookup::Stale(e) => e.write_stale(&q, &info, &mut out),
            _ => panic!("expected a stale hit"),
        }
        assert_eq!(wire::read_u32(&out, out.len() - 10), Some(STALE_TTL));
        assert!(matches!(
            cache.lookup(key.as_bytes(), t0 + Duration::from_secs(161)),
            Lookup::Miss
        ));
        assert_eq!(cache.len(), 0);
        assert_eq!(cache.stats.hits, 1);
        assert_eq!(cache.stats.stale_hits, 1);
    }

    #[test]
    fn never_grows_past_its_capacity_and_survives_resize() {
        let t0 = Instant::now();
        let mut cache = Cache::new(3, false, Duration::ZERO);
        for i in 0..10u8 {
            cache.insert(entry(&[i], 100, t0));
        }
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.stats.evictions, 7);
        assert!(matches!(cache.lookup(&[9], t0), Lookup::Fresh(_)));
        cache.reconfigure(2, false, Duration::ZERO);
        assert_eq!(cache.len(), 2);
        assert!(matches!(cache.lookup(&[9], t0), Lookup::Fresh(_)));
        cache.reconfigure(0, false, Duration::ZERO);
        cache.insert(entry(&[1], 100, t0));
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn a_shared_hash_is_a_miss_not_a_wrong_answer() {
        let t0 = Instant::now();
        let mut cache = Cache::new(8, false, Duration::ZERO);
        cache.insert(entry(b"one", 100, t0));
        // Plant "one"'s entry under "two"'s hash, as a collision would.
        let h = cache.index(b"two");
        let planted = entry(b"one", 100, t0);
        cache.lru.as_mut().unwrap().push(h, planted);
        assert!(matches!(cache.lookup(b"two", t0), Lookup::Miss));
        assert!(cache.peek_fresh(b"two", t0).is_none());
        assert!(matches!(cache.lookup(b"one", t0), Lookup::Fresh(_)));
    }

    #[test]
    fn zero_life_and_oversized_answers_are_not_kept() {
        let t0 = Instant::now();
        let mut cache = Cache::new(3, false, Duration::ZERO);
        cache.insert(entry(&[1], 0, t0));
        let big = Entry::new(&[2], &vec![0; MAX_ENTRY_BYTES + 1], &[], t0, 60, false);
        cache.insert(big);
        cache.insert(entry(&[], 100, t0));
        assert_eq!(cache.len(), 0);
    }
}
