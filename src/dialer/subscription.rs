//! Subscriptions at run time: the node list of each `config subscription`,
//! fetched from the provider, kept on disk, and put into the groups that
//! name it.
//!
//! - At start (and for a subscription a reload adds) the last good list is
//!   read from `subscription_dir/NAME.list`, so a router that boots
//!   without connectivity still has its nodes; the first fetch follows.
//! - A fetch (`fetch::get`, out the way the routing rules say) that fails,
//!   or brings garbage or no usable node, keeps the list in service and
//!   says why (`report`, the log). A good one replaces it; the file is
//!   written only when the list changed (flash has limited writes).
//! - `expand` turns the file's config into the one the dialers are built
//!   from: each group gets the nodes of its subscriptions that pass its
//!   filters, named `SUBSCRIPTION/NAME`. Rebuilding the outbounds from it
//!   keeps every node whose link did not change (health, connections);
//!   nodes that left take no new dials and their connections drain.
//!
//! Neighbours: `config::subscription` (URLs, formats, filters), `fetch`
//! (the download), `outbound` (built from the expanded config), `daemon`
//! (owns the state, runs the refreshes, answers `dae update-subscriptions`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};

use super::fetch;
use super::outbound::Outbounds;
use crate::config::subscription::{self as format, List};
use crate::config::{self, Config, Host, Subscription};

/// A failed fetch is tried again this soon (or at the interval, if sooner).
const RETRY: Duration = Duration::from_secs(300);

/// Where the list in service came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// No list yet: never fetched, nothing stored.
    Nothing,
    /// Read from the stored file at start (or when a reload added it).
    Stored,
    /// Fetched by this run.
    Fetched,
}

/// One subscription's state.
#[derive(Clone)]
pub struct State {
    pub sub: Subscription,
    /// The last good list, in service.
    pub list: List,
    /// The node name of each entry of `list` (`SUB/NAME`, unique).
    names: Vec<String>,
    pub source: Source,
    /// The last fetch tried, and the last that worked (wall clock).
    pub last_attempt: Option<SystemTime>,
    pub last_success: Option<SystemTime>,
    /// Why the last fetch was not taken (None: it was).
    pub error: Option<String>,
    /// Writing the stored file failed.
    pub store_error: Option<String>,
    /// When the next fetch is due.
    pub due: Instant,
}

impl State {
    fn new(sub: &Subscription, dir: &Path) -> State {
        let mut s = State {
            sub: sub.clone(),
            list: List::default(),
            names: Vec::new(),
            source: Source::Nothing,
            last_attempt: None,
            last_success: None,
            error: None,
            store_error: None,
            due: Instant::now(),
        };
        let path = file(dir, &sub.name);
        match std::fs::read(&path) {
            Ok(bytes) => match format::parse_list(&bytes) {
                Ok(list) => {
                    log::info!(
                        "subscription '{}': {} node(s) from {}",
                        sub.name,
                        list.entries.len(),
                        path.display()
                    );
                    s.set_list(list);
                    s.source = Source::Stored;
                }
                Err(e) => log::warn!("subscription '{}': {}: {e}", sub.name, path.display()),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => log::warn!("subscription '{}': {}: {e}", sub.name, path.display()),
        }
        s
    }

    fn set_list(&mut self, list: List) {
        let mut names: Vec<String> = Vec::with_capacity(list.entries.len());
        for e in &list.entries {
            let base = format!("{}/{}", self.sub.name, e.name);
            let mut name = base.clone();
            let mut n = 2;
            while names.contains(&name) {
                name = format!("{base} #{n}");
                n += 1;
            }
            names.push(name);
        }
        self.names = names;
        self.list = list;
    }
}

/// The stored list of subscription `name`.
pub fn file(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.list"))
}

/// Writes `text` to `path` unless it already holds exactly that (through
/// a temporary file, so a power cut leaves the old list or the new one).
/// Whether it wrote.
pub fn store(path: &Path, text: &str) -> std::io::Result<bool> {
    if std::fs::read(path).is_ok_and(|old| old == text.as_bytes()) {
        return Ok(false);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("list.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)?;
    Ok(true)
}

/// Fetches and reads one subscription's list; an error keeps the last good
/// one.
pub async fn fetch(
    outbounds: &Outbounds,
    ca_file: &Path,
    sub: &Subscription,
) -> Result<List, String> {
    let url = format::url(&sub.url)?;
    let roots = if url.tls {
        Some(crate::forwarder::tls::load_roots(ca_file)?)
    } else {
        None
    };
    let body = fetch::get(outbounds, roots, &url, fetch::LIMITS).await?;
    let list = format::parse_list(&body)?;
    if list.entries.is_empty() {
        return Err(format!(
            "the list has no usable node ({} link(s) skipped)",
            list.skipped_count()
        ));
    }
    Ok(list)
}

/// Every subscription's state.
pub struct Subscriptions {
    dir: PathBuf,
    pub states: Vec<State>,
}

impl Subscriptions {
    /// The subscriptions of `config`, each with its stored list.
    pub fn new(config: &Config) -> Subscriptions {
        let dir = config.general.subscription_dir.clone();
        let states = config
            .subscriptions
            .iter()
            .map(|s| State::new(s, &dir))
            .collect();
        Subscriptions { dir, states }
    }

    /// The state for a reloaded config: a subscription whose URL is
    /// unchanged keeps its list and schedule.
    pub fn reconfigured(&self, config: &Config) -> Subscriptions {
        let dir = config.general.subscription_dir.clone();
        let states = config
            .subscriptions
            .iter()
            .map(|s| {
                let kept = self
                    .states
                    .iter()
                    .find(|o| o.sub.name == s.name && o.sub.url == s.url && dir == self.dir);
                match kept {
                    Some(k) => State {
                        sub: s.clone(),
                        ..k.clone()
                    },
                    None => State::new(s, &dir),
                }
            })
            .collect();
        Subscriptions { dir, states }
    }

    pub fn get(&self, name: &str) -> Option<&State> {
        self.states.iter().find(|s| s.sub.name == name)
    }

    /// The enabled subscriptions due now, and when the next one is due.
    pub fn due(&self, now: Instant) -> (Vec<String>, Option<Instant>) {
        let enabled = self.states.iter().filter(|s| s.sub.enabled);
        let due = enabled
            .clone()
            .filter(|s| s.due <= now)
            .map(|s| s.sub.name.clone())
            .collect();
        (due, enabled.map(|s| s.due).min())
    }

    /// Takes a fetch's outcome for `sub` (as it was when the fetch began).
    /// True when the list in service changed: the groups need rebuilding.
    pub fn record(&mut self, sub: &Subscription, result: Result<List, String>) -> bool {
        let dir = self.dir.clone();
        let Some(s) = self
            .states
            .iter_mut()
            .find(|s| s.sub.name == sub.name && s.sub.url == sub.url)
        else {
            return false; // a reload removed or changed it meanwhile
        };
        let now = Instant::now();
        s.last_attempt = Some(SystemTime::now());
        match result {
            Err(e) => {
                log::warn!(
                    "subscription '{}': {e}; keeping the last good list ({} node(s))",
                    sub.name,
                    s.list.entries.len()
                );
                s.error = Some(e);
                s.due = now + sub.interval.min(RETRY);
                false
            }
            Ok(list) => {
                if list.skipped != s.list.skipped || s.source != Source::Fetched {
                    for (reason, n) in &list.skipped {
                        log::warn!("subscription '{}': {n} link(s) skipped: {reason}", sub.name);
                    }
                }
                s.error = None;
                s.last_success = s.last_attempt;
                s.due = now + sub.interval;
                s.source = Source::Fetched;
                let path = file(&dir, &sub.name);
                s.store_error = match store(&path, &list.text()) {
                    Ok(wrote) => {
                        if wrote {
                            log::info!("subscription '{}': stored in {}", sub.name, path.display());
                        }
                        None
                    }
                    Err(e) => {
                        let e = format!("cannot store {}: {e}", path.display());
                        log::warn!("subscription '{}': {e}", sub.name);
                        Some(e)
                    }
                };
                let changed = list.entries != s.list.entries;
                log::info!(
                    "subscription '{}': {} node(s){}",
                    sub.name,
                    list.entries.len(),
                    if changed { "" } else { ", unchanged" }
                );
                s.set_list(list);
                changed
            }
        }
    }

    /// The config the dialers are built from: `config` with each group's
    /// subscription nodes added (those passing its filters). Nodes whose
    /// server is a host name are left out when no upstream can look it up.
    pub fn expand(&self, config: &Config) -> Config {
        let mut out = config.clone();
        let can_look_up = config.upstreams.iter().any(crate::forwarder::can_resolve);
        let Config { groups, nodes, .. } = &mut out;
        for g in groups.iter_mut() {
            for sub in &g.subscriptions {
                let Some(s) = self.get(sub) else { continue };
                for (e, name) in s.list.entries.iter().zip(&s.names) {
                    if !g.filters.is_empty() && !g.filters.iter().any(|f| f.matches(&e.name, sub)) {
                        continue;
                    }
                    if !can_look_up
                        && config::link::parse(&e.link)
                            .is_ok_and(|l| matches!(l.host, Host::Name(_)))
                    {
                        continue;
                    }
                    if !nodes.iter().any(|n| &n.name == name) {
                        nodes.push(config::Node {
                            name: name.clone(),
                            link: e.link.clone(),
                        });
                    }
                    if !g.nodes.contains(name) {
                        g.nodes.push(name.clone());
                    }
                }
            }
        }
        out
    }

    /// For `dae status`.
    pub fn report(&self) -> Value {
        let secs = |t: Option<SystemTime>| {
            t.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map(|d| d.as_secs())
        };
        let list: Vec<Value> = self
            .states
            .iter()
            .map(|s| {
                json!({
                    "name": s.sub.name,
                    "url": format::url(&s.sub.url).map(|u| u.origin()).unwrap_or_default(),
                    "enabled": s.sub.enabled,
                    "interval_seconds": s.sub.interval.as_secs(),
                    "nodes": s.list.entries.len(),
                    "node_names": s.names,
                    "skipped": s.list.skipped.iter().map(|(r, n)| json!({"reason": r, "links": n})).collect::<Vec<_>>(),
                    "source": match s.source {
                        Source::Nothing => "none",
                        Source::Stored => "stored",
                        Source::Fetched => "fetched",
                    },
                    "last_attempt": secs(s.last_attempt),
                    "last_success": secs(s.last_success),
                    "error": s.error,
                    "store_error": s.store_error,
                    "file": file(&self.dir, &s.sub.name).display().to_string(),
                })
            })
            .collect();
        json!(list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path) -> Config {
        let text = format!(
            "config dae 'config'\n\toption subscription_dir '{}'\n\n\
             config dns 'dns'\n\tlist dns_listen '127.0.0.1:5353'\n\n\
             config subscription 's'\n\toption url 'http://192.0.2.1/sub'\n\n\
             config node 'own'\n\toption link 'socks5://192.0.2.7:1080'\n\n\
             config group 'hk'\n\tlist node 'own'\n\tlist subscription 's'\n\
             \tlist filter 'name(keyword: HK)'\n\n\
             config group 'all'\n\tlist subscription 's'\n",
            dir.display()
        );
        config::parse_str(&text).unwrap()
    }

    fn list(text: &str) -> List {
        format::parse_list(text.as_bytes()).unwrap()
    }

    #[test]
    fn stored_lists_filters_and_unchanged_files() {
        let dir = std::env::temp_dir().join(format!("dae-sub-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let c = config(&dir);
        let mut subs = Subscriptions::new(&c);
        assert_eq!(subs.states[0].source, Source::Nothing);
        let sub = c.subscriptions[0].clone();
        let first = "socks5://192.0.2.1:1080#HK 1\nsocks5://192.0.2.2:1080#JP 1\n\
                     socks5://192.0.2.3:1080#HK 1\n";
        assert!(subs.record(&sub, Ok(list(first))));
        let e = subs.expand(&c);
        assert_eq!(e.groups[0].nodes, ["own", "s/HK 1", "s/HK 1 #2"]);
        assert_eq!(e.groups[1].nodes, ["s/HK 1", "s/JP 1", "s/HK 1 #2"]);
        assert_eq!(e.nodes.len(), 4);
        // The same list again: no change, and the file is not written.
        let path = file(&dir, "s");
        let before = std::fs::metadata(&path).unwrap().modified().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        assert!(!subs.record(&sub, Ok(list(first))));
        assert_eq!(
            std::fs::metadata(&path).unwrap().modified().unwrap(),
            before
        );
        // A failure keeps the list; a new run starts from the stored one.
        assert!(!subs.record(&sub, Err("HTTP 500".into())));
        assert_eq!(subs.states[0].list.entries.len(), 3);
        assert_eq!(subs.states[0].error.as_deref(), Some("HTTP 500"));
        // Due again after the interval (a day), or after RETRY on failure.
        let now = Instant::now();
        let later = now + Duration::from_secs(86400);
        let (due, next) = subs.due(now);
        assert!(due.is_empty());
        assert!(next.unwrap() <= now + RETRY + Duration::from_secs(1));
        assert_eq!(subs.due(later).0, ["s"]);
        assert!(!subs.record(&sub, Ok(list(first))));
        let next = subs.due(now).1.unwrap();
        assert!(next > now + RETRY && next <= later + Duration::from_secs(1));
        let again = Subscriptions::new(&c);
        assert_eq!(again.states[0].source, Source::Stored);
        assert_eq!(again.expand(&c).groups[1].nodes.len(), 3);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
