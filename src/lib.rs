//! dae: a transparent proxy and DNS controller for OpenWrt routers.
//!
//! The data path, in the order a query travels:
//! - `ebpf` and `listener`: packets in (the TC program on the LAN bridge
//!   hands DNS to the transparent listener; plain DNS sockets too);
//! - `controller`: the DNS controller (request/response `rules`, `cache`,
//!   `singleflight`), on top of `wire` (DNS bytes);
//! - `forwarder`: upstream exchanges over UDP and TCP; `dialer`: the sockets
//!   they leave by (socket mark, proxy nodes); `routing`: the rules that
//!   pick the way out;
//! - `config`: the UCI file in; `daemon`: start, signals, reload;
//!   `logging`: syslog or stderr; `status`: `dae status`; `netif`: the
//!   router's own addresses;
//! - `sniff`: the domain a LAN flow is for, from its first bytes (TLS SNI,
//!   HTTP Host, QUIC Initial).

pub mod config;
pub mod controller;
pub mod daemon;
pub mod dialer;
pub mod ebpf;
pub mod forwarder;
// Fuzzing harnesses, shared by `fuzz/` and `tests/fuzz_corpus.rs`; not API.
#[doc(hidden)]
pub mod fuzzing;
pub mod geodata;
pub mod listener;
pub mod logging;
pub mod netif;
pub mod rand;
pub mod relay;
pub mod routing;
pub mod signals;
pub mod sniff;
pub mod status;
pub mod wire;
