//! README.md's samples are what the binary does: the test reads them from
//! README.md itself, so the two cannot drift.
//!
//! - The example config (the first block under "### Configuration (UCI)")
//!   validates without a word, and `dae run -c` on it, as it stands, starts
//!   on a router with `br-lan` and answers on its `dns_listen`. It runs in
//!   the namespace lab's router (`tests/lab.sh`): the example's upstream
//!   `dns_a`, `udp://203.0.113.53:53`, is a documentation address, and the
//!   lab's upstream namespace holds exactly that address, with unbound on it
//!   (`LabUpstream`), so nothing in the config is changed. The example
//!   leaves `status_socket` at its default, /var/run/dae.sock: dae runs with
//!   a /run of its own (a tmpfs mounted in the mount namespace `ip netns
//!   exec` gives it), so it never meets another run's socket.
//! - The `dae validate` sample (the block that starts `$ cat broken`): the
//!   file it shows, given to `dae validate`, prints exactly the lines shown.
//!
//! The lab test needs root and the lab's tools; it skips loudly without.

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::lab::{self, Lab, LabUpstream};
use common::{answers, ask, wait_until, TempDir};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

fn readme() -> String {
    std::fs::read_to_string(lab::repo().join("README.md")).expect("read README.md")
}

/// The fenced blocks of `text` (their lines, without the fences).
fn blocks(text: &str) -> Vec<Vec<&str>> {
    let mut out = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in text.lines() {
        if line.starts_with("```") {
            match current.take() {
                Some(block) => out.push(block),
                None => current = Some(Vec::new()),
            }
        } else if let Some(block) = current.as_mut() {
            block.push(line);
        }
    }
    out
}

/// The example config: the first block after the heading.
fn example_config() -> String {
    let text = readme();
    let at = text
        .find("\n### Configuration (UCI)\n")
        .expect("README.md has a '### Configuration (UCI)' section");
    let block = blocks(&text[at..]).into_iter().next().expect("a block");
    assert!(block[0].starts_with("config dae"), "{block:?}");
    block.join("\n") + "\n"
}

/// The example with the nodes and group of "### Outbounds" added: their
/// block, and the rule block's line in the example's `routing` section.
fn example_with_nodes() -> String {
    let text = readme();
    let at = text
        .find("\n### Outbounds: proxy nodes, groups, routing\n")
        .expect("README.md has the Outbounds section");
    let found = blocks(&text[at..]);
    let nodes = found
        .iter()
        .find(|b| b[0].starts_with("config node"))
        .expect("a block of nodes");
    let rule = found
        .iter()
        .find(|b| b.len() == 1 && b[0].starts_with("\tlist rule"))
        .expect("a block with the routing rule");
    let routing = "config routing 'routing'\n";
    let example = example_config().replacen(routing, &format!("{routing}{}\n", rule[0]), 1);
    assert!(
        example.contains(rule[0]),
        "the example has a routing section"
    );
    format!("{example}\n{}\n", nodes.join("\n"))
}

/// The validate sample: (the broken file, the lines dae validate prints).
fn validate_sample() -> (String, Vec<String>) {
    let text = readme();
    let block = blocks(&text)
        .into_iter()
        .find(|b| b.first() == Some(&"$ cat broken"))
        .expect("README.md has a block that starts '$ cat broken'");
    let command = block
        .iter()
        .position(|l| *l == "$ dae validate -c broken")
        .expect("the block runs '$ dae validate -c broken'");
    let file = block[1..command].join("\n") + "\n";
    let printed = block[command + 1..].iter().map(|l| l.to_string()).collect();
    (file, printed)
}

fn validate(file: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_dae"))
        .args(["validate", "-c"])
        .arg(file)
        .output()
        .expect("run dae validate")
}

#[test]
fn the_readme_validate_sample_is_what_dae_validate_prints() {
    let (broken, printed) = validate_sample();
    let dir = TempDir::new("readme");
    let file = dir.path("broken");
    std::fs::write(&file, broken).unwrap();
    let out = validate(&file);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let got: Vec<&str> = stderr.lines().collect();
    assert_eq!(got, printed, "README.md's sample vs dae validate");
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
}

#[test]
fn the_readme_example_config_validates_without_a_word() {
    let dir = TempDir::new("readme");
    let file = dir.path("dae");
    std::fs::write(&file, example_config()).unwrap();
    let out = validate(&file);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "configuration OK\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success());
}

#[test]
fn the_readme_example_with_its_nodes_validates() {
    let dir = TempDir::new("readme");
    let file = dir.path("dae");
    let config = example_with_nodes();
    std::fs::write(&file, &config).unwrap();
    let out = validate(&file);
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{config}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_readme_example_config_starts_on_a_router_and_answers_on_its_dns_listen() {
    if !lab::can_run() {
        return;
    }
    let lab = Lab::up();
    let _up = LabUpstream::start(&lab, &["www.lab.example. 300 IN A 198.51.100.80"]);
    let dir = TempDir::new("readme");
    let config = dir.path("dae");
    std::fs::write(&config, example_config()).unwrap();
    let log_path = dir.path("dae.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = lab
        .cmd("router", "sh")
        .arg("-c")
        .arg("mount -t tmpfs dae-readme-test /run && exec \"$0\" run -c \"$1\"")
        .arg(env!("CARGO_BIN_EXE_dae"))
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start dae");
    let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let started = wait_until(Duration::from_secs(10), || {
        read_log().contains("started with") || matches!(child.try_wait(), Ok(Some(_)))
    });
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        assert!(started, "dae did not start:\n{}", read_log());

        assert_eq!(
            lab.filters(),
            1,
            "the TC program on br-lan:\n{}",
            read_log()
        );

        // dns_listen '127.0.0.1:5353', in the router.
        let listen: SocketAddr = "127.0.0.1:5353".parse().unwrap();
        let m = lab.within("router", move || {
            ask(listen, "www.lab.example.", RecordType::A)
        });
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(answers(&m), ["198.51.100.80"], "{}", read_log());
        // 'qname(keyword: ads) -> reject': NOERROR, no answer.
        let m = lab.within("router", move || {
            ask(listen, "ads.lab.example.", RecordType::A)
        });
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.answers.is_empty());

        // `dae status` with the example's default socket, in dae's /run.
        let status = Command::new("nsenter")
            .args(["-t", &child.id().to_string(), "-m", "-n"])
            .arg(env!("CARGO_BIN_EXE_dae"))
            .args(["status", "--json"])
            .output()
            .expect("run dae status");
        let report: serde_json::Value =
            serde_json::from_slice(&status.stdout).unwrap_or_else(|e| {
                panic!(
                    "dae status: {e}: {}",
                    String::from_utf8_lossy(&status.stderr)
                )
            });
        assert_eq!(report["interfaces"], serde_json::json!(["br-lan"]));
        // The example starts quietly (README.md says so), and stays so: no
        // group, so no health check that could fail later.
        assert_eq!(report["groups"], serde_json::json!([]), "{report:#}");
        let log = read_log();
        assert!(!log.contains(" WARN ") && !log.contains(" ERROR "), "{log}");
    }));
    common::kill(&mut child);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}
