/* Credentials: the memory table that lookups read, and the interface over its backends. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/store_int.h"

/* The bucket array doubles whenever users outnumber buckets, so a lookup
 * (which anyone can cause with any user name) walks a chain of about one
 * entry however many users there are. */
#define CRED_BUCKETS_MIN 256

/* One user; owned by its struct cred_tab. */
struct cred_user {
	struct cred_user *next;
	uint64_t hash;
	char user[STORE_CRED_USER_MAX];
	char realm[STORE_CRED_REALM_MAX];
	struct store_cred_entry e;
};

/* A whole table: reloads build a new one and swap it in. */
struct cred_tab {
	struct cred_user **b;
	size_t nb; /* buckets, a power of two */
	size_t n;
};

struct store_cred {
	pthread_rwlock_t lock; /* guards tab (the pointer and what it holds) */
	struct cred_tab *tab;
	/* the backend: NULL ops = memory only; bk_lock serialises its calls */
	const struct store_cred_backend_ops *ops;
	void *ctx;
	pthread_mutex_t bk_lock;
	/* the watcher thread (SQLite with reload_ms > 0) */
	bool watching;
	pthread_t watcher;
	pthread_mutex_t w_lock;
	pthread_cond_t w_cond;
	bool w_stop;
	unsigned reload_ms;
};

static struct metric m_users = {
    .name = "auth_users", .help = "users in the credential table", .gauge = true};
static struct metric m_reloads = {.name = "auth_user_reloads_total",
				  .help = "credential table reloads after the store changed"};
static struct metric m_reload_err = {.name = "auth_user_reload_errors_total",
				     .help = "credential reloads that failed (old table kept)"};

/* The user is compared exactly, the realm case-insensitively. */
static uint64_t cred_hash(struct slice user, struct slice realm)
{
	return hash_bytes(user.p, user.l) ^ (hash_fnv1a_nocase(realm.p, realm.l) * 31);
}

static struct cred_user **tab_find(struct cred_tab *t, struct slice user, struct slice realm,
				   uint64_t h)
{
	struct cred_user **pp = &t->b[h & (t->nb - 1)];
	for (; *pp; pp = &(*pp)->next) {
		struct cred_user *u = *pp;
		if (u->hash == h && slice_eq(slice_cstr(u->user), user) &&
		    slice_eq_nocase(slice_cstr(u->realm), realm))
			return pp;
	}
	return pp;
}

static struct cred_tab *tab_new(void)
{
	struct cred_tab *t = calloc(1, sizeof *t);
	if (t && !(t->b = calloc(CRED_BUCKETS_MIN, sizeof *t->b))) {
		free(t);
		return NULL;
	}
	if (t)
		t->nb = CRED_BUCKETS_MIN;
	return t;
}

static void tab_free(struct cred_tab *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->nb; i++) {
		struct cred_user *u = t->b[i], *next;
		for (; u; u = next) {
			next = u->next;
			free(u);
		}
	}
	free(t->b);
	free(t);
}

/* Doubles the bucket array; a failed grow only leaves the chains longer. */
static void tab_grow(struct cred_tab *t)
{
	size_t nb = t->nb * 2;
	struct cred_user **b = calloc(nb, sizeof *b);
	if (!b)
		return;
	for (size_t i = 0; i < t->nb; i++) {
		struct cred_user *u = t->b[i], *next;
		for (; u; u = next) {
			next = u->next;
			u->next = b[u->hash & (nb - 1)];
			b[u->hash & (nb - 1)] = u;
		}
	}
	free(t->b);
	t->b = b;
	t->nb = nb;
}

static bool entry_empty(const struct store_cred_entry *e)
{
	for (int a = 0; a < STORE_CRED_ALGS; a++)
		if (e->ha1[a][0])
			return false;
	return true;
}

/* Fills a user record: 0, EINVAL, ENAMETOOLONG. */
static int user_make(struct cred_user *u, struct slice user, struct slice realm,
		     const struct store_cred_entry *e)
{
	memset(u, 0, sizeof *u);
	if (!user.l || entry_empty(e))
		return EINVAL;
	for (int a = 0; a < STORE_CRED_ALGS; a++)
		if (memchr(e->ha1[a], '\0', sizeof e->ha1[a]) == NULL)
			return ENAMETOOLONG;
	int err = STORE_SET(u->user, user);
	err = err ? err : STORE_SET(u->realm, realm);
	if (err)
		return err;
	u->e = *e;
	u->hash = cred_hash(user, realm);
	return 0;
}

static int tab_put(struct cred_tab *t, const struct cred_user *tmp)
{
	struct cred_user **pp =
	    tab_find(t, slice_cstr(tmp->user), slice_cstr(tmp->realm), tmp->hash);
	if (*pp) {
		struct cred_user *next = (*pp)->next;
		**pp = *tmp;
		(*pp)->next = next;
		return 0;
	}
	struct cred_user *u = malloc(sizeof *u);
	if (!u)
		return ENOMEM;
	*u = *tmp;
	u->next = NULL;
	*pp = u;
	if (++t->n > t->nb)
		tab_grow(t);
	return 0;
}

static int load_one(const char *user, const char *realm, const struct store_cred_entry *e,
		    void *arg)
{
	struct cred_user tmp;
	if (user_make(&tmp, slice_cstr(user), slice_cstr(realm), e))
		return 0; /* a row we cannot use (hand-edited): skipped */
	return tab_put(arg, &tmp);
}

/* Reads the backend into a fresh table and swaps it in. Under bk_lock. */
static int reload_locked(struct store_cred *c)
{
	struct cred_tab *t = tab_new();
	if (!t)
		return ENOMEM;
	int err = c->ops->load(c->ctx, load_one, t);
	if (err) {
		tab_free(t);
		return err;
	}
	pthread_rwlock_wrlock(&c->lock);
	struct cred_tab *old = c->tab;
	c->tab = t;
	pthread_rwlock_unlock(&c->lock);
	tab_free(old);
	m_users.value = (int64_t)t->n;
	return 0;
}

int store_cred_sync(struct store_cred *c, bool *reloaded)
{
	if (reloaded)
		*reloaded = false;
	if (!c->ops)
		return 0;
	pthread_mutex_lock(&c->bk_lock);
	bool changed = false;
	int err = c->ops->changed(c->ctx, &changed);
	if (!err && changed) {
		err = reload_locked(c);
		if (!err && reloaded)
			*reloaded = true;
	}
	pthread_mutex_unlock(&c->bk_lock);
	if (changed)
		metric_inc(err ? &m_reload_err : &m_reloads);
	return err;
}

static void *watch_main(void *arg)
{
	struct store_cred *c = arg;
	bool failing = false;
	pthread_mutex_lock(&c->w_lock);
	while (!c->w_stop) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += c->reload_ms / 1000;
		ts.tv_nsec += (long)(c->reload_ms % 1000) * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&c->w_cond, &c->w_lock, &ts);
		if (c->w_stop)
			break;
		pthread_mutex_unlock(&c->w_lock);
		bool reloaded = false;
		int err = store_cred_sync(c, &reloaded);
		/* one line when it starts failing and one when it recovers, not one a second */
		if (err && !failing)
			LOG_W("store", "credentials: reload failed (%s); keeping %zu users",
			      strerror(err), store_cred_count(c));
		if (!err && failing)
			LOG_I("store", "credentials: reload works again");
		if (reloaded)
			LOG_I("store", "credentials: %zu users after a change in the store",
			      store_cred_count(c));
		failing = err != 0;
		pthread_mutex_lock(&c->w_lock);
	}
	pthread_mutex_unlock(&c->w_lock);
	return NULL;
}

static int cred_new(struct store_cred **cp)
{
	struct store_cred *c = calloc(1, sizeof *c);
	if (!c)
		return ENOMEM;
	c->tab = tab_new();
	if (!c->tab) {
		free(c);
		return ENOMEM;
	}
	pthread_rwlock_init(&c->lock, NULL);
	pthread_mutex_init(&c->bk_lock, NULL);
	pthread_mutex_init(&c->w_lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&c->w_cond, &ca);
	pthread_condattr_destroy(&ca);
	metric_register(&m_users);
	metric_register(&m_reloads);
	metric_register(&m_reload_err);
	*cp = c;
	return 0;
}

int store_cred_alloc(struct store_cred **cp)
{
	return cred_new(cp);
}

int store_cred_open(struct store_cred **cp, const char *path, unsigned reload_ms)
{
	struct store_cred *c;
	int err = cred_new(&c);
	if (err)
		return err;
	c->ops = &store_cred_sqlite_ops;
	if ((err = c->ops->open(&c->ctx, path))) {
		c->ops = NULL;
		store_cred_free(c);
		return err;
	}
	bool changed;
	err = c->ops->changed(c->ctx, &changed); /* primes the change counters */
	err = err ? err : reload_locked(c);
	if (!err && reload_ms) {
		c->reload_ms = reload_ms;
		err = pthread_create(&c->watcher, NULL, watch_main, c);
		c->watching = err == 0;
	}
	if (err) {
		store_cred_free(c);
		return err;
	}
	*cp = c;
	return 0;
}

void store_cred_free(struct store_cred *c)
{
	if (!c)
		return;
	if (c->watching) {
		pthread_mutex_lock(&c->w_lock);
		c->w_stop = true;
		pthread_cond_signal(&c->w_cond);
		pthread_mutex_unlock(&c->w_lock);
		pthread_join(c->watcher, NULL);
	}
	if (c->ops)
		c->ops->close(c->ctx);
	tab_free(c->tab);
	pthread_cond_destroy(&c->w_cond);
	pthread_mutex_destroy(&c->w_lock);
	pthread_mutex_destroy(&c->bk_lock);
	pthread_rwlock_destroy(&c->lock);
	free(c);
}

int store_cred_set(struct store_cred *c, struct slice user, struct slice realm,
		   const struct store_cred_entry *e)
{
	struct cred_user tmp;
	int err = user_make(&tmp, user, realm, e);
	if (err)
		return err;
	pthread_mutex_lock(&c->bk_lock);
	if (c->ops)
		err = c->ops->put(c->ctx, tmp.user, tmp.realm, e);
	if (!err) {
		pthread_rwlock_wrlock(&c->lock);
		err = tab_put(c->tab, &tmp);
		m_users.value = (int64_t)c->tab->n;
		pthread_rwlock_unlock(&c->lock);
	}
	pthread_mutex_unlock(&c->bk_lock);
	return err;
}

int store_cred_del(struct store_cred *c, struct slice user, struct slice realm)
{
	char u[STORE_CRED_USER_MAX], r[STORE_CRED_REALM_MAX];
	if (STORE_SET(u, user) || STORE_SET(r, realm))
		return ENOENT;
	pthread_mutex_lock(&c->bk_lock);
	int err = c->ops ? c->ops->del(c->ctx, u, r) : 0;
	if (!err || err == ENOENT) {
		pthread_rwlock_wrlock(&c->lock);
		struct cred_user **pp = tab_find(c->tab, user, realm, cred_hash(user, realm));
		if (*pp) {
			struct cred_user *x = *pp;
			*pp = x->next;
			free(x);
			c->tab->n--;
			err = 0;
		} else if (!c->ops) {
			err = ENOENT;
		}
		m_users.value = (int64_t)c->tab->n;
		pthread_rwlock_unlock(&c->lock);
	}
	pthread_mutex_unlock(&c->bk_lock);
	return err;
}

int store_cred_lookup(struct store_cred *c, struct slice user, struct slice realm,
		      struct store_cred_entry *out)
{
	int err = ENOENT;
	pthread_rwlock_rdlock(&c->lock);
	struct cred_user **pp = tab_find(c->tab, user, realm, cred_hash(user, realm));
	if (*pp) {
		*out = (*pp)->e;
		err = 0;
	}
	pthread_rwlock_unlock(&c->lock);
	return err;
}

size_t store_cred_count(struct store_cred *c)
{
	pthread_rwlock_rdlock(&c->lock);
	size_t n = c->tab->n;
	pthread_rwlock_unlock(&c->lock);
	return n;
}

int store_cred_foreach(struct store_cred *c, store_cred_visit_h *fn, void *arg)
{
	pthread_rwlock_rdlock(&c->lock);
	size_t n = c->tab->n, k = 0;
	struct cred_user *copy = n ? malloc(n * sizeof *copy) : NULL;
	if (n && !copy) {
		pthread_rwlock_unlock(&c->lock);
		return ENOMEM;
	}
	for (size_t i = 0; i < c->tab->nb; i++)
		for (struct cred_user *u = c->tab->b[i]; u && k < n; u = u->next)
			copy[k++] = *u;
	pthread_rwlock_unlock(&c->lock);
	int rc = 0;
	for (size_t i = 0; i < k && !rc; i++)
		rc = fn(copy[i].user, copy[i].realm, &copy[i].e, arg);
	free(copy);
	return rc;
}

size_t store_cred_chain_max(struct store_cred *c)
{
	size_t max = 0;
	pthread_rwlock_rdlock(&c->lock);
	for (size_t i = 0; i < c->tab->nb; i++) {
		size_t len = 0;
		for (struct cred_user *u = c->tab->b[i]; u; u = u->next)
			len++;
		if (len > max)
			max = len;
	}
	pthread_rwlock_unlock(&c->lock);
	return max;
}
