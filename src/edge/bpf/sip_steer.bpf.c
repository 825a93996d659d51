/* SIP steering: an sk_reuseport program that hands each UDP datagram to the
 * socket of the worker that owns its Call-ID, so that the worker that receives
 * a message is the one that must handle it.
 *
 * Every worker has its own socket on each UDP listener (SO_REUSEPORT). Left
 * to itself the kernel picks the socket by a hash of the source address and
 * port, so a call's INVITE (from the caller) and its 180/200 (from the callee)
 * land on different workers, and user space must pass half the messages to
 * the Call-ID's owner (a queue, an eventfd write and a wake-up each). This
 * program finds the Call-ID header in the datagram's head and picks the
 * owner's socket with the very hash user space uses (edge_worker_of_callid:
 * FNV-1a 64 of the value, modulo the worker count).
 *
 * It only chooses a socket. A datagram without a Call-ID it can find (STUN,
 * CRLF keepalives, a Call-ID past the first SIP_STEER_SCAN - 1 bytes, folded or
 * odd header forms) is left to the kernel's default choice, and user space
 * hands it on as before: steering saves work, it never decides correctness.
 */
#include <linux/bpf.h>
#include <linux/types.h>

#include <bpf/bpf_helpers.h>

#include "sip_steer.h"

/* set by user space before load: the listener's worker count */
const volatile __u32 n_workers = 1;

/* index = worker; value = that worker's socket on this listener */
struct {
	__uint(type, BPF_MAP_TYPE_REUSEPORT_SOCKARRAY);
	__uint(max_entries, SIP_STEER_MAX_WORKERS);
	__type(key, __u32);
	__type(value, __u64);
} workers SEC(".maps");

struct head {
	__u8 b[SIP_STEER_SCAN + 16]; /* + room for an 8-byte read at any offset */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct head);
} scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SIP_STEER_NCOUNT);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

#define MASK (SIP_STEER_SCAN - 1)
/* Offsets kept in struct scan are stored masked to this, so that the
 * verifier sees the same range on every call of step() and proves the loop
 * once instead of once per offset. */
#define KEEP (2 * SIP_STEER_SCAN - 1)
#define UDP_HDR 8
#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL
/* "call-id" as the first 7 bytes of a little-endian word */
#define CALL_ID_LE 0x0064692d6c6c6163ULL

struct scan {
	struct head *h;
	__u32 n;   /* bytes of the head loaded */
	__u32 pos; /* where the search for the next line feed goes on */
	__u32 val; /* where the Call-ID value starts; 0 = not found */
};

/* Index (0-7) of the lowest byte flagged in t (only bits 7, 15, ... 63 set). */
static __always_inline __u32 lowest_byte(__u64 t)
{
	__u32 k = 0;
	if (!(t & 0xffffffffULL)) {
		k += 4;
		t >>= 32;
	}
	if (!(t & 0xffffULL)) {
		k += 2;
		t >>= 16;
	}
	if (!(t & 0xffULL))
		k += 1;
	return k;
}

/* Bytes of w equal to c flagged (bit 7 of each); the lowest flag is exact. */
static __always_inline __u64 bytes_eq(__u64 w, __u8 c)
{
	__u64 x = w ^ (ONES * c);
	return (x - ONES) & ~x & HIGHS;
}

static __always_inline int is_ws(__u8 c)
{
	return c == ' ' || c == '\t';
}

/* One step of the search: 8 bytes without a line feed, or one header line's
 * name. Returns 1 to stop (found, end of the headers, end of the head). */
static long step(__u32 i, struct scan *s)
{
	(void)i;
	__u32 pos = s->pos & KEEP;
	if (pos >= s->n)
		return 1;
	__u64 w = *(__u64 *)(s->h->b + (pos & MASK));
	__u64 lf = bytes_eq(w, '\n');
	if (!lf) {
		s->pos = (pos + 8) & KEEP;
		return 0;
	}
	__u32 ls = pos + lowest_byte(lf) + 1; /* a line starts here */
	s->pos = ls & KEEP;
	if (ls + 2 > s->n)
		return 1;
	__u64 name = *(__u64 *)(s->h->b + (ls & MASK));
	__u8 c0 = (__u8)name;
	if (c0 == '\r' || c0 == '\n')
		return 1; /* the empty line: no Call-ID among the headers */
	__u32 after;
	if (((name | ONES * 0x20) & 0x00ffffffffffffffULL) == CALL_ID_LE)
		after = ls + 7;
	else if ((c0 | 0x20) == 'i')
		after = ls + 1; /* the compact form */
	else
		return 0;
	/* HCOLON = *( SP / HTAB ) ":" SWS: "Call-Info" and "In-Reply-To" fail here */
	for (int k = 0; k < 4; k++) {
		if (after >= s->n)
			return 1;
		__u8 c = s->h->b[after & MASK];
		if (c == ':') {
			after++;
			for (int j = 0; j < 8 && after < s->n && is_ws(s->h->b[after & MASK]); j++)
				after++;
			s->val = after & KEEP;
			return 1;
		}
		if (!is_ws(c))
			return 0;
		after++;
	}
	return 0;
}

struct callid {
	struct head *h;
	__u32 n;
	__u32 pos; /* the next byte of the value */
	__u32 got; /* 1 once a byte is hashed: a constant, not a count, so that
		    * the verifier finds the same state on every call */
	__u64 hash;
};

/* Eight bytes of the Call-ID value: callid = word ["@" word] ends at white
 * space or the line's end; FNV-1a 64 as hash_fnv1a (src/core/util.c). A
 * callback, like step(), so that the verifier proves it once: written as a
 * loop over 256 bytes it walked every byte's exits (211,000 instructions,
 * 0.3-4 s per load on a busy machine, at every start of every server). */
static long hash_step(__u32 i, struct callid *c)
{
	(void)i;
	__u32 pos = c->pos & KEEP;
	if (pos >= c->n)
		return 1;
	__u64 w = *(__u64 *)(c->h->b + (pos & MASK));
	__u64 end = bytes_eq(w, '\r') | bytes_eq(w, '\n') | bytes_eq(w, ' ') | bytes_eq(w, '\t');
	__u32 k = end ? lowest_byte(end) : 8;
	if (k > c->n - pos)
		k = c->n - pos;
	__u64 hash = c->hash;
	for (__u32 j = 0; j < 8; j++) {
		if (j >= k)
			break;
		hash = (hash ^ ((w >> (8 * j)) & 0xff)) * 1099511628211ULL;
	}
	c->hash = hash;
	if (k)
		c->got = 1;
	if (k < 8)
		return 1;
	c->pos = (pos + 8) & KEEP;
	return 0;
}

static __always_inline void count(__u32 i)
{
	__u64 *v = bpf_map_lookup_elem(&counts, &i);
	if (v)
		(*v)++;
}

SEC("sk_reuseport")
int sip_steer(struct sk_reuseport_md *ctx)
{
	__u32 zero = 0;
	struct head *h = bpf_map_lookup_elem(&scratch, &zero);
	if (!h)
		return SK_PASS;
	__u32 len = ctx->len;
	if (len < UDP_HDR + 16)
		goto left;
	__u32 n = len - UDP_HDR;
	if (n > MASK)
		n = MASK;
	/* 1 <= n <= MASK + 1 where the verifier sees it (clang may test a copy) */
	__u32 n1 = n - 1;
	asm volatile("%[v] &= %[m]" : [v] "+r"(n1) : [m] "i"(MASK));
	n = n1 + 1;
	if (bpf_skb_load_bytes(ctx, UDP_HDR, h->b, n))
		goto left;
	/* A REGISTER is handled by whichever worker receives it (the registrar
	 * orders REGISTERs under the store's lock; edge_handled_where_received):
	 * steering it would only cost the search. */
	if (*(__u64 *)h->b == 0x5245545349474552ULL && h->b[8] == ' ') /* "REGISTER" */
		goto left;
	struct scan s = {.h = h, .n = n};
	/* at most one step per 8 bytes and one per line */
	bpf_loop(SIP_STEER_SCAN / 4, step, &s, 0);
	if (!s.val)
		goto left;
	struct callid c = {.h = h, .n = n, .pos = s.val, .hash = 14695981039346656037ULL};
	bpf_loop(256 / 8, hash_step, &c, 0);
	if (!c.got || n_workers == 0)
		goto left;
	__u32 w = (__u32)(c.hash % n_workers);
	if (bpf_sk_select_reuseport(ctx, &workers, &w, 0))
		goto left;
	count(SIP_STEER_STEERED);
	return SK_PASS;
left:
	count(SIP_STEER_DEFAULT);
	return SK_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
