#!/usr/bin/env bash
# dae's benchmark in the namespace lab (tests/lab.sh): dnsperf on the LAN
# client, through the bridge, against the DNS server on the router.
#
# - dae: the TC program on br-lan hands the client's queries (sent to
#   203.0.113.99, where no host is) to dae's transparent listener;
# - dnsmasq (192.0.2.1) and dnsdist with its packet cache (192.0.2.2): the
#   router's own DNS server, which the client asks directly. They run only
#   while dae is stopped (dae takes every port-53 packet while it runs).
# All forward to unbound in the upstream namespace, all with a 4096-entry
# cache. Servers are pinned to CPU 0, dnsperf and unbound to CPU 1; servers
# are interleaved within each round and rounds rotate their order; medians.
#
# The ranking figure is the server process's CPU time per answered query,
# as in run.sh. Here the bridge, the TC program and the veth hops cost
# softirq time that the kernel charges to whichever task is running, so
# qps and latency matter more than on loopback; both are printed.
#
# Usage (as root on Debian 12): bench/lab.sh   (ROUNDS=3 DURATION=8 by default)
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
install_packages "${DAE_TEST_PACKAGES[@]}" util-linux python3
ensure_rust

build_dae
"$repo/ebpf/build.sh" > /dev/null

prefix="bench$$"
work=$(mktemp -d /tmp/dae-benchlab.XXXXXX)
cleanup() {
  "$repo/tests/lab.sh" down "$prefix"
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
"$repo/tests/lab.sh" up "$prefix"
router="$prefix-router"
client=(ip netns exec "$prefix-client")
in_router=(ip netns exec "$router")
ip -n "$router" addr add 192.0.2.2/24 dev br-lan

declare -A addr port pid
addr[dae]=203.0.113.99
addr[dnsmasq]=192.0.2.1
addr[dnsdist]=192.0.2.2
for s in dae dnsmasq dnsdist; do port[$s]=53; done

unbound_conf "$work/unbound.conf" 0.0.0.0/0 203.0.113.53
ip netns exec "$prefix-up" taskset -c 1 unbound -d -c "$work/unbound.conf" > "$work/unbound.log" 2>&1 &
wait_answer 203.0.113.53 53 h1.bench.example

"${in_router[@]}" taskset -c 0 dnsmasq -k --no-resolv --no-hosts --server=203.0.113.53 \
  --cache-size="$CACHE" --listen-address=192.0.2.1 --bind-interfaces --user=root \
  --dns-forward-max=1000 --pid-file= > "$work/dnsmasq.log" 2>&1 &
pid[dnsmasq]=$!
cat > "$work/dnsdist.conf" <<EOF
setLocal("192.0.2.2:53")
addACL("192.0.2.0/24")
setSecurityPollSuffix("")
newServer({address="203.0.113.53:53", checkName="h1.bench.example."})
pc = newPacketCache($CACHE)
getPool(""):setCache(pc)
EOF
"${in_router[@]}" taskset -c 0 dnsdist --supervised --disable-syslog -C "$work/dnsdist.conf" > "$work/dnsdist.log" 2>&1 &
pid[dnsdist]=$!
wait_answer 192.0.2.1 53 h1.bench.example
wait_answer 192.0.2.2 53 h1.bench.example

cat > "$work/dae.uci" <<EOF
config dae 'config'
	option log_level 'warn'
	list lan_interface 'br-lan'
	option bpf_object '$repo/ebpf/build/dae_tc.bpfel.o'
	option status_socket '$work/dae.sock'

config dns 'dns'
	option cache_size '$CACHE'
	option request_fallback 'up'

config upstream 'up'
	option address 'udp://203.0.113.53:53'
EOF
start_dae() {
  "${in_router[@]}" taskset -c 0 "$dae_bin" run -c "$work/dae.uci" >> "$work/dae.log" 2>&1 &
  pid[dae]=$!
  wait_answer 203.0.113.99 53 h1.bench.example
}
stop_dae() {
  kill "${pid[dae]}"
  wait "${pid[dae]}" || true
}

hit_names > "$work/hits.txt"
results="$work/results.tsv"
: > "$results"
start_dae
for s in dae dnsmasq dnsdist; do
  "${client[@]}" dnsperf -s "${addr[$s]}" -d "$work/hits.txt" -n 2 > /dev/null 2>&1 || true
done
stop_dae

order=(dae dnsmasq dnsdist)
dae_rss=0
dae_hwm=0
dae_memory=''
for r in $(seq 1 "$ROUNDS"); do
  echo "== round $r of $ROUNDS"
  rot=$(((r - 1) % 3))
  this=("${order[@]:$rot}" "${order[@]:0:$rot}")
  for s in "${this[@]}"; do
    [ "$s" = dae ] && start_dae
    run hits "$s" "$work/hits.txt"
    miss_names "r$r$s" > "$work/miss.txt"
    run misses "$s" "$work/miss.txt"
    if [ "$s" = dae ]; then
      # Resident size after serving, not VmHWM: on kernels with BTF, aya
      # parses /sys/kernel/btf/vmlinux while loading (tens of MB for a
      # moment, given back at once; OpenWrt kernels have no BTF).
      rss=$(awk '/VmRSS/ {print $2}' "/proc/${pid[dae]}/status")
      if [ "$rss" -gt "$dae_rss" ]; then
        dae_rss=$rss
        dae_memory=$(memory_lines dae "${pid[dae]}")
      fi
      dae_hwm=$(awk '/VmHWM/ {print $2}' "/proc/${pid[dae]}/status")
      stop_dae
    fi
  done
done
rm -f "$work/miss.txt"

printf 'rss\tdae\t%s\n' "$dae_rss" >> "$results"
printf '%s\n' "$dae_memory" >> "$results"
for s in dnsmasq dnsdist; do
  printf 'rss\t%s\t%s\n' "$s" "$(awk '/VmHWM/ {print $2}' "/proc/${pid[$s]}/status")" >> "$results"
  memory_lines "$s" "${pid[$s]}" >> "$results"
done

mkdir -p "$here/out"
report="$here/out/lab-report-$(date -u +%Y%m%d-%H%M%S).txt"
{
  echo "namespace lab: dnsperf on the client through br-lan; dae by its TC program, dnsmasq and dnsdist as the router's DNS server"
  python3 "$here/report.py" "$results" "$ROUNDS" "$DURATION" "$OUTSTANDING"
  echo "(dae's figure is its VmRSS after serving; its VmHWM was $dae_hwm KiB, which includes"
  echo " aya parsing this kernel's BTF while loading the TC program)"
} | tee "$report"
echo "(saved to $report)"
