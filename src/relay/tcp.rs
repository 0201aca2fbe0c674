//! The TCP relay: one proxied LAN connection, from the transparent
//! listener to its way out.
//!
//! The TC program decided the flow goes to a group and handed its SYN to
//! the transparent listener, which accepted it with the client's own
//! source and the original destination as the local address. Here:
//!
//! 1. the program's verdict and the conditions that held are read back
//!    from its flow map;
//! 2. when a domain could change the verdict, the client's first bytes are
//!    read for a TLS SNI or an HTTP Host (bounded in time and size; a
//!    server-first protocol just waits out the time), and the verdict is
//!    taken again with that domain in place of what DNS taught the kernel
//!    (the client says which site it wants; an address shared by many
//!    names says less);
//! 3. `block`: reset. A group: its policy picks a live node and the node
//!    dials the sniffed domain (with the original port) when there is one,
//!    else the original destination; no live node: reset, never direct.
//!    `direct`: a socket with our mark to the original destination;
//! 4. the bytes read while sniffing go first, then `splice` copies both
//!    ways.
//!
//! Why a node gets the name and not the address: the node's resolver
//! then picks the site's address, so a CDN answers from near the node,
//! not from near the router (whose DNS may also be what the owner wants
//! to get around). The address the client chose is given up: a client that
//! pinned a name to an address (an `/etc/hosts` entry, `curl --resolve`)
//! reaches whatever the node resolves instead. Flows with no sniffed name
//! (unknown protocol, server speaks first) and direct flows keep the
//! address: there the client's choice is all there is, and a direct dial
//! by name would only ask the router's DNS again.
//!
//! Neighbours: `relay` (state, stats), `sniff`, `routing::kernel` (the
//! compiled rules), `dialer` (the ways out), `listener::tproxy` (accepts).

use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::splice::{splice, Spliced, Timeouts};
use super::{Relay, Way};
use crate::dialer::{BoxStream, Target, L4};
use crate::sniff::{sniff_stream, Sniffed, STREAM_PREFIX_MAX};

/// A connection to a node or a site that takes longer than this fails.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a relay may idle: five minutes with no byte either way (as
/// v2ray's `connIdle`), thirty seconds once one side has closed (a server
/// finishing its answer).
pub const TIMEOUTS: Timeouts = Timeouts {
    idle: Duration::from_secs(300),
    half_closed: Duration::from_secs(30),
};

/// Resets the client's connection: SO_LINGER with a zero time makes the
/// close send RST at once (it does not block then).
fn reset(client: TcpStream) {
    let zero = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    let _ = nix::sys::socket::setsockopt(&client, nix::sys::socket::sockopt::Linger, &zero);
    drop(client);
}

/// Reads the client's first bytes until they name a domain, cannot, or
/// `wait` runs out. Returns what was read and the domain.
async fn sniff(client: &mut TcpStream, wait: Duration) -> (Vec<u8>, Option<String>) {
    let mut first = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    let mut chunk = [0u8; 2048];
    loop {
        let read = tokio::time::timeout_at(deadline, client.read(&mut chunk)).await;
        match read {
            Ok(Ok(n)) if n > 0 => first.extend_from_slice(&chunk[..n]),
            // EOF, error or time: route by what is known.
            _ => return (first, None),
        }
        match sniff_stream(&first) {
            Sniffed::Domain(d) => return (first, Some(d)),
            Sniffed::NotThis => return (first, None),
            Sniffed::NeedMore if first.len() >= STREAM_PREFIX_MAX => return (first, None),
            Sniffed::NeedMore => {}
        }
    }
}

impl Relay {
    /// Relays one accepted connection from `peer` to `dst`.
    pub async fn tcp(self: Rc<Self>, client: TcpStream, peer: SocketAddr, dst: SocketAddr) {
        let Some(_open) = self.admit() else {
            log::debug!(
                "tcp {peer} -> {dst}: {} relayed already, refused",
                super::MAX_CONNECTIONS
            );
            return reset(client);
        };
        self.clone().tcp_admitted(client, peer, dst).await;
    }

    async fn tcp_admitted(
        self: Rc<Self>,
        mut client: TcpStream,
        peer: SocketAddr,
        dst: SocketAddr,
    ) {
        let _ = client.set_nodelay(true);
        let verdict = self.verdict(L4::Tcp, peer, dst);
        let (first, domain) = if self.domain_could_change(&verdict) {
            sniff(&mut client, self.sniff_wait()).await
        } else {
            (Vec::new(), None)
        };
        let way = self.way(&verdict, domain.as_deref());
        let name = domain.as_deref().unwrap_or("");
        let (mut out, via): (BoxStream, String) = match way {
            Way::Block => {
                log::debug!("tcp {peer} -> {dst} {name}: blocked");
                self.count_blocked();
                return reset(client);
            }
            Way::Direct => {
                let direct = self.outbounds().direct.clone();
                match direct.tcp(dst, DIAL_TIMEOUT).await {
                    Ok(s) => (Box::new(s), "direct".into()),
                    Err(e) => {
                        log::debug!("tcp {peer} -> {dst} {name}: direct: {e}");
                        self.count_failed("direct");
                        return reset(client);
                    }
                }
            }
            Way::Group(i) => {
                let outbounds = self.outbounds();
                let Some(group) = outbounds.groups.get(i) else {
                    return reset(client);
                };
                let Some(node) = group.pick(L4::Tcp, dst.is_ipv6()) else {
                    self.count_no_node();
                    self.warn_no_node(&group.name, L4::Tcp);
                    return reset(client);
                };
                let target = match &domain {
                    Some(d) => Target::Name(d.clone(), dst.port()),
                    None => Target::Addr(dst),
                };
                match node.stream(&outbounds.direct, &target, DIAL_TIMEOUT).await {
                    Ok(s) => (s, node.name.clone()),
                    Err(e) => {
                        log::debug!("tcp {peer} -> {dst} {name}: {}", node.error(e));
                        self.count_failed(&node.name);
                        return reset(client);
                    }
                }
            }
        };
        log::debug!("tcp {peer} -> {dst} {name}: via {via}");
        let active = self.opened(&via);
        let sent_first = async {
            if !first.is_empty() {
                out.write_all(&first).await?;
            }
            Ok::<(), io::Error>(())
        }
        .await;
        let sniffed_bytes = first.len() as u64;
        drop(first);
        let (result, mut spliced) = match sent_first {
            Ok(()) => splice(&mut client, &mut out, TIMEOUTS).await,
            Err(e) => (Err(e), Spliced::default()),
        };
        spliced.up += sniffed_bytes;
        if let Err(e) = result {
            log::debug!("tcp {peer} -> {dst} via {via}: {e}");
        }
        self.closed(active, spliced);
    }
}
