#!/usr/bin/env bash
# dae's benchmark: dnsperf against dae, dnsmasq and dnsdist (with its packet
# cache) on this machine in one run, all forwarding to the same unbound, all
# with a 4096-entry cache; plus a bare UDP echo as the floor for cache hits.
#
# Method (see bench/README.md): every server under test is pinned to CPU 0,
# dnsperf and the upstream to CPU 1; servers are interleaved within each
# round; medians over the rounds are reported. Servers are ranked by their
# CPU time per answered query (utime+stime from /proc/PID/stat over the run,
# divided by the queries dnsperf completed), because on two cores dnsperf
# itself saturates near the servers' rate.
#
# Usage (as root on Debian 12): bench/run.sh
#   ROUNDS=3 DURATION=8 OUTSTANDING=200 bench/run.sh
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8}
OUTSTANDING=${OUTSTANDING:-200}
CACHE=4096

# shellcheck source=tests/deps.sh
. "$repo/tests/deps.sh"
# shellcheck source=bench/common.sh
. "$here/common.sh"
need_root
install_packages dnsperf dnsmasq dnsdist unbound gcc libc6-dev procps util-linux python3 bind9-dnsutils
ensure_rust

build_dae

work=$(mktemp -d /tmp/dae-bench.XXXXXX)
pids=()
trap stop_pids EXIT INT TERM
client=()
declare -A addr port pid
for s in dae dnsmasq dnsdist echo unbound; do addr[$s]=127.0.0.1; done

# --- the upstream: unbound with a zone of NAMES names, never asking out
next_port
up_port=$PORT
unbound_conf "$work/unbound.conf" 127.0.0.0/8 "127.0.0.1@$up_port"
taskset -c 1 unbound -d -c "$work/unbound.conf" > "$work/unbound.log" 2>&1 &
pids+=($!)
wait_answer 127.0.0.1 "$up_port" h1.bench.example

# --- the servers under test, each on CPU 0
next_port
port[dae]=$PORT
cat > "$work/dae.uci" <<EOF
config dae 'config'
	option log_level 'warn'
	option status_socket '$work/dae.sock'

config dns 'dns'
	list dns_listen '127.0.0.1:${port[dae]}'
	option cache_size '$CACHE'
	option request_fallback 'up'

config upstream 'up'
	option address 'udp://127.0.0.1:$up_port'
EOF
taskset -c 0 "$dae_bin" run -c "$work/dae.uci" > "$work/dae.log" 2>&1 &
pid[dae]=$!
pids+=("${pid[dae]}")

next_port
port[dnsmasq]=$PORT
taskset -c 0 dnsmasq -k --no-resolv --no-hosts --server="127.0.0.1#$up_port" \
  --cache-size="$CACHE" -p "${port[dnsmasq]}" --listen-address=127.0.0.1 \
  --bind-interfaces --user=root --dns-forward-max=1000 --pid-file= > "$work/dnsmasq.log" 2>&1 &
pid[dnsmasq]=$!
pids+=("${pid[dnsmasq]}")

next_port
port[dnsdist]=$PORT
cat > "$work/dnsdist.conf" <<EOF
setLocal("127.0.0.1:${port[dnsdist]}")
setSecurityPollSuffix("")
newServer({address="127.0.0.1:$up_port", checkName="h1.bench.example."})
pc = newPacketCache($CACHE)
getPool(""):setCache(pc)
EOF
taskset -c 0 dnsdist --supervised --disable-syslog -C "$work/dnsdist.conf" > "$work/dnsdist.log" 2>&1 &
pid[dnsdist]=$!
pids+=("${pid[dnsdist]}")

next_port
port[echo]=$PORT
gcc -O2 -o "$work/echo" "$here/echo.c"
taskset -c 0 "$work/echo" "${port[echo]}" &
pid[echo]=$!
pids+=("${pid[echo]}")

for s in dae dnsmasq dnsdist; do wait_answer 127.0.0.1 "${port[$s]}" h1.bench.example; done

# --- workloads
hit_names > "$work/hits.txt"
for s in dae dnsmasq dnsdist echo; do
  dnsperf -s 127.0.0.1 -p "${port[$s]}" -d "$work/hits.txt" -n 2 > /dev/null 2>&1 || true
done

results="$work/results.tsv"
: > "$results"

order=(dae dnsmasq dnsdist)
for r in $(seq 1 "$ROUNDS"); do
  echo "== round $r of $ROUNDS"
  # Rotate the order each round so no server always goes first.
  rot=$(( (r - 1) % 3 ))
  this=("${order[@]:$rot}" "${order[@]:0:$rot}")
  for s in "${this[@]}" echo; do run hits "$s" "$work/hits.txt"; done
  for s in "${this[@]}"; do
    # Names nobody asked before: every query is a cache miss.
    miss_names "r$r$s" > "$work/miss.txt"
    run misses "$s" "$work/miss.txt"
  done
done
rm -f "$work/miss.txt"

# What reaches the upstream: source ports and letter case per 1,000 misses.
echo "== spoofing resistance"
for s in dae dnsmasq dnsdist; do
  miss_names "spoof$s" 1000 > "$work/spoof-names.txt"
  spoofing "$s" "$up_port" "$work/spoof-names.txt"
done

for s in dae dnsmasq dnsdist echo; do
  printf 'rss\t%s\t%s\n' "$s" "$(awk '/VmHWM/ {print $2}' "/proc/${pid[$s]}/status")" >> "$results"
  memory_lines "$s" "${pid[$s]}" >> "$results"
done
printf 'size\tdae\t%s\n' "$(stat -c %s "$dae_bin")" >> "$results"
next_port
startup=$(python3 "$here/startup.py" "$dae_bin" "$work" "$up_port" "$PORT")
printf 'startup\tdae\t%s\n' "$startup" >> "$results"

mkdir -p "$here/out"
report="$here/out/report-$(date -u +%Y%m%d-%H%M%S).txt"
python3 "$here/report.py" "$results" "$ROUNDS" "$DURATION" "$OUTSTANDING" | tee "$report"
echo "(saved to $report)"
