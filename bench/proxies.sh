#!/usr/bin/env bash
# dae's benchmark for DNS through proxy nodes: cache misses that dae sends
# to the same unbound directly and through each kind of node, with real
# proxy servers on loopback: dante (SOCKS5, UDP ASSOCIATE), ss-server
# (Shadowsocks aes-128-gcm), trojan-gfw (Trojan over TLS), v2ray (VMess
# aes-128-gcm, VLESS). dnsperf asks dae over plain UDP with names nobody
# asked before; dae's upstream is udp:// (the node's UDP path) and, in a
# second row per node, tcp:// (a proxied stream, pipelined).
#
# Printed per row: qps, dae's CPU us per query, p50 and p99 latency, lost,
# and the ratio to the direct row of the same run (no DNS forwarder in
# Debian goes through these proxies, so the peer is dae going direct).
# Pinning as in run.sh: dae on CPU 0; dnsperf, unbound and the proxy
# servers on CPU 1; medians over the rounds.
#
# Usage (as root on Debian 12): bench/proxies.sh   (ROUNDS=3 DURATION=8)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8}
OUTSTANDING=${OUTSTANDING:-100}
UUID=b831381d-6324-4d53-ad4f-8cda48b30811

# shellcheck source=tests/deps.sh
. "$repo/tests/deps.sh"
# shellcheck source=bench/common.sh
. "$here/common.sh"
need_root
install_packages dnsperf unbound openssl procps util-linux python3 bind9-dnsutils \
  shadowsocks-libev trojan v2ray dante-server busybox iproute2
ensure_rust

build_dae

work=$(mktemp -d /tmp/dae-benchproxy.XXXXXX)
pids=()
trap stop_pids EXIT INT TERM
client=()
declare -A addr port pid

b64() { printf '%s' "$1" | base64 -w0; }

# --- the upstream
next_port; up=$PORT
unbound_conf "$work/unbound.conf" 127.0.0.0/8 "127.0.0.1@$up"
echo "  incoming-num-tcp: 100" >> "$work/unbound.conf"
taskset -c 1 unbound -d -c "$work/unbound.conf" > "$work/unbound.log" 2>&1 &
pids+=($!)
wait_answer 127.0.0.1 "$up" h1.bench.example

# --- the proxies
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj "/CN=127.0.0.1" -addext "subjectAltName=IP:127.0.0.1" \
  -keyout "$work/proxy.key" -out "$work/proxy.pem" 2>/dev/null
next_port; p_socks=$PORT
next_port; p_ss=$PORT
next_port; p_trojan=$PORT
next_port; p_vmess=$PORT
next_port; p_vless=$PORT
next_port; p_http=$PORT
mkdir -p "$work/www" && echo ok > "$work/www/index.html"
# What the nodes' TCP health check asks.
taskset -c 1 busybox httpd -f -p "127.0.0.1:$p_http" -h "$work/www" &
pids+=($!)
cat > "$work/danted.conf" <<EOF
logoutput: $work/danted.log
internal: 127.0.0.1 port = $p_socks
external: 127.0.0.1
clientmethod: none
socksmethod: none
user.privileged: root
user.unprivileged: nobody
client pass { from: 0.0.0.0/0 to: 0.0.0.0/0 }
socks pass { from: 0.0.0.0/0 to: 0.0.0.0/0 command: connect udpassociate udpreply }
EOF
taskset -c 1 danted -f "$work/danted.conf" > /dev/null 2>&1 &
pids+=($!)
taskset -c 1 ss-server -s 127.0.0.1 -p "$p_ss" -k bench -m aes-128-gcm -u > /dev/null 2>&1 &
pids+=($!)
cat > "$work/trojan.json" <<EOF
{"run_type": "server", "local_addr": "127.0.0.1", "local_port": $p_trojan,
 "remote_addr": "127.0.0.1", "remote_port": 9, "password": ["bench"], "log_level": 2,
 "ssl": {"cert": "$work/proxy.pem", "key": "$work/proxy.key", "alpn": ["http/1.1"]}}
EOF
taskset -c 1 trojan -c "$work/trojan.json" > /dev/null 2>&1 &
pids+=($!)
cat > "$work/v2ray.json" <<EOF
{"log": {"loglevel": "warning"},
 "inbounds": [
  {"listen": "127.0.0.1", "port": $p_vmess, "protocol": "vmess",
   "settings": {"clients": [{"id": "$UUID", "alterId": 0}]}},
  {"listen": "127.0.0.1", "port": $p_vless, "protocol": "vless",
   "settings": {"clients": [{"id": "$UUID"}], "decryption": "none"}}],
 "outbounds": [{"protocol": "freedom"}]}
EOF
taskset -c 1 v2ray -config "$work/v2ray.json" > /dev/null 2>&1 &
pids+=($!)
sleep 1

vmess_json="{\"v\":\"2\",\"ps\":\"bench\",\"add\":\"127.0.0.1\",\"port\":\"$p_vmess\",\"id\":\"$UUID\",\"aid\":\"0\",\"scy\":\"aes-128-gcm\",\"net\":\"tcp\",\"type\":\"none\",\"tls\":\"\"}"
declare -A link=(
  [socks5]="socks5://127.0.0.1:$p_socks"
  [ss]="ss://$(b64 aes-128-gcm:bench)@127.0.0.1:$p_ss"
  [trojan]="trojan://bench@127.0.0.1:$p_trojan?allowInsecure=1"
  [vmess]="vmess://$(b64 "$vmess_json")"
  [vless]="vless://$UUID@127.0.0.1:$p_vless?encryption=none&security=none&type=tcp"
)
rows=(direct socks5 ss trojan vmess vless)

results="$work/results.tsv"
: > "$results"

# serve ROW SCHEME: dae going out by ROW (direct or a node) to udp:// or
# tcp:// upstream.
serve() {
  local row=$1 scheme=$2
  next_port
  port[dae]=$PORT
  addr[dae]=127.0.0.1
  {
    cat <<EOF
config dae 'config'
	option log_level 'warn'
	option status_socket '$work/dae.sock'
	option tcp_check_url 'http://127.0.0.1:$p_http/'
	option udp_check_dns '127.0.0.1:$up'
	option check_interval '3600'

config dns 'dns'
	list dns_listen '127.0.0.1:${port[dae]}'
	option cache_size '4096'
	option request_fallback 'up'

config upstream 'up'
	option address '$scheme://127.0.0.1:$up'
EOF
    if [ "$row" != direct ]; then
      printf "\nconfig node 'n'\n\toption link '%s'\n\nconfig group 'proxy'\n\tlist node 'n'\n\toption policy 'fixed(0)'\n\nconfig routing 'routing'\n\toption fallback 'proxy'\n" "${link[$row]}"
    fi
  } > "$work/dae.uci"
  taskset -c 0 "$dae_bin" run -c "$work/dae.uci" > "$work/dae-$row-$scheme.log" 2>&1 &
  pid[dae]=$!
  pids+=("${pid[dae]}")
  wait_answer 127.0.0.1 "${port[dae]}" h1.bench.example
}

stop_dae() {
  kill "${pid[dae]}" 2>/dev/null || true
  wait "${pid[dae]}" 2>/dev/null || true
}

for r in $(seq 1 "$ROUNDS"); do
  echo "== round $r of $ROUNDS"
  for scheme in udp tcp; do
    for row in "${rows[@]}"; do
      serve "$row" "$scheme"
      miss_names "r$r$scheme$row" > "$work/miss.txt"
      measure "$row/$scheme" dae "$work/miss.txt"
      stop_dae
    done
  done
done
rm -f "$work/miss.txt"

mkdir -p "$here/out"
report="$here/out/proxies-report-$(date -u +%Y%m%d-%H%M%S).txt"
python3 - "$results" "$ROUNDS" "$DURATION" "$OUTSTANDING" <<'PYEOF' | tee "$report"
import statistics, sys
from collections import defaultdict
path, rounds, duration, outstanding = sys.argv[1:5]
runs = defaultdict(list)
for line in open(path):
    row, s, *v = line.rstrip("\n").split("\t")
    runs[row].append([float(x) for x in v])
def med(row, i):
    vals = [r[i] for r in runs.get(row, [])]
    return statistics.median(vals) if vals else float("nan")
print(f"DNS through proxy nodes, cache misses: {rounds} round(s) of {duration} s, dnsperf -c 4 -q {outstanding}; medians")
for scheme in ("udp", "tcp"):
    print(f"\nupstream {scheme}://")
    print(f"  {'way out':<9}{'qps':>9}{'CPU us/query':>14}{'p50 ms':>9}{'p99 ms':>9}{'lost':>7}{'qps/direct':>12}{'p50/direct':>12}")
    d = f"direct/{scheme}"
    for way in ("direct", "socks5", "ss", "trojan", "vmess", "vless"):
        row = f"{way}/{scheme}"
        if row not in runs:
            continue
        print(f"  {way:<9}{med(row, 0):>9.0f}{med(row, 1):>14.2f}{med(row, 2):>9.3f}{med(row, 3):>9.3f}{med(row, 4):>7.0f}"
              f"{med(row, 0) / med(d, 0):>12.2f}{med(row, 2) / med(d, 2):>12.2f}")
PYEOF
echo "(saved to $report)"
