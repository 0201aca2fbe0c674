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
//! - `target`: where a proxied stream goes (an address, or a name the
//!   proxy server looks up) and how the protocols write it.
//!
//! A proxied stream is a `BoxStream`; a proxied datagram path is a
//! `Packets` pair (one DNS message per packet, both ways, one fixed
//! target). The UDP relay's path through a node is a `ConePackets` pair:
//! each datagram names its own target and each reply says where it came
//! from, so one path serves a LAN socket's every remote (full cone) where
//! the protocol writes an address per datagram (SOCKS5, Shadowsocks,
//! Trojan); VLESS and VMess carry one target per path. `Via` is what a
//! forwarder holds: direct, or one node.
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
/// flushed once, at its end.
pub trait FrameTx {
    /// Writes one datagram's frame into the stream, unflushed.
    fn write_frame<'a>(&'a mut self, datagram: &'a [u8]) -> LocalFuture<'a, io::Result<()>>;

    /// Pushes what was written out.
    fn flush_frames(&mut self) -> LocalFuture<'_, io::Result<()>>;
}

impl<T: FrameTx> PacketTx for T {
    fn send<'a>(&'a mut self, datagram: &'a [u8]) -> LocalFuture<'a, io::Result<()>> {
        Box::pin(async move {
            self.write_frame(datagram).await?;
            self.flush_frames().await
        })
    }

    fn send_more<'a>(&'a mut self, datagram: &'a [u8]) -> LocalFuture<'a, io::Result<()>> {
        self.write_frame(datagram)
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
}

/// The receiving half: each datagram with the address the node's server
/// says it came from. An error means the path is gone.
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
