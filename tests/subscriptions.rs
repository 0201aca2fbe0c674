//! Subscriptions end to end, on loopback: the real `dae` fetches node
//! lists from a real HTTP and HTTPS server (tests/servers/subscription.py,
//! a test CA), puts the nodes into groups, and sends DNS through a real
//! SOCKS5 proxy (microsocks) it learned from a list.
//!
//! What is shown: each format (base64 standard and URL-safe, plain text,
//! SIP008; by Content-Length, chunked and to the connection's end, after
//! redirects, over HTTPS to a host name) gives the expected nodes, and bad
//! links are skipped with their reason; a group filter picks the right
//! ones; the fetch goes out the way the routing rules say; the server
//! gone, garbage, 50 MB, a redirect loop, an empty list each leave the
//! last good list in service with the reason in `dae status`; an unchanged
//! refresh does not rewrite the stored file; a restart with the server
//! down comes up with the stored list; a refresh that drops the node in
//! use moves the group to another live node, and the node kept keeps its
//! health.
//!
//! Needs unbound, microsocks, python3 and openssl; skips loudly without.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::tls::TestCa;
use common::{answers, free_port, have, kill, wait_until, Dae, TempDir, Unbound};
use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;
use serde_json::Value;

const SS_B64: &str = "YWVzLTI1Ni1nY206cGFzcw"; // aes-256-gcm:pass, URL-safe, unpadded

fn can_run() -> bool {
    ["unbound", "microsocks", "python3", "openssl"]
        .iter()
        .all(|p| have(p))
}

/// The provider: its files directory and the server process.
struct Provider {
    child: Child,
    dir: TempDir,
    port: u16,
}

impl Provider {
    fn start(tls: Option<(&Path, &Path)>) -> Provider {
        let dir = TempDir::new("provider");
        let port = free_port();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/servers/subscription.py");
        let log = std::fs::File::create(dir.path("log")).unwrap();
        let mut cmd = Command::new("python3");
        cmd.arg(&script).arg(&dir.0).arg(port.to_string());
        if let Some((cert, key)) = tls {
            cmd.arg(cert).arg(key);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start python3");
        let p = Provider { child, dir, port };
        let up = wait_until(Duration::from_secs(10), || p.log().contains("listening"));
        assert!(up, "the provider did not start: {}", p.log());
        p
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path("log")).unwrap_or_default()
    }

    fn serve(&self, name: &str, body: &str) {
        std::fs::write(self.dir.path(name), body).unwrap();
    }

    /// `garbage`, `big`, `loop`, `404`, `empty`, or "" for the file itself.
    fn mode(&self, name: &str, mode: &str) {
        std::fs::write(self.dir.path(&format!("{name}.mode")), mode).unwrap();
    }

    fn requests(&self, path: &str) -> usize {
        self.log()
            .lines()
            .filter(|l| *l == format!("GET {path}"))
            .count()
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// microsocks on a loopback port; its log says where each client went.
struct Socks {
    child: Option<Child>,
    dir: TempDir,
    port: u16,
}

impl Socks {
    fn start() -> Socks {
        let dir = TempDir::new("microsocks");
        let port = free_port();
        let log = std::fs::File::create(dir.path("log")).unwrap();
        let child = Command::new("microsocks")
            .args(["-i", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start microsocks");
        let up = wait_until(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(up, "microsocks did not listen on {port}");
        Socks {
            child: Some(child),
            dir,
            port,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path("log")).unwrap_or_default()
    }

    fn connections_to(&self, port: u16) -> usize {
        self.log()
            .matches(&format!("connected to 127.0.0.1:{port}"))
            .count()
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill(&mut c);
        }
    }
}

impl Drop for Socks {
    fn drop(&mut self) {
        self.stop();
    }
}

fn subscription<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["subscriptions"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("no subscription {name} in {status:#}"))
}

fn group<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["groups"]
        .as_array()
        .and_then(|a| a.iter().find(|g| g["name"] == name))
        .unwrap_or_else(|| panic!("no group {name} in {status:#}"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|s| s.as_str().unwrap_or_default().to_string())
        .collect()
}

fn group_nodes(status: &Value, name: &str) -> Vec<String> {
    group(status, name)["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| n["name"].as_str().unwrap().to_string())
        .collect()
}

/// `dae update-subscriptions [NAME] --json`: exit code and answer.
fn update(dae: &Dae, name: Option<&str>) -> (i32, Value) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dae"));
    cmd.arg("update-subscriptions");
    if let Some(n) = name {
        cmd.arg(n);
    }
    let out = cmd
        .args(["--json", "-s"])
        .arg(dae.status_socket())
        .output()
        .unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "update-subscriptions: {e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), v)
}

/// Waits until every subscription named has been fetched once.
fn wait_fetched(dae: &Dae, names: &[&str]) -> Value {
    let mut last = Value::Null;
    let done = wait_until(Duration::from_secs(20), || {
        last = dae.status();
        names
            .iter()
            .all(|n| !subscription(&last, n)["last_attempt"].is_null())
    });
    assert!(done, "not fetched: {last:#}\n{}", dae.log());
    last
}

fn base64(data: &str, url_safe: bool) -> String {
    let std = common::b64(data.as_bytes());
    if url_safe {
        std.trim_end_matches('=')
            .replace('+', "-")
            .replace('/', "_")
    } else {
        std
    }
}

fn ask(dae: &Dae, name: &str) -> Option<Message> {
    let q = common::query(name, RecordType::A, false);
    common::udp_exchange(dae.addr, &q, Duration::from_secs(5))
        .map(|r| Message::from_vec(&r).unwrap())
}

#[test]
fn each_format_gives_its_nodes_and_filters_pick_them() {
    if !can_run() {
        return;
    }
    let ca = TestCa::new("sub");
    let (cert, key) = ca.server("sub", &["DNS:sub.lab.example"]);
    let dns = Unbound::start(&["sub.lab.example. 300 IN A 127.0.0.1"]);
    let http = Provider::start(None);
    let https = Provider::start(Some((&cert, &key)));
    // The health checks' target, apart from the providers.
    let check = Provider::start(None);
    let socks = Socks::start();
    let plain = format!(
        "socks5://192.0.2.1:1080#HK%2001\n\
         ss://{SS_B64}@192.0.2.2:8388#JP 01\n\
         vless://b831381d-6324-4d53-ad4f-8cda48b30811@192.0.2.3:443?type=ws#HK ws\n\
         not a link\n\
         trojan://secret@192.0.2.4:443?sni=hk.example#HK 02\n"
    );
    // Wrapped at 76 columns, as some providers do.
    let wrapped: String = base64(&plain, false)
        .as_bytes()
        .chunks(76)
        .map(|c| format!("{}\r\n", std::str::from_utf8(c).unwrap()))
        .collect();
    http.serve("std", &wrapped);
    http.serve("urlsafe", &base64(&plain, true));
    http.serve("plain", &plain);
    https.serve(
        "sip",
        r#"{"version": 1, "servers": [
            {"server": "192.0.2.9", "server_port": 8388, "password": "pw",
             "method": "chacha20-ietf-poly1305", "remarks": "SG 01"},
            {"server": "192.0.2.10", "server_port": 8388, "password": "pw",
             "method": "aes-128-gcm", "remarks": "HK 09", "plugin": "obfs-local"}]}"#,
    );
    let store = TempDir::new("store");
    let h = format!("http://127.0.0.1:{}", http.port);
    let config = format!(
        "config dae 'config'\n\toption log_level 'debug'\n\toption ca_file '{ca}'\n\
         \toption subscription_dir '{store}'\n\toption check_interval '3600'\n\
         \toption tcp_check_url 'http://127.0.0.1:{cp}/,127.0.0.1'\n\
         \toption udp_check_dns '127.0.0.1:{dp}'\n\n\
         config dns 'dns'\n\tlist dns_listen '@LISTEN@'\n\n\
         config upstream 'lab'\n\toption address 'udp://127.0.0.1:{dp}'\n\n\
         config subscription 'std'\n\toption url '{h}/sub/std'\n\n\
         config subscription 'urlsafe'\n\toption url '{h}/chunked/urlsafe'\n\n\
         config subscription 'plain'\n\toption url '{h}/redirect/3/plain'\n\n\
         config subscription 'sip'\n\toption url 'https://sub.lab.example:{sp}/close/sip'\n\n\
         config subscription 'wrongname'\n\toption url 'https://127.0.0.1:{sp}/close/sip'\n\n\
         config node 'socks'\n\toption link 'socks5://127.0.0.1:{mp}'\n\n\
         config group 'via'\n\tlist node 'socks'\n\n\
         config group 'hk'\n\tlist subscription 'std'\n\tlist subscription 'sip'\n\
         \tlist filter 'name(keyword: HK) && !name(regex: \"0[2-9]$\")'\n\
         \tlist filter 'subtag(sip)'\n\n\
         config group 'everything'\n\tlist subscription 'std'\n\tlist subscription 'urlsafe'\n\
         \tlist subscription 'plain'\n\tlist subscription 'sip'\n\n\
         config routing 'routing'\n\
         \tlist rule 'dip(127.0.0.1) && dport({hp}) -> via'\n\toption fallback 'direct'\n",
        ca = ca.cert.display(),
        store = store.0.display(),
        hp = http.port,
        sp = https.port,
        cp = check.port,
        dp = dns.port,
        mp = socks.port,
    );
    let dae = Dae::start(&config);
    let status = wait_fetched(&dae, &["std", "urlsafe", "plain", "sip", "wrongname"]);
    // The certificate is for sub.lab.example, not for 127.0.0.1.
    let wrong = subscription(&status, "wrongname");
    assert!(
        wrong["error"]
            .as_str()
            .unwrap_or_default()
            .starts_with("TLS: "),
        "{wrong:#}"
    );
    assert_eq!(wrong["source"], "none");
    for name in ["std", "urlsafe", "plain"] {
        let s = subscription(&status, name);
        assert_eq!(s["error"], Value::Null, "{name}: {s:#}");
        assert_eq!(s["source"], "fetched");
        assert_eq!(
            strings(&s["node_names"]),
            [
                format!("{name}/HK 01"),
                format!("{name}/JP 01"),
                format!("{name}/HK 02")
            ],
            "{name}"
        );
        let skipped = s["skipped"].to_string();
        assert!(
            skipped.contains("vless") && skipped.contains("not a share link"),
            "{skipped}"
        );
    }
    let sip = subscription(&status, "sip");
    assert_eq!(sip["error"], Value::Null, "{sip:#}");
    assert_eq!(strings(&sip["node_names"]), ["sip/SG 01"]);
    assert!(sip["skipped"].to_string().contains("plugins"), "{sip:#}");
    // HK but not HK 02 from std, and everything from sip.
    assert_eq!(group_nodes(&status, "hk"), ["std/HK 01", "sip/SG 01"]);
    assert_eq!(group_nodes(&status, "everything").len(), 10);
    // Each bad link is logged once per fetch, with its reason.
    assert!(dae
        .log()
        .contains("subscription 'plain': 1 link(s) skipped: vless:"));
    // The fetches to the HTTP provider went through the node the routing
    // rule names (one connection per request: std, urlsafe, and plain
    // after 3 redirects); the HTTPS one (another port) went direct.
    assert_eq!(socks.connections_to(http.port), 1 + 1 + 4);
    assert_eq!(socks.connections_to(https.port), 0);
    assert_eq!(http.requests("/redirect/1/plain"), 1);
    assert_eq!(http.requests("/sub/plain"), 1);
    // The human status names each one.
    let out = Command::new(env!("CARGO_BIN_EXE_dae"))
        .args(["status", "-s"])
        .arg(dae.status_socket())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "subscription sip (https://sub.lab.example:{}): 1 node(s) fetched, 1 link(s) skipped",
            https.port
        )),
        "{text}"
    );
}

#[test]
fn failures_keep_the_last_good_list_and_a_restart_uses_it() {
    if !can_run() {
        return;
    }
    let dns = Unbound::start(&[]);
    let http = Provider::start(None);
    let list = "socks5://192.0.2.1:1080#a\nsocks5://192.0.2.2:1080#b\n";
    http.serve("s", list);
    let store = TempDir::new("store");
    let config = format!(
        "config dae 'config'\n\toption subscription_dir '{store}'\n\toption check_interval '3600'\n\
         \toption tcp_check_url 'http://127.0.0.1:{hp}/,127.0.0.1'\n\
         \toption udp_check_dns '127.0.0.1:{dp}'\n\n\
         config dns 'dns'\n\tlist dns_listen '@LISTEN@'\n\n\
         config upstream 'lab'\n\toption address 'udp://127.0.0.1:{dp}'\n\n\
         config subscription 's'\n\toption url 'http://127.0.0.1:{hp}/sub/s'\n\n\
         config group 'g'\n\tlist subscription 's'\n",
        store = store.0.display(),
        hp = http.port,
        dp = dns.port,
    );
    let dae = Dae::start(&config);
    let status = wait_fetched(&dae, &["s"]);
    assert_eq!(subscription(&status, "s")["nodes"], 2, "{status:#}");
    let stored = store.path("s.list");
    assert_eq!(std::fs::read_to_string(&stored).unwrap(), list);
    let mtime = || std::fs::metadata(&stored).unwrap().modified().unwrap();
    let first = mtime();
    std::thread::sleep(Duration::from_millis(50));

    // The same list again: nothing written.
    let (code, v) = update(&dae, Some("s"));
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(mtime(), first, "an unchanged list was written again");

    for (mode, reason) in [
        ("garbage", "not a node list"),
        ("big", "larger than 4096 KiB"),
        ("loop", "more than 3 redirects"),
        ("404", "HTTP 404"),
        ("empty", "the list is empty"),
    ] {
        http.mode("s", mode);
        let (code, v) = update(&dae, Some("s"));
        assert_eq!(code, 1, "{mode}: {v:#}");
        let s = subscription(&v, "s");
        assert!(
            s["error"].as_str().unwrap_or_default().contains(reason),
            "{mode}: {s:#}"
        );
        assert_eq!(s["nodes"], 2, "{mode}: the last good list left");
        let status = dae.status();
        assert!(subscription(&status, "s")["error"]
            .as_str()
            .unwrap()
            .contains(reason));
        assert_eq!(group_nodes(&status, "g"), ["s/a", "s/b"], "{mode}");
        assert_eq!(mtime(), first, "{mode}: the stored list was rewritten");
    }
    // A list with no usable link is no list either.
    http.mode("s", "");
    http.serve("s", "vless://x@192.0.2.1:443?type=grpc#c\n");
    let (code, v) = update(&dae, None);
    assert_eq!(code, 1);
    assert!(subscription(&v, "s")["error"]
        .as_str()
        .unwrap()
        .contains("no usable node (1 link(s) skipped)"));
    assert!(dae.log().contains("keeping the last good list (2 node(s))"));

    // The server gone; then a restart while it is still away.
    drop(http);
    let (code, v) = update(&dae, Some("s"));
    assert_eq!(code, 1);
    assert!(
        subscription(&v, "s")["error"]
            .as_str()
            .unwrap()
            .contains("refused"),
        "{v:#}"
    );
    assert_eq!(dae.stop(), Some(0));
    let dae = Dae::start(&config);
    let status = dae.status();
    let s = subscription(&status, "s");
    assert_eq!(s["source"], "stored", "{s:#}");
    assert_eq!(s["nodes"], 2);
    assert_eq!(group_nodes(&status, "g"), ["s/a", "s/b"]);
    let status = wait_fetched(&dae, &["s"]);
    let s = subscription(&status, "s");
    assert!(s["error"].as_str().unwrap().contains("refused"), "{s:#}");
    assert_eq!(s["nodes"], 2);
    assert_eq!(mtime(), first);
    // Names that are not there, and a bad request, get a clear answer.
    let (code, v) = update(&dae, Some("nope"));
    assert_eq!(code, 1);
    assert_eq!(v["error"], "no subscription is named 'nope' (defined: s)");
}

#[test]
fn dns_goes_through_a_subscription_node_and_a_refresh_moves_the_group() {
    if !can_run() {
        return;
    }
    let dns = Unbound::start(&["www.lab.example. 300 IN A 192.0.2.80"]);
    let http = Provider::start(None);
    let (mut a, mut b) = (Socks::start(), Socks::start());
    let dead = free_port();
    let link = |name: &str, port: u16| format!("socks5://127.0.0.1:{port}#{name}\n");
    http.serve(
        "s",
        &(link("HK a", a.port) + &link("HK b", b.port) + &link("JP dead", dead)),
    );
    let store = TempDir::new("store");
    let config = format!(
        "config dae 'config'\n\toption subscription_dir '{store}'\n\toption check_interval '5'\n\
         \toption tcp_check_url 'http://127.0.0.1:{hp}/,127.0.0.1'\n\
         \toption udp_check_dns '127.0.0.1:{dp}'\n\n\
         config dns 'dns'\n\tlist dns_listen '@LISTEN@'\n\toption cache_size '0'\n\
         \toption request_fallback 'lab'\n\toption upstream_timeout '2'\n\n\
         config upstream 'lab'\n\toption address 'tcp://127.0.0.1:{dp}'\n\n\
         config subscription 's'\n\toption url 'http://127.0.0.1:{hp}/sub/s'\n\n\
         config group 'proxy'\n\tlist subscription 's'\n\tlist filter 'name(keyword: HK)'\n\
         \toption policy 'min'\n\n\
         config routing 'routing'\n\tlist rule 'dport({dp}) -> proxy'\n\toption fallback 'direct'\n",
        store = store.0.display(),
        hp = http.port,
        dp = dns.port,
    );
    let dae = Dae::start(&config);
    wait_fetched(&dae, &["s"]);
    // Both HK nodes checked, the JP one filtered out.
    let mut status = Value::Null;
    let checked = wait_until(Duration::from_secs(20), || {
        status = dae.status();
        let g = group(&status, "proxy");
        g["nodes"]
            .as_array()
            .is_some_and(|n| n.len() == 2 && n.iter().all(|n| n["tcp4"]["latency_ms"].is_u64()))
            && g["selected"]["tcp4"].is_string()
    });
    assert!(checked, "{status:#}");
    let r = ask(&dae, "www.lab.example").expect("an answer through the node");
    assert_eq!(answers(&r), ["192.0.2.80"]);
    let selected = group(&status, "proxy")["selected"]["tcp4"]
        .as_str()
        .unwrap()
        .to_string();
    let used_count = if selected == "s/HK a" { &a } else { &b }.connections_to(dns.port);
    assert!(used_count > 0, "the query did not go through {selected}");

    // A refresh that adds a node: the group stays on its node, and the
    // upstream's connection through it is still the one in use.
    let both = |a: &Socks, b: &Socks| a.connections_to(dns.port) + b.connections_to(dns.port);
    let connections = both(&a, &b);
    http.serve(
        "s",
        &(link("HK a", a.port) + &link("HK b", b.port) + &link("HK c", dead)),
    );
    let (code, v) = update(&dae, Some("s"));
    assert_eq!(code, 0, "{v:#}");
    let status = dae.status();
    assert_eq!(group_nodes(&status, "proxy").len(), 3);
    assert_eq!(
        group(&status, "proxy")["selected"]["tcp4"],
        selected.as_str()
    );
    let r = ask(&dae, "www.lab.example").expect("an answer through the same node");
    assert_eq!(answers(&r), ["192.0.2.80"]);
    assert_eq!(
        both(&a, &b),
        connections,
        "the refresh dropped the connection"
    );

    let (used, other, other_name) = if selected == "s/HK a" {
        (&mut a, &b, "s/HK b")
    } else {
        (&mut b, &a, "s/HK a")
    };

    // The provider drops the node in use; after the refresh the group uses
    // the other one, which kept its health (no new check needed).
    let remaining = if selected == "s/HK a" {
        link("HK b", other.port)
    } else {
        link("HK a", other.port)
    };
    http.serve("s", &remaining);
    used.stop();
    let (code, v) = update(&dae, Some("s"));
    assert_eq!(code, 0, "{v:#}");
    let status = dae.status();
    let g = group(&status, "proxy");
    assert_eq!(group_nodes(&status, "proxy"), [other_name]);
    assert_eq!(g["selected"]["tcp4"], other_name, "{g:#}");
    assert!(
        g["nodes"][0]["tcp4"]["latency_ms"].is_u64(),
        "health lost: {g:#}"
    );
    let before = other.connections_to(dns.port);
    let r = ask(&dae, "www.lab.example").expect("an answer through the other node");
    assert_eq!(answers(&r), ["192.0.2.80"]);
    assert!(other.connections_to(dns.port) > before);
    assert!(dae.log().contains("subscriptions: groups updated"));
}

#[test]
fn the_readme_subscription_example_validates() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let at = readme
        .find("\n### Subscriptions: nodes from a provider's URL\n")
        .expect("README.md has the Subscriptions section");
    let rest = &readme[at..];
    let start = rest.find("```\n").unwrap() + 4;
    let block = &rest[start..start + rest[start..].find("```\n").unwrap()];
    assert!(block.starts_with("config subscription"), "{block}");
    let dir = TempDir::new("readme-sub");
    let file = dir.path("dae");
    std::fs::write(
        &file,
        format!(
            "config dns 'dns'\n\tlist dns_listen '127.0.0.1:5353'\n\toption request_fallback 'dns_a'\n\n\
             config upstream 'dns_a'\n\toption address 'udp://192.0.2.53'\n\n{block}"
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_dae"))
        .args(["validate", "-c"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{block}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_reload_keeps_the_lists_and_fetches_a_subscription_it_adds() {
    if !can_run() {
        return;
    }
    let dns = Unbound::start(&[]);
    let http = Provider::start(None);
    http.serve(
        "s",
        "socks5://192.0.2.1:1080#a\nsocks5://192.0.2.2:1080#b\n",
    );
    http.serve("t", "socks5://192.0.2.3:1080#c\n");
    let store = TempDir::new("store");
    let config = |with_t: bool| {
        let mut c = format!(
            "config dae 'config'\n\toption subscription_dir '{store}'\n\
             \toption check_interval '3600'\n\
             \toption tcp_check_url 'http://127.0.0.1:{hp}/,127.0.0.1'\n\
             \toption udp_check_dns '127.0.0.1:{dp}'\n\n\
             config dns 'dns'\n\tlist dns_listen '@LISTEN@'\n\n\
             config upstream 'lab'\n\toption address 'udp://127.0.0.1:{dp}'\n\n\
             config subscription 's'\n\toption url 'http://127.0.0.1:{hp}/sub/s'\n\n\
             config group 'g'\n\tlist subscription 's'\n",
            store = store.0.display(),
            hp = http.port,
            dp = dns.port,
        );
        if with_t {
            c.push_str(&format!(
                "\tlist subscription 't'\n\n\
                 config subscription 't'\n\toption url 'http://127.0.0.1:{}/sub/t'\n",
                http.port
            ));
        }
        c
    };
    let dae = Dae::start(&config(false));
    wait_fetched(&dae, &["s"]);
    assert!(dae.reload(&config(true)).contains("reloaded"));
    let status = wait_fetched(&dae, &["s", "t"]);
    assert_eq!(group_nodes(&status, "g"), ["s/a", "s/b", "t/c"]);
    assert_eq!(http.requests("/sub/s"), 1, "the reload fetched s again");
    assert_eq!(http.requests("/sub/t"), 1);
    assert!(dae.reload(&config(false)).contains("reloaded"));
    let status = dae.status();
    assert_eq!(group_nodes(&status, "g"), ["s/a", "s/b"]);
    assert_eq!(status["subscriptions"].as_array().unwrap().len(), 1);
}

#[test]
fn the_status_socket_answers_a_silent_client_and_names_an_unknown_request() {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    let dae = Dae::start("config dns 'dns'\n\tlist dns_listen '@LISTEN@'\n");
    let read = |request: Option<&str>| {
        let mut s = UnixStream::connect(dae.status_socket()).unwrap();
        if let Some(r) = request {
            s.write_all(r.as_bytes()).unwrap();
        }
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        serde_json::from_str::<Value>(&text).unwrap()
    };
    // Older clients (and socat) send nothing: they get the report.
    assert!(read(None)["version"].is_string());
    assert!(read(Some("status\n"))["version"].is_string());
    assert_eq!(
        read(Some("reboot now\n"))["error"],
        "unknown request 'reboot now'"
    );
    let (code, v) = update(&dae, None);
    assert_eq!(
        (code, v["updated"].as_array().unwrap().len()),
        (0, 0),
        "{v:#}"
    );
}
