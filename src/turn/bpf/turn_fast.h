/* TURN fast path: the maps shared by the tc program (turn_fast.bpf.c) and user space
 * (src/turn/fastpath.c). Addresses and ports in network byte order. */
#ifndef PINHOLE_TURN_FAST_H
#define PINHOLE_TURN_FAST_H

#include <linux/types.h>

#define TURN_FAST_MAX 65536	   /* channels (one entry each way) */
#define TURN_FAST_MAX_ALLOCS 65536 /* allocations with counters in the kernel (slots) */
#define TURN_FAST_MAX_DATA 1400	   /* application data; larger stays in user space */
#define TURN_FAST_LISTEN 8	   /* UDP listeners the program knows */

/* ChannelData from a client: the listener it reached, the client's address
 * (the 5-tuple) and the channel number. */
struct turn_fast_chan_key {
	__be32 srv_addr, client_addr;
	__be16 srv_port, client_port;
	__u16 num; /* host order */
	__u16 pad;
};

/* A datagram from a peer: the relayed address it reached and the peer. */
struct turn_fast_peer_key {
	__be32 relay_addr, peer_addr;
	__be16 relay_port, peer_port;
};

#define TURN_FAST_LOCAL 1 /* sender and destination on this host: deliver, do not redirect */
#define TURN_FAST_DF 2	  /* set don't-fragment (DONT-FRAGMENT in the Allocate) */
#define TURN_FAST_L2 4	  /* l2 holds the next hop's and the interface's MAC: no neighbour lookup */

/* Where a packet goes: from src to dst, out of ifindex; num is the channel
 * (host order) the peer's data is framed with toward the client. */
struct turn_fast_out {
	__be32 src_addr, dst_addr;
	__be16 src_port, dst_port;
	__u16 num, flags;
	__u32 ifindex;
	__u32 slot; /* the allocation's entry in turn_stats (an array: no second hash lookup) */
	__be32 hop; /* the next hop toward dst_addr (user space asks the kernel's routing
		     * table); 0: the kernel looks the route up for each packet */
	__u8 l2[12]; /* with TURN_FAST_L2: the hop's MAC, then ifindex's (user space asks
		      * the neighbour table); the packet leaves with them, unlooked-up */
};

/* Per allocation, while it has channels in the kernel (a slot of turn_stats,
 * given out by user space). Counters only grow; user space adds what is new to
 * its own. The bandwidth bucket is the kernel's own (rate 0: unlimited). */
struct turn_fast_stats {
	__u64 to_peer_pkts, to_peer_bytes, to_client_pkts, to_client_bytes;
	__u64 drop_bw;
	__u64 rate;   /* bytes per second ([turn] bandwidth); set by user space */
	__u64 tokens; /* bytes x 10^9 */
	__u64 last_ns;
};

struct turn_fast_conf {
	__u16 relay_lo, relay_hi; /* host order */
	__u16 nlisten;
	__u16 listen_port[TURN_FAST_LISTEN]; /* network order */
};

#endif
