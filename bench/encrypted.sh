#!/usr/bin/env bash
# dae's benchmark for encrypted upstreams: cache misses forwarded over DoT
# (tls://) and DoH (https://, HTTP/2) by dae and by dnsdist to the same
# unbound, which answers DoT and DoH on loopback with a certificate from a
# CA made here. dnsperf asks each over plain UDP with names nobody asked
# before, so every query crosses the encrypted link.
#
# Printed per scheme and server: qps, CPU us per query (the server's
# utime+stime over the run, divided by completed queries), median and 99th
# percentile latency (from dnsperf -v), lost; and dae / dnsdist ratios.
# Pinning and rounds as in run.sh: servers on CPU 0, dnsperf and unbound on
# CPU 1, servers interleaved, medians over the rounds.
#
# Peers: dnsdist forwards over DoT. Its outgoing DoH (1.7.3 in Debian 12)
# never marked this unbound up nor answered through it here, even with the
# server forced up, so the DoH row has dae alone (absolute figures, no
# ratio). DoQ (quic://) and DoH over HTTP/3 (h3://): neither Debian's
# dnsdist (1.7) nor its unbound (1.17) speaks them, so dae asks the test
# suite's aioquic relays (tests/servers/doq_server.py, doh3_server.py) in
# front of the same unbound; those Python relays, not dae, bound the qps,
# so these rows show dae's CPU per query and the latency it adds, no ratio.
#
# Usage (as root on Debian 12): bench/encrypted.sh   (ROUNDS=3 DURATION=8)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8}
OUTSTANDING=${OUTSTANDING:-100}
CACHE=4096

# shellcheck source=tests/deps.sh
. "$repo/tests/deps.sh"
# shellcheck source=bench/common.sh
. "$here/common.sh"
need_root
install_packages dnsperf dnsdist unbound openssl procps util-linux python3 bind9-dnsutils
install_python_packages
ensure_rust

build_dae

work=$(mktemp -d /tmp/dae-benchtls.XXXXXX)
pids=()
trap stop_pids EXIT INT TERM
client=()
declare -A addr port pid

# --- a CA and the upstream's certificate (for 127.0.0.1)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj "/CN=dae bench CA" -keyout "$work/ca.key" -out "$work/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=127.0.0.1" \
  -keyout "$work/up.key" -out "$work/up.csr" 2>/dev/null
echo "subjectAltName=IP:127.0.0.1" > "$work/up.ext"
openssl x509 -req -in "$work/up.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial \
  -days 2 -extfile "$work/up.ext" -out "$work/up.pem" 2>/dev/null

# --- the upstream: unbound, plain (for health checks) + DoT + DoH
next_port; up_plain=$PORT
next_port; up_tls=$PORT
next_port; up_https=$PORT
unbound_conf "$work/unbound.conf" 127.0.0.0/8 "127.0.0.1@$up_plain" "127.0.0.1@$up_tls" "127.0.0.1@$up_https"
cat >> "$work/unbound.conf" <<EOF
  tls-port: $up_tls
  https-port: $up_https
  tls-service-key: "$work/up.key"
  tls-service-pem: "$work/up.pem"
  http-endpoint: "/dns-query"
  incoming-num-tcp: 100
EOF
taskset -c 1 unbound -d -c "$work/unbound.conf" > "$work/unbound.log" 2>&1 &
pids+=($!)
wait_answer 127.0.0.1 "$up_plain" h1.bench.example

# --- DoQ and DoH3: the aioquic relays in front of the same unbound
next_port; up_quic=$PORT
next_port; up_h3=$PORT
export PYTHONPATH="$repo/target/pydeps"
taskset -c 1 python3 "$repo/tests/servers/doq_server.py" 127.0.0.1 "$up_quic" "$work/up.pem" "$work/up.key" \
  127.0.0.1 "$up_plain" > "$work/doq.log" 2>&1 &
pids+=($!)
taskset -c 1 python3 "$repo/tests/servers/doh3_server.py" 127.0.0.1 "$up_h3" "$work/up.pem" "$work/up.key" \
  127.0.0.1 "$up_plain" > "$work/doh3.log" 2>&1 &
pids+=($!)
for log in doq doh3; do
  for _ in $(seq 1 100); do grep -q ready "$work/$log.log" && break; sleep 0.1; done
done

results="$work/results.tsv"
: > "$results"

# serve SCHEME: starts dae and dnsdist forwarding over SCHEME.
serve() {
  local scheme=$1 up
  case "$scheme" in
    tls) up=$up_tls ;;
    https) up=$up_https ;;
    quic) up=$up_quic ;;
    *) up=$up_h3 ;;
  esac
  next_port
  port[dae]=$PORT
  cat > "$work/dae-$scheme.uci" <<EOF
config dae 'config'
	option log_level 'warn'
	option status_socket '$work/dae-$scheme.sock'
	option ca_file '$work/ca.pem'

config dns 'dns'
	list dns_listen '127.0.0.1:${port[dae]}'
	option cache_size '$CACHE'
	option request_fallback 'up'

config upstream 'up'
	option address '$scheme://127.0.0.1:$up'
EOF
  taskset -c 0 "$dae_bin" run -c "$work/dae-$scheme.uci" > "$work/dae-$scheme.log" 2>&1 &
  pid[dae]=$!
  pids+=("${pid[dae]}")

  addr[dae]=127.0.0.1
  wait_answer 127.0.0.1 "${port[dae]}" h1.bench.example
  [ "$scheme" = tls ] || return 0

  next_port
  port[dnsdist]=$PORT
  cat > "$work/dnsdist-$scheme.conf" <<EOF
setLocal("127.0.0.1:${port[dnsdist]}")
setSecurityPollSuffix("")
newServer({address="127.0.0.1:$up", tls="openssl", subjectAddr="127.0.0.1", caStore="$work/ca.pem", validateCertificates=true, checkName="h1.bench.example."})
pc = newPacketCache($CACHE)
getPool(""):setCache(pc)
EOF
  taskset -c 0 dnsdist --supervised --disable-syslog -C "$work/dnsdist-$scheme.conf" > "$work/dnsdist-$scheme.log" 2>&1 &
  pid[dnsdist]=$!
  pids+=("${pid[dnsdist]}")
  addr[dnsdist]=127.0.0.1
  wait_answer 127.0.0.1 "${port[dnsdist]}" h1.bench.example
}

stop_servers() {
  local p
  for p in "${pid[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pid[@]}"; do wait "$p" 2>/dev/null || true; done
  pid=()
}

for r in $(seq 1 "$ROUNDS"); do
  echo "== round $r of $ROUNDS"
  for scheme in tls https quic h3; do
    serve "$scheme"
    order=(dae)
    if [ "$scheme" = tls ]; then
      order=(dae dnsdist)
      [ $((r % 2)) -eq 0 ] && order=(dnsdist dae)
    fi
    for s in "${order[@]}"; do
      miss_names "r$r$scheme$s" > "$work/miss.txt"
      measure "$scheme" "$s" "$work/miss.txt"
    done
    stop_servers
  done
done
rm -f "$work/miss.txt"

mkdir -p "$here/out"
report="$here/out/encrypted-report-$(date -u +%Y%m%d-%H%M%S).txt"
python3 - "$results" "$ROUNDS" "$DURATION" "$OUTSTANDING" <<'EOF' | tee "$report"
import statistics, sys
from collections import defaultdict
path, rounds, duration, outstanding = sys.argv[1:5]
runs = defaultdict(list)
for line in open(path):
    sc, s, *v = line.rstrip("\n").split("\t")
    runs[(sc, s)].append([float(x) for x in v])
def med(sc, s, i):
    vals = [r[i] for r in runs.get((sc, s), [])]
    return statistics.median(vals) if vals else float("nan")
print(f"encrypted upstreams, cache misses: {rounds} round(s) of {duration} s, dnsperf -c 4 -q {outstanding}; medians")
for sc, label in (("tls", "DoT"), ("https", "DoH (HTTP/2)"), ("quic", "DoQ"), ("h3", "DoH over HTTP/3")):
    print(f"\n{label}:")
    print(f"  {'server':<9}{'qps':>9}{'CPU us/query':>14}{'p50 ms':>9}{'p99 ms':>9}{'lost':>7}")
    for s in ("dae", "dnsdist"):
        if (sc, s) in runs:
            print(f"  {s:<9}{med(sc, s, 0):>9.0f}{med(sc, s, 1):>14.2f}{med(sc, s, 2):>9.3f}{med(sc, s, 3):>9.3f}{med(sc, s, 4):>7.0f}")
    if (sc, "dnsdist") in runs:
        print(f"  dae / dnsdist  qps {med(sc, 'dae', 0) / med(sc, 'dnsdist', 0):.2f}   "
              f"CPU per query {med(sc, 'dae', 1) / med(sc, 'dnsdist', 1):.2f}   "
              f"p99 {med(sc, 'dae', 3) / med(sc, 'dnsdist', 3):.2f} (lower is better for CPU and p99)")
    elif sc == "https":
        print("  (no peer: dnsdist 1.7.3's outgoing DoH did not work against this unbound)")
    else:
        print("  (no peer in Debian 12; upstream is an aioquic relay, which bounds the qps)")
EOF
echo "(saved to $report)"
