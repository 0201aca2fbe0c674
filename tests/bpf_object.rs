//! Where the TC program comes from: the object build.rs compiled into the
//! binary, or the file `option bpf_object` names.
//!
//! What is shown: a config without `bpf_object` starts on a router with
//! `br-lan` and the built-in program hands the client's DNS to dae (the
//! lab's address where no host is gets its answer); a `bpf_object` that
//! names a missing file makes both `dae validate` and `dae run` say "no such
//! file" with the path, and `run` attaches nothing.
//!
//! The lab tests need root and the lab's tools; they skip loudly without.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use common::lab::{self, dns, Lab, LabUpstream, NOBODY_V4, UPSTREAM_V4};
use common::{query, udp_exchange_from, Dae, TempDir};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

fn router_config(general: &str) -> String {
    format!(
        "config dae 'config'\n\tlist lan_interface 'br-lan'\n{general}\n\
         config dns 'dns'\n\toption request_fallback 'lab'\n\n\
         config upstream 'lab'\n\toption address 'udp://{UPSTREAM_V4}:53'\n"
    )
}

const MISSING: &str = "/nonexistent/dae-test/dae_tc.o";

#[test]
fn validate_says_no_such_file_for_a_missing_bpf_object() {
    let dir = TempDir::new("bpfobj");
    let file = dir.path("dae.uci");
    std::fs::write(
        &file,
        router_config(&format!("\toption bpf_object '{MISSING}'\n")),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_dae"))
        .args(["validate", "-c"])
        .arg(&file)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "dae: config error: option bpf_object: no such file: {MISSING}"
        )),
        "{err}"
    );
    // Without the option the built-in object is used: nothing to check.
    std::fs::write(&file, router_config("")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_dae"))
        .args(["validate", "-c"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn run_says_no_such_file_for_a_missing_bpf_object_and_attaches_nothing() {
    if !lab::can_run() {
        return;
    }
    let lab = Lab::up();
    let dir = TempDir::new("bpfobj");
    let file = dir.path("dae.uci");
    let general = format!(
        "\toption bpf_object '{MISSING}'\n\toption status_socket '{}'\n",
        dir.path("status.sock").display()
    );
    std::fs::write(&file, router_config(&general)).unwrap();
    let out = lab
        .cmd("router", env!("CARGO_BIN_EXE_dae"))
        .args(["run", "-c"])
        .arg(&file)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(
        log.contains(&format!(
            "not starting: option bpf_object: no such file: {MISSING}"
        )),
        "{log}"
    );
    assert_eq!(lab.filters(), 0, "nothing attached");
}

#[test]
fn the_built_in_object_hands_the_clients_dns_to_dae() {
    if !lab::can_run() {
        return;
    }
    let lab = Lab::up();
    let _up = LabUpstream::start(&lab, &["www.lab.example. 300 IN A 192.0.2.80"]);
    let d = Dae::start_in(Some(&lab.ns("router")), &router_config(""), &[]);
    assert_eq!(lab.filters(), 1, "one filter on br-lan:\n{}", d.log());
    // Nobody is at NOBODY_V4: only dae, through the program's hand-over,
    // can answer there.
    let server: SocketAddr = dns(NOBODY_V4);
    let q = query("www.lab.example.", RecordType::A, true);
    let reply = lab
        .within("client", move || {
            udp_exchange_from(server, &q, Duration::from_secs(5))
        })
        .unwrap_or_else(|| panic!("no answer from {server}:\n{}", d.log()));
    assert_eq!(reply.1, server, "the reply comes from the address asked");
    let m = Message::from_vec(&reply.0).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    let data: Vec<String> = m.answers.iter().map(|r| r.data.to_string()).collect();
    assert_eq!(data, ["192.0.2.80"]);
    assert!(
        d.status()["datapath"]["handed"].as_u64().unwrap_or(0) >= 1,
        "{}",
        d.log()
    );
}
