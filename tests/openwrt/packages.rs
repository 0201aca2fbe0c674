//! Shared by the package tests (tests/openwrt_ipk.rs, tests/openwrt_apk.rs,
//! tests/openwrt_luci.rs):
//! builds the packages with `openwrt/build-ipk.sh` from the test build of
//! dae, and makes scratch roots that stand for a router: busybox as the
//! shell and tools, our own minimal /lib/functions.sh, /etc/rc.common and
//! a /sbin/uci that writes down its calls (tests/openwrt/router-root/),
//! entered with chroot so the packages' scripts run with their absolute
//! paths as on the router.

// Each test file uses a part of these.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

pub fn read_text(p: &Path) -> String {
    String::from_utf8(read(p)).unwrap()
}

pub fn cargo_version() -> String {
    let toml = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    toml.lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .unwrap()
        .to_string()
}

/// `NAME:=value` of openwrt/Makefile.
pub fn makefile_var(name: &str) -> String {
    let mk = std::fs::read_to_string(repo().join("openwrt/Makefile")).unwrap();
    mk.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:=")))
        .unwrap_or_else(|| panic!("{name} in openwrt/Makefile"))
        .trim()
        .to_string()
}

pub fn makefile_release() -> String {
    makefile_var("PKG_RELEASE")
}

/// The test build of dae without its debug info (as a router's is: the
/// test binary is ~90 MB with it, which only makes gzip slow).
pub fn stripped_dae(dir: &Path) -> PathBuf {
    let out = dir.join("dae");
    let ok = Command::new("strip")
        .arg("-o")
        .arg(&out)
        .arg(env!("CARGO_BIN_EXE_dae"))
        .status()
        .expect("strip (binutils)");
    assert!(ok.success());
    out
}

/// A real TC object (little-endian), compiled here into `dir`.
pub fn tc_object(dir: &Path) -> PathBuf {
    let out = dir.join("dae_tc.o");
    let multiarch = Command::new("gcc")
        .arg("-dumpmachine")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|_| "x86_64-linux-gnu".into());
    let ok = Command::new("clang")
        .args(["-O2", "-g", "-target", "bpfel"])
        .arg(format!("-I/usr/include/{multiarch}"))
        .arg("-I")
        .arg(repo().join("ebpf"))
        .arg("-c")
        .arg(repo().join("ebpf/dae_tc.c"))
        .arg("-o")
        .arg(&out)
        .status()
        .expect("clang (apt-get install clang libbpf-dev)");
    assert!(ok.success(), "compiling the TC program");
    out
}

/// The packages of this build, made once into `dir/out` (with `--apk`:
/// the apk folders too). The test build of dae is for this machine.
pub fn build_packages(dir: &Path, apk: bool) -> PathBuf {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let bpf = tc_object(dir);
    let binary = stripped_dae(dir);
    let out = dir.join("out");
    let mut cmd = Command::new(repo().join("openwrt/build-ipk.sh"));
    cmd.arg("--binary")
        .arg(&binary)
        .args(["--arch", "x86_64", "--bpf-object"])
        .arg(&bpf)
        .arg("--out")
        .arg(&out)
        .env("SOURCE_DATE_EPOCH", "1700000000");
    if apk {
        cmd.arg("--apk");
    }
    let res = cmd.output().unwrap();
    assert!(
        res.status.success(),
        "build-ipk.sh: {}",
        String::from_utf8_lossy(&res.stderr)
    );
    out
}

pub fn untar(archive: &Path, into: &Path) {
    std::fs::create_dir_all(into).unwrap();
    let ok = Command::new("tar")
        .arg("-xzf")
        .arg(archive)
        .arg("-C")
        .arg(into)
        .status()
        .unwrap();
    assert!(ok.success(), "tar -xzf {}", archive.display());
}

/// Every file and symlink under `dir`, as "/path", sorted.
pub fn files_under(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                walk(base, &e.path(), out);
            } else {
                let rel = e.path().strip_prefix(base).unwrap().display().to_string();
                out.push(format!("/{rel}"));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// A router's root in a folder: busybox (with the libraries it links) as
/// /bin/sh and the tools, our functions.sh and rc.common.
pub struct RouterRoot {
    pub root: PathBuf,
}

impl RouterRoot {
    pub fn new(root: PathBuf) -> RouterRoot {
        assert!(
            running_as_root(),
            "the package tests enter a scratch root with chroot: run them as root"
        );
        let busybox = ["/bin/busybox", "/usr/bin/busybox"]
            .into_iter()
            .map(Path::new)
            .find(|p| p.exists())
            .expect("busybox (apt-get install busybox)");
        for d in ["bin", "sbin", "usr/bin", "usr/sbin", "lib", "etc", "tmp"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::copy(busybox, root.join("bin/busybox")).unwrap();
        // The shared libraries busybox links, at their paths.
        let ldd = Command::new("ldd").arg(busybox).output().unwrap();
        for lib in String::from_utf8_lossy(&ldd.stdout)
            .split_whitespace()
            .filter(|w| w.starts_with('/'))
        {
            let to = root.join(lib.trim_start_matches('/'));
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(lib, &to).unwrap();
        }
        let r = RouterRoot { root };
        let out = r.chroot(&["/bin/busybox", "--install", "-s", "/bin"], &[]);
        assert!(out.status.success(), "busybox --install");
        let fixtures = repo().join("tests/openwrt/router-root");
        std::fs::copy(
            fixtures.join("functions.sh"),
            r.root.join("lib/functions.sh"),
        )
        .unwrap();
        std::fs::copy(fixtures.join("rc.common"), r.root.join("etc/rc.common")).unwrap();
        // (replaces busybox's link, if it has a uci applet)
        let _ = std::fs::remove_file(r.root.join("sbin/uci"));
        std::fs::copy(fixtures.join("uci"), r.root.join("sbin/uci")).unwrap();
        r
    }

    /// Runs `args` inside the root with a clean environment (as apk runs
    /// its scripts) plus `env`.
    pub fn chroot(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        Command::new("/usr/sbin/chroot")
            .arg(&self.root)
            .args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .envs(env.iter().copied())
            .output()
            .unwrap()
    }

    /// Runs a script that is in the root (its path there) and checks it
    /// succeeded; returns its output.
    pub fn run(&self, script: &str, args: &[&str], env: &[(&str, &str)]) -> String {
        let mut all = vec!["/bin/sh", script];
        all.extend_from_slice(args);
        let out = self.chroot(&all, env);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{script}: {text}");
        text
    }

    /// What rc.common was asked to start and stop, taken (the log is
    /// emptied).
    pub fn take_rc_log(&self) -> String {
        let p = self.root.join("tmp/rc.log");
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        let _ = std::fs::remove_file(&p);
        text
    }

    /// The links in /etc/rc.d, "NAME -> TARGET", sorted.
    pub fn rc_d(&self) -> Vec<String> {
        let Ok(dir) = std::fs::read_dir(self.root.join("etc/rc.d")) else {
            return Vec::new();
        };
        let mut out: Vec<String> = dir
            .map(|e| {
                let e = e.unwrap();
                let target = std::fs::read_link(e.path()).unwrap();
                format!(
                    "{} -> {}",
                    e.file_name().to_string_lossy(),
                    target.display()
                )
            })
            .collect();
        out.sort();
        out
    }

    /// Copies a tree's content into the root (what the package manager
    /// does with the package's files).
    pub fn unpack(&self, tree: &Path) {
        let ok = Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", tree.display()))
            .arg(&self.root)
            .status()
            .unwrap();
        assert!(ok.success());
    }
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}
