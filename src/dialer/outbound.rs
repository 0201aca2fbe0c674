//! Outbounds: which way one of the daemon's own dials leaves (a DNS
//! upstream's address and port, UDP or TCP).
//!
//! The `routing` rules (`crate::routing`) decide on what a dial has: `dip`,
//! `dport`, `l4proto`, `ipversion` and `domain` (the upstream's host name,
//! when it was given by name): `direct`, `block`, or a group, whose policy
//! then picks a live node. A group with no live node gives
//! `Choice::NoNode`: the dial fails, it never goes direct instead (that
//! would leak the query).
//!
//! `Outbounds` owns the nodes, the groups and their health-check tasks; a
//! reload keeps the nodes whose link did not change, with their health.
//!
//! Neighbours: `routing` (the rules), `node`, `group`, `check`;
//! `forwarder` (asks `choose` for every upstream exchange), `status`
//! (reports `groups`).

use std::rc::Rc;

use super::check;
use super::group::Group;
use super::node::{Node, L4};
use super::Direct;
use crate::config::Config;
use crate::forwarder::Forwarder;
use crate::routing::{Flow, Rules, Target};

/// Where a dial goes.
#[derive(Clone)]
pub enum Choice {
    Direct,
    Node(Rc<Node>),
    /// A `block` rule.
    Block,
    /// The group has no live node for this dial.
    NoNode(Rc<str>),
}

impl Choice {
    /// Names the choice in logs.
    pub fn describe(&self) -> String {
        match self {
            Choice::Direct => "direct".into(),
            Choice::Node(n) => format!("node '{}' ({})", n.name, n.protocol()),
            Choice::Block => "block".into(),
            Choice::NoNode(g) => format!("group '{g}' (no node alive)"),
        }
    }
}

pub struct Outbounds {
    pub direct: Direct,
    pub nodes: Vec<Rc<Node>>,
    pub groups: Vec<Rc<Group>>,
    /// Looks up host names of our own downloads (subscriptions), as it
    /// does proxy servers' names: direct, through a plain upstream.
    pub resolver: Option<Rc<Forwarder>>,
    rules: Rules,
    /// No rule or fallback names a group or `block`.
    all_direct: bool,
    /// Health-check tasks, stopped with this set.
    checks: Vec<tokio::task::AbortHandle>,
}

impl Drop for Outbounds {
    fn drop(&mut self) {
        for c in &self.checks {
            c.abort();
        }
    }
}

impl Outbounds {
    /// Builds the nodes, groups and rules of `config`, keeping the nodes
    /// (and their health) of `previous` whose link is unchanged. `roots`
    /// gives the trusted certificates for nodes with TLS.
    pub fn new(
        config: &Config,
        direct: Direct,
        previous: Option<&Outbounds>,
        roots: &dyn Fn() -> Result<std::sync::Arc<rustls::RootCertStore>, String>,
        resolver: Option<&Rc<Forwarder>>,
    ) -> Result<Outbounds, String> {
        // Read the trusted certificates once for every node with TLS (a
        // subscription may bring hundreds), not once per node.
        let loaded: std::cell::RefCell<Option<std::sync::Arc<rustls::RootCertStore>>> =
            std::cell::RefCell::default();
        let roots = || {
            if let Some(r) = loaded.borrow().as_ref() {
                return Ok(r.clone());
            }
            let r = roots()?;
            *loaded.borrow_mut() = Some(r.clone());
            Ok(r)
        };
        let mut nodes = Vec::with_capacity(config.nodes.len());
        for n in &config.nodes {
            let kept = previous.and_then(|p| {
                p.nodes
                    .iter()
                    .find(|o| o.name == n.name && o.text == n.link)
            });
            nodes.push(match kept {
                Some(k) => k.clone(),
                None => Rc::new(
                    Node::new(&n.name, &n.link, roots, resolver)
                        .map_err(|e| format!("node '{}': {e}", n.name))?,
                ),
            });
        }
        let by_name = |name: &str| nodes.iter().find(|n| n.name == name).cloned();
        let groups: Vec<Rc<Group>> = config
            .groups
            .iter()
            .map(|g| {
                let members = g.nodes.iter().filter_map(|n| by_name(n)).collect();
                let group = Group::new(&g.name, g.policy, members, config.general.check.tolerance);
                let before = previous.and_then(|p| p.groups.iter().find(|o| o.name == g.name));
                if let Some(before) = before.filter(|b| b.policy == g.policy) {
                    group.keep_choices(before);
                }
                Rc::new(group)
            })
            .collect();
        let names: Vec<String> = config.groups.iter().map(|g| g.name.clone()).collect();
        let rules = Rules::new(&config.routing, &names);
        let all_direct = rules.only_direct();
        let mut out = Outbounds {
            direct,
            nodes,
            groups,
            resolver: resolver.cloned(),
            rules,
            all_direct,
            checks: Vec::new(),
        };
        out.checks = check::spawn(&out, &config.general.check);
        Ok(out)
    }

    /// Direct for every dial, with no nodes (the resolver of proxy servers'
    /// names goes this way).
    pub fn direct_only(direct: Direct) -> Outbounds {
        Outbounds {
            direct,
            nodes: Vec::new(),
            groups: Vec::new(),
            resolver: None,
            rules: Rules::all_direct(),
            all_direct: true,
            checks: Vec::new(),
        }
    }

    /// Everything goes direct: no rule or fallback names a group or block.
    pub fn all_direct(&self) -> bool {
        self.all_direct
    }

    /// Where `dial` goes.
    pub fn choose(&self, dial: &Flow) -> Choice {
        match self.rules.decide(dial) {
            Target::Direct => Choice::Direct,
            Target::Block => Choice::Block,
            Target::Group(i) => {
                let g = &self.groups[i];
                match g.pick(dial.l4, dial.remote.is_ipv6()) {
                    Some(n) => Choice::Node(n),
                    None => Choice::NoNode(Rc::from(g.name.as_str())),
                }
            }
        }
    }
}

impl Outbounds {
    /// Groups, their nodes and what the checks found, for `dae status`.
    pub fn report(&self) -> serde_json::Value {
        use serde_json::json;
        let path = |n: &Node, l4: L4, v6: bool| {
            let r = n.health.record(l4, v6);
            json!({
                "checked": r.checked,
                "alive": r.alive,
                "latency_ms": r.last().map(|d| d.as_millis() as u64),
                "avg10_ms": r.avg10().map(|d| d.as_millis() as u64),
                "moving_avg_ms": r.moving_avg().map(|d| d.as_millis() as u64),
                "error": r.error,
            })
        };
        let groups: Vec<serde_json::Value> = self
            .groups
            .iter()
            .map(|g| {
                let nodes: Vec<serde_json::Value> = g
                    .nodes
                    .iter()
                    .map(|n| {
                        json!({
                            "name": n.name,
                            "protocol": n.protocol(),
                            "server": n.server_text(),
                            "tcp4": path(n, L4::Tcp, false),
                            "tcp6": path(n, L4::Tcp, true),
                            "udp4": path(n, L4::Udp, false),
                            "udp6": path(n, L4::Udp, true),
                        })
                    })
                    .collect();
                let pick = |l4, v6| g.pick(l4, v6).map(|n| n.name.clone());
                json!({
                    "name": g.name,
                    "policy": g.policy.to_string(),
                    "nodes": nodes,
                    "selected": {
                        "tcp4": pick(L4::Tcp, false),
                        "tcp6": pick(L4::Tcp, true),
                        "udp4": pick(L4::Udp, false),
                        "udp6": pick(L4::Udp, true),
                    },
                })
            })
            .collect();
        json!(groups)
    }
}
