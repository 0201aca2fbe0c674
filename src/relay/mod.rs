//! Relays: the LAN flows the TC program sent to a group, carried through
//! a node (or, once a sniffed domain says so, direct or nowhere).
//!
//! `Relay` holds what every relayed flow needs: the program's flow map
//! (its verdict and the conditions that held), the compiled rules in
//! force, the outbounds (groups, nodes, the direct dialer), and the
//! counters `dae status` shows. A flow whose verdict cannot be read back is
//! refused (the client's next SYN gets one): deciding without the kernel's
//! facts could send a proxied flow direct.
//!
//! - `tcp`: one TCP connection, from accept to close;
//! - `splice`: the two-way copy with pooled buffers;
//! - `udp`: LAN datagrams, through the bounded pool of UDP endpoints.
//!
//! Neighbours: `listener::tproxy` (accepts and hands over), `routing`
//! (verdicts), `sniff`, `dialer`, `daemon` (builds it, follows reloads),
//! `status`.

pub mod splice;
pub mod tcp;
pub mod udp;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use aya::maps::MapData;

use crate::dialer::{Outbounds, L4};
use crate::ebpf::shared::{Bits, FlowKey, FlowVerdict, TARGET_BLOCK, TARGET_DIRECT, TARGET_GROUP};
use crate::routing::kernel::{Compiled, KernelRouting};
use splice::Spliced;

/// How long the relay waits for a client's first bytes when a domain
/// could change the flow's way (dae's `sniffing_timeout`).
pub const SNIFF_WAIT: Duration = Duration::from_millis(100);

/// Connections relayed at once; past this a new one is refused (reset),
/// so a flood of connections cannot take the router's memory.
pub const MAX_CONNECTIONS: usize = 4096;

/// What the program decided for a flow.
#[derive(Debug, Clone, Copy)]
pub struct Verdict {
    pub target: u32,
    pub held: Bits,
    pub slot: u32,
    /// Handed over only because its domain was unknown and could matter.
    pub sniff: bool,
}

/// Where a relayed flow goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    Direct,
    Block,
    /// A group, by index into the outbounds' groups.
    Group(usize),
}

impl Way {
    fn of(target: u32) -> Way {
        match target {
            TARGET_DIRECT => Way::Direct,
            TARGET_BLOCK => Way::Block,
            t => Way::Group((t - TARGET_GROUP) as usize),
        }
    }
}

/// Counters of one way out (a node's name, or `direct`).
#[derive(Debug, Clone, Copy, Default)]
struct PerWay {
    active: u64,
    total: u64,
    failed: u64,
    up: u64,
    down: u64,
}

#[derive(Debug, Default)]
struct Stats {
    ways: BTreeMap<String, PerWay>,
    blocked: u64,
    no_node: u64,
    no_verdict: u64,
    idled_out: u64,
    /// Refused because `MAX_CONNECTIONS` were open.
    full: u64,
    /// Open now, from accept to close.
    open: usize,
}

/// One relayed connection counted in `Stats::open` while it lives.
struct Open<'a>(&'a Relay);

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.stats.borrow_mut().open -= 1;
    }
}

/// The relays' shared state.
pub struct Relay {
    flows: RefCell<Option<aya::maps::HashMap<MapData, FlowKey, FlowVerdict>>>,
    /// The routing slot in force and its compiled rules.
    in_force: RefCell<Option<(u32, Rc<Compiled>)>>,
    outbounds: RefCell<Rc<Outbounds>>,
    stats: RefCell<Stats>,
    /// Groups warned about having no live node (for TCP or UDP), and when.
    warned: RefCell<Vec<(String, L4, Instant)>>,
    /// The UDP endpoints and their counters.
    udp: udp::Pool,
}

/// The program's key of a TCP or UDP flow from `peer` to `dst`.
pub fn flow_key(l4: L4, peer: SocketAddr, dst: SocketAddr) -> FlowKey {
    let addr = |ip: IpAddr| {
        let mut a = [0u8; 16];
        match ip {
            IpAddr::V4(v4) => a[..4].copy_from_slice(&v4.octets()),
            IpAddr::V6(v6) => a = v6.octets(),
        }
        a
    };
    // A v4 client on a dual-stack socket shows as v4-mapped v6.
    let unmap = |s: SocketAddr| match s.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), s.port()),
            None => s,
        },
        _ => s,
    };
    let (peer, dst) = (unmap(peer), unmap(dst));
    FlowKey {
        saddr: addr(peer.ip()),
        daddr: addr(dst.ip()),
        sport: u16::from_ne_bytes(peer.port().to_be_bytes()),
        dport: u16::from_ne_bytes(dst.port().to_be_bytes()),
        proto: match l4 {
            L4::Tcp => libc::IPPROTO_TCP as u8,
            L4::Udp => libc::IPPROTO_UDP as u8,
        },
        ipv6: u8::from(dst.is_ipv6()),
        reserved: [0; 2],
    }
}

impl Relay {
    /// A relay that refuses every flow until it has the program's flow
    /// map (`set_flows`) and rules (`follow`).
    pub fn new(outbounds: Rc<Outbounds>) -> Relay {
        Relay {
            flows: RefCell::new(None),
            in_force: RefCell::new(None),
            outbounds: RefCell::new(outbounds),
            stats: RefCell::default(),
            warned: RefCell::default(),
            udp: udp::Pool::default(),
        }
    }

    /// `flows` is the program's flow map, taken out of the datapath.
    pub fn set_flows(&self, flows: aya::maps::Map) -> Result<(), String> {
        let flows = aya::maps::HashMap::try_from(flows).map_err(|e| format!("flow map: {e}"))?;
        *self.flows.borrow_mut() = Some(flows);
        Ok(())
    }

    /// Follows an install of the rules into routing slot `slot`.
    pub fn follow(&self, routing: &KernelRouting, slot: u32) {
        *self.in_force.borrow_mut() = routing.compiled().map(|c| (slot, c.clone()));
        self.udp.reloaded();
    }

    /// Follows the outbounds of a reload (the groups the rules' indexes
    /// name).
    pub fn set_outbounds(&self, outbounds: Rc<Outbounds>) {
        *self.outbounds.borrow_mut() = outbounds;
        self.udp.reloaded();
    }

    fn outbounds(&self) -> Rc<Outbounds> {
        self.outbounds.borrow().clone()
    }

    fn sniff_wait(&self) -> Duration {
        SNIFF_WAIT
    }

    /// The program's verdict on the flow, if it can be read.
    fn verdict(&self, l4: L4, peer: SocketAddr, dst: SocketAddr) -> Option<Verdict> {
        let v = self
            .flows
            .borrow()
            .as_ref()?
            .get(&flow_key(l4, peer, dst), 0)
            .ok()?;
        Some(Verdict {
            target: v.target,
            held: v.held,
            slot: v.slot,
            sniff: v.sniff != 0,
        })
    }

    /// The rules that decided `v`, if still in force.
    fn deciding_rules(&self, v: &Verdict) -> Option<Rc<Compiled>> {
        match &*self.in_force.borrow() {
            Some((slot, c)) if *slot == v.slot => Some(c.clone()),
            _ => None,
        }
    }

    fn domain_could_change(&self, v: &Option<Verdict>) -> bool {
        match v {
            Some(v) => {
                v.sniff
                    || self
                        .deciding_rules(v)
                        .is_some_and(|c| c.domain_could_change(v.held))
            }
            None => false,
        }
    }

    /// Where the flow goes, with the sniffed `domain` if any. Without a
    /// verdict: `Block` (refused).
    fn way(&self, v: &Option<Verdict>, domain: Option<&str>) -> Way {
        let Some(v) = v else {
            self.stats.borrow_mut().no_verdict += 1;
            return Way::Block;
        };
        let target = match (domain, self.deciding_rules(v)) {
            (Some(d), Some(c)) => c.decide_with_domain(v.held, d),
            _ => v.target,
        };
        Way::of(target)
    }

    /// Counts a connection in until the guard drops; None (counted as
    /// refused) when `MAX_CONNECTIONS` are open.
    fn admit(&self) -> Option<Open<'_>> {
        let mut s = self.stats.borrow_mut();
        if s.open >= MAX_CONNECTIONS {
            s.full += 1;
            return None;
        }
        s.open += 1;
        Some(Open(self))
    }

    fn count_no_node(&self) {
        self.stats.borrow_mut().no_node += 1;
    }

    fn count_blocked(&self) {
        self.stats.borrow_mut().blocked += 1;
    }

    fn count_failed(&self, via: &str) {
        let mut s = self.stats.borrow_mut();
        let w = s.ways.entry(via.to_string()).or_default();
        w.total += 1;
        w.failed += 1;
    }

    /// Warns (once a minute per group and protocol) that `group` has no
    /// live node for `l4`.
    fn warn_no_node(&self, group: &str, l4: L4) {
        let now = Instant::now();
        let mut warned = self.warned.borrow_mut();
        match warned.iter_mut().find(|(g, l, _)| g == group && *l == l4) {
            Some((_, _, at)) if now.duration_since(*at) < Duration::from_secs(60) => return,
            Some((_, _, at)) => *at = now,
            None => warned.push((group.to_string(), l4, now)),
        }
        let what = match l4 {
            L4::Tcp => "TCP flows are refused",
            L4::Udp => "UDP flows are dropped (no live node carries UDP)",
        };
        log::warn!("group '{group}' has no live node: its {what}");
    }

    fn opened(&self, via: &str) -> String {
        let mut s = self.stats.borrow_mut();
        let w = s.ways.entry(via.to_string()).or_default();
        w.active += 1;
        w.total += 1;
        via.to_string()
    }

    fn closed(&self, via: String, spliced: Spliced) {
        let mut s = self.stats.borrow_mut();
        if spliced.idle {
            s.idled_out += 1;
        }
        let w = s.ways.entry(via).or_default();
        w.active -= 1;
        w.up += spliced.up;
        w.down += spliced.down;
    }

    /// The counters, for `dae status`.
    pub fn report(&self) -> serde_json::Value {
        let s = self.stats.borrow();
        let ways: serde_json::Map<String, serde_json::Value> = s
            .ways
            .iter()
            .map(|(name, w)| {
                (
                    name.clone(),
                    serde_json::json!({
                        "active": w.active,
                        "total": w.total,
                        "failed": w.failed,
                        "bytes_up": w.up,
                        "bytes_down": w.down,
                    }),
                )
            })
            .collect();
        serde_json::json!({
            "tcp": ways,
            "blocked": s.blocked,
            "refused_no_node": s.no_node,
            "refused_no_verdict": s.no_verdict,
            "idled_out": s.idled_out,
            "open": s.open,
            "refused_full": s.full,
            "pooled_buffers": splice::pooled(),
            "udp": self.udp.report(),
        })
    }
}
