//! `openwrt/build-ipk.sh` makes the package opkg installs: unpacked with the
//! real tar and gzip, it has the layout of OpenWrt's ipkg-build, the right
//! control fields, the files where the router expects them with the right
//! modes and owner, and the maintainer scripts. Also: `openwrt/test.sh`
//! (the feed CI's check) and the package Makefile agree with it.

mod common;
#[path = "openwrt/packages.rs"]
mod packages;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::TempDir;
use packages::{cargo_version, makefile_var, read, repo, stripped_dae, tc_object, untar};

struct Built {
    ipk: PathBuf,
    bpf: PathBuf,
    binary: PathBuf,
}

/// The test build of dae is for this machine (x86_64), and build-ipk.sh
/// checks the binary's ELF machine against the architecture.
const ARCH: &str = "x86_64";
const EPOCH: &str = "1700000000";

/// The package the tests look at, built once per test run (in the target
/// folder's scratch space) from the test build of dae.
fn shared() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("openwrt-ipk");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let bpf = tc_object(&dir);
        let binary = stripped_dae(&dir);
        build_ipk(&dir, &binary, &bpf, ARCH, EPOCH)
    })
}

fn build_ipk(dir: &Path, binary: &Path, bpf: &Path, arch: &str, epoch: &str) -> Built {
    let (binary, bpf) = (binary.to_path_buf(), bpf.to_path_buf());
    let out = dir.join("out");
    let res = Command::new(repo().join("openwrt/build-ipk.sh"))
        .arg("--binary")
        .arg(&binary)
        .args(["--arch", arch, "--bpf-object"])
        .arg(&bpf)
        .arg("--out")
        .arg(&out)
        .env("SOURCE_DATE_EPOCH", epoch)
        .output()
        .unwrap();
    assert!(
        res.status.success(),
        "build-ipk.sh: {}",
        String::from_utf8_lossy(&res.stderr)
    );
    let name = format!(
        "dae_{}-{}_{arch}.ipk",
        cargo_version(),
        makefile_var("PKG_RELEASE")
    );
    let ipk = out.join(&name);
    assert!(
        ipk.exists(),
        "{name} not made: {}",
        String::from_utf8_lossy(&res.stdout)
    );
    Built { ipk, bpf, binary }
}

/// `tar -tv` of a gzip'd tar: (mode, owner/group, size, name) per entry.
fn listing(archive: &Path) -> Vec<(String, String, u64, String)> {
    let out = Command::new("tar")
        .args(["--numeric-owner", "-tvzf"])
        .arg(archive)
        .output()
        .unwrap();
    assert!(out.status.success(), "tar -tvzf {}", archive.display());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (
                f[0].to_string(),
                f[1].to_string(),
                f[2].parse().unwrap(),
                f[5..].join(" "),
            )
        })
        .collect()
}

fn control_fields(text: &str) -> BTreeMap<String, String> {
    let mut fields = BTreeMap::new();
    let mut last = String::new();
    for line in text.lines() {
        if let Some(cont) = line.strip_prefix(' ') {
            let v: &mut String = fields.get_mut(&last).expect("continuation");
            v.push('\n');
            v.push_str(cont);
        } else {
            let (k, v) = line.split_once(": ").unwrap_or_else(|| panic!("{line:?}"));
            assert!(
                fields.insert(k.to_string(), v.to_string()).is_none(),
                "{k} twice"
            );
            last = k.to_string();
        }
    }
    fields
}

#[test]
fn the_ipk_unpacks_to_the_right_tree() {
    let dir = TempDir::new("ipk");
    let arch = ARCH;
    let b = shared();
    assert_eq!(
        &read(&b.ipk)[..2],
        &[0x1f, 0x8b],
        "a gzip'd tar, not an ar archive"
    );

    // The outer archive: ipkg-build's three members, in its order.
    let outer = listing(&b.ipk);
    let names: Vec<&str> = outer.iter().map(|e| e.3.as_str()).collect();
    assert_eq!(
        names,
        ["./debian-binary", "./data.tar.gz", "./control.tar.gz"]
    );
    let top = dir.path("ipk");
    untar(&b.ipk, &top);
    assert_eq!(read(&top.join("debian-binary")), b"2.0\n");

    // control.tar.gz
    let mut ctl = listing(&top.join("control.tar.gz"));
    ctl.sort_by(|a, b| a.3.cmp(&b.3));
    let ctl_modes: Vec<(&str, &str, &str)> = ctl
        .iter()
        .map(|e| (e.3.as_str(), e.0.as_str(), e.1.as_str()))
        .collect();
    assert_eq!(
        ctl_modes,
        [
            ("./", "drwxr-xr-x", "0/0"),
            ("./conffiles", "-rw-r--r--", "0/0"),
            ("./control", "-rw-r--r--", "0/0"),
            ("./postinst", "-rwxr-xr-x", "0/0"),
            ("./prerm", "-rwxr-xr-x", "0/0"),
        ]
    );
    let c = top.join("control");
    untar(&top.join("control.tar.gz"), &c);
    assert_eq!(read(&c.join("conffiles")), b"/etc/config/dae\n");
    assert_eq!(
        read(&c.join("postinst")),
        read(&repo().join("openwrt/files/postinst"))
    );
    assert_eq!(
        read(&c.join("prerm")),
        read(&repo().join("openwrt/files/prerm"))
    );

    // data.tar.gz: exactly these entries, owned by root, with these modes.
    let mut data = listing(&top.join("data.tar.gz"));
    data.sort_by(|a, b| a.3.cmp(&b.3));
    let tree: Vec<(&str, &str, &str)> = data
        .iter()
        .map(|e| (e.3.as_str(), e.0.as_str(), e.1.as_str()))
        .collect();
    let d = "drwxr-xr-x";
    assert_eq!(
        tree,
        [
            ("./", d, "0/0"),
            ("./etc/", d, "0/0"),
            ("./etc/config/", d, "0/0"),
            ("./etc/config/dae", "-rw-------", "0/0"),
            ("./etc/init.d/", d, "0/0"),
            ("./etc/init.d/dae", "-rwxr-xr-x", "0/0"),
            ("./lib/", d, "0/0"),
            ("./lib/bpf/", d, "0/0"),
            ("./lib/bpf/dae_tc.o", "-rw-r--r--", "0/0"),
            ("./lib/upgrade/", d, "0/0"),
            ("./lib/upgrade/keep.d/", d, "0/0"),
            ("./lib/upgrade/keep.d/dae", "-rw-r--r--", "0/0"),
            ("./usr/", d, "0/0"),
            ("./usr/bin/", d, "0/0"),
            ("./usr/bin/dae", "-rwxr-xr-x", "0/0"),
        ]
    );
    let root = top.join("root");
    untar(&top.join("data.tar.gz"), &root);
    assert_eq!(read(&root.join("usr/bin/dae")), read(&b.binary));
    assert_eq!(
        read(&root.join("etc/init.d/dae")),
        read(&repo().join("init.d/dae"))
    );
    assert_eq!(
        read(&root.join("etc/config/dae")),
        read(&repo().join("openwrt/files/dae.config"))
    );
    assert_eq!(read(&root.join("lib/bpf/dae_tc.o")), read(&b.bpf));
    // sysupgrade keeps the subscriptions' stored lists (the default
    // subscription_dir) with the settings.
    assert_eq!(
        String::from_utf8(read(&root.join("lib/upgrade/keep.d/dae"))).unwrap(),
        format!("{}/\n", default_subscription_dir())
    );

    // The control fields.
    let fields = control_fields(&String::from_utf8(read(&c.join("control"))).unwrap());
    let version = format!("{}-{}", cargo_version(), makefile_var("PKG_RELEASE"));
    assert_eq!(fields["Package"], "dae");
    assert_eq!(fields["Version"], version);
    assert_eq!(fields["Architecture"], arch);
    assert_eq!(fields["License"], makefile_var("PKG_LICENSE"));
    assert_eq!(fields["Section"], "net");
    assert_eq!(fields["SourceDateEpoch"], "1700000000");
    let depends: Vec<&str> = fields["Depends"].split(", ").collect();
    assert_eq!(depends, ["kmod-sched-core", "kmod-sched-bpf", "ca-bundle"]);
    let files_size: u64 = data
        .iter()
        .filter(|e| e.0.starts_with('-'))
        .map(|e| e.2)
        .sum();
    assert_eq!(fields["Installed-Size"], files_size.to_string());
    assert!(
        fields["Description"].lines().count() > 1,
        "a summary and a body"
    );
}

#[test]
fn the_two_ways_to_package_agree() {
    // The SDK Makefile and the ipk builder: same version, license,
    // dependencies, conffiles and files.
    let mk = std::fs::read_to_string(repo().join("openwrt/Makefile")).unwrap();
    assert_eq!(makefile_var("PKG_VERSION"), cargo_version());
    assert_eq!(makefile_var("PKG_LICENSE"), "AGPL-3.0-only");
    // PKG_LICENSE_FILES names the text, which must be the license named.
    assert_eq!(makefile_var("PKG_LICENSE_FILES"), "LICENSE");
    let text = std::fs::read_to_string(repo().join("LICENSE")).unwrap();
    assert!(
        text.starts_with("GNU AFFERO GENERAL PUBLIC LICENSE\nVersion 3, 19 November 2007"),
        "LICENSE is not the AGPL-3.0 text"
    );
    for dep in [
        "+kmod-sched-core",
        "+kmod-sched-bpf",
        "+ca-bundle",
        "$(RUST_ARCH_DEPENDS)",
        "$(BPF_DEPENDS)",
    ] {
        assert!(mk.contains(dep), "DEPENDS lacks {dep}");
    }
    assert!(mk.contains("define Package/dae/conffiles\n/etc/config/dae\nendef"));
    for installed in [
        "$(1)/usr/bin/",
        "$(1)/lib/bpf/dae_tc.o",
        "$(1)/etc/init.d/dae",
        "$(1)/etc/config/dae",
        "$(1)/lib/upgrade/keep.d/dae",
    ] {
        assert!(
            mk.contains(installed),
            "Makefile does not install {installed}"
        );
    }
    assert!(mk.contains("include $(DAE_RUST_PACKAGE_MK)"));
    assert!(mk.contains("include $(INCLUDE_DIR)/bpf.mk"));
    assert!(mk.contains("$(eval $(call RustBinPackage,dae))"));
    assert!(mk.contains("$(eval $(call BuildPackage,dae))"));
}

/// Where the daemon keeps the subscriptions' lists when the config does
/// not say.
fn default_subscription_dir() -> String {
    let c = dae::config::parse_str(
        "config dae 'config'\nconfig dns 'dns'\n\tlist dns_listen '127.0.0.1:53'\n\toption request_fallback 'up'\nconfig upstream 'up'\n\toption address 'udp://192.0.2.53'\n",
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
    c.general.subscription_dir.display().to_string()
}

#[test]
fn the_same_input_gives_the_same_package() {
    let first = shared();
    let again = TempDir::new("ipk-again");
    let second = build_ipk(&again.0, &first.binary, &first.bpf, ARCH, EPOCH);
    assert_ne!(first.ipk, second.ipk);
    assert_eq!(read(&first.ipk), read(&second.ipk));
}

#[test]
fn bad_arguments_are_refused_and_nothing_is_written() {
    let dir = TempDir::new("ipk-bad");
    let bpf = shared().bpf.clone();
    let out = dir.path("out");
    let cases: &[(&str, &[&str])] = &[
        ("no binary", &["--arch", "mipsel_24kc"]),
        (
            "binary missing",
            &["--binary", "/nonexistent/dae", "--arch", "mipsel_24kc"],
        ),
        (
            "arch with a slash",
            &["--binary", env!("CARGO_BIN_EXE_dae"), "--arch", "../x"],
        ),
        (
            "arch with a space",
            &["--binary", env!("CARGO_BIN_EXE_dae"), "--arch", "a b"],
        ),
        ("no arch", &["--binary", env!("CARGO_BIN_EXE_dae")]),
        (
            "binary for another CPU",
            &[
                "--binary",
                env!("CARGO_BIN_EXE_dae"),
                "--arch",
                "mipsel_24kc",
            ],
        ),
        (
            "binary for another CPU (aarch64)",
            &[
                "--binary",
                env!("CARGO_BIN_EXE_dae"),
                "--arch",
                "aarch64_cortex-a53",
            ],
        ),
        (
            "not an ELF binary",
            &["--binary", "/etc/hostname", "--arch", "x86_64"],
        ),
        (
            "unknown architecture",
            &["--binary", env!("CARGO_BIN_EXE_dae"), "--arch", "vax_11"],
        ),
        (
            "release with a space",
            &[
                "--binary",
                env!("CARGO_BIN_EXE_dae"),
                "--arch",
                "x86_64",
                "--release",
                "1 2",
            ],
        ),
        (
            "unknown option",
            &[
                "--binary",
                env!("CARGO_BIN_EXE_dae"),
                "--arch",
                "x86_64",
                "--sign",
            ],
        ),
    ];
    for (what, args) in cases {
        let res = Command::new(repo().join("openwrt/build-ipk.sh"))
            .args(*args)
            .arg("--bpf-object")
            .arg(&bpf)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        assert!(!res.status.success(), "{what}: accepted");
        let err = String::from_utf8_lossy(&res.stderr);
        assert!(err.starts_with("build-ipk: "), "{what}: {err}");
        assert!(!out.exists(), "{what}: wrote something");
    }
}

#[test]
fn maintainer_scripts_call_openwrts_defaults() {
    // A root with a /lib/functions.sh whose default_postinst/default_prerm
    // record how they were called.
    let dir = TempDir::new("ipk-scripts");
    let root = dir.path("root");
    std::fs::create_dir_all(root.join("lib")).unwrap();
    let log = dir.path("calls");
    std::fs::write(
        root.join("lib/functions.sh"),
        format!(
            "default_postinst() {{ echo \"postinst $*\" >>'{0}'; }}\n\
             default_prerm() {{ echo \"prerm $*\" >>'{0}'; }}\n",
            log.display()
        ),
    )
    .unwrap();
    let run = |script: &str, no_script: bool, instroot: &Path| {
        let mut c = Command::new("sh");
        c.arg(repo().join("openwrt/files").join(script))
            .arg("upgrade")
            .env("IPKG_INSTROOT", instroot);
        if no_script {
            c.env("IPKG_NO_SCRIPT", "1");
        }
        assert!(c.status().unwrap().success(), "{script}");
    };
    let postinst = repo().join("openwrt/files/postinst").display().to_string();
    let prerm = repo().join("openwrt/files/prerm").display().to_string();
    run("postinst", false, &root);
    run("prerm", false, &root);
    run("postinst", true, &root);
    // No OpenWrt there: nothing to do, and no failure.
    run("postinst", false, &dir.path("empty"));
    run("prerm", false, &dir.path("empty"));
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        format!("postinst {postinst} upgrade\nprerm {prerm} upgrade\n")
    );
}

#[test]
fn the_feed_ci_check_passes_on_the_packaged_files() {
    // openwrt/test.sh as the feed CI runs it (`test.sh dae VERSION`), on
    // the files of the package, with /etc/config/dae at its unpacked place.
    let dir = TempDir::new("ipk-testsh");
    let b = shared();
    let top = dir.path("ipk");
    untar(&b.ipk, &top);
    let root = top.join("root");
    untar(&top.join("data.tar.gz"), &root);
    let script = std::fs::read_to_string(repo().join("openwrt/test.sh")).unwrap();
    assert!(script.contains("/etc/config/dae"));
    let local = script.replace(
        "/etc/config/dae",
        &root.join("etc/config/dae").display().to_string(),
    );
    let path = format!(
        "{}:{}",
        root.join("usr/bin").display(),
        std::env::var("PATH").unwrap()
    );
    let run = |version: &str| {
        Command::new("sh")
            .args(["-c", &local, "test.sh", "dae", version])
            .env("PATH", &path)
            .output()
            .unwrap()
    };
    let v = cargo_version();
    let ok = run(&v);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(run(&format!("{v}-1")).status.success(), "with the release");
    assert!(!run("9.9.9").status.success(), "a wrong version must fail");
}
