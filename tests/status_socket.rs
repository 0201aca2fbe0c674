//! The status socket across runs: `dae status` tells a missing socket (dae
//! is not running) from one nobody listens on (a stale socket from a run
//! that ended); `dae run` replaces a stale socket at start, and leaves one
//! a running dae answers on to it.

mod common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::{free_port, kill, wait_until, TempDir};

fn status(socket: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dae"))
        .args(["status", "--json", "-s"])
        .arg(socket)
        .output()
        .expect("run dae status")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `dae run` with only a plain listener and the status socket `socket`;
/// returns once it logged its start.
fn start(dir: &TempDir, tag: &str, socket: &Path) -> (Child, std::path::PathBuf) {
    let config = dir.path(&format!("{tag}.uci"));
    std::fs::write(
        &config,
        format!(
            "config dae 'config'\n\toption status_socket '{}'\n\n\
             config dns 'dns'\n\tlist dns_listen '127.0.0.1:{}'\n\toption request_fallback 'up'\n\n\
             config upstream 'up'\n\toption address 'udp://127.0.0.1:{}'\n",
            socket.display(),
            free_port(),
            free_port()
        ),
    )
    .unwrap();
    let log = dir.path(&format!("{tag}.log"));
    let child = Command::new(env!("CARGO_BIN_EXE_dae"))
        .args(["run", "-c"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start dae");
    assert!(
        wait_until(Duration::from_secs(10), || std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("started with")),
        "dae did not start: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    (child, log)
}

#[test]
fn status_says_whether_the_socket_is_missing_or_stale_and_run_replaces_a_stale_one() {
    let dir = TempDir::new("statsock");
    let socket = dir.path("dae.sock");

    let o = status(&socket);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        format!("dae status: dae is not running: no {}\n", socket.display())
    );

    // A run that ends with SIGKILL leaves its socket behind.
    let (mut first, _) = start(&dir, "first", &socket);
    let _ = first.kill();
    let _ = first.wait();
    assert!(socket.exists(), "the killed run left its socket");
    let o = status(&socket);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        format!(
            "dae status: {} exists but no dae is listening on it (stale socket from a run \
             that ended?)\n",
            socket.display()
        )
    );

    // The next run replaces it and answers there.
    let (mut second, log) = start(&dir, "second", &socket);
    let o = status(&socket);
    let report: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("dae status: {e}: {}", stderr(&o)));
    assert_eq!(report["pid"], second.id(), "the second run answers");
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("replaced a stale status socket"),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );

    // A third run leaves the socket of the running second one alone.
    let (mut third, log) = start(&dir, "third", &socket);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("another dae answers there"), "{text}");
    let o = status(&socket);
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["pid"], second.id(), "still the second run");
    kill(&mut third);
    assert!(
        socket.exists(),
        "the third run did not remove the second's socket"
    );
    kill(&mut second);
    assert!(!socket.exists(), "a stopped run removes its socket");
}
