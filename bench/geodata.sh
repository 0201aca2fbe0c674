#!/usr/bin/env bash
# The rule-set benchmark: a synthetic geosite.dat of about 10 MB (one
# category of 100,000 domains among 1,000 others, realistic label lengths)
# and a geoip.dat (one category of 10,000 networks among 1,000 others).
# Each measurement runs in a fresh process (examples/geodata_bench.rs):
#   geosite: `domain(geosite:big)` read through the config as the daemon
#            does: load time, RSS added, time per match;
#   inline:  the same 100,000 domains written in the rule (the hash sets of
#            routing::domain), the peer the ratios are taken against;
#   geoip:   `dip(geoip:big)`: load time, RSS, time per lookup, and the
#            LPM entries it becomes in the kernel.
# Targets (issue 19): RSS added <= 4 MB, load <= 1 s, match <= 0.5 us.
#
# Usage: bench/geodata.sh
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)

cargo build --quiet --profile bench-release --example geodata_bench --manifest-path "$repo/Cargo.toml"
bin="$repo/target/bench-release/examples/geodata_bench"
work=$(mktemp -d /tmp/dae-geodata-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT

"$bin" generate "$work"
geosite=$("$bin" geosite "$work")
inline=$("$bin" inline "$work")
geoip=$("$bin" geoip "$work")
echo "$geosite"
echo "$inline"
echo "$geoip"

field() { sed -n "s/.*$2=\([0-9.]*\).*/\1/p" <<<"$1"; }
python3 - "$(field "$geosite" load_ms)" "$(field "$geosite" rss_kib)" "$(field "$geosite" match_ns)" \
    "$(field "$inline" load_ms)" "$(field "$inline" rss_kib)" "$(field "$inline" match_ns)" <<'PY'
import sys
gl, gr, gm, il, ir, im = map(float, sys.argv[1:])
print(f"{'100,000 domains':<16} {'load ms':>9} {'RSS KiB':>9} {'ns/match':>9}")
print(f"{'geosite:big':<16} {gl:>9.1f} {gr:>9.0f} {gm:>9.0f}")
print(f"{'inline':<16} {il:>9.1f} {ir:>9.0f} {im:>9.0f}")
print(f"{'ratio':<16} {gl/il:>9.2f} {gr/max(ir,1):>9.2f} {gm/im:>9.2f}")
print(f"targets: RSS <= 4096 KiB: {'yes' if gr <= 4096 else 'NO'}; "
      f"load <= 1000 ms: {'yes' if gl <= 1000 else 'NO'}; "
      f"match <= 500 ns: {'yes' if gm <= 500 else 'NO'}")
PY
