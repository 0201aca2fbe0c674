#!/usr/bin/env bash
# The main job, shown in the namespace lab (tests/lab.sh): a LAN client's DNS
# answered through dae on the router.
#
# Builds dae and its TC program, creates the lab (client, router with br-lan,
# an upstream namespace running unbound), starts dae on the router exactly as
# on OpenWrt (TC program on br-lan, UCI config), then lets the client ask with
# dig: the real server, an address with no host behind it (203.0.113.99),
# over UDP and TCP, IPv4 and IPv6. dae's log, its status and the upstream's
# query log are shown beside the answers. Everything is removed at the end,
# also on failure or Ctrl-C.
#
# Usage (as root on Debian 12): tests/lab-demo.sh
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
# shellcheck source=tests/deps.sh
. tests/deps.sh
need_root
install_packages "${DAE_TEST_PACKAGES[@]}"
ensure_rust

echo "== building dae and its TC program"
cargo build --release --locked -q
ebpf/build.sh

prefix="demo$$"
work=$(mktemp -d /tmp/dae-demo.XXXXXX)
cleanup() {
  tests/lab.sh down "$prefix"
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
tests/lab.sh up "$prefix"
client="$prefix-client"
router="$prefix-router"
upstream="$prefix-up"
in_client() { ip netns exec "$client" "$@"; }

cat >"$work/unbound.conf" <<EOF
server:
  interface: 203.0.113.53
  interface: 2001:db8:3::53
  port: 53
  do-daemonize: no
  use-syslog: no
  logfile: "$work/unbound.log"
  log-queries: yes
  verbosity: 1
  chroot: ""
  username: ""
  directory: "$work"
  pidfile: ""
  do-ip6: yes
  access-control: 0.0.0.0/0 allow
  access-control: ::/0 allow
  module-config: "iterator"
  local-zone: "." static
  local-zone: "lab.example." static
  local-data: "lab.example. 3600 IN SOA ns.lab.example. admin.lab.example. 1 3600 600 86400 60"
  local-data: "www.lab.example. 300 IN A 192.0.2.80"
  local-data: "www.lab.example. 300 IN AAAA 2001:db8::80"
EOF
ip netns exec "$upstream" unbound -d -c "$work/unbound.conf" &
disown
for _ in $(seq 1 50); do
  grep -q "start of service" "$work/unbound.log" 2>/dev/null && break
  sleep 0.1
done

cat >"$work/dae" <<EOF
config dae 'config'
	option enabled '1'
	option log_level 'info'
	list lan_interface 'br-lan'
	option tproxy_port '12345'
	option bpf_object '$repo/ebpf/build/dae_tc.bpfel.o'
	option status_socket '$work/dae.sock'

config dns 'dns'
	option cache_size '4096'
	list request_rule 'qname(suffix: blocked.example) -> reject'
	option request_fallback 'lab'

config upstream 'lab'
	option address 'udp://203.0.113.53:53'
EOF
echo "== /etc/config/dae on the router"
cat "$work/dae"
ip netns exec "$router" "$repo/target/release/dae" run -c "$work/dae" 2>"$work/dae.log" &
disown
for _ in $(seq 1 50); do
  grep -q "started with" "$work/dae.log" 2>/dev/null && break
  sleep 0.1
done

show() {
  echo
  echo "== client: $*"
  in_client "$@" || true
}
show dig +tries=1 +time=3 @203.0.113.53 www.lab.example A
show dig +tries=1 +time=3 @203.0.113.99 www.lab.example A
show dig +tries=1 +time=3 +tcp @2001:db8:3::99 www.lab.example AAAA
show dig +tries=1 +time=3 @203.0.113.99 ads.blocked.example A
echo
echo "== router: tc filter show dev br-lan ingress"
ip netns exec "$router" tc filter show dev br-lan ingress
echo
echo "== router: dae status"
"$repo/target/release/dae" status -s "$work/dae.sock"
echo
echo "== dae's log"
cat "$work/dae.log"
echo
echo "== upstream's query log (the router asks, at 198.51.100.1 / 2001:db8:2::1; never the client)"
grep " info: " "$work/unbound.log" | grep -v "start of service" || true

ip netns pids "$router" | xargs -r kill
sleep 0.3
echo
echo "== dae stopped: the client's DNS goes straight to the server again (fail open),"
echo "== and 203.0.113.99, where no host is, stays silent (only dae answered there)"
show dig +tries=1 +time=2 +short @203.0.113.53 www.lab.example A
show dig +tries=1 +time=2 +short @203.0.113.99 www.lab.example A
