/* auth: failures per source and per user name, with backoff, in a bounded table. */
#include <errno.h>
#include <netinet/in.h>
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

void auth_fail_keys(struct auth *a, const struct net_addr *src, struct slice user,
		    uint64_t k[FAIL_K_N])
{
	/* the source without the port, IPv6 by its /64 like every other
	 * per-source bound: one NAT's phones share it, and so does an attacker
	 * who changes ports or addresses inside the /64 it was given */
	struct net_src_key sk;
	net_addr_src_key(src, &sk);
	uint8_t b[16 + 112];
	memcpy(b, &sk.hi, 8);
	memcpy(b + 8, &sk.lo, 8);
	size_t ul = MIN(user.p ? user.l : 0, sizeof b - 16);
	if (ul)
		memcpy(b + 16, user.p, ul);
	k[FAIL_K_SRC] = fail_key(a, 's', b, 16);
	k[FAIL_K_USER] = fail_key(a, 'u', user.p ? user.p : "", user.l);
	k[FAIL_K_PAIR] = fail_key(a, 'o', b, 16 + ul);
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

static void note_one(struct auth *a, struct fail_entry *e, int64_t now, char kind, uint64_t src_key,
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
	if (e->failures == 0) {
		e->src1 = src_key;
		e->multi = false;
	} else if (src_key != e->src1) {
		e->multi = true;
	}
	if (++e->failures < a->max_failures)
		return;
	/*
	 * A user name's backoff engages only for failures from two sources or
	 * more. From one source, the source's own backoff (same count, same
	 * window) already holds the guesser, whatever names it tries; a user
	 * backoff on top would add nothing against it but let any one real
	 * address lock alice out of everywhere. The user backoff is for a
	 * guesser spread over many sources, which no per-source bound holds.
	 */
	if (kind == 'u' && !e->multi)
		return;
	int64_t backoff = a->backoff_min_ms << MIN(e->level, 20);
	if (backoff > a->backoff_max_ms || backoff <= 0)
		backoff = a->backoff_max_ms;
	else
		e->level++;
	e->blocked_until_ms = now + backoff;
	unsigned n = e->failures;
	e->failures = 0;
	metric_inc(&auth_m_blocks);
	/* the one log line of this burst; what the last block refused comes with it */
	char who[NET_ADDR_STRLEN + 16];
	if (kind == 's') {
		net_addr_ip_fmt(src, who, sizeof who);
		if (src->u.sa.sa_family == AF_INET6 && !IN6_IS_ADDR_V4MAPPED(&src->u.in6.sin6_addr))
			strcat(who, " (its /64)");
	} else
		slice_to_cstr((struct slice){user.p, MIN(user.l, (size_t)40)}, who, sizeof who);
	LOG_W("auth",
	      "%s %s: %u failed authentications, blocked for %lld s (%u refused in its "
	      "previous block)",
	      kind == 's' ? "source" : "user", who, n, (long long)(backoff / 1000), e->refused);
	e->refused = 0;
}

void auth_fail_note_k(struct auth *a, const uint64_t k[FAIL_K_N], const struct net_addr *src,
		      struct slice user, int64_t now_ms)
{
	pthread_mutex_lock(&a->fail_lock);
	note_one(a, take(a, k[FAIL_K_SRC], now_ms), now_ms, 's', k[FAIL_K_SRC], src, user);
	note_one(a, take(a, k[FAIL_K_USER], now_ms), now_ms, 'u', k[FAIL_K_SRC], src, user);
	pthread_mutex_unlock(&a->fail_lock);
}

/*
 * A user name's backoff does not hold a source where that user authenticated
 * within AUTH_TRUST_S: alice's own phones go on registering while strangers
 * guess her password elsewhere. Sound because such a source is still held by
 * its own backoff (it is never exempt from that), so a guesser behind alice's
 * NAT gets no more tries than from any other single source; and a trusted
 * pair is made only by the right password over a nonce issued to that
 * source.
 */
uint32_t auth_fail_blocked_k(struct auth *a, const uint64_t k[FAIL_K_N], int64_t now_ms)
{
	int64_t until = 0;
	pthread_mutex_lock(&a->fail_lock);
	struct fail_entry *s = find(a, k[FAIL_K_SRC]), *u = find(a, k[FAIL_K_USER]);
	if (s && s->blocked_until_ms > now_ms) {
		s->refused++;
		until = s->blocked_until_ms;
	}
	if (u && u->blocked_until_ms > now_ms) {
		struct fail_entry *o = find(a, k[FAIL_K_PAIR]);
		if (!o || now_ms - o->last_ms > (int64_t)AUTH_TRUST_S * 1000) {
			u->refused++;
			until = MAX(until, u->blocked_until_ms);
		}
	}
	pthread_mutex_unlock(&a->fail_lock);
	return until ? (uint32_t)((until - now_ms + 999) / 1000) : 0;
}

void auth_fail_clear_k(struct auth *a, const uint64_t k[FAIL_K_N], int64_t now_ms)
{
	pthread_mutex_lock(&a->fail_lock);
	for (int i = FAIL_K_SRC; i <= FAIL_K_USER; i++) {
		struct fail_entry *e = find(a, k[i]);
		/* a success ends the count, not a live block (the password may have
		 * been guessed; the block was earned by the failures before it) */
		if (e && e->blocked_until_ms <= now_ms) {
			memset(e, 0, sizeof *e);
			a->fail_count--;
		}
	}
	/* the pair's entry: never blocked, so it gives way like any quiet one
	 * when a set fills (a flood of failures can push it out; then alice's
	 * phone there is held by a user backoff like any other source) */
	take(a, k[FAIL_K_PAIR], now_ms)->last_ms = now_ms;
	pthread_mutex_unlock(&a->fail_lock);
}

void auth_fail_note(struct auth *a, const struct net_addr *src, struct slice user, int64_t now_ms)
{
	uint64_t k[FAIL_K_N];
	auth_fail_keys(a, src, user, k);
	auth_fail_note_k(a, k, src, user, now_ms);
}

uint32_t auth_fail_blocked(struct auth *a, const struct net_addr *src, struct slice user,
			   int64_t now_ms)
{
	uint64_t k[FAIL_K_N];
	auth_fail_keys(a, src, user, k);
	return auth_fail_blocked_k(a, k, now_ms);
}

void auth_fail_clear(struct auth *a, const struct net_addr *src, struct slice user, int64_t now_ms)
{
	uint64_t k[FAIL_K_N];
	auth_fail_keys(a, src, user, k);
	auth_fail_clear_k(a, k, now_ms);
}
