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
 * whose UDP checksum does not verify (also checksums left for the NIC to fill
 * in, from senders on this host: the kernel's metadata for them would point
 * at the wrong bytes once the header grew or shrank).
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
 * and UDP headers are written fresh. The new UDP checksum is computed from
 * the data's sum (one pass, which also verifies the old one) and the new
 * headers. Counters and the allocation's bandwidth bucket live in a map
 * keyed by the allocation, read back by user space.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>
#include <stddef.h>

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
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TURN_FAST_MAX_ALLOCS);
	__type(key, __u64);
	__type(value, struct turn_fast_stats);
} turn_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct turn_fast_conf);
} turn_conf SEC(".maps");

/* the data is copied here to be summed (bpf_csum_diff takes 512 bytes a call) */
struct scratch {
	__u8 b[2048]; /* 1024 + the largest chunk the verifier can be shown */
};
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} turn_scratch SEC(".maps");

#define L3_OFF ((int)sizeof(struct ethhdr))
#define L4_OFF (L3_OFF + (int)sizeof(struct iphdr))
#define PAY_OFF (L4_OFF + (int)sizeof(struct udphdr))

static __always_inline __u32 fold(__u64 s)
{
	s = (s & 0xffffffff) + (s >> 32);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u32)s;
}

/* The one's complement sum of len bytes at off (zero-padded to 4), as raw
 * network-order words; -1 when they cannot be read. */
static __always_inline __s64 data_sum(struct __sk_buff *skb, __u32 off, __u32 len)
{
	if (len == 0)
		return 0;
	if (len > TURN_FAST_MAX_DATA)
		return -1;
	__u32 zero = 0;
	struct scratch *s = bpf_map_lookup_elem(&turn_scratch, &zero);
	if (!s)
		return -1;
	if (bpf_skb_load_bytes(skb, off, s->b, len))
		return -1;
	__u32 i = len & 0x7ff;
	if (i + 3 < sizeof(s->b)) {
		s->b[i] = 0;
		s->b[i + 1] = 0;
		s->b[i + 2] = 0;
	}
	__u32 r = (len + 3) & ~3u;
	__s64 acc = 0;
#pragma unroll
	for (__u32 k = 0; k < 3; k++) {
		__u32 o = k * 512;
		if (o >= r)
			break;
		__u32 n = r - o;
		if (n > 512)
			n = 512;
		n &= 0x3fc;
		acc = bpf_csum_diff(NULL, 0, (__be32 *)(s->b + o), n, (__wsum)acc);
		if (acc < 0)
			return -1;
	}
	return acc;
}

/* The allocation's bandwidth bucket ([turn] bandwidth): false when over. Two
 * CPUs may race on it: it can let a packet too many through, never count
 * one wrong. */
static __always_inline int bw_take(struct turn_fast_stats *st, __u32 len)
{
	if (!st->rate)
		return 1;
	__u64 now = bpf_ktime_get_coarse_ns(); /* a tick is fine for a 1 s bucket */
	__u64 full = st->rate * 1000000000ull;
	__u64 el = now - st->last_ns;
	if (el > 1000000000ull)
		el = 1000000000ull;
	__u64 tok = st->tokens + el * st->rate;
	if (tok > full)
		tok = full;
	st->last_ns = now;
	__u64 cost = (__u64)len * 1000000000ull;
	if (tok < cost) {
		st->tokens = tok;
		__sync_fetch_and_add(&st->drop_bw, 1);
		return 0;
	}
	st->tokens = tok - cost;
	return 1;
}

/* A fresh IPv4 header from the old one: new addresses, length, TTL 64 (a
 * datagram of the relay's), DF as the allocation says, checksum. */
static __always_inline int write_ip(struct __sk_buff *skb, const struct iphdr *old,
				    const struct turn_fast_out *o, __u16 tot_len)
{
	struct iphdr ip = *old;
	ip.saddr = o->src_addr;
	ip.daddr = o->dst_addr;
	ip.tot_len = bpf_htons(tot_len);
	ip.ttl = 64;
	ip.frag_off = (o->flags & TURN_FAST_DF) ? bpf_htons(0x4000) : 0;
	ip.check = 0;
	__s64 s = bpf_csum_diff(NULL, 0, (__be32 *)&ip, sizeof ip, 0);
	if (s < 0)
		return -1;
	ip.check = (__u16)~fold((__u64)s);
	return bpf_skb_store_bytes(skb, L3_OFF, &ip, sizeof ip, 0);
}

static __always_inline __u64 pseudo_sum(__be32 src, __be32 dst, __be16 ulen)
{
	return (__u64)src + dst + bpf_htons(IPPROTO_UDP) + ulen;
}

static __always_inline __u16 final_csum(__u64 s)
{
	__u16 c = (__u16)~fold(s);
	return c ? c : 0xffff; /* RFC 768: 0 means "none" */
}

static __always_inline int verdict(const struct turn_fast_out *o)
{
	if (o->flags & TURN_FAST_LOCAL)
		return VERDICT_LOCAL; /* the destination is on this host: up the stack */
	return bpf_redirect_neigh(o->ifindex, NULL, 0, 0);
}

/* ChannelData from a client to its peer: strip the header. */
static __always_inline int to_peer(struct __sk_buff *skb, struct iphdr *ip, struct udphdr *udp,
				   __u8 *pay, __u32 plen, void *end)
{
	if (plen < 4 || (void *)(pay + 4) > end || (pay[0] & 0xc0) != 0x40)
		return VERDICT_NEXT;
	__u16 num = ((__u16)pay[0] << 8) | pay[1];
	__u32 dlen = ((__u32)pay[2] << 8) | pay[3];
	if (dlen + 4 != plen) /* padded, or not what the length says: user space */
		return VERDICT_NEXT;
	struct turn_fast_chan_key k = {.srv_addr = ip->daddr,
				       .client_addr = ip->saddr,
				       .srv_port = udp->dest,
				       .client_port = udp->source,
				       .num = num};
	struct turn_fast_out *o = bpf_map_lookup_elem(&turn_chan, &k);
	if (!o)
		return VERDICT_NEXT;
	struct turn_fast_stats *st = bpf_map_lookup_elem(&turn_stats, &o->alloc);
	if (!st)
		return VERDICT_NEXT;
	__s64 d = data_sum(skb, PAY_OFF + 4, dlen);
	if (d < 0)
		return VERDICT_NEXT;
	__be32 chdr = *(__be32 *)pay;
	if (udp->check &&
	    fold(pseudo_sum(ip->saddr, ip->daddr, udp->len) + udp->source + udp->dest + udp->len +
		 udp->check + (chdr & 0xffff) + (chdr >> 16) + (__u64)d) != 0xffff)
		return VERDICT_NEXT;
	if (!bw_take(st, dlen))
		return TC_ACT_SHOT;

	struct iphdr old = *ip;
	struct udphdr nu = {.source = o->src_port,
			    .dest = o->dst_port,
			    .len = bpf_htons((__u16)(dlen + sizeof nu))};
	nu.check = final_csum(pseudo_sum(o->src_addr, o->dst_addr, nu.len) + nu.source + nu.dest +
			      nu.len + (__u64)d);
	if (bpf_skb_adjust_room(skb, -4, BPF_ADJ_ROOM_NET, 0))
		return VERDICT_NEXT; /* nothing changed yet (the bucket spent: a rare miss) */
	if (bpf_skb_store_bytes(skb, L4_OFF, &nu, sizeof nu, 0) ||
	    write_ip(skb, &old, o, (__u16)(sizeof old + sizeof nu + dlen)))
		return TC_ACT_SHOT;
	__sync_fetch_and_add(&st->to_peer_pkts, 1);
	__sync_fetch_and_add(&st->to_peer_bytes, dlen);
	return verdict(o);
}

/* A datagram from a peer to a relayed address: frame it for the client. */
static __always_inline int to_client(struct __sk_buff *skb, struct iphdr *ip, struct udphdr *udp,
				     __u32 plen)
{
	struct turn_fast_peer_key k = {.relay_addr = ip->daddr,
				       .peer_addr = ip->saddr,
				       .relay_port = udp->dest,
				       .peer_port = udp->source};
	struct turn_fast_out *o = bpf_map_lookup_elem(&turn_peer, &k);
	if (!o)
		return VERDICT_NEXT;
	struct turn_fast_stats *st = bpf_map_lookup_elem(&turn_stats, &o->alloc);
	if (!st)
		return VERDICT_NEXT;
	__s64 d = data_sum(skb, PAY_OFF, plen);
	if (d < 0)
		return VERDICT_NEXT;
	if (udp->check && fold(pseudo_sum(ip->saddr, ip->daddr, udp->len) + udp->source +
			       udp->dest + udp->len + udp->check + (__u64)d) != 0xffff)
		return VERDICT_NEXT;
	if (!bw_take(st, plen))
		return TC_ACT_SHOT;

	struct iphdr old = *ip;
	struct {
		struct udphdr u;
		__be16 num, len;
	} h = {.u = {.source = o->src_port,
		     .dest = o->dst_port,
		     .len = bpf_htons((__u16)(sizeof h + plen))},
	       .num = bpf_htons(o->num),
	       .len = bpf_htons((__u16)plen)};
	h.u.check = final_csum(pseudo_sum(o->src_addr, o->dst_addr, h.u.len) + h.u.source +
			       h.u.dest + h.u.len + h.num + h.len + (__u64)d);
	if (bpf_skb_adjust_room(skb, 4, BPF_ADJ_ROOM_NET, 0))
		return VERDICT_NEXT; /* nothing changed yet */
	if (bpf_skb_store_bytes(skb, L4_OFF, &h, sizeof h, 0) ||
	    write_ip(skb, &old, o, (__u16)(sizeof old + sizeof h + plen)))
		return TC_ACT_SHOT;
	__sync_fetch_and_add(&st->to_client_pkts, 1);
	__sync_fetch_and_add(&st->to_client_bytes, plen);
	return verdict(o);
}

SEC("tc")
int turn_fast(struct __sk_buff *skb)
{
	if (skb->protocol != bpf_htons(ETH_P_IP))
		return VERDICT_NEXT;
	/* headers and a ChannelData header in the linear part (a shorter
	 * datagram from a peer is fine) */
	if (bpf_skb_pull_data(skb, skb->len < PAY_OFF + 4 ? skb->len : PAY_OFF + 4) < 0)
		return VERDICT_NEXT;
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
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
			return to_peer(skb, ip, udp, pay, plen, end);
	__u16 dport = bpf_ntohs(udp->dest);
	if (dport >= c->relay_lo && dport <= c->relay_hi) {
		if (plen == 0 || plen > TURN_FAST_MAX_DATA)
			return VERDICT_NEXT;
		return to_client(skb, ip, udp, plen);
	}
	return VERDICT_NEXT;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
