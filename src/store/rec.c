/* The memory tier's packed bindings: pack, unpack, reference counts. */
#include <stdlib.h>
#include <string.h>

#include "store/store_int.h"

const char *store_rec_str(const struct store_rec *r, int which)
{
	const char *p = r->s;
	for (int i = 0; i < which; i++)
		p += r->len[i] + 1;
	return p;
}

static void addr_pack(union store_rec_addr *out, const struct net_addr *a)
{
	memcpy(out, &a->u, sizeof *out);
}

static void addr_unpack(struct net_addr *out, const union store_rec_addr *a)
{
	memset(out, 0, sizeof *out);
	memcpy(&out->u, a, sizeof *a);
}

/* A new record for b (fields checked by binding_check), or NULL. */
struct store_rec *store_rec_pack(const struct store_binding *b)
{
	const char *str[REC_NSTR] = {b->contact, b->instance, b->call_id, b->path, b->user_agent};
	size_t len[REC_NSTR], total = 0;
	for (int i = 0; i < REC_NSTR; i++) {
		len[i] = strlen(str[i]);
		total += len[i] + 1;
	}
	struct store_rec *r = malloc(sizeof *r + total);
	if (!r)
		return NULL;
	memset(r, 0, sizeof *r);
	r->refs = 1;
	r->id = b->id;
	r->expires_at = b->expires_at;
	r->registered_at = b->registered_at;
	r->ka = b->ka;
	r->conn_id = b->flow.conn_id;
	r->cseq = b->cseq;
	r->reg_id = b->reg_id;
	r->q = b->q;
	r->listener = b->flow.listener;
	r->tp = (uint8_t)b->flow.tp;
	r->behind_nat = b->behind_nat;
	r->nat_verdict = b->nat_verdict;
	r->nat_media = b->nat_media;
	r->nat_evidence = b->nat_evidence;
	r->nat_claim = b->nat_claim;
	addr_pack(&r->local, &b->flow.local);
	addr_pack(&r->remote, &b->flow.remote);
	char *p = r->s;
	for (int i = 0; i < REC_NSTR; i++) {
		r->len[i] = (uint16_t)len[i]; /* < STORE_*_MAX, checked */
		memcpy(p, str[i], len[i] + 1);
		p += len[i] + 1;
	}
	return r;
}

void store_rec_unpack(const struct store_rec *r, const char *aor, struct store_binding *b)
{
	memset(b, 0, sizeof *b);
	b->id = r->id;
	b->expires_at = r->expires_at;
	b->registered_at = r->registered_at;
	b->ka = r->ka;
	b->flow.tp = (enum net_transport)r->tp;
	b->flow.listener = r->listener;
	b->flow.conn_id = r->conn_id;
	addr_unpack(&b->flow.local, &r->local);
	addr_unpack(&b->flow.remote, &r->remote);
	b->cseq = r->cseq;
	b->reg_id = r->reg_id;
	b->q = r->q;
	b->behind_nat = r->behind_nat;
	b->nat_verdict = r->nat_verdict;
	b->nat_media = r->nat_media;
	b->nat_evidence = r->nat_evidence;
	b->nat_claim = r->nat_claim;
	strcpy(b->aor, aor); /* canonical, shorter than STORE_AOR_MAX */
	char *dst[REC_NSTR] = {b->contact, b->instance, b->call_id, b->path, b->user_agent};
	const char *p = r->s;
	for (int i = 0; i < REC_NSTR; i++) {
		memcpy(dst[i], p, r->len[i] + 1u);
		p += r->len[i] + 1;
	}
}

struct store_rec *store_rec_ref(struct store_rec *r)
{
	r->refs++;
	return r;
}

void store_rec_unref(struct store_rec *r)
{
	if (r && --r->refs == 0)
		free(r);
}

void store_recs_release(struct store_rec **r, size_t n)
{
	for (size_t i = 0; i < n; i++)
		store_rec_unref(r[i]);
	free(r);
}
