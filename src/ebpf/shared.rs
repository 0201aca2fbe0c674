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
    /// 1: drop port-53 packets while no listener is there.
    pub fail_closed: u32,
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
}

/// `DAE_CTR_MAX`.
pub const COUNTER_MAX: u32 = 5;

impl Counter {
    pub const ALL: [Counter; COUNTER_MAX as usize] = [
        Counter::Seen,
        Counter::Handed,
        Counter::Passed,
        Counter::Dropped,
        Counter::AssignFailed,
    ];

    /// The name `dae status` prints.
    pub fn name(self) -> &'static str {
        match self {
            Counter::Seen => "seen",
            Counter::Handed => "handed",
            Counter::Passed => "passed",
            Counter::Dropped => "dropped",
            Counter::AssignFailed => "assign_failed",
        }
    }
}
