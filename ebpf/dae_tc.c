/* dae's TC (clsact) ingress program for the LAN interfaces.
 *
 * Port-53 traffic (UDP and TCP, IPv4 and IPv6) from the LAN is handed to the
 * daemon's transparent listener without NAT: the listener socket is looked up
 * and assigned to the packet (bpf_sk_assign) and the packet is marked so that
 * policy routing delivers it locally. The daemon then sees the client's own
 * source and the original destination. Everything else passes untouched.
 *
 * When no listener is there (daemon stopped, crashed, killed) the packet
 * passes untouched (fail open), or is dropped if the owner asked for
 * fail_closed.
 *
 * Kernel reach: 5.10 and later, with or without kernel BTF. No CO-RE
 * relocations, no bpf_loop, and only these helpers:
 *   bpf_map_lookup_elem   3.19
 *   bpf_sk_lookup_udp     4.20     bpf_sk_lookup_tcp  4.20
 *   bpf_skc_lookup_tcp    5.2      bpf_sk_release     4.20
 *   bpf_sk_assign         5.7 (TC ingress)
 * Map types: BPF_MAP_TYPE_ARRAY (3.19), BPF_MAP_TYPE_PERCPU_ARRAY (4.6).
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

static __always_inline void count(__u32 which)
{
	__u64 *c = bpf_map_lookup_elem(&dae_counters, &which);

	if (c)
		*c += 1;
}

/* Finds the socket that should get this packet: for TCP, the connection
 * already accepted from this client if there is one, else the listener. */
static __always_inline struct bpf_sock *
find_socket(struct __sk_buff *skb, struct bpf_sock_tuple *t, __u32 tlen,
	    __u8 proto, __be16 *dport, __be16 listener)
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
	*dport = listener;
	return bpf_sk_lookup_tcp(skb, t, tlen, BPF_F_CURRENT_NETNS, 0);
}

static __always_inline int hand_over(struct __sk_buff *skb,
				     const struct dae_settings *s,
				     struct bpf_sock_tuple *t, __u32 tlen,
				     __u8 proto, __be16 *dport)
{
	struct bpf_sock *sk;
	long err;

	count(DAE_CTR_SEEN);
	sk = find_socket(skb, t, tlen, proto, dport,
			 bpf_htons((__u16)s->listener_port));
	if (!sk) {
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
		count(DAE_CTR_ASSIGN_FAILED);
		return s->fail_closed ? TC_ACT_SHOT : TC_ACT_OK;
	}
	skb->mark = s->tproxy_mark;
	count(DAE_CTR_HANDED);
	return TC_ACT_OK;
}

SEC("classifier")
int dae_lan_ingress(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct bpf_sock_tuple t = {};
	const struct dae_settings *s;
	__u32 zero = 0;
	__u8 proto;
	void *l4;

	if ((void *)(eth + 1) > end)
		return TC_ACT_OK;
	s = bpf_map_lookup_elem(&dae_settings, &zero);
	if (!s || s->listener_port == 0)
		return TC_ACT_OK;
	if (s->so_mark && skb->mark == s->so_mark)
		return TC_ACT_OK;

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
		if (proto == IPPROTO_UDP) {
			struct udphdr *udp = l4;

			if ((void *)(udp + 1) > end || udp->dest != bpf_htons(DNS_PORT))
				return TC_ACT_OK;
			t.ipv4.sport = udp->source;
			t.ipv4.dport = udp->dest;
		} else if (proto == IPPROTO_TCP) {
			struct tcphdr *tcp = l4;

			if ((void *)(tcp + 1) > end || tcp->dest != bpf_htons(DNS_PORT))
				return TC_ACT_OK;
			t.ipv4.sport = tcp->source;
			t.ipv4.dport = tcp->dest;
		} else {
			return TC_ACT_OK;
		}
		return hand_over(skb, s, &t, sizeof(t.ipv4), proto, &t.ipv4.dport);
	}

	if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);

		if ((void *)(ip6 + 1) > end)
			return TC_ACT_OK;
		/* No extension headers: DNS does not use them. */
		proto = ip6->nexthdr;
		l4 = ip6 + 1;
		__builtin_memcpy(t.ipv6.saddr, &ip6->saddr, 16);
		__builtin_memcpy(t.ipv6.daddr, &ip6->daddr, 16);
		if (proto == IPPROTO_UDP) {
			struct udphdr *udp = l4;

			if ((void *)(udp + 1) > end || udp->dest != bpf_htons(DNS_PORT))
				return TC_ACT_OK;
			t.ipv6.sport = udp->source;
			t.ipv6.dport = udp->dest;
		} else if (proto == IPPROTO_TCP) {
			struct tcphdr *tcp = l4;

			if ((void *)(tcp + 1) > end || tcp->dest != bpf_htons(DNS_PORT))
				return TC_ACT_OK;
			t.ipv6.sport = tcp->source;
			t.ipv6.dport = tcp->dest;
		} else {
			return TC_ACT_OK;
		}
		return hand_over(skb, s, &t, sizeof(t.ipv6), proto, &t.ipv6.dport);
	}
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
