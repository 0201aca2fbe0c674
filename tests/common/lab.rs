//! The namespace lab (`tests/lab.sh`) seen from Rust: a guard that builds it
//! and removes it on drop (also when the test fails), code run inside one of
//! its namespaces (a thread that `setns`es, so its sockets live there), the
//! upstream unbound, the daemon on the router, and per-namespace `/etc`
//! files (a `hosts` that names a lab address for the servers started there).

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::{wait_until, TempDir};

/// The addresses of `tests/lab.sh`.
pub const CLIENT_V4: &str = "192.0.2.10";
pub const CLIENT_V6: &str = "2001:db8:1::10";
pub const ROUTER_WAN_V4: &str = "198.51.100.1";
pub const ROUTER_WAN_V6: &str = "2001:db8:2::1";
pub const UPSTREAM_V4: &str = "203.0.113.53";
pub const UPSTREAM_V6: &str = "2001:db8:3::53";
/// Addresses with no host behind them.
pub const NOBODY_V4: &str = "203.0.113.99";
pub const NOBODY_V6: &str = "2001:db8:3::99";
/// The upstream namespace's side of the WAN link (where proxy servers
/// listen).
pub const UPSTREAM_WAN_V4: &str = "198.51.100.2";
/// A name only the upstream namespace knows (`upstream_names`): it is
/// `UPSTREAM_V4`, the lab's unbound.
pub const TARGET_NAME: &str = "target.lab.example";

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Whether this machine can run the lab (root, the tools); if not, the test
/// says so and skips (CI runs as root with everything installed).
pub fn can_run() -> bool {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: the namespace lab needs root");
        return false;
    }
    ["ip", "tc", "unbound", "clang", "dnsperf", "dig"]
        .iter()
        .all(|p| super::have(p))
}

/// The little-endian TC object (the one this machine loads).
pub fn bpf_object() -> PathBuf {
    super::built_bpf_object("bpfel")
}

/// One lab; `Drop` removes it.
pub struct Lab {
    pub prefix: String,
}

impl Lab {
    pub fn up() -> Lab {
        static N: AtomicU32 = AtomicU32::new(0);
        let prefix = format!(
            "dt{}x{}",
            std::process::id() % 100_000,
            N.fetch_add(1, Ordering::SeqCst)
        );
        let lab = Lab { prefix };
        let out = Command::new(repo().join("tests/lab.sh"))
            .args(["up", &lab.prefix])
            .output()
            .expect("run tests/lab.sh");
        assert!(
            out.status.success(),
            "tests/lab.sh up failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        lab
    }

    pub fn ns(&self, which: &str) -> String {
        format!("{}-{which}", self.prefix)
    }

    /// `ip netns exec NS program args...` as a Command to finish.
    pub fn cmd(&self, which: &str, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(which), program]);
        c
    }

    /// Runs a command in a namespace; its stdout (stderr too on failure).
    pub fn run(&self, which: &str, program: &str, args: &[&str]) -> String {
        let out = self
            .cmd(which, program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            text.push_str(&String::from_utf8_lossy(&out.stderr));
        }
        text
    }

    /// Loads nftables rules (`nft -f` syntax) in a namespace; they go with
    /// the namespace.
    pub fn nft(&self, which: &str, rules: &str) {
        use std::io::Write;
        let mut nft = self
            .cmd(which, "nft")
            .args(["-f", "-"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("run nft");
        nft.stdin
            .take()
            .unwrap()
            .write_all(rules.as_bytes())
            .unwrap();
        assert!(nft.wait().unwrap().success(), "nft refused:\n{rules}");
    }

    /// Runs `f` on a thread that has entered the namespace: every socket it
    /// opens lives there.
    pub fn within<T: Send + 'static>(
        &self,
        which: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> T {
        self.spawn_within(which, f)
            .join()
            .expect("thread in the namespace")
    }

    /// Runs the future `f` makes to its end on a one-thread runtime, on a
    /// thread that has entered the namespace.
    pub fn block_on_within<T: Send + 'static, F: Future<Output = T>>(
        &self,
        which: &str,
        f: impl FnOnce() -> F + Send + 'static,
    ) -> T {
        self.within(which, move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime")
                .block_on(f())
        })
    }

    /// Files that `ip netns exec` puts over `/etc`'s for every program it
    /// starts in namespace `which` (it bind-mounts `/etc/netns/NS/FILE`
    /// over `/etc/FILE`), as `(file name, text)`; gone when the guard
    /// drops. Programs started before keep what they saw.
    pub fn etc(&self, which: &str, files: &[(&str, &str)]) -> NetnsEtc {
        let dir = PathBuf::from("/etc/netns").join(self.ns(which));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let guard = NetnsEtc { dir };
        for (name, text) in files {
            let path = guard.dir.join(name);
            std::fs::write(&path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
        guard
    }

    /// `TARGET_NAME` in the upstream namespace's `/etc/hosts`, and its
    /// resolver the lab's unbound (so no lookup there can leave the lab):
    /// a proxy server started there afterwards resolves the name, nobody
    /// else can.
    pub fn upstream_names(&self) -> NetnsEtc {
        self.upstream_hosts(&[(UPSTREAM_V4, TARGET_NAME)])
    }

    /// `upstream_names` with these `(address, name)` lines in `hosts`.
    pub fn upstream_hosts(&self, entries: &[(&str, &str)]) -> NetnsEtc {
        let mut hosts = String::from("127.0.0.1 localhost\n::1 localhost ip6-localhost\n");
        for (addr, name) in entries {
            hosts.push_str(&format!("{addr} {name}\n"));
        }
        let resolv = format!("nameserver {UPSTREAM_V4}\n");
        self.etc("up", &[("hosts", &hosts), ("resolv.conf", &resolv)])
    }

    /// `within`, without waiting for `f` to end.
    pub fn spawn_within<T: Send + 'static>(
        &self,
        which: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let path = format!("/run/netns/{}", self.ns(which));
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            // SAFETY: setns on this thread only, with a namespace fd we own.
            let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
            f()
        })
    }

    /// The TC filters of ours on the router's br-lan ingress.
    pub fn filters(&self) -> usize {
        self.run(
            "router",
            "tc",
            &["filter", "show", "dev", "br-lan", "ingress"],
        )
        .lines()
        .filter(|l| l.contains("dae_lan_ingress"))
        .count()
    }

    /// The router's policy routing entries for the tproxy mark, v4 and v6.
    pub fn fwmark_rules(&self) -> usize {
        let v4 = self.run("router", "ip", &["rule", "show"]);
        let v6 = self.run("router", "ip", &["-6", "rule", "show"]);
        v4.lines()
            .chain(v6.lines())
            .filter(|l| l.contains("fwmark"))
            .count()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = Command::new(repo().join("tests/lab.sh"))
            .args(["down", &self.prefix])
            .status();
    }
}

/// `/etc/netns/NS` of one lab namespace; removed on drop.
pub struct NetnsEtc {
    dir: PathBuf,
}

impl Drop for NetnsEtc {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// unbound in the upstream namespace on 203.0.113.53 and 2001:db8:3::53,
/// port 53, UDP and TCP, serving `lab.example.`; it logs every query with
/// its source address.
pub struct LabUpstream {
    child: std::process::Child,
    dir: TempDir,
}

impl LabUpstream {
    pub fn start(lab: &Lab, records: &[&str]) -> LabUpstream {
        Self::start_with(lab, records, "")
    }

    /// With `extra` lines in unbound's `server:` section (`@DIR@` is the
    /// server's directory).
    pub fn start_with(lab: &Lab, records: &[&str], extra: &str) -> LabUpstream {
        let dir = TempDir::new("lab-unbound");
        let mut conf = format!(
            "server:\n  interface: {UPSTREAM_V4}\n  interface: {UPSTREAM_V6}\n  port: 53\n  \
             do-daemonize: no\n  use-syslog: no\n  logfile: \"\"\n  verbosity: 1\n  \
             log-queries: yes\n  chroot: \"\"\n  username: \"\"\n  directory: \"{d}\"\n  \
             pidfile: \"\"\n  do-ip6: yes\n  access-control: 0.0.0.0/0 allow\n  \
             access-control: ::/0 allow\n  module-config: \"iterator\"\n  \
             ratelimit: 0\n  ip-ratelimit: 0\n  num-queries-per-thread: 4096\n  \
             local-zone: \".\" static\n  local-zone: \"lab.example.\" static\n  \
             local-data: \"lab.example. 3600 IN SOA ns.lab.example. admin.lab.example. 1 3600 600 86400 60\"\n",
            d = dir.0.display()
        );
        for r in records {
            conf.push_str(&format!("  local-data: '{r}'\n"));
        }
        conf.push_str(&extra.replace("@DIR@", &dir.0.display().to_string()));
        std::fs::write(dir.path("unbound.conf"), conf).unwrap();
        let log = std::fs::File::create(dir.path("unbound.log")).unwrap();
        let child = lab
            .cmd("up", "unbound")
            .args(["-d", "-c"])
            .arg(dir.path("unbound.conf"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start unbound");
        let u = LabUpstream { child, dir };
        assert!(
            wait_until(Duration::from_secs(10), || u
                .log()
                .contains("start of service")),
            "unbound did not start: {}",
            u.log()
        );
        u
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path("unbound.log")).unwrap_or_default()
    }

    /// The source addresses of the queries it saw for `name` (with final
    /// dot), in any letter case (dae asks in random case, 0x20).
    pub fn sources(&self, name: &str) -> Vec<IpAddr> {
        let needle = format!(" {name} ").to_ascii_lowercase();
        self.log()
            .lines()
            .filter(|l| l.contains(" info: ") && l.to_ascii_lowercase().contains(&needle))
            .filter_map(|l| l.split(" info: ").nth(1)?.split(' ').next()?.parse().ok())
            .collect()
    }
}

impl Drop for LabUpstream {
    fn drop(&mut self) {
        super::kill(&mut self.child);
    }
}

/// Parses `addr` as a socket address on port 53.
pub fn dns(addr: &str) -> SocketAddr {
    SocketAddr::new(addr.parse().unwrap(), 53)
}
