//! Build script, two jobs:
//!
//! - Builds the TC program (`ebpf/dae_tc.c`) with clang for the target's
//!   byte order (`bpfel` or `bpfeb`, as `ebpf/build.sh` does for both) into
//!   `OUT_DIR/dae_tc.o`, which `src/ebpf/mod.rs` embeds, so that a plain
//!   `cargo build` gives a binary that starts on a router without a
//!   separate object file. Needs clang and libbpf's headers;
//!   `DAE_EMBED_BPF=0` builds without the object (the binary then loads
//!   `option bpf_object`, default `/lib/bpf/dae_tc.o`); `DAE_BPF_CLANG`
//!   names another clang.
//! - Hands the linker `src/layout.ld`, which gathers the code of features
//!   a config may not use (TLS, QUIC, HTTP/2, proxy protocols, the eBPF
//!   loader) after the rest, so that a router that does not use them keeps
//!   that code out of its memory. Only for Linux (ELF) targets;
//!   `DAE_LINK_LAYOUT=0` leaves the linker's own layout (for a linker
//!   without `INSERT` support, such as mold).

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    embed_tc_object(&dir, &out.join("dae_tc.o"));
    link_layout(&dir);
}

/// Writes the TC object for the target's byte order to `object`, or an
/// empty file with `DAE_EMBED_BPF=0` (the daemon reads empty as "none").
fn embed_tc_object(dir: &Path, object: &Path) {
    for source in ["ebpf/dae_tc.c", "ebpf/dae_shared.h"] {
        println!("cargo:rerun-if-changed={source}");
    }
    println!("cargo:rerun-if-env-changed=DAE_EMBED_BPF");
    println!("cargo:rerun-if-env-changed=DAE_BPF_CLANG");
    if env::var("DAE_EMBED_BPF").as_deref() == Ok("0") {
        std::fs::write(object, b"").expect("write OUT_DIR/dae_tc.o");
        return;
    }
    let order = match env::var("CARGO_CFG_TARGET_ENDIAN").as_deref() {
        Ok("big") => "bpfeb",
        _ => "bpfel",
    };
    let clang = env::var("DAE_BPF_CLANG").unwrap_or_else(|_| "clang".into());
    // The kernel's UAPI headers include <asm/types.h>, which Debian keeps
    // in the build machine's multiarch directory.
    let multiarch = Command::new("gcc")
        .arg("-dumpmachine")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "x86_64-linux-gnu".into());
    let ebpf = dir.join("ebpf");
    let result = Command::new(&clang)
        .args(["-O2", "-g", "-Wall", "-Werror", "-target", order])
        .arg(format!("-I/usr/include/{multiarch}"))
        .arg(format!("-I{}", ebpf.display()))
        .arg("-c")
        .arg(ebpf.join("dae_tc.c"))
        .arg("-o")
        .arg(object)
        .output();
    let failure = match result {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(String::from_utf8_lossy(&o.stderr).into_owned()),
        Err(e) => Some(format!("cannot run {clang}: {e}")),
    };
    if let Some(why) = failure {
        eprintln!(
            "\ndae's TC program (ebpf/dae_tc.c) could not be built for {order}:\n{why}\n\
             It is built into the binary and needs clang and libbpf's headers:\n\
             \x20   apt-get install clang llvm libbpf-dev linux-libc-dev\n\
             or build without it (DAE_EMBED_BPF=0 cargo build ...): dae then loads the \
             object named by `option bpf_object` (default /lib/bpf/dae_tc.o).\n"
        );
        std::process::exit(1);
    }
    // The object keeps its BTF (aya needs it for the maps) but not the
    // DWARF: half the size. Without llvm-strip it goes in whole.
    let stripped = Command::new("llvm-strip")
        .arg("--strip-debug")
        .arg(object)
        .status();
    if !matches!(stripped, Ok(s) if s.success()) {
        println!("cargo:warning=llvm-strip not found: the TC object is embedded with its debug info (about 15 KB more)");
    }
}

fn link_layout(dir: &Path) {
    println!("cargo:rerun-if-changed=src/layout.ld");
    println!("cargo:rerun-if-env-changed=DAE_LINK_LAYOUT");
    if env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux")
        || env::var("DAE_LINK_LAYOUT").as_deref() == Ok("0")
    {
        return;
    }
    let script = dir.join("src").join("layout.ld");
    println!("cargo:rustc-link-arg-bins=-Wl,-T,{}", script.display());
}
