//! The DNS controller: from a client's query to the bytes of its answer.
//!
//! For each query, in this order (as in dae's `handleWithResponseWriter_`):
//! 1. read the header and question (`wire::parse_query`); a malformed query
//!    gets FORMERR/NOTIMP, or is dropped if it cannot even be answered;
//! 2. run the request rules (`rules`): an upstream, `asis` (the server the
//!    client asked) or `reject` (NOERROR with no records, at once, and the
//!    cached entry dropped);
//! 3. look in the `cache`: a hit is answered at once with TTLs counted down;
//!    an expired entry within the stale window is answered with a short TTL
//!    and refreshed in the background;
//! 4. on a miss, join the query's flight (`singleflight`): one exchange per
//!    distinct query goes upstream through the upstream's `forwarder`, the
//!    response rules decide (accept, reject, or ask another upstream, at most
//!    `MAX_LOOKUP_DEPTH` exchanges), and the answer is cached and shared.
//!
//! `handle` does steps 1-3 without waiting, so the listener can answer cache
//! hits in a batch; what must wait comes back as `Step::Pending`, which the
//! listener hands to `pursue`: a plain-UDP miss is followed without a task
//! (`chase`), anything else runs as a task with `finish`. Both judge answers
//! with `judge` and end a flight with `land`. Every failure answers SERVFAIL;
//! an upstream's REFUSED is an answer the response rules judge like any
//! other, and passed on if they accept it.
//!
//! What goes upstream is built afresh from the client's question
//! (`wire::upstream_query`), and what comes back is made fit to share once,
//! as it arrives (`wire::normalize_answer`: the OPT record rebuilt for the
//! client, RA set, TTLs sane), so a cache hit stays one copy and a few
//! patches and never carries another client's exchange.
//!
//! The config-derived part (`Policy`: rules, upstreams and their forwarders)
//! is swapped whole on reload; the cache and the flights in progress stay.

pub mod cache;
mod chase;
pub mod rules;
pub mod singleflight;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::config::{Config, ConfigError, DnsTarget, Host, IpVersionPrefer};
use crate::dialer::{Direct, Outbounds};
use crate::forwarder::{self, Forwarder};
use crate::wire::{self, rcode, rtype, QueryError, QueryInfo, ResponseInfo};

use cache::{Cache, Entry, Key, Lookup};
pub use chase::Sending;
use rules::{Facts, Rules};
use singleflight::{Flights, Join, Outcome};

/// How many upstream exchanges one query may take through response rules
/// before it is given up as a rule loop (dae's MaxDnsLookupDepth).
pub const MAX_LOOKUP_DEPTH: usize = 3;
/// Queries that may wait on upstreams at once; past this, SERVFAIL at once
/// (memory stays bounded under a flood of unique names).
pub const MAX_PENDING: usize = 1024;

/// How the query came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// Who asked, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    pub transport: Transport,
    pub addr: SocketAddr,
    /// The server the client sent its query to, when the query was
    /// intercepted on its way there; `None` on the plain listener.
    pub asked: Option<SocketAddr>,
}

/// What `handle` did with a query.
pub enum Step {
    /// The reply is in `out`.
    Replied,
    /// Nothing to send.
    Dropped,
    /// Must wait for an upstream: hand it to `Controller::pursue`.
    Pending(Pending),
}

/// A query that missed the cache, ready to go upstream.
pub struct Pending {
    query: Vec<u8>,
    info: QueryInfo,
    target: DnsTarget,
    /// Shared with the flight it leads or follows, and kept by its lead.
    key: Rc<[u8]>,
    policy: Rc<Policy>,
    /// For `ipversion_prefer`: the preferred type's own target, to ask
    /// alongside.
    preferred: Option<(u16, DnsTarget)>,
    /// When the query came in.
    arrived: Instant,
    _slot: PendingSlot,
}

/// Counts a pending query while it lives.
struct PendingSlot(Rc<Cell<usize>>);

impl Drop for PendingSlot {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

/// Counters for `dae status`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub queries: u64,
    pub malformed: u64,
    pub rejected: u64,
    pub refused: u64,
    pub upstream_exchanges: u64,
    pub upstream_failures: u64,
    pub servfail: u64,
}

/// At most this many `asis` forwarders (one per server clients ask) are kept.
const MAX_ASIS_FORWARDERS: usize = 64;

/// Everything the controller takes from the config; replaced whole on reload.
pub struct Policy {
    request: Rules,
    response: Rules,
    /// The forwarder of each upstream, in `Config::upstreams` order.
    forwarders: Vec<Rc<Forwarder>>,
    fixed_ttl: HashMap<String, u32>,
    prefer: IpVersionPrefer,
    timeout: Duration,
    dialer: Direct,
    /// Routing of our own dials, nodes and groups (health checks run while
    /// it lives).
    pub outbounds: Rc<Outbounds>,
    /// Forwarders to the servers clients asked, for `asis`.
    asis: RefCell<HashMap<SocketAddr, Rc<Forwarder>>>,
}

impl Policy {
    /// Whether answering a query that went upstream needs its name as text
    /// (response rules on names, `fixed_domain_ttl`, addresses learned for
    /// the kernel's domain routing, debug logging); the
    /// warnings show it with `wire::NameText` instead.
    fn needs_qname_text(&self) -> bool {
        self.response.needs_qname()
            || !self.fixed_ttl.is_empty()
            || crate::routing::kernel::learning()
            || log::log_enabled!(log::Level::Debug)
    }

    fn fixed_ttl_of(&self, qname: &str) -> Option<u32> {
        if self.fixed_ttl.is_empty() {
            return None;
        }
        self.fixed_ttl.get(qname).copied()
    }

    /// Builds the policy for `config`, keeping the forwarders (and their open
    /// connections) of `previous` whose upstream did not change.
    pub fn new(config: &Config, previous: Option<&Policy>) -> Result<Policy, String> {
        let dialer = Direct::new(
            config.general.so_mark,
            config.general.wan_interface.as_deref(),
        );
        let ca_file = &config.general.ca_file;
        // Proxy servers given by name are looked up through the first plain
        // upstream at an IP address, always direct.
        let resolver = config.upstreams.iter().position(forwarder::can_resolve);
        let node_resolver = match resolver {
            Some(i) => {
                let direct = Rc::new(Outbounds::direct_only(dialer.clone()));
                let ctx = forwarder::Context::new(dialer.clone(), ca_file.clone(), direct);
                Some(Rc::new(Forwarder::new(&config.upstreams[i], &ctx)?))
            }
            None => None,
        };
        let outbounds = Rc::new(Outbounds::new(
            config,
            dialer.clone(),
            previous.map(|p| &*p.outbounds),
            &|| forwarder::tls::load_roots(ca_file),
            node_resolver.as_ref(),
        )?);
        let mut ctx = forwarder::Context::new(dialer.clone(), ca_file.clone(), outbounds.clone());
        let build = |i: usize, ctx: &forwarder::Context| -> Result<Rc<Forwarder>, String> {
            let u = &config.upstreams[i];
            let kept =
                previous.and_then(|p| p.forwarders.iter().find(|f| f.same_path(u, ctx)).cloned());
            match kept {
                Some(f) => Ok(f),
                None => Forwarder::new(u, ctx)
                    .map(Rc::new)
                    .map_err(|e| format!("upstream '{}': {e}", u.name)),
            }
        };
        // The first plain upstream at an IP address looks up the others'
        // host names; it is built first.
        if let Some(i) = resolver {
            ctx.resolver = Some(build(i, &ctx)?);
        }
        let mut forwarders = Vec::with_capacity(config.upstreams.len());
        for i in 0..config.upstreams.len() {
            match (&ctx.resolver, resolver) {
                (Some(r), Some(ri)) if ri == i => forwarders.push(r.clone()),
                _ => forwarders.push(build(i, &ctx)?),
            }
        }
        let dns = &config.dns;
        let asis: HashMap<SocketAddr, Rc<Forwarder>> = previous
            .filter(|p| p.dialer == dialer)
            .map(|p| p.asis.borrow().clone())
            .unwrap_or_default();
        Ok(Policy {
            request: Rules::new(&dns.request_rules, dns.request_fallback.clone()),
            response: Rules::new(&dns.response_rules, dns.response_fallback.clone()),
            forwarders,
            fixed_ttl: dns.fixed_domain_ttl.iter().cloned().collect(),
            prefer: dns.ipversion_prefer,
            timeout: dns.upstream_timeout,
            asis: RefCell::new(asis),
            dialer,
            outbounds,
        })
    }

    /// Points every forwarder at this policy's routing. Forwarders kept
    /// from the previous policy are shared with it, so this runs only when
    /// the policy is installed: a refused reload leaves the old one whole.
    fn activate(&self) {
        for f in self.forwarders.iter().chain(self.asis.borrow().values()) {
            f.use_outbounds(&self.outbounds);
        }
    }

    /// The forwarder to `server` for `asis`, kept for the next query.
    fn asis_forwarder(&self, server: SocketAddr) -> Rc<Forwarder> {
        let mut asis = self.asis.borrow_mut();
        if let Some(f) = asis.get(&server) {
            return f.clone();
        }
        if asis.len() >= MAX_ASIS_FORWARDERS {
            asis.clear();
        }
        let f = Rc::new(Forwarder::asis(server, self.outbounds.clone()));
        asis.insert(server, f.clone());
        f
    }

    /// With `ipversion_prefer`, the type whose records make this query's
    /// answer empty: A for AAAA when 4 is preferred, and the reverse.
    fn preferred_type(&self, qtype: u16) -> Option<u16> {
        match (self.prefer, qtype) {
            (IpVersionPrefer::V4, rtype::AAAA) => Some(rtype::A),
            (IpVersionPrefer::V6, rtype::A) => Some(rtype::AAAA),
            _ => None,
        }
    }
}

/// Checks what `config::load` cannot know: that this build can reach every
/// upstream. `dae validate` and reload both run it.
pub fn check(config: &Config) -> Result<(), Vec<ConfigError>> {
    let can_look_up = config.upstreams.iter().any(forwarder::can_resolve);
    let errors: Vec<ConfigError> = config
        .upstreams
        .iter()
        .filter_map(|u| {
            let lookup = match &u.url.host {
                Host::Name(n) if u.bootstrap.is_none() && !can_look_up => Err(format!(
                    "'{n}' is a host name: give its address in option bootstrap, or define a \
                     plain upstream (udp, tcp) with an IP address to look it up"
                )),
                _ => Ok(()),
            };
            forwarder::check_supported(&u.url)
                .and(lookup)
                .err()
                .map(|message| ConfigError {
                    section: Some(("upstream".into(), u.name.clone())),
                    option: Some("address".into()),
                    message,
                })
        })
        .collect();
    let mut errors = errors;
    for n in &config.nodes {
        if let Ok(link) = crate::config::link::parse(&n.link) {
            match link.host {
                Host::Name(name) if !can_look_up => errors.push(ConfigError {
                    section: Some(("node".into(), n.name.clone())),
                    option: Some("link".into()),
                    message: format!(
                        "the server '{name}' is a host name: put its IP address in the link, \
                         or define a plain upstream (udp, tcp) with an IP address to look it up"
                    ),
                }),
                _ => {}
            }
        }
    }
    if let Err(message) = crate::routing::kernel::limits(&config.routing) {
        errors.push(ConfigError {
            section: Some(("routing".into(), "routing".into())),
            option: Some("rule".into()),
            message,
        });
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// The DNS controller.
pub struct Controller {
    policy: RefCell<Rc<Policy>>,
    cache: RefCell<Cache>,
    flights: Rc<RefCell<Flights>>,
    pending: Rc<Cell<usize>>,
    stats: RefCell<Stats>,
}

impl Controller {
    pub fn new(config: &Config) -> Result<Rc<Controller>, String> {
        let policy = Policy::new(config, None)?;
        policy.activate();
        let dns = &config.dns;
        Ok(Rc::new(Controller {
            policy: RefCell::new(Rc::new(policy)),
            cache: RefCell::new(Cache::new(
                dns.cache_size,
                dns.serve_stale,
                dns.stale_window,
            )),
            flights: Rc::default(),
            pending: Rc::default(),
            stats: RefCell::default(),
        }))
    }

    /// The routing of the daemon's own dials in use, with its groups.
    pub fn outbounds(&self) -> Rc<Outbounds> {
        self.policy.borrow().outbounds.clone()
    }

    /// Builds the policy for a new config without switching to it.
    pub fn prepare(&self, config: &Config) -> Result<Policy, String> {
        Policy::new(config, Some(&self.policy.borrow()))
    }

    /// Switches to a prepared policy. Queries already under way finish with
    /// the policy they started with; the cache keeps its entries.
    pub fn install(&self, policy: Policy, config: &Config) {
        policy.activate();
        *self.policy.borrow_mut() = Rc::new(policy);
        let dns = &config.dns;
        self.cache
            .borrow_mut()
            .reconfigure(dns.cache_size, dns.serve_stale, dns.stale_window);
    }

    pub fn stats(&self) -> Stats {
        *self.stats.borrow()
    }

    /// Teaches the kernel's routing the addresses of every fresh cached
    /// answer again, for what is left of its life. After a reload that
    /// changed the `domain()` rules the kernel no longer counts what it
    /// learned (it counted for the old rules); without this, flows to names
    /// the LAN resolved before the reload would go by address until their
    /// clients asked again. Returns the answers taught.
    pub fn relearn(&self) -> usize {
        if !crate::routing::kernel::learning() {
            return 0;
        }
        let now = Instant::now();
        let mut taught = 0;
        let mut name = String::new();
        self.cache.borrow().for_each_fresh(now, |qname, entry| {
            let Ok(scan) = wire::scan_response(entry.packet()) else {
                return;
            };
            if scan.answer_ips.is_empty() {
                return;
            }
            let age = now.saturating_duration_since(entry.stored()).as_secs();
            let left = entry
                .life()
                .saturating_sub(u32::try_from(age).unwrap_or(u32::MAX));
            name.clear();
            wire::name_to_text(qname, &mut name);
            crate::routing::kernel::learn(&name, &scan.answer_ips, left);
            taught += 1;
        });
        taught
    }

    pub fn cache_stats(&self) -> (cache::CacheStats, usize, usize) {
        let c = self.cache.borrow();
        (c.stats, c.len(), c.capacity())
    }

    /// Answers what can be answered now (cache, reject, errors) into `out`;
    /// anything else comes back as `Step::Pending`.
    pub fn handle(self: &Rc<Self>, query: &[u8], client: &Client, out: &mut Vec<u8>) -> Step {
        self.stats.borrow_mut().queries += 1;
        let info = match wire::parse_query(query) {
            Ok(info) => info,
            Err(QueryError::Drop(why)) => {
                self.stats.borrow_mut().malformed += 1;
                log::debug!("{}: dropped a packet: {why}", client.addr);
                return Step::Dropped;
            }
            Err(QueryError::Reply(code, why)) => {
                self.stats.borrow_mut().malformed += 1;
                log::debug!(
                    "{}: malformed query ({why}), answering rcode {code}",
                    client.addr
                );
                wire::header_only_reply(query, code, out);
                return Step::Replied;
            }
        };
        if info.edns.is_some_and(|e| e.version != 0) {
            // Before the rules and the cache: no answer of ours is in a
            // version we do not speak (RFC 6891 §6.1.3).
            log::debug!(
                "{}: EDNS version {} query, answering BADVERS",
                client.addr,
                info.edns.map_or(0, |e| e.version)
            );
            wire::badvers_reply(query, &info, out);
            return Step::Replied;
        }
        let policy = self.policy.borrow().clone();
        let mut qname = String::new();
        if policy.request.needs_qname() || log::log_enabled!(log::Level::Debug) {
            wire::name_to_text(info.qname(query), &mut qname);
        }
        let target = policy.request.select(&request_facts(&qname, info.qtype)).0;
        let asked = match target {
            DnsTarget::Reject => {
                self.stats.borrow_mut().rejected += 1;
                self.cache
                    .borrow_mut()
                    .remove(Key::new(query, &info, None).as_bytes());
                log::debug!(
                    "{}: {qname} type {}: rejected",
                    client.addr,
                    wire::TypeName(info.qtype)
                );
                self.reply_empty(query, &info, rcode::NOERROR, client, out);
                return Step::Replied;
            }
            DnsTarget::Asis => match client.asked {
                Some(server) => Some(server.ip()),
                None => {
                    self.stats.borrow_mut().refused += 1;
                    log::debug!(
                        "{}: {qname}: rule says asis, but a query to the plain listener was not \
                         addressed to another server; answering REFUSED",
                        client.addr
                    );
                    self.reply_empty(query, &info, rcode::REFUSED, client, out);
                    return Step::Replied;
                }
            },
            _ => None,
        };
        let target = target.clone();
        let key = Key::new(query, &info, asked);
        let now = Instant::now();

        // ipversion_prefer: if the preferred type is known to have records,
        // this type's answer is empty.
        let mut preferred = None;
        if let Some(ptype) = policy.preferred_type(info.qtype) {
            let pinfo = QueryInfo {
                qtype: ptype,
                ..info
            };
            let ptarget = policy.request.select(&request_facts(&qname, ptype)).0;
            if *ptarget != DnsTarget::Reject {
                let pkey = Key::new(query, &pinfo, asked);
                match self.cache.borrow().peek_fresh(pkey.as_bytes(), now) {
                    Some(e) if e.has_qtype_answer() => {
                        self.reply_empty(query, &info, rcode::NOERROR, client, out);
                        return Step::Replied;
                    }
                    Some(_) => {}
                    None => preferred = Some((ptype, ptarget.clone())),
                }
            }
        }

        if preferred.is_none() {
            // The entry is a view into the cache: written out before the
            // cache is let go.
            let mut cache = self.cache.borrow_mut();
            match cache.lookup(key.as_bytes(), now) {
                Lookup::Fresh(entry) => {
                    log::debug!(
                        "{}: {qname} type {}: cache hit",
                        client.addr,
                        wire::TypeName(info.qtype)
                    );
                    entry.write_fresh(query, &info, now, out);
                    drop(cache);
                    fit(out, query, &info, client);
                    return Step::Replied;
                }
                Lookup::Stale(entry) => {
                    log::debug!(
                        "{}: {qname} type {}: stale hit, refreshing",
                        client.addr,
                        wire::TypeName(info.qtype)
                    );
                    entry.write_stale(query, &info, out);
                    drop(cache);
                    fit(out, query, &info, client);
                    if !self.flights.borrow().in_flight(key.as_bytes()) {
                        self.spawn_refresh(query, info, key.as_bytes(), target, policy, *client);
                    }
                    return Step::Replied;
                }
                Lookup::Miss => {}
            }
        }

        if self.pending.get() >= MAX_PENDING {
            log::warn!("{MAX_PENDING} queries already wait on upstreams; answering SERVFAIL");
            self.stats.borrow_mut().servfail += 1;
            self.reply_empty(query, &info, rcode::SERVFAIL, client, out);
            return Step::Replied;
        }
        self.pending.set(self.pending.get() + 1);
        Step::Pending(Pending {
            query: wire::upstream_query(query, &info),
            info,
            target,
            key: key.as_bytes().into(),
            policy,
            preferred,
            arrived: now,
            _slot: PendingSlot(self.pending.clone()),
        })
    }

    /// Resolves a pending query and hands the reply for its client to
    /// `deliver`. `pursue` spawns this future as the query's task, so
    /// the task holds the query once (a wrapper around it would hold it
    /// twice) and stays under 1 KB, which glibc serves from its per-thread
    /// cache instead of consolidating its free lists on every miss.
    ///
    /// A plain fn returning an `async move` block: an `async fn` would keep
    /// its arguments twice in the task.
    #[allow(clippy::manual_async_fn)]
    ///
    /// `deliver` sends the reply at once where it can and returns `None`,
    /// or returns the (boxed) future that sends it: a sending future kept
    /// inline would make every task larger for the rare case that waits.
    pub fn finish<F>(
        self: Rc<Self>,
        p: Pending,
        client: Client,
        deliver: F,
    ) -> impl Future<Output = ()>
    where
        F: FnOnce(&[u8]) -> Option<Sending>,
    {
        async move {
            let mut qname = String::new();
            if p.policy.needs_qname_text() {
                wire::name_to_text(p.info.qname(&p.query), &mut qname);
            }
            // Boxed, in a statement of its own (a temporary would live across
            // the await and take the room in the task anyway): the task and
            // this are then two allocations small enough for the allocator's
            // per-thread cache. `ipversion_prefer` runs two resolutions.
            let resolving: Pin<Box<dyn Future<Output = Option<Outcome>> + '_>> = match &p.preferred
            {
                None => Box::pin(async {
                    Some(
                        self.resolve(
                            &p.policy, &p.query, &p.info, &p.key, &p.target, &client, &qname,
                        )
                        .await,
                    )
                }),
                Some((ptype, ptarget)) => {
                    Box::pin(self.resolve_preferring(&p, *ptype, ptarget, &client, &qname))
                }
            };
            let outcome = resolving.await;
            let mut out = Vec::new();
            self.write_reply(outcome, &p, &client, Instant::now(), &mut out);
            drop((p, qname));
            let sending = deliver(&out);
            drop(out);
            if let Some(sending) = sending {
                sending.await
            }
        }
    }

    /// `ipversion_prefer`: asks for the preferred type alongside; `None`
    /// when the preferred type has records (this type's answer is then
    /// empty), else this query's own outcome.
    async fn resolve_preferring(
        &self,
        p: &Pending,
        ptype: u16,
        ptarget: &DnsTarget,
        client: &Client,
        qname: &str,
    ) -> Option<Outcome> {
        let asked = client.asked.filter(|_| p.target == DnsTarget::Asis);
        let (pq, pinfo) = wire::with_qtype(&p.query, &p.info, ptype);
        let pkey: Rc<[u8]> = Key::new(&pq, &pinfo, asked.map(|a| a.ip()))
            .as_bytes()
            .into();
        let theirs = self.resolve(&p.policy, &pq, &pinfo, &pkey, ptarget, client, qname);
        let mine = self.resolve(
            &p.policy, &p.query, &p.info, &p.key, &p.target, client, qname,
        );
        let (theirs, mine) = tokio::join!(theirs, mine);
        if matches!(&theirs, Ok(e) if e.has_qtype_answer()) {
            log::debug!(
                "{}: {qname} type {}: empty, type {} is preferred and has records",
                client.addr,
                wire::TypeName(p.info.qtype),
                wire::TypeName(ptype)
            );
            return None;
        }
        Some(mine)
    }

    fn reply_empty(
        &self,
        query: &[u8],
        info: &QueryInfo,
        code: u8,
        client: &Client,
        out: &mut Vec<u8>,
    ) {
        wire::empty_reply(query, info, code, out);
        fit(out, query, info, client);
    }

    /// Serves a stale entry's refresh in the background.
    fn spawn_refresh(
        self: &Rc<Self>,
        query: &[u8],
        info: QueryInfo,
        key: &[u8],
        target: DnsTarget,
        policy: Rc<Policy>,
        client: Client,
    ) {
        let this = self.clone();
        let query = wire::upstream_query(query, &info);
        let key: Rc<[u8]> = key.into();
        tokio::task::spawn_local(async move {
            let mut qname = String::new();
            if policy.needs_qname_text() {
                wire::name_to_text(info.qname(&query), &mut qname);
            }
            let _ = this
                .resolve(&policy, &query, &info, &key, &target, &client, &qname)
                .await;
        });
    }

    /// The answer for one cache key: fresh from the cache, from the flight
    /// already under way, or by leading a new one and caching what it brings.
    ///
    /// A plain fn returning an `async move` block, as `ask_upstreams`: an
    /// `async fn` keeps its arguments twice in the future.
    #[allow(clippy::too_many_arguments, clippy::manual_async_fn)]
    fn resolve<'a>(
        &'a self,
        policy: &'a Rc<Policy>,
        query: &'a [u8],
        info: &'a QueryInfo,
        key: &'a Rc<[u8]>,
        target: &'a DnsTarget,
        client: &'a Client,
        qname: &'a str,
    ) -> impl Future<Output = Outcome> + 'a {
        async move {
            if let Some(entry) = self.cache.borrow().peek_fresh(key, Instant::now()) {
                return Ok(entry.to_entry(key));
            }
            match Flights::join(&self.flights, key) {
                Join::Follow(rx) => rx.await.unwrap_or(Err(())),
                Join::Lead(lead) => {
                    let deadline = Instant::now() + policy.timeout;
                    let outcome = self
                        .ask_upstreams(policy, query, info, key, target, client, qname, 0, deadline)
                        .await;
                    self.land(lead, &outcome);
                    outcome
                }
            }
        }
    }

    /// Asks `first`, then runs the response rules on each answer until one is
    /// accepted or rejected; the answer becomes an entry under `key`.
    /// `asked` upstreams were asked before for this query (by a `Chase`
    /// that continues here), and all must answer by `deadline`.
    #[allow(clippy::too_many_arguments, clippy::manual_async_fn)]
    fn ask_upstreams<'a>(
        &'a self,
        policy: &'a Policy,
        query: &'a [u8],
        info: &'a QueryInfo,
        key: &'a [u8],
        first: &'a DnsTarget,
        client: &'a Client,
        qname: &'a str,
        asked: usize,
        deadline: Instant,
    ) -> impl Future<Output = Outcome> + 'a {
        async move {
            let mut target = first.clone();
            for _ in asked..MAX_LOOKUP_DEPTH {
                let (name, forwarder) = match &target {
                    DnsTarget::Upstream { index, name } => {
                        (&**name, policy.forwarders[*index].clone())
                    }
                    DnsTarget::Asis => match client.asked {
                        Some(server) => ("asis", policy.asis_forwarder(server)),
                        None => return Err(()),
                    },
                    // Config checking keeps these out of upstream positions.
                    DnsTarget::Reject | DnsTarget::Accept => return Err(()),
                };
                self.stats.borrow_mut().upstream_exchanges += 1;
                let tcp = client.transport == Transport::Tcp;
                let reply = forwarder.exchange(query, info, tcp, deadline).await;
                let now = Instant::now();
                match self.judge(policy, query, info, key, name, reply, qname, now) {
                    Verdict::Done(outcome) => return outcome,
                    Verdict::Next(next) => target = next,
                }
            }
            self.warn_lookup_loop(query, info);
            Err(())
        }
    }

    /// What upstream `name`'s reply (or failure) to `query` comes to: the
    /// query's outcome, or the next upstream to ask, as the response rules
    /// say. Failures are counted and logged here. `now`: when it came.
    #[allow(clippy::too_many_arguments)]
    fn judge(
        &self,
        policy: &Policy,
        query: &[u8],
        info: &QueryInfo,
        key: &[u8],
        name: &str,
        reply: Result<Vec<u8>, forwarder::ForwardError>,
        qname: &str,
        now: Instant,
    ) -> Verdict {
        // Counted, logged with what went wrong, and the query fails.
        let failed = |what: std::fmt::Arguments| {
            self.stats.borrow_mut().upstream_failures += 1;
            log::warn!(
                "{} type {}: upstream '{name}'{what}",
                wire::NameText(info.qname(query)),
                wire::TypeName(info.qtype)
            );
            Verdict::Done(Err(()))
        };
        let reply = match reply {
            Ok(reply) => reply,
            Err(e) => return failed(format_args!(": {e}")),
        };
        let scan = match wire::scan_response(&reply) {
            Ok(scan) => scan,
            Err(e) => return failed(format_args!(" sent a malformed answer: {e}")),
        };
        if scan.extended_rcode != 0 {
            // BADVERS, BADCOOKIE, ...: about its exchange with us (we ask in
            // EDNS version 0 with no options), not an answer for a client.
            return failed(format_args!(
                " answered extended rcode {}",
                u16::from(scan.extended_rcode) << 4 | u16::from(scan.rcode)
            ));
        }
        if scan.rcode == rcode::REFUSED {
            // An answer all the same: the response rules may send it on to
            // another upstream; accepted, the client gets REFUSED (as from
            // dnsmasq and unbound as forwarders), never cached. Counted and
            // told, since it usually means the upstream's access list
            // leaves us out.
            self.stats.borrow_mut().upstream_failures += 1;
            log::warn!(
                "{} type {}: upstream '{name}' refused the query",
                wire::NameText(info.qname(query)),
                info.qtype
            );
        }
        let facts = Facts {
            qname,
            qtype: info.qtype,
            upstream: Some(name),
            answer_ips: &scan.answer_ips,
        };
        let (next, rule) = policy.response.select(&facts);
        match next {
            DnsTarget::Accept | DnsTarget::Asis => {
                log::debug!(
                    "{qname} type {}: answered by '{name}' (rcode {})",
                    wire::TypeName(info.qtype),
                    scan.rcode
                );
                // The kernel routes the flows that follow by this name.
                crate::routing::kernel::learn(
                    qname,
                    &scan.answer_ips,
                    scan.min_answer_ttl.unwrap_or(0),
                );
                Verdict::Done(Ok(make_entry(
                    key,
                    reply,
                    scan,
                    info,
                    policy.fixed_ttl_of(qname),
                    now,
                )))
            }
            DnsTarget::Reject => {
                log::debug!(
                    "{qname}: answer of '{name}' rejected by '{}'",
                    rule.unwrap_or("fallback")
                );
                let mut out = Vec::new();
                wire::empty_reply(query, info, rcode::NOERROR, &mut out);
                Verdict::Done(Ok(Entry::new(&[], &out, &[], now, 0, false)))
            }
            DnsTarget::Upstream {
                name: next_name, ..
            } => {
                log::debug!(
                    "{qname}: answer of '{name}' sent on to '{next_name}' by '{}'",
                    rule.unwrap_or("fallback")
                );
                Verdict::Next(next.clone())
            }
        }
    }

    fn warn_lookup_loop(&self, query: &[u8], info: &QueryInfo) {
        log::warn!(
            "{} type {}: response rules asked {MAX_LOOKUP_DEPTH} upstreams in a row; \
             answering SERVFAIL (do the response rules form a loop?)",
            wire::NameText(info.qname(query)),
            wire::TypeName(info.qtype)
        );
    }

    /// Ends a flight this query led: caches what it brought and hands it
    /// to the queries that followed.
    fn land(&self, lead: singleflight::Lead, outcome: &Outcome) {
        if let Ok(entry) = outcome {
            self.cache.borrow_mut().insert(entry);
        }
        lead.finish(outcome);
    }

    /// The reply to a pending query at `now`: its answer, SERVFAIL when it
    /// has none, or (`None`: the preferred type has records) an empty
    /// answer.
    fn write_reply(
        &self,
        outcome: Option<Outcome>,
        p: &Pending,
        client: &Client,
        now: Instant,
        out: &mut Vec<u8>,
    ) {
        match outcome {
            Some(Ok(entry)) => {
                entry.write_fresh(&p.query, &p.info, now, out);
                fit(out, &p.query, &p.info, client);
            }
            Some(Err(())) => {
                self.stats.borrow_mut().servfail += 1;
                self.reply_empty(&p.query, &p.info, rcode::SERVFAIL, client, out);
            }
            None => self.reply_empty(&p.query, &p.info, rcode::NOERROR, client, out),
        }
    }
}

/// What an upstream's reply comes to (`Controller::judge`).
enum Verdict {
    /// The query's outcome.
    Done(Outcome),
    /// The response rules send the query on to this upstream.
    Next(DnsTarget),
}

fn request_facts(qname: &str, qtype: u16) -> Facts<'_> {
    Facts {
        qname,
        qtype,
        upstream: None,
        answer_ips: &[],
    }
}

fn fit(out: &mut Vec<u8>, query: &[u8], info: &QueryInfo, client: &Client) {
    if client.transport == Transport::Udp {
        wire::fit_udp(out, query, info);
    }
}

/// Turns an accepted upstream answer into a cache entry: the answer made
/// fit to share with every client of this key (`wire::normalize_answer`:
/// the OPT record rebuilt for the client, `info`), how long it lives (the
/// smallest answer TTL; for answers without records of the asked type, the
/// SOA's negative TTL, RFC 2308; `fixed_ttl` if the name has one), with its
/// TTLs rewritten where that changed them. Entries of life 0 are shared
/// with the flight's followers but not cached.
fn make_entry(
    key: &[u8],
    mut packet: Vec<u8>,
    mut scan: ResponseInfo,
    info: &QueryInfo,
    fixed_ttl: Option<u32>,
    now: Instant,
) -> Entry {
    wire::normalize_answer(&mut packet, &mut scan, info.edns);
    let scan = &scan;
    let cacheable =
        !scan.truncated && (scan.rcode == rcode::NOERROR || scan.rcode == rcode::NXDOMAIN);
    let mut life = None::<u32>;
    if cacheable {
        if scan.answer_count > 0 {
            life = scan.min_answer_ttl;
        }
        if !scan.has_qtype_answer {
            if let (Some(neg), Some(at)) = (scan.negative_ttl, scan.soa_ttl_at) {
                wire::set_ttl(&mut packet, usize::from(at), neg);
                life = Some(life.map_or(neg, |l| l.min(neg)));
            }
        }
    }
    // RFC 2181: a TTL with the top bit set means zero.
    let mut life = life
        .filter(|&t| t < 0x8000_0000)
        .unwrap_or(0)
        .min(cache::MAX_LIFE);
    if let (true, Some(fixed)) = (cacheable, fixed_ttl) {
        life = fixed;
        for &at in &scan.ttl_offsets {
            wire::set_ttl(&mut packet, usize::from(at), fixed);
        }
    }
    Entry::new(
        key,
        &packet,
        &scan.ttl_offsets,
        now,
        life,
        scan.has_qtype_answer,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query waiting on its upstream without a chase is one task, which
    /// tokio allocates aligned to 128 bytes: glibc serves that with
    /// memalign, asking for the size plus the alignment, and a request of
    /// 1024 bytes or more is a large one that makes it consolidate its free
    /// lists, on every such miss.
    /// So the future stays well under 1024 - 128 - tokio's header and
    /// trailer. `async fn` argument copies, temporaries held across an
    /// await and inline sending futures have each made it larger before.
    #[test]
    fn a_pending_query_fits_the_allocators_thread_cache() {
        let config = crate::config::parse_str(
            "config dns 'dns'\n\toption request_fallback 'up'\n\
             config upstream 'up'\n\toption address 'udp://192.0.2.53'\n",
        )
        .expect("config");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        tokio::task::LocalSet::new().block_on(&rt, async {
            let controller = Controller::new(&config).expect("controller");
            let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
            q.extend_from_slice(b"\x03www\x07example\x00\x00\x01\x00\x01");
            let client = Client {
                transport: Transport::Udp,
                addr: "192.0.2.10:5353".parse().unwrap(),
                asked: None,
            };
            let mut out = Vec::new();
            let Step::Pending(p) = controller.handle(&q, &client, &mut out) else {
                panic!("a miss is pending");
            };
            // What the UDP listener's delivery holds, roughly.
            let (a, b, c) = (Rc::new(0u64), Rc::new(0u64), Rc::new(0u64));
            let from: SocketAddr = "192.0.2.10:5353".parse().unwrap();
            let task = controller.clone().finish(p, client, move |reply| {
                let _ = (a, b, c, from, reply.len());
                None
            });
            let size = std::mem::size_of_val(&task);
            assert!(size <= 560, "a pending query's task is {size} bytes");
            let policy = controller.policy.borrow().clone();
            let (info, qname) = (wire::parse_query(&q).unwrap(), "www.example");
            let target = DnsTarget::Upstream {
                index: 0,
                name: "up".into(),
            };
            let key: Rc<[u8]> = b"key"[..].into();
            let resolving = controller.resolve(&policy, &q, &info, &key, &target, &client, qname);
            // Boxed by `finish`: under the same limit on its own.
            let size = std::mem::size_of_val(&resolving);
            assert!(size <= 800, "a resolution is {size} bytes");
        });
    }
}
