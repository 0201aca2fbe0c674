//! The daemon's life: load the config, start the controller, the listeners
//! and the TC datapath, then wait for signals. SIGHUP reloads (a bad new
//! config is refused with a log line and the old one keeps serving; the
//! cache and queries under way are kept); SIGTERM and SIGINT stop cleanly,
//! detaching the TC program and removing the policy routing.
//!
//! Subscriptions (`dialer::subscription`) are fetched by a task of their
//! own, at start, at each interval and when `dae update-subscriptions`
//! asks through the status socket; a list that changed rebuilds the groups
//! the way a reload does, keeping the nodes whose link is unchanged.
//!
//! Everything runs on one thread: a tokio current_thread runtime with a
//! `LocalSet`, so the controller's state needs no locks.
//!
//! Order matters for a LAN that must never lose DNS: the transparent
//! listener is up before the TC program is attached (so nothing is handed to
//! a socket that is not there), and at stop the program is detached first.
//!
//! Neighbours: `main` (the CLI), `config`, `controller`, `listener`, `ebpf`,
//! `status`, `signals`.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

use serde_json::{json, Value};

use crate::config::IpNet;
use crate::config::{self, Config, ConfigError};
use crate::controller::{self, Controller};
use crate::dialer::subscription::{self, Subscriptions};
use crate::ebpf::{self, AttachMode, Datapath};
use crate::listener::acl::Policy;
use crate::listener::tproxy::TproxyListeners;
use crate::listener::PlainListeners;
use crate::relay::Relay;
use crate::routing::kernel::{self, Compiled, KernelRouting, Learner};
use crate::signals::{Request, Signals};

/// Reads, checks and checks again what only the running parts know; a
/// config that serves nothing is refused too (an empty file would otherwise
/// take the LAN's DNS down on reload).
pub fn load(path: &Path) -> Result<Config, Vec<ConfigError>> {
    let config = config::load_file(path)?;
    controller::check(&config)?;
    if let Some(e) = config::nothing_to_serve(&config) {
        return Err(vec![e]);
    }
    Ok(config)
}

/// `dae validate`: prints every problem and returns the exit code.
pub fn validate(path: &Path) -> i32 {
    match load(path) {
        Ok(config) => {
            for w in config::warnings(&config) {
                eprintln!("dae: config warning: {w}");
            }
            // The TC object is only loaded with a lan_interface.
            let g = &config.general;
            if !g.lan_interfaces.is_empty() {
                if let Err(e) = ebpf::Object::choose(g.bpf_object.as_deref()) {
                    eprintln!("dae: config error: {e}");
                    return 1;
                }
            }
            println!("configuration OK");
            0
        }
        Err(errors) => {
            for e in &errors {
                eprintln!("dae: config error: {e}");
            }
            1
        }
    }
}

/// `dae run`: serves until SIGTERM/SIGINT. Returns the exit code.
pub fn run(path: &Path, use_syslog: bool, attach: AttachMode) -> i32 {
    crate::logging::init(use_syslog);
    tune_allocator();
    raise_fd_limit();
    let config = match load(path) {
        Ok(c) => c,
        Err(errors) => {
            for e in &errors {
                log::error!("config error: {e}");
            }
            log::error!(
                "not starting: {} problem(s) in {}",
                errors.len(),
                path.display()
            );
            return 1;
        }
    };
    crate::logging::set_level(config.general.log_level);
    for w in config::warnings(&config) {
        log::warn!("config: {w}");
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            log::error!("cannot start the runtime: {e}");
            return 1;
        }
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, serve(path, config, attach))
}

/// The interception side: transparent listeners, the TC program, the
/// routing rules installed in it, and the relay of the flows it routes to
/// groups.
struct Interception {
    listeners: TproxyListeners,
    datapath: Datapath,
    routing: KernelRouting,
    relay: Rc<Relay>,
    /// The prefixes never routed, as last installed.
    bypass: Vec<IpNet>,
}

fn group_names(config: &Config) -> Vec<String> {
    config.groups.iter().map(|g| g.name.clone()).collect()
}

fn settings(config: &Config) -> ebpf::Settings {
    ebpf::Settings {
        listener_port: u32::from(config.general.tproxy_port),
        tproxy_mark: ebpf::route::TPROXY_MARK,
        so_mark: config.general.so_mark,
        fail_closed: u32::from(config.general.fail_closed),
        // The datapath keeps the slot of the routing in force.
        routing_slot: 0,
    }
}

impl Interception {
    fn start(
        config: &Config,
        controller: &Rc<Controller>,
        attach: AttachMode,
    ) -> Result<Interception, String> {
        let g = &config.general;
        let object = ebpf::Object::choose(g.bpf_object.as_deref())?;
        let relay = Rc::new(Relay::new(controller.outbounds()));
        let listeners = TproxyListeners::start(g.tproxy_port, controller, Some(relay.clone()))?;
        let mut datapath = Datapath::start(&object, &g.lan_interfaces, settings(config), attach)?;
        let maps = (|| {
            relay.set_flows(datapath.take_map(ebpf::shared::FLOWS_MAP)?)?;
            Learner::new(datapath.take_map(ebpf::shared::DOMAINS_MAP)?)
        })();
        let learner = match maps {
            Ok(l) => l,
            Err(e) => {
                datapath.stop();
                return Err(e);
            }
        };
        kernel::set_learner(Some(learner));
        let mut i = Interception {
            listeners,
            datapath,
            routing: KernelRouting::new(),
            relay,
            bypass: Vec::new(),
        };
        if let Err(e) = i.install_routing(config) {
            kernel::set_learner(None);
            i.datapath.stop();
            return Err(e);
        }
        Ok(i)
    }

    /// Compiles `config`'s routing rules into the program and points the
    /// relay and the learner at them. True when the `domain()` rules
    /// changed: what the kernel had learned from DNS answers no longer
    /// counts.
    fn install_routing(&mut self, config: &Config) -> Result<bool, String> {
        let gen = self.routing.domain_gen();
        let bypass = kernel::bypass_prefixes(&config.general.lan_interfaces);
        self.routing.install(
            &mut self.datapath,
            Compiled::new(&config.routing, &group_names(config)),
            &bypass,
        )?;
        self.bypass = bypass;
        kernel::learner_follow(&self.routing);
        self.relay
            .follow(&self.routing, self.datapath.routing_slot());
        Ok(self.routing.domain_gen() != gen)
    }

    /// Installs the rules again when the router's addresses or the LAN
    /// subnets changed (an address from DHCP or PPPoE, a new LAN subnet).
    fn refresh_bypass(&mut self, config: &Config) {
        if kernel::bypass_prefixes(&config.general.lan_interfaces) != self.bypass {
            log::info!("the router's addresses changed: installing the routing again");
            if let Err(e) = self.install_routing(config) {
                log::warn!("{e}");
            }
        }
    }

    /// Follows a new config; on error the old state stays as it was.
    fn reconfigure(&mut self, config: &Config, controller: &Rc<Controller>) -> Result<(), String> {
        let g = &config.general;
        if g.tproxy_port != self.listeners.port {
            // New listeners first, then point the program at them.
            let fresh =
                TproxyListeners::start(g.tproxy_port, controller, Some(self.relay.clone()))?;
            self.datapath.set_settings(settings(config))?;
            self.listeners = fresh;
        } else {
            self.datapath.set_settings(settings(config))?;
        }
        self.datapath.set_interfaces(&g.lan_interfaces)?;
        if self.install_routing(config)? {
            // The names the LAN resolved before count under the new rules.
            let taught = controller.relearn();
            log::info!(
                "domain rules changed: {taught} cached answer(s) taught to the kernel again"
            );
        }
        Ok(())
    }

    fn stop(mut self) {
        kernel::set_learner(None);
        self.datapath.stop();
        self.listeners.stop();
    }
}

/// Who the plain listeners answer.
fn acl_policy(config: &Config) -> Policy {
    Policy {
        allow_remote: config.dns.allow_remote,
        wan: config.general.wan_interface.clone(),
        lan: config.general.lan_interfaces.clone(),
    }
}

/// Everything that runs, for reload and status.
struct Running {
    path: PathBuf,
    config: Config,
    controller: Rc<Controller>,
    plain: PlainListeners,
    interception: Option<Interception>,
    attach: AttachMode,
    started: Instant,
    /// The subscriptions' lists, put into the groups of `config`.
    subs: Subscriptions,
    /// Wakes the refresher after a reload (a subscription added is due).
    subs_changed: Rc<tokio::sync::Notify>,
}

impl Running {
    fn start(path: &Path, config: Config, attach: AttachMode) -> Result<Running, String> {
        let subs = Subscriptions::new(&config);
        let controller = Controller::new(&subs.expand(&config))?;
        let mut plain = PlainListeners::default();
        plain.set_policy(acl_policy(&config));
        plain.apply(&config.dns.listen, &controller)?;
        let interception = if config.general.lan_interfaces.is_empty() {
            None
        } else {
            Some(Interception::start(&config, &controller, attach)?)
        };
        Ok(Running {
            path: path.to_path_buf(),
            config,
            controller,
            plain,
            interception,
            attach,
            started: Instant::now(),
            subs,
            subs_changed: Rc::default(),
        })
    }

    fn reload(&mut self) {
        log::info!("reloading {}", self.path.display());
        let config = match load(&self.path) {
            Ok(c) => c,
            Err(errors) => {
                for e in &errors {
                    log::error!("config error: {e}");
                }
                log::error!(
                    "reload refused: {} problem(s) in {}; the running config stays",
                    errors.len(),
                    self.path.display()
                );
                return;
            }
        };
        for w in config::warnings(&config) {
            log::warn!("config: {w}");
        }
        // Build what can fail before switching anything, so a failure leaves
        // the running config whole.
        let subs = self.subs.reconfigured(&config);
        let expanded = subs.expand(&config);
        let policy = match self.controller.prepare(&expanded) {
            Ok(p) => p,
            Err(e) => return log::error!("reload refused: {e}; the running config stays"),
        };
        if let Err(e) = self.plain.apply(&config.dns.listen, &self.controller) {
            return log::error!("reload refused: {e}; the running config stays");
        }
        self.plain.set_policy(acl_policy(&config));
        let wanted = !config.general.lan_interfaces.is_empty();
        let result = match (self.interception.as_mut(), wanted) {
            (Some(i), true) => i.reconfigure(&config, &self.controller),
            (Some(_), false) => {
                if let Some(i) = self.interception.take() {
                    i.stop();
                }
                Ok(())
            }
            (None, true) => Interception::start(&config, &self.controller, self.attach).map(|i| {
                self.interception = Some(i);
            }),
            (None, false) => Ok(()),
        };
        if let Err(e) = result {
            log::error!("reload: interception: {e}");
        }
        if config.general.status_socket != self.config.general.status_socket {
            log::warn!("status_socket changes take effect at the next restart");
        }
        self.controller.install(policy, &expanded);
        if let Some(i) = &self.interception {
            i.relay.set_outbounds(self.controller.outbounds());
        }
        crate::logging::set_level(config.general.log_level);
        self.config = config;
        self.subs = subs;
        self.subs_changed.notify_one();
        log::info!("reloaded");
    }

    /// Rebuilds the groups after a subscription's list changed; nodes whose
    /// link is unchanged are kept (health, connections).
    fn apply_subscriptions(&mut self) {
        let expanded = self.subs.expand(&self.config);
        match self.controller.prepare(&expanded) {
            Ok(policy) => {
                self.controller.install(policy, &expanded);
                if let Some(i) = &self.interception {
                    i.relay.set_outbounds(self.controller.outbounds());
                }
                log::info!("subscriptions: groups updated");
            }
            Err(e) => {
                log::error!("subscriptions: cannot update the groups: {e}; they stay as they were")
            }
        }
    }

    fn refresh_addresses(&mut self) {
        if let Some(i) = self.interception.as_mut() {
            i.refresh_bypass(&self.config);
        }
    }

    fn report(&self) -> Value {
        let stats = self.controller.stats();
        let (cache, entries, capacity) = self.controller.cache_stats();
        let datapath: Value = match &self.interception {
            Some(i) => i
                .datapath
                .counters()
                .into_iter()
                .map(|(c, n)| (c.name().to_string(), json!(n)))
                .collect::<serde_json::Map<_, _>>()
                .into(),
            None => Value::Null,
        };
        let g = &self.config.general;
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "pid": std::process::id(),
            "uptime_seconds": self.started.elapsed().as_secs(),
            "config": self.path.display().to_string(),
            "interfaces": self.interception.as_ref().map(|i| i.datapath.interfaces()).unwrap_or_default(),
            "tproxy_port": g.tproxy_port,
            "fail_closed": g.fail_closed,
            "datapath": datapath,
            "dns_listen": self.config.dns.listen.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            "allow_remote": self.config.dns.allow_remote,
            "dns_listen_dropped": self.plain.dropped_remote(),
            "dns": {
                "queries": stats.queries,
                "malformed": stats.malformed,
                "rejected": stats.rejected,
                "refused": stats.refused,
                "upstream_exchanges": stats.upstream_exchanges,
                "upstream_failures": stats.upstream_failures,
                "servfail": stats.servfail,
            },
            "groups": self.controller.outbounds().report(),
            "subscriptions": self.subs.report(),
            "rule_sets": crate::geodata::report().iter().map(|r| json!({
                "name": r.name,
                "file": r.file.display().to_string(),
                "entries": r.entries,
                "memory_bytes": r.memory,
            })).collect::<Vec<_>>(),
            "relay": self.interception.as_ref().map(|i| i.relay.report()),
            "routing": self.interception.as_ref().map(|i| {
                let (learned, live) = kernel::learned().unwrap_or_default();
                json!({
                    "rules": self.config.routing.rules.len(),
                    "kernel_slot": i.datapath.routing_slot(),
                    "learned_addresses": learned,
                    "learned_live": live,
                    "learned_capacity": ebpf::shared::DOMAIN_ENTRIES,
                })
            }),
            "cache": {
                "entries": entries,
                "capacity": capacity,
                "hits": cache.hits,
                "stale_hits": cache.stale_hits,
                "misses": cache.misses,
                "inserts": cache.inserts,
                "evictions": cache.evictions,
            },
        })
    }

    fn stop(&mut self) {
        if let Some(i) = self.interception.take() {
            i.stop();
        }
        self.plain.stop_all();
    }
}

/// Lifts the soft limit on open files to the hard one (as Go's runtime
/// does for dae): each relayed UDP endpoint and TCP connection holds
/// sockets, and the soft default (1024) is below what the relays' bounds
/// allow.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid rlimit to fill, then to read.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Two glibc policies that cost a long-running daemon memory (musl has
/// neither):
/// - "Fastbins": small freed chunks that are never merged until a larger
///   request comes, so after a burst of misses they pin memory, and each
///   large request pays to merge them. Its per-thread cache already serves
///   the small, repeated allocations the daemon makes; without fastbins the
///   daemon stays 350-500 KB smaller after a miss burst at no measurable
///   CPU cost (bench, 800 outstanding misses, 4096 entries).
/// - The sliding mmap threshold: when a large mapped block is freed, glibc
///   raises its mmap threshold to that block's size and its trim threshold
///   to twice that, so later large requests come from a heap and heaps are
///   no longer trimmed. aya's copy of the kernel's BTF (21 MB here) is
///   freed while the TC program loads: the loader's arena then stayed at
///   15 MB resident and the cache's arena went into the heap. Setting the
///   threshold (to its usual 128 KiB) keeps things as they are without
///   BTF (see `ebpf::load_object`).
fn tune_allocator() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes the allocator's own policy.
    unsafe {
        libc::mallopt(libc::M_MXFAST, 0);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

async fn serve(path: &Path, config: Config, attach: AttachMode) -> i32 {
    let mut signals = match Signals::new() {
        Ok(s) => s,
        Err(e) => {
            log::error!("cannot take signals: {e}");
            return 1;
        }
    };
    let status_path = config.general.status_socket.clone();
    let running = match Running::start(path, config, attach) {
        Ok(r) => Rc::new(RefCell::new(r)),
        Err(e) => {
            log::error!("not starting: {e}");
            return 1;
        }
    };
    let reporter = running.clone();
    let (asks, asked) = tokio::sync::mpsc::unbounded_channel();
    let refresher = tokio::task::spawn_local(refresh_subscriptions(running.clone(), asked));
    let command = move |line: &str| command(line, &asks);
    let status =
        match crate::status::serve(&status_path, move || reporter.borrow().report(), command) {
            Ok(task) => Some(task),
            Err(e) => {
                log::warn!("no status socket at {}: {e}", status_path.display());
                None
            }
        };
    {
        let r = running.borrow();
        log::info!(
            "dae {} started with {} ({} upstream(s), cache {} entries)",
            env!("CARGO_PKG_VERSION"),
            path.display(),
            r.config.upstreams.len(),
            r.config.dns.cache_size
        );
    }
    // The router's addresses are looked at again this often (the kernel's
    // routing never routes flows to them).
    let mut addresses = tokio::time::interval(std::time::Duration::from_secs(30));
    // Sums up rate-limited warnings after a burst even when the log then
    // goes quiet.
    let log_tick = tokio::task::spawn_local(async {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(2));
        loop {
            every.tick().await;
            crate::logging::tick();
        }
    });
    loop {
        let request = tokio::select! {
            r = signals.next() => r,
            _ = addresses.tick() => {
                running.borrow_mut().refresh_addresses();
                continue;
            }
        };
        match request {
            Ok(Request::Reload) => running.borrow_mut().reload(),
            Ok(Request::Stop) => break,
            Err(e) => {
                log::error!("reading signals: {e}; stopping");
                break;
            }
        }
    }
    if let Some(task) = status {
        task.abort();
        let _ = std::fs::remove_file(&status_path);
    }
    refresher.abort();
    running.borrow_mut().stop();
    log_tick.abort();
    crate::logging::tick();
    log::info!("stopped");
    0
}

/// `dae update-subscriptions [NAME]`, as the status socket hands it over.
struct UpdateAsk {
    name: Option<String>,
    reply: tokio::sync::oneshot::Sender<Value>,
}

/// A request line other than `status`.
fn command(
    line: &str,
    asks: &tokio::sync::mpsc::UnboundedSender<UpdateAsk>,
) -> crate::status::Pending {
    let mut words = line.split_whitespace();
    let (verb, name, extra) = (words.next(), words.next(), words.next());
    if verb != Some("update-subscriptions") || extra.is_some() {
        let answer = json!({"error": format!("unknown request '{line}'")});
        return Box::pin(async move { answer });
    }
    let (reply, answer) = tokio::sync::oneshot::channel();
    let sent = asks.send(UpdateAsk {
        name: name.map(String::from),
        reply,
    });
    Box::pin(async move {
        match sent {
            Ok(()) => answer
                .await
                .unwrap_or_else(|_| json!({"error": "the daemon is stopping"})),
            Err(_) => json!({"error": "the daemon is stopping"}),
        }
    })
}

/// Fetches each enabled subscription when it is due (at start, then every
/// interval), and those `dae update-subscriptions` asks for.
async fn refresh_subscriptions(
    running: Rc<RefCell<Running>>,
    mut asks: tokio::sync::mpsc::UnboundedReceiver<UpdateAsk>,
) {
    let reloaded = running.borrow().subs_changed.clone();
    loop {
        let now = Instant::now();
        let (due, next) = running.borrow().subs.due(now);
        if !due.is_empty() {
            refresh(&running, &due).await;
            continue;
        }
        let sleep = async {
            match next {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = sleep => {}
            _ = reloaded.notified() => {}
            ask = asks.recv() => {
                let Some(ask) = ask else { return };
                let answer = update(&running, ask.name.as_deref()).await;
                let _ = ask.reply.send(answer);
            }
        }
    }
}

/// Fetches the subscriptions named and takes each outcome; the groups are
/// rebuilt after each list that changed. The errors, by name.
async fn refresh(running: &Rc<RefCell<Running>>, names: &[String]) -> Vec<(String, String)> {
    let mut failed = Vec::new();
    for name in names {
        let (outbounds, ca_file, sub) = {
            let r = running.borrow();
            let Some(s) = r.subs.get(name) else { continue };
            (
                r.controller.outbounds(),
                r.config.general.ca_file.clone(),
                s.sub.clone(),
            )
        };
        let result = subscription::fetch(&outbounds, &ca_file, &sub).await;
        if let Err(e) = &result {
            failed.push((name.clone(), e.clone()));
        }
        let changed = running.borrow_mut().subs.record(&sub, result);
        if changed {
            running.borrow_mut().apply_subscriptions();
        }
    }
    failed
}

/// `update-subscriptions [NAME]`: fetches now; answers with every
/// subscription's state and the failures of this update.
async fn update(running: &Rc<RefCell<Running>>, name: Option<&str>) -> Value {
    let names: Vec<String> = {
        let r = running.borrow();
        let states = &r.subs.states;
        match name {
            Some(n) => match states.iter().find(|s| s.sub.name == n) {
                Some(s) if s.sub.enabled => vec![n.to_string()],
                Some(_) => {
                    return json!({"error": format!("subscription '{n}' is disabled (option enabled)")})
                }
                None => {
                    let known: Vec<&str> = states.iter().map(|s| s.sub.name.as_str()).collect();
                    return json!({"error": format!(
                        "no subscription is named '{n}' (defined: {})",
                        if known.is_empty() { "none".to_string() } else { known.join(", ") }
                    )});
                }
            },
            None => states
                .iter()
                .filter(|s| s.sub.enabled)
                .map(|s| s.sub.name.clone())
                .collect(),
        }
    };
    let failed = refresh(running, &names).await;
    json!({
        "updated": names,
        "failed": failed.iter().map(|(n, e)| json!({"name": n, "error": e})).collect::<Vec<_>>(),
        "subscriptions": running.borrow().subs.report(),
    })
}
