/* Location store: the total bound on bindings (max_bindings), as a flood of new AORs meets it, and the sliced walk that keeps the keepalive sweep's cost per tick bounded. */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "store/store.h"

static void mk(struct store_binding *b, const char *contact, int64_t expires_in)
{
	memset(b, 0, sizeof *b);
	assert_int_equal(STORE_SET(b->contact, slice_cstr(contact)), 0);
	assert_int_equal(STORE_SET(b->call_id, SLICE_LIT("cap@host")), 0);
	b->registered_at = time_wall_s();
	b->expires_at = b->registered_at + expires_in;
	b->cseq = 1;
	b->flow.tp = NET_UDP;
	b->flow.remote.u.in.sin_family = AF_INET;
	b->flow.remote.u.in.sin_port = htons(40000);
	b->flow.remote.u.in.sin_addr.s_addr = htonl(0x64400001); /* 100.64.0.1 */
}

static int op_put(struct store_view *v, void *arg)
{
	return store_view_put(v, arg, NULL);
}

static int op_remove(struct store_view *v, void *arg)
{
	long i = store_view_find(v, arg);
	return i < 0 ? ENOENT : store_view_remove(v, (size_t)i);
}

/* Removes the binding with arg's identity and adds another in the same update. */
static int op_swap(struct store_view *v, void *arg)
{
	const struct store_binding *b = arg;
	long i = store_view_find(v, &b[0]);
	if (i < 0)
		return ENOENT;
	store_view_remove(v, (size_t)i);
	return store_view_put(v, &b[1], NULL);
}

static int upd(struct store *s, const char *aor, store_update_h *fn, void *arg)
{
	return store_update(s, slice_cstr(aor), fn, arg, NULL, NULL);
}

static int64_t full_count(void)
{
	struct buf b;
	buf_init(&b);
	metrics_write_prometheus(&b);
	buf_append(&b, "", 1);
	const char *at = strstr(b.data, "\npinhole_store_bindings_full_total ");
	int64_t v =
	    at ? strtoll(at + strlen("\npinhole_store_bindings_full_total "), NULL, 10) : -1;
	buf_free(&b);
	return v;
}

static size_t latest(struct store *s)
{
	struct store_stats st;
	store_stats_get(s, &st);
	return st.bindings_latest;
}

/* A flood of new AORs, one binding each, against max_bindings = 8: the ninth
 * is refused, counted, and the store holds 8. Refreshes and removals of the
 * bindings already there still work, a removal makes room for one more, and
 * a binding that takes the place of one removed in the same update passes. */
static void test_flood_memory(void **state)
{
	(void)state;
	struct store *s;
	struct store_conf conf = {.max_bindings = 8, .shards = 4};
	assert_int_equal(store_alloc(&s, &conf), 0);
	int64_t full0 = full_count();
	char aor[64], c[64];
	struct store_binding b;
	int ok = 0, refused = 0;
	for (int i = 0; i < 100; i++) {
		snprintf(aor, sizeof aor, "flood%d@198.18.0.1", i);
		snprintf(c, sizeof c, "sip:flood%d@100.64.0.1:%d", i, 5000 + i);
		mk(&b, c, 600);
		int err = upd(s, aor, op_put, &b);
		assert_true(err == 0 || err == EAGAIN);
		ok += err == 0;
		refused += err == EAGAIN;
	}
	assert_int_equal(ok, 8);
	assert_int_equal(refused, 92);
	assert_int_equal(full_count() - full0, 92);
	struct store_stats st;
	store_stats_get(s, &st);
	assert_int_equal(st.bindings, 8);
	assert_int_equal(st.aors, 8);
	/* a second contact for an AOR that exists is growth too */
	mk(&b, "sip:flood0@100.64.0.2", 600);
	assert_int_equal(upd(s, "flood0@198.18.0.1", op_put, &b), EAGAIN);

	/* a refresh at the bound */
	mk(&b, "sip:flood3@100.64.0.1:5003", 3600);
	assert_int_equal(upd(s, "flood3@198.18.0.1", op_put, &b), 0);
	struct store_binding out;
	size_t n = 0;
	assert_int_equal(store_lookup(s, SLICE_LIT("flood3@198.18.0.1"), &out, 1, &n), 0);
	assert_int_equal(n, 1);
	assert_true(out.expires_at >= b.expires_at);
	/* a swap in one update: no growth */
	struct store_binding two[2];
	mk(&two[0], "sip:flood4@100.64.0.1:5004", 600);
	mk(&two[1], "sip:flood4@100.64.0.9:5004", 600);
	assert_int_equal(upd(s, "flood4@198.18.0.1", op_swap, two), 0);
	/* a removal at the bound, and then there is room for exactly one */
	mk(&b, "sip:flood5@100.64.0.1:5005", 600);
	assert_int_equal(upd(s, "flood5@198.18.0.1", op_remove, &b), 0);
	assert_int_equal(latest(s), 7);
	mk(&b, "sip:late@100.64.0.1", 600);
	assert_int_equal(upd(s, "late1@198.18.0.1", op_put, &b), 0);
	assert_int_equal(upd(s, "late2@198.18.0.1", op_put, &b), EAGAIN);
	store_stats_get(s, &st);
	assert_int_equal(st.bindings, 8);
	store_free(s);
}

/* Expired bindings give their place back: the expiry sweep frees it, and an
 * update of an AOR whose binding expired may put a new one in its place
 * before the sweep ran. (Bindings put with no time left are expired at once.) */
static void test_expired_make_room(void **state)
{
	(void)state;
	struct store *s;
	struct store_conf conf = {.max_bindings = 2, .shards = 1};
	assert_int_equal(store_alloc(&s, &conf), 0);
	struct store_binding b;
	mk(&b, "sip:a@100.64.0.1", 0);
	assert_int_equal(upd(s, "a@h", op_put, &b), 0);
	mk(&b, "sip:b@100.64.0.1", 0);
	assert_int_equal(upd(s, "b@h", op_put, &b), 0);
	mk(&b, "sip:c@100.64.0.1", 600);
	assert_int_equal(upd(s, "c@h", op_put, &b), EAGAIN);
	/* a new contact for a, whose old one has expired but is not swept */
	mk(&b, "sip:a2@100.64.0.1", 600);
	assert_int_equal(upd(s, "a@h", op_put, &b), 0);
	assert_int_equal(latest(s), 2);
	/* the sweep frees b's place */
	size_t removed = 0;
	assert_int_equal(store_expire(s, time_wall_s() + 1, &removed), 0);
	assert_int_equal(removed, 1);
	assert_int_equal(latest(s), 1);
	mk(&b, "sip:c@100.64.0.1", 600);
	assert_int_equal(upd(s, "c@h", op_put, &b), 0);
	store_free(s);
}

static char dir[64], path[128];

/* With a database, bindings queued for their COMMIT count at once (a burst
 * between two COMMITs cannot pass the bound), and bindings loaded at start
 * count: more than the bound on disk are all loaded, and new ones are
 * refused until enough go; removals and refreshes of the loaded ones work. */
static void test_sqlite_queued_and_loaded(void **state)
{
	(void)state;
	snprintf(dir, sizeof dir, "/tmp/pinhole-cap-XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof path, "%s/cap.db", dir);
	struct store *s;
	/* kick_explicit and no kick: the updates stay queued (but for the 5 ms
	 * safety net); the count is the same whether or not some committed */
	struct store_conf conf = {.path = path, .max_bindings = 6, .kick_explicit = true};
	assert_int_equal(store_alloc(&s, &conf), 0);
	char aor[64];
	struct store_binding b;
	int ok = 0;
	for (int i = 0; i < 20; i++) {
		snprintf(aor, sizeof aor, "q%d@h", i);
		mk(&b, "sip:q@100.64.0.1", 600);
		ok += upd(s, aor, op_put, &b) == 0;
	}
	assert_int_equal(ok, 6);
	assert_int_equal(store_flush(s), 0);
	struct store_stats st;
	store_stats_get(s, &st);
	assert_int_equal(st.bindings, 6);
	store_free(s);

	/* reopened with a lower bound: all 6 loaded, new ones refused */
	conf.max_bindings = 4;
	assert_int_equal(store_alloc(&s, &conf), 0);
	store_stats_get(s, &st);
	assert_int_equal(st.bindings, 6);
	assert_int_equal(st.bindings_latest, 6);
	mk(&b, "sip:new@100.64.0.1", 600);
	assert_int_equal(upd(s, "new@h", op_put, &b), EAGAIN);
	mk(&b, "sip:q@100.64.0.1", 900);
	assert_int_equal(upd(s, "q0@h", op_put, &b), 0); /* refresh */
	for (int i = 1; i <= 2; i++) {
		snprintf(aor, sizeof aor, "q%d@h", i);
		assert_int_equal(upd(s, aor, op_remove, &b), 0);
	}
	/* 4 left: still at the bound */
	mk(&b, "sip:new@100.64.0.1", 600);
	assert_int_equal(upd(s, "new@h", op_put, &b), EAGAIN);
	mk(&b, "sip:q@100.64.0.1", 600);
	assert_int_equal(upd(s, "q3@h", op_remove, &b), 0);
	mk(&b, "sip:new@100.64.0.1", 600);
	assert_int_equal(upd(s, "new@h", op_put, &b), 0);
	assert_int_equal(store_flush(s), 0);
	store_stats_get(s, &st);
	assert_int_equal(st.bindings, 4);
	assert_int_equal(st.bindings_latest, 4);
	store_free(s);

	static const char *const suffix[] = {"", "-wal", "-shm"};
	char p[160];
	for (size_t i = 0; i < 3; i++) {
		snprintf(p, sizeof p, "%s%s", path, suffix[i]);
		unlink(p);
	}
	rmdir(dir);
}

struct walk {
	int seen[2000];
	size_t calls;
};

static int walk_visit(const struct store_binding *b, void *arg)
{
	struct walk *w = arg;
	int i = atoi(b->aor + 1); /* "f<i>@flood.example" */
	assert_true(i >= 0 && i < 2000);
	w->seen[i]++;
	w->calls++;
	return 0;
}

/* The keepalive sweep walks the store in slices (store_foreach_slice): with
 * the 2,000 bindings a REGISTER flood left, a slice of budget 100 visits at
 * most its budget (plus one bucket's bindings), a round visits every binding
 * exactly once over about (bindings + buckets) / budget slices, and then
 * starts again. store_foreach visited all 2,000 at every tick. */
static void test_flood_sweep_sliced(void **state)
{
	(void)state;
	struct store *s;
	struct store_conf conf = {.shards = 4};
	assert_int_equal(store_alloc(&s, &conf), 0);
	char aor[64];
	struct store_binding b;
	for (int i = 0; i < 2000; i++) {
		snprintf(aor, sizeof aor, "f%d@flood.example", i);
		mk(&b, "sip:f@100.64.1.1:5060", 600);
		assert_int_equal(upd(s, aor, op_put, &b), 0);
	}
	static struct walk w;
	memset(&w, 0, sizeof w);
	struct store_cursor c = {0};
	bool done = false;
	size_t slices = 0;
	while (!done) {
		size_t before = w.calls;
		assert_int_equal(store_foreach_slice(s, &c, 100, walk_visit, &w, &done), 0);
		assert_true(w.calls - before <= 100 + 16);
		assert_true(++slices < 1000);
	}
	assert_int_equal(w.calls, 2000);
	for (int i = 0; i < 2000; i++)
		assert_int_equal(w.seen[i], 1);
	assert_true(slices >= 20); /* 2,000 bindings at <= 100 a slice, at the least */
	/* the next round starts from the beginning */
	assert_int_equal(c.shard, 0);
	assert_int_equal(store_foreach_slice(s, &c, 100, walk_visit, &w, &done), 0);
	assert_false(done);
	assert_true(w.calls > 2000 && w.calls <= 2000 + 100 + 16);
	store_free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_flood_memory),
	    cmocka_unit_test(test_expired_make_room),
	    cmocka_unit_test(test_sqlite_queued_and_loaded),
	    cmocka_unit_test(test_flood_sweep_sliced),
	};
	return cmocka_run_group_tests_name("store_cap", tests, NULL, NULL);
}
