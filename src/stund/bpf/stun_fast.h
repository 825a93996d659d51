/* STUN fast path: the maps shared by the tc program (stun_fast.bpf.c) and user space
 * (src/stund/fastpath.c). Addresses and ports in network byte order. */
#ifndef PINHOLE_STUN_FAST_H
#define PINHOLE_STUN_FAST_H

#include <linux/types.h>

#define STUN_FAST_SOCKS 64	 /* listening sockets (4 per RFC 5780 listen entry) */
#define STUN_FAST_SOURCES 65536 /* rate-limit buckets (LRU) */

/* A listening socket: its IPv4 address (0: the wildcard) and port. */
struct stun_fast_key {
	__be32 addr;
	__be16 port;
	__u16 pad;
};

#define STUN_FAST_5780 1 /* add RESPONSE-ORIGIN (this socket) and OTHER-ADDRESS */

struct stun_fast_sock {
	__be32 other_addr;
	__be16 other_port;
	__u16 flags;
};

struct stun_fast_conf {
	__u32 rate;  /* tokens per second per source; 0 = unlimited */
	__u32 burst; /* bucket size */
};

struct stun_fast_bucket {
	__u64 milli; /* tokens x 1000 */
	__u64 last_ns;
};

/* per-CPU counters, indexes into the array */
enum { STUN_FAST_REQUESTS, STUN_FAST_RESPONSES, STUN_FAST_LIMITED, STUN_FAST_NCOUNT };

#endif
