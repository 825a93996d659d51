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
struct metric store_m_full = {.name = "store_bindings_full_total",
			      .help = "New bindings refused: the store held max_bindings"};

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
	size_t base; /* bindings of the AOR's latest state, expired ones included */
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

/* Forgets the queued changes' working copy: r is the latest state again. */
static void aor_drop_w(struct store_aor *a)
{
	store_recs_release(a->w, a->nw);
	a->w = NULL;
	a->nw = 0;
}

static void recs_free(struct store_aor *a)
{
	store_recs_release(a->r, a->n);
	a->r = NULL;
	a->n = 0;
	aor_drop_w(a);
}

/* The state an update builds on: the queued changes' if any, else r. */
static struct store_rec **aor_latest(const struct store_aor *a, size_t *n)
{
	*n = a->npending ? a->nw : a->n;
	return a->npending ? a->w : a->r;
}

static int64_t aor_latest_n(const struct store_aor *a)
{
	return (int64_t)(a->npending ? a->nw : a->n);
}

/* Keeps nlatest, what max_bindings bounds, in step: before is the AOR's
 * aor_latest_n() before a change, taken under the same lock. */
static void count_latest(struct store *s, const struct store_aor *a, int64_t before)
{
	int64_t d = aor_latest_n(a) - before;
	if (d)
		atomic_fetch_add(&s->nlatest, d);
}

static long recs_find(struct store_rec *const *r, size_t n, uint64_t id)
{
	for (size_t i = 0; i < n; i++) /* O(n); n is capped by max_per_aor */
		if (r[i]->id == id)
			return (long)i;
	return -1;
}

static void aor_first_expiry(struct store_aor *a)
{
	a->first_expiry = INT64_MAX;
	for (size_t i = 0; i < a->n; i++)
		a->first_expiry = MIN(a->first_expiry, a->r[i]->expires_at);
	for (size_t i = 0; i < a->nw; i++)
		a->first_expiry = MIN(a->first_expiry, a->w[i]->expires_at);
}

/* Nothing committed, nothing queued: the AOR may go. */
static bool aor_empty(const struct store_aor *a)
{
	return !a->n && !a->npending;
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
	if (!delta)
		return; /* a refresh: no write to the lines every worker shares */
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
	size_t n;
	struct store_rec **r = aor_latest(a, &n);
	v->base = n;
	if (n > VIEW_STACK) {
		v->removed = malloc(n * sizeof *v->removed);
		if (!v->removed)
			return ENOMEM;
	}
	int err = view_reserve(v, n);
	if (err)
		return err;
	for (size_t i = 0; i < n; i++) {
		/* an expired binding is gone for the registrar even if not purged yet */
		if (r[i]->expires_at <= v->now) {
			v->removed[v->nremoved++] = r[i]->id;
			continue;
		}
		store_rec_unpack(r[i], a->aor, &v->b[v->n]);
		v->src[v->n] = r[i];
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
	v->base = 0;
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
		if (store_binding_same(&v->b[i], b, v->s->contact_eq))
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
		/* only growth counts against the total, so that a binding in
		 * place of an expired or removed one still goes in */
		int64_t grow = (int64_t)(v->n + 1) - (int64_t)v->base;
		if (grow > 0 &&
		    atomic_load(&v->s->nlatest) + grow > (int64_t)v->s->max_bindings) {
			metric_inc(&store_m_full);
			return EAGAIN;
		}
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
		if (j != i && store_binding_same(&v->b[j], b, v->s->contact_eq))
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

static struct store_job *view_job(const struct store_view *v, struct store_rec *const *recs,
				  size_t ndirty, store_done_h *done, void *done_arg)
{
	struct store_job *job = job_alloc(ndirty + v->nremoved, done, done_arg);
	if (!job)
		return NULL;
	for (size_t i = 0; i < v->n; i++) {
		if (!(v->flags[i] & VIEW_DIRTY))
			continue;
		job->rows[job->nrows].rec = store_rec_ref(recs[i]);
		job->rows[job->nrows++].b = v->b[i];
	}
	for (size_t i = 0; i < v->nremoved; i++) {
		job->rows[job->nrows].del = true;
		job->rows[job->nrows++].b.id = v->removed[i];
	}
	return job;
}

/* Drops the job's references (shard lock held). */
static void job_release(struct store_job *job)
{
	for (size_t i = 0; job && i < job->nrows; i++) {
		store_rec_unref(job->rows[i].rec);
		job->rows[i].rec = NULL;
	}
}

/* The view's bindings as records: the unchanged ones shared with the state
 * they were read from, the others packed. 0, or ENOMEM holding nothing. */
static int view_pack(const struct store_view *v, struct store_rec ***out)
{
	struct store_rec **r = v->n ? malloc(v->n * sizeof *r) : NULL;
	if (v->n && !r)
		return ENOMEM;
	for (size_t i = 0; i < v->n; i++) {
		if (!(v->flags[i] & VIEW_DIRTY) && v->src[i]) {
			r[i] = store_rec_ref(v->src[i]);
			continue;
		}
		r[i] = store_rec_pack(&v->b[i]);
		if (!r[i]) {
			store_recs_release(r, i);
			return ENOMEM;
		}
	}
	*out = r;
	return 0;
}

/* Makes recs the AOR's latest state. Queued for a COMMIT, it is w and r
 * stays what lookups see; memory-only, it is r at once. */
static void view_install(struct store *s, struct store_aor *a, struct store_rec **recs, size_t n,
			 bool queued)
{
	int64_t before = aor_latest_n(a);
	if (queued) {
		if (a->npending)
			aor_drop_w(a);
		a->w = recs;
		a->nw = n;
		a->npending++;
	} else {
		count_bindings(s, (int64_t)n - (int64_t)a->n);
		store_recs_release(a->r, a->n);
		a->r = recs;
		a->n = n;
	}
	count_latest(s, a, before);
	aor_first_expiry(a);
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

	struct store_rec **recs = NULL;
	err = view_pack(&v, &recs);
	if (err)
		goto out_unlock;
	struct store_job *job = NULL;
	if (s->w && !(job = view_job(&v, recs, ndirty, done, done_arg)))
		err = ENOMEM;
	if (!err && !a && !(a = aor_create(s, sh, name, h)))
		err = ENOMEM;
	if (err) {
		job_release(job);
		free(job);
		store_recs_release(recs, v.n);
		goto out_unlock;
	}
	view_install(s, a, recs, v.n, job != NULL);
	if (job) {
		job->shard = sh;
		job->aor = a;
		store_writer_push(s->w, job);
		queued = true;
	} else if (aor_empty(a)) {
		aor_unlink(s, sh, a);
	}
out_unlock:
	pthread_mutex_unlock(&sh->lock);
	view_release(&v);
	if (!err && !queued && done)
		done(0, done_arg);
	return err;
}

/* ---- the COMMIT's outcome ---- */

static int recs_append(struct store_rec ***r, size_t *n, struct store_rec *rec)
{
	struct store_rec **nr = realloc(*r, (*n + 1) * sizeof *nr);
	if (!nr)
		return ENOMEM;
	nr[(*n)++] = store_rec_ref(rec);
	*r = nr;
	return 0;
}

static void recs_remove(struct store_rec **r, size_t *n, size_t i)
{
	store_rec_unref(r[i]);
	memmove(&r[i], &r[i + 1], (*n - i - 1) * sizeof *r);
	(*n)--;
}

/* Committed: the rows become what lookups see, as they are in the database. */
static void aor_apply(struct store *s, struct store_aor *a, const struct store_job *job)
{
	size_t before = a->n;
	for (size_t k = 0; k < job->nrows; k++) {
		const struct store_row *row = &job->rows[k];
		long i = recs_find(a->r, a->n, row->b.id);
		if (row->del) {
			if (i >= 0)
				recs_remove(a->r, &a->n, (size_t)i);
		} else if (i >= 0) {
			store_rec_unref(a->r[i]);
			a->r[i] = store_rec_ref(row->rec);
		} else if (recs_append(&a->r, &a->n, row->rec)) {
			/* in the database, back in memory at the next start */
			LOG_E("store", "%s: no memory for a committed binding", a->aor);
		}
	}
	count_bindings(s, (int64_t)a->n - (int64_t)before);
}

/* Failed while later updates of the AOR are queued: their working copy
 * forgets this job's rows (each back to its committed version, or gone).
 * A later queued change to the same binding is forgotten with it until its
 * own COMMIT lands; once nothing is queued w goes and r is all there is. */
static void aor_undo(struct store_aor *a, const struct store_job *job)
{
	for (size_t k = 0; k < job->nrows; k++) {
		uint64_t id = job->rows[k].b.id;
		long ir = recs_find(a->r, a->n, id), iw = recs_find(a->w, a->nw, id);
		if (ir >= 0 && iw >= 0) {
			store_rec_unref(a->w[iw]);
			a->w[iw] = store_rec_ref(a->r[ir]);
		} else if (ir >= 0) {
			recs_append(&a->w, &a->nw, a->r[ir]); /* ENOMEM: stays out until drained */
		} else if (iw >= 0) {
			recs_remove(a->w, &a->nw, (size_t)iw);
		}
	}
}

void store_job_resolve(struct store *s, struct store_job *job, int err)
{
	struct store_aor *a = job->aor;
	if (!a)
		return; /* expiry deletes: memory dropped those rows already */
	struct store_shard *sh = job->shard;
	pthread_mutex_lock(&sh->lock);
	int64_t before = aor_latest_n(a);
	if (!err)
		aor_apply(s, a, job);
	else if (a->npending > 1)
		aor_undo(a, job);
	job_release(job);
	if (--a->npending == 0)
		aor_drop_w(a); /* r is the latest state again */
	count_latest(s, a, before);
	aor_first_expiry(a);
	if (aor_empty(a))
		aor_unlink(s, sh, a);
	pthread_mutex_unlock(&sh->lock);
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
		store_rec_unpack(live[i], a->aor, &out[i]);
	*n = MIN(cnt, max);
	if (cnt > max)
		err = ENOBUFS;
	if (live != stack)
		free(live);
out_unlock:
	pthread_mutex_unlock(&sh->lock);
	return err;
}

/* ---- keepalive state ---- */

/* Memory-only fields (ka, nat_media) are set on every record of an AOR that
 * matches, in both states: the committed one and what queued updates build
 * on. 0 when one matched, else ENOENT. */
static int set_matching(struct store *s, struct slice aor,
			bool (*match_set)(struct store_rec *b, const void *arg), const void *arg)
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
	for (int state = 0; a && state < 2; state++) {
		struct store_rec **r = state ? a->w : a->r;
		size_t n = state ? a->nw : a->n;
		for (size_t i = 0; i < n; i++)
			found |= match_set(r[i], arg);
	}
	pthread_mutex_unlock(&sh->lock);
	return found ? 0 : ENOENT;
}

struct ka_match {
	uint64_t id; /* 0: by contact */
	struct slice contact;
	const struct store_ka *ka;
};

static bool ka_match_set(struct store_rec *b, const void *arg)
{
	const struct ka_match *m = arg;
	bool hit = m->id
		       ? b->id == m->id
		       : b->len[REC_CONTACT] == m->contact.l &&
			     memcmp(store_rec_str(b, REC_CONTACT), m->contact.p, m->contact.l) == 0;
	if (hit)
		b->ka = *m->ka; /* memory only, see struct store_ka */
	return hit;
}

int store_ka_set(struct store *s, struct slice aor, uint64_t id, const struct store_ka *ka)
{
	if (!id)
		return ENOENT;
	return set_matching(s, aor, ka_match_set, &(struct ka_match){.id = id, .ka = ka});
}

int store_ka_set_contact(struct store *s, struct slice aor, struct slice contact,
			 const struct store_ka *ka)
{
	if (!contact.l)
		return ENOENT;
	return set_matching(s, aor, ka_match_set,
			    &(struct ka_match){.contact = contact, .ka = ka});
}

struct media_match {
	const struct net_addr *src;
	uint8_t media;
};

static bool media_match_set(struct store_rec *b, const void *arg)
{
	const struct media_match *m = arg;
	struct net_addr remote;
	memset(&remote, 0, sizeof remote);
	memcpy(&remote.u, &b->remote, sizeof b->remote);
	if (!net_addr_eq(&remote, m->src))
		return false;
	b->nat_media = m->media; /* memory only, as ka */
	return true;
}

int store_nat_media_set(struct store *s, struct slice aor, const struct net_addr *src,
			uint8_t media)
{
	return set_matching(s, aor, media_match_set,
			    &(struct media_match){.src = src, .media = media});
}

/* ---- housekeeping ---- */

static bool ids_add(uint64_t **ids, size_t *nids, size_t *cap, uint64_t id)
{
	if (*nids == *cap) {
		size_t ncap = MAX(*cap * 2, (size_t)64);
		uint64_t *p = realloc(*ids, ncap * sizeof *p);
		if (!p)
			return false;
		*ids = p;
		*cap = ncap;
	}
	(*ids)[(*nids)++] = id;
	return true;
}

/* Purges one AOR's expired bindings from both of its states and appends
 * their ids to *ids (grown). The latest state decides: a binding that a
 * queued update refreshed stays committed until that update lands. Returns
 * how many left the committed state. On ENOMEM the rest stays for the next
 * pass. */
static size_t aor_expire(struct store_aor *a, int64_t now, uint64_t **ids, size_t *nids, size_t *cap)
{
	if (a->first_expiry > now)
		return 0;
	size_t first = *nids, keep = 0;
	bool full = false;
	for (size_t i = 0; i < a->nw; i++) {
		struct store_rec *r = a->w[i];
		if (full || r->expires_at > now || !ids_add(ids, nids, cap, r->id)) {
			full = full || r->expires_at <= now;
			a->w[keep++] = r;
			continue;
		}
		store_rec_unref(r);
	}
	a->nw = keep;
	keep = 0;
	for (size_t i = 0; i < a->n; i++) {
		struct store_rec *r = a->r[i];
		bool live = r->expires_at > now ||
			    (a->npending && recs_find(a->w, a->nw, r->id) >= 0);
		bool listed = false;
		for (size_t k = first; !live && k < *nids && !listed; k++)
			listed = (*ids)[k] == r->id;
		if (live || full || (!listed && !ids_add(ids, nids, cap, r->id))) {
			full = full || !live;
			a->r[keep++] = r;
			continue;
		}
		store_rec_unref(r);
	}
	size_t gone = a->n - keep;
	a->n = keep;
	aor_first_expiry(a);
	return gone; /* bounded by max_per_aor or the loaded rows */
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
				int64_t before = aor_latest_n(a);
				size_t gone = aor_expire(a, now, &ids, &nids, &cap);
				count_bindings(s, -(int64_t)gone);
				count_latest(s, a, before);
				if (aor_empty(a))
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
	out->bindings_latest = (size_t)atomic_load(&s->nlatest);
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
	struct store_rec *r = store_rec_pack(b);
	if (!r)
		return ENOMEM;
	/* connection ids are per process: an old one could name a new stranger's
	 * connection, so a reloaded connection-oriented flow is marked gone */
	if (b->flow.tp != NET_UDP)
		r->conn_id = 0;
	a->r[a->n++] = r;
	a->first_expiry = a->n == 1 ? r->expires_at : MIN(a->first_expiry, r->expires_at);
	count_bindings(s, 1);
	atomic_fetch_add(&s->nlatest, 1); /* past max_bindings too: see store.h */
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
	metric_register(&store_m_full);

	struct store *s = calloc(1, sizeof *s);
	if (!s)
		return ENOMEM;
	s->max_per_aor = conf->max_per_aor ? conf->max_per_aor : MAX_PER_AOR_DEFAULT;
	s->max_bindings = conf->max_bindings ? conf->max_bindings : STORE_MAX_BINDINGS_DEFAULT;
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
		if (!err && (size_t)atomic_load(&s->nlatest) > s->max_bindings)
			LOG_W("store",
			      "%s holds %lld bindings, more than max_bindings %zu: all loaded; "
			      "new bindings are refused until enough expire",
			      conf->path, (long long)atomic_load(&s->nlatest), s->max_bindings);
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

void store_set_contact_eq(struct store *s, store_contact_eq_h *eq)
{
	s->contact_eq = eq;
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
