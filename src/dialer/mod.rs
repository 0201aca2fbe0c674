//! Dialers: the ways the daemon's own traffic (DNS upstreams, health
//! checks) leaves the router.
//!
//! - `direct`: plain sockets with our socket mark;
//! - one module per proxy protocol (`socks5`, `http`, `shadowsocks`,
//!   `trojan`, `vless`, `vmess`): given a stream already connected to the
//!   proxy server (TLS already on it where the link asks for TLS), each asks
//!   the server for a stream or a datagram path to the target, as the
//!   share link (`config::link`) describes the node;
//! - `node`: one proxy node (link, TLS, `health`); `group`: nodes and the
//!   policy that picks one; `check`: the health checks;
//! - `outbound`: the nodes and groups, and the choice of node for a dial
//!   once the routing rules (`routing`) have sent it to a group;
//! - `fetch`: a small HTTP/1.1 client for our own downloads, out the
//!   way the routing rules say; `subscription`: node lists fetched from
//!   providers, kept on disk, put into the groups;
//! - `scratch`: the datagram buffers the UDP paths share;
//! - `target`: where a proxied stream goes (an address, or a name the
//!   proxy server looks up) and how the protocols write it.
//!
//! A proxied stream is a `BoxStream`. The UDP relay's path through a node
//! is a `ConePackets` pair: each datagram names its own target and each
//! reply says where it came from, so one path serves a LAN socket's every
//! remote (full cone) where the protocol writes an address per datagram
//! (SOCKS5, Shadowsocks, Trojan); VLESS and VMess carry one target per
//! path. The DNS forwarders' and health checks' datagram path is a
//! `Packets` pair (one DNS message per packet, both ways, one fixed
//! target): `ConePackets::to_target`, the same protocol code held to one
//! target. `Via` is what a forwarder holds: direct, or one node.
//!
//! Neighbours: `forwarder` (asks for streams and packet paths to an
//! upstream), `config` (nodes, groups, routing).

mod check;
mod direct;
pub mod fetch;
pub mod group;
pub mod health;
pub mod http;
pub mod node;
pub mod outbound;
mod scratch;
pub mod shadowsocks;
pub mod socks5;
pub mod subscription;
pub mod target;
pub mod trojan;
pub mod vless;
pub mod vmess;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

pub use direct::Direct;
pub use node::{Node, L4};
pub use outbound::{Choice, Outbounds};
pub use target::Target;

/// A byte stream, plain or inside a proxy protocol.
pub trait Stream: AsyncRead + AsyncWrite + Unpin {}
impl<T: AsyncRead + AsyncWrite + Unpin> Stream for T {}

/// A stream whose protocol layers are known only at run time.
pub type BoxStream = Box<dyn Stream>;

/// A boxed future that borrows its receiver (the daemon is single-threaded:
/// nothing here is `Send`).
pub type LocalFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// The sending half of a datagram path to one fixed target through a proxy.
pub trait PacketTx {
    /// Sends one datagram (one DNS message) to the target.
    fn send<'a>(&'a mut self, datagram: &'a [u8]) -> LocalFuture<'a, io::Result<()>>;

    /// Sends one datagram that another follows at once: a path carried in
    /// a stream may keep it for the same write as the next (the last of a
    /// run goes by `send`, which flushes).
    fn send_more<'a>(&'a mut self, datagram: &'a [u8]) -> LocalFuture<'a, io::Result<()>> {
        self.send(datagram)
    }
}

/// The receiving half: datagrams from the target, one at a time. An error
/// means the path is gone (the proxy closed it, or it sent garbage).
pub trait PacketRx {
    fn recv(&mut self) -> LocalFuture<'_, io::Result<Vec<u8>>>;
}

/// The sending half of UDP carried inside a stream (Trojan, VLESS, VMess):
/// each protocol only writes one datagram's frame; a run of datagrams is
/// flushed once, at its end. Plain `async fn`s (never a trait object):
/// the one boxed future per datagram is `ConeTx`'s.
pub(crate) trait FrameTx {
    /// Writes one datagram's frame to `to` into the stream, unflushed.
    async fn write_frame(&mut self, datagram: &[u8], to: &Target) -> io::Result<()>;

    /// Pushes what was written out.
    async fn flush_frames(&mut self) -> io::Result<()>;
}

impl<T: FrameTx> ConeTx for T {
    fn send_to<'a>(
        &'a mut self,
        datagram: &'a [u8],
        to: &'a Target,
    ) -> LocalFuture<'a, io::Result<()>> {
        Box::pin(async move {
            self.write_frame(datagram, to).await?;
            self.flush_frames().await
        })
    }

    fn send_more_to<'a>(
        &'a mut self,
        datagram: &'a [u8],
        to: &'a Target,
    ) -> LocalFuture<'a, io::Result<()>> {
        Box::pin(self.write_frame(datagram, to))
    }
}

/// The sending half of a relayed UDP flow's path through a node: each
/// datagram goes to its own target (an address, or a name the node's
/// server resolves).
pub trait ConeTx {
    /// Sends one datagram to `to`. A path that carries one target only
    /// (`ConePackets::full_cone` false) refuses any other with
    /// `ErrorKind::Unsupported`.
    fn send_to<'a>(
        &'a mut self,
        datagram: &'a [u8],
        to: &'a Target,
    ) -> LocalFuture<'a, io::Result<()>>;

    /// Sends one datagram that another follows at once: a path carried in
    /// a stream may keep it for the same write as the next (the last of a
    /// run goes by `send_to`, which flushes).
    fn send_more_to<'a>(
        &'a mut self,
        datagram: &'a [u8],
        to: &'a Target,
    ) -> LocalFuture<'a, io::Result<()>> {
        self.send_to(datagram, to)
    }
}

/// The receiving half: each datagram with the address the node's server
/// says it came from (a path that carries one target only says the
/// target's address; opened for a name, the unspecified address and the
/// target's port, as it cannot know more). Replies naming a host instead
/// of an address, and garbled ones, are skipped. An error means the path
/// is gone.
pub trait ConeRx {
    fn recv_from(&mut self) -> LocalFuture<'_, io::Result<(Vec<u8>, SocketAddr)>>;
}

/// A relayed UDP flow's path through a node.
pub struct ConePackets {
    pub tx: Box<dyn ConeTx>,
    pub rx: Box<dyn ConeRx>,
    /// Datagrams may go to any target and replies come from any remote;
    /// false: only to the target the path was opened for.
    pub full_cone: bool,
}

impl ConePackets {
    /// The fixed-target path over this one: every datagram goes to
    /// `target`, replies from anywhere else are dropped.
    pub fn to_target(self, target: SocketAddr) -> Packets {
        Packets {
            tx: Box::new(ToTarget {
                tx: self.tx,
                target: Target::Addr(target),
            }),
            rx: Box::new(FromTarget {
                rx: self.rx,
                target: canonical(target),
            }),
        }
    }
}

/// `Unsupported` unless `to` is `only`, the one target of a path whose
/// protocol writes the target once, in its request (VLESS, VMess).
pub(crate) fn only_target(proto: &str, only: &Target, to: &Target) -> io::Result<()> {
    let same = match (only, to) {
        (Target::Addr(a), Target::Addr(b)) => canonical(*a) == canonical(*b),
        (a, b) => a == b,
    };
    if same {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        format!("{proto}: a UDP path carries one target ({only}), not {to}"),
    ))
}

/// Where replies on a one-target path come from (see `ConeRx`).
pub(crate) fn reply_source(target: &Target) -> SocketAddr {
    match target {
        Target::Addr(a) => *a,
        Target::Name(_, port) => SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, *port)),
    }
}

/// An address with IPv4-mapped IPv6 written as IPv4.
pub(crate) fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// The sending half of `ConePackets::to_target`.
struct ToTarget {
    tx: Box<dyn ConeTx>,
    target: Target,
}

impl PacketTx for ToTarget {
    fn send<'a>(&'a mut self, datagram: &'a [u8]) -> LocalFuture<'a, io::Result<()>> {
        self.tx.send_to(datagram, &self.target)
    }

    fn send_more<'a>(&'a mut self, datagram: &'a [u8]) -> LocalFuture<'a, io::Result<()>> {
        self.tx.send_more_to(datagram, &self.target)
    }
}

/// The receiving half of `ConePackets::to_target`.
struct FromTarget {
    rx: Box<dyn ConeRx>,
    target: SocketAddr,
}

impl PacketRx for FromTarget {
    fn recv(&mut self) -> LocalFuture<'_, io::Result<Vec<u8>>> {
        Box::pin(async move {
            loop {
                let (datagram, from) = self.rx.recv_from().await?;
                if canonical(from) == self.target {
                    return Ok(datagram);
                }
                log::debug!("dropped a datagram from {from}, not from {}", self.target);
            }
        })
    }
}

/// A datagram path to one target through a proxy node.
pub struct Packets {
    pub tx: Box<dyn PacketTx>,
    pub rx: Box<dyn PacketRx>,
}

/// The way one forwarder's connections leave: direct, or through a node.
#[derive(Clone)]
pub enum Via {
    Direct(Direct),
    Node(Direct, Rc<Node>),
}

impl Via {
    /// A stream to `remote` (an upstream's address: the forwarders never
    /// dial names).
    pub async fn stream(&self, remote: SocketAddr, timeout: Duration) -> io::Result<BoxStream> {
        match self {
            Via::Direct(d) => Ok(Box::new(d.tcp(remote, timeout).await?)),
            Via::Node(d, n) => n
                .stream(d, &Target::Addr(remote), timeout)
                .await
                .map_err(|e| n.error(e)),
        }
    }

    /// A datagram path to `remote` through the node (direct UDP has its
    /// own pool of sockets in the forwarder).
    pub async fn packets(&self, remote: SocketAddr, timeout: Duration) -> io::Result<Packets> {
        match self {
            Via::Direct(_) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "direct UDP goes through the socket pool",
            )),
            Via::Node(d, n) => n.packets(d, remote, timeout).await.map_err(|e| n.error(e)),
        }
    }

    /// The direct dialer underneath (sockets to the node's server, or to
    /// the upstream itself).
    pub fn direct(&self) -> &Direct {
        match self {
            Via::Direct(d) | Via::Node(d, _) => d,
        }
    }

    pub fn node(&self) -> Option<&Rc<Node>> {
        match self {
            Via::Direct(_) => None,
            Via::Node(_, n) => Some(n),
        }
    }

    /// The same way out (the same node, not merely an equal one).
    pub fn same(&self, other: &Via) -> bool {
        match (self, other) {
            (Via::Direct(a), Via::Direct(b)) => a == b,
            (Via::Node(a, n), Via::Node(b, m)) => a == b && Rc::ptr_eq(n, m),
            _ => false,
        }
    }
}
