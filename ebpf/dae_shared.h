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
	/* 1: drop port-53 packets while no listener is there (fail closed);
	 * 0: let them pass untouched (fail open, the default). */
	__u32 fail_closed;
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
	DAE_CTR_MAX = 5,
};

#endif
