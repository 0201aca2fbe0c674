#![no_main]
//! libFuzzer target: `dae::fuzzing::uci` (the harness, shared with
//! tests/fuzz_corpus.rs, is documented there).
libfuzzer_sys::fuzz_target!(|data: &[u8]| dae::fuzzing::uci(data));
