//! The UDP relay: the LAN datagrams the TC program sent to a group (or
//! handed over to be sniffed), carried through endpoints of a bounded pool.
//!
//! The transparent UDP listener hands every datagram whose original
//! destination port is not 53 here (`Relay::udp`), with the client's own
//! source and the address it sent to. An **endpoint** is the way out of one
//! LAN socket: a direct socket with our mark, or a node's `ConePackets`.
//! It is keyed by the client's address and port alone (full cone: one
//! path for every remote, and a reply from any remote reaches the client,
//! as games and WebRTC need) when its path allows that, else by (client,
//! destination): a node path that carries one target only, or a flow the
//! node was given a name for.
//!
//! 1. **Fast path.** A datagram from a client whose endpoint already
//!    carried this destination goes straight out: one hash lookup, no
//!    verdict, no sniffing.
//! 2. **Slow path** (a new flow, a new destination of a full-cone
//!    endpoint, or the first datagram after a reload): the program's
//!    verdict is read back from its flow map, as the TCP relay does. When
//!    a domain could change it, the datagrams are held (at most
//!    `quic::MAX_DATAGRAMS`, `HELD_BYTES`, `SNIFF_WAIT`) and fed to a
//!    `QuicSniffer`; once it finds a name, or cannot, or time is up, the way
//!    is decided (with the name if there is one) and the held datagrams go
//!    out in order. `block`: dropped. A group: its policy picks a live node
//!    that carries UDP; none: dropped and counted with a rate-limited
//!    warning, never sent direct. A node given a sniffed name dials the
//!    name (`Target::Name`), and its replies are sent to the client from
//!    the address the client sent to (the only one it accepts them from).
//! 3. **Replies** leave by the transparent reply sockets
//!    (`listener::tproxy::AnyFrom`), from the remote's own address and port.
//!
//! NAT timeouts (the seed's `ChooseNatTimeout`), counted from the last
//! datagram either way:
//! - `NAT_TIMEOUT_DNS` 17 s when the first datagram is a DNS query (DNS on
//!   a port other than 53): one answer is all that comes back, and 17 s
//!   outlasts any resolver's retries (dae's value);
//! - `NAT_TIMEOUT_QUIC` 60 s for QUIC (a sniffed Initial): browsers close
//!   an idle QUIC connection after 30 s and keep busy ones alive with
//!   pings well within 60 s; a longer-lived one that goes quiet gets a new
//!   endpoint and QUIC's connection migration carries it over;
//! - `NAT_TIMEOUT` 180 s for the rest: RFC 4787 (REQ-5) asks at least
//!   2 minutes of a NAT's UDP mappings, and 3 minutes is dae's default.
//!
//! The pool holds at most `MAX_ENDPOINTS`; past it the oldest idle
//! endpoint goes (second chance: an endpoint used since the last pass is
//! moved to the back once) and is counted as evicted.
//!
//! Neighbours: `relay` (verdicts, ways, counters), `listener::udp` (hands
//! datagrams over), `listener::tproxy` (reply sockets), `sniff::quic`,
//! `dialer` (the ways out).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::rc::{Rc, Weak};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::{Relay, Verdict, Way};
use crate::dialer::{ConePackets, Direct, Node, Target, L4};
use crate::listener::tproxy::AnyFrom;
use crate::sniff::{quic, QuicSniffer, Sniffed};

/// Endpoints at once. A LAN socket needs one however many remotes it
/// talks to (full cone), so even a busy home LAN (a BitTorrent client's
/// DHT is one socket) stays in the hundreds; 4,096 leaves room for a game
/// console's port scan of STUN servers and bounds the memory (3 KiB each
/// with a Shadowsocks path, bench/README.md; a socket each in the kernel).
pub const MAX_ENDPOINTS: usize = 4096;
/// Flows being sniffed at once; past this a flow is routed by address.
const MAX_SNIFFING: usize = 256;
/// The most a sniffing flow may hold (a ClientHello with post-quantum key
/// shares spans two full-size Initials).
const HELD_BYTES: usize = 16 * 1024;
/// Datagrams queued for a node path (while it is dialed, or when the
/// client sends faster than the node takes); past this they are dropped,
/// as a full socket buffer drops them. Four of the listener's receive
/// batches: the endpoint's task drains its queue between two batches.
const QUEUE_MAX: usize = 128;
/// Destinations a full-cone endpoint remembers as already decided.
const RECENT: usize = 4;
/// A node's path that takes longer than this to open fails.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// The port a QUIC flow is sniffed on.
const QUIC_PORT: u16 = 443;
/// The largest datagram read from a direct socket.
const DATAGRAM_MAX: usize = 65_535;

pub const NAT_TIMEOUT_DNS: Duration = Duration::from_secs(17);
pub const NAT_TIMEOUT_QUIC: Duration = Duration::from_secs(60);
pub const NAT_TIMEOUT: Duration = Duration::from_secs(180);

/// The NAT timeout of a flow by its first datagram (see the module doc).
pub fn nat_timeout(first: &[u8], quic: bool) -> Duration {
    if quic {
        NAT_TIMEOUT_QUIC
    } else if crate::wire::parse_query(first).is_ok() {
        NAT_TIMEOUT_DNS
    } else {
        NAT_TIMEOUT
    }
}

thread_local! {
    /// The one receive buffer of every direct endpoint: each reads and
    /// sends on without waiting, so none needs its own.
    static RECV_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// An endpoint's key: the client, and the destination when the endpoint
/// serves that one only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    client: SocketAddr,
    dst: Option<SocketAddr>,
}

/// The counters of one way out (a node's name, or `direct`).
#[derive(Debug, Default)]
struct WayCounters {
    live: Cell<u64>,
    total: Cell<u64>,
    failed: Cell<u64>,
    datagrams_up: Cell<u64>,
    datagrams_down: Cell<u64>,
    bytes_up: Cell<u64>,
    bytes_down: Cell<u64>,
}

fn add(c: &Cell<u64>, n: u64) {
    c.set(c.get() + n);
}

/// The pool's counters.
#[derive(Debug, Default)]
struct Counters {
    evicted: u64,
    expired: u64,
    blocked: u64,
    no_node: u64,
    sniffed: u64,
    /// Datagrams dropped: a node queue or a socket buffer was full, a send
    /// failed.
    dropped: u64,
}

/// How an endpoint's datagrams leave.
enum Out {
    Direct(Rc<UdpSocket>),
    /// A node's path, fed by the endpoint's task.
    Node {
        queue: RefCell<VecDeque<(Vec<u8>, Target)>>,
        wake: Notify,
    },
}

/// The way out of one LAN socket (or of one of its flows).
struct Endpoint {
    key: Cell<Key>,
    way: Way,
    node: Option<Rc<Node>>,
    counters: Rc<WayCounters>,
    out: Out,
    /// Every datagram goes to this target (a sniffed name), and every reply
    /// leaves from `key.dst`.
    named: Option<Target>,
    timeout: Duration,
    last_use: Cell<Instant>,
    /// Used since the eviction pass last looked (second chance).
    used: Cell<bool>,
    /// The pool's generation when the way was last decided.
    generation: Cell<u64>,
    /// Destinations already decided to leave by this endpoint.
    recent: RefCell<[Option<SocketAddr>; RECENT]>,
    task: RefCell<Option<AbortHandle>>,
}

impl Endpoint {
    fn touch(&self) {
        self.last_use.set(Instant::now());
        self.used.set(true);
    }

    fn knows(&self, dst: SocketAddr, generation: u64) -> bool {
        self.generation.get() == generation && self.recent.borrow().contains(&Some(dst))
    }

    fn learn(&self, dst: SocketAddr, generation: u64) {
        let mut recent = self.recent.borrow_mut();
        if self.generation.get() != generation {
            *recent = [None; RECENT];
            self.generation.set(generation);
        }
        if !recent.contains(&Some(dst)) {
            recent.rotate_right(1);
            recent[0] = Some(dst);
        }
    }

    /// Sends one datagram of the client's to `dst`; false if it was dropped.
    fn send(&self, datagram: &[u8], dst: SocketAddr) -> bool {
        self.touch();
        let sent = match &self.out {
            Out::Direct(sock) => match send_now(sock, datagram, dst) {
                Ok(()) => true,
                Err(e) => {
                    log::debug!("udp {} -> {dst}: {e}", self.key.get().client);
                    false
                }
            },
            Out::Node { queue, wake } => {
                let mut queue = queue.borrow_mut();
                if queue.len() >= QUEUE_MAX {
                    false
                } else {
                    let to = self.named.clone().unwrap_or(Target::Addr(dst));
                    queue.push_back((datagram.to_vec(), to));
                    wake.notify_one();
                    true
                }
            }
        };
        if sent {
            add(&self.counters.datagrams_up, 1);
            add(&self.counters.bytes_up, datagram.len() as u64);
        }
        sent
    }
}

/// A flow held while its first datagrams are sniffed.
struct Sniffing {
    sniffer: QuicSniffer,
    verdict: Option<Verdict>,
    held: Vec<Vec<u8>>,
    bytes: usize,
    timer: AbortHandle,
}

/// The endpoints, the flows being sniffed, and the counters.
pub struct Pool {
    max: usize,
    endpoints: RefCell<HashMap<Key, Rc<Endpoint>>>,
    /// Every endpoint in the order it was made, for eviction.
    order: RefCell<VecDeque<Weak<Endpoint>>>,
    sniffing: RefCell<HashMap<(SocketAddr, SocketAddr), Sniffing>>,
    /// Moves on at each reload: endpoints decided before decide again.
    generation: Cell<u64>,
    ways: RefCell<BTreeMap<String, Rc<WayCounters>>>,
    counters: RefCell<Counters>,
}

impl Default for Pool {
    fn default() -> Pool {
        Pool::with_bound(MAX_ENDPOINTS)
    }
}

impl Pool {
    /// A pool of at most `max` endpoints.
    pub fn with_bound(max: usize) -> Pool {
        Pool {
            max,
            endpoints: RefCell::default(),
            order: RefCell::default(),
            sniffing: RefCell::default(),
            generation: Cell::new(0),
            ways: RefCell::default(),
            counters: RefCell::default(),
        }
    }

    /// A reload happened: every endpoint's way is decided again at its next
    /// datagram.
    pub fn reloaded(&self) {
        self.generation.set(self.generation.get() + 1);
    }

    pub fn live(&self) -> usize {
        self.endpoints.borrow().len()
    }

    fn way_counters(&self, via: &str) -> Rc<WayCounters> {
        self.ways
            .borrow_mut()
            .entry(via.to_string())
            .or_default()
            .clone()
    }

    fn get(&self, key: Key) -> Option<Rc<Endpoint>> {
        self.endpoints.borrow().get(&key).cloned()
    }

    /// Makes room for one more endpoint: the oldest idle ones go.
    fn make_room(&self) {
        let mut order = self.order.borrow_mut();
        while self.endpoints.borrow().len() >= self.max {
            let Some(weak) = order.pop_front() else {
                return;
            };
            let Some(ep) = weak.upgrade() else { continue };
            if !self.holds(&ep) {
                continue;
            }
            if ep.used.replace(false) {
                order.push_back(weak);
                continue;
            }
            self.remove(&ep);
            self.counters.borrow_mut().evicted += 1;
            log::debug!("udp {:?}: evicted (pool full)", ep.key.get());
        }
    }

    fn holds(&self, ep: &Rc<Endpoint>) -> bool {
        self.endpoints
            .borrow()
            .get(&ep.key.get())
            .is_some_and(|e| Rc::ptr_eq(e, ep))
    }

    fn insert(&self, ep: Rc<Endpoint>) {
        self.make_room();
        let mut order = self.order.borrow_mut();
        if order.len() > 2 * self.max {
            order.retain(|w| w.strong_count() > 0);
        }
        order.push_back(Rc::downgrade(&ep));
        add(&ep.counters.live, 1);
        add(&ep.counters.total, 1);
        self.endpoints.borrow_mut().insert(ep.key.get(), ep);
    }

    /// Takes an endpoint out of the pool and stops its task.
    fn remove(&self, ep: &Rc<Endpoint>) {
        if !self.holds(ep) {
            return;
        }
        self.endpoints.borrow_mut().remove(&ep.key.get());
        ep.counters.live.set(ep.counters.live.get() - 1);
        if let Some(task) = ep.task.borrow_mut().take() {
            task.abort();
        }
    }

    /// Files a full-cone endpoint under its client alone, if that place is
    /// free.
    fn to_cone(&self, ep: &Rc<Endpoint>) {
        let key = ep.key.get();
        let cone = Key {
            client: key.client,
            dst: None,
        };
        let mut endpoints = self.endpoints.borrow_mut();
        if key.dst.is_none() || endpoints.contains_key(&cone) {
            return;
        }
        if endpoints.get(&key).is_some_and(|e| Rc::ptr_eq(e, ep)) {
            endpoints.remove(&key);
            ep.key.set(cone);
            endpoints.insert(cone, ep.clone());
        }
    }

    /// The counters, for `dae status`.
    pub fn report(&self) -> serde_json::Value {
        let c = self.counters.borrow();
        let ways: serde_json::Map<String, serde_json::Value> = self
            .ways
            .borrow()
            .iter()
            .map(|(name, w)| {
                (
                    name.clone(),
                    serde_json::json!({
                        "endpoints": w.live.get(),
                        "total": w.total.get(),
                        "failed": w.failed.get(),
                        "datagrams_up": w.datagrams_up.get(),
                        "datagrams_down": w.datagrams_down.get(),
                        "bytes_up": w.bytes_up.get(),
                        "bytes_down": w.bytes_down.get(),
                    }),
                )
            })
            .collect();
        serde_json::json!({
            "endpoints": self.live(),
            "capacity": self.max,
            "sniffing": self.sniffing.borrow().len(),
            "ways": ways,
            "evicted": c.evicted,
            "expired": c.expired,
            "blocked": c.blocked,
            "refused_no_node": c.no_node,
            "sniffed": c.sniffed,
            "dropped": c.dropped,
        })
    }
}

/// Sends one datagram without waiting. (Not `try_send_to`: tokio says
/// WouldBlock until its reactor has seen a new socket writable, and most
/// of ours are new.)
fn send_now(sock: &UdpSocket, datagram: &[u8], to: SocketAddr) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let to = nix::sys::socket::SockaddrStorage::from(to);
    nix::sys::socket::sendto(
        sock.as_raw_fd(),
        datagram,
        &to,
        nix::sys::socket::MsgFlags::MSG_DONTWAIT,
    )?;
    Ok(())
}

/// `a` with a v4-mapped IPv6 address as IPv4.
fn unmapped(a: SocketAddr) -> SocketAddr {
    match a.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), a.port()),
            None => a,
        },
        IpAddr::V4(_) => a,
    }
}

/// What a new endpoint's task opens.
enum Path {
    Direct(Rc<UdpSocket>),
    Node(Rc<Node>, Direct, Target),
}

impl Relay {
    /// Takes one datagram from `client` to `dst` (not port 53) that the
    /// transparent listener received; replies leave by `anyfrom`.
    pub fn udp(
        self: &Rc<Self>,
        datagram: &[u8],
        client: SocketAddr,
        dst: SocketAddr,
        anyfrom: &Rc<AnyFrom>,
    ) {
        let pool = &self.udp;
        let generation = pool.generation.get();
        // The fast path: an endpoint that already carried this destination.
        let cone = pool.get(Key { client, dst: None });
        if let Some(ep) = cone.as_ref().filter(|ep| ep.knows(dst, generation)) {
            if !ep.send(datagram, dst) {
                pool.counters.borrow_mut().dropped += 1;
            }
            return;
        }
        let pair = pool.get(Key {
            client,
            dst: Some(dst),
        });
        if let Some(ep) = pair.as_ref().filter(|ep| ep.generation.get() == generation) {
            if !ep.send(datagram, dst) {
                pool.counters.borrow_mut().dropped += 1;
            }
            return;
        }
        if pool.sniffing.borrow().contains_key(&(client, dst)) {
            return self.udp_sniff(datagram.to_vec(), client, dst, anyfrom);
        }
        // The slow path: the kernel's verdict, perhaps a sniffed name.
        let verdict = self.verdict(L4::Udp, client, dst);
        // A flow named by its sniffed domain keeps the name across a
        // reload (its later datagrams name nothing).
        if let Some(Target::Name(domain, _)) = pair.as_ref().and_then(|ep| ep.named.clone()) {
            let way = self.way(&verdict, Some(&domain));
            return self.udp_route(&[datagram], client, dst, way, Some(domain), anyfrom);
        }
        // Only QUIC names its domain in UDP, and only flows to its port
        // are handed over to sniff (as the TC program does).
        if dst.port() == QUIC_PORT
            && self.domain_could_change(&verdict)
            && pool.sniffing.borrow().len() < MAX_SNIFFING
        {
            let relay = self.clone();
            let af = anyfrom.clone();
            let wait = self.sniff_wait();
            let timer = tokio::task::spawn_local(async move {
                tokio::time::sleep(wait).await;
                relay.udp_sniffed(client, dst, None, &af);
            })
            .abort_handle();
            pool.sniffing.borrow_mut().insert(
                (client, dst),
                Sniffing {
                    sniffer: QuicSniffer::default(),
                    verdict,
                    held: Vec::new(),
                    bytes: 0,
                    timer,
                },
            );
            return self.udp_sniff(datagram.to_vec(), client, dst, anyfrom);
        }
        let way = self.way(&verdict, None);
        self.udp_route(&[datagram], client, dst, way, None, anyfrom);
    }

    /// Holds one more datagram of a flow being sniffed and feeds it to the
    /// sniffer; routes the flow once the sniffer has an answer.
    fn udp_sniff(
        self: &Rc<Self>,
        datagram: Vec<u8>,
        client: SocketAddr,
        dst: SocketAddr,
        anyfrom: &Rc<AnyFrom>,
    ) {
        let found = {
            let mut sniffing = self.udp.sniffing.borrow_mut();
            let Some(s) = sniffing.get_mut(&(client, dst)) else {
                return;
            };
            let found = s.sniffer.feed(&datagram);
            s.bytes += datagram.len();
            s.held.push(datagram);
            match found {
                Sniffed::Domain(d) => Some(Some(d)),
                Sniffed::NotThis => Some(None),
                Sniffed::NeedMore
                    if s.held.len() >= quic::MAX_DATAGRAMS || s.bytes >= HELD_BYTES =>
                {
                    Some(None)
                }
                Sniffed::NeedMore => None,
            }
        };
        if let Some(domain) = found {
            self.udp_sniffed(client, dst, domain, anyfrom);
        }
    }

    /// Ends the sniffing of a flow (a name, none, or time up) and sends
    /// what it held the way the verdict with that name says.
    fn udp_sniffed(
        self: &Rc<Self>,
        client: SocketAddr,
        dst: SocketAddr,
        domain: Option<String>,
        anyfrom: &Rc<AnyFrom>,
    ) {
        let Some(s) = self.udp.sniffing.borrow_mut().remove(&(client, dst)) else {
            return;
        };
        s.timer.abort();
        if let Some(d) = &domain {
            self.udp.counters.borrow_mut().sniffed += 1;
            log::debug!(
                "udp {client} -> {dst}: QUIC for {d} (after {} datagrams)",
                s.held.len()
            );
        }
        let way = self.way(&s.verdict, domain.as_deref());
        let held: Vec<&[u8]> = s.held.iter().map(Vec::as_slice).collect();
        self.udp_route(&held, client, dst, way, domain, anyfrom);
    }

    /// Sends `datagrams` (in order) of a flow whose way is decided: through
    /// an endpoint of the client's that goes the same way, else a new one.
    fn udp_route(
        self: &Rc<Self>,
        datagrams: &[&[u8]],
        client: SocketAddr,
        dst: SocketAddr,
        way: Way,
        domain: Option<String>,
        anyfrom: &Rc<AnyFrom>,
    ) {
        let pool = &self.udp;
        let generation = pool.generation.get();
        let outbounds = self.outbounds();
        let group = match way {
            Way::Block => {
                pool.counters.borrow_mut().blocked += 1;
                log::debug!("udp {client} -> {dst}: blocked");
                return;
            }
            Way::Direct => None,
            Way::Group(i) => match outbounds.groups.get(i) {
                Some(g) => Some(g.clone()),
                None => {
                    pool.counters.borrow_mut().blocked += 1;
                    return;
                }
            },
        };
        // An endpoint of this client's going the same way takes the flow.
        let pair = Key {
            client,
            dst: Some(dst),
        };
        let cone = Key { client, dst: None };
        let same_way = |ep: &Rc<Endpoint>| {
            ep.way == way
                && match (&group, &ep.node) {
                    (None, None) => true,
                    (Some(g), Some(n)) => {
                        g.nodes.iter().any(|m| m.name == n.name && m.text == n.text)
                    }
                    _ => false,
                }
        };
        let reuse = if domain.is_some() && group.is_some() {
            pool.get(pair).filter(|ep| {
                same_way(ep)
                    && ep.named.as_ref().is_some_and(
                        |t| matches!(t, Target::Name(d, _) if Some(d) == domain.as_ref()),
                    )
            })
        } else {
            pool.get(cone)
                .filter(|ep| same_way(ep) && ep.named.is_none())
                .or_else(|| {
                    pool.get(pair)
                        .filter(|ep| same_way(ep) && ep.named.is_none())
                })
        };
        let ep = match reuse {
            Some(ep) => {
                ep.learn(dst, generation);
                ep
            }
            None => {
                if let Some(old) = pool.get(pair) {
                    pool.remove(&old);
                }
                let path = match &group {
                    None => match outbounds.direct.udp_unconnected(dst) {
                        Ok(s) => match UdpSocket::from_std(s) {
                            Ok(s) => Path::Direct(Rc::new(s)),
                            Err(e) => return self.udp_failed("direct", client, dst, e),
                        },
                        Err(e) => return self.udp_failed("direct", client, dst, e),
                    },
                    Some(g) => {
                        let Some(node) = g.pick(L4::Udp, dst.is_ipv6()) else {
                            pool.counters.borrow_mut().no_node += 1;
                            self.warn_no_node(&g.name, L4::Udp);
                            return;
                        };
                        let target = match &domain {
                            Some(d) => Target::Name(d.clone(), dst.port()),
                            None => Target::Addr(dst),
                        };
                        Path::Node(node, outbounds.direct.clone(), target)
                    }
                };
                let named = match (&path, &domain) {
                    (Path::Node(..), Some(d)) => Some(Target::Name(d.clone(), dst.port())),
                    _ => None,
                };
                // Direct endpoints are full cone at once; a node's path says
                // so once it is open.
                let key = match (&path, pool.get(cone)) {
                    (Path::Direct(_), None) => cone,
                    _ => pair,
                };
                let ep = self.udp_endpoint(key, way, path, named, &domain, datagrams[0], anyfrom);
                ep.learn(dst, generation);
                ep
            }
        };
        for d in datagrams {
            if !ep.send(d, dst) {
                pool.counters.borrow_mut().dropped += 1;
            }
        }
    }

    fn udp_failed(&self, via: &str, client: SocketAddr, dst: SocketAddr, e: io::Error) {
        log::debug!("udp {client} -> {dst}: {via}: {e}");
        add(&self.udp.way_counters(via).failed, 1);
    }

    /// Makes an endpoint, files it in the pool and starts its task.
    #[allow(clippy::too_many_arguments)]
    fn udp_endpoint(
        self: &Rc<Self>,
        key: Key,
        way: Way,
        path: Path,
        named: Option<Target>,
        domain: &Option<String>,
        first: &[u8],
        anyfrom: &Rc<AnyFrom>,
    ) -> Rc<Endpoint> {
        let (via, node, out) = match &path {
            Path::Direct(sock) => ("direct".to_string(), None, Out::Direct(sock.clone())),
            Path::Node(node, ..) => (
                node.name.clone(),
                Some(node.clone()),
                Out::Node {
                    queue: RefCell::default(),
                    wake: Notify::new(),
                },
            ),
        };
        let ep = Rc::new(Endpoint {
            key: Cell::new(key),
            way,
            node,
            counters: self.udp.way_counters(&via),
            out,
            named,
            timeout: nat_timeout(first, domain.is_some()),
            last_use: Cell::new(Instant::now()),
            used: Cell::new(true),
            generation: Cell::new(self.udp.generation.get()),
            recent: RefCell::new([None; RECENT]),
            task: RefCell::new(None),
        });
        log::debug!("udp {key:?}: new endpoint via {via}");
        self.udp.insert(ep.clone());
        let task =
            tokio::task::spawn_local(self.clone().udp_run(ep.clone(), path, anyfrom.clone()));
        *ep.task.borrow_mut() = Some(task.abort_handle());
        ep
    }

    /// An endpoint's life: open its path, carry replies to the client and
    /// the client's datagrams to a node, until idle for its NAT timeout
    /// or the path fails.
    async fn udp_run(self: Rc<Self>, ep: Rc<Endpoint>, path: Path, anyfrom: Rc<AnyFrom>) {
        let idle = async {
            loop {
                let deadline = ep.last_use.get() + ep.timeout;
                if Instant::now() >= deadline {
                    return;
                }
                tokio::time::sleep_until(deadline).await;
            }
        };
        let carry = async {
            match path {
                Path::Direct(sock) => direct_replies(&ep, &sock, &anyfrom).await,
                Path::Node(node, direct, first) => {
                    // Boxed: the dial's state is freed once the path is open.
                    let opened = tokio::time::timeout(
                        DIAL_TIMEOUT,
                        Box::pin(node.cone(&direct, &first, DIAL_TIMEOUT)),
                    )
                    .await
                    .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "timed out")));
                    match opened {
                        Ok(packets) => {
                            if packets.full_cone && ep.named.is_none() {
                                self.udp.to_cone(&ep);
                            }
                            node_path(&ep, packets, &anyfrom).await
                        }
                        Err(e) => {
                            add(&ep.counters.failed, 1);
                            Err(node.error(e))
                        }
                    }
                }
            }
        };
        let ended = tokio::select! {
            () = idle => None,
            r = carry => Some(r),
        };
        match ended {
            None => {
                self.udp.counters.borrow_mut().expired += 1;
                log::debug!("udp {:?}: expired", ep.key.get());
            }
            Some(Err(e)) => log::debug!("udp {:?}: {e}", ep.key.get()),
            Some(Ok(())) => {}
        }
        // The task ends here: no abort needed.
        ep.task.borrow_mut().take();
        self.udp.remove(&ep);
    }
}

/// Sends a reply from `from` to the endpoint's client.
fn deliver(
    ep: &Endpoint,
    anyfrom: &AnyFrom,
    datagram: &[u8],
    from: SocketAddr,
) -> Option<(Rc<UdpSocket>, SocketAddr)> {
    ep.touch();
    let key = ep.key.get();
    let from = match (&ep.named, key.dst) {
        (Some(_), Some(dst)) => dst,
        _ => unmapped(from),
    };
    let client = key.client;
    if from.is_ipv6() != client.is_ipv6() {
        return None;
    }
    let sock = anyfrom.sender(from)?;
    add(&ep.counters.datagrams_down, 1);
    add(&ep.counters.bytes_down, datagram.len() as u64);
    match send_now(&sock, datagram, client) {
        Ok(()) => None,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Some((sock, client)),
        Err(e) => {
            log::debug!("udp reply {from} -> {client}: {e}");
            None
        }
    }
}

/// Carries a direct endpoint's replies to the client until its socket
/// fails.
async fn direct_replies(ep: &Endpoint, sock: &UdpSocket, anyfrom: &AnyFrom) -> io::Result<()> {
    loop {
        sock.readable().await?;
        loop {
            let waiting = RECV_BUF.with(|buf| {
                let mut buf = buf.borrow_mut();
                if buf.is_empty() {
                    buf.resize(DATAGRAM_MAX, 0);
                }
                let (n, from) = sock.try_recv_from(&mut buf)?;
                Ok::<_, io::Error>(
                    deliver(ep, anyfrom, &buf[..n], from).map(|(s, to)| (s, to, buf[..n].to_vec())),
                )
            });
            match waiting {
                Ok(None) => {}
                // The reply socket's buffer is full: wait for room.
                Ok(Some((s, to, datagram))) => {
                    s.send_to(&datagram, to).await?;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // An ICMP error about an earlier datagram: go on.
                Err(e) => log::debug!("udp {:?}: {e}", ep.key.get()),
            }
        }
    }
}

/// Carries a node endpoint's datagrams both ways until its path fails.
async fn node_path(ep: &Endpoint, packets: ConePackets, anyfrom: &AnyFrom) -> io::Result<()> {
    let ConePackets { mut tx, mut rx, .. } = packets;
    let Out::Node { queue, wake } = &ep.out else {
        return Ok(());
    };
    let up = async {
        loop {
            let next = queue.borrow_mut().pop_front();
            match next {
                Some((datagram, to)) => match tx.send_to(&datagram, &to).await {
                    Ok(()) => {}
                    // A path with one target refuses others: drop those.
                    Err(e) if e.kind() == io::ErrorKind::Unsupported => {
                        log::debug!("udp {:?}: {e}", ep.key.get());
                    }
                    Err(e) => return Err::<(), _>(e),
                },
                None => wake.notified().await,
            }
        }
    };
    let down = async {
        loop {
            let (datagram, from) = rx.recv_from().await?;
            if let Some((s, to)) = deliver(ep, anyfrom, &datagram, from) {
                s.send_to(&datagram, to).await?;
            }
        }
    };
    tokio::select! {
        r = up => r,
        r = down => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialer::Outbounds;
    use std::net::Ipv4Addr;

    fn relay(bound: usize) -> Rc<Relay> {
        let mut r = Relay::new(Rc::new(Outbounds::direct_only(Direct::new(0, None))));
        r.udp = Pool::with_bound(bound);
        Rc::new(r)
    }

    fn client(port: u16) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, port))
    }

    /// A socket on loopback. SO_REUSEADDR lets the transparent reply
    /// socket that speaks for it bind the same address (a real remote is
    /// on another host).
    async fn remote() -> (UdpSocket, SocketAddr) {
        use nix::sys::socket::{self as sock, sockopt, AddressFamily, SockFlag, SockType};
        let fd = sock::socket(
            AddressFamily::Inet,
            SockType::Datagram,
            SockFlag::SOCK_NONBLOCK,
            None,
        )
        .unwrap();
        sock::setsockopt(&fd, sockopt::ReuseAddr, &true).unwrap();
        let any = sock::SockaddrIn::from(std::net::SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0));
        sock::bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &any).unwrap();
        let s = UdpSocket::from_std(std::net::UdpSocket::from(fd)).unwrap();
        let a = s.local_addr().unwrap();
        (s, a)
    }

    async fn recv(s: &UdpSocket) -> Option<(Vec<u8>, SocketAddr)> {
        let mut buf = [0u8; 2048];
        let (n, from) = tokio::time::timeout(Duration::from_secs(2), s.recv_from(&mut buf))
            .await
            .ok()?
            .ok()?;
        Some((buf[..n].to_vec(), from))
    }

    async fn in_local<F: std::future::Future<Output = ()>>(f: F) {
        tokio::task::LocalSet::new().run_until(f).await
    }

    /// A DNS query for example.com A.
    fn dns_query() -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        q.extend_from_slice(b"\x07example\x03com\x00\x00\x01\x00\x01");
        q
    }

    #[test]
    fn nat_timeouts_by_first_datagram() {
        let q = dns_query();
        assert_eq!(nat_timeout(&q, false), NAT_TIMEOUT_DNS);
        assert_eq!(nat_timeout(b"\x01\x02garbage", false), NAT_TIMEOUT);
        assert_eq!(nat_timeout(b"\x01\x02garbage", true), NAT_TIMEOUT_QUIC);
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn idle_endpoints_expire_by_their_nat_timeout() {
        in_local(async {
            let r = relay(16);
            let af = Rc::new(AnyFrom::default());
            let (far, far_addr) = remote().await;
            r.udp_route(&[b"game"], client(40000), far_addr, Way::Direct, None, &af);
            assert_eq!(recv(&far).await.unwrap().0, b"game");
            assert_eq!(r.udp.live(), 1);
            tokio::time::sleep(NAT_TIMEOUT - Duration::from_secs(1)).await;
            assert_eq!(r.udp.live(), 1, "gone before its timeout");
            tokio::time::sleep(Duration::from_secs(2)).await;
            assert_eq!(r.udp.live(), 0, "still there after its timeout");
            assert_eq!(r.udp.counters.borrow().expired, 1);
            let report = r.report();
            assert_eq!(report["udp"]["endpoints"], 0);
            assert_eq!(report["udp"]["ways"]["direct"]["endpoints"], 0);
            assert_eq!(report["udp"]["ways"]["direct"]["datagrams_up"], 1);
            // A datagram keeps it alive; a DNS-like flow idles out sooner.
            let q = dns_query();
            r.udp_route(&[&q], client(40001), far_addr, Way::Direct, None, &af);
            tokio::time::sleep(NAT_TIMEOUT_DNS - Duration::from_secs(2)).await;
            r.udp(&q, client(40001), far_addr, &af);
            tokio::time::sleep(NAT_TIMEOUT_DNS - Duration::from_secs(2)).await;
            assert_eq!(r.udp.live(), 1, "a datagram did not keep it");
            tokio::time::sleep(Duration::from_secs(3)).await;
            assert_eq!(r.udp.live(), 0);
        })
        .await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_pool_evicts_the_oldest_idle_past_its_bound() {
        in_local(async {
            let r = relay(4);
            let af = Rc::new(AnyFrom::default());
            let (_far, far_addr) = remote().await;
            for port in 0..5 {
                r.udp_route(
                    &[b"x"],
                    client(41000 + port),
                    far_addr,
                    Way::Direct,
                    None,
                    &af,
                );
            }
            assert_eq!(r.udp.live(), 4);
            assert!(r
                .udp
                .get(Key {
                    client: client(41000),
                    dst: None
                })
                .is_none());
            // 41001 is used again (the fast path); 41002 is then the oldest idle.
            r.udp(b"y", client(41001), far_addr, &af);
            r.udp_route(&[b"x"], client(41005), far_addr, Way::Direct, None, &af);
            assert_eq!(r.udp.live(), 4);
            assert!(r
                .udp
                .get(Key {
                    client: client(41001),
                    dst: None
                })
                .is_some());
            assert!(r
                .udp
                .get(Key {
                    client: client(41002),
                    dst: None
                })
                .is_none());
            assert_eq!(r.report()["udp"]["evicted"], 2);
            assert_eq!(r.report()["udp"]["ways"]["direct"]["endpoints"], 4);
        })
        .await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn known_destinations_take_the_fast_path_and_new_ones_need_a_verdict() {
        in_local(async {
            let r = relay(16);
            let af = Rc::new(AnyFrom::default());
            let (far, far_addr) = remote().await;
            let (other, other_addr) = remote().await;
            let c = client(42000);
            r.udp_route(&[b"one"], c, far_addr, Way::Direct, None, &af);
            r.udp(b"two", c, far_addr, &af);
            assert_eq!(recv(&far).await.unwrap().0, b"one");
            assert_eq!(recv(&far).await.unwrap().0, b"two");
            // No verdict was read for the second datagram.
            assert_eq!(r.stats.borrow().no_verdict, 0);
            // A new destination asks the kernel; with no verdict to read
            // it is dropped, never sent direct.
            r.udp(b"three", c, other_addr, &af);
            assert_eq!(r.stats.borrow().no_verdict, 1);
            assert_eq!(r.udp.counters.borrow().blocked, 1);
            assert!(recv(&other).await.is_none(), "sent without a verdict");
            // After a reload even a known destination is decided again.
            r.udp.reloaded();
            r.udp(b"four", c, far_addr, &af);
            assert_eq!(r.stats.borrow().no_verdict, 2);
            assert!(recv(&far).await.is_none());
        })
        .await;
    }

    /// Replies reach the client from each remote's own address: the
    /// endpoint is full cone. Needs the transparent reply sockets
    /// (CAP_NET_ADMIN).
    #[tokio::test(flavor = "current_thread")]
    async fn replies_from_any_remote_reach_the_client_from_that_remote() {
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIPPED: transparent reply sockets need root");
            return;
        }
        in_local(async {
            let r = relay(16);
            let af = Rc::new(AnyFrom::default());
            let (lan, lan_addr) = remote().await;
            let (far, far_addr) = remote().await;
            let (second, second_addr) = remote().await;
            r.udp_route(&[b"hi"], lan_addr, far_addr, Way::Direct, None, &af);
            let (got, endpoint) = recv(&far).await.unwrap();
            assert_eq!(got, b"hi");
            far.send_to(b"from far", endpoint).await.unwrap();
            assert_eq!(recv(&lan).await.unwrap(), (b"from far".to_vec(), far_addr));
            // A remote the client never sent to.
            second.send_to(b"from second", endpoint).await.unwrap();
            assert_eq!(
                recv(&lan).await.unwrap(),
                (b"from second".to_vec(), second_addr)
            );
            let report = r.report();
            assert_eq!(report["udp"]["ways"]["direct"]["datagrams_down"], 2);
            assert_eq!(report["udp"]["endpoints"], 1);
        })
        .await;
    }
}
