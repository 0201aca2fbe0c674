//! `dae status`: what the running daemon is doing, read over a Unix socket.
//!
//! The daemon listens on `status_socket` (root only, mode 0600); each
//! connection sends one request line and gets one JSON document, then is
//! closed: `status` (or no line within 100 ms) is the report,
//! `update-subscriptions [NAME]` fetches subscriptions now and answers
//! once they are done. `dae status` prints it
//! for people, `dae status --json` as is (LuCI reads that). At start a
//! socket left by a run that ended is replaced; `dae status` tells "not
//! running" (no socket) from such a stale socket.
//!
//! Neighbours: `daemon` (serves it with the live parts), `main` (the client).

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;

/// Where the daemon answers unless `status_socket` says otherwise.
pub const DEFAULT_SOCKET: &str = "/var/run/dae.sock";

/// How long the daemon waits for a request line before it takes a silent
/// client as asking for the report (older clients, `socat`).
const REQUEST_WAIT: Duration = Duration::from_millis(100);

/// A request the daemon answers later (a refresh that downloads).
pub type Pending = std::pin::Pin<Box<dyn std::future::Future<Output = Value>>>;

/// Listens on `path`. A client sends one line: `status` (or nothing) gets
/// `report()`; any other line goes to `command`, whose answer it gets.
pub fn serve(
    path: &Path,
    report: impl Fn() -> Value + 'static,
    command: impl Fn(&str) -> Pending + 'static,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    // A socket file left by a run that ended (killed, crashed) is in the
    // way: it is replaced. One that a running dae answers on is left to it;
    // anything else that is not a socket stays, and binding fails.
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if meta.file_type().is_socket() {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    "another dae answers there",
                ));
            }
            std::fs::remove_file(path)?;
            log::info!("{}: replaced a stale status socket", path.display());
        }
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    let report = std::rc::Rc::new(report);
    let command = std::rc::Rc::new(command);
    Ok(tokio::task::spawn_local(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let (report, command) = (report.clone(), command.clone());
            tokio::task::spawn_local(async move {
                let line = read_request(&mut stream).await;
                let answer = match line.as_deref() {
                    None | Some("") | Some("status") => report(),
                    Some(other) => command(other).await,
                };
                let mut text = answer.to_string();
                text.push('\n');
                // One short write; a client that does not read loses its answer.
                let _ =
                    tokio::time::timeout(Duration::from_secs(2), stream.write_all(text.as_bytes()))
                        .await;
            });
        }
    }))
}

/// The client's request line, if it sends one at once (at most 256 bytes).
async fn read_request(stream: &mut tokio::net::UnixStream) -> Option<String> {
    let mut buf = Vec::new();
    let read = async {
        let mut byte = [0u8; 1];
        while buf.len() < 256 {
            match stream.read(&mut byte).await {
                Ok(1) if byte[0] == b'\n' => break,
                Ok(1) => buf.push(byte[0]),
                _ => break,
            }
        }
    };
    tokio::time::timeout(REQUEST_WAIT, read).await.ok()?;
    Some(String::from_utf8_lossy(&buf).trim().to_string())
}

/// Sends `request` and reads the answer, waiting at most `wait`.
pub fn ask(path: &Path, request: &str, wait: Duration) -> Result<Value, String> {
    use std::io::Write;
    let mut s = std::os::unix::net::UnixStream::connect(path).map_err(|e| {
        let path = path.display();
        match e.kind() {
            std::io::ErrorKind::NotFound => format!("dae is not running: no {path}"),
            std::io::ErrorKind::ConnectionRefused => format!(
                "{path} exists but no dae is listening on it (stale socket from a run that ended?)"
            ),
            _ => format!("cannot reach the daemon at {path}: {e}"),
        }
    })?;
    // A daemon from before requests answers at once and closes: the write
    // may fail, the answer is still there to read.
    let _ = s.write_all(format!("{request}\n").as_bytes());
    s.set_read_timeout(Some(wait)).ok();
    let mut text = String::new();
    s.read_to_string(&mut text)
        .map_err(|e| format!("reading {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("bad answer from the daemon: {e}"))
}

/// Reads the daemon's report.
pub fn fetch(path: &Path) -> Result<Value, String> {
    ask(path, "status", Duration::from_secs(5))
}

fn n(v: &Value, path: &[&str]) -> u64 {
    path.iter().fold(v, |v, k| &v[*k]).as_u64().unwrap_or(0)
}

/// The report for people.
pub fn render(v: &Value) -> String {
    let mut out = String::new();
    let up = n(v, &["uptime_seconds"]);
    out.push_str(&format!(
        "dae {} running (pid {}, up {}h{:02}m{:02}s), config {}\n",
        v["version"].as_str().unwrap_or("?"),
        n(v, &["pid"]),
        up / 3600,
        up / 60 % 60,
        up % 60,
        v["config"].as_str().unwrap_or("?")
    ));
    let ifaces: Vec<&str> = v["interfaces"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if ifaces.is_empty() {
        out.push_str("interception: off (no lan_interface)\n");
    } else {
        out.push_str(&format!(
            "interception: {} (tproxy port {}, {})\n",
            ifaces.join(", "),
            n(v, &["tproxy_port"]),
            if v["fail_closed"].as_bool() == Some(true) {
                "fail closed"
            } else {
                "fail open"
            }
        ));
        let d = &v["datapath"];
        out.push_str(&format!(
            "datapath: {} seen, {} handed to dae, {} passed, {} dropped, {} assign failures\n",
            n(d, &["seen"]),
            n(d, &["handed"]),
            n(d, &["passed"]),
            n(d, &["dropped"]),
            n(d, &["assign_failed"])
        ));
        out.push_str(&format!(
            "lan flows (tcp, udp): {} direct, {} proxied, {} sniffed, {} blocked, {} bypassed, {} without relay\n",
            n(d, &["flows_direct"]),
            n(d, &["flows_proxied"]),
            n(d, &["flows_sniffed"]),
            n(d, &["flows_blocked"]),
            n(d, &["flows_bypassed"]),
            n(d, &["flows_no_relay"])
        ));
        let r = &v["routing"];
        out.push_str(&format!(
            "routing: {} rules in the kernel, {} of {} learned addresses live\n",
            n(r, &["rules"]),
            n(r, &["learned_live"]),
            n(r, &["learned_capacity"])
        ));
        let relay = &v["relay"];
        if let Some(ways) = relay["tcp"].as_object() {
            for (name, w) in ways {
                out.push_str(&format!(
                    "relay via {name}: {} open, {} in all, {} failed, {} bytes up, {} down\n",
                    n(w, &["active"]),
                    n(w, &["total"]),
                    n(w, &["failed"]),
                    n(w, &["bytes_up"]),
                    n(w, &["bytes_down"])
                ));
            }
            out.push_str(&format!(
                "relay refused: {} (no live node), {} blocked after sniffing\n",
                n(relay, &["refused_no_node"]),
                n(relay, &["blocked"])
            ));
        }
        let udp = &relay["udp"];
        if udp.is_object() {
            out.push_str(&format!(
                "udp relay: {}/{} endpoints, {} expired, {} evicted, {} sniffed (QUIC), {} blocked, {} refused (no live node), {} datagrams dropped\n",
                n(udp, &["endpoints"]),
                n(udp, &["capacity"]),
                n(udp, &["expired"]),
                n(udp, &["evicted"]),
                n(udp, &["sniffed"]),
                n(udp, &["blocked"]),
                n(udp, &["refused_no_node"]),
                n(udp, &["dropped"])
            ));
            for (name, w) in udp["ways"].as_object().into_iter().flatten() {
                out.push_str(&format!(
                    "udp relay via {name}: {} endpoints, {} in all, {} failed, {} datagrams / {} bytes up, {} / {} down\n",
                    n(w, &["endpoints"]),
                    n(w, &["total"]),
                    n(w, &["failed"]),
                    n(w, &["datagrams_up"]),
                    n(w, &["bytes_up"]),
                    n(w, &["datagrams_down"]),
                    n(w, &["bytes_down"])
                ));
            }
        }
    }
    let listen: Vec<&str> = v["dns_listen"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !listen.is_empty() {
        let sources = if v["allow_remote"].as_bool() == Some(true) {
            "any source (allow_remote)".to_string()
        } else {
            format!(
                "local sources only, {} queries from elsewhere dropped",
                n(v, &["dns_listen_dropped"])
            )
        };
        out.push_str(&format!(
            "dns listeners: {} ({sources})\n",
            listen.join(", ")
        ));
    }
    let d = &v["dns"];
    out.push_str(&format!(
        "dns: {} queries, {} upstream exchanges ({} failed), {} SERVFAIL, {} rejected, {} refused, {} malformed\n",
        n(d, &["queries"]),
        n(d, &["upstream_exchanges"]),
        n(d, &["upstream_failures"]),
        n(d, &["servfail"]),
        n(d, &["rejected"]),
        n(d, &["refused"]),
        n(d, &["malformed"])
    ));
    let c = &v["cache"];
    out.push_str(&format!(
        "cache: {}/{} entries, {} hits, {} stale hits, {} misses, {} evictions\n",
        n(c, &["entries"]),
        n(c, &["capacity"]),
        n(c, &["hits"]),
        n(c, &["stale_hits"]),
        n(c, &["misses"]),
        n(c, &["evictions"])
    ));
    for r in v["rule_sets"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "rule set {} ({}): {} entries, {} KiB\n",
            r["name"].as_str().unwrap_or("?"),
            r["file"].as_str().unwrap_or("?"),
            n(r, &["entries"]),
            n(r, &["memory_bytes"]).div_ceil(1024)
        ));
    }
    for sub in v["subscriptions"].as_array().into_iter().flatten() {
        out.push_str(&subscription_line(sub));
    }
    for g in v["groups"].as_array().into_iter().flatten() {
        let selected = |k: &str| {
            g["selected"][k]
                .as_str()
                .unwrap_or("none alive")
                .to_string()
        };
        out.push_str(&format!(
            "group {} ({}): tcp {} / udp {} (IPv4), tcp {} / udp {} (IPv6)\n",
            g["name"].as_str().unwrap_or("?"),
            g["policy"].as_str().unwrap_or("?"),
            selected("tcp4"),
            selected("udp4"),
            selected("tcp6"),
            selected("udp6"),
        ));
        for n in g["nodes"].as_array().into_iter().flatten() {
            let path = |k: &str| {
                let p = &n[k];
                match (
                    p["checked"].as_bool(),
                    p["alive"].as_bool(),
                    p["latency_ms"].as_u64(),
                ) {
                    (None, None, _) => "-".to_string(),
                    (Some(false), _, _) => "unchecked".to_string(),
                    (_, Some(true), Some(ms)) => format!("{ms} ms"),
                    (_, Some(true), None) => "up".to_string(),
                    _ => format!("DOWN ({})", p["error"].as_str().unwrap_or("?")),
                }
            };
            out.push_str(&format!(
                "  node {} {} {}: tcp4 {}, udp4 {}, tcp6 {}, udp6 {}\n",
                n["name"].as_str().unwrap_or("?"),
                n["protocol"].as_str().unwrap_or("?"),
                n["server"].as_str().unwrap_or("?"),
                path("tcp4"),
                path("udp4"),
                path("tcp6"),
                path("udp6"),
            ));
        }
    }
    out
}

/// One subscription, for people: where its list comes from and what the
/// last fetch said.
fn subscription_line(s: &Value) -> String {
    let skipped: u64 = s["skipped"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| n(r, &["links"]))
        .sum();
    let mut line = format!(
        "subscription {} ({}): {} node(s) {}",
        s["name"].as_str().unwrap_or("?"),
        s["url"].as_str().unwrap_or("?"),
        n(s, &["nodes"]),
        match s["source"].as_str() {
            Some("fetched") => "fetched",
            Some("stored") => "from the stored list",
            _ => "(no list yet)",
        }
    );
    if skipped > 0 {
        line.push_str(&format!(", {skipped} link(s) skipped"));
    }
    if s["enabled"].as_bool() == Some(false) {
        line.push_str(", disabled");
    }
    if let Some(e) = s["error"].as_str() {
        line.push_str(&format!(
            "; last fetch failed: {e} (the last good list stays)"
        ));
    }
    line.push('\n');
    line
}

/// The answer to `dae update-subscriptions`, for people.
pub fn render_update(v: &Value) -> String {
    let updated: Vec<&str> = v["updated"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if updated.is_empty() {
        return "no enabled subscription\n".into();
    }
    v["subscriptions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["name"].as_str().is_some_and(|n| updated.contains(&n)))
        .map(subscription_line)
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn renders_every_part() {
        let example = json!({"version": "0", "pid": 1, "uptime_seconds": 61, "config": "/etc/config/dae",
            "interfaces": ["br-lan"], "tproxy_port": 12345, "fail_closed": false,
            "datapath": {"seen": 3, "handed": 2, "passed": 1, "dropped": 0, "assign_failed": 0},
            "dns_listen": [], "dns": {"queries": 5}, "cache": {"entries": 1, "capacity": 4096}});
        let text = super::render(&example);
        assert!(text.contains("up 0h01m01s"), "{text}");
        assert!(text.contains("interception: br-lan (tproxy port 12345, fail open)"));
        assert!(text.contains("3 seen, 2 handed to dae, 1 passed"));
        assert!(text.contains("dns: 5 queries"));
        assert!(text.contains("cache: 1/4096 entries"));
        let listening = json!({"dns_listen": ["0.0.0.0:53"], "dns_listen_dropped": 7});
        assert!(super::render(&listening).contains(
            "dns listeners: 0.0.0.0:53 (local sources only, 7 queries from elsewhere dropped)"
        ));
        let with_group = json!({"groups": [{"name": "proxy", "policy": "min",
            "selected": {"tcp4": "a", "udp4": null},
            "nodes": [{"name": "a", "protocol": "socks5", "server": "192.0.2.1:1080",
                "tcp4": {"checked": true, "alive": true, "latency_ms": 12},
                "udp4": {"checked": true, "alive": false, "error": "timed out"},
                "tcp6": {"checked": false, "alive": true}}]}]});
        let text = super::render(&json!({"rule_sets": [{"name": "geosite:cn",
            "file": "/usr/share/v2ray/geosite.dat", "entries": 100000, "memory_bytes": 2831155}]}));
        assert!(
            text.contains(
                "rule set geosite:cn (/usr/share/v2ray/geosite.dat): 100000 entries, 2765 KiB"
            ),
            "{text}"
        );
        let relay = json!({"interfaces": ["br-lan"], "relay": {"tcp": {},
            "udp": {"endpoints": 3, "capacity": 4096, "expired": 4, "evicted": 5, "sniffed": 6,
                "blocked": 7, "refused_no_node": 8, "dropped": 9,
                "ways": {"ss1": {"endpoints": 3, "total": 10, "failed": 1, "datagrams_up": 20,
                    "bytes_up": 2000, "datagrams_down": 30, "bytes_down": 3000}}}}});
        let text = super::render(&relay);
        assert!(
            text.contains("udp relay: 3/4096 endpoints, 4 expired, 5 evicted, 6 sniffed (QUIC), 7 blocked, 8 refused (no live node), 9 datagrams dropped"),
            "{text}"
        );
        assert!(
            text.contains("udp relay via ss1: 3 endpoints, 10 in all, 1 failed, 20 datagrams / 2000 bytes up, 30 / 3000 down"),
            "{text}"
        );
        let subs = json!({"subscriptions": [
            {"name": "s", "url": "https://sub.example:443", "nodes": 12, "source": "stored",
             "enabled": true, "skipped": [{"reason": "vless: ws", "links": 2}],
             "error": "HTTP 404", "store_error": null},
            {"name": "t", "url": "http://192.0.2.1:80", "nodes": 0, "source": "none",
             "enabled": false, "skipped": []}]});
        let text = super::render(&subs);
        assert!(
            text.contains(
                "subscription s (https://sub.example:443): 12 node(s) from the stored list, \
                 2 link(s) skipped; last fetch failed: HTTP 404 (the last good list stays)\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "subscription t (http://192.0.2.1:80): 0 node(s) (no list yet), disabled\n"
            ),
            "{text}"
        );
        let update =
            json!({"updated": ["t"], "failed": [], "subscriptions": subs["subscriptions"]});
        assert_eq!(
            super::render_update(&update),
            "subscription t (http://192.0.2.1:80): 0 node(s) (no list yet), disabled\n"
        );
        let text = super::render(&with_group);
        assert!(
            text.contains("group proxy (min): tcp a / udp none alive"),
            "{text}"
        );
        assert!(
            text.contains(
                "node a socks5 192.0.2.1:1080: tcp4 12 ms, udp4 DOWN (timed out), tcp6 unchecked, udp6 -"
            ),
            "{text}"
        );
    }
}
