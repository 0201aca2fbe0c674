//! Forwarders out: one per upstream, kept and reused, that carry a query to
//! the upstream and bring back its answer.
//!
//! - `udp://`: a pool of sockets on random ports that keep changing, a
//!   random id per query, retransmitted every second until the deadline
//!   (`udp.rs`); a truncated answer to a client that came over TCP is asked
//!   again over TCP.
//! - `tcp://`: one connection per upstream, length-prefixed, pipelined, reused
//!   until idle (`tcp.rs`).
//! - `tcp+udp://`: UDP first, TCP when the answer comes back truncated.
//!
//! Every reply is checked against the query (id, name, type, class) before it
//! is handed back; the controller decides what an answer means.
//!
//! Neighbours: `controller` (calls `exchange`), `dialer` (sockets), `wire`.

mod tcp;
mod udp;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use crate::config::{Host, Scheme, UpstreamUrl};
use crate::dialer::Direct;
use crate::wire::{self, QueryInfo};

pub use tcp::TcpPipeline;
pub use udp::UdpPool;

/// Why an exchange gave no answer. Each becomes SERVFAIL for the client.
#[derive(Debug)]
pub enum ForwardError {
    /// No matching answer before the deadline.
    Timeout,
    /// The upstream said no at the transport level (ICMP unreachable, RST).
    Refused,
    /// A connection broke before the answer came, twice.
    Closed,
    /// The socket could not be opened or written.
    Io(io::Error),
    /// Too many queries already waiting on this connection.
    Busy,
}

impl fmt::Display for ForwardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ForwardError::Timeout => f.write_str("timed out"),
            ForwardError::Refused => f.write_str("connection refused"),
            ForwardError::Closed => f.write_str("connection closed before the answer"),
            ForwardError::Io(e) => write!(f, "{e}"),
            ForwardError::Busy => f.write_str("too many queries in flight"),
        }
    }
}

impl From<io::Error> for ForwardError {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset => {
                ForwardError::Refused
            }
            io::ErrorKind::TimedOut => ForwardError::Timeout,
            _ => ForwardError::Io(e),
        }
    }
}

/// A reusable path to one upstream.
pub struct Forwarder {
    remote: SocketAddr,
    scheme: Scheme,
    dialer: Direct,
    /// Used by the UDP schemes.
    udp: UdpPool,
    /// Used by `tcp://`, and by the UDP schemes for truncated answers.
    tcp: TcpPipeline,
}

/// Whether this build can forward to `url`, and if not, why.
pub fn check_supported(url: &UpstreamUrl) -> Result<(), String> {
    match url.scheme {
        Scheme::Udp | Scheme::Tcp | Scheme::TcpUdp => {}
        Scheme::Tls | Scheme::Https | Scheme::H3 | Scheme::Quic => {
            return Err(format!(
                "{} upstreams are not supported by this build yet (udp, tcp and tcp+udp are)",
                scheme_name(url.scheme)
            ))
        }
    }
    match &url.host {
        Host::Ip(_) => Ok(()),
        Host::Name(n) => Err(format!(
            "upstream host '{n}' is a name; plain upstreams need an IP address \
             (a router must not resolve its own resolver through itself)"
        )),
    }
}

pub fn scheme_name(s: Scheme) -> &'static str {
    match s {
        Scheme::Udp => "udp",
        Scheme::Tcp => "tcp",
        Scheme::TcpUdp => "tcp+udp",
        Scheme::Tls => "tls",
        Scheme::Https => "https",
        Scheme::H3 => "h3",
        Scheme::Quic => "quic",
    }
}

impl Forwarder {
    pub fn new(url: &UpstreamUrl, dialer: Direct) -> Result<Forwarder, String> {
        check_supported(url)?;
        let Host::Ip(ip) = url.host else {
            unreachable!("checked above")
        };
        Ok(Forwarder::plain(
            SocketAddr::new(ip, url.port),
            url.scheme,
            dialer,
        ))
    }

    /// A forwarder to the address the client asked (`asis`): UDP, with TCP
    /// for truncated answers to TCP clients.
    pub fn asis(remote: SocketAddr, dialer: Direct) -> Forwarder {
        Forwarder::plain(remote, Scheme::Udp, dialer)
    }

    fn plain(remote: SocketAddr, scheme: Scheme, dialer: Direct) -> Forwarder {
        Forwarder {
            remote,
            scheme,
            udp: UdpPool::new(remote, dialer.clone()),
            tcp: TcpPipeline::new(remote, dialer.clone()),
            dialer,
        }
    }

    /// Whether this forwarder goes where `url` says, the way `dialer` says
    /// (a reload keeps such forwarders and their connections).
    pub fn same_path(&self, url: &UpstreamUrl, dialer: &Direct) -> bool {
        match url.host {
            Host::Ip(ip) => {
                self.remote == SocketAddr::new(ip, url.port)
                    && self.scheme == url.scheme
                    && &self.dialer == dialer
            }
            Host::Name(_) => false,
        }
    }

    /// Sends `query` and returns the upstream's answer (its id is ours, not
    /// the client's; the caller patches it).
    pub async fn exchange(
        &self,
        query: &[u8],
        info: &QueryInfo,
        client_over_tcp: bool,
        deadline: Instant,
    ) -> Result<Vec<u8>, ForwardError> {
        // The TCP futures are boxed: most queries never take that path, and
        // every pending query carries this future's size.
        let tcp_on_truncation = match self.scheme {
            Scheme::Tcp => return Box::pin(self.tcp.exchange(query, info, deadline)).await,
            Scheme::TcpUdp => true,
            _ => client_over_tcp,
        };
        let reply = self.udp.exchange(query, info, deadline).await?;
        if tcp_on_truncation && wire::flags(&reply) & wire::flag::TC != 0 {
            log::debug!("{}: truncated answer, asking again over TCP", self.remote);
            return Box::pin(self.tcp.exchange(query, info, deadline)).await;
        }
        Ok(reply)
    }
}
