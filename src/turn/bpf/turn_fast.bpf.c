/* TURN fast path: relays ChannelData of bound channels in the kernel (tc ingress), both ways,
 * so that a relayed packet costs no wake-up and no system call of the TURN role.
 *
 * User space (src/turn/fastpath.c) owns every decision: once a channel is
 * bound and its peer has a permission it installs two entries, "ChannelData
 * with this number from this client's 5-tuple goes, header stripped, from the
 * relayed address to the peer" and "a datagram from this peer to the relayed
 * address goes, framed as ChannelData, from the listener to the client", and
 * removes them when the channel, the permission or the allocation ends. This
 * program only applies entries. Anything else goes up the stack unchanged to
 * the role's sockets, where user space handles it as before: STUN requests,
 * Send and Data indications, ChannelData with padding or a length that does
 * not add up, unknown 5-tuples or channels, peers without a channel, IPv6, IP
 * options, fragments, datagrams larger than TURN_FAST_MAX_DATA, and datagrams
 * whose UDP checksum is still to be filled in (below).
 *
 *   ChannelData (RFC 8656 12.4):
 *    0                   1                   2                   3
 *    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   |         Channel Number        |            Length             |
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   /                       Application Data                        /
 *
 * The 4 bytes go or come right after the UDP header: bpf_skb_adjust_room at
 * the network layer removes or inserts them after the IP header, and the IP
 * and UDP headers (and the ChannelData header) are written fresh in one store.
 *
 * The UDP checksum is updated, not recomputed (RFC 1624): the data does not
 * move within its 16-bit words, so the new checksum is the old one less the
 * words that go (addresses, ports, lengths, the ChannelData header) plus the
 * words that come. No pass over the payload: a datagram that arrived with a
 * wrong checksum leaves with a wrong one and its receiver drops it, as behind
 * a router or a NAT. A checksum of 0 (none, IPv4) stays 0. A datagram whose
 * checksum is still to be filled in (CHECKSUM_PARTIAL, from a sender on this
 * host: its checksum field holds the pseudo-header's sum) goes to user space:
 * the kernel's metadata for it would point at the wrong bytes once the header
 * grew or shrank.
 *
 * Counters and the allocation's bandwidth bucket live in its relayed port's
 * entry of turn_port, an array: found by an address computation, not a hash.
 * The same entry holds the way to the client of the allocation's first
 * channel, so that its peer's datagrams cost one lookup that misses the cache
 * once, not a hash bucket, an element and a counters slot (the media case:
 * one peer per allocation). Other channels' peers are looked up in turn_peer.
 * ChannelData finds its way in its home slot of turn_chan_slot (an array by a
 * seeded hash of client, listener and channel: one line, no bucket), and
 * counts there too, so that it touches that line only; or, where another
 * channel holds that slot, in turn_chan, counted in the port's entry. A
 * user's budget ([turn] bandwidth_per_user) is the user's entry of
 * turn_user, which user space takes from too.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>
#include <stddef.h>

#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "turn_fast.h"

#define VERDICT_NEXT TC_ACT_UNSPEC
#define VERDICT_LOCAL TC_ACT_OK

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TURN_FAST_MAX);
	__type(key, struct turn_fast_chan_key);
	__type(value, struct turn_fast_out);
} turn_chan SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TURN_FAST_MAX);
	__type(key, struct turn_fast_peer_key);
	__type(value, struct turn_fast_out);
} turn_peer SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1 << TURN_FAST_CHAN_BITS);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct turn_fast_chan_slot);
} turn_chan_slot SEC(".maps");

/* by relayed port - relay_lo; user space sets the size to the range's and
 * maps the array to change entries in place (turn_fast_port: a sequence lock) */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct turn_fast_port);
} turn_port SEC(".maps");

/* by the user's slot (user space hands them out); mapped by user space,
 * which takes from the same buckets (turn_fast_user) */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct turn_fast_user);
} turn_user SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct turn_fast_conf);
} turn_conf SEC(".maps");

/* The kernel's sk_buff, for its headroom and its checksum state (CO-RE: the
 * running kernel's offsets) */
struct sk_buff___room {
	unsigned char *head, *data;
	__u8 ip_summed : 2;
} __attribute__((preserve_access_index));
#define CHECKSUM_COMPLETE 2
extern void *bpf_cast_to_kern_ctx(void *obj) __ksym;

#define L3_OFF ((int)sizeof(struct ethhdr))
#define L4_OFF (L3_OFF + (int)sizeof(struct iphdr))
#define PAY_OFF (L4_OFF + (int)sizeof(struct udphdr))

/* One's complement arithmetic on network-order words read as host integers:
 * sums of 32-bit words fold to the same 16-bit sum as their halves would. */
static __always_inline __u32 fold(__u64 s)
{
	s = (s & 0xffffffff) + (s >> 32);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u32)s;
}

static __always_inline __u64 neg32(__u32 x)
{
	return (__u32)~x; /* adding it subtracts x */
}

static __always_inline __u64 neg16(__u16 x)
{
	return (__u16)~x;
}

/* The user's bucket ([turn] bandwidth_per_user), shared with user space's
 * takes (alloc.c, the same steps): false when over. */
static __always_inline int user_take(__u32 idx, __u32 len)
{
	struct turn_fast_user *u = bpf_map_lookup_elem(&turn_user, &idx);
	if (!u)
		return 1; /* user space hands out only slots that exist */
	/* user space's clock for it */
	return turn_fast_user_take(&u->bw, u->rate, len, bpf_ktime_get_coarse_ns() / 1000000);
}

/* Takes cost bytes from the allocation's bucket (e's, [turn] bandwidth), and
 * more up to want where it has them: what it took, or 0 when it has not
 * cost (the bucket filled all the same). */
static __always_inline __u32 bucket_take(struct turn_fast_port *e, const struct turn_fast_conf *c,
					 __u32 cost, __u32 want)
{
	__u32 now = (__u32)(bpf_ktime_get_coarse_ns() >> TURN_FAST_TICK_SHIFT);
	__u64 w = e->bw;
	__u32 last = (__u32)w, el = now - last; /* ticks wrap: only the difference counts */
	__u64 tok = w >> 32;
	if (el > 1024) /* a second and more: full anyway */
		el = 1024;
	__u64 add = ((__u64)el * c->bw_tick_q16) >> 16;
	if (add) { /* else the ticks add up until they are worth a byte */
		tok += add;
		if (tok > c->bw_full)
			tok = c->bw_full;
		last = now;
	}
	__u32 took = 0;
	if (tok >= cost) {
		took = tok >= want ? want : (__u32)tok;
		tok -= took;
	}
	e->bw = tok << 32 | last;
	return took;
}

/* The user's budget (TURN_FAST_UBW) after the allocation's passed: false
 * when over, counted, and (give_back) the bytes the allocation's bucket gave
 * put back, as user space spends the allocation's only when both pass. */
static __always_inline int user_budget(struct turn_fast_port *e, __u16 flags, __u32 len,
				       int give_back)
{
	if (!(flags & TURN_FAST_UBW) || user_take(e->user, len))
		return 1;
	if ((flags & TURN_FAST_BW) && give_back)
		e->bw += (__u64)len << 32;
	__sync_fetch_and_add(&e->drop_user_bw, 1);
	return 0;
}

/* A fresh IPv4 header from the old one: new addresses, length, TTL 64 (a
 * datagram of the relay's), DF as the allocation says, checksum. */
static __always_inline void new_ip(struct iphdr *ip, const struct turn_fast_out *o,
				   __u16 tot_len)
{
	ip->saddr = o->src_addr;
	ip->daddr = o->dst_addr;
	ip->tot_len = bpf_htons(tot_len);
	ip->ttl = 64;
	ip->frag_off = (o->flags & TURN_FAST_DF) ? bpf_htons(0x4000) : 0;
	ip->check = 0;
	const __u32 *w = (const __u32 *)ip;
	ip->check = (__u16)~fold((__u64)w[0] + w[1] + w[2] + w[3] + w[4]);
}

/* A datagram with a checksum still to fill in (CHECKSUM_PARTIAL, sent on this
 * host) carries the pseudo-header's folded sum where the checksum goes. A
 * complete checksum equals it once in 65,535 datagrams: those go through user
 * space, which is only slower. */
static __always_inline int csum_partial(const struct iphdr *ip, const struct udphdr *udp)
{
	return udp->check ==
	       (__u16)fold((__u64)ip->saddr + ip->daddr + bpf_htons(IPPROTO_UDP) + udp->len);
}

/* The new checksum from the old (RFC 1624, eqn. 3): old + what comes - what
 * goes, over the words of the pseudo-header and headers that differ. 0 (none)
 * stays 0; a computed 0 is sent as 0xffff (RFC 768). */
static __always_inline __u16 csum_update(__u16 old, __u64 diff)
{
	if (!old)
		return 0;
	__u16 c = (__u16)~fold(neg16(old) + diff);
	return c ? c : 0xffff;
}

/* What the old pseudo-header and UDP header contribute, negated. */
static __always_inline __u64 old_words(const struct iphdr *ip, const struct udphdr *udp)
{
	return neg32(ip->saddr) + neg32(ip->daddr) + 2 * neg16(udp->len) +
	       neg32(*(const __u32 *)udp); /* the two ports */
}

static __always_inline __u64 new_words(const struct turn_fast_out *o, __be16 ulen)
{
	return (__u64)o->src_addr + o->dst_addr + 2 * (__u64)ulen + o->src_port + o->dst_port;
}

/* Out of the entry's interface to its next hop. With the hop's MAC in the
 * entry (written by the caller) the packet goes straight to the interface's
 * transmit: no neighbour lookup and no header build per packet (about 120 ns
 * of some 1,700 on the bench's VM; docs/benchmarks.md, "Session 11: TURN fast
 * path"). Else given the hop, the redirect skips a route lookup; else it
 * looks the route up too. */
static __always_inline int verdict(const struct turn_fast_out *o)
{
	if (o->flags & TURN_FAST_LOCAL)
		return VERDICT_LOCAL; /* the destination is on this host: up the stack */
	if (o->flags & TURN_FAST_L2)
		return bpf_redirect(o->ifindex, 0);
	if (!o->hop)
		return bpf_redirect_neigh(o->ifindex, NULL, 0, 0);
	struct bpf_redir_neigh nh = {.nh_family = 2 /* AF_INET */, .ipv4_nh = o->hop};
	return bpf_redirect_neigh(o->ifindex, &nh, sizeof nh, 0);
}

/* The headers as the packet leaves: Ethernet (written only with TURN_FAST_L2),
 * IPv4, UDP and, toward a client, the ChannelData header, stored in one go. */
struct out_hdr {
	__u16 pad; /* keeps the IP header 4-aligned */
	__u8 mac[12]; /* destination, source */
	__be16 proto;
	struct iphdr ip;
	struct udphdr u;
	__be16 num, len;
};
#define OUT_TO_PEER (offsetof(struct out_hdr, num) - offsetof(struct out_hdr, mac))
#define OUT_TO_CLIENT (sizeof(struct out_hdr) - offsetof(struct out_hdr, mac))

/* len: the bytes from the Ethernet header on */
static __always_inline int store(struct __sk_buff *skb, const struct turn_fast_out *o,
				 struct out_hdr *h, __u32 len)
{
	if (o->flags & TURN_FAST_L2) {
		__builtin_memcpy(h->mac, o->l2, 12);
		h->proto = bpf_htons(ETH_P_IP);
		return bpf_skb_store_bytes(skb, 0, h->mac, len, BPF_F_RECOMPUTE_CSUM);
	}
	return bpf_skb_store_bytes(skb, L3_OFF, &h->ip, len - L3_OFF, BPF_F_RECOMPUTE_CSUM);
}

/* The same headers written in place (direct packet access: no helper call)
 * where the buffer carries no sum of its bytes that would have to follow
 * (a NIC's CHECKSUM_COMPLETE: then the helper, whose BPF_F_RECOMPUTE_CSUM
 * keeps it right). len: as store's, a constant. */
static __always_inline int store_direct(struct __sk_buff *skb, const struct turn_fast_out *o,
					struct out_hdr *h, const __u32 len)
{
	struct sk_buff___room *k = bpf_cast_to_kern_ctx(skb);
	if (BPF_CORE_READ_BITFIELD(k, ip_summed) == CHECKSUM_COMPLETE)
		return store(skb, o, h, len);
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	if (data + len > end)
		return store(skb, o, h, len); /* not all in the linear part: cannot be, after
					       * the pull at the start; the helper copes */
	if (o->flags & TURN_FAST_L2) {
		__builtin_memcpy(h->mac, o->l2, 12);
		h->proto = bpf_htons(ETH_P_IP);
		__builtin_memcpy(data, h->mac, len);
	} else {
		__builtin_memcpy(data + L3_OFF, &h->ip, len - L3_OFF);
	}
	return 0;
}

/* The way to the peer for ChannelData with key k: its home slot's when it
 * holds k and did not change while it was copied (the sequence lock, as in
 * way_to_client), else turn_chan's. 0: none; 1: turn_chan's; 2: the slot's,
 * *e the slot and *gen its owner's count word as read under the lock. */
static __always_inline int way_to_peer(const struct turn_fast_conf *c,
				       const struct turn_fast_chan_key *k, struct turn_fast_out *o,
				       struct turn_fast_chan_slot **es, __u64 *gen)
{
	if (c->port_first) {
		__u32 i = turn_fast_chan_home(k, c->seed, c->chan_bits);
		struct turn_fast_chan_slot *e = bpf_map_lookup_elem(&turn_chan_slot, &i);
		__u32 s = e ? *(volatile __u32 *)&e->seq : 1;
		if (e && !(s & 1) && (e->flags & TURN_FAST_ON) &&
		    e->key.client_addr == k->client_addr && e->key.client_port == k->client_port &&
		    e->key.num == k->num && e->key.srv_addr == k->srv_addr &&
		    e->key.srv_port == k->srv_port) {
			o->src_addr = e->src_addr;
			o->dst_addr = e->dst_addr;
			o->src_port = e->src_port;
			o->dst_port = e->dst_port;
			o->flags = e->flags;
			o->slot = e->slot;
			o->ifindex = e->ifindex;
			if (o->flags & TURN_FAST_L2)
				__builtin_memcpy(o->l2, e->l2, sizeof o->l2);
			else
				o->hop = e->hop;
			*gen = *(volatile __u64 *)&e->count;
			asm volatile("" ::: "memory");
			if (*(volatile __u32 *)&e->seq == s) {
				*es = e;
				return 2;
			}
		}
	}
	struct turn_fast_out *h = bpf_map_lookup_elem(&turn_chan, k);
	if (!h)
		return 0;
	__builtin_memcpy(o, h, sizeof *o);
	return 1;
}

/* Counts a packet of dlen bytes in the slot e for the owner whose count word
 * read w: false when the owner left the slot meanwhile (or, rarely, other
 * CPUs' counts kept changing the word), and then nothing was counted there. */
static __always_inline int slot_count(struct turn_fast_chan_slot *e, __u64 w, __u32 dlen)
{
	const __u64 gm = ~TURN_FAST_VAL_MASK, inc = (1ull << TURN_FAST_PKT_SHIFT) + dlen;
#pragma unroll
	for (int i = 0; i < 4; i++) {
		__u64 n = (w & gm) | ((w + inc) & TURN_FAST_VAL_MASK); /* the generation kept */
		__u64 got = __sync_val_compare_and_swap(&e->count, w, n);
		if (got == w)
			return 1;
		if ((got ^ w) & gm)
			return 0; /* another owner's now */
		w = got;
	}
	return 0;
}

/* ChannelData from a client to its peer: strip the header. */
static __always_inline int to_peer(struct __sk_buff *skb, struct iphdr *ip, struct udphdr *udp,
				   __u8 *pay, __u32 plen, void *end, const struct turn_fast_conf *c)
{
	if (plen < 4 || (void *)(pay + 4) > end || (pay[0] & 0xc0) != 0x40)
		return VERDICT_NEXT;
	__u16 num = ((__u16)pay[0] << 8) | pay[1];
	__u32 dlen = ((__u32)pay[2] << 8) | pay[3];
	if (dlen + 4 != plen) /* padded, or not what the length says: user space */
		return VERDICT_NEXT;
	if (udp->check && csum_partial(ip, udp))
		return VERDICT_NEXT;
	struct turn_fast_chan_key k = {.srv_addr = ip->daddr,
				       .client_addr = ip->saddr,
				       .srv_port = udp->dest,
				       .client_port = udp->source,
				       .num = num};
	struct turn_fast_out ob, *o = &ob;
	struct turn_fast_chan_slot *cs = NULL;
	__u64 w = 0;
	int way = way_to_peer(c, &k, o, &cs, &w);
	if (!way)
		return VERDICT_NEXT;
	/* the budgets: the allocation's from the channel's credit while it
	 * lasts (the slot's line only), else from the bucket in the port's entry */
	__u32 credit = way == 2 ? cs->credit : 0;
	int from_credit = (o->flags & TURN_FAST_BW) && credit >= dlen;
	struct turn_fast_port *st = NULL;
	if (way == 1 || (o->flags & TURN_FAST_UBW) || ((o->flags & TURN_FAST_BW) && !from_credit)) {
		__u32 slot = o->slot;
		st = bpf_map_lookup_elem(&turn_port, &slot);
		if (!st)
			return VERDICT_NEXT;
		if ((o->flags & TURN_FAST_BW) && !from_credit) {
			__u32 want = way == 2 && c->bw_piece > dlen ? c->bw_piece : dlen;
			__u32 took = bucket_take(st, c, dlen, want);
			if (!took) {
				__sync_fetch_and_add(&st->drop_bw, 1);
				return TC_ACT_SHOT;
			}
			credit += took; /* the piece beyond this packet: the channel's */
		}
		if (!user_budget(st, o->flags, dlen, way == 1)) {
			if (way == 2 && (o->flags & TURN_FAST_BW))
				cs->credit = credit; /* this packet's bytes not spent */
			return TC_ACT_SHOT;
		}
	}
	if (way == 2 && (o->flags & TURN_FAST_BW))
		cs->credit = credit - dlen;

	struct out_hdr h = {.ip = *ip,
			    .u = {.source = o->src_port,
				  .dest = o->dst_port,
				  .len = bpf_htons((__u16)(dlen + sizeof(struct udphdr)))}};
	h.u.check = csum_update(udp->check, old_words(ip, udp) + neg32(*(__u32 *)pay) +
						new_words(o, h.u.len));
	new_ip(&h.ip, o, (__u16)(sizeof h.ip + sizeof h.u + dlen));
	if (bpf_skb_adjust_room(skb, -4, BPF_ADJ_ROOM_NET, 0))
		return VERDICT_NEXT; /* nothing changed yet (the bucket spent: a rare miss) */
	if (store_direct(skb, o, &h, OUT_TO_PEER))
		return TC_ACT_SHOT;
	/* in the slot, for the owner the way was read for; where that owner left
	 * it meanwhile (its last counts are taken), in the allocation's port
	 * entry, as turn_chan's way counts */
	if (way == 2 && slot_count(cs, w, dlen))
		return verdict(o);
	if (!st) {
		__u32 slot = o->slot;
		st = bpf_map_lookup_elem(&turn_port, &slot);
		if (!st)
			return verdict(o); /* cannot be: user space writes only slots in range */
	}
	__sync_fetch_and_add(&st->to_peer_pkts, 1);
	__sync_fetch_and_add(&st->to_peer_bytes, dlen);
	return verdict(o);
}

/* The way to the client for a datagram from the peer at (addr, port) to the
 * port's entry e: the entry's own when it is for that peer and did not change
 * while it was copied (its sequence lock: read before and after; the loads
 * stay in order on x86, whose memory model (TSO) keeps loads in program
 * order; user space turns port_first on only there); else turn_peer's, by the
 * whole 4-tuple, where every channel is. False: none. */
static __always_inline int way_to_client(struct turn_fast_port *e, const struct turn_fast_conf *c,
					 const struct iphdr *ip, const struct udphdr *udp,
					 struct turn_fast_out *o)
{
	if (c->port_first) {
		__u32 s = *(volatile __u32 *)&e->seq;
		if (!(s & 1) && e->peer_addr == ip->saddr &&
		    e->to_client.peer_port == udp->source &&
		    (e->to_client.flags & TURN_FAST_ON)) {
			__builtin_memcpy(o, &e->to_client, sizeof *o);
			asm volatile("" ::: "memory");
			if (*(volatile __u32 *)&e->seq == s)
				return 1;
			/* changed while copied: turn_peer has the channel too */
		}
	}
	struct turn_fast_peer_key k = {.relay_addr = ip->daddr,
				       .peer_addr = ip->saddr,
				       .relay_port = udp->dest,
				       .peer_port = udp->source};
	struct turn_fast_out *h = bpf_map_lookup_elem(&turn_peer, &k);
	if (!h)
		return 0;
	__builtin_memcpy(o, h, sizeof *o);
	return 1;
}

/* Room for the ChannelData header. bpf_skb_adjust_room inserts it after the
 * IP header by moving the headers 4 bytes toward the buffer's start; with
 * less headroom than that (a datagram sent on this host: a peer on loopback,
 * or in a container behind a veth, leaves 2 bytes) the kernel copies the
 * whole packet into a new buffer (pskb_expand_head) first. Then the buffer
 * grows at its end instead and the data moves 4 bytes toward it, in place.
 * A NIC's buffers have their headroom: the first way. 0: done; 1: nothing
 * changed (user space may have the packet); -1: the packet is spoilt. */
static __always_inline int make_room(struct __sk_buff *skb, __u32 plen)
{
	struct sk_buff___room *k = bpf_cast_to_kern_ctx(skb);
	if (k->data - k->head >= 4)
		return bpf_skb_adjust_room(skb, 4, BPF_ADJ_ROOM_NET, 0) ? 1 : 0;
	if (bpf_skb_change_tail(skb, skb->len + 4, 0))
		return 1;
	__u8 buf[256];
	__u32 left = plen;
	/* from the end: each piece lands where nothing unread is */
	for (int i = 0; i < (TURN_FAST_MAX_DATA + 255) / 256 && left; i++) {
		__u32 n = left > sizeof buf ? sizeof buf : left;
		left -= n;
		/* n is 1 to 256; said so the verifier sees it: ((n - 1) & 255) + 1 */
		asm volatile("%[n] += -1; %[n] &= 0xff; %[n] += 1" : [n] "+r"(n));
		if (bpf_skb_load_bytes(skb, PAY_OFF + left, buf, n) ||
		    bpf_skb_store_bytes(skb, PAY_OFF + 4 + left, buf, n, BPF_F_RECOMPUTE_CSUM))
			return -1;
	}
	return left ? -1 : 0;
}

/* A datagram from a peer to a relayed address: frame it for the client. */
static __always_inline int to_client(struct __sk_buff *skb, struct iphdr *ip, struct udphdr *udp,
				     __u32 plen, const struct turn_fast_conf *c)
{
	if (udp->check && csum_partial(ip, udp))
		return VERDICT_NEXT;
	if (ip->daddr != c->relay_addr)
		return VERDICT_NEXT;
	__u32 slot = (__u32)bpf_ntohs(udp->dest) - c->relay_lo;
	struct turn_fast_port *e = bpf_map_lookup_elem(&turn_port, &slot);
	if (!e)
		return VERDICT_NEXT;
	struct turn_fast_out ob, *o = &ob;
	if (!way_to_client(e, c, ip, udp, o))
		return VERDICT_NEXT;
	if ((o->flags & TURN_FAST_BW) && !bucket_take(e, c, plen, plen)) {
		__sync_fetch_and_add(&e->drop_bw, 1);
		return TC_ACT_SHOT;
	}
	if (!user_budget(e, o->flags, plen, 1))
		return TC_ACT_SHOT;

	struct out_hdr h = {.ip = *ip,
			    .u = {.source = o->src_port,
				  .dest = o->dst_port,
				  .len = bpf_htons((__u16)(sizeof(struct udphdr) + 4 + plen))},
			    .num = bpf_htons(o->num),
			    .len = bpf_htons((__u16)plen)};
	h.u.check = csum_update(udp->check, old_words(ip, udp) + new_words(o, h.u.len) + h.num +
						h.len);
	new_ip(&h.ip, o, (__u16)(OUT_TO_CLIENT - L3_OFF + plen));
	int room = make_room(skb, plen);
	if (room > 0)
		return VERDICT_NEXT; /* nothing changed yet */
	if (room < 0 || store_direct(skb, o, &h, OUT_TO_CLIENT))
		return TC_ACT_SHOT;
	__sync_fetch_and_add(&e->to_client_count, (1ull << TURN_FAST_PKT_SHIFT) + plen);
	return verdict(o);
}

SEC("tc")
int turn_fast(struct __sk_buff *skb)
{
	if (skb->protocol != bpf_htons(ETH_P_IP))
		return VERDICT_NEXT;
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	/* headers and a ChannelData header in the linear part (a shorter
	 * datagram from a peer is fine); pulled only when they are not */
	if (data + PAY_OFF + 4 > end) {
		if (bpf_skb_pull_data(skb, skb->len < PAY_OFF + 4 ? skb->len : PAY_OFF + 4) < 0)
			return VERDICT_NEXT;
		data = (void *)(long)skb->data;
		end = (void *)(long)skb->data_end;
	}
	struct ethhdr *eth = data;
	struct iphdr *ip = data + L3_OFF;
	struct udphdr *udp = data + L4_OFF;
	__u8 *pay = data + PAY_OFF;
	if ((void *)pay > end)
		return VERDICT_NEXT;
	if (eth->h_proto != bpf_htons(ETH_P_IP) || ip->ihl != 5 || ip->protocol != IPPROTO_UDP ||
	    (ip->frag_off & bpf_htons(0x3fff)))
		return VERDICT_NEXT;
	__u32 ulen = bpf_ntohs(udp->len);
	if (ulen < sizeof(struct udphdr) || ulen != bpf_ntohs(ip->tot_len) - sizeof *ip)
		return VERDICT_NEXT;
	__u32 plen = ulen - sizeof(struct udphdr);
	if (plen > TURN_FAST_MAX_DATA + 4)
		return VERDICT_NEXT;
	__u32 zero = 0;
	struct turn_fast_conf *c = bpf_map_lookup_elem(&turn_conf, &zero);
	if (!c)
		return VERDICT_NEXT;
		/* the listeners first: one may sit inside the relay range (an
		 * ephemeral port in tests), and its traffic is never a peer's */
#pragma unroll
	for (int i = 0; i < TURN_FAST_LISTEN; i++)
		if (i < c->nlisten && udp->dest == c->listen_port[i])
			return to_peer(skb, ip, udp, pay, plen, end, c);
	__u16 dport = bpf_ntohs(udp->dest);
	if (dport >= c->relay_lo && dport <= c->relay_hi) {
		if (plen == 0 || plen > TURN_FAST_MAX_DATA)
			return VERDICT_NEXT;
		return to_client(skb, ip, udp, plen, c);
	}
	return VERDICT_NEXT;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
