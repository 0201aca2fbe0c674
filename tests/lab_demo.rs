//! The demo (`tests/lab-demo.sh`) proves itself: it passes with dae as
//! built, and fails, with a `lab demo: FAIL (...)` line and exit status 1,
//! when the TC program's hand-over does not happen (the demo's
//! `DAE_DEMO_NO_HANDOVER=1` removes dae's filter from br-lan after start).
//! Both runs use this build's binary (`DAE_DEMO_BIN`) instead of the
//! release build the demo makes for a person.
//!
//! Needs root and the lab's tools; skips loudly without them.

mod common;

use std::process::{Command, Output};

use common::lab;

fn demo(no_handover: bool) -> (Output, String) {
    let out = Command::new(lab::repo().join("tests/lab-demo.sh"))
        .env("DAE_DEMO_BIN", env!("CARGO_BIN_EXE_dae"))
        .env("DAE_DEMO_NO_HANDOVER", if no_handover { "1" } else { "0" })
        .output()
        .expect("run tests/lab-demo.sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, text)
}

fn last_line(text: &str) -> &str {
    text.lines().rev().find(|l| !l.is_empty()).unwrap_or("")
}

#[test]
fn the_demo_says_ok_with_dae_and_fails_without_the_hand_over() {
    if !lab::can_run() {
        return;
    }
    // The two runs have labs of their own: they run side by side.
    let without = std::thread::spawn(|| demo(true));
    let (out, text) = demo(false);
    assert_eq!(last_line(&text), "lab demo: OK", "{text}");
    assert!(out.status.success(), "{text}");

    let (out, text) = without.join().expect("the demo without hand-over");
    assert!(
        last_line(&text).starts_with("lab demo: FAIL (")
            && text.contains("dig @203.0.113.99 www.lab.example A: no answer")
            && text.contains("not from the router"),
        "{text}"
    );
    assert_eq!(out.status.code(), Some(1), "{text}");
}
