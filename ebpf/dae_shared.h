/* Types shared by the TC program (dae_tc.c) and the daemon (src/ebpf/shared.rs).
 *
 * Defined once on each side; tests/ebpf_abi.rs compiles this header with the
 * host C compiler and checks every size and offset against the Rust side.
 * Plain fixed-width fields only, no padding, so both byte orders agree on the
 * layout (values are in the byte order of the machine that runs both).
 */
#ifndef DAE_SHARED_H
#define DAE_SHARED_H

#include <linux/types.h>

/* Key 0 of the one-entry array map "dae_settings". */
struct dae_settings {
	/* The daemon's transparent listener port (host byte order). */
	__u32 listener_port;
	/* Mark put on packets handed to the listener; policy routing
	 * (fwmark -> local table) delivers them to this host. */
	__u32 tproxy_mark;
	/* Mark on the daemon's own sockets: such packets are never taken. */
	__u32 so_mark;
	/* 1: drop port-53 packets and proxied flows while no listener is
	 * there (fail closed); 0: let them pass untouched (fail open, the
	 * default). */
	__u32 fail_closed;
	/* Which of the two entries of "dae_routing" is in force (0 or 1).
	 * The daemon fills the other one, with the LPM and MAC entries of
	 * that slot, then flips this: a reload never shows the program half
	 * a rule set. */
	__u32 routing_slot;
};

/* Indexes into the per-CPU array map "dae_counters" (__u64 values). */
enum dae_counter {
	/* UDP or TCP packets to port 53 seen on the LAN interface. */
	DAE_CTR_SEEN = 0,
	/* ... handed to the daemon's listener. */
	DAE_CTR_HANDED = 1,
	/* ... passed untouched because no listener was there (fail open). */
	DAE_CTR_PASSED = 2,
	/* ... dropped because no listener was there (fail closed). */
	DAE_CTR_DROPPED = 3,
	/* ... passed because the socket assignment failed. */
	DAE_CTR_ASSIGN_FAILED = 4,
	/* New LAN flows (not DNS) the routing rules sent direct. */
	DAE_CTR_FLOW_DIRECT = 5,
	/* ... sent to a group (handed to the daemon's relay). */
	DAE_CTR_FLOW_PROXY = 6,
	/* ... blocked (dropped). */
	DAE_CTR_FLOW_BLOCK = 7,
	/* ... never routed: to the router itself, between LAN subnets,
	 * multicast and the like. */
	DAE_CTR_FLOW_BYPASS = 8,
	/* Packets of proxied flows with no relay socket to take them: passed
	 * (fail open) or dropped (fail closed). */
	DAE_CTR_FLOW_NO_RELAY = 9,
	/* New flows handed to the daemon to sniff their domain. */
	DAE_CTR_FLOW_SNIFF = 10,
	DAE_CTR_MAX = 11,
};

/* Routing of LAN flows.
 *
 * The daemon compiles the `config routing` rules into a condition bitmap:
 * every condition of every rule gets a bit. For a new flow the program
 * sets the bits of the conditions that hold (one LPM lookup per address
 * and port, one hash lookup for the MAC and for the addresses learned from
 * DNS answers, table lookups for the rest), then the first rule whose
 * `need` bits are all set and whose `deny` bits (negated conditions) are
 * all clear decides; else the fallback. The loop over the rules is a
 * bounded one (kernel 5.3), not bpf_loop (5.17).
 */
#define DAE_COND_WORDS 2
#define DAE_MAX_CONDITIONS (64 * DAE_COND_WORDS)
#define DAE_MAX_RULES 128
#define DAE_DSCP_VALUES 64

/* Targets of a rule (struct dae_rule.target, dae_routing.fallback,
 * dae_flow.target). Values from DAE_TARGET_GROUP up are groups, by index. */
#define DAE_TARGET_DIRECT 0
#define DAE_TARGET_BLOCK 1
#define DAE_TARGET_GROUP 2

/* Capacities of the routing maps. The LPM trie and the MAC hash allocate
 * entries as they are used; the two LRU maps are allocated whole (about
 * 100 bytes an entry with the kernel's own). */
#define DAE_LPM_ENTRIES 65536
#define DAE_MAC_ENTRIES 1024
#define DAE_DOMAIN_ENTRIES 8192
#define DAE_FLOW_ENTRIES 16384

struct dae_bits {
	__u64 w[DAE_COND_WORDS];
};

/* One rule: holds when every `need` bit is set and no `deny` bit is. */
struct dae_rule {
	struct dae_bits need;
	struct dae_bits deny;
	__u32 target;
	__u32 reserved;
};

/* The two entries of the array map "dae_routing" (see
 * dae_settings.routing_slot). */
struct dae_routing {
	/* Rules in use, at most DAE_MAX_RULES; 0 with `enabled` 0: routing
	 * is off and only DNS is handed over. */
	__u32 n_rules;
	__u32 fallback;
	/* 1: LAN flows are routed; 0: they all pass (no rule, fallback
	 * direct). */
	__u32 enabled;
	/* Entries of "dae_domains" count only when written for this
	 * generation: the daemon moves to a new one when the domain()
	 * conditions change, and rewrites the entries. */
	__u32 domain_gen;
	/* Bits that hold by L4 protocol and IP version, indexed by
	 * (udp << 1 | ipv6): l4proto() and ipversion() conditions. */
	struct dae_bits proto[4];
	/* Bits that hold by DSCP (the top six bits of the TOS / traffic
	 * class). */
	struct dae_bits dscp[DAE_DSCP_VALUES];
	/* The bits of domain() conditions. A flow whose destination has no
	 * learned domain, where a rule up to the deciding one could hold or
	 * fail by its domain, is handed to the daemon to sniff one. */
	struct dae_bits domain_mask;
	struct dae_rule rules[DAE_MAX_RULES];
};

/* What an LPM key holds (struct dae_lpm_key.kind), plus 16 times the
 * routing slot the entry belongs to. */
enum dae_lpm_kind {
	/* Never routed: the router's own addresses, the LAN subnets,
	 * multicast, broadcast, link-local. Value: any, bits unused. */
	DAE_LPM_BYPASS4 = 1,
	DAE_LPM_BYPASS6 = 2,
	DAE_LPM_DIP4 = 3,
	DAE_LPM_DIP6 = 4,
	DAE_LPM_SIP4 = 5,
	DAE_LPM_SIP6 = 6,
	/* Ports: addr holds the port big-endian in its first two bytes. */
	DAE_LPM_DPORT = 7,
	DAE_LPM_SPORT = 8,
};

/* Key of the LPM trie map "dae_route_lpm" (value: struct dae_bits, the
 * bits of every condition whose networks or port ranges cover the
 * prefix: the daemon stores with each prefix the union over all the
 * prefixes that contain it, so the longest match says everything).
 * `prefixlen` counts the 8 bits of `kind` first. IPv4 addresses fill
 * the first 4 bytes of addr. */
struct dae_lpm_key {
	__u32 prefixlen;
	__u8 kind;
	__u8 addr[16];
	__u8 reserved[3];
};

/* Key of the hash map "dae_route_mac" (value: struct dae_bits). */
struct dae_mac_key {
	__u8 mac[6];
	/* The routing slot the entry belongs to. */
	__u8 slot;
	__u8 reserved;
};

/* Key of the LRU hash map "dae_domains": an address learned from a DNS
 * answer, IPv4 as IPv4-mapped IPv6 (::ffff:a.b.c.d). */
struct dae_domain_key {
	__u8 addr[16];
};

/* Value of "dae_domains": the bits of the domain() conditions that the
 * queried name matched, until `expires` (CLOCK_MONOTONIC ns, as
 * bpf_ktime_get_ns). */
struct dae_domain {
	struct dae_bits bits;
	__u64 expires;
	/* dae_routing.domain_gen when written. */
	__u32 gen;
	__u32 reserved;
};

/* Key of the LRU hash map "dae_flows": a TCP or UDP flow as the LAN
 * client sends it. IPv4 addresses fill the first 4 bytes. Ports in
 * network byte order. */
struct dae_flow_key {
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 ipv6;
	__u8 reserved[2];
};

/* Value of "dae_flows": the verdict on the flow's first packet, and the
 * conditions that held, so the relay can decide again with a domain it
 * sniffs. */
struct dae_flow {
	struct dae_bits held;
	__u32 target;
	/* The routing slot that decided (the meaning of `held`'s bits). */
	__u32 slot;
	/* 1: its domain could change the verdict and none was known: the
	 * flow is handed to the daemon, which sniffs one and decides. */
	__u32 sniff;
	__u32 reserved;
};

#endif
