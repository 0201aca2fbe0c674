//! The apk route (OpenWrt 25.12 and later, apk-tools v3): `build-ipk.sh
//! --apk` lays out what `apk mkpkg` packs, as OpenWrt's package-pack.mk
//! does. Debian 12, PyPI and npm have no apk-tools v3 (nothing that writes
//! or reads its ADB format), so the .apk itself is not made here: the
//! tests check the folder (the files, lib/apk/packages/dae.list,
//! .conffiles, .conffiles_static, the scripts, mkpkg.sh's fields) and run
//! the install scripts as apk runs them (its own name for the script as
//! $0, a clean environment) in a scratch root with OpenWrt's
//! default_postinst/default_prerm behaviour (tests/openwrt/router-root/):
//! installing enables and starts dae, `apk del` stops and disables it.

mod common;
#[path = "openwrt/packages.rs"]
mod packages;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::TempDir;
use packages::{
    build_packages, cargo_version, files_under, makefile_release, read, read_text, repo, RouterRoot,
};

fn built() -> &'static Path {
    static OUT: OnceLock<PathBuf> = OnceLock::new();
    OUT.get_or_init(|| {
        build_packages(
            &PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("openwrt-apk"),
            true,
        )
    })
}

fn apk_version() -> String {
    format!("{}-r{}", cargo_version(), makefile_release())
}

fn tree(name: &str) -> PathBuf {
    built().join(format!("{name}-{}.apk.d", apk_version()))
}

fn sha256(p: &Path) -> String {
    let out = Command::new("sha256sum").arg(p).output().unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn the_apk_folder_is_what_package_pack_mk_lays_out() {
    let dir = tree("dae");
    let files = dir.join("files");
    assert_eq!(
        files_under(&files),
        [
            "/etc/config/dae",
            "/etc/init.d/dae",
            "/lib/apk/packages/dae.conffiles",
            "/lib/apk/packages/dae.conffiles_static",
            "/lib/apk/packages/dae.list",
            "/lib/bpf/dae_tc.o",
            "/lib/upgrade/keep.d/dae",
            "/usr/bin/dae",
        ]
    );
    // The list: the package's files, without the lists themselves.
    assert_eq!(
        read_text(&files.join("lib/apk/packages/dae.list")),
        "/etc/config/dae\n/etc/init.d/dae\n/lib/bpf/dae_tc.o\n/lib/upgrade/keep.d/dae\n/usr/bin/dae\n"
    );
    assert_eq!(
        read_text(&files.join("lib/apk/packages/dae.conffiles")),
        "/etc/config/dae\n"
    );
    // The shipped config's checksum, which tells apk whether the owner
    // changed it.
    assert_eq!(
        read_text(&files.join("lib/apk/packages/dae.conffiles_static")),
        format!(
            "/etc/config/dae {}\n",
            sha256(&repo().join("openwrt/files/dae.config"))
        )
    );
    assert_eq!(
        read(&files.join("etc/init.d/dae")),
        read(&repo().join("init.d/dae"))
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &str| {
        std::fs::metadata(files.join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode("etc/config/dae"), 0o600);
    assert_eq!(mode("etc/init.d/dae"), 0o755);
    assert_eq!(mode("usr/bin/dae"), 0o755);
    assert_eq!(mode("lib/apk/packages/dae.list"), 0o644);

    // The scripts export what OpenWrt's defaults read.
    for (script, default) in [
        ("post-install", "default_postinst"),
        ("post-upgrade", "default_postinst"),
        ("pre-deinstall", "default_prerm"),
    ] {
        let text = read_text(&dir.join(script));
        assert!(text.starts_with("#!/bin/sh\n"), "{script}");
        let lines: Vec<&str> = text.lines().collect();
        let at = |l: &str| lines.iter().position(|x| *x == l);
        let call = at(default).unwrap_or_else(|| panic!("{script} calls {default}"));
        assert!(at("export pkgname=\"dae\"").unwrap() < call, "{script}");
        assert!(
            at("export root=\"${IPKG_INSTROOT:-}\"").unwrap() < call,
            "{script}"
        );
        assert_eq!(
            text.contains("export PKG_UPGRADE=1"),
            script == "post-upgrade"
        );
        let ok = Command::new("shellcheck")
            .args(["-s", "sh"])
            .arg(dir.join(script))
            .status()
            .expect("shellcheck");
        assert!(ok.success(), "shellcheck {script}");
    }
}

#[test]
fn mkpkg_sh_gives_apk_the_packages_fields() {
    // apk-tools v3 is not to be had here: an `apk` on PATH that writes
    // down its arguments stands in for it, to read what mkpkg.sh asks.
    let t = TempDir::new("apk-mkpkg");
    let bin = t.path("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let args_file = t.path("args");
    std::fs::write(
        bin.join("apk"),
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$PWD\" \"$@\" >'{}'\n",
            args_file.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(bin.join("apk"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = tree("dae");
    let ok = Command::new("sh")
        .arg(dir.join("mkpkg.sh"))
        .env(
            "PATH",
            format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
        )
        .status()
        .unwrap();
    assert!(ok.success());
    let text = read_text(&args_file);
    let mut args = text.lines();
    assert_eq!(Path::new(args.next().unwrap()), dir.as_path());
    let args: Vec<&str> = args.collect();
    let v = apk_version();
    let want = [
        "mkpkg",
        "--info",
        "name:dae",
        "--info",
        &format!("version:{v}"),
        "--info",
        "description:Transparent DNS controller for the LAN (dae for OpenWrt).",
        "--info",
        "arch:x86_64",
        "--info",
        "license:AGPL-3.0-only",
        "--info",
        "origin:dae",
        "--info",
        "depends:kmod-sched-core kmod-sched-bpf ca-bundle",
        "--script",
        "post-install:post-install",
        "--script",
        "post-upgrade:post-upgrade",
        "--script",
        "pre-deinstall:pre-deinstall",
        "--files",
        "files",
        "--output",
        &format!("../dae-{v}.apk"),
    ];
    assert_eq!(args, want);
}

/// Installs the apk folder's files into a router root and puts its
/// scripts where apk keeps them, under apk's names for them.
fn install(r: &RouterRoot, name: &str) -> String {
    let dir = tree(name);
    r.unpack(&dir.join("files"));
    let exec = r.root.join("lib/apk/exec");
    std::fs::create_dir_all(&exec).unwrap();
    for kind in ["post-install", "post-upgrade", "pre-deinstall"] {
        std::fs::copy(
            dir.join(kind),
            exec.join(format!("{name}-{}.{kind}", apk_version())),
        )
        .unwrap();
    }
    format!("/lib/apk/exec/{name}-{}", apk_version())
}

#[test]
fn apk_add_enables_and_starts_dae_and_apk_del_stops_it() {
    let t = TempDir::new("apk-root");
    let r = RouterRoot::new(t.path("root"));
    let scripts = install(&r, "dae");
    let v = apk_version();

    // apk add: post-install NEW-VERSION.
    r.run(&format!("{scripts}.post-install"), &[&v], &[]);
    assert_eq!(
        r.rc_d(),
        ["K10dae -> ../init.d/dae", "S95dae -> ../init.d/dae"]
    );
    assert_eq!(r.take_rc_log(), "start dae\n");

    // apk upgrade: post-upgrade NEW OLD starts it again (procd compares
    // and reloads) and leaves enable/disable as the owner set it.
    std::fs::remove_file(r.root.join("etc/rc.d/S95dae")).unwrap();
    r.run(&format!("{scripts}.post-upgrade"), &[&v, &v], &[]);
    assert_eq!(r.rc_d(), ["K10dae -> ../init.d/dae"]);
    assert_eq!(r.take_rc_log(), "start dae\n");

    // apk del: pre-deinstall OLD-VERSION.
    r.run(&format!("{scripts}.pre-deinstall"), &[&v], &[]);
    assert_eq!(r.rc_d(), Vec::<String>::new());
    assert_eq!(r.take_rc_log(), "stop dae\n");

    // IPKG_NO_SCRIPT=1: nothing.
    r.run(
        &format!("{scripts}.post-install"),
        &[&v],
        &[("IPKG_NO_SCRIPT", "1")],
    );
    assert_eq!(r.rc_d(), Vec::<String>::new());
    assert_eq!(r.take_rc_log(), "");
}

#[test]
fn in_an_image_build_dae_is_enabled_not_started() {
    // The image builder installs into a folder (IPKG_INSTROOT) and runs
    // the scripts with the build machine's shell: enabled, nothing run.
    let t = TempDir::new("apk-image");
    let r = RouterRoot::new(t.path("root"));
    let scripts = install(&r, "dae");
    let script = r.root.join(scripts.trim_start_matches('/'));
    let out = Command::new("sh")
        .arg(format!("{}.post-install", script.display()))
        .arg(apk_version())
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("IPKG_INSTROOT", &r.root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        r.rc_d(),
        ["K10dae -> ../init.d/dae", "S95dae -> ../init.d/dae"]
    );
    assert_eq!(r.take_rc_log(), "");
}

#[test]
fn without_apk_tools_v3_the_folder_is_laid_out_and_no_apk_claimed() {
    // On this machine there is no apk-tools v3, so build-ipk.sh says where
    // the folder is and makes no .apk.
    let have_v3 = Command::new("apk")
        .args(["mkpkg", "--help"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    let apk = built().join(format!("dae-{}.apk", apk_version()));
    assert_eq!(apk.exists(), have_v3);
}
