#!/usr/bin/env bash
# dae's benchmark for the transparent proxy (LAN TCP), in the namespace lab
# (tests/lab.sh): iperf3 on the LAN client, through the router, to an
# iperf3 server in the upstream namespace. The router masquerades what
# leaves by wan0, as OpenWrt does. Rows:
#
#   (a) forward     no proxy: the router's kernel forwards;
#   (b) dae-direct  dae runs, `dport(5201) -> direct`: the TC program
#                   decides in the kernel, no byte reaches dae;
#   (c) dae         `fallback 'proxy'`: dae relays through a Shadowsocks
#                   node (ss-server, aes-256-gcm, in the upstream namespace);
#       ss-redir    shadowsocks-libev's ss-redir on the router (nftables
#                   REDIRECT of the client's TCP to it), to the same node;
#       v2ray       v2ray's dokodemo-door in tproxy mode (nftables TPROXY and
#                   policy routing as v2ray's docs describe) with a
#                   shadowsocks outbound to the same node.
#
# Each row runs iperf3 -J for DURATION seconds: one stream up, four streams
# up, one stream down (-R). The router-side proxy (dae, ss-redir, v2ray) is
# pinned to CPU 0; iperf3 (both ends), the node and the idle server to
# CPU 1. The ranking figure for (c) is the proxy process's CPU time
# (utime + stime from /proc/PID/stat, all threads) per GB (10^9 bytes)
# iperf3 moved. For (a) and (b) the work is the kernel's softirq time,
# charged to whichever task runs: no process owns it, so only throughput
# is reported for them.
#
# Memory: before the throughput runs, each proxy gets IDLE (1,000)
# connections from the client to a server in the upstream namespace that
# answers one line and then keeps them open and quiet
# (bench/idle_conns.py); per connection = (VmRSS with them - VmRSS before)
# / IDLE, after a warm-up of 20 connections.
#
# Setups are interleaved and their order rotates from round to round;
# medians over the rounds. Every row is checked to have gone the way it
# should (the node's CPU time moved for (c) and not for (a)/(b); dae's
# relay counters moved for (c) and not for (b)).
#
# MODE=udp measures LAN UDP instead (issue 18): iperf3 -u at a fixed rate
# (RATE, datagrams of 1,200 bytes, as QUIC sends) one stream up and one
# down; the node is ss-server -u; ss-redir -u and v2ray get the client's
# UDP by nftables TPROXY. Figures: loss, the proxy's CPU time per GB
# received, and memory with ENDPOINTS live UDP endpoints (one datagram
# from each of ENDPOINTS client ports, bench/udp_endpoints.py) instead of
# the idle TCP connections. dae's health check asks a dnsmasq on CHECK.
#
# Usage (as root on Debian 12): bench/proxy.sh   (ROUNDS=2 DURATION=10 IDLE=1000)
#        MODE=udp bench/proxy.sh               (RATE=200M ENDPOINTS=4000)
# PERF=1 also records each proxy's profile during its runs (perf record -g)
# into bench/out/perf-ROW-STREAMS-DIR.data; STRACE=1 counts their system
# calls instead (strace -c; slows them, so their figures are not for ranking).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
ROUNDS=${ROUNDS:-2}
DURATION=${DURATION:-10}
IDLE=${IDLE:-1000}
MODE=${MODE:-tcp}
RATE=${RATE:-200M}
# Below dae's bound (relay::udp::MAX_ENDPOINTS, 4,096), so none is evicted.
ENDPOINTS=${ENDPOINTS:-4000}
case "$MODE" in
  tcp) ss_udp=() ;;
  udp) ss_udp=(-u) IDLE=$ENDPOINTS ;;
  *) echo "MODE is tcp or udp" >&2; exit 1 ;;
esac

# The lab's addresses (documentation ranges only), in the upstream namespace.
NODE=203.0.113.80   # ss-server
SERVER=203.0.113.90 # iperf3 (5201: dae routes it direct; 5202: proxied), idle server (7000)
CHECK=203.0.113.91  # what dae's health check asks (busybox httpd)
METHOD=aes-256-gcm
SECRET=bench-secret
SS_PORT=8388
DAE_PORT=12345
REDIR_PORT=12346
V2RAY_PORT=12347

# shellcheck source=tests/deps.sh
. "$repo/tests/deps.sh"
# shellcheck source=bench/common.sh
. "$here/common.sh"
need_root
install_packages "${DAE_TEST_PACKAGES[@]}" iperf3 util-linux python3 dnsmasq
ensure_rust

build_dae
"$repo/ebpf/build.sh" > /dev/null

# A thousand relayed connections are two thousand descriptors per proxy.
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((2 * IDLE + 100)) ]; then
  echo "open files are limited to $(ulimit -n): too few for $IDLE relayed connections" >&2
  exit 1
fi

prefix="pb$$"
work=$(mktemp -d /tmp/dae-benchproxy.XXXXXX)
# The kernel's run time of BPF programs (what dae's TC program costs in
# (b)): counted only while kernel.bpf_stats_enabled is on; put back after.
bpf_stats_was=$(sysctl -n kernel.bpf_stats_enabled 2>/dev/null || echo '')
cleanup() {
  # Every process this script started lives in one of the lab's
  # namespaces; tests/lab.sh down kills them with it.
  "$repo/tests/lab.sh" down "$prefix"
  [ -z "$bpf_stats_was" ] || sysctl -qw kernel.bpf_stats_enabled="$bpf_stats_was" || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
"$repo/tests/lab.sh" up "$prefix"
[ -z "$bpf_stats_was" ] || sysctl -qw kernel.bpf_stats_enabled=1 || true
router="$prefix-router"
in_router=(ip netns exec "$router")
in_client=(ip netns exec "$prefix-client")
in_up=(ip netns exec "$prefix-up")

# wait_listen NS PORT: waits up to 10 s for a TCP listener on PORT.
wait_listen() {
  local i
  for i in $(seq 1 100); do
    if ip netns exec "$1" ss -Hltn "sport = :$2" | grep -q .; then return 0; fi
    sleep 0.1
  done
  echo "nothing listens on port $2 in $1" >&2
  return 1
}

# cpu_ticks PID: the process's utime + stime, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

# OpenWrt's bridges do not hand bridged frames to the IP hooks
# (br_netfilter is not loaded); where it is, as on this host, TPROXY breaks:
# the socket it assigns in the bridge's pass is dropped when the packet
# reaches IP (v2ray's connections were reset). The router does as OpenWrt.
ip netns exec "$router" sysctl -qw net.bridge.bridge-nf-call-iptables=0 net.bridge.bridge-nf-call-ip6tables=0 2>/dev/null || true

# --- the upstream namespace: node, servers, and masquerading on the router
for a in "$NODE" "$SERVER" "$CHECK"; do ip -n "$prefix-up" addr add "$a/32" dev lo; done
"${in_router[@]}" nft -f - <<'EOF'
table ip benchnat {
  chain post {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "wan0" masquerade
  }
}
EOF
for p in 5201 5202; do
  "${in_up[@]}" taskset -c 1 iperf3 -s -B "$SERVER" -p "$p" > "$work/iperf3-$p.log" 2>&1 &
done
"${in_up[@]}" taskset -c 1 python3 "$here/idle_conns.py" serve "$SERVER" 7000 > "$work/idle-server.log" 2>&1 &
"${in_up[@]}" taskset -c 1 python3 "$here/udp_endpoints.py" sink "$SERVER" 7001 > "$work/udp-sink.log" 2>&1 &
"${in_up[@]}" taskset -c 1 ss-server -s "$NODE" -p "$SS_PORT" -k "$SECRET" -m "$METHOD" "${ss_udp[@]}" > "$work/ss-server.log" 2>&1 &
node_pid=$!
mkdir -p "$work/www"
echo ok > "$work/www/check"
"${in_up[@]}" taskset -c 1 busybox httpd -f -p "$CHECK:80" -h "$work/www" &
# What dae's UDP health check asks through the node.
"${in_up[@]}" taskset -c 1 dnsmasq -k -C /dev/null --no-resolv --no-hosts --bind-interfaces \
  --listen-address="$CHECK" --port=53 --address=/#/198.51.100.9 --pid-file= > "$work/dnsmasq.log" 2>&1 &
for p in 5201 5202 7000 "$SS_PORT" 80; do wait_listen "$prefix-up" "$p"; done

# --- the proxies on the router
ss_b64=$(printf '%s' "$METHOD:$SECRET" | base64 -w0)
cat > "$work/dae.uci" <<EOF
config dae 'config'
	option log_level 'warn'
	list lan_interface 'br-lan'
	option tproxy_port '$DAE_PORT'
	option bpf_object '$repo/ebpf/build/dae_tc.bpfel.o'
	option status_socket '$work/dae.sock'
	option check_interval '600'
	option tcp_check_url 'http://$CHECK/check'
	option udp_check_dns '$CHECK:53'

config dns 'dns'
	option request_fallback 'up'

config upstream 'up'
	option address 'udp://$CHECK:53'

config node 'ss1'
	option link 'ss://$ss_b64@$NODE:$SS_PORT'

config group 'proxy'
	list node 'ss1'
	option policy 'fixed(0)'

config routing 'routing'
	list rule 'dport(5201) -> direct'
	option fallback 'proxy'
EOF
cat > "$work/v2ray.json" <<EOF
{
  "log": {"loglevel": "warning"},
  "inbounds": [{
    "listen": "0.0.0.0",
    "port": $V2RAY_PORT,
    "protocol": "dokodemo-door",
    "settings": {"network": "tcp,udp", "followRedirect": true},
    "streamSettings": {"sockopt": {"tproxy": "tproxy"}}
  }],
  "outbounds": [{
    "protocol": "shadowsocks",
    "settings": {"servers": [{"address": "$NODE", "port": $SS_PORT, "method": "$METHOD", "password": "$SECRET"}]}
  }]
}
EOF

dae_status() {
  "$dae_bin" status --json -s "$work/dae.sock" 2>/dev/null || echo '{}'
}
# relayed WAY: how many connections (UDP: endpoints) dae relayed by WAY
# (a node, or direct).
relayed() {
  dae_status | python3 -c 'import json, sys
relay = json.load(sys.stdin).get("relay", {})
ways = relay.get("udp", {}).get("ways", {}) if sys.argv[2] == "udp" else relay.get("tcp", {})
print(ways.get(sys.argv[1], {}).get("total", 0))' "$1" "$MODE"
}
dae_node_alive() {
  dae_status | python3 -c 'import json, sys
try:
    alive = json.load(sys.stdin)["groups"][0]["nodes"][0][sys.argv[1] + "4"]["alive"]
except (KeyError, IndexError, ValueError):
    alive = False
sys.exit(0 if alive is True else 1)' "$MODE"
}

# prog_stats: the run time (ns) and runs, summed, of the BPF programs on
# the router's br-lan (dae's), from the kernel's BPF statistics.
prog_stats() {
  ip netns exec "$router" bpftool net show dev br-lan -j 2>/dev/null | python3 -c '
import json, subprocess, sys
ids = set()
def walk(v):
    if isinstance(v, dict):
        if "id" in v:
            ids.add(v["id"])
        for x in v.values():
            walk(x)
    elif isinstance(v, list):
        for x in v:
            walk(x)
walk(json.load(sys.stdin))
ns = runs = 0
for i in ids:
    p = json.loads(subprocess.run(["bpftool", "prog", "show", "id", str(i), "-j"], capture_output=True).stdout or b"{}")
    ns += p.get("run_time_ns", 0)
    runs += p.get("run_cnt", 0)
print(ns, runs)'
}

proxy_pid=''
# start_setup NAME: starts the router side of a setup (none, dae, ss-redir,
# v2ray) and sets $proxy_pid (empty for none).
start_setup() {
  case "$1" in
    none) proxy_pid='' ;;
    dae)
      "${in_router[@]}" taskset -c 0 "$dae_bin" run -c "$work/dae.uci" >> "$work/dae.log" 2>&1 &
      proxy_pid=$!
      local i
      for i in $(seq 1 150); do
        if dae_node_alive; then break; fi
        kill -0 "$proxy_pid" 2>/dev/null || { cat "$work/dae.log" >&2; return 1; }
        sleep 0.1
      done
      dae_node_alive || { echo "dae's node never came alive" >&2; cat "$work/dae.log" >&2; return 1; }
      ;;
    ss-redir)
      "${in_router[@]}" taskset -c 0 ss-redir -s "$NODE" -p "$SS_PORT" -b 0.0.0.0 -l "$REDIR_PORT" \
        -k "$SECRET" -m "$METHOD" "${ss_udp[@]}" >> "$work/ss-redir.log" 2>&1 &
      proxy_pid=$!
      wait_listen "$router" "$REDIR_PORT"
      if [ "$MODE" = udp ]; then tproxy_on udp "$REDIR_PORT"; fi
      "${in_router[@]}" nft -f - <<EOF
table ip benchredir {
  chain pre {
    type nat hook prerouting priority dstnat; policy accept;
    iifname "br-lan" ip daddr 203.0.113.0/24 meta l4proto tcp redirect to :$REDIR_PORT
  }
}
EOF
      ;;
    v2ray)
      "${in_router[@]}" taskset -c 0 v2ray -config "$work/v2ray.json" >> "$work/v2ray.log" 2>&1 &
      proxy_pid=$!
      wait_listen "$router" "$V2RAY_PORT"
      tproxy_on "$MODE" "$V2RAY_PORT"
      ;;
  esac
}

# tproxy_on PROTO PORT: the client's PROTO (tcp, udp) to the upstream goes
# to the router's transparent socket on PORT (nftables TPROXY and policy
# routing, as OpenWrt's setups and v2ray's docs do); tproxy_off undoes it.
tproxy_on() {
  ip -n "$router" rule add fwmark 1 table 100
  ip -n "$router" route add local 0.0.0.0/0 dev lo table 100
  "${in_router[@]}" nft -f - <<EOF
table ip benchtproxy {
  chain pre {
    type filter hook prerouting priority mangle; policy accept;
    iifname "br-lan" ip daddr 203.0.113.0/24 meta l4proto $1 meta mark set 1 tproxy to 127.0.0.1:$2 accept
  }
}
EOF
}
tproxy_off() {
  "${in_router[@]}" nft delete table ip benchtproxy
  ip -n "$router" route del local 0.0.0.0/0 dev lo table 100
  ip -n "$router" rule del fwmark 1 table 100
}

stop_setup() {
  case "$1" in
    ss-redir)
      "${in_router[@]}" nft delete table ip benchredir
      if [ "$MODE" = udp ]; then tproxy_off; fi
      ;;
    v2ray) tproxy_off ;;
  esac
  if [ -n "$proxy_pid" ]; then
    kill "$proxy_pid"
    wait "$proxy_pid" 2>/dev/null || true
  fi
  proxy_pid=''
}

# open_idle ROW N: opens N idle connections from the client through the
# proxy of ROW; $opener is the process that holds them.
opener=''
open_idle() {
  local i
  if [ "$MODE" = udp ]; then
    "${in_client[@]}" taskset -c 1 python3 "$here/udp_endpoints.py" open "$SERVER" 7001 "$2" > "$work/idle.out" 2>&1 &
  else
    "${in_client[@]}" taskset -c 1 python3 "$here/idle_conns.py" open "$SERVER" 7000 "$2" > "$work/idle.out" 2>&1 &
  fi
  opener=$!
  for i in $(seq 1 600); do
    if grep -q '^open' "$work/idle.out"; then return 0; fi
    kill -0 "$opener" 2>/dev/null || break
    sleep 0.1
  done
  echo "the idle connections did not open through $1:" >&2
  cat "$work/idle.out" >&2
  return 1
}
close_idle() {
  kill "$opener"
  wait "$opener" 2>/dev/null || true
  sleep 1
}

# idle_rss ROW: VmRSS of the proxy before and with IDLE idle connections
# through it; one result line: idle ROW RSS_BEFORE RSS_WITH N.
idle_rss() {
  local row=$1 before with
  open_idle "$row" 20 # warm-up: the code and the allocator's first pages
  close_idle
  before=$(rss_kib "$proxy_pid")
  open_idle "$row" "$IDLE"
  sleep 2
  with=$(rss_kib "$proxy_pid")
  printf 'idle\t%s\t%s\t%s\t%s\n' "$row" "$before" "$with" "$IDLE" >> "$results"
  close_idle
  awk -v b="$before" -v w="$with" -v n="$IDLE" -v r="$row" \
    'BEGIN { printf "  %-10s idle RSS %6d KiB, with %d connections %6d KiB: %.2f KiB each\n", r, b, n, w, (w - b) / n }'
}

# throughput ROW PORT: the iperf3 runs of one row; one result line per run:
# tput ROW STREAMS DIR BITS_PER_S BYTES PROXY_TICKS NODE_TICKS PROG_NS PROG_RUNS.
throughput() {
  local row=$1 port=$2 spec streams dir args p0 p1 n0 n1 out b0 b1 r0 r1
  local specs=("1 up" "4 up" "1 down")
  [ "$MODE" = udp ] && specs=("1 up" "1 down")
  for spec in "${specs[@]}"; do
    read -r streams dir <<< "$spec"
    args=(-c "$SERVER" -p "$port" -t "$DURATION" -P "$streams" -J)
    [ "$MODE" = udp ] && args+=(-u -b "$RATE" -l 1200)
    [ "$dir" = down ] && args+=(-R)
    p0=0 p1=0
    [ -n "$proxy_pid" ] && p0=$(cpu_ticks "$proxy_pid")
    n0=$(cpu_ticks "$node_pid")
    read -r b0 r0 < <(prog_stats)
    out="$work/iperf3-$row-$streams-$dir.json"
    local perf=''
    if [ -n "${PERF:-}" ] && [ -n "$proxy_pid" ]; then
      mkdir -p "$here/out"
      perf record -q -g -p "$proxy_pid" -o "$here/out/perf-$row-$streams-$dir.data" > /dev/null 2>&1 &
      perf=$!
    elif [ -n "${STRACE:-}" ] && [ -n "$proxy_pid" ]; then
      mkdir -p "$here/out"
      strace -c -f -p "$proxy_pid" -o "$here/out/strace-$row-$streams-$dir.txt" > /dev/null 2>&1 &
      perf=$!
    fi
    "${in_client[@]}" taskset -c 1 iperf3 "${args[@]}" > "$out"
    if [ -n "$perf" ]; then
      kill -INT "$perf"
      wait "$perf" || true
    fi
    [ -n "$proxy_pid" ] && p1=$(cpu_ticks "$proxy_pid")
    n1=$(cpu_ticks "$node_pid")
    read -r b1 r1 < <(prog_stats)
    python3 - "$out" "$row" "$streams" "$dir" $((p1 - p0)) $((n1 - n0)) $((b1 - b0)) $((r1 - r0)) >> "$results" <<'EOF'
import json, sys
path, row, streams, way, proxy, node, prog_ns, prog_runs = sys.argv[1:]
doc = json.load(open(path))
if "error" in doc:
    sys.exit(f"iperf3 ({row}, {streams} {way}): {doc['error']}")
got = doc["end"]["sum_received"]
bps, received = got["bits_per_second"], got["bytes"]
# UDP: the share of the datagrams the receiver lost.
loss = doc["end"].get("sum", {}).get("lost_percent", 0.0) if doc["start"]["test_start"]["protocol"] == "UDP" else 0.0
print(f"tput\t{row}\t{streams}\t{way}\t{bps:.0f}\t{received}\t{proxy}\t{node}\t{prog_ns}\t{prog_runs}\t{loss:.2f}")
EOF
    tail -n 1 "$results" | awk -F'\t' -v tck="$ticks" '{
      printf "  %-10s %s stream(s) %-4s %6.2f Gbit/s", $2, $3, $4, $5 / 1e9
      if ($11 > 0) printf "  loss %.2f%%", $11
      if ($2 != "forward" && $2 != "dae-direct") printf "  proxy %.2f CPU s/GB", $7 / tck / ($6 / 1e9)
      printf "  node %.2f CPU s", $8 / tck
      if ($10 > 0) printf "  TC program %.0f ns x %d", $9 / $10, $10
      printf "\n" }'
    # Each row went the way it should: through the node or not at all.
    local node_s
    node_s=$(tail -n 1 "$results" | cut -f 8)
    case "$row" in
      forward | dae-direct)
        [ "$node_s" -le 2 ] || { echo "$row: the node worked ($node_s ticks): the flow was proxied" >&2; return 1; } ;;
      *) [ "$node_s" -gt 0 ] || { echo "$row: the node never worked: the flow was not proxied" >&2; return 1; } ;;
    esac
  done
}

ticks=$(getconf CLK_TCK)
results="$work/results.tsv"
: > "$results"
order=(none dae ss-redir v2ray)
uptime | sed 's/^/load before: /'
for r in $(seq 1 "$ROUNDS"); do
  echo "== round $r of $ROUNDS"
  rot=$(((r - 1) % ${#order[@]}))
  this=("${order[@]:$rot}" "${order[@]:0:$rot}")
  for s in "${this[@]}"; do
    start_setup "$s"
    case "$s" in
      none) throughput forward 5201 ;;
      dae)
        # (b) first, measured as (a) is: not in the wake of the idle
        # connections' teardown (a thousand closes through dae and the
        # node, the node on the CPU iperf3 uses).
        node_before=$(relayed ss1)
        throughput dae-direct 5201
        if [ "$(relayed direct)" != 0 ] || [ "$(relayed ss1)" != "$node_before" ]; then
          echo "dae-direct: dae relayed the direct flow" >&2
          exit 1
        fi
        idle_rss dae
        throughput dae 5202
        [ "$(relayed ss1)" -gt "$node_before" ] || { echo "dae: nothing relayed by the node" >&2; exit 1; }
        if [ "$MODE" = udp ]; then
          # Where a lost datagram went: dae's own drops (a node's queue
          # full), and the router's UDP receive-buffer overflows.
          dae_status | python3 -c 'import json, sys
print("  dae dropped", json.load(sys.stdin)["relay"]["udp"]["dropped"], "datagrams itself")'
          "${in_router[@]}" nstat -az UdpRcvbufErrors | awk '/UdpRcvbufErrors/ {print "  router UdpRcvbufErrors", $2}'
        fi
        ;;
      *)
        idle_rss "$s"
        throughput "$s" 5202
        ;;
    esac
    stop_setup "$s"
  done
done
load=$(uptime)

mkdir -p "$here/out"
report="$here/out/proxy-report-$(date -u +%Y%m%d-%H%M%S).txt"
{
  echo "namespace lab ($MODE): iperf3 from the LAN client through the router; proxies relay through ss-server ($METHOD)"
  if [ "$MODE" = udp ]; then
    echo "UDP at $RATE, 1,200-byte datagrams; the memory rows are $ENDPOINTS live UDP endpoints, not idle connections"
  fi
  python3 "$here/proxy_report.py" "$results" "$ROUNDS" "$DURATION" "$ticks" "$MODE"
  echo "load after: $load"
} | tee "$report"
echo "(saved to $report)"
