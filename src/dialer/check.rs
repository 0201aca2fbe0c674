//! Health checks: every `check_interval`, each node that a group uses is
//! tried over TCP (an HTTP HEAD to `tcp_check_url`) and over UDP (a DNS
//! question to `udp_check_dns`), once per IP version that has a check
//! address, and the result goes into the node's `health`. The first round
//! runs at start. A node going down or coming back is logged.
//!
//! Neighbours: `outbound` (spawns the tasks, stops them on drop), `node`
//! (dials through the node), `health` (where results go).

use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::group::Group;
use super::node::{Node, L4};
use super::outbound::Outbounds;
use super::{Direct, Target};
use crate::config::CheckSettings;

/// One check gives up after this long (or the interval, if shorter).
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// The head of the HTTP answer we read at most.
const MAX_HEAD: usize = 1024;

/// Starts one task per node used by a group.
pub fn spawn(out: &Outbounds, settings: &CheckSettings) -> Vec<tokio::task::AbortHandle> {
    let mut used: Vec<Rc<Node>> = Vec::new();
    for g in &out.groups {
        for n in &g.nodes {
            if !used.iter().any(|u| Rc::ptr_eq(u, n)) {
                used.push(n.clone());
            }
        }
    }
    used.into_iter()
        .map(|node| {
            let groups: Vec<Rc<Group>> = out
                .groups
                .iter()
                .filter(|g| g.nodes.iter().any(|n| Rc::ptr_eq(n, &node)))
                .cloned()
                .collect();
            let direct = out.direct.clone();
            let settings = settings.clone();
            tokio::task::spawn_local(run(node, groups, direct, settings)).abort_handle()
        })
        .collect()
}

async fn run(node: Rc<Node>, groups: Vec<Rc<Group>>, direct: Direct, settings: CheckSettings) {
    let mut tick = tokio::time::interval(settings.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let timeout = CHECK_TIMEOUT.min(settings.interval);
    loop {
        tick.tick().await;
        for v6 in [false, true] {
            if let Some(ip) = first_of(&settings.tcp.addresses, v6) {
                let target = SocketAddr::new(ip, settings.tcp.port);
                let r = tcp_check(&node, &direct, target, &settings, timeout).await;
                record(&node, &groups, L4::Tcp, v6, r);
            }
            if !node.carries(L4::Udp) {
                continue;
            }
            if let Some(ip) = first_of(&settings.udp.addresses, v6) {
                let target = SocketAddr::new(ip, settings.udp.port);
                let r = udp_check(&node, &direct, target, &settings, timeout).await;
                record(&node, &groups, L4::Udp, v6, r);
            }
        }
    }
}

fn first_of(addresses: &[IpAddr], v6: bool) -> Option<IpAddr> {
    addresses.iter().copied().find(|a| a.is_ipv6() == v6)
}

fn record(node: &Node, groups: &[Rc<Group>], l4: L4, v6: bool, result: Result<Duration, String>) {
    let family = if v6 { "IPv6" } else { "IPv4" };
    match result {
        Ok(latency) => {
            if node.health.passed(l4, v6, latency) {
                log::info!(
                    "node '{}': {} over {family} works again ({} ms)",
                    node.name,
                    l4.name(),
                    latency.as_millis()
                );
            }
            log::debug!(
                "node '{}': {} {family} check {} ms",
                node.name,
                l4.name(),
                latency.as_millis()
            );
        }
        Err(e) => {
            if node.health.failed(l4, v6, e.clone()) {
                log::warn!(
                    "node '{}': {} over {family} is down: {e}",
                    node.name,
                    l4.name()
                );
                for g in groups.iter().filter(|g| g.pick(l4, v6).is_none()) {
                    log::error!(
                        "group '{}': no node alive for {} over {family}: its queries fail",
                        g.name,
                        l4.name()
                    );
                }
            }
        }
    }
}

/// HEAD of the check URL through the node; any 2xx or 3xx status passes.
async fn tcp_check(
    node: &Node,
    direct: &Direct,
    target: SocketAddr,
    settings: &CheckSettings,
    timeout: Duration,
) -> Result<Duration, String> {
    let start = Instant::now();
    let check = async {
        let mut s = node
            .stream(direct, &Target::Addr(target), timeout)
            .await
            .map_err(|e| e.to_string())?;
        let request = format!(
            "HEAD {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: dae\r\nConnection: close\r\n\r\n",
            settings.tcp.path, settings.tcp.host
        );
        s.write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        s.flush().await.map_err(|e| e.to_string())?;
        let mut head = Vec::with_capacity(128);
        let mut buf = [0u8; 256];
        while !head.windows(2).any(|w| w == b"\r\n") && head.len() < MAX_HEAD {
            let n = s.read(&mut buf).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("closed before an HTTP answer".to_string());
            }
            head.extend_from_slice(&buf[..n]);
        }
        let line = String::from_utf8_lossy(&head);
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse::<u16>().ok())
            .filter(|_| line.starts_with("HTTP/1."))
            .ok_or_else(|| "not an HTTP answer".to_string())?;
        if (200..400).contains(&status) {
            Ok(start.elapsed())
        } else {
            Err(format!("HTTP status {status}"))
        }
    };
    tokio::time::timeout(timeout, check)
        .await
        .unwrap_or_else(|_| Err("timed out".to_string()))
}

/// A DNS question through the node; any answer with our id passes.
async fn udp_check(
    node: &Node,
    direct: &Direct,
    target: SocketAddr,
    settings: &CheckSettings,
    timeout: Duration,
) -> Result<Duration, String> {
    let start = Instant::now();
    let id = crate::rand::u16();
    let query = check_query(id, settings.udp.name.as_deref());
    let check = async {
        let mut p = node
            .packets(direct, target, timeout)
            .await
            .map_err(|e| e.to_string())?;
        p.tx.send(&query).await.map_err(|e| e.to_string())?;
        loop {
            let reply = p.rx.recv().await.map_err(|e| e.to_string())?;
            if reply.len() >= 12 && reply[..2] == id.to_be_bytes() && reply[2] & 0x80 != 0 {
                return Ok(start.elapsed());
            }
        }
    };
    tokio::time::timeout(timeout, check)
        .await
        .unwrap_or_else(|_| Err("timed out".to_string()))
}

/// `NAME. IN A`, or `. IN NS` when the check host is an address.
fn check_query(id: u16, name: Option<&str>) -> Vec<u8> {
    let mut q = Vec::with_capacity(64);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    let qtype: u16 = match name {
        Some(n) => {
            for label in n.split('.').filter(|l| !l.is_empty()) {
                q.push(label.len() as u8);
                q.extend_from_slice(label.as_bytes());
            }
            1
        }
        None => 2,
    };
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_query_is_a_question() {
        let q = check_query(0x1234, Some("dns.google.com"));
        let info = crate::wire::parse_query(&q).expect("a valid query");
        assert_eq!(info.qtype, 1);
        let q = check_query(7, None);
        assert_eq!(crate::wire::parse_query(&q).expect("root NS").qtype, 2);
    }
}
