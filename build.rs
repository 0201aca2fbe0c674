//! Build script: hands the linker `src/layout.ld`, which gathers the code
//! of features a config may not use (TLS, QUIC, HTTP/2, proxy protocols,
//! the eBPF loader) after the rest, so that a router that does not use
//! them keeps that code out of its memory. Only for Linux (ELF) targets;
//! `DAE_LINK_LAYOUT=0` leaves the linker's own layout (for a linker
//! without `INSERT` support, such as mold).

use std::env;
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=src/layout.ld");
    println!("cargo:rerun-if-env-changed=DAE_LINK_LAYOUT");
    if env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux")
        || env::var("DAE_LINK_LAYOUT").as_deref() == Ok("0")
    {
        return;
    }
    let dir = env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let script = Path::new(&dir).join("src").join("layout.ld");
    println!("cargo:rustc-link-arg-bins=-Wl,-T,{}", script.display());
}
