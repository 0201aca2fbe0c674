//! The types shared by the TC program and the daemon agree on both sides:
//! the C header (compiled here with the host C compiler) and the built
//! eBPF objects (both byte orders) against `dae::ebpf::shared`.

mod common;

use std::mem::{offset_of, size_of};
use std::path::{Path, PathBuf};
use std::process::Command;

use dae::ebpf::shared::{self, Counter, Settings, COUNTER_MAX};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Values printed by a C program that includes `ebpf/dae_shared.h`.
fn c_side() -> Vec<(String, u64)> {
    let dir = std::env::temp_dir().join(format!("dae-abi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("abi.c");
    std::fs::write(
        &src,
        r#"#include <stdio.h>
#include <stddef.h>
#include "dae_shared.h"
#define P(name, v) printf("%s=%llu\n", name, (unsigned long long)(v))
int main(void) {
    P("settings.size", sizeof(struct dae_settings));
    P("settings.listener_port", offsetof(struct dae_settings, listener_port));
    P("settings.tproxy_mark", offsetof(struct dae_settings, tproxy_mark));
    P("settings.so_mark", offsetof(struct dae_settings, so_mark));
    P("settings.fail_closed", offsetof(struct dae_settings, fail_closed));
    P("counter.seen", DAE_CTR_SEEN);
    P("counter.handed", DAE_CTR_HANDED);
    P("counter.passed", DAE_CTR_PASSED);
    P("counter.dropped", DAE_CTR_DROPPED);
    P("counter.assign_failed", DAE_CTR_ASSIGN_FAILED);
    P("counter.max", DAE_CTR_MAX);
    return 0;
}
"#,
    )
    .unwrap();
    let exe = dir.join("abi");
    let cc = Command::new("cc")
        .arg("-I")
        .arg(repo().join("ebpf"))
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .status()
        .expect("a C compiler (cc)");
    assert!(cc.success(), "compiling the ABI probe failed");
    let out = Command::new(&exe).output().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.to_string(), v.parse().unwrap())
        })
        .collect()
}

#[test]
fn header_and_rust_types_agree() {
    let rust: Vec<(&str, u64)> = vec![
        ("settings.size", size_of::<Settings>() as u64),
        (
            "settings.listener_port",
            offset_of!(Settings, listener_port) as u64,
        ),
        (
            "settings.tproxy_mark",
            offset_of!(Settings, tproxy_mark) as u64,
        ),
        ("settings.so_mark", offset_of!(Settings, so_mark) as u64),
        (
            "settings.fail_closed",
            offset_of!(Settings, fail_closed) as u64,
        ),
        ("counter.seen", Counter::Seen as u64),
        ("counter.handed", Counter::Handed as u64),
        ("counter.passed", Counter::Passed as u64),
        ("counter.dropped", Counter::Dropped as u64),
        ("counter.assign_failed", Counter::AssignFailed as u64),
        ("counter.max", u64::from(COUNTER_MAX)),
    ];
    let c = c_side();
    assert_eq!(c.len(), rust.len(), "the probe prints every field");
    for ((ck, cv), (rk, rv)) in c.iter().zip(&rust) {
        assert_eq!(ck, rk);
        assert_eq!(cv, rv, "{ck}: C says {cv}, Rust says {rv}");
    }
    assert_eq!(Counter::ALL.len() as u32, COUNTER_MAX);
}

/// `bpftool btf dump file` of an object: its BTF as text.
fn btf_dump(obj: &Path) -> String {
    let out = Command::new("bpftool")
        .args(["btf", "dump", "file"])
        .arg(obj)
        .output()
        .expect("bpftool (apt-get install bpftool)");
    assert!(
        out.status.success(),
        "bpftool: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `(size, [(member, byte offset)])` of a struct in a BTF dump.
fn btf_struct(dump: &str, name: &str) -> (usize, Vec<(String, usize)>) {
    let head = format!("STRUCT '{name}' size=");
    let mut lines = dump.lines().skip_while(|l| !l.contains(&head));
    let first = lines
        .next()
        .unwrap_or_else(|| panic!("no struct {name} in BTF"));
    let size = first
        .split("size=")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let members = lines
        .take_while(|l| l.starts_with('\t'))
        .map(|l| {
            let member = l.trim().split('\'').nth(1).unwrap().to_string();
            let bits: usize = l
                .split("bits_offset=")
                .nth(1)
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            (member, bits / 8)
        })
        .collect();
    (size, members)
}

#[test]
fn built_objects_agree_with_rust_in_both_byte_orders() {
    let rust = vec![
        (
            "listener_port".to_string(),
            offset_of!(Settings, listener_port),
        ),
        ("tproxy_mark".to_string(), offset_of!(Settings, tproxy_mark)),
        ("so_mark".to_string(), offset_of!(Settings, so_mark)),
        ("fail_closed".to_string(), offset_of!(Settings, fail_closed)),
    ];
    for order in ["bpfel", "bpfeb"] {
        let dump = btf_dump(&common::built_bpf_object(order));
        let (size, members) = btf_struct(&dump, "dae_settings");
        assert_eq!(size, size_of::<Settings>(), "{order}");
        assert_eq!(members, rust, "{order}");
        for var in [shared::SETTINGS_MAP, shared::COUNTERS_MAP] {
            assert!(dump.contains(&format!("VAR '{var}'")), "{order}: map {var}");
        }
        assert!(
            dump.contains(&format!("FUNC '{}'", shared::PROGRAM_NAME)),
            "{order}"
        );
    }

    // Map shapes, from the little-endian object as aya reads it.
    let bytes = std::fs::read(common::built_bpf_object("bpfel")).unwrap();
    let obj = aya_obj::Object::parse(&bytes).expect("aya parses the object");
    assert!(obj.programs.contains_key(shared::PROGRAM_NAME));
    let settings = &obj.maps[shared::SETTINGS_MAP];
    assert_eq!(settings.key_size(), 4);
    assert_eq!(settings.value_size() as usize, size_of::<Settings>());
    assert_eq!(settings.max_entries(), 1);
    let counters = &obj.maps[shared::COUNTERS_MAP];
    assert_eq!(counters.value_size(), 8);
    assert_eq!(counters.max_entries(), COUNTER_MAX);
}
