/* Per-source token buckets: the STUN server's guard against use as a reflector. */
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "stund.h"

int stund_limiter_init(struct stund_limiter *l, size_t slots, uint32_t rate, uint32_t burst)
{
	size_t n = 64;
	while (n < slots)
		n <<= 1;
	memset(l, 0, sizeof *l);
	l->slots = calloc(n, sizeof *l->slots);
	if (!l->slots)
		return ENOMEM;
	l->mask = n - 1;
	l->rate = rate;
	l->burst = burst ? burst : 1;
	for (size_t i = 0; i < STUND_LIMIT_LOCKS; i++)
		pthread_spin_init(&l->locks[i], PTHREAD_PROCESS_PRIVATE);
	return 0;
}

int stund_limiter_init_conf(struct stund_limiter *l, const struct conf *c)
{
	return stund_limiter_init(l, (size_t)conf_int(c, "stun", "sources"),
				  (uint32_t)conf_int(c, "stun", "rate"),
				  (uint32_t)conf_int(c, "stun", "burst"));
}

void stund_limiter_free(struct stund_limiter *l)
{
	if (!l->slots)
		return;
	free(l->slots);
	l->slots = NULL;
	for (size_t i = 0; i < STUND_LIMIT_LOCKS; i++)
		pthread_spin_destroy(&l->locks[i]);
}

static uint64_t source_key(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		return 0x100000000ull | ntohl(in->sin_addr.s_addr);
	}
	const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
	const uint8_t *b = in6->sin6_addr.s6_addr;
	if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))
		return 0x100000000ull | (uint64_t)b[12] << 24 | (uint64_t)b[13] << 16 |
		       (uint64_t)b[14] << 8 | b[15];
	uint64_t k = 0;
	for (int i = 0; i < 8; i++) /* the /64 */
		k = k << 8 | b[i];
	return k ^ 0x8000000000000001ull;
}

static uint32_t refill(const struct stund_limiter *l, const struct stund_bucket *b, uint64_t now_ms)
{
	uint64_t full = (uint64_t)l->burst * 1000;
	uint64_t elapsed = now_ms > b->last_ms ? now_ms - b->last_ms : 0;
	uint64_t m = b->milli + elapsed * l->rate; /* rate per s = rate milli-tokens per ms */
	return (uint32_t)MIN(m, full);
}

bool stund_limiter_allow(struct stund_limiter *l, const struct sockaddr *src, uint64_t now_ms)
{
	if (!l->rate)
		return true;
	uint64_t key = source_key(src);
	size_t idx = hash_bytes(&key, sizeof key) & l->mask;
	struct stund_bucket *b = &l->slots[idx];
	pthread_spinlock_t *lock = &l->locks[idx % STUND_LIMIT_LOCKS];
	pthread_spin_lock(lock);
	uint32_t m = refill(l, b, now_ms);
	if (b->key != key && (b->key == 0 || m >= l->burst * 1000u)) {
		b->key = key; /* free, or idle long enough to be full: take it over */
		m = l->burst * 1000u;
	}
	/* workers' clocks are read apart: never move a bucket's time back */
	if (now_ms > b->last_ms)
		b->last_ms = now_ms;
	bool ok = m >= 1000;
	b->milli = ok ? m - 1000 : m;
	pthread_spin_unlock(lock);
	return ok;
}
