/* STUN fast path: answers plain IPv4 Binding requests in the kernel (tc ingress), so that a
 * keepalive or a probe costs no wake-up and no system call of the STUN server.
 *
 * Only the commonest request is answered here: a 20-byte Binding request
 * (magic cookie, no attributes), the RFC 5626 keepalive and every client's
 * first probe. The answer is the one src/stund/respond.c gives it, byte for
 * byte: XOR-MAPPED-ADDRESS, plus RESPONSE-ORIGIN and OTHER-ADDRESS when the
 * socket serves RFC 5780. The per-source budget is a token bucket per IPv4
 * source, as user space keeps it; a request over budget is dropped and
 * counted. Everything else (attributes, FINGERPRINT, CHANGE-REQUEST, classic
 * RFC 3489, IPv6, errors) goes up to the server's socket unchanged.
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

#include "stun_fast.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, STUN_FAST_SOCKS);
	__type(key, struct stun_fast_key);
	__type(value, struct stun_fast_sock);
} socks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct stun_fast_conf);
} conf SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, STUN_FAST_SOURCES);
	__type(key, __be32);
	__type(value, struct stun_fast_bucket);
} buckets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STUN_FAST_NCOUNT);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

#define L3_OFF ((int)sizeof(struct ethhdr))
#define L4_OFF (L3_OFF + (int)sizeof(struct iphdr))
#define MSG_OFF (L4_OFF + (int)sizeof(struct udphdr))
#define UDP_CSUM_OFF (L4_OFF + (int)offsetof(struct udphdr, check))
#define COOKIE 0x2112A442
#define RESP_MAX 56

static __always_inline void count(__u32 i)
{
	__u64 *c = bpf_map_lookup_elem(&counts, &i);
	if (c)
		(*c)++;
}

/* stund_limiter_allow's token bucket, per IPv4 source */
static __always_inline int allow(__be32 src)
{
	__u32 zero = 0;
	struct stun_fast_conf *c = bpf_map_lookup_elem(&conf, &zero);
	if (!c || !c->rate)
		return 1;
	__u64 now = bpf_ktime_get_ns(), full = (__u64)c->burst * 1000;
	struct stun_fast_bucket *b = bpf_map_lookup_elem(&buckets, &src);
	if (!b) {
		struct stun_fast_bucket nb = {.milli = full - 1000, .last_ns = now};
		bpf_map_update_elem(&buckets, &src, &nb, BPF_ANY);
		return 1;
	}
	__u64 elapsed_ms = now > b->last_ns ? (now - b->last_ns) / 1000000 : 0;
	__u64 m = b->milli + elapsed_ms * c->rate;
	if (m > full)
		m = full;
	/* whole milliseconds only, as user space: keep the remainder for later */
	b->last_ns += elapsed_ms * 1000000;
	if (m < 1000) {
		b->milli = m;
		return 0;
	}
	b->milli = m - 1000;
	return 1;
}

static __always_inline void put_addr(__u8 *p, __u16 type, __be32 addr, __be16 port, int xor)
{
	__u16 t = bpf_htons(type), l = bpf_htons(8);
	__builtin_memcpy(p, &t, 2);
	__builtin_memcpy(p + 2, &l, 2);
	p[4] = 0;
	p[5] = 1; /* IPv4 */
	if (xor) {
		port ^= bpf_htons(COOKIE >> 16);
		addr ^= bpf_htonl(COOKIE);
	}
	__builtin_memcpy(p + 6, &port, 2);
	__builtin_memcpy(p + 8, &addr, 4);
}

static __always_inline __u16 ip_csum(const struct iphdr *ip)
{
	const __u16 *w = (const __u16 *)ip;
	__u32 sum = 0;
#pragma unroll
	for (int i = 0; i < 10; i++)
		if (i != 5)
			sum += w[i];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

SEC("tc")
int stun_fast(struct __sk_buff *skb)
{
	if (skb->protocol != bpf_htons(ETH_P_IP) || skb->len != MSG_OFF + 20)
		return TC_ACT_UNSPEC;
	if (bpf_skb_pull_data(skb, MSG_OFF + 20) < 0)
		return TC_ACT_UNSPEC;
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + L3_OFF;
	struct udphdr *udp = data + L4_OFF;
	__u8 *msg = data + MSG_OFF;
	if ((void *)(msg + 20) > end)
		return TC_ACT_UNSPEC;
	if (eth->h_proto != bpf_htons(ETH_P_IP) || ip->ihl != 5 || ip->protocol != IPPROTO_UDP ||
	    (ip->frag_off & bpf_htons(0x3fff)) || udp->len != bpf_htons(8 + 20))
		return TC_ACT_UNSPEC;
	/* a Binding request with no attributes and the magic cookie */
	__u32 cookie;
	__builtin_memcpy(&cookie, msg + 4, 4);
	if (msg[0] != 0 || msg[1] != 1 || msg[2] != 0 || msg[3] != 0 || cookie != bpf_htonl(COOKIE))
		return TC_ACT_UNSPEC;
	struct stun_fast_key k = {.addr = ip->daddr, .port = udp->dest};
	struct stun_fast_sock *s = bpf_map_lookup_elem(&socks, &k);
	if (!s) {
		k.addr = 0;
		if (!(s = bpf_map_lookup_elem(&socks, &k)))
			return TC_ACT_UNSPEC;
	}
	count(STUN_FAST_REQUESTS);
	__be32 src = ip->saddr, dst = ip->daddr;
	__be16 sport = udp->source, dport = udp->dest;
	if (!allow(src)) {
		count(STUN_FAST_LIMITED);
		return TC_ACT_SHOT;
	}

	/* the response, built beside the request, then written over it */
	__u8 old[20], resp[RESP_MAX];
	__builtin_memcpy(old, msg, 20);
	__builtin_memset(resp, 0, sizeof resp);
	int rlen = 32, r5780 = s->flags & STUN_FAST_5780;
	if (r5780)
		rlen = 56;
	resp[0] = 0x01; /* Binding success response */
	resp[1] = 0x01;
	resp[3] = (__u8)(rlen - 20);
	__builtin_memcpy(resp + 4, old + 4, 16); /* cookie and transaction id */
	put_addr(resp + 20, 0x0020, src, sport, 1);		       /* XOR-MAPPED-ADDRESS */
	put_addr(resp + 32, 0x802b, dst, dport, 0);		       /* RESPONSE-ORIGIN */
	put_addr(resp + 44, 0x802c, s->other_addr, s->other_port, 0); /* OTHER-ADDRESS */
	__u8 emac[ETH_ALEN * 2];
	__builtin_memcpy(emac, eth, sizeof emac);
	__be16 old_ulen = udp->len, new_ulen = bpf_htons(8 + rlen);
	__be16 old_tot = ip->tot_len;

	if (bpf_skb_change_tail(skb, MSG_OFF + rlen, 0))
		return TC_ACT_UNSPEC;
	if (bpf_skb_pull_data(skb, MSG_OFF + rlen) < 0)
		return TC_ACT_SHOT;
	data = (void *)(long)skb->data;
	end = (void *)(long)skb->data_end;
	eth = data;
	ip = data + L3_OFF;
	udp = data + L4_OFF;
	msg = data + MSG_OFF;
	if ((void *)(msg + RESP_MAX) > end && (void *)(msg + 32) > end)
		return TC_ACT_SHOT;
	/* back where it came from: addresses, ports and MACs swapped */
	__builtin_memcpy(eth->h_dest, emac + ETH_ALEN, ETH_ALEN);
	__builtin_memcpy(eth->h_source, emac, ETH_ALEN);
	ip->saddr = dst;
	ip->daddr = src;
	ip->ttl = 64;
	ip->tot_len = bpf_htons(20 + 8 + rlen);
	ip->check = ip_csum(ip);
	(void)old_tot;
	udp->source = dport;
	udp->dest = sport;
	udp->len = new_ulen;
	if (r5780) {
		if ((void *)(msg + 56) > end)
			return TC_ACT_SHOT;
		__builtin_memcpy(msg, resp, 56);
	} else {
		if ((void *)(msg + 32) > end)
			return TC_ACT_SHOT;
		__builtin_memcpy(msg, resp, 32);
	}
	/* UDP checksum, incrementally, whatever state the skb's checksum is in:
	 * the payload and the length (in the header and the pseudo header);
	 * swapped addresses and ports leave the sum unchanged */
	__s64 d = bpf_csum_diff((__be32 *)old, 20, (__be32 *)resp, r5780 ? 56 : 32, 0);
	if (d < 0)
		return TC_ACT_SHOT;
	bpf_l4_csum_replace(skb, UDP_CSUM_OFF, 0, (__u32)d, BPF_F_MARK_MANGLED_0);
	bpf_l4_csum_replace(skb, UDP_CSUM_OFF, old_ulen, new_ulen, 2 | BPF_F_MARK_MANGLED_0);
	bpf_l4_csum_replace(skb, UDP_CSUM_OFF, old_ulen, new_ulen,
			    2 | BPF_F_PSEUDO_HDR | BPF_F_MARK_MANGLED_0);
	count(STUN_FAST_RESPONSES);
	return bpf_redirect(skb->ifindex, 0);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
