# shellcheck shell=bash
# Parts shared by bench/run.sh (loopback) and bench/lab.sh (namespace lab).
#
# The caller sets:
#   work          a scratch directory
#   DURATION, OUTSTANDING
#   client=(...)  the command prefix that runs a client (empty on loopback,
#                 `ip netns exec NS` in the lab); dig and dnsperf run under it
#   addr[SERVER], port[SERVER], pid[SERVER]   (associative arrays)
#   results       the result file run() appends to
#   repo, pids    the repository, the processes stop_pids ends
# (so shellcheck, reading this file alone, cannot see them assigned)
# shellcheck disable=SC2034,SC2154

# build_dae: builds dae as shipped (release) and sets $dae_bin; with
# DAE_BIN set, runs that binary instead (to compare two builds).
build_dae() {
  if [ -n "${DAE_BIN:-}" ]; then
    dae_bin=$DAE_BIN
    echo "== dae: $dae_bin"
    return
  fi
  echo "== building dae (release, as shipped)"
  (cd "$repo" && cargo build --release --locked -q)
  dae_bin="$repo/target/release/dae"
}

# memory_lines NAME PID: report.py's lines on what process PID (server
# NAME) has resident: anon (heap, stacks) against mapped files, and for dae
# each code section (src/layout.ld keeps the code of features the config
# does not use in .text.optional).
memory_lines() {
  printf 'split\t%s\t%s\n' "$1" "$(awk '/RssAnon|RssFile/ {printf "%s ", $2}' "/proc/$2/status")"
  [ "$1" = dae ] || return 0
  python3 "$repo/bench/code_resident.py" "$2" | while read -r section kib size; do
    printf 'code\tdae\t%s %s %s\n' "$section" "$kib" "$size"
  done
}

# stop_pids: ends every process in $pids (SIGTERM, then SIGKILL) and
# removes $work; the exit trap of run.sh and encrypted.sh.
stop_pids() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.3
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$work"
}

# Names of the bench zone: h1 ... hNAMES.bench.example.
NAMES=${NAMES:-1000}

# next_port: sets $PORT to a loopback port nothing listens on (UDP or TCP)
# and that no earlier call handed out.
port_n=20000
next_port() {
  while :; do
    port_n=$((port_n + 1))
    if ! ss -Hlnu "sport = :$port_n" | grep -q . && ! ss -Hlnt "sport = :$port_n" | grep -q .; then
      PORT=$port_n
      return
    fi
  done
}

# wait_answer ADDR PORT NAME: waits up to 10 s for an answer.
wait_answer() {
  local i
  for i in $(seq 1 100); do
    if "${client[@]}" dig +tries=1 +time=1 +short -p "$2" "@$1" "$3" A 2>/dev/null | grep -q .; then
      return 0
    fi
    sleep 0.1
  done
  echo "no answer from $1 port $2" >&2
  return 1
}

# unbound_conf FILE ACCESS_CIDR INTERFACE...: the upstream's config, a zone
# of NAMES names with a long TTL and NXDOMAIN for the rest; it never asks out.
unbound_conf() {
  local file=$1 access=$2 i
  shift 2
  {
    echo "server:"
    for i in "$@"; do echo "  interface: $i"; done
    cat <<EOF
  do-daemonize: no
  use-syslog: no
  logfile: ""
  verbosity: 0
  chroot: ""
  username: ""
  directory: "$work"
  pidfile: ""
  access-control: $access allow
  module-config: "iterator"
  num-threads: 1
  num-queries-per-thread: 4096
  local-zone: "." static
  local-zone: "bench.example." static
  local-data: "bench.example. 3600 IN SOA ns.bench.example. admin.bench.example. 1 3600 600 86400 3600"
EOF
    for i in $(seq 1 "$NAMES"); do
      echo "  local-data: \"h$i.bench.example. 3600 IN A 192.0.2.$((i % 250 + 1))\""
    done
  } > "$file"
}

# hit_names: the 100 names of the cache-hit workload.
hit_names() {
  local i
  for i in $(seq 1 100); do echo "h$i.bench.example A"; done
}

# miss_names TAG [COUNT]: names nobody asked before (unique per TAG).
miss_names() {
  awk -v p="$1" -v n="${2:-2500000}" 'BEGIN { for (i = 1; i <= n; i++) printf "m%d.%s.bench.example A\n", i, p }'
}

# run WORKLOAD SERVER QUERYFILE: one dnsperf run against SERVER, one result
# line: workload, server, qps, CPU us per completed query (the server
# process's utime+stime over the run), lost, average latency, deviation,
# and the 50th, 99th and 99.9th percentile latency in us (dnsperf -v
# prints every answer's latency; `percentiles` reads them).
run() {
  local workload=$1 server=$2 file=$3 p=${pid[$2]} u0 s0 u1 s1 ticks pct
  ticks=$(getconf CLK_TCK)
  read -r u0 s0 < <(awk '{print $14, $15}' "/proc/$p/stat")
  "${client[@]}" taskset -c 1 dnsperf -s "${addr[$server]}" -p "${port[$server]}" -d "$file" \
    -l "$DURATION" -c 4 -q "$OUTSTANDING" -v > "$work/out.txt" 2>&1 || true
  read -r u1 s1 < <(awk '{print $14, $15}' "/proc/$p/stat")
  pct=$(percentiles "$work/out.txt")
  awk -v w="$workload" -v s="$server" -v cpu=$(((u1 - u0) + (s1 - s0))) -v tck="$ticks" -v pct="$pct" '
    /Queries completed:/ { done = $3 }
    /Queries lost:/ { lost = $3 }
    /Queries per second:/ { qps = $4 }
    /Average Latency/ { lat = $4 }
    /Latency StdDev/ { sd = $4 }
    END { printf "%s\t%s\t%.0f\t%.3f\t%.0f\t%.1f\t%.1f\t%s\n", w, s, qps, (done > 0 ? cpu / tck / done * 1e6 : 0), lost, lat * 1e6, sd * 1e6, pct }' \
    "$work/out.txt" >> "$results"
  rm -f "$work/out.txt"
  tail -n 1 "$results" | awk -F'\t' '{printf "  %-6s %-8s %8s qps  %7s us CPU/query  lost %s  p50/p99/p99.9 %s/%s/%s us\n", $1, $2, $3, $4, $5, $8, $9, $10}'
}

# percentiles FILE: the 50th, 99th and 99.9th percentile (tab-separated, in
# us) of the latencies in dnsperf -v output FILE (lines "> RCODE NAME TYPE
# SECONDS"; lost queries have no line).
percentiles() {
  awk '/^> / { print $NF * 1e6 }' "$1" | sort -n | awk '
    { v[NR] = $1 }
    END {
      if (NR == 0) { printf "0\t0\t0"; exit }
      printf "%.0f\t%.0f\t%.0f", v[int(NR * 0.50) + 1], v[int(NR * 0.99) + 1], v[int(NR * 0.999) + 1]
    }'
}

# spoofing SERVER UPSTREAM_PORT NAMES: sends the NAMES file's names (cache
# misses, all lower case) through SERVER at a moderate pace while
# spoofing.py watches what reaches the upstream's port on lo; one result
# line: spoofing, server, queries seen, distinct source ports and names in
# random letter case, per 1,000 queries.
spoofing() {
  local server=$1 up=$2 file=$3 cap
  rm -f "$work/spoof.ready"
  python3 "$repo/bench/spoofing.py" "$up" "$work/spoof.ready" > "$work/spoof.txt" &
  cap=$!
  # Watching before the first query leaves (python starts slowly on a busy machine).
  for _ in $(seq 1 100); do [ -e "$work/spoof.ready" ] && break; sleep 0.1; done
  "${client[@]}" taskset -c 1 dnsperf -s "${addr[$server]}" -p "${port[$server]}" -d "$file" \
    -n 1 -c 1 -q 50 > /dev/null 2>&1 || true
  sleep 0.5
  kill -INT "$cap" 2>/dev/null || true
  wait "$cap" || true
  printf 'spoofing\t%s\t%s\n' "$server" "$(cat "$work/spoof.txt")" >> "$results"
  tail -n 1 "$results" | awk -F'\t' '{printf "  spoofing %-8s %s queries seen: %s distinct source ports, %s names in random case, per 1,000\n", $2, $3, $4, $5}'
}

# measure ROW SERVER FILE: one dnsperf run (plain UDP) against SERVER with
# per-query latencies; one result line: row, server, qps, CPU us per
# completed query, p50 ms, p99 ms, lost.
measure() {
  local row=$1 server=$2 file=$3 p=${pid[$2]} u0 s0 u1 s1 ticks
  ticks=$(getconf CLK_TCK)
  read -r u0 s0 < <(awk '{print $14, $15}' "/proc/$p/stat")
  "${client[@]}" taskset -c 1 dnsperf -s "${addr[$server]}" -p "${port[$server]}" -d "$file" \
    -l "$DURATION" -c 4 -q "$OUTSTANDING" -v > "$work/out.txt" 2>&1 || true
  read -r u1 s1 < <(awk '{print $14, $15}' "/proc/$p/stat")
  local lat="$work/lat.txt"
  awk '/^> / { print $NF * 1000 }' "$work/out.txt" | sort -n > "$lat"
  local n p50 p99
  n=$(wc -l < "$lat")
  p50=$(awk -v n="$n" 'NR == int(n * 0.50) + 1 { print; exit }' "$lat")
  p99=$(awk -v n="$n" 'NR == int(n * 0.99) + 1 { print; exit }' "$lat")
  awk -v sc="$row" -v s="$server" -v cpu=$(((u1 - u0) + (s1 - s0))) -v tck="$ticks" \
    -v p50="${p50:-0}" -v p99="${p99:-0}" '
    /Queries completed:/ { done = $3 }
    /Queries lost:/ { lost = $3 }
    /Queries per second:/ { qps = $4 }
    END { printf "%s\t%s\t%.0f\t%.3f\t%.3f\t%.3f\t%.0f\n", sc, s, qps, (done > 0 ? cpu / tck / done * 1e6 : 0), p50, p99, lost }' \
    "$work/out.txt" >> "$results"
  tail -n 1 "$results" | awk -F'\t' '{printf "  %-8s %-8s %7s qps  %7s us CPU/query  p50 %s ms  p99 %s ms  lost %s\n", $1, $2, $3, $4, $5, $6, $7}'
}
