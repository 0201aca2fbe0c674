/* dae's TC (clsact) ingress program for the LAN interfaces.
 *
 * Port-53 traffic (UDP and TCP, IPv4 and IPv6) from the LAN is handed to the
 * daemon's transparent listener without NAT: the listener socket is looked up
 * and assigned to the packet (bpf_sk_assign) and the packet is marked so that
 * policy routing delivers it locally. The daemon then sees the client's own
 * source and the original destination.
 *
 * Other TCP and UDP flows are routed here, by the `config routing` rules
 * the daemon compiled into maps (see dae_shared.h): on a flow's first
 * packet the program evaluates the rules and keeps the verdict per flow
 * (dae_flows, an LRU map), so later packets cost one lookup. direct: the
 * packet goes on untouched, no byte of it reaches the daemon. block:
 * dropped. A group: handed to the same transparent listener as DNS, whose
 * relays send it through a node. Traffic to the router itself, between LAN
 * subnets, multicast and the like is never routed (the daemon fills the
 * bypass prefixes).
 *
 * A TCP flow's SYN always decides anew. UDP has no SYN: a UDP flow decides
 * anew when the rules in force are not the ones that decided it (a reload
 * applies to UDP flows at once; their relay endpoints follow). Only UDP to
 * port 443 is handed over to sniff a domain (QUIC); other UDP goes by its
 * address. IPv4 fragments carry no ports and pass untouched: a fragmented
 * datagram of a proxied flow goes direct (as in dae), which a LAN client
 * avoids by path MTU discovery (QUIC never fragments).
 *
 * When no listener is there (daemon stopped, crashed, killed) the packet
 * passes untouched (fail open), or is dropped if the owner asked for
 * fail_closed.
 *
 * Kernel reach: 5.10 and later, with or without kernel BTF. No CO-RE
 * relocations, no bpf_loop (the rule loop is a bounded loop, 5.3), and only
 * these helpers:
 *   bpf_map_lookup_elem   3.19     bpf_map_update_elem 3.19
 *   bpf_ktime_get_ns      4.1
 *   bpf_sk_lookup_udp     4.20     bpf_sk_lookup_tcp  4.20
 *   bpf_skc_lookup_tcp    5.2      bpf_sk_release     4.20
 *   bpf_sk_assign         5.7 (TC ingress)
 * Map types: ARRAY (3.19), HASH (3.19), PERCPU_ARRAY (4.6), LRU_HASH
 * (4.10), LPM_TRIE (4.11).
 * Built for both byte orders (bpfel, bpfeb): see ebpf/build.sh.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "dae_shared.h"

#define DNS_PORT 53
#define QUIC_PORT 443
/* decide(): the destination is never routed (a bypass prefix). */
#define TARGET_BYPASS 0xffffffff
#define IP_MF 0x2000
#define IP_OFFSET 0x1fff

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dae_settings);
} dae_settings SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DAE_CTR_MAX);
	__type(key, __u32);
	__type(value, __u64);
} dae_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct dae_routing);
} dae_routing SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, DAE_LPM_ENTRIES);
	__type(key, struct dae_lpm_key);
	__type(value, struct dae_bits);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} dae_route_lpm SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, DAE_MAC_ENTRIES);
	__type(key, struct dae_mac_key);
	__type(value, struct dae_bits);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} dae_route_mac SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, DAE_DOMAIN_ENTRIES);
	__type(key, struct dae_domain_key);
	__type(value, struct dae_domain);
} dae_domains SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, DAE_FLOW_ENTRIES);
	__type(key, struct dae_flow_key);
	__type(value, struct dae_flow);
} dae_flows SEC(".maps");

static __always_inline void count(__u32 which)
{
	__u64 *c = bpf_map_lookup_elem(&dae_counters, &which);

	if (c)
		*c += 1;
}

/* hand_over()'s `what`. */
#define HAND_DNS 1
/* A proxied flow's SYN: the listener takes it. */
#define HAND_FLOW_SYN 2
/* A proxied flow's later packet: for TCP only the relay's accepted
 * socket; UDP has no connection, every datagram goes to the listener. */
#define HAND_FLOW_LATER 3

/* Finds the socket that should get this packet: for TCP, the connection
 * already accepted from this client if there is one, else (unless
 * `accepted_only`) the listener. */
static __always_inline struct bpf_sock *
find_socket(struct __sk_buff *skb, struct bpf_sock_tuple *t, __u32 tlen,
	    __u8 proto, __be16 *dport, __be16 listener, int accepted_only)
{
	struct bpf_sock *sk;

	if (proto == IPPROTO_UDP) {
		*dport = listener;
		return bpf_sk_lookup_udp(skb, t, tlen, BPF_F_CURRENT_NETNS, 0);
	}
	sk = bpf_skc_lookup_tcp(skb, t, tlen, BPF_F_CURRENT_NETNS, 0);
	if (sk) {
		if (sk->state != BPF_TCP_LISTEN)
			return sk;
		bpf_sk_release(sk);
	}
	if (accepted_only)
		return 0;
	*dport = listener;
	return bpf_sk_lookup_tcp(skb, t, tlen, BPF_F_CURRENT_NETNS, 0);
}

/* Hands the packet to the daemon: DNS to its listener, or a routed
 * flow's packet to its relay (the accepted socket, or the listener for a
 * SYN). With no socket there, DNS passes (fail open) or is dropped (fail
 * closed), and a flow gets `on_fail`. */
static __always_inline int hand_over(struct __sk_buff *skb,
				     const struct dae_settings *s,
				     struct bpf_sock_tuple *t, __u32 tlen,
				     __u8 proto, __be16 *dport, int what,
				     int on_fail)
{
	int dns = what == HAND_DNS;
	struct bpf_sock *sk;
	long err;

	if (dns)
		count(DAE_CTR_SEEN);
	sk = find_socket(skb, t, tlen, proto, dport,
			 bpf_htons((__u16)s->listener_port),
			 what == HAND_FLOW_LATER);
	if (!sk) {
		if (!dns) {
			count(DAE_CTR_FLOW_NO_RELAY);
			return on_fail;
		}
		if (s->fail_closed) {
			count(DAE_CTR_DROPPED);
			return TC_ACT_SHOT;
		}
		count(DAE_CTR_PASSED);
		return TC_ACT_OK;
	}
	err = bpf_sk_assign(skb, sk, 0);
	bpf_sk_release(sk);
	if (err) {
		if (!dns) {
			count(DAE_CTR_FLOW_NO_RELAY);
			return on_fail;
		}
		count(DAE_CTR_ASSIGN_FAILED);
		return s->fail_closed ? TC_ACT_SHOT : TC_ACT_OK;
	}
	skb->mark = s->tproxy_mark;
	if (dns)
		count(DAE_CTR_HANDED);
	return TC_ACT_OK;
}

/* What routing looks at in one packet, read once. */
struct flow_facts {
	struct dae_flow_key key;
	__u8 mac[6];
	__u8 dscp;
	/* A TCP SYN without ACK: the first packet of a connection. */
	__u8 syn;
};

static __always_inline void or_bits(struct dae_bits *c, const struct dae_bits *b)
{
	c->w[0] |= b->w[0];
	c->w[1] |= b->w[1];
}

/* Looks up the longest prefix of kind `kind` covering the first `bits`
 * bits of `addr` (16 bytes, zero past `bits`). */
static __always_inline const struct dae_bits *
lpm(struct dae_lpm_key *k, __u8 kind, const __u8 *addr, __u32 bits)
{
	k->prefixlen = 8 + bits;
	k->kind = kind;
	__builtin_memcpy(k->addr, addr, 16);
	return bpf_map_lookup_elem(&dae_route_lpm, k);
}

static __always_inline const struct dae_bits *
lpm_port(struct dae_lpm_key *k, __u8 kind, __be16 port)
{
	__builtin_memset(k->addr, 0, 16);
	__builtin_memcpy(k->addr, &port, 2);
	k->prefixlen = 8 + 16;
	k->kind = kind;
	return bpf_map_lookup_elem(&dae_route_lpm, k);
}

static __always_inline int rule_holds(const struct dae_rule *r,
				      const struct dae_bits *c)
{
	return (c->w[0] & r->need.w[0]) == r->need.w[0] &&
	       (c->w[1] & r->need.w[1]) == r->need.w[1] &&
	       !(c->w[0] & r->deny.w[0]) && !(c->w[1] & r->deny.w[1]);
}

/* Whether some domain could make the rule hold, or stop it holding: it
 * looks at domain() and its other conditions hold. */
static __always_inline int domain_could_decide(const struct dae_rule *r,
					       const struct dae_bits *c,
					       const struct dae_bits *m)
{
	__u64 need0 = r->need.w[0] & ~m->w[0], need1 = r->need.w[1] & ~m->w[1];
	__u64 deny0 = r->deny.w[0] & ~m->w[0], deny1 = r->deny.w[1] & ~m->w[1];

	if (!((r->need.w[0] | r->deny.w[0]) & m->w[0]) &&
	    !((r->need.w[1] | r->deny.w[1]) & m->w[1]))
		return 0;
	return (c->w[0] & need0) == need0 && (c->w[1] & need1) == need1 &&
	       !(c->w[0] & deny0) && !(c->w[1] & deny1);
}

/* The routing rules' verdict on a new flow, with the conditions that held
 * in `held`; TARGET_BYPASS when the destination is never routed. */
static __always_inline __u32 decide(const struct dae_routing *rt,
				    __u32 slot, const struct flow_facts *f,
				    struct dae_bits *held, __u32 *sniff)
{
	int known = 0;
	__u8 gen = slot << 4;
	const struct dae_bits *b;
	struct dae_lpm_key k = {};
	struct dae_mac_key mk = {};
	const struct dae_domain *d;
	__u32 ipv6 = f->key.ipv6 ? 1 : 0;
	__u32 abits = ipv6 ? 128 : 32;
	__u32 i;

	if (lpm(&k, gen | (ipv6 ? DAE_LPM_BYPASS6 : DAE_LPM_BYPASS4), f->key.daddr, abits))
		return TARGET_BYPASS;

	b = &rt->proto[((f->key.proto == IPPROTO_UDP) << 1 | ipv6) & 3];
	held->w[0] = b->w[0];
	held->w[1] = b->w[1];
	b = &rt->dscp[f->dscp & (DAE_DSCP_VALUES - 1)];
	or_bits(held, b);
	b = lpm(&k, gen | (ipv6 ? DAE_LPM_DIP6 : DAE_LPM_DIP4), f->key.daddr, abits);
	if (b)
		or_bits(held, b);
	b = lpm(&k, gen | (ipv6 ? DAE_LPM_SIP6 : DAE_LPM_SIP4), f->key.saddr, abits);
	if (b)
		or_bits(held, b);
	b = lpm_port(&k, gen | DAE_LPM_DPORT, f->key.dport);
	if (b)
		or_bits(held, b);
	b = lpm_port(&k, gen | DAE_LPM_SPORT, f->key.sport);
	if (b)
		or_bits(held, b);
	__builtin_memcpy(mk.mac, f->mac, 6);
	mk.slot = slot;
	b = bpf_map_lookup_elem(&dae_route_mac, &mk);
	if (b)
		or_bits(held, b);
	{
		struct dae_domain_key dk = {};

		if (ipv6) {
			__builtin_memcpy(dk.addr, f->key.daddr, 16);
		} else {
			dk.addr[10] = 0xff;
			dk.addr[11] = 0xff;
			__builtin_memcpy(&dk.addr[12], f->key.daddr, 4);
		}
		d = bpf_map_lookup_elem(&dae_domains, &dk);
		if (d && d->gen == rt->domain_gen &&
		    d->expires > bpf_ktime_get_ns()) {
			or_bits(held, &d->bits);
			known = 1;
		}
	}

#pragma clang loop unroll(disable)
	for (i = 0; i < DAE_MAX_RULES; i++) {
		if (i >= rt->n_rules)
			break;
		if (!known &&
		    domain_could_decide(&rt->rules[i], held, &rt->domain_mask))
			*sniff = 1;
		if (rule_holds(&rt->rules[i], held))
			return rt->rules[i].target;
	}
	return rt->fallback;
}

/* A TCP or UDP packet of a LAN flow that is not DNS. */
static __always_inline int route(struct __sk_buff *skb,
				 const struct dae_settings *s,
				 const struct flow_facts *f,
				 struct bpf_sock_tuple *t, __u32 tlen,
				 __be16 *dport)
{
	const struct dae_routing *rt;
	struct dae_flow *known;
	struct dae_flow fresh = {};
	__u32 sniff = 0;
	__u32 target;
	__u32 slot;
	int on_fail;

	slot = s->routing_slot & 1;
	rt = bpf_map_lookup_elem(&dae_routing, &slot);
	if (!rt || !rt->enabled)
		return TC_ACT_OK;
	/* A SYN always decides anew: a reload's rules apply to new flows,
	 * and a port reused for a new connection is a new flow. A UDP flow
	 * decides anew under new rules. */
	known = f->syn ? 0 : bpf_map_lookup_elem(&dae_flows, &f->key);
	if (known && f->key.proto == IPPROTO_UDP && known->slot != slot)
		known = 0;
	if (known) {
		target = known->target;
		sniff = known->sniff;
	} else {
		/* A SYN, or a flow not seen yet (under way before the daemon
		 * started, or dropped from the LRU map): its packets go where
		 * the rules say; a proxied one that finds no relay socket
		 * meets the failure policy in hand_over(). */
		target = decide(rt, slot, f, &fresh.held, &fresh.sniff);
		/* UDP names its domain only in a QUIC Initial. */
		if (f->key.proto == IPPROTO_UDP &&
		    f->key.dport != bpf_htons(QUIC_PORT))
			fresh.sniff = 0;
		if (target == TARGET_BYPASS) {
			/* Not kept: the next packet looks again. */
			count(DAE_CTR_FLOW_BYPASS);
			return TC_ACT_OK;
		}
		fresh.target = target;
		fresh.slot = slot;
		bpf_map_update_elem(&dae_flows, &f->key, &fresh, BPF_ANY);
		sniff = fresh.sniff;
		if (sniff)
			count(DAE_CTR_FLOW_SNIFF);
		else if (target == DAE_TARGET_DIRECT)
			count(DAE_CTR_FLOW_DIRECT);
		else if (target == DAE_TARGET_BLOCK)
			count(DAE_CTR_FLOW_BLOCK);
		else
			count(DAE_CTR_FLOW_PROXY);
	}
	/* A flow to sniff goes to the daemon whatever the verdict without
	 * its domain. */
	if (!sniff && target == DAE_TARGET_DIRECT)
		return TC_ACT_OK;
	if (!sniff && target == DAE_TARGET_BLOCK)
		return TC_ACT_SHOT;
	/* Without a relay: what the verdict would be with the daemon gone.
	 * A group's flow passes (fail open) or is dropped (fail closed); one
	 * handed over only to sniff gets its verdict without a domain. */
	if (target == DAE_TARGET_BLOCK)
		on_fail = TC_ACT_SHOT;
	else if (target == DAE_TARGET_DIRECT)
		on_fail = TC_ACT_OK;
	else
		on_fail = s->fail_closed ? TC_ACT_SHOT : TC_ACT_OK;
	return hand_over(skb, s, t, tlen, f->key.proto, dport,
			 f->syn ? HAND_FLOW_SYN : HAND_FLOW_LATER, on_fail);
}

/* Fills the TCP or UDP part of the tuple and the flow key from the L4
 * header at `l4`; 0 when there is none to read. */
static __always_inline int read_ports(void *l4, void *end, __u8 proto,
				      __be16 *sport, __be16 *dport,
				      struct flow_facts *f)
{
	if (proto == IPPROTO_UDP) {
		struct udphdr *udp = l4;

		if ((void *)(udp + 1) > end)
			return 0;
		*sport = udp->source;
		*dport = udp->dest;
	} else if (proto == IPPROTO_TCP) {
		struct tcphdr *tcp = l4;
		__u8 flags;

		if ((void *)(tcp + 1) > end)
			return 0;
		*sport = tcp->source;
		*dport = tcp->dest;
		/* The flags byte (13), read as a byte: the bitfields'
		 * places follow the byte order compiled against. */
		flags = *((__u8 *)tcp + 13);
		f->syn = (flags & 0x12) == 0x02;
	} else {
		return 0;
	}
	f->key.sport = *sport;
	f->key.dport = *dport;
	f->key.proto = proto;
	return 1;
}

SEC("classifier")
int dae_lan_ingress(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct bpf_sock_tuple t = {};
	struct flow_facts f = {};
	const struct dae_settings *s;
	__u32 zero = 0;
	__u32 tlen;
	__be16 *dport;
	__u8 proto;
	void *l4;

	if ((void *)(eth + 1) > end)
		return TC_ACT_OK;
	s = bpf_map_lookup_elem(&dae_settings, &zero);
	if (!s || s->listener_port == 0)
		return TC_ACT_OK;
	if (s->so_mark && skb->mark == s->so_mark)
		return TC_ACT_OK;
	__builtin_memcpy(f.mac, eth->h_source, 6);

	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);

		/* The header length is the low nibble of the first byte. Not
		 * ip->ihl: that bitfield's place follows the byte order of the
		 * headers compiled against, which for bpfeb built on a
		 * little-endian host is the wrong one. */
		__u32 ihl;

		if ((void *)(ip + 1) > end)
			return TC_ACT_OK;
		ihl = *(__u8 *)ip & 0x0f;
		if (ihl < 5)
			return TC_ACT_OK;
		/* Only first, unfragmented packets carry a port. */
		if (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET))
			return TC_ACT_OK;
		proto = ip->protocol;
		l4 = (void *)ip + ihl * 4;
		t.ipv4.saddr = ip->saddr;
		t.ipv4.daddr = ip->daddr;
		if (!read_ports(l4, end, proto, &t.ipv4.sport, &t.ipv4.dport, &f))
			return TC_ACT_OK;
		__builtin_memcpy(f.key.saddr, &ip->saddr, 4);
		__builtin_memcpy(f.key.daddr, &ip->daddr, 4);
		f.dscp = ip->tos >> 2;
		tlen = sizeof(t.ipv4);
		dport = &t.ipv4.dport;
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		__u8 *v;

		if ((void *)(ip6 + 1) > end)
			return TC_ACT_OK;
		/* No extension headers: DNS does not use them, and a flow
		 * that does is not routed. */
		proto = ip6->nexthdr;
		l4 = ip6 + 1;
		__builtin_memcpy(t.ipv6.saddr, &ip6->saddr, 16);
		__builtin_memcpy(t.ipv6.daddr, &ip6->daddr, 16);
		if (!read_ports(l4, end, proto, &t.ipv6.sport, &t.ipv6.dport, &f))
			return TC_ACT_OK;
		__builtin_memcpy(f.key.saddr, &ip6->saddr, 16);
		__builtin_memcpy(f.key.daddr, &ip6->daddr, 16);
		f.key.ipv6 = 1;
		/* Traffic class: the 8 bits after the 4-bit version. */
		v = (__u8 *)ip6;
		f.dscp = (((v[0] & 0x0f) << 4) | (v[1] >> 4)) >> 2;
		tlen = sizeof(t.ipv6);
		dport = &t.ipv6.dport;
	} else {
		return TC_ACT_OK;
	}

	if (*dport == bpf_htons(DNS_PORT))
		return hand_over(skb, s, &t, tlen, proto, dport, HAND_DNS, 0);
	return route(skb, s, &f, &t, tlen, dport);
}

char LICENSE[] SEC("license") = "GPL";
