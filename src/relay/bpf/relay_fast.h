/* relay fast path: the maps shared by the tc program (relay_fast.bpf.c) and user space
 * (src/relay/fastpath.c). Addresses and ports in network byte order. */
#ifndef PINHOLE_RELAY_FAST_H
#define PINHOLE_RELAY_FAST_H

#include <linux/types.h>

#define RELAY_FAST_MAX 65536	   /* entries: receiving RTP sockets */
#define RELAY_FAST_MAX_LEN 2048	   /* RELAY_RXBUF: larger goes to user space (dropped there) */
#define RELAY_FAST_MAX_DROPOUT 3000 /* RTP_SEQ_MAX_DROPOUT */

/* A receiving socket: its local IPv4 address (0: bound to the wildcard) and port. */
struct relay_fast_key {
	__be32 addr;
	__be16 port;
	__u16 pad;
};

#define RELAY_FAST_LOCAL 1 /* sender and destination on this host: deliver, do not redirect */

/* What to do with RTP from the latched source peer_addr:peer_port. */
struct relay_fast_fwd {
	__be32 peer_addr;
	__be16 peer_port;
	__be16 out_port; /* from the other leg's socket */
	__be32 out_addr;
	__be32 dst_addr; /* to the other leg's party */
	__be16 dst_port;
	__u16 flags;
	__u32 ifindex; /* where dst is reached, unless RELAY_FAST_LOCAL */
};

/* Per receiving socket, kept while the socket lives. */
struct relay_fast_stats {
	__u64 packets, bytes, gaps, resyncs;
	__u64 last_ns; /* CLOCK_MONOTONIC */
	__u32 ssrc;
	__u16 max_seq;
	__u8 seq_init;
	__u8 pad;
};

struct relay_fast_conf {
	__u16 port_lo, port_hi; /* host order */
};

#endif
