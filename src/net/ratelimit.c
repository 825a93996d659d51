/* Per-source token buckets in one bounded table shared by all workers (the idea of Kamailio's pike). */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "net.h"

/* The table is set-associative: a source hashes to one set of WAYS entries,
 * and each set has its own spin lock, held for a few dozen instructions, so
 * workers rarely meet on one. When a new source finds its set full, the
 * entry with the most tokens gives way: a full bucket is the same as no
 * entry, so evicting it loses nothing; only when every entry of the set is
 * short of tokens (sources that really are busy) is state lost, and that is
 * counted. A flood of spoofed sources therefore evicts its own fresh entries
 * (nearly full) first, not the busy source being limited. */
#define WAYS 8

struct rl_entry {
	struct net_src_key key;
	uint64_t stamp_ms; /* when tokens was last brought up to date */
	uint64_t milli;    /* tokens x 1000 */
	bool used;
};

struct rl_set {
	atomic_flag lock;
	struct rl_entry e[WAYS];
};

struct net_ratelimit {
	struct rl_set *sets;
	size_t n_sets; /* a power of two */
	uint64_t rate;	/* tokens per second; RO after alloc */
	uint64_t burst_milli; /* bucket size x 1000; RO after alloc */
	_Atomic int64_t evictions, limited;
};

int net_ratelimit_alloc(struct net_ratelimit **rp, size_t slots, unsigned rate, unsigned burst)
{
	if (!rate || !burst || !slots)
		return EINVAL;
	struct net_ratelimit *r = calloc(1, sizeof *r);
	if (!r)
		return ENOMEM;
	size_t sets = 1;
	while (sets * WAYS < slots)
		sets *= 2;
	r->sets = calloc(sets, sizeof *r->sets);
	if (!r->sets) {
		free(r);
		return ENOMEM;
	}
	/* zeroed memory is a clear flag: the pages stay untouched until used */
	r->n_sets = sets;
	r->rate = rate;
	r->burst_milli = (uint64_t)burst * 1000;
	*rp = r;
	return 0;
}

void net_ratelimit_free(struct net_ratelimit *r)
{
	if (!r)
		return;
	free(r->sets);
	free(r);
}

static void refill(const struct net_ratelimit *r, struct rl_entry *e, uint64_t now_ms)
{
	if (now_ms > e->stamp_ms) {
		uint64_t add = (now_ms - e->stamp_ms) * r->rate; /* ms x tokens/s = milli-tokens */
		e->milli = add >= r->burst_milli - e->milli ? r->burst_milli : e->milli + add;
		e->stamp_ms = now_ms;
	}
}

bool net_ratelimit_take(struct net_ratelimit *r, const struct net_addr *a, uint64_t now_ms)
{
	struct net_src_key k;
	net_addr_src_key(a, &k);
	uint64_t h = (k.hi * 0x9e3779b97f4a7c15ULL) ^ (k.lo * 0xc2b2ae3d27d4eb4fULL);
	h ^= h >> 29;
	struct rl_set *set = &r->sets[h & (r->n_sets - 1)];
	while (atomic_flag_test_and_set_explicit(&set->lock, memory_order_acquire))
		;
	struct rl_entry *e = NULL, *victim = NULL;
	for (int i = 0; i < WAYS && !e; i++)
		if (set->e[i].used && set->e[i].key.hi == k.hi && set->e[i].key.lo == k.lo)
			e = &set->e[i];
	for (int i = 0; i < WAYS && !e; i++) {
		struct rl_entry *x = &set->e[i];
		if (!x->used) {
			victim = x;
			break;
		}
		refill(r, x, now_ms);
		if (!victim || x->milli > victim->milli)
			victim = x;
	}
	if (!e) {
		if (victim->used && victim->milli < r->burst_milli)
			r->evictions++;
		e = victim;
		e->used = true;
		e->key = k;
		e->stamp_ms = now_ms;
		e->milli = r->burst_milli;
	} else {
		refill(r, e, now_ms);
	}
	bool ok = e->milli >= 1000;
	if (ok)
		e->milli -= 1000;
	else
		r->limited++;
	atomic_flag_clear_explicit(&set->lock, memory_order_release);
	return ok;
}

void net_ratelimit_stats(const struct net_ratelimit *r, int64_t *limited, int64_t *evictions)
{
	*limited = r->limited;
	*evictions = r->evictions;
}
