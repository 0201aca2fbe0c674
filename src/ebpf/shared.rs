//! The types the TC program and the daemon share: the Rust side of
//! `ebpf/dae_shared.h`. `tests/ebpf_abi.rs` compiles the C header and checks
//! every size, offset and value against these definitions.

/// The program's name (its function in `dae_tc.c`); also the name of its TC
/// filter, so `tc filter show` and `bpftool` say what it is.
pub const PROGRAM_NAME: &str = "dae_lan_ingress";
/// The one-entry array map holding `Settings`.
pub const SETTINGS_MAP: &str = "dae_settings";
/// The per-CPU array map of `u64` counters, indexed by `Counter`.
pub const COUNTERS_MAP: &str = "dae_counters";
/// The two-entry array map of `Routing` (one per routing slot).
pub const ROUTING_MAP: &str = "dae_routing";
/// The LPM trie of `struct dae_lpm_key` (`LpmData` after its length) to
/// `Bits`.
pub const LPM_MAP: &str = "dae_route_lpm";
/// The hash of `MacKey` to `Bits`.
pub const MAC_MAP: &str = "dae_route_mac";
/// The LRU hash of `DomainKey` to `Domain`: addresses learned from DNS.
pub const DOMAINS_MAP: &str = "dae_domains";
/// The LRU hash of `FlowKey` to `FlowVerdict`.
pub const FLOWS_MAP: &str = "dae_flows";

/// `struct dae_settings`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Settings {
    /// The transparent listener's port (host byte order).
    pub listener_port: u32,
    /// Mark put on handed-over packets (policy routing delivers them here).
    pub tproxy_mark: u32,
    /// Mark of the daemon's own sockets: never taken.
    pub so_mark: u32,
    /// 1: drop port-53 packets and proxied flows while no listener is
    /// there.
    pub fail_closed: u32,
    /// Which entry of `ROUTING_MAP` is in force (0 or 1).
    pub routing_slot: u32,
}

// SAFETY: plain integers, no padding, any bit pattern is valid.
unsafe impl aya::Pod for Settings {}

/// `enum dae_counter`.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    Seen = 0,
    Handed = 1,
    Passed = 2,
    Dropped = 3,
    AssignFailed = 4,
    FlowDirect = 5,
    FlowProxy = 6,
    FlowBlock = 7,
    FlowBypass = 8,
    FlowNoRelay = 9,
    FlowSniff = 10,
}

/// `DAE_CTR_MAX`.
pub const COUNTER_MAX: u32 = 11;

impl Counter {
    pub const ALL: [Counter; COUNTER_MAX as usize] = [
        Counter::Seen,
        Counter::Handed,
        Counter::Passed,
        Counter::Dropped,
        Counter::AssignFailed,
        Counter::FlowDirect,
        Counter::FlowProxy,
        Counter::FlowBlock,
        Counter::FlowBypass,
        Counter::FlowNoRelay,
        Counter::FlowSniff,
    ];

    /// The name `dae status` prints.
    pub fn name(self) -> &'static str {
        match self {
            Counter::Seen => "seen",
            Counter::Handed => "handed",
            Counter::Passed => "passed",
            Counter::Dropped => "dropped",
            Counter::AssignFailed => "assign_failed",
            Counter::FlowDirect => "flows_direct",
            Counter::FlowProxy => "flows_proxied",
            Counter::FlowBlock => "flows_blocked",
            Counter::FlowBypass => "flows_bypassed",
            Counter::FlowNoRelay => "flows_no_relay",
            Counter::FlowSniff => "flows_sniffed",
        }
    }
}

/// `DAE_COND_WORDS`: the condition bitmap's 64-bit words.
pub const COND_WORDS: usize = 2;
/// `DAE_MAX_CONDITIONS`.
pub const MAX_CONDITIONS: usize = 64 * COND_WORDS;
/// `DAE_MAX_RULES`.
pub const MAX_RULES: usize = 128;
/// `DAE_DSCP_VALUES`.
pub const DSCP_VALUES: usize = 64;
/// `DAE_TARGET_DIRECT`, `_BLOCK`, `_GROUP` (groups from there up, by
/// index).
pub const TARGET_DIRECT: u32 = 0;
pub const TARGET_BLOCK: u32 = 1;
pub const TARGET_GROUP: u32 = 2;
/// `DAE_LPM_ENTRIES`, `DAE_MAC_ENTRIES`, `DAE_DOMAIN_ENTRIES`,
/// `DAE_FLOW_ENTRIES`.
pub const LPM_ENTRIES: u32 = 65536;
pub const MAC_ENTRIES: u32 = 1024;
pub const DOMAIN_ENTRIES: u32 = 8192;
pub const FLOW_ENTRIES: u32 = 16384;

/// `struct dae_bits`: one bit per condition.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Bits {
    pub w: [u64; COND_WORDS],
}

/// `struct dae_rule`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rule {
    pub need: Bits,
    pub deny: Bits,
    pub target: u32,
    pub reserved: u32,
}

/// `struct dae_routing`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Routing {
    pub n_rules: u32,
    pub fallback: u32,
    pub enabled: u32,
    pub domain_gen: u32,
    /// Indexed by `udp << 1 | ipv6`.
    pub proto: [Bits; 4],
    pub dscp: [Bits; DSCP_VALUES],
    pub domain_mask: Bits,
    pub rules: [Rule; MAX_RULES],
}

impl Default for Routing {
    fn default() -> Self {
        Routing {
            n_rules: 0,
            fallback: TARGET_DIRECT,
            enabled: 0,
            domain_gen: 0,
            proto: [Bits::default(); 4],
            dscp: [Bits::default(); DSCP_VALUES],
            domain_mask: Bits::default(),
            rules: [Rule::default(); MAX_RULES],
        }
    }
}

/// `enum dae_lpm_kind`.
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LpmKind {
    Bypass4 = 1,
    Bypass6 = 2,
    Dip4 = 3,
    Dip6 = 4,
    Sip4 = 5,
    Sip6 = 6,
    Dport = 7,
    Sport = 8,
}

/// `struct dae_lpm_key` after its `prefixlen` (which aya's
/// `lpm_trie::Key` carries; it counts the 8 bits of `kind` first).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct LpmData {
    /// An `LpmKind`, plus 16 times the routing slot.
    pub kind: u8,
    pub addr: [u8; 16],
    pub reserved: [u8; 3],
}

/// `struct dae_mac_key`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct MacKey {
    pub mac: [u8; 6],
    pub slot: u8,
    pub reserved: u8,
}

/// `struct dae_domain_key`: IPv4 as IPv4-mapped IPv6.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct DomainKey {
    pub addr: [u8; 16],
}

/// `struct dae_domain`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Domain {
    pub bits: Bits,
    /// CLOCK_MONOTONIC nanoseconds.
    pub expires: u64,
    pub gen: u32,
    pub reserved: u32,
}

/// `struct dae_flow_key`: IPv4 addresses in the first 4 bytes, ports in
/// network byte order.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub ipv6: u8,
    pub reserved: [u8; 2],
}

/// `struct dae_flow`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowVerdict {
    pub held: Bits,
    pub target: u32,
    pub slot: u32,
    /// 1: handed over to sniff its domain.
    pub sniff: u32,
    pub reserved: u32,
}

// SAFETY (all below): plain integers and byte arrays with no padding (the
// ABI test checks each size against the sum of its fields); any bit
// pattern is valid.
unsafe impl aya::Pod for Bits {}
unsafe impl aya::Pod for Rule {}
unsafe impl aya::Pod for Routing {}
unsafe impl aya::Pod for LpmData {}
unsafe impl aya::Pod for MacKey {}
unsafe impl aya::Pod for DomainKey {}
unsafe impl aya::Pod for Domain {}
unsafe impl aya::Pod for FlowKey {}
unsafe impl aya::Pod for FlowVerdict {}
