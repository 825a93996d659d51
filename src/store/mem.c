/* The memory tier: sharded AOR tables, atomic per-AOR updates, lookups and visits. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "store/store_int.h"

struct metric store_m_bindings = {
    .name = "store_bindings", .help = "Bindings held by the location store", .gauge = true};
struct metric store_m_aors = {
    .name = "store_aors", .help = "AORs with at least one binding", .gauge = true};
struct metric store_m_commits = {.name = "store_commits_total",
				 .help = "Location store transactions committed"};
struct metric store_m_rows = {.name = "store_commit_rows_total",
			      .help = "Rows written by committed transactions"};
struct metric store_m_errors = {.name = "store_commit_errors_total",
				.help = "Location store transactions that failed"};

#define SHARDS_DEFAULT 64
#define SHARDS_MAX 65536
#define MAX_PER_AOR_DEFAULT 32
#define TAB_MIN 16
#define LOOKUP_STACK 32

enum { VIEW_DIRTY = 1, VIEW_ORIG = 2 };
#define VIEW_STACK 2

/* Working copy of one AOR's bindings during an update; applied only if fn
 * returns 0, which is what makes an abort leave nothing behind. */
struct store_view {
	struct store *s;
	const char *aor;
	int64_t now;
	struct store_binding *b;
	uint8_t *flags; /* VIEW_* per binding */
	struct store_rec **src; /* the record b[i] was read from; NULL for a new one */
	size_t n, cap;
	uint64_t *removed; /* ids that were in memory before the update */
	size_t nremoved;
	/* b, flags, src and removed start here, on the caller's stack: most AORs
	 * hold one binding, and three heap blocks per update, 5 KB together,
	 * were most of what grew the heap under a REGISTER load */
	struct store_binding stack_b[VIEW_STACK];
	uint8_t stack_flags[VIEW_STACK];
	struct store_rec *stack_src[VIEW_STACK];
	uint64_t stack_removed[VIEW_STACK];
};

/* ---- packed bindings ----
 *
 * What the memory tier keeps of a binding: its fixed fields, the flow's
 * addresses without sockaddr_storage's padding, and its five strings one
 * after the other, each with its NUL; the AOR is its store_aor's. About 140
 * bytes plus the strings, against 1,280 for a struct store_binding. */

union rec_addr {
	struct sockaddr sa;
	struct sockaddr_in in;
	struct sockaddr_in6 in6;
};

enum { REC_CONTACT, REC_INSTANCE, REC_CALLID, REC_PATH, REC_UA, REC_NSTR };

struct store_rec {
	uint64_t id;
	int64_t expires_at, registered_at;
	struct store_ka ka;
	uint64_t conn_id;
	uint32_t cseq, reg_id;
	uint16_t q, listener;
	uint8_t tp;
	bool behind_nat;
	bool keep;		/* store_update: reused by the new array */
	uint16_t len[REC_NSTR]; /* without the NUL */
	union rec_addr local, remote;
	char s[];
};

static const char *rec_str(const struct store_rec *r, int which)
{
	const char *p = r->s;
	for (int i = 0; i < which; i++)
		p += r->len[i] + 1;
	return p;
}

static void addr_pack(union rec_addr *out, const struct net_addr *a)
{
	memcpy(out, &a->u, sizeof *out);
}

static void addr_unpack(struct net_addr *out, const union rec_addr *a)
{
	memset(out, 0, sizeof *out);
	memcpy(&out->u, a, sizeof *a);
}

/* A new record for b (fields checked by binding_check), or NULL. */
static struct store_rec *rec_pack(const struct store_binding *b)
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

static void rec_unpack(const struct store_rec *r, const char *aor, struct store_binding *b)
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
	strcpy(b->aor, aor); /* canonical, shorter than STORE_AOR_MAX */
	char *dst[REC_NSTR] = {b->contact, b->instance, b->call_id, b->path, b->user_agent};
	const char *p = r->s;
	for (int i = 0; i < REC_NSTR; i++) {
		memcpy(dst[i], p, r->len[i] + 1u);
		p += r->len[i] + 1;
	}
}

static void recs_free(struct store_aor *a)
{
	for (size_t i = 0; i < a->n; i++)
		free(a->r[i]);
	free(a->r);
	a->r = NULL;
	a->n = 0;
}

static uint64_t aor_hash(const char *aor)
{
	return hash_bytes(aor, strlen(aor));
}

/* The high bits pick the shard and the low bits the bucket, so that the AORs
 * of one shard still spread over its buckets. */
static struct store_shard *shard_of(struct store *s, uint64_t h)
{
	return &s->shards[(h >> 32) % s->nshards];
}

static struct store_aor *aor_find(struct store_shard *sh, const char *aor, uint64_t h)
{
	for (struct store_aor *a = sh->tab[h & (sh->tabsize - 1)]; a; a = a->next)
		if (a->hash == h && strcmp(a->aor, aor) == 0)
			return a;
	return NULL;
}

static void aor_link(struct store_shard *sh, struct store_aor *a)
{
	if (sh->naors >= sh->tabsize) {
		/* a failed grow only makes chains longer */
		size_t size = sh->tabsize * 2;
		struct store_aor **tab = calloc(size, sizeof *tab);
		if (tab) {
			for (size_t i = 0; i < sh->tabsize; i++) {
				struct store_aor *it = sh->tab[i], *next;
				for (; it; it = next) {
					next = it->next;
					it->next = tab[it->hash & (size - 1)];
					tab[it->hash & (size - 1)] = it;
				}
			}
			free(sh->tab);
			sh->tab = tab;
			sh->tabsize = size;
		}
	}
	struct store_aor **head = &sh->tab[a->hash & (sh->tabsize - 1)];
	a->next = *head;
	*head = a;
	sh->naors++;
}

static void aor_unlink(struct store *s, struct store_shard *sh, struct store_aor *a)
{
	struct store_aor **pp = &sh->tab[a->hash & (sh->tabsize - 1)];
	while (*pp != a)
		pp = &(*pp)->next;
	*pp = a->next;
	sh->naors--;
	atomic_fetch_sub(&s->naors, 1);
	metric_add(&store_m_aors, -1);
	recs_free(a);
	free(a);
}

static struct store_aor *aor_create(struct store *s, struct store_shard *sh, const char *aor,
				    uint64_t h)
{
	size_t len = strlen(aor); /* canonical, shorter than STORE_AOR_MAX */
	struct store_aor *a = calloc(1, sizeof *a + len + 1);
	if (!a)
		return NULL;
	memcpy(a->aor, aor, len + 1);
	a->hash = h;
	aor_link(sh, a);
	atomic_fetch_add(&s->naors, 1);
	metric_add(&store_m_aors, 1);
	return a;
}

static void count_bindings(struct store *s, int64_t delta)
{
	atomic_fetch_add(&s->nbindings, delta);
	metric_add(&store_m_bindings, delta);
}

/* ---- the view ---- */

static int view_reserve(struct store_view *v, size_t want)
{
	if (want <= v->cap)
		return 0;
	size_t cap = MAX(v->cap * 2, MAX(want, (size_t)4));
	bool stack = v->b == v->stack_b;
	struct store_binding *b = realloc(stack ? NULL : v->b, cap * sizeof *b);
	if (!b)
		return ENOMEM;
	if (stack)
		memcpy(b, v->b, v->n * sizeof *b);
	v->b = b;
	uint8_t *flags = realloc(stack ? NULL : v->flags, cap);
	if (!flags)
		return ENOMEM;
	if (stack)
		memcpy(flags, v->flags, v->n);
	v->flags = flags;
	struct store_rec **src = realloc(stack ? NULL : v->src, cap * sizeof *src);
	if (!src)
		return ENOMEM;
	if (stack)
		memcpy(src, v->src, v->n * sizeof *src);
	v->src = src;
	v->cap = cap;
	return 0;
}

static int view_init(struct store_view *v, const struct store_aor *a)
{
	if (!a)
		return 0;
	if (a->n > VIEW_STACK) {
		v->removed = malloc(a->n * sizeof *v->removed);
		if (!v->removed)
			return ENOMEM;
	}
	int err = view_reserve(v, a->n);
	if (err)
		return err;
	for (size_t i = 0; i < a->n; i++) {
		/* an expired binding is gone for the registrar even if not purged yet */
		if (a->r[i]->expires_at <= v->now) {
			v->removed[v->nremoved++] = a->r[i]->id;
			continue;
		}
		rec_unpack(a->r[i], a->aor, &v->b[v->n]);
		v->src[v->n] = a->r[i];
		v->flags[v->n++] = VIEW_ORIG;
	}
	return 0;
}

/* Points the view at its stack storage; the arrays are not cleared. */
static void view_setup(struct store_view *v, struct store *s, const char *aor)
{
	v->s = s;
	v->aor = aor;
	v->now = time_wall_s();
	v->b = v->stack_b;
	v->flags = v->stack_flags;
	v->src = v->stack_src;
	v->n = 0;
	v->cap = VIEW_STACK;
	v->removed = v->stack_removed;
	v->nremoved = 0;
}

static void view_release(struct store_view *v)
{
	if (v->b != v->stack_b)
		free(v->b);
	if (v->flags != v->stack_flags)
		free(v->flags);
	if (v->src != v->stack_src)
		free(v->src);
	if (v->removed != v->stack_removed)
		free(v->removed);
}

static bool field_ok(const char *f, size_t cap)
{
	return memchr(f, '\0', cap) != NULL;
}

static int binding_check(const struct store_binding *b)
{
	if (!field_ok(b->contact, sizeof b->contact) || !b->contact[0])
		return EINVAL;
	if (!field_ok(b->instance, sizeof b->instance) ||
	    !field_ok(b->call_id, sizeof b->call_id) || !field_ok(b->path, sizeof b->path) ||
	    !field_ok(b->user_agent, sizeof b->user_agent))
		return EINVAL;
	if (b->q > STORE_Q_MAX)
		return EINVAL;
	return 0;
}

const char *store_view_aor(const struct store_view *v)
{
	return v->aor;
}

int64_t store_view_now(const struct store_view *v)
{
	return v->now;
}

size_t store_view_count(const struct store_view *v)
{
	return v->n;
}

const struct store_binding *store_view_get(const struct store_view *v, size_t i)
{
	return i < v->n ? &v->b[i] : NULL;
}

long store_view_find(const struct store_view *v, const struct store_binding *b)
{
	for (size_t i = 0; i < v->n; i++) /* O(n); n is capped by max_per_aor */
		if (store_binding_same(&v->b[i], b))
			return (long)i;
	return -1;
}

static void view_store(struct store_view *v, size_t i, const struct store_binding *b, uint64_t id)
{
	v->b[i] = *b;
	v->b[i].id = id;
	strcpy(v->b[i].aor, v->aor);
	v->flags[i] |= VIEW_DIRTY;
}

int store_view_put(struct store_view *v, const struct store_binding *b, size_t *idx)
{
	int err = binding_check(b);
	if (err)
		return err;
	long i = store_view_find(v, b);
	if (i >= 0) {
		view_store(v, (size_t)i, b, v->b[i].id);
	} else {
		if (v->n >= v->s->max_per_aor)
			return ENOSPC;
		err = view_reserve(v, v->n + 1);
		if (err)
			return err;
		i = (long)v->n++;
		v->flags[i] = 0;
		v->src[i] = NULL;
		view_store(v, (size_t)i, b, atomic_fetch_add(&v->s->next_id, 1));
	}
	if (idx)
		*idx = (size_t)i;
	return 0;
}

int store_view_set(struct store_view *v, size_t i, const struct store_binding *b)
{
	if (i >= v->n)
		return ERANGE;
	int err = binding_check(b);
	if (err)
		return err;
	for (size_t j = 0; j < v->n; j++)
		if (j != i && store_binding_same(&v->b[j], b))
			return EEXIST;
	view_store(v, i, b, v->b[i].id);
	return 0;
}

int store_view_remove(struct store_view *v, size_t i)
{
	if (i >= v->n)
		return ERANGE;
	/* a binding added by this same update never reached the queue: no delete row */
	if (v->flags[i] & VIEW_ORIG)
		v->removed[v->nremoved++] = v->b[i].id;
	memmove(&v->b[i], &v->b[i + 1], (v->n - i - 1) * sizeof *v->b);
	memmove(&v->flags[i], &v->flags[i + 1], v->n - i - 1);
	memmove(&v->src[i], &v->src[i + 1], (v->n - i - 1) * sizeof *v->src);
	v->n--;
	return 0;
}

void store_view_clear(struct store_view *v)
{
	while (v->n)
		store_view_remove(v, v->n - 1);
}

static size_t view_dirty(const struct store_view *v)
{
	size_t n = 0;
	for (size_t i = 0; i < v->n; i++)
		n += (v->flags[i] & VIEW_DIRTY) != 0;
	return n;
}

static struct store_job *job_alloc(size_t nrows, store_done_h *done, void *done_arg)
{
	struct store_job *job = calloc(1, sizeof *job + nrows * sizeof job->rows[0]);
	if (!job)
		return NULL;
	job->done = done;
	job->done_arg = done_arg;
	return job;
}

static struct store_job *view_job(const struct store_view *v, size_t ndirty, store_done_h *done,
				  void *done_arg)
{
	struct store_job *job = job_alloc(ndirty + v->nremoved, done, done_arg);
	if (!job)
		return NULL;
	for (size_t i = 0; i < v->n; i++)
		if (v->flags[i] & VIEW_DIRTY)
			job->rows[job->nrows++].b = v->b[i];
	for (size_t i = 0; i < v->nremoved; i++) {
		job->rows[job->nrows].del = true;
		job->rows[job->nrows++].b.id = v->removed[i];
	}
	return job;
}

/* Makes the view the AOR's bindings: packs what changed, keeps the records
 * of what did not, frees the rest. 0, or ENOMEM with the AOR unchanged. */
static int view_commit(struct store_view *v, struct store_aor *a)
{
	struct store_rec **r = v->n ? malloc(v->n * sizeof *r) : NULL;
	if (v->n && !r)
		return ENOMEM;
	for (size_t i = 0; i < v->n; i++) {
		if (!(v->flags[i] & VIEW_DIRTY) && v->src[i]) {
			r[i] = v->src[i];
			continue;
		}
		r[i] = rec_pack(&v->b[i]);
		if (!r[i]) {
			for (size_t j = 0; j < i; j++)
				if ((v->flags[j] & VIEW_DIRTY) || !v->src[j])
					free(r[j]);
			free(r);
			return ENOMEM;
		}
	}
	for (size_t i = 0; i < v->n; i++)
		if (!(v->flags[i] & VIEW_DIRTY) && v->src[i])
			v->src[i]->keep = true;
	for (size_t i = 0; i < a->n; i++) {
		if (a->r[i]->keep)
			a->r[i]->keep = false;
		else
			free(a->r[i]);
	}
	count_bindings(v->s, (int64_t)v->n - (int64_t)a->n);
	free(a->r);
	a->r = r;
	a->n = v->n;
	a->first_expiry = INT64_MAX;
	for (size_t i = 0; i < a->n; i++)
		a->first_expiry = MIN(a->first_expiry, a->r[i]->expires_at);
	return 0;
}

int store_update(struct store *s, struct slice aor, store_update_h *fn, void *arg,
		 store_done_h *done, void *done_arg)
{
	char name[STORE_AOR_MAX];
	int err = store_aor_canon(aor, name);
	if (err)
		return err;
	uint64_t h = aor_hash(name);
	struct store_shard *sh = shard_of(s, h);
	struct store_view v;
	view_setup(&v, s, name);
	bool queued = false;

	pthread_mutex_lock(&sh->lock);
	struct store_aor *a = aor_find(sh, name, h);
	err = view_init(&v, a);
	if (err)
		goto out_unlock;
	err = fn(&v, arg);
	if (err)
		goto out_unlock;
	size_t ndirty = view_dirty(&v);
	if (!ndirty && !v.nremoved)
		goto out_unlock; /* nothing to make durable: done right away */

	struct store_job *job = NULL;
	if (s->w) {
		job = view_job(&v, ndirty, done, done_arg);
		if (!job) {
			err = ENOMEM;
			goto out_unlock;
		}
	}
	if (!a) {
		a = aor_create(s, sh, name, h);
		if (!a) {
			free(job);
			err = ENOMEM;
			goto out_unlock;
		}
	}
	err = view_commit(&v, a);
	if (err) {
		if (!a->n)
			aor_unlink(s, sh, a); /* created above for nothing */
		free(job);
		goto out_unlock;
	}
	if (!a->n)
		aor_unlink(s, sh, a);
	if (job) {
		store_writer_push(s->w, job);
		queued = true;
	}
out_unlock:
	pthread_mutex_unlock(&sh->lock);
	view_release(&v);
	if (!err && !queued && done)
		done(0, done_arg);
	return err;
}

/* ---- reading ---- */

static int binding_order(const void *x, const void *y)
{
	const struct store_rec *a = *(const struct store_rec *const *)x;
	const struct store_rec *b = *(const struct store_rec *const *)y;
	if (a->q != b->q)
		return a->q > b->q ? -1 : 1;
	if (a->registered_at != b->registered_at)
		return a->registered_at > b->registered_at ? -1 : 1;
	return a->id > b->id ? -1 : a->id < b->id;
}

int store_lookup(struct store *s, struct slice aor, struct store_binding *out, size_t max,
		 size_t *n)
{
	char name[STORE_AOR_MAX];
	*n = 0;
	int err = store_aor_canon(aor, name);
	if (err)
		return err;
	uint64_t h = aor_hash(name);
	struct store_shard *sh = shard_of(s, h);
	int64_t now = time_wall_s();
	const struct store_rec *stack[LOOKUP_STACK], **live = stack;

	pthread_mutex_lock(&sh->lock);
	struct store_aor *a = aor_find(sh, name, h);
	if (!a)
		goto out_unlock;
	if (a->n > LOOKUP_STACK) {
		live = malloc(a->n * sizeof *live);
		if (!live) {
			err = ENOMEM;
			goto out_unlock;
		}
	}
	size_t cnt = 0;
	for (size_t i = 0; i < a->n; i++)
		if (a->r[i]->expires_at > now)
			live[cnt++] = a->r[i];
	if (cnt > 1)
		qsort(live, cnt, sizeof *live, binding_order);
	for (size_t i = 0; i < cnt && i < max; i++)
		rec_unpack(live[i], a->aor, &out[i]);
	*n = MIN(cnt, max);
	if (cnt > max)
		err = ENOBUFS;
	if (live != stack)
		free(live);
out_unlock:
	pthread_mutex_unlock(&sh->lock);
	return err;
}

int store_foreach(struct store *s, store_visit_h *fn, void *arg)
{
	int64_t now = time_wall_s();
	for (unsigned k = 0; k < s->nshards; k++) {
		struct store_shard *sh = &s->shards[k];
		struct store_binding *copy = NULL;
		size_t n = 0, total = 0;

		pthread_mutex_lock(&sh->lock);
		for (size_t i = 0; i < sh->tabsize; i++)
			for (struct store_aor *a = sh->tab[i]; a; a = a->next)
				total += a->n;
		if (total) {
			copy = malloc(total * sizeof *copy);
			if (!copy) {
				pthread_mutex_unlock(&sh->lock);
				return ENOMEM;
			}
		}
		for (size_t i = 0; i < sh->tabsize; i++)
			for (struct store_aor *a = sh->tab[i]; a; a = a->next)
				for (size_t j = 0; j < a->n; j++)
					if (a->r[j]->expires_at > now)
						rec_unpack(a->r[j], a->aor, &copy[n++]);
		pthread_mutex_unlock(&sh->lock);

		/* visited without the lock: fn may call back into the store */
		int err = 0;
		for (size_t i = 0; i < n && !err; i++)
			err = fn(&copy[i], arg);
		free(copy);
		if (err)
			return err;
	}
	return 0;
}

/* ---- keepalive state ---- */

static int ka_set(struct store *s, struct slice aor, uint64_t id, struct slice contact,
		  const struct store_ka *ka)
{
	char name[STORE_AOR_MAX];
	int err = store_aor_canon(aor, name);
	if (err)
		return err;
	uint64_t h = aor_hash(name);
	struct store_shard *sh = shard_of(s, h);
	bool found = false;

	pthread_mutex_lock(&sh->lock);
	struct store_aor *a = aor_find(sh, name, h);
	for (size_t i = 0; a && i < a->n; i++) {
		struct store_rec *b = a->r[i];
		bool hit = id ? b->id == id
			      : b->len[REC_CONTACT] == contact.l &&
				    memcmp(rec_str(b, REC_CONTACT), contact.p, contact.l) == 0;
		if (hit) {
			b->ka = *ka; /* memory only, see struct store_ka */
			found = true;
		}
	}
	pthread_mutex_unlock(&sh->lock);
	return found ? 0 : ENOENT;
}

int store_ka_set(struct store *s, struct slice aor, uint64_t id, const struct store_ka *ka)
{
	if (!id)
		return ENOENT;
	return ka_set(s, aor, id, SLICE_NULL, ka);
}

int store_ka_set_contact(struct store *s, struct slice aor, struct slice contact,
			 const struct store_ka *ka)
{
	if (!contact.l)
		return ENOENT;
	return ka_set(s, aor, 0, contact, ka);
}

/* ---- housekeeping ---- */

/* Purges one AOR's expired bindings; appends their ids to *ids (grown). */
static int aor_expire(struct store_aor *a, int64_t now, uint64_t **ids, size_t *nids, size_t *cap)
{
	if (a->first_expiry > now)
		return 0;
	size_t keep = 0;
	for (size_t i = 0; i < a->n; i++) {
		if (a->r[i]->expires_at > now) {
			if (keep != i)
				a->r[keep] = a->r[i];
			keep++;
			continue;
		}
		if (*nids == *cap) {
			size_t ncap = MAX(*cap * 2, (size_t)64);
			uint64_t *p = realloc(*ids, ncap * sizeof *p);
			if (!p) {
				/* keep the rest: the next pass retries */
				memmove(&a->r[keep], &a->r[i], (a->n - i) * sizeof *a->r);
				keep += a->n - i;
				break;
			}
			*ids = p;
			*cap = ncap;
		}
		(*ids)[(*nids)++] = a->r[i]->id;
		free(a->r[i]);
	}
	size_t gone = a->n - keep;
	a->n = keep;
	a->first_expiry = INT64_MAX;
	for (size_t i = 0; i < a->n; i++)
		a->first_expiry = MIN(a->first_expiry, a->r[i]->expires_at);
	return (int)gone; /* bounded by max_per_aor or the loaded rows */
}

int store_expire(struct store *s, int64_t now, size_t *removed)
{
	uint64_t *ids = NULL;
	size_t cap = 0, total = 0;

	for (unsigned k = 0; k < s->nshards; k++) {
		struct store_shard *sh = &s->shards[k];
		size_t nids = 0;

		pthread_mutex_lock(&sh->lock);
		for (size_t i = 0; i < sh->tabsize; i++) {
			struct store_aor *a = sh->tab[i], *next;
			for (; a; a = next) {
				next = a->next;
				int gone = aor_expire(a, now, &ids, &nids, &cap);
				count_bindings(s, -gone);
				if (!a->n)
					aor_unlink(s, sh, a);
			}
		}
		if (nids && s->w) {
			/* no job (ENOMEM) leaves the rows behind; the next load deletes them */
			struct store_job *job = job_alloc(nids, NULL, NULL);
			for (size_t i = 0; job && i < nids; i++) {
				job->rows[i].del = true;
				job->rows[i].b.id = ids[i];
			}
			if (job) {
				job->nrows = nids;
				store_writer_push(s->w, job);
			}
		}
		pthread_mutex_unlock(&sh->lock);
		total += nids;
	}
	free(ids);
	if (removed)
		*removed = total;
	return 0;
}

void store_kick(struct store *s)
{
	if (s->w)
		store_writer_kick(s->w);
}

void store_kick_turn(void *store)
{
	store_kick(store);
}

int store_flush(struct store *s)
{
	return s->w ? store_writer_flush(s->w) : 0;
}

void store_stats_get(struct store *s, struct store_stats *out)
{
	out->bindings = (size_t)atomic_load(&s->nbindings);
	out->aors = (size_t)atomic_load(&s->naors);
	out->commits = atomic_load(&s->commits);
	out->commit_rows = atomic_load(&s->commit_rows);
	out->commit_errors = atomic_load(&s->commit_errors);
	out->pending = s->w ? store_writer_pending(s->w) : 0;
}

/* ---- life cycle ---- */

/* Loader callback: puts a binding read from the backend back into memory. */
static int load_one(const struct store_binding *b, void *arg)
{
	struct store *s = arg;
	char name[STORE_AOR_MAX];
	if (store_aor_canon(slice_cstr(b->aor), name) || binding_check(b))
		return 0; /* a row we would not have written; skip it */
	uint64_t h = aor_hash(name);
	struct store_shard *sh = shard_of(s, h);
	struct store_aor *a = aor_find(sh, name, h);
	if (!a && !(a = aor_create(s, sh, name, h)))
		return ENOMEM;
	struct store_rec **nr = realloc(a->r, (a->n + 1) * sizeof *nr);
	if (!nr)
		return ENOMEM;
	a->r = nr;
	struct store_rec *r = rec_pack(b);
	if (!r)
		return ENOMEM;
	/* connection ids are per process: an old one could name a new stranger's
	 * connection, so a reloaded connection-oriented flow is marked gone */
	if (b->flow.tp != NET_UDP)
		r->conn_id = 0;
	a->r[a->n++] = r;
	a->first_expiry = a->n == 1 ? r->expires_at : MIN(a->first_expiry, r->expires_at);
	count_bindings(s, 1);
	return 0;
}

static void shards_free(struct store *s)
{
	for (unsigned k = 0; k < s->nshards; k++) {
		struct store_shard *sh = &s->shards[k];
		for (size_t i = 0; sh->tab && i < sh->tabsize; i++) {
			struct store_aor *a = sh->tab[i], *next;
			for (; a; a = next) {
				next = a->next;
				count_bindings(s, -(int64_t)a->n);
				metric_add(&store_m_aors, -1);
				recs_free(a);
				free(a);
			}
		}
		free(sh->tab);
		pthread_mutex_destroy(&sh->lock);
	}
	free(s->shards);
}

int store_alloc(struct store **sp, const struct store_conf *conf)
{
	static const struct store_conf defaults;
	if (!conf)
		conf = &defaults;
	unsigned nshards = conf->shards ? conf->shards : SHARDS_DEFAULT;
	if (nshards > SHARDS_MAX ||
	    (conf->sync != STORE_SYNC_FULL && conf->sync != STORE_SYNC_NORMAL))
		return EINVAL;

	metric_register(&store_m_bindings);
	metric_register(&store_m_aors);
	metric_register(&store_m_commits);
	metric_register(&store_m_rows);
	metric_register(&store_m_errors);

	struct store *s = calloc(1, sizeof *s);
	if (!s)
		return ENOMEM;
	s->max_per_aor = conf->max_per_aor ? conf->max_per_aor : MAX_PER_AOR_DEFAULT;
	atomic_init(&s->next_id, 1);
	int err = ENOMEM;
	s->shards = calloc(nshards, sizeof *s->shards);
	if (!s->shards)
		goto out_free;
	for (; s->nshards < nshards; s->nshards++) {
		struct store_shard *sh = &s->shards[s->nshards];
		pthread_mutex_init(&sh->lock, NULL);
		sh->tab = calloc(TAB_MIN, sizeof *sh->tab);
		sh->tabsize = TAB_MIN;
		if (!sh->tab) {
			s->nshards++;
			goto out_shards;
		}
	}
	if (conf->path) {
		const struct store_backend_ops *ops = &store_sqlite_ops;
		void *ctx = NULL;
		uint64_t max_id = 0;
		err = ops->open(&ctx, conf);
		if (err)
			goto out_shards;
		err = ops->load(ctx, time_wall_s(), load_one, s, &max_id);
		if (!err) {
			atomic_store(&s->next_id, max_id + 1);
			err = store_writer_alloc(&s->w, s, ops, ctx, conf->kick_explicit);
		}
		if (err) {
			ops->close(ctx);
			goto out_shards;
		}
	}
	*sp = s;
	return 0;

out_shards:
	shards_free(s);
out_free:
	free(s);
	return err;
}

void store_free(struct store *s)
{
	if (!s)
		return;
	if (s->w)
		store_writer_free(s->w); /* commits what is queued first */
	shards_free(s);
	free(s);
}
