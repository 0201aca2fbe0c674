#!/usr/bin/env bash
# The namespace lab of shared/guide/testing.md: a home network on one machine.
#
#   PREFIX-client            PREFIX-router                      PREFIX-up
#   eth0 192.0.2.10/24  ---  lan0 [br-lan 192.0.2.1/24]
#        2001:db8:1::10/64         2001:db8:1::1/64
#                            wan0 198.51.100.1/24          ---  eth0 198.51.100.2/24
#                                 2001:db8:2::1/64                   2001:db8:2::2/64
#                                                               lo   203.0.113.53/32
#                                                                    2001:db8:3::53/128
#
# The client's default route is the router; the router routes 203.0.113.0/24
# and 2001:db8:3::/48 to the upstream namespace; the upstream routes the LAN
# back through the router. 203.0.113.99 and 2001:db8:3::99 have no host: a
# query sent there is answered only if dae takes it. Nothing routes out of
# the lab: no namespace has a default route to the host.
#
# Usage: tests/lab.sh up PREFIX    build the lab (namespaces PREFIX-client, ...)
#        tests/lab.sh down PREFIX  remove it (idempotent; also after a failure)
# PREFIX: a short per-run name, letters and digits, e.g. "dae$$".
set -euo pipefail

usage() {
  echo "usage: $0 up|down PREFIX" >&2
  exit 2
}
[ $# -eq 2 ] || usage
verb=$1
p=$2
case "$p" in
  *[!a-zA-Z0-9]* | "") usage ;;
esac
c="$p-client"
r="$p-router"
u="$p-up"

down() {
  local ns
  for ns in "$c" "$r" "$u"; do
    # Processes a test left in the namespace go with it.
    if ip netns pids "$ns" >/dev/null 2>&1; then
      ip netns pids "$ns" | xargs -r kill -9 2>/dev/null || true
    fi
    ip netns del "$ns" 2>/dev/null || true
  done
}

up() {
  down
  trap down ERR
  local ns
  for ns in "$c" "$r" "$u"; do
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    # Addresses are usable at once: no duplicate address detection.
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
  done

  # LAN: the client's eth0 on the router's bridge.
  ip -n "$r" link add br-lan type bridge forward_delay 0
  ip -n "$r" link add lan0 type veth peer name eth0 netns "$c"
  ip -n "$r" link set lan0 master br-lan
  ip -n "$r" link set lan0 up
  ip -n "$r" link set br-lan up
  ip -n "$r" addr add 192.0.2.1/24 dev br-lan
  ip -n "$r" addr add 2001:db8:1::1/64 dev br-lan nodad
  ip -n "$c" link set eth0 up
  ip -n "$c" addr add 192.0.2.10/24 dev eth0
  ip -n "$c" addr add 2001:db8:1::10/64 dev eth0 nodad
  ip -n "$c" route add default via 192.0.2.1
  ip -n "$c" -6 route add default via 2001:db8:1::1

  # WAN: the router's wan0 to the upstream namespace.
  ip -n "$r" link add wan0 type veth peer name eth0 netns "$u"
  ip -n "$r" link set wan0 up
  ip -n "$r" addr add 198.51.100.1/24 dev wan0
  ip -n "$r" addr add 2001:db8:2::1/64 dev wan0 nodad
  ip -n "$r" route add 203.0.113.0/24 via 198.51.100.2
  ip -n "$r" -6 route add 2001:db8:3::/48 via 2001:db8:2::2
  ip netns exec "$r" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
  ip -n "$u" link set eth0 up
  ip -n "$u" addr add 198.51.100.2/24 dev eth0
  ip -n "$u" addr add 2001:db8:2::2/64 dev eth0 nodad
  ip -n "$u" addr add 203.0.113.53/32 dev lo
  ip -n "$u" addr add 2001:db8:3::53/128 dev lo
  ip -n "$u" route add 192.0.2.0/24 via 198.51.100.1
  ip -n "$u" -6 route add 2001:db8:1::/64 via 2001:db8:2::1
  trap - ERR
}

case "$verb" in
  up) up ;;
  down) down ;;
  *) usage ;;
esac
