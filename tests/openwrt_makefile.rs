//! `openwrt/Makefile` and `luci-app-dae/Makefile` under GNU make, in the
//! two layouts the README gives: a copy in the packages feed
//! (`feeds/packages/net/dae`) and the repository as a feed through
//! `src-link` (make then runs in the repository's real folders). OpenWrt's
//! own make files are replaced by `tests/openwrt/buildroot-stub/` (our
//! few lines: each include is recorded, `BuildPackage` prints the package's
//! metadata and runs `Build/Prepare`): this shows that every include
//! resolves and what metadata and source the package has, not that an SDK
//! builds it. Also `openwrt/release.sh`: the tarball and the hash the
//! Makefile carries, checked in a scratch clone with its own release tag.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::TempDir;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn stub() -> PathBuf {
    repo().join("tests/openwrt/buildroot-stub")
}

fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(from, to).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
}

/// A buildroot with the stub make files and the packages and LuCI feeds.
fn buildroot(dir: &TempDir) -> PathBuf {
    let top = dir.path("openwrt");
    for f in ["rules.mk", "include/package.mk", "include/bpf.mk"] {
        copy(&stub().join(f), &top.join(f));
    }
    copy(
        &stub().join("lang/rust/rust-package.mk"),
        &top.join("feeds/packages/lang/rust/rust-package.mk"),
    );
    copy(&stub().join("luci.mk"), &top.join("feeds/luci/luci.mk"));
    top
}

fn make(top: &Path, dir: &Path, args: &[&str]) -> Output {
    Command::new("make")
        .arg("--no-print-directory")
        .arg("-C")
        .arg(dir)
        .arg(format!("TOPDIR={}", top.display()))
        .args(args)
        .output()
        .expect("GNU make (apt-get install make)")
}

/// The KEY=VALUE lines make printed, and the includes it went through.
fn metadata(out: &Output) -> (BTreeMap<String, String>, Vec<String>) {
    assert!(
        out.status.success(),
        "make failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut meta = BTreeMap::new();
    let mut included = Vec::new();
    for line in text.lines() {
        if let Some(f) = line.strip_prefix("included ") {
            included.push(f.to_string());
        } else if let Some((k, v)) = line.split_once('=') {
            meta.insert(k.to_string(), v.to_string());
        }
    }
    (meta, included)
}

fn makefile_var(name: &str) -> String {
    let mk = std::fs::read_to_string(repo().join("openwrt/Makefile")).unwrap();
    mk.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:=")))
        .unwrap_or_else(|| panic!("{name} in openwrt/Makefile"))
        .to_string()
}

fn cargo_version() -> String {
    let toml = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    toml.lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .unwrap()
        .to_string()
}

const INCLUDES: [&str; 4] = ["rules.mk", "package.mk", "bpf.mk", "rust-package.mk"];

#[test]
fn in_the_packages_feed_it_downloads_the_release_tarball() {
    let dir = TempDir::new("mk-feed");
    let top = buildroot(&dir);
    let pkg = top.join("feeds/packages/net/dae");
    copy(&repo().join("openwrt/Makefile"), &pkg.join("Makefile"));
    let (meta, included) = metadata(&make(&top, &pkg, &[]));
    assert_eq!(included, INCLUDES);
    let v = cargo_version();
    assert_eq!(meta["PACKAGE"], "dae");
    assert_eq!(meta["PKG_VERSION"], v);
    assert_eq!(meta["PKG_SOURCE"], format!("dae-{v}.tar.gz"));
    assert!(
        meta["PKG_SOURCE_URL"].ends_with(&format!("/releases/download/v{v}/")),
        "{meta:?}"
    );
    assert_eq!(meta["PKG_HASH"], makefile_var("PKG_HASH"));
    assert_eq!(
        meta["BUILD/PREPARE"], "default",
        "the tarball is unpacked as usual"
    );
    assert_eq!(meta["PKG_FLAGS"], "", "nonshared is not needed");
    assert_eq!(
        meta["URL"],
        meta["PKG_SOURCE_URL"].split("/releases/").next().unwrap()
    );
    assert_eq!(meta["CONFFILES"], "/etc/config/dae");
    assert_eq!(
        meta["DEPENDS"],
        "@(aarch64||arm||i386||mips||mipsel||x86_64) @HAS_BPF_TOOLCHAIN +kmod-sched-core +kmod-sched-bpf +ca-bundle"
    );
    assert_eq!(meta["RUST_BIN_PACKAGE"], "dae");
    // The MIPS byte-order define goes to MIPS only.
    let mips = make(&top, &pkg, &["-n", "compile", "ARCH=mipsel"]);
    assert!(String::from_utf8_lossy(&mips.stdout).contains("-D__MIPSEL__"));
    let mips = make(
        &top,
        &pkg,
        &["-n", "compile", "ARCH=mips", "CONFIG_BIG_ENDIAN=y"],
    );
    assert!(String::from_utf8_lossy(&mips.stdout).contains("-D__MIPSEB__ -c"));
    let arm = make(&top, &pkg, &["-n", "compile", "ARCH=aarch64"]);
    let arm = String::from_utf8_lossy(&arm.stdout);
    assert!(
        arm.contains("-target bpfel") && !arm.contains("__MIPS"),
        "{arm}"
    );
    // The binary loads the SDK-built object: cargo embeds none of its own.
    assert!(arm.contains("DAE_EMBED_BPF=0 cargo build"), "{arm}");
}

#[test]
fn through_src_link_it_builds_the_whole_checkout() {
    let dir = TempDir::new("mk-srclink");
    let top = buildroot(&dir);
    // scripts/feeds: feeds/NAME is the link, package/feeds/NAME/DIR links
    // to the package folder in it.
    symlink(repo(), top.join("feeds/dae")).unwrap();
    std::fs::create_dir_all(top.join("package/feeds/dae")).unwrap();
    symlink(
        "../../../feeds/dae/openwrt",
        top.join("package/feeds/dae/openwrt"),
    )
    .unwrap();
    let pkg = top.join("package/feeds/dae/openwrt");
    let (meta, included) = metadata(&make(&top, &pkg, &[]));
    assert_eq!(included, INCLUDES);
    assert_eq!(meta["PKG_VERSION"], cargo_version());
    assert_eq!(meta["PKG_SOURCE"], "", "nothing to download");
    assert_eq!(meta["PKG_HASH"], "");
    assert_eq!(meta["BUILD/PREPARE"], "own");

    // Build/Prepare copies the checkout: everything git has (build.rs too),
    // none of the build output.
    let build = dir.path("build");
    let out = make(
        &top,
        &pkg,
        &["prepare", &format!("PKG_BUILD_DIR={}", build.display())],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = Command::new("git")
        .arg("-C")
        .arg(repo())
        .args(["ls-files", "-z"])
        .output()
        .unwrap();
    let tracked: Vec<String> = String::from_utf8(listed.stdout)
        .unwrap()
        .split('\0')
        .filter(|f| !f.is_empty())
        .map(String::from)
        .collect();
    assert!(tracked.iter().any(|f| f == "build.rs"));
    for f in &tracked {
        if repo().join(f).exists() {
            assert!(build.join(f).exists(), "{f} was not copied");
        }
    }
    assert!(!build.join("target").exists() && !build.join(".git").exists());
}

#[test]
fn the_luci_app_makefile_works_in_both_layouts() {
    let dir = TempDir::new("mk-luci");
    let top = buildroot(&dir);
    // In the LuCI feed.
    let app = top.join("feeds/luci/applications/luci-app-dae");
    copy(&repo().join("luci-app-dae/Makefile"), &app.join("Makefile"));
    let (feed, included) = metadata(&make(&top, &app, &[]));
    assert_eq!(included, ["rules.mk", "luci.mk"]);
    // Through src-link.
    symlink(repo(), top.join("feeds/dae")).unwrap();
    std::fs::create_dir_all(top.join("package/feeds/dae")).unwrap();
    symlink(
        "../../../feeds/dae/luci-app-dae",
        top.join("package/feeds/dae/luci-app-dae"),
    )
    .unwrap();
    let (linked, included) = metadata(&make(
        &top,
        &top.join("package/feeds/dae/luci-app-dae"),
        &[],
    ));
    assert_eq!(included, ["rules.mk", "luci.mk"]);
    assert_eq!(feed, linked);
    assert_eq!(linked["PACKAGE"], "luci-app-dae");
    assert_eq!(linked["LUCI_DEPENDS"], "+luci-base +dae");
    assert_eq!(linked["PKG_MAINTAINER"], makefile_var("PKG_MAINTAINER"));
    assert!(!linked["LUCI_DESCRIPTION"].is_empty());
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.org"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn release(clone: &Path, args: &[&str]) -> Output {
    Command::new(clone.join("openwrt/release.sh"))
        .args(args)
        .arg("--out")
        .arg(clone.join("../out"))
        .output()
        .unwrap()
}

#[test]
fn release_script_hash_matches_the_makefile_for_the_tagged_tree() {
    let dir = TempDir::new("release");
    let clone = dir.path("dae");
    let out = Command::new("git")
        .args(["clone", "-q", "--no-hardlinks"])
        .arg(repo())
        .arg(&clone)
        .output()
        .unwrap();
    assert!(out.status.success());
    // This branch's committed tree, tagged as the release.
    let v = cargo_version();
    git(&clone, &["tag", &format!("v{v}")]);
    let r = release(&clone, &["--write"]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let printed = String::from_utf8_lossy(&r.stdout).into_owned();
    let hash = printed
        .lines()
        .find_map(|l| l.strip_prefix("PKG_HASH:="))
        .unwrap()
        .to_string();
    assert_eq!(hash.len(), 64);
    // The tarball: the hash printed, the tree of the tag under dae-V/,
    // without the Makefile; made twice, the same bytes.
    let tarball = dir.path("out").join(format!("dae-{v}.tar.gz"));
    let sum = Command::new("sha256sum").arg(&tarball).output().unwrap();
    assert!(String::from_utf8_lossy(&sum.stdout).starts_with(&hash));
    let list = Command::new("tar")
        .arg("-tzf")
        .arg(&tarball)
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(list.lines().any(|l| l == format!("dae-{v}/build.rs")));
    assert!(list.lines().any(|l| l == format!("dae-{v}/Cargo.lock")));
    assert!(!list.contains("openwrt/Makefile"));
    // What --write wrote passes --check; committing it keeps the tarball.
    git(&clone, &["commit", "-qam", "openwrt: PKG_HASH"]);
    let r = release(&clone, &["--check"]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    // A different tree under the tag: the Makefile's hash no longer fits.
    std::fs::write(clone.join("build.rs"), "fn main() {}\n").unwrap();
    git(&clone, &["commit", "-qam", "change"]);
    git(&clone, &["tag", "-f", &format!("v{v}")]);
    let r = release(&clone, &["--check"]);
    assert!(!r.status.success());
    assert!(String::from_utf8_lossy(&r.stderr).contains("PKG_HASH"));
    // No tag for this version: refused, nothing guessed.
    git(&clone, &["tag", "-d", &format!("v{v}")]);
    let r = release(&clone, &[]);
    assert!(!r.status.success());
    assert!(String::from_utf8_lossy(&r.stderr).contains("no such revision"));
}

#[test]
fn the_repository_makefile_carries_the_hash_of_its_release() {
    // Once v<version> is tagged here, the Makefile must carry its hash;
    // before, the hash is the marked placeholder that release.sh replaces.
    let v = cargo_version();
    let tagged = Command::new("git")
        .arg("-C")
        .arg(repo())
        .args(["rev-parse", "-q", "--verify", &format!("refs/tags/v{v}")])
        .output()
        .unwrap()
        .status
        .success();
    if tagged {
        let dir = TempDir::new("release-here");
        let r = Command::new(repo().join("openwrt/release.sh"))
            .args(["--check", "--out"])
            .arg(dir.path("out"))
            .output()
            .unwrap();
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    } else {
        eprintln!("NOTE: v{v} is not tagged: the release check ran in a scratch clone only");
        assert_eq!(makefile_var("PKG_HASH"), "FILL-IN-by-openwrt/release.sh");
    }
    assert_eq!(makefile_var("PKG_VERSION"), v);
}
