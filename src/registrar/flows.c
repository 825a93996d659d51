/* Outbound bindings per source address: the table behind [outbound] max_flows_per_source. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "registrar_int.h"

/*
 * One record per source (IPv4 address, IPv6 /64) that holds outbound
 * bindings registered with us as their first hop. A record lists the store
 * ids of those bindings with their expiry, sorted by id, so that a refresh
 * finds its own entry by binary search and a new binding is counted once.
 * Entries expire with their bindings: a record is purged when its source is
 * at the bound (before refusing) and by the sweep on the registrar's expiry
 * tick (an eighth of the table per 5 s tick), so a source that left costs
 * nothing some 40 s after its bindings expired.
 *
 * The store is sharded by AOR and this is keyed by source, so it has locks
 * of its own: SRC_STRIPES mutexes chosen by the source's hash. An update
 * takes a stripe while it holds its AOR's shard lock, never the other way
 * round. Id 0 marks a slot reserved by an update whose binding has no id yet
 * (a new one: the store gives the id when it is put); such slots sort first.
 *
 * When a change does not go through (refused, or its commit failed) the new
 * entry it made is taken back; what it released is not put back (a binding
 * that a failed commit kept is counted again at its next refresh, which
 * always passes): the count errs low for a while, never high for good.
 *
 * Size: a record is about 48 bytes and 16 per entry; entries exist only for
 * bindings the store accepted (or reserved for one it is accepting), so the
 * table is bounded by [registrar] max_bindings like the store itself.
 */

#define SRC_STRIPES 64

struct src_ent {
	uint64_t id; /* 0 = reserved for an update in progress */
	int64_t expires_at;
};

struct src_rec {
	struct src_rec *next; /* hash chain */
	struct net_src_key key;
	uint64_t h;
	uint32_t n, cap;
	struct src_ent *e; /* sorted by id */
};

struct src_stripe {
	pthread_mutex_t lock;
	struct src_rec **bucket;
	size_t nbuckets, nrecs, nents;
};

/* Stripes the sweep looks at per call: a round of the table every 8 calls. */
#define SRC_SWEEP_STRIPES (SRC_STRIPES / 8)

struct reg_srcs {
	unsigned max;
	uint64_t seed;	   /* so that no one picks sources that share a chain */
	size_t sweep_next; /* the next stripe to sweep; the sweeper's own */
	struct src_stripe stripe[SRC_STRIPES];
};

int reg_srcs_alloc(struct reg_srcs **sp, unsigned max)
{
	struct reg_srcs *s = calloc(1, sizeof *s);
	if (!s)
		return ENOMEM;
	s->max = max;
	rand_bytes(&s->seed, sizeof s->seed);
	for (size_t i = 0; i < SRC_STRIPES; i++) {
		struct src_stripe *st = &s->stripe[i];
		pthread_mutex_init(&st->lock, NULL);
		st->nbuckets = 16;
		st->bucket = calloc(st->nbuckets, sizeof *st->bucket);
		if (!st->bucket) {
			reg_srcs_free(s);
			return ENOMEM;
		}
	}
	*sp = s;
	return 0;
}

static void rec_free(struct src_rec *rec)
{
	free(rec->e);
	free(rec);
}

void reg_srcs_free(struct reg_srcs *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < SRC_STRIPES; i++) {
		struct src_stripe *st = &s->stripe[i];
		for (size_t b = 0; st->bucket && b < st->nbuckets; b++) {
			while (st->bucket[b]) {
				struct src_rec *rec = st->bucket[b];
				st->bucket[b] = rec->next;
				rec_free(rec);
			}
		}
		free(st->bucket);
		pthread_mutex_destroy(&st->lock);
	}
	free(s);
}

static uint64_t src_hash(const struct reg_srcs *s, const struct net_src_key *k)
{
	uint64_t w[3] = {s->seed, k->hi, k->lo};
	return hash_bytes(w, sizeof w);
}

static struct src_stripe *stripe_of(struct reg_srcs *s, uint64_t h)
{
	return &s->stripe[h % SRC_STRIPES];
}

static struct src_rec **rec_slot(struct src_stripe *st, const struct net_src_key *k, uint64_t h)
{
	struct src_rec **pp = &st->bucket[(h / SRC_STRIPES) % st->nbuckets];
	while (*pp && ((*pp)->h != h || (*pp)->key.hi != k->hi || (*pp)->key.lo != k->lo))
		pp = &(*pp)->next;
	return pp;
}

/* Doubles the chains when they average more than one record; a failed
 * allocation only leaves them longer. */
static void stripe_grow(struct src_stripe *st)
{
	if (st->nrecs <= st->nbuckets)
		return;
	size_t nb = st->nbuckets * 2;
	struct src_rec **b = calloc(nb, sizeof *b);
	if (!b)
		return;
	for (size_t i = 0; i < st->nbuckets; i++) {
		while (st->bucket[i]) {
			struct src_rec *rec = st->bucket[i];
			st->bucket[i] = rec->next;
			struct src_rec **pp = &b[(rec->h / SRC_STRIPES) % nb];
			rec->next = *pp;
			*pp = rec;
		}
	}
	free(st->bucket);
	st->bucket = b;
	st->nbuckets = nb;
}

/* Index of the first entry whose id is >= id. */
static uint32_t ent_lower(const struct src_rec *rec, uint64_t id)
{
	uint32_t lo = 0, hi = rec->n;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (rec->e[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static int ent_insert(struct src_stripe *st, struct src_rec *rec, uint64_t id, int64_t expires_at)
{
	if (rec->n == rec->cap) {
		uint32_t cap = rec->cap ? rec->cap * 2 : 4;
		struct src_ent *e = realloc(rec->e, cap * sizeof *e);
		if (!e)
			return ENOMEM;
		rec->e = e;
		rec->cap = cap;
	}
	uint32_t at = ent_lower(rec, id);
	memmove(&rec->e[at + 1], &rec->e[at], (rec->n - at) * sizeof *rec->e);
	rec->e[at] = (struct src_ent){id, expires_at};
	rec->n++;
	st->nents++;
	return 0;
}

static void ent_remove(struct src_stripe *st, struct src_rec *rec, uint32_t at)
{
	memmove(&rec->e[at], &rec->e[at + 1], (rec->n - at - 1) * sizeof *rec->e);
	rec->n--;
	st->nents--;
}

/* Drops the entries of bindings that have expired (reserved slots stay). */
static void rec_purge(struct src_stripe *st, struct src_rec *rec, int64_t now)
{
	uint32_t k = 0;
	for (uint32_t i = 0; i < rec->n; i++)
		if (rec->e[i].id == 0 || rec->e[i].expires_at > now)
			rec->e[k++] = rec->e[i];
	st->nents -= rec->n - k;
	rec->n = k;
}

/* Unlinks and frees a record left without entries. */
static void rec_drop_if_empty(struct src_stripe *st, struct src_rec **pp)
{
	struct src_rec *rec = *pp;
	if (rec->n)
		return;
	*pp = rec->next;
	rec_free(rec);
	st->nrecs--;
}

int reg_srcs_claim(struct reg_srcs *s, const struct net_src_key *src, uint64_t id, bool refresh,
		   int64_t now, int64_t expires_at, bool *reserved)
{
	struct net_src_key k = *src;
	uint64_t h = src_hash(s, &k);
	struct src_stripe *st = stripe_of(s, h);
	int err = 0;
	*reserved = false;
	pthread_mutex_lock(&st->lock);
	struct src_rec **pp = rec_slot(st, &k, h);
	struct src_rec *rec = *pp;
	if (rec && id) {
		uint32_t at = ent_lower(rec, id);
		if (at < rec->n && rec->e[at].id == id) {
			rec->e[at].expires_at = expires_at; /* counted already: a refresh */
			goto out_unlock;
		}
	}
	if (rec && !refresh && rec->n >= s->max) {
		rec_purge(st, rec, now);
		if (rec->n >= s->max) {
			err = EDQUOT;
			goto out_unlock;
		}
	}
	if (!rec) {
		rec = calloc(1, sizeof *rec);
		if (!rec) {
			err = ENOMEM;
			goto out_unlock;
		}
		rec->key = k;
		rec->h = h;
		rec->next = *pp;
		*pp = rec;
		st->nrecs++;
	}
	err = ent_insert(st, rec, 0, INT64_MAX);
	if (err)
		rec_drop_if_empty(st, pp);
	else
		*reserved = true;
	if (!err)
		stripe_grow(st); /* pp is stale from here */
out_unlock:
	pthread_mutex_unlock(&st->lock);
	return err;
}

/* Applies to the source's record under its stripe lock: id's entry is set
 * to expires_at (added if missing), and a reserved slot is given up; with
 * id 0 only the slot goes (a claim that came to nothing). */
static void settle(struct reg_srcs *s, const struct net_src_key *src, uint64_t id,
		   int64_t expires_at, bool reserved)
{
	struct net_src_key k = *src;
	uint64_t h = src_hash(s, &k);
	struct src_stripe *st = stripe_of(s, h);
	pthread_mutex_lock(&st->lock);
	struct src_rec **pp = rec_slot(st, &k, h);
	struct src_rec *rec = *pp;
	if (!rec && id) {
		/* a refresh of a binding this table lost (a failed commit): count it */
		rec = calloc(1, sizeof *rec);
		if (rec) {
			rec->key = k;
			rec->h = h;
			rec->next = *pp;
			*pp = rec;
			st->nrecs++;
		}
	}
	if (rec) {
		if (reserved && rec->n && rec->e[0].id == 0)
			ent_remove(st, rec, 0);
		if (id) {
			uint32_t at = ent_lower(rec, id);
			if (at < rec->n && rec->e[at].id == id)
				rec->e[at].expires_at = expires_at;
			else
				(void)ent_insert(st, rec, id, expires_at); /* ENOMEM: uncounted */
		}
		rec_drop_if_empty(st, pp);
	}
	pthread_mutex_unlock(&st->lock);
}

void reg_srcs_settle(struct reg_srcs *s, const struct net_src_key *src, uint64_t id,
		     int64_t expires_at, bool reserved)
{
	settle(s, src, id, expires_at, reserved);
}

void reg_srcs_cancel(struct reg_srcs *s, const struct net_src_key *src, bool reserved)
{
	if (reserved)
		settle(s, src, 0, 0, true);
}

void reg_srcs_release(struct reg_srcs *s, const struct net_src_key *src, uint64_t id)
{
	struct net_src_key k = *src;
	uint64_t h = src_hash(s, &k);
	struct src_stripe *st = stripe_of(s, h);
	pthread_mutex_lock(&st->lock);
	struct src_rec **pp = rec_slot(st, &k, h);
	if (*pp) {
		uint32_t at = ent_lower(*pp, id);
		if (at < (*pp)->n && (*pp)->e[at].id == id)
			ent_remove(st, *pp, at);
		rec_drop_if_empty(st, pp);
	}
	pthread_mutex_unlock(&st->lock);
}

size_t reg_srcs_count(struct reg_srcs *s, const struct net_src_key *src, int64_t now)
{
	struct net_src_key k = *src;
	uint64_t h = src_hash(s, &k);
	struct src_stripe *st = stripe_of(s, h);
	size_t n = 0;
	pthread_mutex_lock(&st->lock);
	struct src_rec *rec = *rec_slot(st, &k, h);
	for (uint32_t i = 0; rec && i < rec->n; i++)
		n += rec->e[i].id && rec->e[i].expires_at > now;
	pthread_mutex_unlock(&st->lock);
	return n;
}

void reg_srcs_sweep(struct reg_srcs *s, int64_t now, size_t *sources, size_t *entries)
{
	size_t nr = 0, ne = 0;
	/* an eighth of the stripes a call, one locked at a time: updates wait
	 * for a sixty-fourth of the table at most, and the caller's loop for
	 * an eighth (what is left behind is only memory: counts purge at the
	 * bound themselves) */
	for (size_t n = 0; n < SRC_SWEEP_STRIPES; n++) {
		struct src_stripe *st = &s->stripe[s->sweep_next];
		s->sweep_next = (s->sweep_next + 1) % SRC_STRIPES;
		pthread_mutex_lock(&st->lock);
		for (size_t b = 0; st->nents && b < st->nbuckets; b++) {
			struct src_rec **pp = &st->bucket[b];
			while (*pp) {
				rec_purge(st, *pp, now);
				if ((*pp)->n)
					pp = &(*pp)->next;
				else
					rec_drop_if_empty(st, pp);
			}
		}
		pthread_mutex_unlock(&st->lock);
	}
	for (size_t i = 0; i < SRC_STRIPES; i++) {
		struct src_stripe *st = &s->stripe[i];
		pthread_mutex_lock(&st->lock);
		nr += st->nrecs;
		ne += st->nents;
		pthread_mutex_unlock(&st->lock);
	}
	if (sources)
		*sources = nr;
	if (entries)
		*entries = ne;
}
