//! Real proxy servers from Debian's packages, started by a test inside a
//! lab namespace with a config the test writes: microsocks and dante
//! (SOCKS5), ss-server (shadowsocks-libev), trojan (trojan-gfw), v2ray
//! (VMess, VLESS, Trojan, Shadowsocks and HTTP inbounds), and busybox
//! httpd as the target of the TCP health check. Each is stopped when its
//! guard drops, also when the test fails.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use super::lab::Lab;
use super::{kill, wait_until, TempDir};

/// A server process and its directory (config, log).
pub struct Server {
    child: Option<Child>,
    pub dir: TempDir,
    pub name: &'static str,
}

impl Server {
    /// Runs `program args` in namespace `ns` of `lab`, its output to
    /// `DIR/log`; `args` may use `@DIR@` for the server's directory.
    pub fn start(
        lab: &Lab,
        ns: &str,
        name: &'static str,
        program: &str,
        args: &[&str],
        files: &[(&str, String)],
    ) -> Server {
        let dir = TempDir::new(name);
        let d = dir.0.display().to_string();
        for (file, text) in files {
            std::fs::write(dir.path(file), text.replace("@DIR@", &d)).unwrap();
        }
        let log = std::fs::File::create(dir.path("log")).unwrap();
        let args: Vec<String> = args.iter().map(|a| a.replace("@DIR@", &d)).collect();
        let child = lab
            .cmd(ns, program)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {program}: {e}"));
        Server {
            child: Some(child),
            dir,
            name,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path("log")).unwrap_or_default()
    }

    /// Waits until something accepts TCP on `port` in the namespace.
    pub fn wait_tcp(self, lab: &Lab, ns: &str, addr: &str, port: u16) -> Server {
        let target = format!("{addr}:{port}");
        let ok = wait_until(Duration::from_secs(10), || {
            let t = target.clone();
            lab.within(ns, move || {
                std::net::TcpStream::connect_timeout(
                    &t.parse().unwrap(),
                    Duration::from_millis(200),
                )
                .is_ok()
            })
        });
        assert!(
            ok,
            "{} did not listen on {target}: {}",
            self.name,
            self.log()
        );
        self
    }

    /// Kills the server now (as a crash would).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill(&mut c);
        }
    }
}

/// microsocks on `addr:port` (no UDP), with optional user and password.
pub fn microsocks(
    lab: &Lab,
    ns: &str,
    addr: &str,
    port: u16,
    auth: Option<(&str, &str)>,
) -> Server {
    let p = port.to_string();
    let mut args = vec!["-i", addr, "-p", &p];
    if let Some((u, pw)) = auth {
        args.extend(["-u", u, "-P", pw]);
    }
    Server::start(lab, ns, "microsocks", "microsocks", &args, &[]).wait_tcp(lab, ns, addr, port)
}

/// ss-server (TCP and UDP) on `addr:port`.
pub fn ss_server(
    lab: &Lab,
    ns: &str,
    addr: &str,
    port: u16,
    method: &str,
    password: &str,
) -> Server {
    let p = port.to_string();
    Server::start(
        lab,
        ns,
        "ss-server",
        "ss-server",
        &[
            "-s", addr, "-p", &p, "-k", password, "-m", method, "-u", "-v",
        ],
        &[],
    )
    .wait_tcp(lab, ns, &bracketed(addr), port)
}

/// An address as it goes before `:port`.
fn bracketed(addr: &str) -> String {
    if addr.contains(':') {
        format!("[{addr}]")
    } else {
        addr.to_string()
    }
}

/// busybox httpd serving an empty page on `addr:port` (the TCP check).
pub fn httpd(lab: &Lab, ns: &str, addr: &str, port: u16) -> Server {
    let listen = format!("{}:{port}", bracketed(addr));
    let s = Server::start(
        lab,
        ns,
        "httpd",
        "busybox",
        &["httpd", "-f", "-v", "-p", &listen, "-h", "@DIR@/www"],
        &[],
    );
    std::fs::create_dir_all(s.dir.path("www")).unwrap();
    std::fs::write(s.dir.path("www/index.html"), "ok\n").unwrap();
    s.wait_tcp(lab, ns, &bracketed(addr), port)
}

/// v2ray with the given inbounds (JSON array text) and a direct outbound.
pub fn v2ray(lab: &Lab, ns: &str, inbounds: &str, wait: (&str, u16)) -> Server {
    let config = format!(
        "{{\"log\": {{\"loglevel\": \"info\"}}, \"inbounds\": {inbounds}, \
         \"outbounds\": [{{\"protocol\": \"freedom\"}}]}}"
    );
    Server::start(
        lab,
        ns,
        "v2ray",
        "v2ray",
        &["-config", "@DIR@/config.json"],
        &[("config.json", config)],
    )
    .wait_tcp(lab, ns, wait.0, wait.1)
}

/// trojan-gfw server on `addr:port` with a certificate and key; the
/// fallback goes to a closed port.
pub fn trojan(
    lab: &Lab,
    ns: &str,
    addr: &str,
    port: u16,
    password: &str,
    cert: &Path,
    key: &Path,
) -> Server {
    let config = format!(
        "{{\"run_type\": \"server\", \"local_addr\": \"{addr}\", \"local_port\": {port}, \
         \"remote_addr\": \"127.0.0.1\", \"remote_port\": 9, \"password\": [\"{password}\"], \
         \"log_level\": 1, \"ssl\": {{\"cert\": \"{}\", \"key\": \"{}\", \"alpn\": [\"http/1.1\"]}}}}",
        cert.display(),
        key.display()
    );
    Server::start(
        lab,
        ns,
        "trojan",
        "trojan",
        &["-c", "@DIR@/config.json"],
        &[("config.json", config)],
    )
    .wait_tcp(lab, ns, addr, port)
}

/// dante (SOCKS5 with UDP ASSOCIATE) on `addr:port`, going out from
/// `external`.
pub fn dante(lab: &Lab, ns: &str, addr: &str, port: u16, external: &str) -> Server {
    let config = format!(
        "logoutput: @DIR@/danted.log\ninternal: {addr} port = {port}\nexternal: {external}\n\
         clientmethod: none\nsocksmethod: none\nuser.privileged: root\nuser.unprivileged: nobody\n\
         client pass {{ from: 0.0.0.0/0 to: 0.0.0.0/0 }}\n\
         socks pass {{ from: 0.0.0.0/0 to: 0.0.0.0/0 command: connect udpassociate udpreply }}\n"
    );
    Server::start(
        lab,
        ns,
        "danted",
        "danted",
        &[
            "-f",
            "@DIR@/danted.conf",
            "-p",
            "@DIR@/danted.pid",
            "-N",
            "1",
        ],
        &[("danted.conf", config)],
    )
    .wait_tcp(lab, ns, addr, port)
}

/// Whether every proxy server program is installed (else the test skips).
pub fn all_installed() -> bool {
    [
        "microsocks",
        "danted",
        "ss-server",
        "trojan",
        "v2ray",
        "busybox",
    ]
    .iter()
    .all(|p| super::have(p))
}
