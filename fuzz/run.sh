#!/bin/sh
# Runs every fuzz target (or those named) for SECONDS each, one after the
# other, at the lowest CPU priority, and prints one line of figures per
# target (runs, wall and CPU seconds, coverage, features, corpus, crashes).
#
#   fuzz/run.sh [SECONDS] [TARGET...]      (default: 3600 s, all targets)
#
# New inputs go to $FUZZ_WORK/TARGET (default /tmp/dae-fuzz-work), not to
# the seed corpus; crashes to fuzz/artifacts/TARGET/. Needs cargo-fuzz;
# RUSTC_BOOTSTRAP=1 lets the stable toolchain build libFuzzer targets.
set -eu

cd "$(dirname "$0")"
seconds=${1:-3600}
[ $# -gt 0 ] && shift
targets=${*:-$(sed -n 's/^name = "\([a-z0-9_]*\)"$/\1/p' Cargo.toml | grep -v '^dae-fuzz$')}
work=${FUZZ_WORK:-/tmp/dae-fuzz-work}
export RUSTC_BOOTSTRAP=1

nice -n 19 cargo fuzz build -O -a
for t in $targets; do
    mkdir -p "$work/$t" "artifacts/$t"
    log="$work/$t.log"
    before=$(find "artifacts/$t" -type f | wc -l)
    # libFuzzer exits non-zero on a crash; the figures are still wanted.
    # CPU seconds (user + system, the fuzzer included) by GNU time.
    nice -n 19 /usr/bin/time -f '%U %S' -o "$work/$t.time" \
        cargo fuzz run -O -a "$t" "$work/$t" "corpus/$t" -- \
        -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 \
        -print_final_stats=1 >"$log" 2>&1 || true
    after=$(find "artifacts/$t" -type f | wc -l)
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -n 1)
    last=$(grep -E '^#[0-9]+' "$log" | tail -n 1)
    cov=$(echo "$last" | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
    ft=$(echo "$last" | sed -n 's/.*ft: \([0-9]*\).*/\1/p')
    corp=$(echo "$last" | sed -n 's/.*corp: \([0-9]*\).*/\1/p')
    cpu=$(awk '{printf "%d", $1 + $2}' "$work/$t.time" 2>/dev/null || true)
    echo "$t runs=${runs:-?} seconds=${secs:-?} cpu_seconds=${cpu:-?} cov=${cov:-?} ft=${ft:-?} corpus=${corp:-?} crashes=$((after - before))"
done
