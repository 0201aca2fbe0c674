//! The binary's code layout: `src/layout.ld`, which build.rs hands the
//! linker, gathers the code of features a config may not use in
//! `.text.optional`, so that a router that does not use them keeps that
//! code out of its memory (bench/README.md has the figures).
//!
//! Checked on the binary the tests run: the section is there; every
//! pattern of the script still matches functions (a renamed crate or
//! module would otherwise quietly stop moving); everything that matches
//! sits in the section; and no function of the serving path does, since
//! one call into the optional code maps a whole window of it.

#![cfg(target_os = "linux")]

use object::{Object, ObjectSection, ObjectSymbol, SymbolKind};

const SCRIPT: &str = include_str!("../src/layout.ld");

/// The section-name patterns of the script: every `.text.` word inside a
/// `*( ... )` input description.
fn patterns() -> Vec<&'static str> {
    let mut out = Vec::new();
    for line in SCRIPT.lines() {
        let Some(rest) = line.trim().strip_prefix("*(") else {
            continue;
        };
        let inner = rest.split(')').next().unwrap_or("");
        out.extend(inner.split_whitespace().filter(|w| w.starts_with(".text.")));
    }
    out
}

/// Glob match with `*` as the linker reads it (the script uses no other
/// wildcard): the first piece is a prefix, the last a suffix, and the ones
/// between appear in order, each as early as it can.
fn glob(pattern: &str, name: &str) -> bool {
    let pieces: Vec<&str> = pattern.split('*').collect();
    let [first, middle @ .., last] = pieces.as_slice() else {
        return pattern == name;
    };
    if name.len() < first.len() + last.len() || !name.starts_with(first) || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for piece in middle {
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    true
}

/// Whether every optional protocol is built in (the default features).
const ALL_FEATURES: bool = cfg!(all(feature = "doh", feature = "doq", feature = "doh3"));

/// Functions of the serving path: a cache hit, a miss to a plain
/// upstream, the listeners and the datapath.
const SERVING: &[&str] = &[
    "_ZN3dae10controller",
    "_ZN3dae8listener",
    "_ZN3dae9forwarder3udp",
    "_ZN3dae9forwarder8pipeline",
    "_ZN3dae4wire",
    "_ZN3dae6dialer6direct",
    "_ZN3dae6dialer8outbound",
    "_ZN3dae7routing",
];

#[test]
fn optional_features_code_is_gathered_apart_from_the_serving_path() {
    let bytes = std::fs::read(env!("CARGO_BIN_EXE_dae")).expect("read the dae binary");
    let file = object::File::parse(&*bytes).expect("parse the dae binary");
    let section = file
        .section_by_name(".text.optional")
        .expect("no .text.optional section: build.rs did not pass src/layout.ld to the linker");
    let optional = section.address()..section.address() + section.size();
    assert!(section.size() > 0, ".text.optional is empty");

    let functions: Vec<(&str, u64)> = file
        .symbols()
        .filter(|s| s.kind() == SymbolKind::Text && s.is_definition())
        .filter_map(|s| Some((s.name().ok()?, s.address())))
        .collect();
    let patterns = patterns();
    assert!(
        patterns.len() > 40,
        "read only {} patterns from src/layout.ld",
        patterns.len()
    );

    let mut problems = Vec::new();
    for pattern in &patterns {
        // Every pattern starts with ".text." and a function's section is
        // ".text." and its name.
        let pattern = &pattern[".text.".len()..];
        let matched: Vec<_> = functions
            .iter()
            .filter(|(name, _)| glob(pattern, name))
            .collect();
        // Without a protocol feature its crates are not built in, and
        // their patterns have nothing to match.
        if matched.is_empty() && ALL_FEATURES {
            problems.push(format!("{}: matches no function", pattern));
        }
        for (name, addr) in matched {
            if !optional.contains(addr) {
                problems.push(format!("{}: {name} is not in .text.optional", pattern));
            }
        }
    }
    for (name, addr) in &functions {
        if SERVING.iter().any(|p| name.starts_with(p)) && optional.contains(addr) {
            problems.push(format!("serving path: {name} is in .text.optional"));
        }
    }
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}
