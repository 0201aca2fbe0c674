//! Shared parts of the integration tests: real servers (unbound, dnsdist)
//! started per test on loopback ports, the real `dae` binary, and a real DNS
//! client (hickory-proto builds queries and parses replies field by field).
//!
//! Everything a test starts is stopped and removed when its guard drops,
//! also when the test fails.

#![allow(dead_code)]

pub mod capture;
pub mod lab;
pub mod proxies;
pub mod tls;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};

/// A directory under /tmp removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "dae-test-{}-{}-{tag}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Whether a program is installed; if not, the test says so and skips
/// (CI installs everything, so nothing skips there).
pub fn have(program: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !found {
        eprintln!("SKIPPED: {program} is not installed (run .ci/run, which installs it)");
    }
    found
}

/// A loopback port free for both UDP and TCP right now.
pub fn free_port() -> u16 {
    loop {
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = u.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

pub fn wait_until(timeout: Duration, mut ok: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    ok()
}

pub fn kill(child: &mut Child) {
    // Already reaped (stopped by the test): its pid may belong to another
    // process by now, so it gets no signal.
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    // SIGTERM first so servers clean up, then SIGKILL.
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let end = Instant::now() + Duration::from_secs(3);
    while Instant::now() < end {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Builds a query with a random id and RD set; `edns` adds an OPT record
/// with a 1232-byte payload size.
pub fn query(name: &str, rtype: RecordType, edns: bool) -> Vec<u8> {
    let mut m = Message::new(rand_id(), MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_str(name).unwrap(), rtype));
    if edns {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        m.set_edns(e);
    }
    m.to_vec().unwrap()
}

pub fn rand_id() -> u16 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    static N: AtomicU32 = AtomicU32::new(0);
    (t ^ N.fetch_add(7919, Ordering::SeqCst)) as u16
}

/// One UDP exchange; `None` if nothing came back in `timeout`.
pub fn udp_exchange(server: SocketAddr, q: &[u8], timeout: Duration) -> Option<Vec<u8>> {
    udp_exchange_from(server, q, timeout).map(|(reply, _)| reply)
}

/// One UDP exchange, with the address the reply came from (a real stub
/// resolver takes replies only from the address it asked).
pub fn udp_exchange_from(
    server: SocketAddr,
    q: &[u8],
    timeout: Duration,
) -> Option<(Vec<u8>, SocketAddr)> {
    let any = if server.is_ipv6() {
        "[::]:0"
    } else {
        "0.0.0.0:0"
    };
    let s = UdpSocket::bind(any).unwrap();
    s.set_read_timeout(Some(timeout)).unwrap();
    s.send_to(q, server).unwrap();
    let mut buf = vec![0u8; 65535];
    let (n, from) = match recv_from(&s, &mut buf) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("udp exchange with {server}: {e}");
            return None;
        }
    };
    buf.truncate(n);
    Some((buf, from))
}

/// `recv_from` that carries on after a signal: a signal to this test
/// process (a child server exiting) is not the server's silence.
pub fn recv_from(s: &UdpSocket, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
    loop {
        match s.recv_from(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

/// One TCP exchange (length-prefixed).
pub fn tcp_exchange(server: SocketAddr, q: &[u8], timeout: Duration) -> Option<Vec<u8>> {
    let mut s = TcpStream::connect_timeout(&server, timeout).ok()?;
    s.set_read_timeout(Some(timeout)).unwrap();
    let mut frame = (q.len() as u16).to_be_bytes().to_vec();
    frame.extend_from_slice(q);
    s.write_all(&frame).ok()?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len).ok()?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut buf).ok()?;
    Some(buf)
}

/// Asks over UDP and parses the reply; panics if none comes in 10 s.
pub fn ask(server: SocketAddr, name: &str, rtype: RecordType) -> Message {
    let q = query(name, rtype, false);
    let r = udp_exchange(server, &q, Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no answer from {server} for {name} {rtype}"));
    let m = Message::from_vec(&r).expect("reply parses");
    assert_eq!(m.metadata.id, u16::from_be_bytes([q[0], q[1]]), "reply id");
    m
}

/// The A/AAAA/TXT data of the answer section, as text.
pub fn answers(m: &Message) -> Vec<String> {
    m.answers.iter().map(|r| r.data.to_string()).collect()
}

/// unbound serving the zone `lab.example.` (SOA minimum 60) with the given
/// extra `local-data` records, and NXDOMAIN for every other name (it never
/// asks the internet). Each query is logged, so tests can count them.
pub struct Unbound {
    child: Child,
    pub port: u16,
    dir: TempDir,
}

impl Unbound {
    pub fn start(records: &[&str]) -> Unbound {
        Self::start_with(records, "")
    }

    /// With extra lines for its `server:` section (more interfaces, TLS).
    pub fn start_with(records: &[&str], extra: &str) -> Unbound {
        let dir = TempDir::new("unbound");
        let port = free_port();
        let mut conf = format!(
            "server:\n  interface: 127.0.0.1@{port}\n  do-daemonize: no\n  use-syslog: no\n  \
             logfile: \"\"\n  verbosity: 1\n  log-queries: yes\n  chroot: \"\"\n  username: \"\"\n  \
             directory: \"{d}\"\n  pidfile: \"\"\n  do-ip6: no\n  access-control: 127.0.0.0/8 allow\n  \
             module-config: \"iterator\"\n  local-zone: \".\" static\n  \
             local-zone: \"lab.example.\" static\n  \
             local-data: \"lab.example. 3600 IN SOA ns.lab.example. admin.lab.example. 1 3600 600 86400 60\"\n",
            d = dir.0.display()
        );
        for r in records {
            conf.push_str(&format!("  local-data: '{r}'\n"));
        }
        conf.push_str(extra);
        std::fs::write(dir.path("unbound.conf"), conf).unwrap();
        let log = std::fs::File::create(dir.path("unbound.log")).unwrap();
        let child = Command::new("unbound")
            .args(["-d", "-c"])
            .arg(dir.path("unbound.conf"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start unbound");
        let u = Unbound { child, port, dir };
        let ready = wait_until(Duration::from_secs(10), || {
            std::fs::read_to_string(u.dir.path("unbound.log"))
                .map(|l| l.contains("start of service"))
                .unwrap_or(false)
        });
        assert!(ready, "unbound did not start: {}", u.log());
        u
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path("unbound.log")).unwrap_or_default()
    }

    /// How many queries for `name` (with final dot) and `rtype` it has seen,
    /// in any letter case (dae asks in random case, 0x20).
    pub fn queries(&self, name: &str, rtype: &str) -> usize {
        let needle = format!(" {name} {rtype} IN").to_ascii_lowercase();
        self.log()
            .lines()
            .filter(|l| l.to_ascii_lowercase().ends_with(&needle))
            .count()
    }
}

impl Drop for Unbound {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// dnsdist in front of a backend, with extra Lua rules (delays, drops).
pub struct Dnsdist {
    child: Child,
    pub port: u16,
    dir: TempDir,
}

impl Dnsdist {
    pub fn start(backend: SocketAddr, check_name: &str, rules: &str) -> Dnsdist {
        let dir = TempDir::new("dnsdist");
        let port = free_port();
        let conf = format!(
            "setLocal(\"127.0.0.1:{port}\")\nsetSecurityPollSuffix(\"\")\n\
             newServer({{address=\"{backend}\", checkName=\"{check_name}\"}})\n{rules}\n"
        );
        std::fs::write(dir.path("dnsdist.conf"), conf).unwrap();
        let log = std::fs::File::create(dir.path("dnsdist.log")).unwrap();
        let child = Command::new("dnsdist")
            .args(["--supervised", "--disable-syslog", "-C"])
            .arg(dir.path("dnsdist.conf"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start dnsdist");
        let d = Dnsdist { child, port, dir };
        let ready = wait_until(Duration::from_secs(10), || {
            std::fs::read_to_string(d.dir.path("dnsdist.log"))
                .map(|l| l.contains("as 'up'"))
                .unwrap_or(false)
        });
        assert!(
            ready,
            "dnsdist did not start: {:?}",
            std::fs::read_to_string(d.dir.path("dnsdist.log"))
        );
        d
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

impl Drop for Dnsdist {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// The real `dae` binary serving a UCI config on a loopback port. In the
/// config text, `@LISTEN@` stands for the listen address.
/// A figure of process `pid`'s memory in KiB, from /proc/PID/status
/// (`VmRSS`, `VmHWM`, `RssAnon`, ...).
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

pub struct Dae {
    child: Child,
    pub addr: SocketAddr,
    dir: TempDir,
}

impl Dae {
    pub fn start(uci: &str) -> Dae {
        Self::start_in(None, uci, &[])
    }

    /// Starts `dae run` with extra arguments, inside the network namespace
    /// `netns` if one is given (`ip netns exec` execs dae, so the child's pid
    /// is dae's own).
    pub fn start_in(netns: Option<&str>, uci: &str, args: &[&str]) -> Dae {
        let dir = TempDir::new("dae");
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        std::fs::write(dir.path("dae.uci"), Self::fill(uci, addr, &dir)).unwrap();
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_dae")]);
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_dae")),
        };
        let log = std::fs::File::create(dir.path("dae.log")).unwrap();
        let child = cmd
            .args(["run", "-c"])
            .arg(dir.path("dae.uci"))
            .args(args)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start dae");
        let mut d = Dae { child, addr, dir };
        let started = wait_until(Duration::from_secs(10), || {
            d.log().contains("started with") || !d.alive()
        });
        assert!(started && d.alive(), "dae did not start:\n{}", d.log());
        d
    }

    /// `dae status --json` of this daemon, parsed.
    pub fn status(&self) -> serde_json::Value {
        let out = Command::new(env!("CARGO_BIN_EXE_dae"))
            .args(["status", "--json", "-s"])
            .arg(self.status_socket())
            .output()
            .expect("dae status");
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "dae status --json: {e}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }

    /// SIGKILL, as a crash would; waits until the process is gone.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Puts the listen address in, and a status socket of this test's own
    /// (parallel tests must not share /var/run/dae.sock).
    fn fill(uci: &str, addr: SocketAddr, dir: &TempDir) -> String {
        let status = format!(
            "\toption status_socket '{}'\n",
            dir.path("status.sock").display()
        );
        let text = uci.replace("@LISTEN@", &addr.to_string());
        match text.find("config dae 'config'\n") {
            Some(i) => {
                let at = i + "config dae 'config'\n".len();
                format!("{}{status}{}", &text[..at], &text[at..])
            }
            None => format!("config dae 'config'\n{status}\n{text}"),
        }
    }

    pub fn status_socket(&self) -> PathBuf {
        self.dir.path("status.sock")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path("dae.log")).unwrap_or_default()
    }

    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        wait_until(timeout, || self.log().contains(needle))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A figure of the process's memory in KiB: `VmRSS` (resident now),
    /// `VmHWM` (the peak), `RssAnon`, ... of /proc/PID/status.
    pub fn memory_kib(&self, field: &str) -> u64 {
        proc_status_kib(self.pid(), field)
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Writes a new config and sends SIGHUP; returns once the daemon logged
    /// the outcome (`reloaded` or `reload refused`), with that log line.
    pub fn reload(&self, uci: &str) -> String {
        let before = self.log().len();
        std::fs::write(
            self.dir.path("dae.uci"),
            Self::fill(uci, self.addr, &self.dir),
        )
        .unwrap();
        let _ = Command::new("kill")
            .args(["-HUP", &self.pid().to_string()])
            .status();
        let mut outcome = String::new();
        wait_until(Duration::from_secs(10), || {
            let log = self.log();
            let new = &log[before.min(log.len())..];
            match new
                .lines()
                .find(|l| l.contains("reloaded") || l.contains("reload refused"))
            {
                Some(l) => {
                    outcome = l.to_string();
                    true
                }
                None => false,
            }
        });
        assert!(
            !outcome.is_empty(),
            "no reload outcome in log:\n{}",
            self.log()
        );
        outcome
    }

    /// SIGTERM; returns the exit status code.
    pub fn stop(mut self) -> Option<i32> {
        let _ = Command::new("kill").arg(self.pid().to_string()).status();
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Dae {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// A config with the given upstream sections and dns options.
pub fn config(upstreams: &[(&str, SocketAddr)], dns_options: &str) -> String {
    let mut c = String::from("config dae 'config'\n\toption log_level 'debug'\n\n");
    c.push_str("config dns 'dns'\n\tlist dns_listen '@LISTEN@'\n");
    c.push_str(dns_options);
    c.push('\n');
    for (name, addr) in upstreams {
        c.push_str(&format!(
            "config upstream '{name}'\n\toption address 'udp://{addr}'\n\n"
        ));
    }
    c
}

/// The TC object for one byte order (`bpfel`, `bpfeb`), rebuilt by
/// `ebpf/build.sh` when its sources are newer.
pub fn built_bpf_object(order: &str) -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let obj = repo.join(format!("ebpf/build/dae_tc.{order}.o"));
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let stale = ["ebpf/dae_tc.c", "ebpf/dae_shared.h"]
        .iter()
        .any(|s| mtime(&repo.join(s)) > mtime(&obj));
    if stale {
        let ok = Command::new(repo.join("ebpf/build.sh"))
            .stdout(Stdio::null())
            .status()
            .expect("run ebpf/build.sh");
        assert!(
            ok.success(),
            "ebpf/build.sh failed (needs clang and libbpf-dev)"
        );
    }
    obj
}

pub fn path_exists(p: &Path) -> bool {
    p.exists()
}

/// Standard base64 with padding (share links carry it).
pub fn b64(data: &[u8]) -> String {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// xorshift64*: random test inputs, reproducible from the seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn pick<'a, T>(&mut self, from: &'a [T]) -> &'a T {
        &from[self.below(from.len())]
    }
}
