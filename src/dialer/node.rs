//! A proxy node: its share link, the TLS client to its server when the
//! link asks for TLS, and what the health checks found.
//!
//! `stream`, `cone` and `packets` connect to the node's server with the direct
//! dialer (our socket mark, so the router never sends it back into the
//! proxy), put TLS on where needed, then let the protocol module ask the
//! server for a path to the target. A server given by host name is looked
//! up through the first plain upstream at an IP address, direct (never
//! through a node, never through the system resolver), and kept for its
//! TTL.
//!
//! Neighbours: `link` (what a node is), the protocol modules (`socks5`,
//! `http`, `shadowsocks`, `trojan`, `vless`, `vmess`), `health` (the check
//! results), `group` (picks nodes), `check` (keeps the results fresh).

use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::health::Health;
use super::{http, shadowsocks, socks5, trojan, vless, vmess};
use super::{BoxStream, ConePackets, Direct, Packets, Target};
use crate::config::link::{Link, Proto};
use crate::config::Host;
use crate::forwarder::lookup::Lookup;
use crate::forwarder::tls::TlsClient;
use crate::forwarder::Forwarder;

fn no_resolver(name: &str) -> String {
    format!(
        "the server '{name}' is a host name: put its IP address in the link, or define a \
         plain upstream (udp, tcp) with an IP address to look it up"
    )
}

pub use crate::routing::L4;

pub struct Node {
    pub name: String,
    pub link: Link,
    /// The share link as written, to tell whether a reload changed it.
    pub text: String,
    tls: Option<TlsClient>,
    /// Looks the server up when the link gives a host name.
    lookup: Option<Lookup>,
    pub health: Health,
}

impl Node {
    /// A node from its section; `roots` are the trusted certificates for
    /// links with TLS (None when the config has no node that needs them).
    /// A server given by host name is looked up through `resolver` (a
    /// plain upstream at an IP address, dialled direct).
    pub fn new(
        name: &str,
        text: &str,
        roots: impl Fn() -> Result<std::sync::Arc<rustls::RootCertStore>, String>,
        resolver: Option<&Rc<Forwarder>>,
    ) -> Result<Node, String> {
        let link = crate::config::link::parse(text)?;
        let lookup = match &link.host {
            Host::Ip(_) => None,
            Host::Name(n) => Some(Lookup::new(
                n.clone(),
                link.port,
                resolver.ok_or_else(|| no_resolver(n))?.clone(),
            )),
        };
        let tls = match &link.tls {
            None => None,
            Some(t) => {
                let roots = if t.allow_insecure {
                    log::warn!(
                        "node '{name}': allowInsecure is set: its certificate is not checked"
                    );
                    None
                } else {
                    Some(roots()?)
                };
                Some(TlsClient::new(&t.server_name, roots, &[])?)
            }
        };
        Ok(Node {
            name: name.to_string(),
            link,
            text: text.to_string(),
            tls,
            lookup,
            health: Health::new(),
        })
    }

    /// The proxy server as the link gives it (`host:port`).
    pub fn server_text(&self) -> String {
        match &self.link.host {
            Host::Ip(ip) => SocketAddr::new(*ip, self.link.port).to_string(),
            Host::Name(n) => format!("{n}:{}", self.link.port),
        }
    }

    /// The proxy server's address, looked up if the link gives a name.
    async fn server(&self, timeout: Duration) -> io::Result<SocketAddr> {
        match (&self.link.host, &self.lookup) {
            (Host::Ip(ip), _) => Ok(SocketAddr::new(*ip, self.link.port)),
            (Host::Name(_), Some(l)) => Box::pin(l.address(Instant::now() + timeout))
                .await
                .map_err(|e| io::Error::other(format!("the proxy server: {e}"))),
            (Host::Name(n), None) => Err(io::Error::other(no_resolver(n))),
        }
    }

    /// A connection to the server failed: a looked-up address past its
    /// TTL is looked up again next time.
    fn server_failed(&self, addr: SocketAddr) {
        if let Some(l) = &self.lookup {
            l.failed(addr);
        }
    }

    /// Whether this node can carry `l4` at all (HTTP proxies carry no UDP).
    pub fn carries(&self, l4: L4) -> bool {
        !(l4 == L4::Udp && matches!(self.link.proto, Proto::Http(_)))
    }

    /// The protocol's name, for logs and `dae status`.
    pub fn protocol(&self) -> &'static str {
        match self.link.proto {
            Proto::Socks5(_) => "socks5",
            Proto::Http(_) if self.link.tls.is_some() => "https",
            Proto::Http(_) => "http",
            Proto::Shadowsocks(_) => "shadowsocks",
            Proto::Trojan { .. } => "trojan",
            Proto::Vless { .. } => "vless",
            Proto::Vmess(_) => "vmess",
        }
    }

    /// `e` from a dial through this node, saying so.
    pub fn error(&self, e: io::Error) -> io::Error {
        io::Error::new(e.kind(), format!("through node '{}': {e}", self.name))
    }

    /// TCP (with TLS if the link asks) to the node's server.
    async fn connect(&self, direct: &Direct, timeout: Duration) -> io::Result<BoxStream> {
        let server = self.server(timeout).await?;
        let tcp = direct.tcp(server, timeout).await.inspect_err(|_| {
            self.server_failed(server);
        })?;
        Ok(match &self.tls {
            None => Box::new(tcp),
            Some(tls) => Box::new(
                tls.handshake(tcp)
                    .await
                    .map_err(|e| io::Error::other(format!("TLS to the proxy: {e}")))?,
            ),
        })
    }

    /// A stream to `target` through this node, within `timeout`; a name in
    /// `target` is looked up by the node's server, not here.
    pub async fn stream(
        &self,
        direct: &Direct,
        target: &Target,
        timeout: Duration,
    ) -> io::Result<BoxStream> {
        let dial = async {
            let s = self.connect(direct, timeout).await?;
            match &self.link.proto {
                Proto::Socks5(auth) => socks5::connect(s, auth.as_ref(), target).await,
                Proto::Http(auth) => http::connect(s, auth.as_ref(), target).await,
                Proto::Shadowsocks(c) => shadowsocks::connect(s, c, target).await,
                Proto::Trojan { password } => trojan::connect(s, password, target).await,
                Proto::Vless { uuid } => vless::connect(s, uuid, target).await,
                Proto::Vmess(c) => vmess::connect(s, c, target).await,
            }
        };
        tokio::time::timeout(timeout, dial)
            .await
            .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "timed out")))
    }

    /// A datagram path to `target` through this node, within `timeout`
    /// (the DNS forwarders and health checks use it): the cone path, held
    /// to the one target.
    pub async fn packets(
        &self,
        direct: &Direct,
        target: SocketAddr,
        timeout: Duration,
    ) -> io::Result<Packets> {
        let cone = self.cone(direct, &Target::Addr(target), timeout).await?;
        Ok(cone.to_target(target))
    }

    /// The UDP relay's path through this node, opened for `first` (where
    /// the flow's first datagram goes), within `timeout`: full cone where
    /// the protocol names an address in every datagram (SOCKS5,
    /// Shadowsocks, Trojan), `first` only otherwise (VLESS, VMess). A name
    /// in a target is looked up by the node's server, not here.
    pub async fn cone(
        &self,
        direct: &Direct,
        first: &Target,
        timeout: Duration,
    ) -> io::Result<ConePackets> {
        first.check()?;
        let dial = async {
            match &self.link.proto {
                Proto::Socks5(auth) => {
                    let server = self.server(timeout).await?;
                    let s = self.connect(direct, timeout).await?;
                    socks5::associate(s, auth.as_ref(), server, direct).await
                }
                Proto::Http(_) => Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "an HTTP proxy carries no UDP",
                )),
                Proto::Shadowsocks(c) => {
                    let sock = direct.udp(self.server(timeout).await?)?;
                    Ok(shadowsocks::cone(sock, c))
                }
                Proto::Trojan { password } => {
                    trojan::cone(self.connect(direct, timeout).await?, password, first)
                }
                Proto::Vless { uuid } => {
                    vless::cone(self.connect(direct, timeout).await?, uuid, first)
                }
                Proto::Vmess(c) => vmess::cone(self.connect(direct, timeout).await?, c, first),
            }
        };
        tokio::time::timeout(timeout, dial)
            .await
            .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "timed out")))
    }
}
