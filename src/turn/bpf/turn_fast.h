/* TURN fast path: the maps shared by the tc program (turn_fast.bpf.c) and user space
 * (src/turn/fastpath.c). Addresses and ports in network byte order. */
#ifndef PINHOLE_TURN_FAST_H
#define PINHOLE_TURN_FAST_H

#include <linux/types.h>

#define TURN_FAST_MAX 65536	   /* channels (one entry each way) */
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
#define TURN_FAST_BW 8	  /* a bandwidth limit: the port entry's bucket applies */
#define TURN_FAST_ON 16	  /* in a turn_port entry: its way to the client is live */
#define TURN_FAST_UBW 32  /* a per-user budget: the user's entry of turn_user applies */

/* Where a packet goes: from src to dst, out of ifindex; num is the channel
 * (host order) the peer's data is framed with toward the client. 40 bytes. */
struct turn_fast_out {
	__be32 src_addr, dst_addr;
	__be16 src_port, dst_port;
	__u16 num, flags;
	__u32 ifindex;
	__be32 hop;  /* the next hop toward dst_addr (user space asks the kernel's routing
		      * table); 0: the kernel looks the route up for each packet */
	__u8 l2[12]; /* with TURN_FAST_L2: the hop's MAC, then ifindex's (user space asks
		      * the neighbour table); the packet leaves with them, unlooked-up */
	__u16 slot;  /* the allocation's entry in turn_port: its relayed port - relay_lo */
	__be16 peer_port; /* in a turn_port entry: the peer whose datagrams it is for */
};

/* Per relayed port (turn_port: an array indexed by port - relay_lo, mapped
 * into user space), two cache lines. The first holds all that a datagram
 * from the allocation's first channel's peer needs: an address computation
 * and one line, no hash bucket: the way, the counts toward the client and
 * the allocation's bandwidth bucket. The second the counters toward peers of
 * the channels that are not in their home slot (turn_fast_chan_slot counts
 * its own), and the drops: touched by few packets. Counters only grow, also
 * across the port's owners: user space takes an owner's start from them and
 * adds what is new to its own.
 *
 * User space changes the way to the client while packets may read it (a new
 * hop, a new channel, the allocation's end) as a sequence lock: seq odd
 * while it writes; the program reads seq before and after its copy and sends
 * the packet to user space when they differ or are odd. */
struct turn_fast_port {
	__u32 seq;
	__be32 peer_addr;
	struct turn_fast_out to_client; /* flags without TURN_FAST_ON: none */
	__u64 to_client_count;		/* packets and bytes, as turn_fast_chan_slot's count */
	/* The allocation's bucket ([turn] bandwidth, TURN_FAST_BW; its rate in
	 * turn_fast_conf): bytes << 32 | the tick it was last filled at (ticks:
	 * CLOCK_MONOTONIC_COARSE ns >> TURN_FAST_TICK_SHIFT). Changed without an
	 * atomic operation: racing CPUs can let a packet too many through. */
	__u64 bw;
	/* second line */
	__u64 to_peer_pkts, to_peer_bytes, drop_bw;
	__u64 drop_user_bw; /* over the user's budget (TURN_FAST_UBW) */
	__u32 user;	    /* the user's entry in turn_user */
	__u32 pad;
	__u64 spare[3];
} __attribute__((aligned(64)));

#define TURN_FAST_TICK_SHIFT 20 /* a bucket's tick: 2^20 ns, about a ms */

/* A user's bandwidth budget ([turn] bandwidth_per_user), one token bucket
 * for all of the user's allocations on both paths: user space (alloc.c)
 * takes from the same entry, mapped, with turn_fast_user_take as the
 * program does, and the same clock (CLOCK_MONOTONIC_COARSE, in ms). Without
 * the fast path user space keeps the bucket itself (same struct, same take). */
struct turn_fast_user_bw {
	__s64 milli;   /* bytes x 1000 */
	__u64 last_ms; /* the last refill */
};
struct turn_fast_user {
	struct turn_fast_user_bw bw;
	__u64 rate; /* bytes per second */
} __attribute__((aligned(64)));

/* Takes len bytes from u at now (ms): whoever moves last_ms forward adds
 * what that time refilled, up to a second's worth (the bucket's size); a
 * take that overdraws gives back. Races can let a packet too many through,
 * never a second's worth. 1: taken. */
static inline __attribute__((always_inline)) int
turn_fast_user_take(struct turn_fast_user_bw *u, __u64 rate, __u64 len, __u64 now)
{
	__u64 last = *(volatile __u64 *)&u->last_ms;
	if (now > last && __sync_val_compare_and_swap(&u->last_ms, last, now) == last) {
		__s64 full = (__s64)(rate * 1000);
		__u64 el = now - last;
		__s64 add = (__s64)((el < 1000 ? el : 1000) * rate);
		__s64 v = (__s64)__sync_fetch_and_add(&u->milli, add) + add;
		if (v > full)
			__sync_fetch_and_add(&u->milli, full - v);
	}
	__s64 cost = (__s64)len * 1000;
	if ((__s64)__sync_fetch_and_add(&u->milli, -cost) < cost) {
		__sync_fetch_and_add(&u->milli, cost);
		return 0;
	}
	return 1;
}

/* A channel's way to its peer in its home slot of turn_chan_slot (an array
 * indexed by a seeded hash of the key: one cache line, no hash bucket), with
 * the channel's own counters, so that its ChannelData touches that line
 * only. A channel whose home slot is taken is found in turn_chan only (and
 * counted in its port's entry); every channel is in turn_chan too. The way
 * is changed in place under the same sequence lock as turn_fast_port's
 * entries; the counters are not (below). 64 bytes. */
#define TURN_FAST_CHAN_BITS 17 /* at most twice TURN_FAST_MAX slots; user space sizes it */
struct turn_fast_chan_slot {
	__u32 seq;
	struct turn_fast_chan_key key;
	__be32 dst_addr;	   /* the peer */
	__be16 src_port, dst_port; /* the relayed port, the peer's */
	__u16 flags;		   /* TURN_FAST_*; without TURN_FAST_ON: empty */
	__u16 slot;		   /* the allocation's entry in turn_port */
	__u32 ifindex;
	union {
		__be32 hop;  /* as turn_fast_out's, without TURN_FAST_L2 */
		__u8 l2[12]; /* as turn_fast_out's, with it */
	};
	/* Bytes the channel may still send toward the peer without a visit to
	 * its allocation's bucket (TURN_FAST_BW): taken from it in pieces (the
	 * conf's bw_piece), so that most of its ChannelData touches this line
	 * only. Unspent, it is lost to the allocation's other traffic: at most a
	 * piece. Changed without an atomic operation, as the bucket. */
	__u32 credit;
	__be32 src_addr; /* the relayed address */
	/* Packets and bytes toward the peer, one word changed with one
	 * compare-and-exchange, so that the slot's owner is checked in the same
	 * step as its counts grow: user space bumps the owner's generation
	 * (TURN_FAST_GEN) when the channel leaves the slot, and that exchange
	 * returns the channel's final counts exactly; a packet that read the
	 * slot before and counts after finds the generation moved and takes
	 * turn_chan's way (counted in the port's entry). The counts wrap: user
	 * space takes their difference (turn_fast_count_diff) every second,
	 * under 2^24 packets and 2^35 bytes apart. */
	__u64 count; /* generation:5 | packets:24 | bytes:35 */
} __attribute__((aligned(64)));

#define TURN_FAST_PKT_SHIFT 35
#define TURN_FAST_GEN_SHIFT 59
#define TURN_FAST_VAL_MASK ((1ull << TURN_FAST_GEN_SHIFT) - 1)

static inline __u32 turn_fast_chan_home(const struct turn_fast_chan_key *k, __u64 seed,
				       __u32 bits)
{
	__u64 x = ((__u64)k->client_addr << 32) | ((__u32)k->client_port << 16) | k->num;
	__u64 y = ((__u64)k->srv_addr << 32) | k->srv_port;
	__u64 h = (x ^ seed) * 0x9e3779b97f4a7c15ull;
	h = (h ^ y ^ (h >> 29)) * 0xbf58476d1ce4e5b9ull;
	return (__u32)(h >> (64 - bits));
}

#ifndef __bpf__
/* User space's writer of e's way to the client (peer, o; o NULL: none), while
 * the program may be reading it: seq odd, the fields, seq even. A packet that
 * read the entry in between sees seq changed and takes turn_peer's copy. One
 * writer at a time (the caller's lock). */
static inline void turn_fast_port_set(struct turn_fast_port *e, __be32 peer,
				      const struct turn_fast_out *o)
{
	__atomic_fetch_add(&e->seq, 1, __ATOMIC_SEQ_CST);
	if (o) {
		e->peer_addr = peer;
		e->to_client = *o;
		e->to_client.flags |= TURN_FAST_ON;
	} else {
		e->to_client.flags = 0;
		e->peer_addr = 0;
	}
	__atomic_fetch_add(&e->seq, 1, __ATOMIC_RELEASE);
}

/* The same for a channel's slot (k, o; o NULL: empty). The counts are the
 * slot's, not the way's: untouched here. Emptied, the slot's owner
 * generation moves (while seq is odd), and what the counts were when it
 * moved is returned: the leaving channel's last. */
static inline __u64 turn_fast_chan_set(struct turn_fast_chan_slot *e,
				       const struct turn_fast_chan_key *k,
				       const struct turn_fast_out *o)
{
	__u64 last = 0;
	__atomic_fetch_add(&e->seq, 1, __ATOMIC_SEQ_CST);
	if (o) {
		e->key = *k;
		e->dst_addr = o->dst_addr;
		e->src_addr = o->src_addr;
		e->src_port = o->src_port;
		e->dst_port = o->dst_port;
		e->slot = o->slot;
		e->ifindex = o->ifindex;
		if (o->flags & TURN_FAST_L2)
			__builtin_memcpy(e->l2, o->l2, sizeof e->l2);
		else
			e->hop = o->hop;
		__atomic_store_n(&e->flags, (__u16)(o->flags | TURN_FAST_ON), __ATOMIC_RELAXED);
	} else {
		__atomic_store_n(&e->flags, 0, __ATOMIC_RELAXED);
		e->credit = 0; /* the next owner's allocation has its own bucket */
		last = __atomic_fetch_add(&e->count, 1ull << TURN_FAST_GEN_SHIFT,
					  __ATOMIC_SEQ_CST);
	}
	__atomic_fetch_add(&e->seq, 1, __ATOMIC_RELEASE);
	return last;
}

/* What a slot counted from count word a to b: packets and bytes. */
static inline void turn_fast_count_diff(__u64 a, __u64 b, __u64 *pkts, __u64 *bytes)
{
	__u64 d = (b - a) & TURN_FAST_VAL_MASK;
	*pkts = d >> TURN_FAST_PKT_SHIFT;
	*bytes = d & ((1ull << TURN_FAST_PKT_SHIFT) - 1);
}
#endif

struct turn_fast_conf {
	__be32 relay_addr;	  /* the relayed addresses' (IPv4); 0: none in the kernel */
	__u16 relay_lo, relay_hi; /* host order */
	__u16 port_first; /* 1: the arrays under sequence locks are looked at first */
	__u32 chan_bits;  /* turn_chan_slot has 1 << chan_bits slots */
	__u64 seed;	  /* turn_fast_chan_home's */
	__u16 nlisten;
	__u16 listen_port[TURN_FAST_LISTEN]; /* network order */
	/* [turn] bandwidth, per allocation (TURN_FAST_BW): a full bucket (one
	 * second's worth), the fill per tick (bytes x 2^16), and the piece a
	 * channel's slot takes at a time (a 64th of the full bucket) */
	__u32 bw_full, bw_piece;
	__u64 bw_tick_q16;
};

#endif
