//! Forwarders out: one per upstream, kept and reused, that carry a query to
//! the upstream and bring back its answer.
//!
//! - `udp://`: a socket on a fresh random port per round of queries, a
//!   random id and a random letter case of the name per query (0x20),
//!   retransmitted every second until the deadline (`udp.rs`, `udp_wire.rs`);
//!   the queries offer a UDP payload size of 1232, and an answer that comes
//!   back truncated (TC) or longer than a receive buffer is asked again over
//!   TCP (if TCP fails, the truncated answer is passed on).
//! - `tcp://`: one connection per upstream, length-prefixed, pipelined, reused
//!   until idle (`tcp.rs`).
//! - `tcp+udp://`: the same as `udp://` (kept for configs that name it).
//! - `tls://` (DoT): the TCP pipeline over TLS (`tls.rs`), certificates
//!   checked against `ca_file`.
//! - `https://` (DoH): HTTP/2 over TLS, one connection, a stream per query
//!   (`https.rs`).
//! - `quic://` (DoQ): one QUIC connection, a stream per query (`quic.rs`).
//! - `h3://` (DoH over HTTP/3): one QUIC connection, a request stream per
//!   query (`h3.rs`); the request and its checks are `doh.rs`'s, shared
//!   with `https://`.
//!
//! An upstream given by host name is looked up once, at its first query:
//! at its `bootstrap` address if it has one, else through the first plain
//! upstream with an IP address (never through the system resolver, which on
//! a router is ourselves). The address is kept until a connection to it
//! fails after its TTL.
//!
//! Every exchange asks the routing rules (`dialer::Outbounds`) which way
//! it leaves, by the upstream's address, port, UDP or TCP, and host name:
//! direct, or through the node a group picks. The connections are kept
//! per (address, way out), so a group switching nodes opens new ones and
//! the old ones close when idle. Through a node, UDP queries ride the
//! node's datagram path (`pipeline`), never the direct socket pool; a
//! group with no live node or a `block` rule fails the query (SERVFAIL),
//! and it never goes direct instead.
//!
//! Every reply is checked against the query (id, name, type, class) before it
//! is handed back; the controller decides what an answer means.
//!
//! Neighbours: `controller` (calls `exchange`), `dialer` (sockets, nodes,
//! routing), `wire`.

#[cfg(any(feature = "doh", feature = "doh3"))]
pub(crate) mod doh;
#[cfg(feature = "doh3")]
mod h3;
#[cfg(feature = "doh")]
mod https;
pub mod lookup;
mod pipeline;
#[cfg(feature = "doq")]
pub(crate) mod quic;
mod slot;
pub mod tls;
mod udp;
mod udp_wire;

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use rustls::RootCertStore;

use crate::config::{Host, Scheme, Upstream, UpstreamUrl};
use crate::dialer::{Choice, Direct, Outbounds, Via, L4};
use crate::routing::Flow;
use crate::wire::{self, QueryInfo};
use pipeline::{Framing, Pipeline};
use tls::TlsClient;

pub use udp::{Answer, Callback, UdpPool};

/// Ways out (address, direct or node) one forwarder keeps connections for.
const MAX_PATHS: usize = 8;

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
    /// A UDP answer longer than a receive buffer (asked again over TCP).
    Oversize,
    /// The TLS handshake failed (certificate, protocol).
    Tls(String),
    /// The upstream's host name could not be looked up.
    Lookup(String),
    /// DoH: an HTTP/2 or HTTP/3 error or status.
    Http(String),
    /// DoQ: a QUIC error.
    Quic(String),
    /// The routing rules say `block` for this upstream.
    Blocked,
    /// The group the routing rules chose has no live node.
    NoNode(Rc<str>),
    /// This kind of upstream cannot go the way the routing rules chose.
    Unsupported(&'static str),
}

impl fmt::Display for ForwardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ForwardError::Timeout => f.write_str("timed out"),
            ForwardError::Refused => f.write_str("connection refused"),
            ForwardError::Closed => f.write_str("connection closed before the answer"),
            ForwardError::Io(e) => write!(f, "{e}"),
            ForwardError::Busy => f.write_str("too many queries in flight"),
            ForwardError::Oversize => f.write_str("answer too long for UDP"),
            ForwardError::Tls(e) => write!(f, "TLS: {e}"),
            ForwardError::Lookup(e) => write!(f, "cannot look up its address: {e}"),
            ForwardError::Http(e) => write!(f, "HTTPS: {e}"),
            ForwardError::Quic(e) => write!(f, "QUIC: {e}"),
            ForwardError::Blocked => f.write_str("blocked by the routing rules"),
            ForwardError::NoNode(g) => write!(f, "group '{g}' has no node alive"),
            ForwardError::Unsupported(e) => f.write_str(e),
        }
    }
}

impl ForwardError {
    /// A failed TLS handshake: rustls's reason when there is one.
    fn from_tls(e: io::Error) -> ForwardError {
        match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
            Some(t) => ForwardError::Tls(t.to_string()),
            None => ForwardError::from(e),
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

/// What forwarders are built with, shared by the upstreams of one config.
pub struct Context {
    pub dialer: Direct,
    pub ca_file: PathBuf,
    /// The trusted certificates, read from `ca_file` when first needed.
    roots: RefCell<Option<Arc<RootCertStore>>>,
    /// Looks up upstreams given by host name without a bootstrap address.
    pub resolver: Option<Rc<Forwarder>>,
    /// The routing rules and nodes of this config.
    pub outbounds: Rc<Outbounds>,
}

impl Context {
    pub fn new(dialer: Direct, ca_file: PathBuf, outbounds: Rc<Outbounds>) -> Context {
        Context {
            dialer,
            ca_file,
            roots: RefCell::new(None),
            resolver: None,
            outbounds,
        }
    }

    /// The trusted certificates of `ca_file`, read once.
    pub fn roots(&self) -> Result<Arc<RootCertStore>, String> {
        if let Some(r) = &*self.roots.borrow() {
            return Ok(r.clone());
        }
        let r = tls::load_roots(&self.ca_file)?;
        *self.roots.borrow_mut() = Some(r.clone());
        Ok(r)
    }
}

/// Whether this build can forward to `url`, and if not, why.
pub fn check_supported(url: &UpstreamUrl) -> Result<(), String> {
    if built(url.scheme) {
        return Ok(());
    }
    Err(not_built(url.scheme))
}

fn not_built(s: Scheme) -> String {
    let have: Vec<&str> = schemes().iter().filter(|s| s.1).map(|s| s.0).collect();
    format!(
        "{} upstreams are not supported by this build (it has {})",
        scheme_name(s),
        have.join(", ")
    )
}

/// Whether this build has the forwarder for `s` (cargo features `doh`,
/// `doq`, `doh3`).
fn built(s: Scheme) -> bool {
    match s {
        Scheme::Udp | Scheme::Tcp | Scheme::TcpUdp | Scheme::Tls => true,
        Scheme::Https => cfg!(feature = "doh"),
        Scheme::Quic => cfg!(feature = "doq"),
        Scheme::H3 => cfg!(feature = "doh3"),
    }
}

/// Every scheme, for `dae schema --json`: (name, this build forwards to
/// it, an upstream of it at an IP address can look up others' host names).
pub fn schemes() -> Vec<(&'static str, bool, bool)> {
    [
        Scheme::Udp,
        Scheme::Tcp,
        Scheme::TcpUdp,
        Scheme::Tls,
        Scheme::Https,
        Scheme::H3,
        Scheme::Quic,
    ]
    .into_iter()
    .map(|s| (scheme_name(s), built(s), resolves(s)))
    .collect()
}

/// Whether `u` can look up other upstreams' host names: a plain upstream
/// at an IP address.
pub fn can_resolve(u: &Upstream) -> bool {
    resolves(u.url.scheme) && matches!(u.url.host, Host::Ip(_))
}

fn resolves(s: Scheme) -> bool {
    matches!(s, Scheme::Udp | Scheme::Tcp | Scheme::TcpUdp)
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

/// What a forwarder was built from: a reload keeps a forwarder (and its
/// connections) whose spec is the same.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Spec {
    url: UpstreamUrl,
    bootstrap: Option<IpAddr>,
    allow_insecure: bool,
    dialer: Direct,
    /// For encrypted schemes: the certificates they trust.
    ca_file: Option<PathBuf>,
}

/// What protects the queries of one upstream.
#[derive(Clone)]
enum Security {
    Plain,
    /// DoT.
    Tls(TlsClient),
    /// DoH over HTTP/2.
    #[cfg(feature = "doh")]
    Https(TlsClient, doh::DohTarget),
    /// DoQ: the QUIC client setup, and the server name the certificate
    /// must carry.
    #[cfg(feature = "doq")]
    Quic(quinn::ClientConfig, String),
    /// DoH over HTTP/3: the QUIC client setup, the server name, and where
    /// the requests go.
    #[cfg(feature = "doh3")]
    H3(quinn::ClientConfig, String, doh::DohTarget),
}

/// The transports to one address, one way out.
struct Paths {
    remote: SocketAddr,
    via: Via,
    /// Direct: the UDP schemes' socket pool.
    udp: Option<UdpPool>,
    /// Through a node: the UDP schemes' datagram path.
    packets: Option<Pipeline>,
    /// Used by `tcp://` and `tls://`, and by the UDP schemes for truncated
    /// answers.
    stream: Pipeline,
    /// Used by `https://`.
    #[cfg(feature = "doh")]
    doh: Option<https::DohClient>,
    /// Used by `quic://` (direct only).
    #[cfg(feature = "doq")]
    doq: Option<quic::DoqClient>,
    /// Used by `h3://` (direct only).
    #[cfg(feature = "doh3")]
    doh3: Option<h3::Doh3Client>,
}

impl Paths {
    fn new(remote: SocketAddr, via: Via, security: &Security) -> Rc<Paths> {
        let mut tls = None;
        #[cfg(feature = "doh")]
        let mut doh = None;
        #[cfg(feature = "doq")]
        let mut doq = None;
        #[cfg(feature = "doh3")]
        let mut doh3 = None;
        match security {
            Security::Plain => {}
            Security::Tls(t) => tls = Some(t.clone()),
            #[cfg(feature = "doh")]
            Security::Https(t, target) => {
                doh = Some(https::DohClient::new(
                    remote,
                    via.clone(),
                    t.clone(),
                    target.clone(),
                ))
            }
            #[cfg(feature = "doq")]
            Security::Quic(config, name) => {
                if let Via::Direct(d) = &via {
                    doq = Some(quic::DoqClient::new(
                        remote,
                        d.clone(),
                        config.clone(),
                        name,
                    ))
                }
            }
            #[cfg(feature = "doh3")]
            Security::H3(config, name, target) => {
                if let Via::Direct(d) = &via {
                    doh3 = Some(h3::Doh3Client::new(
                        remote,
                        d.clone(),
                        config.clone(),
                        name,
                        target.clone(),
                    ))
                }
            }
        }
        let direct = matches!(via, Via::Direct(_));
        Rc::new(Paths {
            remote,
            udp: direct.then(|| UdpPool::new(remote, via.direct().clone())),
            packets: (!direct).then(|| Pipeline::new(remote, via.clone(), Framing::Packets)),
            stream: Pipeline::new(remote, via.clone(), Framing::Stream(tls)),
            via,
            #[cfg(feature = "doh")]
            doh,
            #[cfg(feature = "doq")]
            doq,
            #[cfg(feature = "doh3")]
            doh3,
        })
    }
}

enum Route {
    /// An IP address, or a host name with its bootstrap address.
    Fixed(SocketAddr),
    /// A host name, looked up when needed (boxed: rare, and larger).
    Lookup(Box<lookup::Lookup>),
}

/// A reusable path to one upstream.
pub struct Forwarder {
    spec: Option<Spec>,
    scheme: Scheme,
    route: Route,
    security: Security,
    /// The routing rules of the config in use (replaced on reload).
    outbounds: RefCell<Rc<Outbounds>>,
    /// Connections kept per (address, way out), most recent last.
    paths: RefCell<Vec<Rc<Paths>>>,
}

impl Forwarder {
    pub fn new(u: &Upstream, ctx: &Context) -> Result<Forwarder, String> {
        check_supported(&u.url)?;
        let encrypted = is_encrypted(u.url.scheme);
        let host = match &u.url.host {
            Host::Ip(ip) => ip.to_string(),
            Host::Name(n) => n.clone(),
        };
        let roots = if !encrypted {
            None
        } else if u.allow_insecure {
            log::warn!(
                "upstream '{}': allow_insecure is set: its certificate is not checked",
                u.name
            );
            None
        } else {
            Some(ctx.roots()?)
        };
        let security = match u.url.scheme {
            Scheme::Tls => Security::Tls(TlsClient::new(&host, roots, &[b"dot"])?),
            #[cfg(feature = "doh")]
            Scheme::Https => {
                let path = u.url.path.as_deref().unwrap_or("/dns-query");
                Security::Https(
                    TlsClient::new(&host, roots, &[b"h2"])?,
                    doh::DohTarget::new(&host, u.url.port, path)?,
                )
            }
            #[cfg(feature = "doh3")]
            Scheme::H3 => {
                let path = u.url.path.as_deref().unwrap_or("/dns-query");
                let t = TlsClient::new(&host, roots, &[b"h3"])?;
                Security::H3(
                    quic::client_config(&t)?,
                    host.clone(),
                    doh::DohTarget::new(&host, u.url.port, path)?,
                )
            }
            #[cfg(feature = "doq")]
            Scheme::Quic => {
                let t = TlsClient::new(&host, roots, &[b"doq"])?;
                Security::Quic(quic::client_config(&t)?, host.clone())
            }
            _ => Security::Plain,
        };
        let route = match (&u.url.host, u.bootstrap) {
            (&Host::Ip(ip), _) | (Host::Name(_), Some(ip)) => {
                Route::Fixed(SocketAddr::new(ip, u.url.port))
            }
            (Host::Name(name), None) => {
                let resolver = ctx.resolver.clone().ok_or_else(|| no_resolver(name))?;
                Route::Lookup(Box::new(lookup::Lookup::new(
                    name.clone(),
                    u.url.port,
                    resolver,
                )))
            }
        };
        Ok(Forwarder {
            spec: Some(Spec {
                url: u.url.clone(),
                bootstrap: u.bootstrap,
                allow_insecure: u.allow_insecure,
                dialer: ctx.dialer.clone(),
                ca_file: encrypted.then(|| ctx.ca_file.clone()),
            }),
            scheme: u.url.scheme,
            route,
            security,
            outbounds: RefCell::new(ctx.outbounds.clone()),
            paths: RefCell::new(Vec::new()),
        })
    }

    /// A forwarder to the address the client asked (`asis`): UDP, with TCP
    /// for truncated answers to TCP clients.
    pub fn asis(remote: SocketAddr, outbounds: Rc<Outbounds>) -> Forwarder {
        Forwarder {
            spec: None,
            scheme: Scheme::Udp,
            route: Route::Fixed(remote),
            security: Security::Plain,
            outbounds: RefCell::new(outbounds),
            paths: RefCell::new(Vec::new()),
        }
    }

    /// From now on, route by `outbounds` (a reload kept this forwarder).
    pub fn use_outbounds(&self, outbounds: &Rc<Outbounds>) {
        *self.outbounds.borrow_mut() = outbounds.clone();
    }

    /// The connections to `remote` the way the routing rules send a dial
    /// of `l4` now.
    fn paths_for(&self, remote: SocketAddr, l4: L4) -> Result<Rc<Paths>, ForwardError> {
        let out = self.outbounds.borrow().clone();
        let via = if out.all_direct() {
            Via::Direct(out.direct.clone())
        } else {
            let domain = match &self.route {
                Route::Lookup(l) => Some(l.name()),
                Route::Fixed(_) => None,
            };
            let choice = out.choose(&Flow {
                remote,
                l4,
                domain,
                lan: None,
            });
            log::trace!("{remote} {}: {}", l4.name(), choice.describe());
            match choice {
                Choice::Direct => Via::Direct(out.direct.clone()),
                Choice::Node(n) => Via::Node(out.direct.clone(), n),
                Choice::Block => return Err(ForwardError::Blocked),
                Choice::NoNode(g) => return Err(ForwardError::NoNode(g)),
            }
        };
        if via.node().is_some() {
            match self.scheme {
                Scheme::Quic => {
                    return Err(ForwardError::Unsupported(
                        "quic:// upstreams cannot go through a proxy node (route them direct)",
                    ))
                }
                Scheme::H3 => {
                    return Err(ForwardError::Unsupported(
                        "h3:// upstreams cannot go through a proxy node (QUIC; route them direct)",
                    ))
                }
                _ => {}
            }
        }
        let mut paths = self.paths.borrow_mut();
        if let Some(i) = paths
            .iter()
            .position(|p| p.remote == remote && p.via.same(&via))
        {
            if i + 1 != paths.len() {
                let p = paths.remove(i);
                paths.push(p);
            }
            return Ok(paths[paths.len() - 1].clone());
        }
        if paths.len() >= MAX_PATHS {
            paths.remove(0);
        }
        let p = Paths::new(remote, via, &self.security);
        paths.push(p.clone());
        Ok(p)
    }

    /// Whether this forwarder was built for `u` with `ctx` as it is now.
    pub fn same_path(&self, u: &Upstream, ctx: &Context) -> bool {
        let encrypted = is_encrypted(u.url.scheme);
        self.spec.as_ref().is_some_and(|s| {
            s.url == u.url
                && s.bootstrap == u.bootstrap
                && s.allow_insecure == u.allow_insecure
                && s.dialer == ctx.dialer
                && s.ca_file.as_ref() == encrypted.then_some(&ctx.ca_file)
        })
    }

    /// The UDP path of a plain `udp://` upstream with a fixed address,
    /// reached directly: its queries can be sent with a callback instead of
    /// a task waiting (`DirectUdp::send_then`). `None` for any other
    /// upstream or way out (and when choosing the way fails: `exchange`
    /// reports that).
    pub fn direct_udp(self: &Rc<Self>) -> Option<DirectUdp> {
        let Route::Fixed(remote) = self.route else {
            return None;
        };
        if self.scheme != Scheme::Udp {
            return None;
        }
        let paths = self.paths_for(remote, L4::Udp).ok()?;
        paths.udp.is_some().then(|| DirectUdp {
            paths,
            forwarder: self.clone(),
        })
    }

    /// Sends `query` and returns the upstream's answer (its id is ours, not
    /// the client's; the caller patches it). `_client_over_tcp` no longer
    /// changes anything: UDP answers that do not fit are asked again over
    /// TCP for every client.
    ///
    /// Plain fns returning `async move` blocks here and below: an `async
    /// fn` keeps its arguments twice, and every query waiting on an
    /// upstream carries this future.
    #[allow(clippy::manual_async_fn)]
    pub fn exchange<'a>(
        &'a self,
        query: &'a [u8],
        info: &'a QueryInfo,
        _client_over_tcp: bool,
        deadline: Instant,
    ) -> impl Future<Output = Result<Vec<u8>, ForwardError>> + 'a {
        async move {
            let remote = match &self.route {
                Route::Fixed(r) => *r,
                Route::Lookup(l) => Box::pin(l.address(deadline)).await?,
            };
            let first = match self.scheme {
                Scheme::Tcp | Scheme::Tls | Scheme::Https => L4::Tcp,
                _ => L4::Udp,
            };
            let paths = self.paths_for(remote, first)?;
            let result = self.exchange_on(&paths, query, info, deadline).await;
            if let (Route::Lookup(l), Err(ForwardError::Refused | ForwardError::Io(_))) =
                (&self.route, &result)
            {
                l.failed(remote);
            }
            result
        }
    }

    #[allow(clippy::manual_async_fn)]
    fn exchange_on<'a>(
        &'a self,
        paths: &'a Paths,
        query: &'a [u8],
        info: &'a QueryInfo,
        deadline: Instant,
    ) -> impl Future<Output = Result<Vec<u8>, ForwardError>> + 'a {
        async move {
            // The stream futures are boxed: most queries never take that path,
            // and every pending query carries this future's size.
            match self.scheme {
                Scheme::Tcp | Scheme::Tls => {
                    return Box::pin(paths.stream.exchange(query, info, deadline)).await
                }
                #[cfg(feature = "doh")]
                Scheme::Https => {
                    return match &paths.doh {
                        Some(doh) => Box::pin(doh.exchange(query, info, deadline)).await,
                        None => Err(ForwardError::Closed),
                    }
                }
                #[cfg(feature = "doq")]
                Scheme::Quic => {
                    return match &paths.doq {
                        Some(doq) => Box::pin(doq.exchange(query, info, deadline)).await,
                        None => Err(ForwardError::Closed),
                    }
                }
                #[cfg(feature = "doh3")]
                Scheme::H3 => {
                    return match &paths.doh3 {
                        Some(doh3) => Box::pin(doh3.exchange(query, info, deadline)).await,
                        None => Err(ForwardError::Closed),
                    }
                }
                // Not built in: refused by `check_supported` before any
                // forwarder exists; never sent in the clear.
                #[allow(unreachable_patterns)]
                Scheme::Https | Scheme::H3 | Scheme::Quic => return Err(ForwardError::Closed),
                Scheme::Udp | Scheme::TcpUdp => {}
            }
            let reply = match (&paths.udp, &paths.packets) {
                (Some(udp), _) => udp.exchange(query, info, deadline).await,
                (None, Some(packets)) => Box::pin(packets.exchange(query, info, deadline)).await,
                (None, None) => return Err(ForwardError::Closed),
            };
            if needs_tcp(&reply) {
                return Box::pin(self.over_tcp(paths.remote, query, info, reply, deadline)).await;
            }
            reply
        }
    }

    /// Asks `query` again over TCP after the UDP answer `udp_reply` did not
    /// fit (`needs_tcp`); if TCP fails, a truncated UDP answer is the
    /// answer (the client may try TCP itself).
    async fn over_tcp(
        &self,
        remote: SocketAddr,
        query: &[u8],
        info: &QueryInfo,
        udp_reply: Result<Vec<u8>, ForwardError>,
        deadline: Instant,
    ) -> Result<Vec<u8>, ForwardError> {
        log::debug!("{remote}: answer too long for UDP, asking again over TCP");
        // TCP may be routed another way than UDP.
        let tcp = match self.paths_for(remote, L4::Tcp) {
            Ok(tcp) => Box::pin(tcp.stream.exchange(query, info, deadline)).await,
            Err(e) => Err(e),
        };
        match (tcp, udp_reply) {
            (Ok(answer), _) => Ok(answer),
            (Err(e), Ok(truncated)) => {
                log::debug!("{remote}: over TCP: {e}; passing the truncated answer on");
                Ok(truncated)
            }
            (Err(e), Err(_)) => Err(e),
        }
    }
}

/// Whether a UDP exchange's outcome is an answer that did not fit: marked
/// truncated (TC), or longer than a receive buffer.
pub fn needs_tcp(reply: &Result<Vec<u8>, ForwardError>) -> bool {
    match reply {
        Ok(answer) => answer.len() >= wire::HEADER_LEN && wire::flags(answer) & wire::flag::TC != 0,
        Err(e) => matches!(e, ForwardError::Oversize),
    }
}

/// A plain `udp://` upstream's direct socket pool (`Forwarder::direct_udp`).
pub struct DirectUdp {
    paths: Rc<Paths>,
    forwarder: Rc<Forwarder>,
}

impl DirectUdp {
    /// Asks again over TCP after a UDP answer that did not fit
    /// (`needs_tcp`); see `Forwarder::over_tcp`.
    pub async fn over_tcp(
        &self,
        query: &[u8],
        info: &QueryInfo,
        udp_reply: Answer,
        deadline: Instant,
    ) -> Answer {
        let remote = self.paths.remote;
        self.forwarder
            .over_tcp(remote, query, info, udp_reply, deadline)
            .await
    }
}

impl DirectUdp {
    /// The pool itself, for `UdpPool::send_then` (a handle of its own, so
    /// the `DirectUdp` can go into the callback).
    pub fn pool(&self) -> PoolRef {
        PoolRef(self.paths.clone())
    }
}

/// A direct UDP path's socket pool (`DirectUdp::pool`).
pub struct PoolRef(Rc<Paths>);

impl std::ops::Deref for PoolRef {
    type Target = UdpPool;

    fn deref(&self) -> &UdpPool {
        // `direct_udp` makes a `DirectUdp` only of paths with a pool.
        self.0.udp.as_ref().expect("a direct UDP path has its pool")
    }
}

/// A random query id that `in_use` says is free (on one socket or
/// connection).
fn free_id(in_use: impl Fn(u16) -> bool) -> u16 {
    loop {
        let id = crate::rand::u16();
        if !in_use(id) {
            return id;
        }
    }
}

fn is_encrypted(s: Scheme) -> bool {
    matches!(s, Scheme::Tls | Scheme::Https | Scheme::H3 | Scheme::Quic)
}

fn no_resolver(name: &str) -> String {
    format!(
        "'{name}' is a host name: give its address in option bootstrap, or define a plain \
         upstream (udp, tcp) with an IP address to look it up"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scheme_the_build_lacks_is_refused_naming_those_it_has() {
        let have: Vec<&str> = schemes().iter().filter(|s| s.1).map(|s| s.0).collect();
        for (name, is_built, _) in schemes() {
            let url = crate::config::url::upstream(&format!("{name}://192.0.2.53")).unwrap();
            match check_supported(&url) {
                Ok(()) => assert!(is_built, "{name}"),
                Err(e) => {
                    assert!(!is_built, "{name}");
                    assert_eq!(
                        e,
                        format!(
                            "{name} upstreams are not supported by this build (it has {})",
                            have.join(", ")
                        )
                    );
                }
            }
        }
        assert_eq!(built(Scheme::H3), cfg!(feature = "doh3"));
        assert_eq!(
            not_built(Scheme::H3),
            format!(
                "h3 upstreams are not supported by this build (it has {})",
                have.join(", ")
            )
        );
        #[cfg(not(any(feature = "doh", feature = "doq", feature = "doh3")))]
        assert_eq!(
            check_supported(&crate::config::url::upstream("h3://192.0.2.53").unwrap()),
            Err(
                "h3 upstreams are not supported by this build (it has udp, tcp, tcp+udp, tls)"
                    .into()
            )
        );
    }
}
