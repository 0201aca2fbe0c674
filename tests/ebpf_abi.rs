//! The types shared by the TC program and the daemon agree on both sides:
//! the C header (compiled here with the host C compiler) and the built
//! eBPF objects (both byte orders) against `dae::ebpf::shared`.

mod common;

use std::mem::{offset_of, size_of};
use std::path::{Path, PathBuf};
use std::process::Command;

use dae::ebpf::shared::{
    self, Bits, Counter, Domain, DomainKey, FlowKey, FlowVerdict, LpmData, LpmKind, MacKey,
    Routing, Rule, Settings, COUNTER_MAX,
};

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
    P("settings.routing_slot", offsetof(struct dae_settings, routing_slot));
    P("counter.seen", DAE_CTR_SEEN);
    P("counter.handed", DAE_CTR_HANDED);
    P("counter.passed", DAE_CTR_PASSED);
    P("counter.dropped", DAE_CTR_DROPPED);
    P("counter.assign_failed", DAE_CTR_ASSIGN_FAILED);
    P("counter.flow_direct", DAE_CTR_FLOW_DIRECT);
    P("counter.flow_proxy", DAE_CTR_FLOW_PROXY);
    P("counter.flow_block", DAE_CTR_FLOW_BLOCK);
    P("counter.flow_bypass", DAE_CTR_FLOW_BYPASS);
    P("counter.flow_no_relay", DAE_CTR_FLOW_NO_RELAY);
    P("counter.flow_sniff", DAE_CTR_FLOW_SNIFF);
    P("counter.max", DAE_CTR_MAX);
    P("cond_words", DAE_COND_WORDS);
    P("max_conditions", DAE_MAX_CONDITIONS);
    P("max_rules", DAE_MAX_RULES);
    P("dscp_values", DAE_DSCP_VALUES);
    P("target.direct", DAE_TARGET_DIRECT);
    P("target.block", DAE_TARGET_BLOCK);
    P("target.group", DAE_TARGET_GROUP);
    P("entries.lpm", DAE_LPM_ENTRIES);
    P("entries.mac", DAE_MAC_ENTRIES);
    P("entries.domain", DAE_DOMAIN_ENTRIES);
    P("entries.flow", DAE_FLOW_ENTRIES);
    P("bits.size", sizeof(struct dae_bits));
    P("rule.size", sizeof(struct dae_rule));
    P("rule.need", offsetof(struct dae_rule, need));
    P("rule.deny", offsetof(struct dae_rule, deny));
    P("rule.target", offsetof(struct dae_rule, target));
    P("routing.size", sizeof(struct dae_routing));
    P("routing.n_rules", offsetof(struct dae_routing, n_rules));
    P("routing.fallback", offsetof(struct dae_routing, fallback));
    P("routing.enabled", offsetof(struct dae_routing, enabled));
    P("routing.domain_gen", offsetof(struct dae_routing, domain_gen));
    P("routing.proto", offsetof(struct dae_routing, proto));
    P("routing.dscp", offsetof(struct dae_routing, dscp));
    P("routing.domain_mask", offsetof(struct dae_routing, domain_mask));
    P("routing.rules", offsetof(struct dae_routing, rules));
    P("lpm.bypass4", DAE_LPM_BYPASS4);
    P("lpm.bypass6", DAE_LPM_BYPASS6);
    P("lpm.dip4", DAE_LPM_DIP4);
    P("lpm.dip6", DAE_LPM_DIP6);
    P("lpm.sip4", DAE_LPM_SIP4);
    P("lpm.sip6", DAE_LPM_SIP6);
    P("lpm.dport", DAE_LPM_DPORT);
    P("lpm.sport", DAE_LPM_SPORT);
    P("lpm_key.size", sizeof(struct dae_lpm_key));
    P("lpm_key.kind", offsetof(struct dae_lpm_key, kind));
    P("lpm_key.addr", offsetof(struct dae_lpm_key, addr));
    P("mac_key.size", sizeof(struct dae_mac_key));
    P("mac_key.slot", offsetof(struct dae_mac_key, slot));
    P("domain_key.size", sizeof(struct dae_domain_key));
    P("domain.size", sizeof(struct dae_domain));
    P("domain.expires", offsetof(struct dae_domain, expires));
    P("domain.gen", offsetof(struct dae_domain, gen));
    P("flow_key.size", sizeof(struct dae_flow_key));
    P("flow_key.daddr", offsetof(struct dae_flow_key, daddr));
    P("flow_key.sport", offsetof(struct dae_flow_key, sport));
    P("flow_key.dport", offsetof(struct dae_flow_key, dport));
    P("flow_key.proto", offsetof(struct dae_flow_key, proto));
    P("flow_key.ipv6", offsetof(struct dae_flow_key, ipv6));
    P("flow.size", sizeof(struct dae_flow));
    P("flow.target", offsetof(struct dae_flow, target));
    P("flow.slot", offsetof(struct dae_flow, slot));
    P("flow.sniff", offsetof(struct dae_flow, sniff));
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
        ("settings.size", (size_of::<Settings>()) as u64),
        (
            "settings.listener_port",
            (offset_of!(Settings, listener_port)) as u64,
        ),
        (
            "settings.tproxy_mark",
            (offset_of!(Settings, tproxy_mark)) as u64,
        ),
        ("settings.so_mark", (offset_of!(Settings, so_mark)) as u64),
        (
            "settings.fail_closed",
            (offset_of!(Settings, fail_closed)) as u64,
        ),
        (
            "settings.routing_slot",
            (offset_of!(Settings, routing_slot)) as u64,
        ),
        ("counter.seen", (Counter::Seen as usize) as u64),
        ("counter.handed", (Counter::Handed as usize) as u64),
        ("counter.passed", (Counter::Passed as usize) as u64),
        ("counter.dropped", (Counter::Dropped as usize) as u64),
        (
            "counter.assign_failed",
            (Counter::AssignFailed as usize) as u64,
        ),
        ("counter.flow_direct", (Counter::FlowDirect as usize) as u64),
        ("counter.flow_proxy", (Counter::FlowProxy as usize) as u64),
        ("counter.flow_block", (Counter::FlowBlock as usize) as u64),
        ("counter.flow_bypass", (Counter::FlowBypass as usize) as u64),
        (
            "counter.flow_no_relay",
            (Counter::FlowNoRelay as usize) as u64,
        ),
        ("counter.flow_sniff", (Counter::FlowSniff as usize) as u64),
        ("counter.max", (COUNTER_MAX as usize) as u64),
        ("cond_words", (shared::COND_WORDS) as u64),
        ("max_conditions", (shared::MAX_CONDITIONS) as u64),
        ("max_rules", (shared::MAX_RULES) as u64),
        ("dscp_values", (shared::DSCP_VALUES) as u64),
        ("target.direct", (shared::TARGET_DIRECT as usize) as u64),
        ("target.block", (shared::TARGET_BLOCK as usize) as u64),
        ("target.group", (shared::TARGET_GROUP as usize) as u64),
        ("entries.lpm", (shared::LPM_ENTRIES as usize) as u64),
        ("entries.mac", (shared::MAC_ENTRIES as usize) as u64),
        ("entries.domain", (shared::DOMAIN_ENTRIES as usize) as u64),
        ("entries.flow", (shared::FLOW_ENTRIES as usize) as u64),
        ("bits.size", (size_of::<Bits>()) as u64),
        ("rule.size", (size_of::<Rule>()) as u64),
        ("rule.need", (offset_of!(Rule, need)) as u64),
        ("rule.deny", (offset_of!(Rule, deny)) as u64),
        ("rule.target", (offset_of!(Rule, target)) as u64),
        ("routing.size", (size_of::<Routing>()) as u64),
        ("routing.n_rules", (offset_of!(Routing, n_rules)) as u64),
        ("routing.fallback", (offset_of!(Routing, fallback)) as u64),
        ("routing.enabled", (offset_of!(Routing, enabled)) as u64),
        (
            "routing.domain_gen",
            (offset_of!(Routing, domain_gen)) as u64,
        ),
        ("routing.proto", (offset_of!(Routing, proto)) as u64),
        ("routing.dscp", (offset_of!(Routing, dscp)) as u64),
        (
            "routing.domain_mask",
            (offset_of!(Routing, domain_mask)) as u64,
        ),
        ("routing.rules", (offset_of!(Routing, rules)) as u64),
        ("lpm.bypass4", (LpmKind::Bypass4 as usize) as u64),
        ("lpm.bypass6", (LpmKind::Bypass6 as usize) as u64),
        ("lpm.dip4", (LpmKind::Dip4 as usize) as u64),
        ("lpm.dip6", (LpmKind::Dip6 as usize) as u64),
        ("lpm.sip4", (LpmKind::Sip4 as usize) as u64),
        ("lpm.sip6", (LpmKind::Sip6 as usize) as u64),
        ("lpm.dport", (LpmKind::Dport as usize) as u64),
        ("lpm.sport", (LpmKind::Sport as usize) as u64),
        ("lpm_key.size", (4 + size_of::<LpmData>()) as u64),
        ("lpm_key.kind", (4 + offset_of!(LpmData, kind)) as u64),
        ("lpm_key.addr", (4 + offset_of!(LpmData, addr)) as u64),
        ("mac_key.size", (size_of::<MacKey>()) as u64),
        ("mac_key.slot", (offset_of!(MacKey, slot)) as u64),
        ("domain_key.size", (size_of::<DomainKey>()) as u64),
        ("domain.size", (size_of::<Domain>()) as u64),
        ("domain.expires", (offset_of!(Domain, expires)) as u64),
        ("domain.gen", (offset_of!(Domain, gen)) as u64),
        ("flow_key.size", (size_of::<FlowKey>()) as u64),
        ("flow_key.daddr", (offset_of!(FlowKey, daddr)) as u64),
        ("flow_key.sport", (offset_of!(FlowKey, sport)) as u64),
        ("flow_key.dport", (offset_of!(FlowKey, dport)) as u64),
        ("flow_key.proto", (offset_of!(FlowKey, proto)) as u64),
        ("flow_key.ipv6", (offset_of!(FlowKey, ipv6)) as u64),
        ("flow.size", (size_of::<FlowVerdict>()) as u64),
        ("flow.target", (offset_of!(FlowVerdict, target)) as u64),
        ("flow.slot", (offset_of!(FlowVerdict, slot)) as u64),
        ("flow.sniff", (offset_of!(FlowVerdict, sniff)) as u64),
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
        (
            "routing_slot".to_string(),
            offset_of!(Settings, routing_slot),
        ),
    ];
    for order in ["bpfel", "bpfeb"] {
        let dump = btf_dump(&common::built_bpf_object(order));
        let (size, members) = btf_struct(&dump, "dae_settings");
        assert_eq!(size, size_of::<Settings>(), "{order}");
        assert_eq!(members, rust, "{order}");
        let (size, _) = btf_struct(&dump, "dae_routing");
        assert_eq!(size, size_of::<Routing>(), "{order}: dae_routing");
        let (size, members) = btf_struct(&dump, "dae_flow_key");
        assert_eq!(size, size_of::<FlowKey>(), "{order}: dae_flow_key");
        assert_eq!(
            members[2],
            ("sport".to_string(), offset_of!(FlowKey, sport))
        );
        for var in [
            shared::SETTINGS_MAP,
            shared::COUNTERS_MAP,
            shared::ROUTING_MAP,
            shared::LPM_MAP,
            shared::MAC_MAP,
            shared::DOMAINS_MAP,
            shared::FLOWS_MAP,
        ] {
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
    let routing = &obj.maps[shared::ROUTING_MAP];
    assert_eq!(routing.value_size() as usize, size_of::<Routing>());
    assert_eq!(routing.max_entries(), 2);
    let lpm = &obj.maps[shared::LPM_MAP];
    assert_eq!(lpm.key_size() as usize, 4 + size_of::<LpmData>());
    assert_eq!(lpm.value_size() as usize, size_of::<Bits>());
    assert_eq!(lpm.max_entries(), shared::LPM_ENTRIES);
    let mac = &obj.maps[shared::MAC_MAP];
    assert_eq!(mac.key_size() as usize, size_of::<MacKey>());
    assert_eq!(mac.max_entries(), shared::MAC_ENTRIES);
    let domains = &obj.maps[shared::DOMAINS_MAP];
    assert_eq!(domains.key_size() as usize, size_of::<DomainKey>());
    assert_eq!(domains.value_size() as usize, size_of::<Domain>());
    assert_eq!(domains.max_entries(), shared::DOMAIN_ENTRIES);
    let flows = &obj.maps[shared::FLOWS_MAP];
    assert_eq!(flows.key_size() as usize, size_of::<FlowKey>());
    assert_eq!(flows.value_size() as usize, size_of::<FlowVerdict>());
    assert_eq!(flows.max_entries(), shared::FLOW_ENTRIES);
}
