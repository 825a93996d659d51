/* Server transaction keys (RFC 3261 17.2.3, and RFC 2543 matching), built on the stack. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "edge_int.h"

static void tk_init(struct edge_tkey *k)
{
	k->p = k->stack;
	k->len = 0;
	k->cap = sizeof k->stack;
	k->failed = false;
}

void edge_tkey_free(struct edge_tkey *k)
{
	if (k->p != k->stack)
		free(k->p);
}

static void tk_add(struct edge_tkey *k, const char *p, size_t l)
{
	if (k->failed)
		return;
	if (l > k->cap - k->len) {
		size_t cap = MAX(k->cap * 2, k->len + l);
		char *np = k->p == k->stack ? malloc(cap) : realloc(k->p, cap);
		if (!np) {
			k->failed = true;
			return;
		}
		if (k->p == k->stack)
			memcpy(np, k->stack, k->len);
		k->p = np;
		k->cap = cap;
	}
	memcpy(k->p + k->len, p, l);
	k->len += l;
}

static void tk_slice(struct edge_tkey *k, struct slice s)
{
	tk_add(k, s.p, s.l);
}

static void tk_char(struct edge_tkey *k, char c)
{
	tk_add(k, &c, 1);
}

static void tk_u32(struct edge_tkey *k, uint32_t v)
{
	char d[10];
	size_t n = 0;
	do {
		d[sizeof d - ++n] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	tk_add(k, d + sizeof d - n, n);
}

/* Server key: RFC 3261 17.2.3 (branch, sent-by, method; ACK matches INVITE),
 * else the RFC 2543 fields:
 *   branch "|" host ":" port "|" method
 *   "2543|" call-id "|" cseq "|" from-tag "|" top Via "|" method */
int edge_st_key(struct edge_tkey *k, const struct sip_msg *m, enum sip_method as,
		struct slice as_name)
{
	struct slice cls = as == SIP_ACK || as == SIP_INVITE ? SLICE_LIT("INVITE") : as_name;
	const struct sip_via *v = &m->via1;
	tk_init(k);
	if (v->branch.l > 7 && strncmp(v->branch.p, SIP_BRANCH_MAGIC, 7) == 0) {
		tk_slice(k, v->branch);
		tk_char(k, '|');
		tk_slice(k, v->host);
		tk_char(k, ':');
		tk_u32(k, v->port);
	} else {
		tk_add(k, "2543|", 5);
		tk_slice(k, m->call_id);
		tk_char(k, '|');
		tk_u32(k, m->cseq.num);
		tk_char(k, '|');
		tk_slice(k, m->from_tag);
		tk_char(k, '|');
		tk_slice(k, v->whole);
	}
	tk_char(k, '|');
	tk_slice(k, cls);
	if (k->failed) {
		edge_tkey_free(k);
		return ENOMEM;
	}
	return 0;
}
