//! Replays the fuzzing seed corpus (`fuzz/corpus/TARGET/*`, the inputs the
//! fuzzers start from, and every input that once found a defect) through
//! the same harnesses the libFuzzer targets in `fuzz/` run
//! (`dae::fuzzing`), so a defect a fuzzer found stays fixed without a
//! fuzzer in CI. A harness panics on a defect; this test then fails and
//! names the file.

use std::path::{Path, PathBuf};

fn corpus_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Every target has seeds, and every corpus directory a target.
#[test]
fn every_target_has_a_corpus() {
    for (name, _) in dae::fuzzing::TARGETS {
        let dir = corpus_root().join(name);
        assert!(
            !files(&dir).is_empty(),
            "{}: no seed inputs for target '{name}'",
            dir.display()
        );
    }
    for entry in std::fs::read_dir(corpus_root()).expect("fuzz/corpus") {
        let name = entry.expect("an entry").file_name();
        let name = name.to_string_lossy();
        assert!(
            dae::fuzzing::TARGETS.iter().any(|(t, _)| *t == name),
            "fuzz/corpus/{name} belongs to no target in dae::fuzzing::TARGETS"
        );
    }
}

/// Each corpus file through its harness; all failures are reported.
#[test]
fn corpus_replays_without_a_defect() {
    // The harnesses' panics are the failures reported below.
    std::panic::set_hook(Box::new(|_| {}));
    let mut failures = Vec::new();
    let mut runs = 0;
    for (name, harness) in dae::fuzzing::TARGETS {
        for file in files(&corpus_root().join(name)) {
            let data = std::fs::read(&file).expect("a corpus file");
            runs += 1;
            if let Err(panic) = std::panic::catch_unwind(|| harness(&data)) {
                let why = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failures.push(format!("{}: {why}", file.display()));
            }
        }
    }
    let _ = std::panic::take_hook();
    assert!(
        failures.is_empty(),
        "{} of {runs} corpus inputs found a defect:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("{runs} corpus inputs replayed");
}
