//! The answer cache: an LRU of whole answers in wire form, bounded by entry
//! count (`cache_size`) and by the size of one entry.
//!
//! An entry keeps the upstream's bytes as the controller made them fit to
//! share (`wire::normalize_answer`: OPT record rebuilt, RA set; TTLs
//! adjusted for `fixed_domain_ttl` and negative answers) plus the offsets
//! of every TTL field, so a hit is one copy and a few patches: the client's
//! id and question case, and each TTL counted down by the entry's age. An
//! expired entry may still be served for `stale_window` with a short TTL
//! while one refresh runs (RFC 8767). The cache belongs to the controller
//! and outlives reloads; only its capacity follows the config.
//!
//! The storage is three flat vectors and no allocation per entry. The
//! design card prefers the `lru` crate; it is replaced here for issue 2's
//! memory target (peak RSS no more than dnsmasq's): with it, 4096 entries
//! took ~1.1 MB (an `Rc` and a 40-byte list node per answer, each its own
//! allocation among the short-lived ones of queries in flight, and a hash
//! table of 17-byte buckets); this takes ~130 bytes per 60-byte answer.
//! - `arena`: the entries' records one after another. A record is a small
//!   header (its slot, its length, the length of the question name, the
//!   length of the key's tail), the key's tail, then the same body as an
//!   `Entry`'s (header, answer, TTL offsets). The key is not stored whole:
//!   it is the answer's own question (name lowercased, type, class) followed
//!   by the tail (the query bits and the `asis` address), so it is checked
//!   against the answer itself.
//! - `slots`: one per entry, fixed size: the key's hash, where its record
//!   is, and the links of the LRU list (`u32` indices); free slots are
//!   linked through `next`.
//! - `table`: open addressing with linear probing, slot index + 1 (0 is
//!   empty), twice the capacity rounded up to a power of two, sized once;
//!   deletion shifts the following entries back, so there are no
//!   tombstones. A lookup compares the 32-bit hash, then the full key, so a
//!   collision can only cost a miss, never a wrong answer.
//!
//! A removed or evicted entry leaves its record behind as garbage. When a
//! new record does not fit the arena's allocation, the arena is compacted
//! in place if at least an eighth of it is garbage, else it grows by an
//! eighth (or to what the record needs). So it grows only while garbage is
//! under an eighth of it, and its allocation stays below 9/7 of the live
//! records' bytes at its last growth, plus 9/8 of one record (see
//! `Store::make_room`). A compaction, one pass moving the live records
//! down, comes at most once per eighth of the arena inserted. A
//! reconfigure rebuilds the arena to the exact size.
//!
//! Neighbours: `controller` (its only user), `singleflight` (shares `Entry`
//! outcomes), `wire` (patching).

use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::wire::{self, QueryInfo};

/// TTL given to stale answers (RFC 8767 recommends 30 seconds).
pub const STALE_TTL: u32 = 30;
/// Answers larger than this are passed on but not cached, so that the cache's
/// worst case stays `cache_size` × 4 KiB.
pub const MAX_ENTRY_BYTES: usize = 4096;
/// No answer is kept longer than a week, whatever its TTL says.
pub const MAX_LIFE: u32 = 7 * 24 * 3600;
/// Entries the cache can index (`u32` slot links); far above what the
/// config allows (2^20).
const MAX_CAPACITY: usize = 1 << 28;

/// An answer as it comes out of an upstream exchange, in one shared
/// allocation: its cache key (length first), then the body the cache also
/// stores (see `EntryRef`). Cloning an entry shares it (a flight's
/// followers); the cache copies it into its arena.
#[derive(Debug, Clone)]
pub struct Entry(Rc<[u8]>);

/// The header of an entry's body: stored (i64 nanoseconds from `epoch()`),
/// life (u32 seconds), packet length (u16), has_qtype_answer (u8); little
/// endian. The packet and its TTL offsets (u16 each) follow.
const BODY_HEAD: usize = 8 + 4 + 2 + 1;

thread_local! {
    /// The instant entries count their `stored` time from.
    static EPOCH: Instant = Instant::now();
}

fn epoch() -> Instant {
    EPOCH.with(|e| *e)
}

/// A scratch buffer larger than this is not kept between entries.
const SCRATCH_KEEP: usize = 1024;

thread_local! {
    /// Where `Entry::new` lays an entry out.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
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
        // Laid out in a reused buffer, then copied into the one allocation
        // the entry is (`Rc::from` a `Vec` would allocate a second time).
        SCRATCH.with(|scratch| {
            let mut data = scratch.borrow_mut();
            data.clear();
            data.extend_from_slice(&(key.len() as u16).to_le_bytes());
            data.extend_from_slice(key);
            data.extend_from_slice(&since.to_le_bytes());
            data.extend_from_slice(&life.to_le_bytes());
            data.extend_from_slice(&(packet.len() as u16).to_le_bytes());
            data.push(u8::from(has_qtype_answer));
            data.extend_from_slice(packet);
            for o in ttl_offsets {
                data.extend_from_slice(&o.to_le_bytes());
            }
            let entry = Entry(Rc::from(&data[..]));
            if data.capacity() > SCRATCH_KEEP {
                *data = Vec::new();
            }
            entry
        })
    }

    fn key_len(&self) -> usize {
        usize::from(u16::from_le_bytes([self.0[0], self.0[1]]))
    }

    pub fn key(&self) -> &[u8] {
        &self.0[2..2 + self.key_len()]
    }

    /// The answer itself, as the cache would hand it out.
    pub fn view(&self) -> EntryRef<'_> {
        EntryRef(&self.0[2 + self.key_len()..])
    }

    pub fn has_qtype_answer(&self) -> bool {
        self.view().has_qtype_answer()
    }

    pub fn life(&self) -> u32 {
        self.view().life()
    }

    pub fn packet(&self) -> &[u8] {
        self.view().packet()
    }

    pub fn write_fresh(&self, query: &[u8], info: &QueryInfo, now: Instant, out: &mut Vec<u8>) {
        self.view().write_fresh(query, info, now, out)
    }
}

/// An answer's body, wherever it lives (an `Entry`, the cache's arena):
/// `BODY_HEAD`, the packet, its TTL offsets. All reading of entries is here.
#[derive(Debug, Clone, Copy)]
pub struct EntryRef<'a>(&'a [u8]);

impl<'a> EntryRef<'a> {
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

    fn packet_len(&self) -> usize {
        usize::from(u16::from_le_bytes([self.0[12], self.0[13]]))
    }

    /// Whether the answer holds records of the question's type (used by
    /// `ipversion_prefer`).
    pub fn has_qtype_answer(&self) -> bool {
        self.0[14] != 0
    }

    pub fn packet(&self) -> &'a [u8] {
        &self.0[BODY_HEAD..BODY_HEAD + self.packet_len()]
    }

    fn ttl_offsets(&self) -> impl Iterator<Item = u16> + 'a {
        self.0[BODY_HEAD + self.packet_len()..]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
    }

    fn expires(&self) -> Instant {
        self.stored() + Duration::from_secs(u64::from(self.life()))
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

    /// An owned copy under `key` (to share as a flight's outcome).
    pub fn to_entry(&self, key: &[u8]) -> Entry {
        let mut data = Vec::with_capacity(2 + key.len() + self.0.len());
        data.extend_from_slice(&(key.len() as u16).to_le_bytes());
        data.extend_from_slice(key);
        data.extend_from_slice(self.0);
        Entry(Rc::from(data))
    }
}

/// What a lookup found: a view into the cache, valid until its next change.
pub enum Lookup<'a> {
    Fresh(EntryRef<'a>),
    /// Expired, but within the stale window: serve it and refresh.
    Stale(EntryRef<'a>),
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
/// `H` is the key hash: `SeededHash` (tests force collisions with another).
pub struct Cache<H = SeededHash> {
    store: Store,
    hasher: H,
    serve_stale: bool,
    stale_window: Duration,
    pub stats: CacheStats,
}

impl Cache {
    pub fn new(capacity: usize, serve_stale: bool, stale_window: Duration) -> Cache {
        Cache::with_hasher(SeededHash::random(), capacity, serve_stale, stale_window)
    }
}

impl<H: BuildHasher> Cache<H> {
    fn with_hasher(
        hasher: H,
        capacity: usize,
        serve_stale: bool,
        stale_window: Duration,
    ) -> Cache<H> {
        Cache {
            store: Store::new(capacity),
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
        let capacity = capacity.min(MAX_CAPACITY);
        if capacity == self.store.capacity() {
            return;
        }
        let old = std::mem::replace(&mut self.store, Store::new(capacity));
        if capacity > 0 {
            self.stats.evictions += old.len.saturating_sub(capacity) as u64;
            self.store.take_recent(&old);
        }
    }

    pub fn len(&self) -> usize {
        self.store.len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn capacity(&self) -> usize {
        self.store.capacity()
    }

    fn hash(&self, key: &[u8]) -> u32 {
        // The low bits pick the bucket; `SeededHasher` mixes them well.
        self.hasher.hash_one(key) as u32
    }

    pub fn lookup(&mut self, key: &[u8], now: Instant) -> Lookup<'_> {
        let Some(s) = self.store.find(self.hash(key), key) else {
            self.stats.misses += 1;
            return Lookup::Miss;
        };
        let entry = self.store.entry(s);
        let fresh = entry.is_fresh(now);
        let stale_ok =
            self.serve_stale && now.saturating_duration_since(entry.expires()) < self.stale_window;
        if !fresh && !stale_ok {
            self.store.remove(s);
            self.stats.misses += 1;
            return Lookup::Miss;
        }
        self.store.touch(s);
        let entry = self.store.entry(s);
        if fresh {
            self.stats.hits += 1;
            Lookup::Fresh(entry)
        } else {
            self.stats.stale_hits += 1;
            Lookup::Stale(entry)
        }
    }

    /// Calls `f` with the question name (wire form) and the entry of every
    /// entry fresh at `now`, most recently used first, without counting or
    /// reordering.
    pub fn for_each_fresh(&self, now: Instant, mut f: impl FnMut(&[u8], EntryRef<'_>)) {
        let mut s = self.store.head;
        while s != NIL {
            let record = self.store.record(s);
            let entry = self.store.entry(s);
            let name_len = usize::from(record[6]);
            if entry.is_fresh(now) {
                if let Some(name) = entry
                    .packet()
                    .get(wire::HEADER_LEN..wire::HEADER_LEN + name_len)
                {
                    f(name, entry);
                }
            }
            s = self.store.slot(s).next;
        }
    }

    /// Looks without counting or reordering (for `ipversion_prefer`).
    pub fn peek_fresh(&self, key: &[u8], now: Instant) -> Option<EntryRef<'_>> {
        let s = self.store.find(self.hash(key), key)?;
        let entry = self.store.entry(s);
        entry.is_fresh(now).then_some(entry)
    }

    /// Stores a copy of an entry under its own key, replacing the entry of
    /// that key or else, when full, the least recently used one. Answers
    /// too large, of life 0, without a key, or whose question is not the
    /// key's are not kept.
    pub fn insert(&mut self, entry: &Entry) {
        let (key, body) = (entry.key(), entry.view());
        if body.packet().len() > MAX_ENTRY_BYTES || body.life() == 0 || self.capacity() == 0 {
            return;
        }
        let Some(name_len) = question_name_len(key) else {
            return;
        };
        let tail = &key[name_len + 4..];
        if !is_key(key, name_len, tail, body.packet()) {
            return;
        }
        let hash = self.hash(key);
        if let Some(s) = self.store.find(hash, key) {
            self.store.remove(s);
        } else if self.store.len == self.store.capacity() {
            self.store.remove(self.store.tail);
            self.stats.evictions += 1;
        }
        if self.store.push(hash, name_len, tail, body.0) {
            self.stats.inserts += 1;
        }
    }

    pub fn remove(&mut self, key: &[u8]) {
        if let Some(s) = self.store.find(self.hash(key), key) {
            self.store.remove(s);
        }
    }
}

/// No slot (end of a list).
const NIL: u32 = u32::MAX;

/// An entry's place: its key's hash, its record's offset in the arena
/// (`NIL` while free), its neighbours in the LRU list (`prev` is more
/// recent); a free slot links the next free one through `next`.
#[derive(Debug, Clone, Copy)]
struct Slot {
    hash: u32,
    off: u32,
    prev: u32,
    next: u32,
}

/// A record's header in the arena: slot (u32), record length (u16),
/// question name length (u8), key tail length (u8); little endian. The
/// key's tail and the entry's body follow, unpadded (all reads are by
/// bytes).
const RECORD_HEAD: usize = 4 + 2 + 1 + 1;

/// The arena is compacted when 1/`SHARE` of it is garbage, else grows by
/// 1/`SHARE` (see `Store::make_room`).
const SHARE: usize = 8;

/// The cache's storage (see the module doc); it knows nothing of hashing
/// keys or of time.
struct Store {
    arena: Vec<u8>,
    /// Bytes of the arena held by records of removed entries.
    garbage: usize,
    slots: Vec<Slot>,
    table: Vec<u32>,
    capacity: usize,
    len: usize,
    /// Most recently used.
    head: u32,
    /// Least recently used: the next to go.
    tail: u32,
    /// First free slot.
    free: u32,
}

impl Store {
    fn new(capacity: usize) -> Store {
        let capacity = capacity.min(MAX_CAPACITY);
        let buckets = match capacity {
            0 => 0,
            c => (2 * c).next_power_of_two(),
        };
        Store {
            arena: Vec::new(),
            garbage: 0,
            slots: Vec::with_capacity(capacity),
            table: vec![0; buckets],
            capacity,
            len: 0,
            head: NIL,
            tail: NIL,
            free: NIL,
        }
    }

    fn capacity(&self) -> usize {
        self.capacity
    }

    fn slot(&self, s: u32) -> &Slot {
        &self.slots[s as usize]
    }

    fn slot_mut(&mut self, s: u32) -> &mut Slot {
        &mut self.slots[s as usize]
    }

    /// The whole record of a slot in use.
    fn record(&self, s: u32) -> &[u8] {
        let off = self.slot(s).off as usize;
        &self.arena[off..off + record_len(&self.arena[off..])]
    }

    fn entry(&self, s: u32) -> EntryRef<'_> {
        let r = self.record(s);
        EntryRef(&r[RECORD_HEAD + usize::from(r[7])..])
    }

    /// The slot holding `key`.
    fn find(&self, hash: u32, key: &[u8]) -> Option<u32> {
        let mask = self.table.len().checked_sub(1)?;
        let mut i = hash as usize & mask;
        // The table is at most half full: the probe meets an empty bucket.
        loop {
            let s = self.table[i].checked_sub(1)?;
            if self.slot(s).hash == hash && record_is_key(self.record(s), key) {
                return Some(s);
            }
            i = (i + 1) & mask;
        }
    }

    /// Appends a record for a new most recently used entry; false if the
    /// arena cannot take it (offsets are `u32`; never with the config's
    /// limits).
    fn push(&mut self, hash: u32, name_len: usize, tail: &[u8], body: &[u8]) -> bool {
        let len = RECORD_HEAD + tail.len() + body.len();
        if self.len == self.capacity
            || name_len > 255
            || tail.len() > 255
            || len > usize::from(u16::MAX)
            || !self.make_room(len)
        {
            return false;
        }
        let s = match self.free {
            NIL => {
                self.slots.push(Slot {
                    hash,
                    off: NIL,
                    prev: NIL,
                    next: NIL,
                });
                (self.slots.len() - 1) as u32
            }
            s => {
                self.free = self.slot(s).next;
                s
            }
        };
        let off = self.arena.len() as u32;
        self.arena.extend_from_slice(&s.to_le_bytes());
        self.arena.extend_from_slice(&(len as u16).to_le_bytes());
        self.arena.push(name_len as u8);
        self.arena.push(tail.len() as u8);
        self.arena.extend_from_slice(tail);
        self.arena.extend_from_slice(body);
        *self.slot_mut(s) = Slot {
            hash,
            off,
            prev: NIL,
            next: NIL,
        };
        self.link_front(s);
        let mask = self.table.len() - 1;
        let mut i = hash as usize & mask;
        while self.table[i] != 0 {
            i = (i + 1) & mask;
        }
        self.table[i] = s + 1;
        self.len += 1;
        true
    }

    /// Makes room for `need` more bytes at the arena's end. It compacts
    /// when at least 1/n of it is garbage (n = `SHARE`), else it grows by
    /// 1/n of its allocation (or to what `need` takes). So before a growth,
    /// garbage < len/n, i.e. len < n/(n-1) × live, and the old allocation
    /// was below len + need: the new one is below (n+1)/(n-1) × live +
    /// (n+1)/n × need.
    fn make_room(&mut self, need: usize) -> bool {
        if self.arena.capacity() - self.arena.len() >= need {
            return true;
        }
        if self.garbage >= self.arena.len() / SHARE {
            self.compact();
            if self.arena.capacity() - self.arena.len() >= need {
                return true;
            }
        }
        let len = self.arena.len();
        if len + need > u32::MAX as usize {
            return false;
        }
        let cap = self.arena.capacity();
        let want = (cap + cap / SHARE).max(len + need).min(u32::MAX as usize);
        self.arena.reserve_exact(want - len);
        true
    }

    /// Moves the live records down over the garbage, in order. A record is
    /// live if its slot still points at it.
    fn compact(&mut self) {
        let (mut read, mut write) = (0, 0);
        while read < self.arena.len() {
            let (s, len) = record_slot_and_len(&self.arena[read..]);
            if self
                .slots
                .get(s as usize)
                .is_some_and(|sl| sl.off as usize == read)
            {
                self.arena.copy_within(read..read + len, write);
                self.slot_mut(s).off = write as u32;
                write += len;
            }
            read += len;
        }
        self.arena.truncate(write);
        self.garbage = 0;
    }

    /// Removes an entry: out of the table and the LRU list, its record
    /// left as garbage, its slot freed.
    fn remove(&mut self, s: u32) {
        let mask = self.table.len() - 1;
        let mut hole = self.slot(s).hash as usize & mask;
        while self.table[hole] != s + 1 {
            hole = (hole + 1) & mask;
        }
        // Backward shift: each following entry of the run that may sit
        // earlier (its home is not between the hole and it) fills the hole.
        let mut i = hole;
        loop {
            i = (i + 1) & mask;
            let t = self.table[i];
            if t == 0 {
                break;
            }
            let home = self.slot(t - 1).hash as usize & mask;
            if (i.wrapping_sub(home) & mask) >= (i.wrapping_sub(hole) & mask) {
                self.table[hole] = t;
                hole = i;
            }
        }
        self.table[hole] = 0;
        self.unlink(s);
        self.garbage += self.record(s).len();
        let free = self.free;
        *self.slot_mut(s) = Slot {
            hash: 0,
            off: NIL,
            prev: NIL,
            next: free,
        };
        self.free = s;
        self.len -= 1;
    }

    /// Makes an entry the most recently used.
    fn touch(&mut self, s: u32) {
        if self.head != s {
            self.unlink(s);
            self.link_front(s);
        }
    }

    fn unlink(&mut self, s: u32) {
        let Slot { prev, next, .. } = *self.slot(s);
        match prev {
            NIL => self.head = next,
            p => self.slot_mut(p).next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.slot_mut(n).prev = prev,
        }
    }

    fn link_front(&mut self, s: u32) {
        let head = self.head;
        let slot = self.slot_mut(s);
        slot.prev = NIL;
        slot.next = head;
        match head {
            NIL => self.tail = s,
            h => self.slot_mut(h).prev = s,
        }
        self.head = s;
    }

    /// Fills an empty store with the most recent entries of `old` that fit,
    /// in the same order, in an arena of the exact size.
    fn take_recent(&mut self, old: &Store) {
        let mut kept = Vec::with_capacity(old.len.min(self.capacity));
        let mut s = old.head;
        while s != NIL && kept.len() < self.capacity {
            kept.push(s);
            s = old.slot(s).next;
        }
        self.arena
            .reserve_exact(kept.iter().map(|&s| old.record(s).len()).sum());
        for &s in kept.iter().rev() {
            let r = old.record(s);
            let tail = &r[RECORD_HEAD..RECORD_HEAD + usize::from(r[7])];
            let body = &r[RECORD_HEAD + tail.len()..];
            self.push(old.slot(s).hash, usize::from(r[6]), tail, body);
        }
    }

    /// Heap bytes held: what the cache costs, live or not.
    #[cfg(test)]
    fn heap_bytes(&self) -> usize {
        self.arena.capacity()
            + self.slots.capacity() * std::mem::size_of::<Slot>()
            + self.table.capacity() * 4
    }

    #[cfg(test)]
    fn live_bytes(&self) -> usize {
        self.arena.len() - self.garbage
    }
}

/// The length of the record starting `at`.
fn record_len(at: &[u8]) -> usize {
    usize::from(u16::from_le_bytes([at[4], at[5]]))
}

/// The slot and length of the record starting `at`.
fn record_slot_and_len(at: &[u8]) -> (u32, usize) {
    let slot = u32::from_le_bytes([at[0], at[1], at[2], at[3]]);
    (slot, record_len(at))
}

fn record_is_key(record: &[u8], key: &[u8]) -> bool {
    let name_len = usize::from(record[6]);
    let tail = &record[RECORD_HEAD..RECORD_HEAD + usize::from(record[7])];
    let body = EntryRef(&record[RECORD_HEAD + tail.len()..]);
    is_key(key, name_len, tail, body.packet())
}

/// Whether `key` is the key of an answer stored with this name length and
/// tail: the answer's question name, lowercased (`name_len` bytes), its
/// type and class, then `tail`.
fn is_key(key: &[u8], name_len: usize, tail: &[u8], packet: &[u8]) -> bool {
    let q = wire::HEADER_LEN;
    key.len() == name_len + 4 + tail.len()
        && packet.len() >= q + name_len + 4
        && key[..name_len]
            .iter()
            .zip(&packet[q..q + name_len])
            .all(|(k, p)| *k == p.to_ascii_lowercase())
        && key[name_len..name_len + 4] == packet[q + name_len..q + name_len + 4]
        && key[name_len + 4..] == *tail
}

/// The length of the question name a key starts with (see `Key`), if the
/// key holds a whole name, type and class.
fn question_name_len(key: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        let label = usize::from(*key.get(at)?);
        at += 1 + label;
        if label == 0 {
            return (at + 4 <= key.len()).then_some(at);
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
        k.push(name);
        k.bytes[..name.len()].make_ascii_lowercase();
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

impl SeededHasher {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;

    fn round(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(Self::K);
    }
}

impl Hasher for SeededHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.round(u64::from_le_bytes([
                c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7],
            ]));
        }
        let mut tail = [0u8; 8];
        let rest = chunks.remainder();
        tail[..rest.len()].copy_from_slice(rest);
        self.round(u64::from_le_bytes(tail) ^ rest.len() as u64);
    }

    // Integers (the forwarder's ids, a slice's length) in one round each,
    // not through `write`'s byte handling.
    fn write_u16(&mut self, n: u16) {
        self.round(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.round(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.round(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.round(n as u64);
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

    #[test]
    fn the_hash_spreads_small_integers_and_short_keys() {
        // hashbrown takes buckets from the low bits and tags from the top 7:
        // the forwarder's 16-bit ids must spread over both.
        let h = SeededHash::random();
        let mut low = std::collections::HashSet::new();
        let mut top = std::collections::HashSet::new();
        for id in 0..4096u16 {
            let v = h.hash_one(id);
            low.insert(v & 0xfff);
            top.insert(v >> 57);
        }
        assert!(low.len() > 2400, "{} of 4096 low-bit buckets", low.len());
        assert_eq!(top.len(), 128);
        // A slice's length is part of its hash: a key is not its prefix.
        assert_ne!(h.hash_one(&b"ab"[..]), h.hash_one(&b"ab\0"[..]));
    }
    use crate::wire::parse_query;

    fn query(name: &[u8], qtype: u16) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        q.extend_from_slice(name);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&[0, 1]);
        q
    }

    /// The wire form of a dotted name.
    fn wire_name(name: &str) -> Vec<u8> {
        let mut w = Vec::new();
        for label in name.split('.') {
            w.push(label.len() as u8);
            w.extend_from_slice(label.as_bytes());
        }
        w.push(0);
        w
    }

    /// An answer to `name` type A with one record of TTL 100, and its key.
    fn answer(name: &str, life: u32, stored: Instant) -> (Vec<u8>, Entry) {
        let q = query(&wire_name(name), 1);
        let info = parse_query(&q).unwrap();
        let key = Key::new(&q, &info, None).as_bytes().to_vec();
        let mut p = q;
        p[2] = 0x81;
        p[3] = 0x80;
        p[7] = 1;
        p.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 100, 0, 4, 192, 0, 2, 1]);
        let ttl_at = (p.len() - 10) as u16;
        let e = Entry::new(&key, &p, &[ttl_at], stored, life, true);
        (key, e)
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

    fn fresh_life<H: BuildHasher>(cache: &Cache<H>, key: &[u8], now: Instant) -> Option<u32> {
        cache.peek_fresh(key, now).map(|e| e.life())
    }

    /// The lives of the entries from the most to the least recently used.
    fn lives_in_order<H>(cache: &Cache<H>) -> Vec<u32> {
        let (store, mut lives, mut s) = (&cache.store, Vec::new(), cache.store.head);
        while s != NIL {
            lives.push(store.entry(s).life());
            s = store.slot(s).next;
        }
        lives
    }

    /// Every key hashes to the same value.
    struct Same;
    struct SameHasher;
    impl BuildHasher for Same {
        type Hasher = SameHasher;
        fn build_hasher(&self) -> SameHasher {
            SameHasher
        }
    }
    impl Hasher for SameHasher {
        fn write(&mut self, _: &[u8]) {}
        fn finish(&self) -> u64 {
            7
        }
    }

    /// Keys hash to one of a few neighbouring values: long probe runs that
    /// wrap around the table's end.
    struct Clumpy;
    struct ClumpyHasher(u64);
    impl BuildHasher for Clumpy {
        type Hasher = ClumpyHasher;
        fn build_hasher(&self) -> ClumpyHasher {
            ClumpyHasher(0)
        }
    }
    impl Hasher for ClumpyHasher {
        fn write(&mut self, bytes: &[u8]) {
            self.0 += bytes.iter().map(|&b| u64::from(b)).sum::<u64>();
        }
        fn finish(&self) -> u64 {
            (self.0 % 5).wrapping_sub(2)
        }
    }

    /// A small deterministic generator for the tests' choices.
    struct Dice(u64);
    impl Dice {
        fn roll(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
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
        cache.insert(&entry(key.as_bytes(), 100, t0));

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
        let entries: Vec<_> = (0..10)
            .map(|i| answer(&format!("h{i}.example"), 100, t0))
            .collect();
        for (_, e) in &entries {
            cache.insert(e);
        }
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.stats.evictions, 7);
        assert!(matches!(cache.lookup(&entries[9].0, t0), Lookup::Fresh(_)));
        cache.reconfigure(2, false, Duration::ZERO);
        assert_eq!(cache.len(), 2);
        assert!(matches!(cache.lookup(&entries[9].0, t0), Lookup::Fresh(_)));
        cache.reconfigure(0, false, Duration::ZERO);
        cache.insert(&entries[1].1);
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn a_shared_hash_is_a_miss_not_a_wrong_answer() {
        let t0 = Instant::now();
        let mut cache = Cache::with_hasher(Same, 8, false, Duration::ZERO);
        let (one, e1) = answer("one.example", 100, t0);
        let (two, e2) = answer("two.example", 200, t0);
        let (three, _) = answer("three.example", 300, t0);
        cache.insert(&e1);
        assert!(matches!(cache.lookup(&two, t0), Lookup::Miss));
        assert!(cache.peek_fresh(&two, t0).is_none());
        cache.insert(&e2);
        assert_eq!(cache.len(), 2);
        assert_eq!(fresh_life(&cache, &one, t0), Some(100));
        assert_eq!(fresh_life(&cache, &two, t0), Some(200));
        assert!(matches!(cache.lookup(&three, t0), Lookup::Miss));
        match cache.lookup(&two, t0) {
            Lookup::Fresh(e) => assert_eq!(e.packet(), e2.packet()),
            _ => panic!("expected a fresh hit"),
        }
        // Removing the first of the run leaves the second findable.
        cache.remove(&one);
        assert_eq!(fresh_life(&cache, &one, t0), None);
        assert_eq!(fresh_life(&cache, &two, t0), Some(200));
    }

    #[test]
    fn zero_life_oversized_and_foreign_answers_are_not_kept() {
        let t0 = Instant::now();
        let mut cache = Cache::new(3, false, Duration::ZERO);
        let (key, _) = answer("h1.example", 0, t0);
        cache.insert(&answer("h1.example", 0, t0).1);
        let big = Entry::new(&key, &vec![0; MAX_ENTRY_BYTES + 1], &[], t0, 60, false);
        cache.insert(&big);
        cache.insert(&entry(&[], 100, t0));
        // An answer to another question than its key's.
        cache.insert(&entry(&key, 100, t0));
        cache.insert(&entry(&[1, 2, 3], 100, t0));
        assert_eq!(cache.len(), 0);
        assert_eq!(cache.stats.inserts, 0);
    }

    #[test]
    fn the_least_recently_used_goes_first() {
        let t0 = Instant::now();
        let mut cache = Cache::new(3, false, Duration::ZERO);
        let [a, b, c, d] = ["a", "b", "c", "d"].map(|n| answer(&format!("{n}.example"), 100, t0));
        for (_, e) in [&a, &b, &c] {
            cache.insert(e);
        }
        // `a` is the oldest insert but the latest used: `b` goes.
        assert!(matches!(cache.lookup(&a.0, t0), Lookup::Fresh(_)));
        cache.insert(&d.1);
        assert!(cache.peek_fresh(&b.0, t0).is_none());
        for k in [&a.0, &c.0, &d.0] {
            assert!(cache.peek_fresh(k, t0).is_some());
        }
        // A peek does not count as a use: `c` goes next.
        assert!(cache.peek_fresh(&c.0, t0).is_some());
        cache.insert(&b.1);
        assert!(cache.peek_fresh(&c.0, t0).is_none());
        assert_eq!(cache.stats.evictions, 2);
    }

    #[test]
    fn an_answer_replaces_the_one_under_its_key() {
        let t0 = Instant::now();
        let mut cache = Cache::new(2, false, Duration::ZERO);
        let (a, first) = answer("a.example", 100, t0);
        let (b, other) = answer("b.example", 100, t0);
        cache.insert(&first);
        cache.insert(&other);
        cache.insert(&answer("a.example", 200, t0).1);
        assert_eq!(cache.len(), 2);
        assert_eq!(fresh_life(&cache, &a, t0), Some(200));
        assert_eq!(fresh_life(&cache, &b, t0), Some(100));
        assert_eq!(cache.stats.inserts, 3);
        assert_eq!(cache.stats.evictions, 0);
        // The replacement is the most recent: `b` goes first.
        assert_eq!(lives_in_order(&cache), vec![200, 100]);
    }

    #[test]
    fn stats_count_what_happened() {
        let t0 = Instant::now();
        let mut cache = Cache::new(2, true, Duration::from_secs(10));
        let [a, b, c] = ["a", "b", "c"].map(|n| answer(&format!("{n}.example"), 100, t0));
        cache.insert(&a.1);
        cache.insert(&b.1);
        assert!(matches!(cache.lookup(&a.0, t0), Lookup::Fresh(_)));
        assert!(matches!(cache.lookup(&c.0, t0), Lookup::Miss));
        cache.insert(&c.1); // evicts b
        assert!(matches!(cache.lookup(&b.0, t0), Lookup::Miss));
        let late = t0 + Duration::from_secs(105);
        assert!(matches!(cache.lookup(&a.0, late), Lookup::Stale(_)));
        // Past the stale window: gone, a miss, not an eviction.
        assert!(matches!(
            cache.lookup(&c.0, late + Duration::from_secs(10)),
            Lookup::Miss
        ));
        assert_eq!(cache.len(), 1);
        assert_eq!(
            cache.stats,
            CacheStats {
                hits: 1,
                stale_hits: 1,
                misses: 3,
                inserts: 3,
                evictions: 1,
            }
        );
    }

    #[test]
    fn reconfigure_keeps_the_most_recent_entries() {
        let t0 = Instant::now();
        let mut cache = Cache::new(4, false, Duration::ZERO);
        let e: Vec<_> = (0..6)
            .map(|i| answer(&format!("h{i}.example"), 10 + i, t0))
            .collect();
        for (_, x) in &e[..4] {
            cache.insert(x);
        }
        assert!(matches!(cache.lookup(&e[0].0, t0), Lookup::Fresh(_)));
        assert_eq!(lives_in_order(&cache), vec![10, 13, 12, 11]);
        cache.reconfigure(2, false, Duration::ZERO);
        assert_eq!((cache.len(), cache.capacity()), (2, 2));
        assert_eq!(lives_in_order(&cache), vec![10, 13]);
        assert_eq!(cache.stats.evictions, 2);
        // Rebuilt to the exact size.
        assert_eq!(cache.store.arena.capacity(), cache.store.arena.len());
        cache.reconfigure(5, false, Duration::ZERO);
        assert_eq!(lives_in_order(&cache), vec![10, 13]);
        for (_, x) in &e[1..] {
            cache.insert(x);
        }
        assert_eq!(lives_in_order(&cache), vec![15, 14, 13, 12, 11]);
        assert_eq!(fresh_life(&cache, &e[5].0, t0), Some(15));
        cache.reconfigure(0, false, Duration::ZERO);
        assert_eq!((cache.len(), cache.capacity()), (0, 0));
        assert!(matches!(cache.lookup(&e[5].0, t0), Lookup::Miss));
        cache.insert(&e[5].1);
        assert_eq!(cache.len(), 0);
        cache.reconfigure(1, false, Duration::ZERO);
        cache.insert(&e[5].1);
        assert_eq!(fresh_life(&cache, &e[5].0, t0), Some(15));
    }

    #[test]
    fn compaction_keeps_the_entries_and_bounds_the_arena() {
        let t0 = Instant::now();
        let mut cache = Cache::new(64, false, Duration::ZERO);
        let mut dice = Dice(0x2545_f491_4f6c_dd1d);
        let (mut max_live, mut max_record, mut appended) = (0, 0, 0);
        let mut present: Vec<(Vec<u8>, Entry)> = Vec::new();
        for i in 0..5000 {
            // Names of varied lengths: records of varied sizes.
            let name = format!("{}{i}.example", "x".repeat(dice.roll(40)));
            let (key, e) = answer(&name, 100, t0);
            let record = RECORD_HEAD + 1 + e.view().0.len();
            cache.insert(&e);
            present.push((key, e));
            if present.len() > 64 {
                present.remove(0);
            }
            // Evict many: now and then drop a run of entries.
            if dice.roll(100) == 0 {
                for _ in 0..dice.roll(present.len()) {
                    let (key, _) = present.remove(dice.roll(present.len()));
                    cache.remove(&key);
                }
            }
            appended += record;
            max_record = max_record.max(record);
            max_live = max_live.max(cache.store.live_bytes());
            let cap = cache.store.arena.capacity() as f64;
            let n = SHARE as f64;
            assert!(
                cap <= (n + 1.0) / (n - 1.0) * max_live as f64 + (n + 1.0) / n * max_record as f64,
                "arena {cap} bytes, live at most {max_live}"
            );
        }
        // It was compacted over and over, not grown.
        assert!(appended > 20 * cache.store.arena.capacity());
        assert_eq!(cache.len(), present.len());
        for (key, e) in &present {
            match cache.lookup(key, t0) {
                Lookup::Fresh(found) => assert_eq!(found.packet(), e.packet()),
                _ => panic!("an entry was lost"),
            }
        }
    }

    #[test]
    fn behaves_as_a_plain_lru_under_random_use() {
        let t0 = Instant::now();
        let mut dice = Dice(0x9e37_79b9_7f4a_7c15);
        let names: Vec<_> = (0..24)
            .map(|i| answer(&format!("{}n{i}.example", "y".repeat(i % 7)), 1, t0).0)
            .collect();
        let mut cache = Cache::with_hasher(Clumpy, 12, false, Duration::ZERO);
        let mut capacity = 12;
        // The model: (name, life), most recent first; lives are unique.
        let mut model: Vec<(usize, u32)> = Vec::new();
        for step in 1..20_000u32 {
            let n = dice.roll(names.len());
            match dice.roll(100) {
                0..=44 => {
                    let name = format!("{}n{n}.example", "y".repeat(n % 7));
                    cache.insert(&answer(&name, step, t0).1);
                    model.retain(|&(m, _)| m != n);
                    if capacity > 0 {
                        model.truncate(capacity - 1);
                        model.insert(0, (n, step));
                    }
                }
                45..=84 => {
                    let hit = match cache.lookup(&names[n], t0) {
                        Lookup::Fresh(e) => Some(e.life()),
                        Lookup::Stale(_) => panic!("nothing is stale"),
                        Lookup::Miss => None,
                    };
                    let at = model.iter().position(|&(m, _)| m == n);
                    assert_eq!(hit, at.map(|i| model[i].1));
                    if let Some(i) = at {
                        let m = model.remove(i);
                        model.insert(0, m);
                    }
                }
                85..=98 => {
                    cache.remove(&names[n]);
                    model.retain(|&(m, _)| m != n);
                }
                _ => {
                    capacity = dice.roll(16);
                    cache.reconfigure(capacity, false, Duration::ZERO);
                    model.truncate(capacity);
                }
            }
            let lives: Vec<u32> = model.iter().map(|&(_, l)| l).collect();
            assert_eq!(lives_in_order(&cache), lives, "step {step}");
            assert_eq!(cache.len(), model.len());
            for &(m, life) in &model {
                assert_eq!(fresh_life(&cache, &names[m], t0), Some(life));
            }
        }
    }

    /// Bytes per entry at `cache_size` 4096 with 60-byte answers, filled
    /// then churned through three times (run with `--nocapture` to see).
    #[test]
    fn bytes_per_entry_at_4096_entries() {
        let t0 = Instant::now();
        let mut cache = Cache::new(4096, false, Duration::ZERO);
        let mut peak = 0;
        for i in 0..4 * 4096 {
            let q = query(&wire_name(&format!("{i:04x}.exampl.com")), 1);
            let info = parse_query(&q).unwrap();
            let key = Key::new(&q, &info, None);
            let mut p = q;
            p[2] = 0x81;
            p[3] = 0x80;
            p[7] = 1;
            p[11] = 1;
            p.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 100, 0, 4, 192, 0, 2, 1]);
            let ttl_at = (p.len() - 10) as u16;
            p.extend_from_slice(&[0, 0, 41, 4, 208, 0, 0, 0, 0, 0, 0]);
            assert_eq!(p.len(), 60);
            cache.insert(&Entry::new(key.as_bytes(), &p, &[ttl_at], t0, 100, true));
            peak = peak.max(cache.store.heap_bytes());
        }
        assert_eq!(cache.len(), 4096);
        let s = &cache.store;
        println!(
            "4096 entries of 60-byte answers: records of {} B; arena {} B allocated \
             ({} live), slots {} B, table {} B; {} B per entry now, {} B at the peak",
            s.live_bytes() / 4096,
            s.arena.capacity(),
            s.live_bytes(),
            s.slots.capacity() * std::mem::size_of::<Slot>(),
            s.table.capacity() * 4,
            s.heap_bytes() / 4096,
            peak / 4096,
        );
        assert!(peak / 4096 < 200);
    }
}
