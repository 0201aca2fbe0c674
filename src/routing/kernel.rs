//! The routing rules compiled for the TC program: a condition bitmap, the
//! rules as `need`/`deny` masks over it, and the map entries that set its
//! bits (see `ebpf/dae_shared.h` for the program's side).
//!
//! Every distinct condition of the rules gets one bit (`DAE_MAX_CONDITIONS`
//! of them, `DAE_MAX_RULES` rules). For a new flow the program ORs together
//! the bits its facts select: an LPM lookup per address and port (each
//! prefix stored with the bits of every condition whose networks or port
//! ranges contain it, so the longest match says everything), a hash lookup
//! for the source MAC and for the destination's DNS-learned domain, and
//! table rows for the L4 protocol, IP version and DSCP. A rule holds when
//! all its `need` bits are set and none of its `deny` bits (negated
//! conditions) are. `pname(...)` never holds for LAN traffic: it gets a bit
//! that nothing sets.
//!
//! The same compiled form answers two questions in user space: which
//! `domain(...)` bits a name sets (for the map of addresses learned from
//! DNS answers), and the verdict again once the relay has sniffed a domain.
//!
//! Neighbours: `routing` (the rules' meaning, and the evaluator this must
//! agree with), `ebpf` (writes the maps), `controller` (learns addresses).

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::Duration;

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Array, MapData};

use super::domain::DomainSet;
use crate::config::{IpNet, Outbound, Routing, RoutingMatcher};
use crate::ebpf::shared::{
    self, Bits, Domain, DomainKey, LpmData, LpmKind, MacKey, Routing as Table, Rule, DSCP_VALUES,
    MAX_CONDITIONS, MAX_RULES, TARGET_BLOCK, TARGET_DIRECT, TARGET_GROUP,
};
use crate::ebpf::Datapath;

/// One LPM entry: kind, address (ports: big-endian in the first two
/// bytes), prefix length in bits of the address, and the bits it sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LpmEntry {
    pub kind: LpmKind,
    pub addr: [u8; 16],
    pub prefix: u8,
    pub bits: Bits,
}

/// The rules in the program's form.
pub struct Compiled {
    /// The table for `dae_routing` (`domain_gen` is the datapath's).
    pub table: Table,
    pub lpm: Vec<LpmEntry>,
    pub macs: Vec<([u8; 6], Bits)>,
    /// Each `domain(...)` condition's bit and set.
    domains: Vec<(usize, DomainSet)>,
    /// All the bits of `domain(...)` conditions.
    domain_mask: Bits,
    /// What the domain bits mean: equal signatures, same meaning (the
    /// learned addresses can stay across a reload).
    pub domain_signature: String,
}

/// LPM entries one slot may take: the map holds both slots (the one in
/// force and the next) and the bypass prefixes.
pub const LPM_PER_SLOT: usize = shared::LPM_ENTRIES as usize / 2 - 1024;

/// Why rules do not fit the program.
pub fn limits(routing: &Routing) -> Result<(), String> {
    if routing.rules.len() > MAX_RULES {
        return Err(format!(
            "{} rules: the kernel's routing takes at most {MAX_RULES}",
            routing.rules.len()
        ));
    }
    let n = Conditions::of(routing).count;
    if n > MAX_CONDITIONS {
        return Err(format!(
            "{n} distinct conditions: the kernel's routing takes at most {MAX_CONDITIONS}"
        ));
    }
    let lpm = Compiled::new(routing, &[]).lpm.len();
    if lpm > LPM_PER_SLOT {
        return Err(format!(
            "the address and port conditions (geoip categories included) make {lpm} prefixes: \
             the kernel's routing takes at most {LPM_PER_SLOT}"
        ));
    }
    Ok(())
}

/// The bit of each distinct condition, in rule order.
struct Conditions {
    bits: HashMap<String, usize>,
    count: usize,
}

impl Conditions {
    fn of(routing: &Routing) -> Conditions {
        let mut c = Conditions {
            bits: HashMap::new(),
            count: 0,
        };
        for r in &routing.rules {
            for (_, m) in &r.conditions {
                let key = format!("{m:?}");
                if !c.bits.contains_key(&key) {
                    c.bits.insert(key, c.count);
                    c.count += 1;
                }
            }
        }
        c
    }

    fn bit(&self, m: &RoutingMatcher) -> usize {
        self.bits[&format!("{m:?}")]
    }
}

fn set(bits: &mut Bits, bit: usize) {
    bits.w[bit / 64] |= 1 << (bit % 64);
}

fn or(a: Bits, b: Bits) -> Bits {
    Bits {
        w: [a.w[0] | b.w[0], a.w[1] | b.w[1]],
    }
}

fn and_not(a: Bits, b: Bits) -> Bits {
    Bits {
        w: [a.w[0] & !b.w[0], a.w[1] & !b.w[1]],
    }
}

/// The program's rule test: every `need` bit held, no `deny` bit.
fn holds(rule: &Rule, held: Bits) -> bool {
    (0..2).all(|i| held.w[i] & rule.need.w[i] == rule.need.w[i] && held.w[i] & rule.deny.w[i] == 0)
}

fn target(o: &Outbound, groups: &[String]) -> u32 {
    match o {
        Outbound::Direct => TARGET_DIRECT,
        Outbound::Block => TARGET_BLOCK,
        Outbound::Group(name) => {
            TARGET_GROUP + groups.iter().position(|g| g == name).unwrap_or_default() as u32
        }
    }
}

/// The address bytes of the key (IPv4 in the first 4) and its width.
fn addr_bytes(ip: IpAddr) -> ([u8; 16], u8) {
    let mut a = [0u8; 16];
    match ip {
        IpAddr::V4(v4) => {
            a[..4].copy_from_slice(&v4.octets());
            (a, 32)
        }
        IpAddr::V6(v6) => (v6.octets(), 128),
    }
}

/// `addr` with the bits past `prefix` cleared.
fn masked(mut addr: [u8; 16], prefix: u8) -> [u8; 16] {
    for (i, b) in addr.iter_mut().enumerate() {
        let from = (i * 8) as u32;
        let keep = u32::from(prefix).saturating_sub(from).min(8);
        *b &= (0xff00u16 >> keep) as u8;
    }
    addr
}

fn contains(outer: &LpmEntry, inner: &LpmEntry) -> bool {
    outer.kind == inner.kind
        && outer.prefix <= inner.prefix
        && masked(inner.addr, outer.prefix) == outer.addr
}

/// The prefixes that cover the port range `lo..=hi` exactly.
fn port_prefixes(lo: u16, hi: u16) -> Vec<(u16, u8)> {
    let mut out = Vec::new();
    let (mut lo, hi) = (u32::from(lo), u32::from(hi));
    while lo <= hi {
        // The largest aligned block starting at lo that stays within hi.
        let mut size = if lo == 0 {
            1 << 16
        } else {
            1 << lo.trailing_zeros()
        };
        while lo + size - 1 > hi {
            size >>= 1;
        }
        out.push((lo as u16, 16 - size.trailing_zeros() as u8));
        lo += size;
    }
    out
}

/// Merges entries of equal prefix, then gives each the bits of every
/// entry that contains it: sorted by kind, address, then length, the
/// entries that contain one are the chain of its predecessors still open.
fn close_over_prefixes(mut entries: Vec<LpmEntry>) -> Vec<LpmEntry> {
    for e in &mut entries {
        e.addr = masked(e.addr, e.prefix);
    }
    entries.sort_by_key(|e| (e.kind, e.addr, e.prefix));
    let mut merged: Vec<LpmEntry> = Vec::with_capacity(entries.len());
    for e in entries {
        match merged.last_mut() {
            Some(last) if (last.kind, last.addr, last.prefix) == (e.kind, e.addr, e.prefix) => {
                last.bits = or(last.bits, e.bits)
            }
            _ => merged.push(e),
        }
    }
    let mut open: Vec<LpmEntry> = Vec::new();
    for e in &mut merged {
        while open.last().is_some_and(|o| !contains(o, e)) {
            open.pop();
        }
        if let Some(o) = open.last() {
            e.bits = or(e.bits, o.bits);
        }
        open.push(*e);
    }
    merged
}

impl Compiled {
    /// Compiles `routing`; `groups` are the config's group names in order.
    /// The caller checked `limits` (the config does).
    pub fn new(routing: &Routing, groups: &[String]) -> Compiled {
        let conds = Conditions::of(routing);
        let mut table = Table::default();
        let mut lpm = Vec::new();
        let mut macs: HashMap<[u8; 6], Bits> = HashMap::new();
        let mut domains = Vec::new();
        let mut domain_mask = Bits::default();
        let mut signature = String::new();
        for r in &routing.rules {
            for (_, m) in &r.conditions {
                let bit = conds.bit(m);
                let mut b = Bits::default();
                set(&mut b, bit);
                match m {
                    RoutingMatcher::Dip(list) | RoutingMatcher::Sip(list) => {
                        let dst = matches!(m, RoutingMatcher::Dip(_));
                        // A geoip category as its fewest prefixes.
                        let from_sets = list.sets.iter().flat_map(|s| s.set.ranges.to_nets());
                        for n in list.nets.iter().copied().chain(from_sets) {
                            let (addr, width) = addr_bytes(n.addr);
                            let kind = match (dst, width == 128) {
                                (true, false) => LpmKind::Dip4,
                                (true, true) => LpmKind::Dip6,
                                (false, false) => LpmKind::Sip4,
                                (false, true) => LpmKind::Sip6,
                            };
                            lpm.push(LpmEntry {
                                kind,
                                addr,
                                prefix: n.prefix.min(width),
                                bits: b,
                            });
                        }
                    }
                    RoutingMatcher::Dport(ranges) | RoutingMatcher::Sport(ranges) => {
                        let kind = if matches!(m, RoutingMatcher::Dport(_)) {
                            LpmKind::Dport
                        } else {
                            LpmKind::Sport
                        };
                        for &(lo, hi) in ranges {
                            for (port, prefix) in port_prefixes(lo, hi) {
                                let mut addr = [0u8; 16];
                                addr[..2].copy_from_slice(&port.to_be_bytes());
                                lpm.push(LpmEntry {
                                    kind,
                                    addr,
                                    prefix,
                                    bits: b,
                                });
                            }
                        }
                    }
                    RoutingMatcher::L4proto(udp) => {
                        for (i, row) in table.proto.iter_mut().enumerate() {
                            if udp.contains(&(i & 2 != 0)) {
                                *row = or(*row, b);
                            }
                        }
                    }
                    RoutingMatcher::IpVersion(v6) => {
                        for (i, row) in table.proto.iter_mut().enumerate() {
                            if v6.contains(&(i & 1 != 0)) {
                                *row = or(*row, b);
                            }
                        }
                    }
                    RoutingMatcher::Dscp(values) => {
                        for &v in values {
                            if usize::from(v) < DSCP_VALUES {
                                let row = &mut table.dscp[usize::from(v)];
                                *row = or(*row, b);
                            }
                        }
                    }
                    RoutingMatcher::Mac(list) => {
                        for mac in list {
                            let e = macs.entry(*mac).or_default();
                            *e = or(*e, b);
                        }
                    }
                    RoutingMatcher::Domain(patterns) => {
                        if !domains.iter().any(|(d, _)| *d == bit) {
                            domains.push((bit, DomainSet::new(patterns)));
                            domain_mask = or(domain_mask, b);
                            signature.push_str(&format!("{bit}:{patterns:?};"));
                        }
                    }
                    // Never holds for LAN traffic: a bit nothing sets.
                    RoutingMatcher::Pname(_) => {}
                }
            }
        }
        for (i, r) in routing.rules.iter().take(MAX_RULES).enumerate() {
            let rule = &mut table.rules[i];
            for (negated, m) in &r.conditions {
                let bits = if *negated {
                    &mut rule.deny
                } else {
                    &mut rule.need
                };
                set(bits, conds.bit(m));
            }
            rule.target = target(&r.outbound, groups);
        }
        table.n_rules = routing.rules.len().min(MAX_RULES) as u32;
        table.domain_mask = domain_mask;
        table.fallback = target(&routing.fallback, groups);
        table.enabled = u32::from(
            table.fallback != TARGET_DIRECT
                || routing.rules.iter().any(|r| r.outbound != Outbound::Direct),
        );
        let mut macs: Vec<([u8; 6], Bits)> = macs.into_iter().collect();
        macs.sort_by_key(|(mac, _)| *mac);
        Compiled {
            table,
            lpm: close_over_prefixes(lpm),
            macs,
            domains,
            domain_mask,
            domain_signature: signature,
        }
    }

    /// Whether any rule looks at `domain(...)`.
    pub fn has_domains(&self) -> bool {
        !self.domains.is_empty()
    }

    /// The bits of the `domain(...)` conditions `name` (lowercase, no
    /// final dot) matches.
    pub fn domain_bits(&self, name: &str) -> Bits {
        let mut b = Bits::default();
        for (bit, set_) in &self.domains {
            if set_.matches(name) {
                set(&mut b, *bit);
            }
        }
        b
    }

    /// The program's verdict (a `TARGET_*` value) for a flow whose
    /// conditions `held`, as the program decides it.
    pub fn decide(&self, held: Bits) -> u32 {
        let t = &self.table;
        t.rules[..t.n_rules as usize]
            .iter()
            .find(|r| holds(r, held))
            .map_or(t.fallback, |r| r.target)
    }

    /// Whether another domain could give a flow whose conditions `held`
    /// another verdict: a rule up to the one that decides looks at
    /// `domain(...)` and its other conditions hold (the program's
    /// `domain_could_decide`).
    pub fn domain_could_change(&self, held: Bits) -> bool {
        let t = &self.table;
        let m = self.domain_mask;
        let could = |r: &Rule| {
            let looks = (0..2).any(|i| (r.need.w[i] | r.deny.w[i]) & m.w[i] != 0);
            let rest = Rule {
                need: and_not(r.need, m),
                deny: and_not(r.deny, m),
                ..*r
            };
            looks && holds(&rest, held)
        };
        for r in &t.rules[..t.n_rules as usize] {
            if could(r) {
                return true;
            }
            if holds(r, held) {
                return false;
            }
        }
        false
    }

    /// The verdict again with `domain` in place of what the program knew
    /// of the destination's domain (the relay's sniffed name).
    pub fn decide_with_domain(&self, held: Bits, domain: &str) -> u32 {
        self.decide(or(
            and_not(held, self.domain_mask),
            self.domain_bits(domain),
        ))
    }
}

/// Destinations never routed besides the router's own addresses and the
/// LAN subnets: loopback, link-local, multicast, broadcast, "this
/// network".
const ALWAYS_BYPASSED: &[(&str, u8)] = &[
    ("0.0.0.0", 8),
    ("127.0.0.0", 8),
    ("169.254.0.0", 16),
    ("224.0.0.0", 4),
    ("255.255.255.255", 32),
    ("::1", 128),
    ("fe80::", 10),
    ("ff00::", 8),
];

/// The prefixes the program never routes: `ALWAYS_BYPASSED`, every
/// address of the router, and the subnets of the LAN interfaces.
pub fn bypass_prefixes(lan_interfaces: &[String]) -> Vec<IpNet> {
    let mut out: Vec<IpNet> = ALWAYS_BYPASSED
        .iter()
        .filter_map(|(a, p)| {
            Some(IpNet {
                addr: a.parse().ok()?,
                prefix: *p,
            })
        })
        .collect();
    let Ok(addrs) = crate::netif::addresses() else {
        return out;
    };
    for a in addrs {
        let width = if a.addr.is_ipv4() { 32 } else { 128 };
        out.push(IpNet {
            addr: a.addr,
            prefix: width,
        });
        if lan_interfaces.contains(&a.interface) {
            out.push(IpNet {
                addr: a.addr,
                prefix: a.prefix.unwrap_or(width),
            });
        }
    }
    out
}

/// The routing installed in the program: what each slot holds, so the
/// next install can clear the slot it fills.
pub struct KernelRouting {
    /// The LPM keys and MAC keys written into each slot.
    lpm_keys: [Vec<Key<LpmData>>; 2],
    mac_keys: [Vec<MacKey>; 2],
    domain_gen: u32,
    /// The compiled rules in force.
    compiled: Option<Rc<Compiled>>,
}

fn lpm_key(kind: u8, slot: u32, addr: [u8; 16], prefix: u8) -> Key<LpmData> {
    Key::new(
        8 + u32::from(prefix),
        LpmData {
            kind: kind | (slot as u8) << 4,
            addr,
            reserved: [0; 3],
        },
    )
}

impl KernelRouting {
    pub fn new() -> KernelRouting {
        KernelRouting {
            lpm_keys: [Vec::new(), Vec::new()],
            mac_keys: [Vec::new(), Vec::new()],
            domain_gen: 0,
            compiled: None,
        }
    }

    /// The compiled rules in force.
    pub fn compiled(&self) -> Option<&Rc<Compiled>> {
        self.compiled.as_ref()
    }

    /// The generation of learned domains the program counts.
    pub fn domain_gen(&self) -> u32 {
        self.domain_gen
    }

    /// Writes `compiled` and `bypass` into the slot not in force, then puts
    /// it in force. On error the slot in force stays as it was.
    pub fn install(
        &mut self,
        dp: &mut Datapath,
        compiled: Compiled,
        bypass: &[IpNet],
    ) -> Result<(), String> {
        let next = 1 - (dp.routing_slot() & 1);
        let slot = next as usize;
        let failed = |what: &str, e: &dyn std::fmt::Display| format!("kernel routing: {what}: {e}");
        {
            let mut trie: LpmTrie<&mut MapData, LpmData, Bits> =
                LpmTrie::try_from(dp.map_mut(shared::LPM_MAP)?)
                    .map_err(|e| failed("LPM map", &e))?;
            for k in self.lpm_keys[slot].drain(..) {
                let _ = trie.remove(&k);
            }
            let mut write = |k: Key<LpmData>, bits: Bits| {
                trie.insert(&k, bits, 0)
                    .map_err(|e| failed("LPM map (full?)", &e))?;
                self.lpm_keys[slot].push(k);
                Ok::<(), String>(())
            };
            for e in &compiled.lpm {
                write(lpm_key(e.kind as u8, next, e.addr, e.prefix), e.bits)?;
            }
            for n in bypass {
                let (addr, width) = addr_bytes(n.addr);
                let kind = if width == 32 {
                    LpmKind::Bypass4
                } else {
                    LpmKind::Bypass6
                };
                let prefix = n.prefix.min(width);
                write(
                    lpm_key(kind as u8, next, masked(addr, prefix), prefix),
                    Bits::default(),
                )?;
            }
        }
        {
            let mut macs: aya::maps::HashMap<&mut MapData, MacKey, Bits> =
                aya::maps::HashMap::try_from(dp.map_mut(shared::MAC_MAP)?)
                    .map_err(|e| failed("MAC map", &e))?;
            for k in self.mac_keys[slot].drain(..) {
                let _ = macs.remove(&k);
            }
            for (mac, bits) in &compiled.macs {
                let k = MacKey {
                    mac: *mac,
                    slot: next as u8,
                    reserved: 0,
                };
                macs.insert(k, bits, 0)
                    .map_err(|e| failed("MAC map (full?)", &e))?;
                self.mac_keys[slot].push(k);
            }
        }
        let same_domains = self
            .compiled
            .as_ref()
            .is_some_and(|c| c.domain_signature == compiled.domain_signature);
        let gen = if same_domains {
            self.domain_gen
        } else {
            self.domain_gen.wrapping_add(1)
        };
        let mut table = compiled.table;
        table.domain_gen = gen;
        {
            let mut array: Array<&mut MapData, Table> =
                Array::try_from(dp.map_mut(shared::ROUTING_MAP)?)
                    .map_err(|e| failed("routing map", &e))?;
            array
                .set(next, table, 0)
                .map_err(|e| failed("routing map", &e))?;
        }
        dp.set_routing_slot(next)?;
        self.domain_gen = gen;
        self.compiled = Some(Rc::new(compiled));
        Ok(())
    }
}

impl Default for KernelRouting {
    fn default() -> Self {
        KernelRouting::new()
    }
}

thread_local! {
    /// The learner of the running daemon, if the TC program routes by
    /// domain: the controller reaches it through `learn` without holding
    /// a handle of the datapath (one thread, one daemon).
    static LEARNER: RefCell<Option<Learner>> = const { RefCell::new(None) };
}

/// Installs (or, with `None`, removes) the daemon's learner.
pub fn set_learner(learner: Option<Learner>) {
    LEARNER.with(|l| *l.borrow_mut() = learner);
}

/// Makes the learner follow a new install of the rules.
pub fn learner_follow(routing: &KernelRouting) {
    LEARNER.with(|l| {
        if let Some(l) = l.borrow_mut().as_mut() {
            l.follow(routing);
        }
    });
}

/// Whether answers should be learned (the controller then needs each
/// answered name as text).
pub fn learning() -> bool {
    LEARNER.with(|l| l.borrow().as_ref().is_some_and(Learner::wanted))
}

/// What the learned-address map holds now (for `dae status`): the entries,
/// and those still within their life. Walks the map: for status only.
pub fn learned() -> Option<(usize, usize)> {
    LEARNER.with(|l| {
        let l = l.borrow();
        let l = l.as_ref()?;
        let now = monotonic_ns();
        let (mut all, mut live) = (0, 0);
        for (_, v) in l.map.iter().flatten() {
            all += 1;
            if v.expires > now && v.gen == l.gen {
                live += 1;
            }
        }
        Some((all, live))
    })
}

/// An answer to a client: see `Learner::learn`. Nothing when not learning.
pub fn learn(name: &str, ips: &[IpAddr], ttl: u32) {
    LEARNER.with(|l| {
        if let Some(l) = l.borrow_mut().as_mut() {
            l.learn(name, ips, ttl);
        }
    });
}

/// How long an address learned from an answer routes by its name at
/// least: apps and stub resolvers keep answers past short TTLs (browsers
/// a minute), and a flow to the address then must still be routed by the
/// name.
pub const MIN_LEARNED_LIFE: Duration = Duration::from_secs(60);

/// The map of addresses learned from DNS answers, as the controller
/// writes it: address -> the `domain(...)` bits of the queried name.
pub struct Learner {
    map: aya::maps::HashMap<MapData, DomainKey, Domain>,
    /// The rules in force (none before the first install).
    compiled: Option<Rc<Compiled>>,
    gen: u32,
}

/// CLOCK_MONOTONIC now, in ns (the program's `bpf_ktime_get_ns`).
fn monotonic_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// The map's key of `ip`: IPv4 as IPv4-mapped IPv6.
pub fn domain_key(ip: IpAddr) -> DomainKey {
    let v6 = match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    };
    DomainKey { addr: v6.octets() }
}

impl Learner {
    /// `map` is the program's `dae_domains`, taken out of the datapath.
    /// It learns nothing until it `follow`s an install.
    pub fn new(map: aya::maps::Map) -> Result<Learner, String> {
        let map = aya::maps::HashMap::try_from(map)
            .map_err(|e| format!("map '{}': {e}", shared::DOMAINS_MAP))?;
        Ok(Learner {
            map,
            compiled: None,
            gen: 0,
        })
    }

    /// Follows an install of the rules.
    pub fn follow(&mut self, routing: &KernelRouting) {
        self.compiled = routing.compiled().cloned();
        self.gen = routing.domain_gen();
    }

    /// Whether learning is of any use: some rule looks at domains.
    pub fn wanted(&self) -> bool {
        self.compiled.as_ref().is_some_and(|c| c.has_domains())
    }

    /// An answer to a LAN client: `name`'s addresses `ips`, for `ttl`
    /// seconds (at least `MIN_LEARNED_LIFE`).
    pub fn learn(&mut self, name: &str, ips: &[IpAddr], ttl: u32) {
        let Some(compiled) = self.compiled.as_ref().filter(|c| c.has_domains()) else {
            return;
        };
        if ips.is_empty() {
            return;
        }
        // Written also when it matches no domain(): the program then
        // knows the destination's name says nothing, and needs no sniffing.
        let bits = compiled.domain_bits(name);
        let life = Duration::from_secs(u64::from(ttl)).max(MIN_LEARNED_LIFE);
        let value = Domain {
            bits,
            expires: monotonic_ns() + life.as_nanos() as u64,
            gen: self.gen,
            reserved: 0,
        };
        for ip in ips {
            if let Err(e) = self.map.insert(domain_key(*ip), value, 0) {
                log::debug!("learning {ip} for {name}: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_ranges_become_exact_prefixes() {
        for (lo, hi) in [
            (0, 65535),
            (53, 53),
            (1, 1023),
            (1000, 2000),
            (65535, 65535),
            (0, 0),
        ] {
            let p = port_prefixes(lo, hi);
            let covered = |port: u16| {
                p.iter()
                    .any(|&(a, len)| len == 0 || (port >> (16 - len)) == (a >> (16 - len)))
            };
            for port in 0..=65535u16 {
                assert_eq!(
                    covered(port),
                    (lo..=hi).contains(&port),
                    "{lo}-{hi}: {port}"
                );
            }
        }
        assert_eq!(port_prefixes(0, 65535), vec![(0, 0)]);
        assert_eq!(port_prefixes(53, 53), vec![(53, 16)]);
    }

    #[test]
    fn a_prefix_carries_the_bits_of_every_prefix_containing_it() {
        let e = |addr: [u8; 4], prefix, bit: usize| {
            let mut a = [0u8; 16];
            a[..4].copy_from_slice(&addr);
            let mut bits = Bits::default();
            set(&mut bits, bit);
            LpmEntry {
                kind: LpmKind::Dip4,
                addr: a,
                prefix,
                bits,
            }
        };
        let out = close_over_prefixes(vec![
            e([203, 0, 113, 7], 32, 2),
            e([192, 0, 2, 0], 24, 3),
            e([203, 0, 113, 0], 24, 1),
            e([0, 0, 0, 0], 0, 0),
            e([203, 0, 113, 0], 24, 4),
        ]);
        let bits_of = |addr: [u8; 4], prefix: u8| {
            out.iter()
                .find(|x| x.addr[..4] == addr && x.prefix == prefix)
                .map(|x| x.bits.w[0])
        };
        assert_eq!(out.len(), 4, "equal prefixes merge");
        assert_eq!(bits_of([0, 0, 0, 0], 0), Some(0b1));
        assert_eq!(bits_of([203, 0, 113, 0], 24), Some(0b10011));
        assert_eq!(bits_of([203, 0, 113, 7], 32), Some(0b10111));
        assert_eq!(bits_of([192, 0, 2, 0], 24), Some(0b1001));
    }

    #[test]
    fn masked_clears_host_bits() {
        let mut a = [0xffu8; 16];
        a = masked(a, 12);
        assert_eq!(&a[..3], &[0xff, 0xf0, 0]);
        assert_eq!(masked([0xff; 16], 128), [0xff; 16]);
        assert_eq!(masked([0xff; 16], 0), [0; 16]);
    }
}
