/* store: walks over the memory tier, whole (store_foreach) or in slices, so
 * that a periodic pass costs a bounded amount per turn
 * however many bindings a flood of REGISTERs has put in the store. */
#include <errno.h>
#include <stdlib.h>

#include "store/store_int.h"

int store_foreach_slice(struct store *s, struct store_cursor *c, size_t budget,
			store_visit_h *fn, void *arg, bool *round_done)
{
	int64_t now = time_wall_s();
	size_t visited = 0;
	*round_done = false;
	while (visited < budget) {
		if (c->shard >= s->nshards) {
			c->shard = 0;
			c->bucket = 0;
			*round_done = true;
			return 0;
		}
		struct store_shard *sh = &s->shards[c->shard];
		struct store_binding *copy = NULL;
		size_t n = 0, cap = 0;

		/* whole buckets under the lock, until the budget (a bucket looked
		 * at or a binding copied: one each) is spent; a bucket may
		 * overshoot it by its own bindings */
		pthread_mutex_lock(&sh->lock);
		size_t b = c->bucket;
		for (; b < sh->tabsize && visited < budget; b++) {
			visited++;
			for (struct store_aor *a = sh->tab[b]; a; a = a->next) {
				visited += a->n;
				if (n + a->n > cap) {
					size_t ncap = cap ? 2 * cap : 64;
					while (ncap < n + a->n)
						ncap *= 2;
					struct store_binding *nc = realloc(copy, ncap * sizeof *copy);
					if (!nc) {
						pthread_mutex_unlock(&sh->lock);
						free(copy);
						return ENOMEM;
					}
					copy = nc;
					cap = ncap;
				}
				for (size_t j = 0; j < a->n; j++)
					if (a->r[j]->expires_at > now)
						store_rec_unpack(a->r[j], a->aor, &copy[n++]);
			}
		}
		/* a resize between slices moves AORs between buckets: some may
		 * be missed or seen twice in that round, never lost for good */
		bool shard_done = b >= sh->tabsize;
		pthread_mutex_unlock(&sh->lock);
		if (shard_done) {
			c->shard++;
			c->bucket = 0;
		} else {
			c->bucket = b;
		}

		int err = 0;
		for (size_t i = 0; i < n && !err; i++)
			err = fn(&copy[i], arg);
		free(copy);
		if (err)
			return err;
	}
	return 0;
}

int store_foreach(struct store *s, store_visit_h *fn, void *arg)
{
	/* one round without a budget: each shard copied out under its lock and
	 * visited without it (fn may call back into the store) */
	struct store_cursor c = {0};
	bool round_done;
	return store_foreach_slice(s, &c, SIZE_MAX, fn, arg, &round_done);
}
