/* USERHASH (RFC 8489 14.4) -> user name: a sorted index of the realm's users, rebuilt at most every
 * few seconds. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "turn_int.h"

struct uh_build {
	struct turn_userhash *v;
	size_t n, cap;
	const char *realm;
};

static int add_user(const char *user, const char *realm, const struct store_cred_entry *e,
		    void *arg)
{
	(void)e;
	struct uh_build *b = arg;
	if (strcasecmp(realm, b->realm) != 0)
		return 0;
	if (b->n == b->cap) {
		size_t cap = b->cap ? 2 * b->cap : 64;
		struct turn_userhash *v = realloc(b->v, cap * sizeof *v);
		if (!v)
			return ENOMEM;
		b->v = v;
		b->cap = cap;
	}
	struct turn_userhash *u = &b->v[b->n++];
	stun_userhash(slice_cstr(user), slice_cstr(b->realm), u->hash);
	snprintf(u->user, sizeof u->user, "%s", user);
	return 0;
}

static int cmp_hash(const void *a, const void *b)
{
	return memcmp(((const struct turn_userhash *)a)->hash,
		      ((const struct turn_userhash *)b)->hash, 32);
}

void turn_userhash_free(struct turn *t)
{
	free(t->uh);
	t->uh = NULL;
	t->nuh = 0;
}

int turn_userhash_find(struct turn *t, const uint8_t hash[32], uint64_t now, char *user, size_t cap)
{
	/* a stranger with a nonce can send USERHASH at will: the O(users)
	 * rebuild happens at most once per TURN_USERHASH_MS, the lookup is a
	 * binary search */
	if (t->creds && (!t->uh_built_ms || now - t->uh_built_ms >= TURN_USERHASH_MS)) {
		struct uh_build b = {.realm = t->cf.realm};
		t->uh_built_ms = now ? now : 1;
		if (store_cred_foreach(t->creds, add_user, &b) == 0) {
			qsort(b.v, b.n, sizeof *b.v, cmp_hash);
			turn_userhash_free(t);
			t->uh = b.v;
			t->nuh = b.n;
		} else {
			free(b.v);
		}
	}
	struct turn_userhash key;
	memcpy(key.hash, hash, 32);
	const struct turn_userhash *u =
	    t->nuh ? bsearch(&key, t->uh, t->nuh, sizeof *t->uh, cmp_hash) : NULL;
	if (!u)
		return ENOENT;
	snprintf(user, cap, "%s", u->user);
	return 0;
}
