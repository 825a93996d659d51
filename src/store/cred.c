/* Credentials, memory backend: user@realm -> password or HA1, behind a read-write lock. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"

#define CRED_BUCKETS 256 /* fixed: chains stay short below ~10,000 users */

/* One user; owned by struct store_cred. */
struct cred_user {
	struct cred_user *next;
	uint64_t hash;
	char user[STORE_CRED_USER_MAX];
	char realm[STORE_CRED_REALM_MAX];
	struct store_cred_entry e;
};

struct store_cred {
	pthread_rwlock_t lock; /* lookups share it; set/del take it alone */
	struct cred_user *tab[CRED_BUCKETS];
	size_t n;
};

/* The user is compared exactly, the realm case-insensitively. */
static uint64_t cred_hash(struct slice user, struct slice realm)
{
	return hash_bytes(user.p, user.l) ^ (hash_fnv1a_nocase(realm.p, realm.l) * 31);
}

static struct cred_user **cred_find(struct store_cred *c, struct slice user, struct slice realm,
				    uint64_t h)
{
	struct cred_user **pp = &c->tab[h % CRED_BUCKETS];
	for (; *pp; pp = &(*pp)->next) {
		struct cred_user *u = *pp;
		if (u->hash == h && slice_eq(slice_cstr(u->user), user) &&
		    slice_eq_nocase(slice_cstr(u->realm), realm))
			return pp;
	}
	return pp;
}

int store_cred_alloc(struct store_cred **cp)
{
	struct store_cred *c = calloc(1, sizeof *c);
	if (!c)
		return ENOMEM;
	int err = pthread_rwlock_init(&c->lock, NULL);
	if (err) {
		free(c);
		return err;
	}
	*cp = c;
	return 0;
}

void store_cred_free(struct store_cred *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < CRED_BUCKETS; i++) {
		struct cred_user *u = c->tab[i], *next;
		for (; u; u = next) {
			next = u->next;
			free(u);
		}
	}
	pthread_rwlock_destroy(&c->lock);
	free(c);
}

int store_cred_set(struct store_cred *c, struct slice user, struct slice realm,
		   enum store_cred_kind kind, struct slice secret)
{
	if (!user.l || (kind != STORE_CRED_PASSWORD && kind != STORE_CRED_HA1))
		return EINVAL;
	struct cred_user tmp = {.e.kind = kind};
	int err = STORE_SET(tmp.user, user);
	err = err ? err : STORE_SET(tmp.realm, realm);
	err = err ? err : STORE_SET(tmp.e.secret, secret);
	if (err)
		return err;
	tmp.hash = cred_hash(user, realm);

	pthread_rwlock_wrlock(&c->lock);
	struct cred_user **pp = cred_find(c, user, realm, tmp.hash);
	if (*pp) {
		tmp.next = (*pp)->next;
		**pp = tmp;
	} else {
		struct cred_user *u = malloc(sizeof *u);
		if (!u) {
			err = ENOMEM;
		} else {
			*u = tmp;
			u->next = NULL;
			*pp = u;
			c->n++;
		}
	}
	pthread_rwlock_unlock(&c->lock);
	return err;
}

int store_cred_del(struct store_cred *c, struct slice user, struct slice realm)
{
	int err = ENOENT;
	pthread_rwlock_wrlock(&c->lock);
	struct cred_user **pp = cred_find(c, user, realm, cred_hash(user, realm));
	if (*pp) {
		struct cred_user *u = *pp;
		*pp = u->next;
		free(u);
		c->n--;
		err = 0;
	}
	pthread_rwlock_unlock(&c->lock);
	return err;
}

int store_cred_lookup(struct store_cred *c, struct slice user, struct slice realm,
		      struct store_cred_entry *out)
{
	int err = ENOENT;
	pthread_rwlock_rdlock(&c->lock);
	struct cred_user **pp = cred_find(c, user, realm, cred_hash(user, realm));
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
	size_t n = c->n;
	pthread_rwlock_unlock(&c->lock);
	return n;
}
