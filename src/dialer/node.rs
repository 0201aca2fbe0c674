//! A proxy node: its share link, the TLS client to its server when the
//! link asks for TLS, and what the health checks found.
//!
//! `stream` and `packets` connect to the node's server with the direct
//! dialer (our socket mark, so the router never sends it back into the
//! proxy), put TLS on where needed, then let the protocol module ask the
//! server for a path to the target.
//!
//! Neighbours: `link` (what a node is), the protocol modules (`socks5`,
//! `http`, `shadowsocks`, `trojan`, `vless`, `vmess`), `health` (the check
//! results), `group` (picks nodes), `check` (keeps the results fresh).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use super::health::Health;
use super::link::{Link, Proto};
use super::{http, shadowsocks, socks5, trojan, vless, vmess};
use super::{BoxStream, Direct, Packets};
use crate::config::Host;
use crate::forwarder::tls::TlsClient;

/// Layer-4 protocol of a dial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum L4 {
    Tcp,
    Udp,
}

impl L4 {
    pub fn name(self) -> &'static str {
        match self {
            L4::Tcp => "tcp",
            L4::Udp => "udp",
        }
    }
}

pub struct Node {
    pub name: String,
    pub link: Link,
    /// The share link as written, to tell whether a reload changed it.
    pub text: String,
    tls: Option<TlsClient>,
    pub health: Health,
}

impl Node {
    /// A node from its section; `roots` are the trusted certificates for
    /// links with TLS (None when the config has no node that needs them).
    pub fn new(
        name: &str,
        text: &str,
        roots: impl Fn() -> Result<std::sync::Arc<rustls::RootCertStore>, String>,
    ) -> Result<Node, String> {
        let link = super::link::parse(text)?;
        if let Host::Name(n) = &link.host {
            return Err(format!(
                "the server '{n}' is a host name: dae dials proxy servers by address; \
                 put the server's IP address in the link"
            ));
        }
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
            health: Health::new(),
        })
    }

    /// The proxy server's address.
    pub fn server(&self) -> SocketAddr {
        match &self.link.host {
            Host::Ip(ip) => SocketAddr::new(*ip, self.link.port),
            // Refused in `new`.
            Host::Name(_) => SocketAddr::from(([0, 0, 0, 0], self.link.port)),
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
        let tcp = direct.tcp(self.server(), timeout).await?;
        Ok(match &self.tls {
            None => Box::new(tcp),
            Some(tls) => Box::new(
                tls.handshake(tcp)
                    .await
                    .map_err(|e| io::Error::other(format!("TLS to the proxy: {e}")))?,
            ),
        })
    }

    /// A stream to `target` through this node, within `timeout`.
    pub async fn stream(
        &self,
        direct: &Direct,
        target: SocketAddr,
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

    /// A datagram path to `target` through this node, within `timeout`.
    pub async fn packets(
        &self,
        direct: &Direct,
        target: SocketAddr,
        timeout: Duration,
    ) -> io::Result<Packets> {
        let dial = async {
            match &self.link.proto {
                Proto::Socks5(auth) => {
                    let s = self.connect(direct, timeout).await?;
                    socks5::associate(s, auth.as_ref(), self.server(), direct, target).await
                }
                Proto::Http(_) => Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "an HTTP proxy carries no UDP",
                )),
                Proto::Shadowsocks(c) => {
                    let sock = direct.udp(self.server())?;
                    Ok(shadowsocks::packets(sock, c, target))
                }
                Proto::Trojan { password } => {
                    trojan::packets(self.connect(direct, timeout).await?, password, target).await
                }
                Proto::Vless { uuid } => {
                    vless::packets(self.connect(direct, timeout).await?, uuid, target).await
                }
                Proto::Vmess(c) => {
                    vmess::packets(self.connect(direct, timeout).await?, c, target).await
                }
            }
        };
        tokio::time::timeout(timeout, dial)
            .await
            .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "timed out")))
    }
}
