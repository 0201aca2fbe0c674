#!/bin/sh
# The namespace lab of openwrt/vm-test.sh, run inside the guest (by
# openwrt/vm/init) with busybox: this machine is the router (dae on br-lan),
# a client namespace sits behind br-lan, an upstream namespace behind wan0
# runs a second dae as the DNS server (it answers every name with an empty
# NOERROR: `request_fallback 'reject'`) and busybox httpd. The addresses
# are those of tests/lab.sh (documentation ranges).
#
#   lab.sh DAE DNSQ TCLS WORKDIR
#
# Prints one line per check, `PASS name: detail` or `FAIL name: detail`,
# and `LAB-DONE pass=N fail=M` at the end; exits 1 if a check failed. It
# needs a kernel with network namespaces, veth, bridge, clsact and cls_bpf,
# and runs with busybox's or util-linux's unshare/nsenter and iproute2's or
# busybox's ip (so it can be tried on a workstation inside `unshare -nm`).
# It stops what it started (dae, the namespaces' holders, httpd).
set -u

dae=$1 dnsq=$2 tcls=$3 work=$4
client_v4=192.0.2.10 upstream_v4=203.0.113.53 nobody_v4=203.0.113.99
passed=0 failed=0
pids=''

pass() {
	echo "PASS $1: $2"
	passed=$((passed + 1))
}
fail() {
	echo "FAIL $1: $2"
	failed=$((failed + 1))
}
# check NAME DETAIL COMMAND...: PASS if the command succeeds (the detail
# ends with the last line of its output).
check() {
	name=$1 detail=$2
	shift 2
	if out=$("$@" 2>&1); then ok=1; else ok=0; fi
	out=$(echo "$out" | tail -n 1)
	if [ "$ok" = 1 ]; then
		pass "$name" "$detail ($out)"
	else
		fail "$name" "$detail ($out)"
	fi
}

cleanup() {
	[ -n "${router_pid:-}" ] && kill "$router_pid" 2>/dev/null
	sleep 1
	# shellcheck disable=SC2086 # a list of pids
	[ -n "$pids" ] && kill $pids 2>/dev/null
	ip link del br-lan 2>/dev/null
	ip link del lan0 2>/dev/null
	ip link del wan0 2>/dev/null
}
trap cleanup EXIT

# add_veth NAME PEER: a veth pair. Busybox's ip ignores `peer name`: the
# kernel names the peer (vethN), found by its ifindex and renamed.
add_veth() {
	ip link add "$1" type veth peer name "$2"
	[ -e "/sys/class/net/$2" ] && return 0
	peer_index=$(cat "/sys/class/net/$1/iflink")
	for dev in /sys/class/net/*; do
		if [ "$(cat "$dev/ifindex")" = "$peer_index" ]; then
			ip link set dev "${dev##*/}" name "$2"
			return
		fi
	done
	echo "lab: no peer of $1" >&2
	return 1
}

# The TC filters on br-lan's ingress, one a line (openwrt/vm/tcls.c).
filters() {
	"$tcls" br-lan
}

# A network namespace held by a sleeping process; prints its pid.
new_ns() {
	unshare -n sleep 100000 >/dev/null 2>>"$work/holders.log" &
	echo $!
}
in_ns() {
	pid=$1
	shift
	nsenter -t "$pid" -n "$@"
}

# The status line of the datapath counters: how many packets the TC
# program handed to dae so far.
handed() {
	"$dae" status -s "$work/dae.sock" 2>/dev/null |
		sed -n 's/^datapath: [0-9]* seen, \([0-9]*\) handed to dae.*/\1/p'
}

# wait_for SECONDS COMMAND...: until the command succeeds.
wait_for() {
	n=$1
	shift
	while [ "$n" -gt 0 ]; do
		"$@" >/dev/null 2>&1 && return 0
		sleep 1
		n=$((n - 1))
	done
	return 1
}

memory() {
	sed -n "s/^$2:[[:space:]]*\([0-9]*\) kB/\1/p" "/proc/$1/status"
}

start_router_dae() {
	"$dae" run -c "$work/router.uci" >>"$work/router.log" 2>&1 &
	router_pid=$!
	# Emulated MIPS is slow: give it three minutes to load and attach.
	wait_for 180 "$dae" status -s "$work/dae.sock"
}

mkdir -p "$work/www"
echo "not DNS" >"$work/www/ok.txt"

# --- the lab ---------------------------------------------------------------
ip link set lo up
client=$(new_ns)
upstream=$(new_ns)
pids="$client $upstream"
sleep 1
[ -s "$work/holders.log" ] && cat "$work/holders.log"
in_ns "$client" ip link set lo up
in_ns "$upstream" ip link set lo up

ip link add br-lan type bridge
echo 0 >/sys/class/net/br-lan/bridge/forward_delay
add_veth lan0 c0
ip link set c0 netns "$client"
ip link set lan0 master br-lan
ip link set lan0 up
ip link set br-lan up
ip addr add 192.0.2.1/24 dev br-lan
in_ns "$client" ip link set c0 up
in_ns "$client" ip addr add "$client_v4/24" dev c0
in_ns "$client" ip route add default via 192.0.2.1

add_veth wan0 u0
ip link set u0 netns "$upstream"
ip link set wan0 up
ip addr add 198.51.100.1/24 dev wan0
ip route add 203.0.113.0/24 via 198.51.100.2
echo 1 >/proc/sys/net/ipv4/ip_forward
in_ns "$upstream" ip link set u0 up
in_ns "$upstream" ip addr add 198.51.100.2/24 dev u0
in_ns "$upstream" ip addr add "$upstream_v4/32" dev lo
in_ns "$upstream" ip route add 192.0.2.0/24 via 198.51.100.1

cat >"$work/upstream.uci" <<EOF
config dae 'config'
	option status_socket '$work/upstream.sock'

config dns 'dns'
	list dns_listen '$upstream_v4:53'
	option allow_remote '1'
	option request_fallback 'reject'
EOF
cat >"$work/router.uci" <<EOF
config dae 'config'
	option log_level 'debug'
	list lan_interface 'br-lan'
	option tproxy_port '12345'
	option status_socket '$work/dae.sock'

config dns 'dns'
	option request_fallback 'up'

config upstream 'up'
	option address 'udp://$upstream_v4:53'
EOF

# nsenter itself, not in_ns: $! must be the server's pid (nsenter execs
# it), not that of a subshell running the function.
nsenter -t "$upstream" -n "$dae" run -c "$work/upstream.uci" >"$work/upstream.log" 2>&1 &
pids="$pids $!"
nsenter -t "$upstream" -n httpd -f -p "$upstream_v4:80" -h "$work/www" >/dev/null 2>&1 &
pids="$pids $!"
wait_for 60 "$dae" status -s "$work/upstream.sock" ||
	fail upstream "the upstream dae did not start: $(cat "$work/upstream.log")"

# --- the checks ------------------------------------------------------------
echo "INFO kernel: $(uname -srm)"
echo "INFO bpf_jit_enable: $(cat /proc/sys/net/core/bpf_jit_enable 2>/dev/null || echo absent)"
if [ -e /sys/kernel/btf/vmlinux ]; then echo "INFO kernel BTF: present"; else echo "INFO kernel BTF: absent"; fi
check direct "the client asks the upstream before dae runs (UDP)" in_ns "$client" "$dnsq" "$upstream_v4" direct.lab.example

if start_router_dae; then
	pass start "dae runs: $(sed -n 's/.*\(TC program.*\)/\1/p' "$work/router.log" | head -n 1)"
else
	fail start "dae did not answer on its status socket: $(tail -n 20 "$work/router.log")"
fi
bpf_filters() {
	filters | grep -c ' bpf'
}
if [ "$(bpf_filters)" = 1 ]; then
	pass attached "one bpf filter on br-lan ingress: $(filters | tr '\n' ' ')"
else
	fail attached "not one bpf filter on br-lan ingress: $(filters 2>&1 | tr '\n' ' ')"
fi
# Not a check: aya names programs (and filters) only where the kernel has
# BPF tracing program types, which OpenWrt's kernels lack; dae finds a
# stale filter by its place (priority and handle) instead.
echo "INFO filter: $(filters 2>&1 | tr '\n' ' ')"

before=$(handed)
check udp-nobody "the client's UDP query to $nobody_v4 (no host) answered through dae" \
	in_ns "$client" "$dnsq" "$nobody_v4" u.lab.example
check tcp-nobody "the client's TCP query to $nobody_v4 (no host) answered through dae" \
	in_ns "$client" "$dnsq" -t "$nobody_v4" t.lab.example
check udp-upstream "the client's UDP query to the upstream, through dae" \
	in_ns "$client" "$dnsq" "$upstream_v4" up.lab.example
after=$(handed)
if [ -n "$before" ] && [ -n "$after" ] && [ "$after" -ge $((before + 3)) ]; then
	pass handed "the TC program handed the client's queries to dae ($before -> $after packets)"
else
	fail handed "datapath counter 'handed to dae' went from '$before' to '$after'"
fi

check ping "non-DNS traffic passes (ICMP to the upstream)" \
	in_ns "$client" ping -c 2 -W 2 "$upstream_v4"
check http "non-DNS traffic passes (HTTP over TCP to the upstream)" \
	in_ns "$client" wget -q -O - "http://$upstream_v4/ok.txt"

if status=$("$dae" status -s "$work/dae.sock" 2>&1); then
	pass status "dae status: $(echo "$status" | head -n 4 | tr '\n' ' ')"
else
	fail status "dae status: $status"
fi

rss=$(memory "$router_pid" VmRSS) hwm=$(memory "$router_pid" VmHWM)
echo "INFO dae memory: VmRSS $rss kB, VmHWM $hwm kB"
if [ -n "$hwm" ] && [ "$hwm" -le 8192 ]; then
	pass memory "peak at start within 8 MB (VmHWM $hwm kB, VmRSS $rss kB)"
else
	fail memory "peak at start over 8 MB (VmHWM $hwm kB, VmRSS $rss kB)"
fi

kill -9 "$router_pid"
wait "$router_pid" 2>/dev/null
router_pid=''
count=$(bpf_filters)
if [ "$count" = 1 ]; then
	pass kept "dae killed (-9): its filter stays on br-lan (netlink filters outlive their loader)"
else
	fail kept "dae killed (-9): $count bpf filters on br-lan: $(filters 2>&1 | tr '\n' ' ')"
fi
check fail-open "dae killed (-9): the client's UDP query reaches the upstream directly" \
	in_ns "$client" "$dnsq" "$upstream_v4" open.lab.example
if out=$(in_ns "$client" "$dnsq" "$nobody_v4" gone.lab.example 2>&1); then
	fail fail-open-nobody "dae killed (-9), yet $nobody_v4 answered: $out"
else
	pass fail-open-nobody "dae killed (-9): nothing answers for $nobody_v4 ($out)"
fi
check fail-open-tcp "dae killed (-9): the client's TCP query reaches the upstream directly" \
	in_ns "$client" "$dnsq" -t "$upstream_v4" open-t.lab.example
if start_router_dae && grep -q "removed a TC filter left by an earlier run" "$work/router.log"; then
	pass restart "a restart removed the filter the killed dae left"
else
	fail restart "the restart after kill -9 did not remove the filter left behind (filters now: $(filters 2>&1 | tr '\n' ' '))"
fi
before=$(handed)
check udp-after-restart "answered through dae after the restart" \
	in_ns "$client" "$dnsq" "$nobody_v4" r.lab.example
after=$(handed)
# A filter of the killed dae still in front would take the packets first
# (direct action): the new program's counter would stay still.
if [ -n "$before" ] && [ -n "$after" ] && [ "$after" -gt "$before" ]; then
	pass handed-after-restart "the new program sees the client's queries ($before -> $after packets; filters: $(filters | tr '\n' ' '))"
else
	fail handed-after-restart "the new program's 'handed to dae' went from '$before' to '$after'"
fi
kill "$router_pid"
wait "$router_pid" 2>/dev/null
router_pid=''
count=$(bpf_filters)
if [ "$count" = 0 ]; then
	pass detached "no filter left on br-lan after SIGTERM"
else
	fail detached "$count bpf filters left on br-lan after SIGTERM: $(filters 2>&1 | tr '\n' ' ')"
fi

echo "LAB-DONE pass=$passed fail=$failed"
[ "$failed" = 0 ]
