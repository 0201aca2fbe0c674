//! `dae validate` on real files: every broken config gets a message naming
//! its section and option and exits 1; good ones exit 0.

mod common;

use std::process::Command;

use common::TempDir;

const UPSTREAM: &str = "config upstream 'up'\n\toption address 'udp://192.0.2.53'\n";

/// (name, config text, expected fragments of the error line)
const BROKEN: &[(&str, &str, &[&str])] = &[
    (
        "cache_size not a number",
        "config dns 'dns'\n\toption cache_size 'lots'\n",
        &["dns 'dns', option 'cache_size'", "\"lots\" is not a whole number from 0 to 1048576"],
    ),
    (
        "log level unknown",
        "config dae 'config'\n\toption log_level 'loud'\n",
        &["dae 'config', option 'log_level'", "not one of: error, warn, info, debug, trace"],
    ),
    (
        "unknown option",
        "config dns 'dns'\n\toption cahce_size '10'\n",
        &["dns 'dns', option 'cahce_size'", "unknown option"],
    ),
    (
        "unknown section type",
        "config dnss 'dns'\n",
        &["dnss 'dns'", "unknown section type 'dnss'"],
    ),
    (
        "upstream scheme",
        "config upstream 'up'\n\toption address 'dns://192.0.2.53'\n",
        &["upstream 'up', option 'address'", "unknown scheme 'dns'"],
    ),
    (
        "upstream port",
        "config upstream 'up'\n\toption address 'udp://192.0.2.53:65536'\n",
        &["upstream 'up', option 'address'", "'65536' is not a port"],
    ),
    (
        "ipv6 without brackets",
        "config upstream 'up'\n\toption address 'tcp://2001:db8::53'\n",
        &["upstream 'up', option 'address'", "needs brackets"],
    ),
    (
        "rule syntax",
        "config dns 'dns'\n\tlist request_rule 'qname(suffix: lan -> up'\n",
        &["dns 'dns', option 'request_rule'", "unbalanced parentheses"],
    ),
    (
        "rule names a missing upstream",
        "config dns 'dns'\n\toption request_fallback 'nowhere'\n",
        &["dns 'dns', option 'request_fallback'", "no upstream is named 'nowhere'"],
    ),
    (
        "bad regex",
        "config dns 'dns'\n\tlist request_rule \"qname(regex: '[a-') -> reject\"\n",
        &["dns 'dns', option 'request_rule'", "bad regex '[a-'"],
    ),
    (
        "bad network in ip()",
        "config dns 'dns'\n\tlist response_rule 'ip(192.0.2.0/40) -> reject'\n",
        &["dns 'dns', option 'response_rule'", "prefix length must be 0 to 32"],
    ),
    (
        "unknown qtype",
        "config dns 'dns'\n\tlist request_rule 'qtype(aaaaa) -> reject'\n",
        &["dns 'dns', option 'request_rule'", "'aaaaa' is not a record type"],
    ),
    (
        "group names a missing node",
        "config group 'g'\n\tlist node 'ghost'\n",
        &["group 'g', option 'node'", "no node section is named 'ghost'"],
    ),
    (
        "fixed_domain_ttl malformed",
        "config dns 'dns'\n\tlist fixed_domain_ttl 'ddns.example'\n",
        &["dns 'dns', option 'fixed_domain_ttl'", "not NAME:SECONDS"],
    ),
    (
        "one name for two sections",
        "config node 'x'\n\toption link 'socks5://192.0.2.80:1080'\nconfig upstream 'x'\n\toption address 'udp://192.0.2.53'\n",
        &["upstream 'x'", "already used by a 'node' section"],
    ),
    (
        "anonymous upstream",
        "config upstream\n\toption address 'udp://192.0.2.53'\n",
        &["upstream '@upstream[0]'", "needs a name"],
    ),
    (
        "not UCI at all",
        "config dns 'dns\n",
        &["not a valid UCI file"],
    ),
    (
        "host name with no way to look it up",
        "config upstream 'up'\n\toption address 'tls://dns.example'\n",
        &["upstream 'up', option 'address'", "'dns.example' is a host name: give its address in option bootstrap"],
    ),
    (
        "proxy server by name with no way to look it up",
        "config node 'n'\n\toption link 'socks5://proxy.example:1080'\nconfig upstream 'up'\n\toption address 'tls://192.0.2.53'\n",
        &["node 'n', option 'link'", "the server 'proxy.example' is a host name: put its IP address in the link"],
    ),
    (
        "share link with a transport dae cannot dial",
        "config node 'n'\n\toption link 'vless://b831381d-6324-4d53-ad4f-8cda48b30811@192.0.2.85:443?type=ws&security=tls'\n",
        &["node 'n', option 'link'", "transport 'ws' is not supported"],
    ),
    (
        "routing rule with an unknown function",
        "config routing 'routing'\n\tlist rule 'port(53) -> direct'\n",
        &["routing 'routing', option 'rule'", "'port' is not a routing function"],
    ),
    (
        "tcp_check_url host without its addresses",
        "config dae 'config'\n\toption tcp_check_url 'http://check.example/'\n",
        &["dae 'config', option 'tcp_check_url'", "give the addresses of 'check.example'"],
    ),
    (
        "bootstrap not an address",
        "config upstream 'up'\n\toption address 'tls://dns.example'\n\toption bootstrap 'dns.example'\n",
        &["upstream 'up', option 'bootstrap'", "\"dns.example\" is not an IPv4 or IPv6 address"],
    ),
];

fn validate(dir: &TempDir, name: &str, text: &str) -> (Option<i32>, String, String) {
    let path = dir.path(name);
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_dae"))
        .args(["validate", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn broken_configs_are_refused_with_their_place_named() {
    let dir = TempDir::new("validate");
    for (i, (what, text, expect)) in BROKEN.iter().enumerate() {
        // Give the file a valid upstream unless it is about the upstream.
        let extra = if text.contains("config upstream 'up'") {
            ""
        } else {
            UPSTREAM
        };
        let (code, _, err) = validate(&dir, &format!("bad{i}.uci"), &format!("{text}{extra}"));
        assert_eq!(code, Some(1), "{what}: {err}");
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 1, "{what}: one problem, one line: {err}");
        assert!(lines[0].starts_with("dae: config error: "), "{what}: {err}");
        for e in *expect {
            assert!(lines[0].contains(e), "{what}: expected {e:?} in {err}");
        }
    }
}

#[test]
fn every_problem_of_a_file_is_printed() {
    let dir = TempDir::new("validate");
    let text = "config dae 'config'\n\toption tproxy_port '0'\n\n\
                config dns 'dns'\n\toption ipversion_prefer '5'\n\
                \tlist request_rule 'qname(a) -> ghost'\n";
    let (code, _, err) = validate(&dir, "three.uci", text);
    assert_eq!(code, Some(1));
    assert_eq!(err.lines().count(), 3, "{err}");
    assert!(err.contains("option 'tproxy_port'"));
    assert!(err.contains("option 'ipversion_prefer'"));
    assert!(err.contains("no upstream is named 'ghost'"));
}

#[test]
fn good_configs_pass() {
    let dir = TempDir::new("validate");
    let contract = "config dae 'config'\n\toption enabled '0'\n\toption log_level 'info'\n\
        \tlist lan_interface 'br-lan'\n\toption tproxy_port '12345'\n\n\
        config dns 'dns'\n\toption cache_size '4096'\n\toption ipversion_prefer '0'\n\
        \tlist request_rule 'qname(suffix: lan) -> asis'\n\tlist request_rule 'qtype(aaaa) -> reject'\n\
        \toption request_fallback 'dns_a'\n\
        \tlist response_rule 'upstream(dns_b) && ip(192.0.2.0/24) -> dns_a'\n\
        \toption response_fallback 'accept'\n\n\
        config upstream 'dns_a'\n\toption address 'udp://203.0.113.53:53'\n\n\
        config upstream 'dns_b'\n\toption address 'tcp+udp://203.0.113.54'\n\n\
        config node 'node1'\n\toption link 'socks5://203.0.113.80:1080'\n\n\
        config group 'proxy'\n\tlist node 'node1'\n\toption policy 'min_moving_avg'\n\n\
        config routing 'routing'\n\tlist rule 'dip(192.0.2.0/24) -> direct'\n\
        \tlist rule 'dport(53) && l4proto(udp) -> direct'\n\toption fallback 'proxy'\n";
    // As `uci set` and LuCI write a value with single quotes in it.
    let libuci =
        "config dns 'dns'\n\tlist dns_listen '127.0.0.1:5353'\n\tlist request_rule 'qname(regex: '\\''^ads\\.'\\'') -> reject'\n\
                  \toption request_fallback 'up'\n\n\
                  config upstream 'up'\n\toption address 'udp://192.0.2.53'\n";
    for (name, text) in [("contract.uci", contract), ("libuci-quoting.uci", libuci)] {
        let (code, out, err) = validate(&dir, name, text);
        assert_eq!(code, Some(0), "{name}: {err}");
        assert_eq!(out.trim(), "configuration OK");
        assert_eq!(err, "", "{name}: no warnings");
    }
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openwrt/files/dae.config");
    if shipped.exists() {
        let text = std::fs::read_to_string(&shipped).unwrap();
        let (code, _, err) = validate(&dir, "shipped.uci", &text);
        assert_eq!(code, Some(0), "the shipped default config: {err}");
    }
}

/// Every scheme `dae schema --json` says this build supports validates;
/// the default build (features doh, doq, doh3) has them all. (The message
/// for a scheme a build lacks is a unit test of `forwarder`.)
#[test]
fn every_scheme_of_the_build_validates() {
    let out = Command::new(env!("CARGO_BIN_EXE_dae"))
        .args(["schema", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let upstream = v["sections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["type"] == "upstream")
        .unwrap();
    let address = upstream["options"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "address")
        .unwrap();
    let supported: Vec<&str> = address["supported"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(
        supported,
        ["udp", "tcp", "tcp+udp", "tls", "https", "h3", "quic"],
        "the default build"
    );
    let dir = TempDir::new("validate");
    for scheme in supported {
        let text = format!(
            "config dns 'dns'\n\tlist dns_listen '127.0.0.1:5353'\n\
             \toption request_fallback 'up'\n\n\
             config upstream 'up'\n\toption address '{scheme}://192.0.2.53'\n"
        );
        let (code, out, err) = validate(&dir, "scheme.uci", &text);
        assert_eq!(code, Some(0), "{scheme}: {err}");
        assert_eq!(out.trim(), "configuration OK", "{scheme}");
        assert_eq!(err, "", "{scheme}: no warnings");
    }
}

#[test]
fn asis_without_interception_passes_with_a_warning() {
    let dir = TempDir::new("validate");
    let text = format!(
        "config dns 'dns'\n\tlist dns_listen '127.0.0.1:5353'\n\
         \tlist request_rule 'qname(suffix: lan) -> asis'\n{UPSTREAM}"
    );
    let (code, out, err) = validate(&dir, "asis.uci", &text);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.trim(), "configuration OK");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(lines[0].starts_with("dae: config warning: dns 'dns', option 'request_rule': 'asis'"));
    assert!(lines[1].starts_with("dae: config warning: dns 'dns', option 'request_fallback'"));
    assert!(lines.iter().all(|l| l.contains("REFUSED")));
}

/// An empty file, one of comments only, or one with neither a listener nor
/// an interface to intercept on would serve nothing: refused.
#[test]
fn a_config_that_serves_nothing_fails() {
    let dir = TempDir::new("validate");
    for (name, text) in [
        ("empty.uci", String::new()),
        (
            "comments.uci",
            "# nothing here\n\n  # still nothing\n".to_string(),
        ),
        (
            "listenerless.uci",
            format!("config dns 'dns'\n\toption request_fallback 'up'\n\n{UPSTREAM}"),
        ),
    ] {
        let (code, out, err) = validate(&dir, name, &text);
        assert_eq!(code, Some(1), "{name}: {out}{err}");
        assert_eq!(out, "", "{name}");
        assert!(
            err.starts_with("dae: config error: nothing to serve"),
            "{name}: {err}"
        );
    }
}

#[test]
fn a_missing_file_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_dae"))
        .args(["validate", "-c", "/nonexistent/dae.uci"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/nonexistent/dae.uci") && err.contains("No such file"),
        "{err}"
    );
}

#[test]
fn schema_json_lists_every_section_and_option_of_the_contract() {
    let out = Command::new(env!("CARGO_BIN_EXE_dae"))
        .args(["schema", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let sections = v["sections"].as_array().unwrap();
    let options = |ty: &str| -> Vec<String> {
        let s = sections
            .iter()
            .find(|s| s["type"] == ty)
            .unwrap_or_else(|| panic!("{ty}"));
        s["options"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["name"].as_str().unwrap().to_string())
            .collect()
    };
    // The options of the UCI contract (shared/guide/system.md).
    for (ty, names) in [
        (
            "dae",
            &["enabled", "log_level", "lan_interface", "tproxy_port"][..],
        ),
        (
            "dns",
            &[
                "cache_size",
                "ipversion_prefer",
                "request_rule",
                "request_fallback",
                "response_rule",
                "response_fallback",
            ][..],
        ),
        ("upstream", &["address"][..]),
        ("node", &["link"][..]),
        ("group", &["node", "policy"][..]),
        ("routing", &["rule", "fallback"][..]),
    ] {
        let have = options(ty);
        for n in names {
            assert!(
                have.iter().any(|h| h == n),
                "{ty}.{n} missing from {have:?}"
            );
        }
    }
    let level = &sections[0]["options"][1];
    assert_eq!(level["name"], "log_level");
    assert_eq!(level["type"], "enum");
    assert_eq!(level["default"], "info");
    assert_eq!(level["values"][4], "trace");
}

#[test]
fn routing_past_the_kernels_limits_is_refused() {
    let dir = TempDir::new("validate");
    let rules: String = (0..129)
        .map(|i| format!("\tlist rule 'dport({}) -> direct'\n", 1000 + i))
        .collect();
    let text = format!("config routing 'routing'\n{rules}{UPSTREAM}");
    let (code, _, err) = validate(&dir, "rules.uci", &text);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(
            "routing 'routing', option 'rule': 129 rules: the kernel's routing takes at most 128"
        ),
        "{err}"
    );
    // 128 rules fit; 129 distinct conditions over them do not.
    let rules: String = (0..64)
        .map(|i| {
            format!(
                "\tlist rule 'dport({}) && sport({}) -> direct'\n",
                1000 + i,
                2000 + i
            )
        })
        .collect();
    let text =
        format!("config routing 'routing'\n{rules}\tlist rule 'dscp(1) -> direct'\n{UPSTREAM}");
    let (code, _, err) = validate(&dir, "conditions.uci", &text);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("129 distinct conditions: the kernel's routing takes at most 128"),
        "{err}"
    );
}

#[test]
fn pname_in_routing_is_warned_about() {
    let dir = TempDir::new("validate");
    let text = format!(
        "config dns 'dns'\n\tlist dns_listen '127.0.0.1:5353'\n\toption request_fallback 'up'\n\n\
         config routing 'routing'\n\tlist rule 'pname(curl) -> block'\n\
         \tlist rule '!pname(wget) && dport(80) -> direct'\n{UPSTREAM}"
    );
    let (code, _, err) = validate(&dir, "pname.uci", &text);
    assert_eq!(code, Some(0), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].contains("'pname(curl) -> block': pname() never holds")
            && lines[0].contains("never applies"),
        "{err}"
    );
    assert!(
        lines[1].contains("as if the pname() were not there"),
        "{err}"
    );
}
