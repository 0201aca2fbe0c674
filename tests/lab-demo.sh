#!/usr/bin/env bash
# The main job, shown and checked in the namespace lab (tests/lab.sh): a LAN
# client's DNS answered through dae on the router, and its web traffic routed
# by dae: a name the rules send to a proxy goes through a Shadowsocks node,
# another goes out directly without ever reaching dae.
#
# Builds dae (its TC program is built into it), creates the lab (client,
# router with br-lan, an upstream namespace running unbound), starts dae on
# the router exactly as on OpenWrt (TC program on br-lan, UCI config), then
# lets the client ask with dig: the real server, an address with no host
# behind it (203.0.113.99), over UDP and TCP, IPv4 and IPv6, and a name a
# reject rule blocks. Each answer is checked (status and records), and so
# are the upstream's query log (it saw the router, never the client), dae's
# status and, once dae is stopped, fail open. Before that, the client's curl
# to a name routed by 'domain(suffix: proxied.example) -> proxy' is checked
# to arrive through the node (ss-server in the upstream namespace; its log is
# shown), and a direct name to arrive from the router's WAN address with
# dae's relay untouched. It ends with one line,
# `lab demo: OK` or `lab demo: FAIL (what)`, and exits 1 on FAIL.
# Everything is removed at the end, also on failure or Ctrl-C.
#
# Usage (as root on Debian 12): tests/lab-demo.sh
# Knobs (tests/lab_demo.rs uses them):
#   DAE_DEMO_BIN=PATH          run this dae binary instead of building one
#   DAE_DEMO_NO_HANDOVER=1     remove dae's TC filter from br-lan after
#                              start: nothing is handed to dae, and the demo
#                              must say FAIL
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
# shellcheck source=tests/deps.sh
. tests/deps.sh
need_root
install_packages "${DAE_DEMO_PACKAGES[@]}"

if [ -n "${DAE_DEMO_BIN:-}" ]; then
  dae=$DAE_DEMO_BIN
else
  ensure_rust
  echo "== building dae (cargo build --release: its TC program, ebpf/dae_tc.c, is compiled"
  echo "== with clang and built into the binary; a first build takes a few minutes)"
  cargo build --release --locked -q
  dae=$repo/target/release/dae
fi

prefix="demo$$"
work=$(mktemp -d /tmp/dae-demo.XXXXXX)
cleanup() {
  tests/lab.sh down "$prefix"
  rm -rf "$work" "/etc/netns/$prefix-up"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
tests/lab.sh up "$prefix"
client="$prefix-client"
router="$prefix-router"
upstream="$prefix-up"
in_client() { ip netns exec "$client" "$@"; }

failures=()
fail() {
  echo "   !! $*"
  failures+=("$*")
}
indent() { sed 's/^/   /'; }
caption() {
  echo
  echo "== $*"
}

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
  local-data: "www.proxied.example. 300 IN A 203.0.113.81"
  local-data: "www.direct.example. 300 IN A 203.0.113.84"
EOF
ip netns exec "$upstream" unbound -d -c "$work/unbound.conf" &
disown
# The web: a proxy node (Shadowsocks) and two web sites in the upstream
# namespace, and the router masquerading what leaves by its WAN port for
# them, as OpenWrt does (not for the DNS server: its log must show whether
# a query came from the client or from dae).
for a in 203.0.113.80 203.0.113.81 203.0.113.84; do
  ip -n "$upstream" addr add "$a/32" dev lo
done
# The node resolves the names dae hands it (dae dials a sniffed name, not
# the address) with the lab's unbound: 'ip netns exec' puts this file over
# /etc/resolv.conf in the upstream namespace.
mkdir -p "/etc/netns/$upstream"
echo "nameserver 203.0.113.53" >"/etc/netns/$upstream/resolv.conf"
ip netns exec "$upstream" ss-server -s 203.0.113.80 -p 8388 -k demo-secret \
  -m aes-256-gcm -u -v >"$work/node.log" 2>&1 &
disown
ip netns exec "$upstream" python3 -u tests/servers/web.py >"$work/web.log" 2>&1 &
disown
ip netns exec "$router" nft -f - <<'NFT'
table ip nat {
  chain post {
    type nat hook postrouting priority 100;
    oifname "wan0" ip daddr { 203.0.113.81, 203.0.113.84 } masquerade
  }
}
NFT
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
	option status_socket '$work/dae.sock'
	# The health checks ask the lab's web site and DNS server instead of
	# the Internet.
	option check_interval '5'
	option tcp_check_url 'http://203.0.113.81/check'
	option udp_check_dns '203.0.113.53:53'

config dns 'dns'
	option cache_size '4096'
	list request_rule 'qname(suffix: blocked.example) -> reject'
	option request_fallback 'lab'

config upstream 'lab'
	option address 'udp://203.0.113.53:53'

config node 'hk1'
	option link 'ss://$(printf 'aes-256-gcm:demo-secret' | base64 -w0)@203.0.113.80:8388'

config group 'proxy'
	list node 'hk1'

config routing 'routing'
	list rule 'domain(suffix: proxied.example) -> proxy'
	option fallback 'direct'
EOF
caption "/etc/config/dae on the router (no bpf_object: the TC program built into dae is used)"
cat "$work/dae"
ip netns exec "$router" "$dae" run -c "$work/dae" 2>"$work/dae.log" &
disown
for _ in $(seq 1 50); do
  grep -q "started with" "$work/dae.log" 2>/dev/null && break
  sleep 0.1
done
grep -q "started with" "$work/dae.log" || fail "dae did not start (its log is below)"
if [ "${DAE_DEMO_NO_HANDOVER:-0}" = 1 ]; then
  caption "DAE_DEMO_NO_HANDOVER=1: removing dae's TC filter from br-lan (nothing is handed to dae now)"
  ip netns exec "$router" tc filter del dev br-lan ingress
fi

# ask WANT_STATUS WANT_ANSWER DIG_ARGS...: the client runs dig, the output is
# shown, and its status and answer records (name, type, data, sorted and
# joined with "; ", or "" for an empty answer section) are checked.
ask() {
  local want_status=$1 want=$2 out status got
  shift 2
  echo "-- client: dig $*"
  out=$(in_client dig +tries=1 +time=3 "$@" 2>&1) || true
  indent <<<"$out"
  status=$(sed -n 's/^;; ->>HEADER<<- .* status: \([A-Z]*\),.*/\1/p' <<<"$out")
  got=$(awk '/^;; ANSWER SECTION:/ { on = 1; next }
             on && NF == 0 { on = 0 }
             on { print $1, $4, $5 }' <<<"$out" | sort | paste -sd';' - | sed 's/;/; /g')
  if [ -z "$status" ]; then
    fail "dig $*: no answer"
  elif [ "$status" != "$want_status" ] || [ "$got" != "$want" ]; then
    fail "dig $*: got $status [$got], want $want_status [$want]"
  else
    echo "   ok: $status [$got]"
  fi
}

caption "1. The client asks the real server, 203.0.113.53, over UDP. dae's TC program on br-lan
   hands the query to dae (no NAT), dae asks unbound from the router's own address and
   answers from 203.0.113.53, as the client expects."
ask NOERROR "www.lab.example. A 192.0.2.80" @203.0.113.53 www.lab.example A

caption "2. The client asks 203.0.113.99, where no host is. Only dae, through the hand-over,
   can answer there (the same name: this answer comes from dae's cache)."
ask NOERROR "www.lab.example. A 192.0.2.80" @203.0.113.99 www.lab.example A

caption "3. IPv6 over TCP, to 2001:db8:3::99, where no host is either: the TCP connection itself
   is handed to dae."
ask NOERROR "www.lab.example. AAAA 2001:db8::80" +tcp @2001:db8:3::99 www.lab.example AAAA

caption "4. A name the reject rule 'qname(suffix: blocked.example) -> reject' matches: dae
   answers at once with NOERROR and an empty answer section (as dae does: stub resolvers
   cache it briefly, browsers show no 'no such domain' page, apps do not fall back to
   another resolver); the upstream never sees the name."
ask NOERROR "" @203.0.113.99 ads.blocked.example A

caption "router: tc filter show dev br-lan ingress (dae's filter, dae_lan_ingress)"
filters=$(ip netns exec "$router" tc filter show dev br-lan ingress)
indent <<<"$filters"
grep -q dae_lan_ingress <<<"$filters" || fail "no dae_lan_ingress filter on br-lan"

caption "router: dae status. 'seen' counts packets, not queries: every packet to port 53 that
   enters br-lan from the LAN. The three UDP queries are one packet each; the TCP query of
   step 3 is a whole connection (SYN, the ACK, the query, the ACK of the answer, FIN and the
   last ACK), each packet handed to dae's socket. So 4 queries are about 9 packets seen, all
   of them handed to dae (none passed: dae was listening)."
status=$("$dae" status -s "$work/dae.sock" 2>&1) || true
indent <<<"$status"
read -r seen handed < <(sed -n 's/^datapath: \([0-9]*\) seen, \([0-9]*\) handed.*/\1 \2/p' <<<"$status") || true
queries=$(sed -n 's/^dns: \([0-9]*\) queries.*/\1/p' <<<"$status")
if [ "${queries:-0}" != 4 ]; then
  fail "dae status: ${queries:-no} queries, want 4"
fi
if [ "${handed:-0}" -lt 4 ] || [ "${handed:-0}" != "${seen:-}" ]; then
  fail "dae status: ${seen:-no} packets seen and ${handed:-no} handed to dae, want at least 4, all handed"
fi

caption "dae's log"
indent <"$work/dae.log"

caption "upstream's query log: every query came from the router (198.51.100.1, 2001:db8:2::1),
   never from the client (192.0.2.10, 2001:db8:1::10): dae asked for it. (Left out: the
   node's UDP health check, '. NS', which dae asks through the node.)"
queries_seen=$(grep " info: " "$work/unbound.log" | grep -v "start of service" | grep -v ' \. NS IN' || true)
indent <<<"$queries_seen"
sources=$(awk '{ for (i = 1; i < NF; i++) if ($i == "info:") print $(i + 1) }' <<<"$queries_seen" | sort -u | paste -sd' ' -)
if [ -z "$sources" ]; then
  fail "the upstream saw no query"
else
  for s in $sources; do
    case "$s" in
      198.51.100.1 | 2001:db8:2::1) ;;
      *) fail "the upstream saw a query from $s, not from the router" ;;
    esac
  done
fi
if grep -q "blocked.example" <<<"$queries_seen"; then
  fail "the upstream saw the rejected name"
fi

# curl_peer NAME ADDRESS PATH: the client fetches http://NAME/PATH (at
# ADDRESS); prints the web site's line, "peer=WHO host=NAME path=PATH".
curl_peer() {
  in_client curl -sS --max-time 5 --resolve "$1:80:$2" "http://$1/$3" 2>&1 || true
}
peer_of() { sed -n 's/^peer=\([^ ]*\) .*/\1/p' <<<"$1"; }

for _ in $(seq 1 100); do
  "$dae" status --json -s "$work/dae.sock" 2>/dev/null | grep -q '"tcp4":{"alive":true' && break
  sleep 0.2
done
caption "5. The client looks up www.proxied.example through dae, then fetches it with curl. The
   rule 'domain(suffix: proxied.example) -> proxy' holds: dae wrote the answer's address
   into the kernel's map with the rules its name matches, the TC program sends the
   connection to dae, and dae relays it through node hk1 (ss-server). The web site sees
   the node (203.0.113.x), not the router (198.51.100.1)."
ask NOERROR "www.proxied.example. A 203.0.113.81" @203.0.113.53 www.proxied.example A
echo "-- client: curl http://www.proxied.example/via-node"
line=$(curl_peer www.proxied.example 203.0.113.81 via-node)
indent <<<"$line"
case "$(peer_of "$line")" in
  203.0.113.*) echo "   ok: through the node" ;;
  *) fail "curl www.proxied.example: not through the node: $line" ;;
esac
caption "the node's log (ss-server -v): dae sniffed the name from the request's Host and
   asked the node for www.proxied.example:80, which the node resolved itself (its other
   lines are dae's health checks)"
indent <"$work/node.log"
grep -q "connect to www.proxied.example:80" "$work/node.log" ||
  fail "the node's log shows no connection to www.proxied.example:80"

caption "6. www.direct.example matches no rule: the fallback sends it direct. The TC program
   lets its packets through untouched (dae's relay never sees a byte), and the site sees
   the router's WAN address (masquerade)."
ask NOERROR "www.direct.example. A 203.0.113.84" @203.0.113.53 www.direct.example A
echo "-- client: curl http://www.direct.example/direct"
line=$(curl_peer www.direct.example 203.0.113.84 direct)
indent <<<"$line"
if [ "$(peer_of "$line")" = 198.51.100.1 ]; then
  echo "   ok: from the router's WAN address"
else
  fail "curl www.direct.example: not direct: $line"
fi

caption "router: dae status. 'lan flows' are the kernel's verdicts; 'relay via hk1' is the
   one connection dae carried (the direct one never reached it)."
status=$("$dae" status -s "$work/dae.sock" 2>&1) || true
indent <<<"$status"
grep -q "^relay via hk1: [0-9]* open, 1 in all" <<<"$status" ||
  fail "dae status: the relay should show 1 connection via hk1"
if grep -q "^relay via direct" <<<"$status"; then
  fail "dae status: a direct flow went through dae's relay"
fi

ip netns pids "$router" | xargs -r kill
sleep 0.3
caption "dae stopped: the client's DNS goes straight to the server again (fail open: the TC
   program finds no listener and lets the packet pass), and 203.0.113.99, where no host is,
   stays silent (only dae answered there)"
ask NOERROR "www.lab.example. A 192.0.2.80" @203.0.113.53 www.lab.example A
echo "-- client: dig @203.0.113.99 www.lab.example A (must time out)"
if out=$(in_client dig +tries=1 +time=2 @203.0.113.99 www.lab.example A 2>&1); then
  indent <<<"$out"
  fail "203.0.113.99 answered with dae stopped"
else
  echo "   ok: no answer ($(grep -m1 -o 'timed out\|no servers could be reached' <<<"$out" || echo "dig failed"))"
fi

echo
if [ "${#failures[@]}" -eq 0 ]; then
  echo "lab demo: OK"
else
  what=$(printf '%s; ' "${failures[@]}")
  echo "lab demo: FAIL (${what%; })"
  exit 1
fi
