/* relay fast path: forwards the RTP of latched streams in the kernel (tc ingress), so that a
 * packet costs no wake-up, no recvmmsg and no sendmmsg of the relay's process.
 *
 * User space (src/relay/fastpath.c) owns every decision: it latches a stream
 * as before and then installs one entry per receiving RTP socket, keyed by
 * the socket's local address and port: "RTP from exactly this source goes out
 * from that address and port to that destination". This program only applies
 * entries. Anything it is not sure of goes up the stack unchanged to the
 * relay's socket, where user space handles it as it always did: a source
 * other than the latched one (RTP Bleed attempts, re-latching), RTCP, STUN,
 * DTLS, malformed or oversized datagrams, IPv6, IP options and fragments.
 *
 * Counters (packets, bytes, sequence gaps as rtp_seq_update counts them, last
 * activity) live in a second map that outlives entry changes, so user space
 * can add them to its own and the totals stay exact.
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

#include "relay_fast.h"

/* tc verdicts, also tcx's: NEXT lets other programs (other relays on the
 * same interface) see the packet; OK delivers it up the stack. */
#define VERDICT_NEXT TC_ACT_UNSPEC
#define VERDICT_LOCAL TC_ACT_OK

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, RELAY_FAST_MAX);
	__type(key, struct relay_fast_key);
	__type(value, struct relay_fast_fwd);
} fwd SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, RELAY_FAST_MAX);
	__type(key, struct relay_fast_key);
	__type(value, struct relay_fast_stats);
} stats SEC(".maps");

/* [0]: the port range, so other traffic costs one compare */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct relay_fast_conf);
} conf SEC(".maps");

#define L3_OFF ((int)sizeof(struct ethhdr))
#define L4_OFF (L3_OFF + (int)sizeof(struct iphdr))
#define RTP_OFF (L4_OFF + (int)sizeof(struct udphdr))
#define IP_CSUM_OFF (L3_OFF + (int)offsetof(struct iphdr, check))
#define UDP_CSUM_OFF (L4_OFF + (int)offsetof(struct udphdr, check))
#define IP_TTL_OFF (L3_OFF + (int)offsetof(struct iphdr, ttl))

/* The checks of rtp_parse (src/rtp): an RTP packet user space would forward.
 * RTCP (RFC 5761 PT range), padding or lengths that do not add up: NO. */
static __always_inline int rtp_ok(struct __sk_buff *skb, __u32 len, const __u8 *h)
{
	if (len < 12 || (h[0] >> 6) != 2)
		return 0;
	if (h[1] >= 192 && h[1] <= 223)
		return 0; /* RTCP: user space muxes, demuxes and parses it */
	__u8 pt = h[1] & 0x7f;
	if (pt >= 64 && pt <= 95)
		return 0;
	__u32 off = 12 + 4 * (__u32)(h[0] & 0x0f);
	if (off > len)
		return 0;
	if (h[0] & 0x10) {
		__u8 ext[4];
		if (off + 4 > len || off > RELAY_FAST_MAX_LEN)
			return 0;
		if (bpf_skb_load_bytes(skb, RTP_OFF + off, ext, 4))
			return 0;
		off += 4 + 4 * (((__u32)ext[2] << 8) | ext[3]);
		if (off > len)
			return 0;
	}
	if (h[0] & 0x20) {
		__u8 pad;
		if (len > RELAY_FAST_MAX_LEN)
			return 0;
		if (bpf_skb_load_bytes(skb, RTP_OFF + len - 1, &pad, 1))
			return 0;
		if (pad == 0 || pad > len - off)
			return 0;
	}
	return 1;
}

/* rtp_seq_update of src/rtp, on the kernel's copy of the stream's state. Two
 * CPUs may run one stream at once only if its sender does; then a gap can be
 * miscounted, never a packet. */
static __always_inline void seq_update(struct relay_fast_stats *st, __u32 ssrc, __u16 seq)
{
	if (!st->seq_init || st->ssrc != ssrc) {
		if (st->seq_init)
			__sync_fetch_and_add(&st->resyncs, 1);
		st->seq_init = 1;
		st->ssrc = ssrc;
		st->max_seq = seq;
		return;
	}
	__u16 delta = (__u16)(seq - st->max_seq);
	if (delta == 0)
		return;
	if (delta < RELAY_FAST_MAX_DROPOUT) {
		st->max_seq = seq;
		if (delta > 1)
			__sync_fetch_and_add(&st->gaps, delta - 1);
		return;
	}
	if (delta > 0x10000 - 100)
		return;
	__sync_fetch_and_add(&st->resyncs, 1);
	st->max_seq = seq;
}

SEC("tc")
int relay_fast(struct __sk_buff *skb)
{
	if (skb->protocol != bpf_htons(ETH_P_IP))
		return VERDICT_NEXT;
	/* headers and the fixed RTP header in the linear part */
	if (bpf_skb_pull_data(skb, RTP_OFF + 12) < 0)
		return VERDICT_NEXT;
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + L3_OFF;
	struct udphdr *udp = data + L4_OFF;
	__u8 *rtp = data + RTP_OFF;
	if ((void *)(rtp + 12) > end)
		return VERDICT_NEXT;
	if (eth->h_proto != bpf_htons(ETH_P_IP) || ip->ihl != 5 || ip->protocol != IPPROTO_UDP ||
	    (ip->frag_off & bpf_htons(0x3fff)))
		return VERDICT_NEXT;
	__u32 zero = 0;
	struct relay_fast_conf *c = bpf_map_lookup_elem(&conf, &zero);
	__u16 dport = bpf_ntohs(udp->dest);
	if (!c || dport < c->port_lo || dport > c->port_hi)
		return VERDICT_NEXT;
	struct relay_fast_key k = {.addr = ip->daddr, .port = udp->dest};
	struct relay_fast_fwd *f = bpf_map_lookup_elem(&fwd, &k);
	if (!f) {
		k.addr = 0; /* a socket bound to the wildcard address */
		f = bpf_map_lookup_elem(&fwd, &k);
		if (!f)
			return VERDICT_NEXT;
	}
	/* only the latched source; everyone else meets user space's latch */
	if (ip->saddr != f->peer_addr || udp->source != f->peer_port)
		return VERDICT_NEXT;
	__u32 ulen = bpf_ntohs(udp->len);
	if (ulen < sizeof(struct udphdr) + 12 || ulen > bpf_ntohs(ip->tot_len) - sizeof *ip)
		return VERDICT_NEXT;
	__u32 len = ulen - sizeof(struct udphdr);
	if (len > RELAY_FAST_MAX_LEN || !rtp_ok(skb, len, rtp))
		return VERDICT_NEXT;
	struct relay_fast_stats *st = bpf_map_lookup_elem(&stats, &k);
	if (!st)
		return VERDICT_NEXT;
	__u16 seq = ((__u16)rtp[2] << 8) | rtp[3];
	__u32 ssrc = ((__u32)rtp[8] << 24) | ((__u32)rtp[9] << 16) | ((__u32)rtp[10] << 8) | rtp[11];

	/* rewrite: from the other leg's socket to that leg's party, as a fresh
	 * datagram of the relay (TTL 64), checksums patched incrementally */
	__be32 osrc = ip->saddr, odst = ip->daddr, nsrc = f->out_addr, ndst = f->dst_addr;
	__be16 osport = udp->source, odport = udp->dest;
	__be16 nsport = f->out_port, ndport = f->dst_port;
	__be16 old_ttl = *(__be16 *)&ip->ttl, new_ttl;
	((__u8 *)&new_ttl)[0] = 64;
	((__u8 *)&new_ttl)[1] = ip->protocol;
	__u8 redirect = !(f->flags & RELAY_FAST_LOCAL);
	__u32 ifindex = f->ifindex;

	bpf_skb_store_bytes(skb, L3_OFF + offsetof(struct iphdr, saddr), &nsrc, 4, 0);
	bpf_skb_store_bytes(skb, L3_OFF + offsetof(struct iphdr, daddr), &ndst, 4, 0);
	bpf_skb_store_bytes(skb, IP_TTL_OFF, &new_ttl, 2, 0);
	bpf_l3_csum_replace(skb, IP_CSUM_OFF, osrc, nsrc, 4);
	bpf_l3_csum_replace(skb, IP_CSUM_OFF, odst, ndst, 4);
	bpf_l3_csum_replace(skb, IP_CSUM_OFF, old_ttl, new_ttl, 2);
	bpf_l4_csum_replace(skb, UDP_CSUM_OFF, osrc, nsrc,
			    4 | BPF_F_PSEUDO_HDR | BPF_F_MARK_MANGLED_0);
	bpf_l4_csum_replace(skb, UDP_CSUM_OFF, odst, ndst,
			    4 | BPF_F_PSEUDO_HDR | BPF_F_MARK_MANGLED_0);
	bpf_skb_store_bytes(skb, L4_OFF + offsetof(struct udphdr, source), &nsport, 2, 0);
	bpf_skb_store_bytes(skb, L4_OFF + offsetof(struct udphdr, dest), &ndport, 2, 0);
	bpf_l4_csum_replace(skb, UDP_CSUM_OFF, osport, nsport, 2 | BPF_F_MARK_MANGLED_0);
	bpf_l4_csum_replace(skb, UDP_CSUM_OFF, odport, ndport, 2 | BPF_F_MARK_MANGLED_0);

	seq_update(st, ssrc, seq);
	__sync_fetch_and_add(&st->packets, 1);
	__sync_fetch_and_add(&st->bytes, len);
	st->last_ns = bpf_ktime_get_ns();

	if (!redirect)
		return VERDICT_LOCAL; /* the party is on this host: up the stack */
	return bpf_redirect_neigh(ifindex, NULL, 0, 0);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
