/* auth: failures per source address and per user name, with backoff, in a bounded table. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "auth_int.h"

int auth_fail_init(struct auth *a, size_t cap)
{
	a->fail_sets = (cap + FAIL_WAYS - 1) / FAIL_WAYS;
	a->fail = calloc(a->fail_sets * FAIL_WAYS, sizeof *a->fail);
	if (!a->fail)
		return ENOMEM;
	pthread_mutex_init(&a->fail_lock, NULL);
	return 0;
}

void auth_fail_fini(struct auth *a)
{
	if (a->fail)
		pthread_mutex_destroy(&a->fail_lock);
	free(a->fail);
}

/* Keyed: a stranger who could choose names that collide with alice's could
 * block her, or push her entry out of its set. Never 0 (0 = free slot). */
static uint64_t fail_key(struct auth *a, char kind, const void *p, size_t l)
{
	uint8_t buf[1 + 128], md[32];
	l = MIN(l, sizeof buf - 1);
	buf[0] = (uint8_t)kind;
	memcpy(buf + 1, p, l);
	auth_hmac(a, buf, l + 1, md);
	uint64_t k;
	memcpy(&k, md, 8);
	return k ? k : 1;
}

static size_t src_key_bytes(const struct net_addr *src, const void **p)
{
	/* the address without the port: one NAT's phones share it, and so does
	 * an attacker who changes ports */
	if (src->u.sa.sa_family == AF_INET6) {
		*p = &src->u.in6.sin6_addr;
		return 16;
	}
	*p = &src->u.in.sin_addr;
	return 4;
}

void auth_fail_keys(struct auth *a, const struct net_addr *src, struct slice user, uint64_t k[2])
{
	const void *p;
	size_t l = src_key_bytes(src, &p);
	k[0] = fail_key(a, 's', p, l);
	k[1] = fail_key(a, 'u', user.p ? user.p : "", user.l);
}

static struct fail_entry *find(struct auth *a, uint64_t key)
{
	struct fail_entry *set = &a->fail[(key >> 32) % a->fail_sets * FAIL_WAYS];
	for (int i = 0; i < FAIL_WAYS; i++)
		if (set[i].key == key)
			return &set[i];
	return NULL;
}

/*
 * A slot for key in its set. What gives way when the set is full: the entry
 * touched least recently among those not blocked; if all are blocked, the one
 * whose block ends first. A flood of failures from many addresses can thus
 * shorten the memory of older, quieter failures, never lift a live block
 * while another set member could go instead.
 */
static struct fail_entry *take(struct auth *a, uint64_t key, int64_t now)
{
	struct fail_entry *set = &a->fail[(key >> 32) % a->fail_sets * FAIL_WAYS];
	struct fail_entry *victim = NULL;
	for (int i = 0; i < FAIL_WAYS; i++) {
		struct fail_entry *e = &set[i];
		if (e->key == key)
			return e;
		if (!e->key) {
			victim = e;
			a->fail_count++;
			goto fill;
		}
	}
	for (int i = 0; i < FAIL_WAYS; i++) {
		struct fail_entry *e = &set[i];
		bool eb = e->blocked_until_ms > now;
		if (!victim) {
			victim = e;
			continue;
		}
		bool vb = victim->blocked_until_ms > now;
		if ((vb && !eb) || (vb == eb && (eb ? e->blocked_until_ms < victim->blocked_until_ms
						    : e->last_ms < victim->last_ms)))
			victim = e;
	}
	metric_inc(&auth_m_fail_evicted);
fill:
	memset(victim, 0, sizeof *victim);
	victim->key = key;
	victim->window_ms = now;
	return victim;
}

static void note_one(struct auth *a, struct fail_entry *e, int64_t now, char kind,
		     const struct net_addr *src, struct slice user)
{
	/* a quiet spell as long as the longest backoff forgets the doublings */
	if (now - e->last_ms > 2 * a->backoff_max_ms)
		e->level = 0;
	if (now - e->window_ms > a->fail_window_ms) {
		e->window_ms = now;
		e->failures = 0;
	}
	e->last_ms = now;
	if (e->blocked_until_ms > now)
		return; /* refused before verification; not a new failure */
	if (++e->failures < a->max_failures)
		return;
	int64_t backoff = a->backoff_min_ms << MIN(e->level, 20);
	if (backoff > a->backoff_max_ms || backoff <= 0)
		backoff = a->backoff_max_ms;
	else
		e->level++;
	e->blocked_until_ms = now + backoff;
	e->failures = 0;
	metric_inc(&auth_m_blocks);
	/* the one log line of this burst; what the last block refused comes with it */
	char who[NET_ADDR_STRLEN + 8];
	if (kind == 's')
		net_addr_ip_fmt(src, who, sizeof who);
	else
		slice_to_cstr((struct slice){user.p, MIN(user.l, (size_t)40)}, who, sizeof who);
	LOG_W("auth",
	      "%s %s: %u failed authentications, blocked for %lld s (%u refused in its "
	      "previous block)",
	      kind == 's' ? "source" : "user", who, a->max_failures, (long long)(backoff / 1000),
	      e->refused);
	e->refused = 0;
}

void auth_fail_note_k(struct auth *a, const uint64_t k[2], const struct net_addr *src,
		      struct slice user, int64_t now_ms)
{
	pthread_mutex_lock(&a->fail_lock);
	note_one(a, take(a, k[0], now_ms), now_ms, 's', src, user);
	note_one(a, take(a, k[1], now_ms), now_ms, 'u', src, user);
	pthread_mutex_unlock(&a->fail_lock);
}

uint32_t auth_fail_blocked_k(struct auth *a, const uint64_t k[2], int64_t now_ms)
{
	int64_t until = 0;
	pthread_mutex_lock(&a->fail_lock);
	for (int i = 0; i < 2; i++) {
		struct fail_entry *e = find(a, k[i]);
		if (e && e->blocked_until_ms > now_ms) {
			e->refused++;
			until = MAX(until, e->blocked_until_ms);
		}
	}
	pthread_mutex_unlock(&a->fail_lock);
	return until ? (uint32_t)((until - now_ms + 999) / 1000) : 0;
}

void auth_fail_clear_k(struct auth *a, const uint64_t k[2], int64_t now_ms)
{
	pthread_mutex_lock(&a->fail_lock);
	for (int i = 0; i < 2; i++) {
		struct fail_entry *e = find(a, k[i]);
		/* a success ends the count, not a live block (the password may have
		 * been guessed; the block was earned by the failures before it) */
		if (e && e->blocked_until_ms <= now_ms) {
			memset(e, 0, sizeof *e);
			a->fail_count--;
		}
	}
	pthread_mutex_unlock(&a->fail_lock);
}

void auth_fail_note(struct auth *a, const struct net_addr *src, struct slice user, int64_t now_ms)
{
	uint64_t k[2];
	auth_fail_keys(a, src, user, k);
	auth_fail_note_k(a, k, src, user, now_ms);
}

uint32_t auth_fail_blocked(struct auth *a, const struct net_addr *src, struct slice user,
			   int64_t now_ms)
{
	uint64_t k[2];
	auth_fail_keys(a, src, user, k);
	return auth_fail_blocked_k(a, k, now_ms);
}

void auth_fail_clear(struct auth *a, const struct net_addr *src, struct slice user, int64_t now_ms)
{
	uint64_t k[2];
	auth_fail_keys(a, src, user, k);
	auth_fail_clear_k(a, k, now_ms);
}
