/* Location store: updates, expiry, threads, group commit, persistence, kill -9. */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "store/store.h"

/* ---- helpers ---- */

static void addr4(struct net_addr *a, const char *ip, uint16_t port)
{
	memset(a, 0, sizeof *a);
	a->u.in.sin_family = AF_INET;
	a->u.in.sin_port = htons(port);
	assert_int_equal(inet_pton(AF_INET, ip, &a->u.in.sin_addr), 1);
}

static void addr6(struct net_addr *a, const char *ip, uint16_t port)
{
	memset(a, 0, sizeof *a);
	a->u.in6.sin6_family = AF_INET6;
	a->u.in6.sin6_port = htons(port);
	assert_int_equal(inet_pton(AF_INET6, ip, &a->u.in6.sin6_addr), 1);
}

static void mk(struct store_binding *b, const char *contact, int64_t expires_in, uint16_t q)
{
	memset(b, 0, sizeof *b);
	assert_int_equal(STORE_SET(b->contact, slice_cstr(contact)), 0);
	assert_int_equal(STORE_SET(b->call_id, SLICE_LIT("c1@host")), 0);
	assert_int_equal(STORE_SET(b->user_agent, SLICE_LIT("test-ua/1.0")), 0);
	b->registered_at = time_wall_s();
	b->expires_at = b->registered_at + expires_in;
	b->q = q;
	b->cseq = 1;
	b->flow.tp = NET_UDP;
	addr4(&b->flow.local, "198.18.0.1", 5060);
	addr4(&b->flow.remote, "198.18.7.9", 40000);
	b->behind_nat = true;
}

/* An update that puts one binding. */
static int op_put(struct store_view *v, void *arg)
{
	return store_view_put(v, arg, NULL);
}

/* An update that removes the binding with arg's identity. */
static int op_remove(struct store_view *v, void *arg)
{
	long i = store_view_find(v, arg);
	return i < 0 ? ENOENT : store_view_remove(v, (size_t)i);
}

static int op_clear(struct store_view *v, void *arg)
{
	(void)arg;
	store_view_clear(v);
	return 0;
}

/* Puts a binding, then aborts: nothing may stay behind. */
static int op_put_abort(struct store_view *v, void *arg)
{
	assert_int_equal(store_view_put(v, arg, NULL), 0);
	return EPERM;
}

static int op_nothing(struct store_view *v, void *arg)
{
	(void)v;
	(void)arg;
	return 0;
}

struct done_rec {
	int calls;
	int err;
};

static void done_rec_h(int err, void *arg)
{
	struct done_rec *d = arg;
	d->calls++;
	d->err = err;
}

static int put(struct store *s, const char *aor, const struct store_binding *b)
{
	struct done_rec d = {0};
	int err = store_update(s, slice_cstr(aor), op_put, (void *)b, done_rec_h, &d);
	if (!err) {
		store_flush(s);
		assert_int_equal(d.calls, 1);
		assert_int_equal(d.err, 0);
	} else {
		assert_int_equal(d.calls, 0);
	}
	return err;
}

static size_t lookup_n(struct store *s, const char *aor)
{
	struct store_binding out[8];
	size_t n = 99;
	assert_int_equal(store_lookup(s, slice_cstr(aor), out, 8, &n), 0);
	return n;
}

static char tmpdir[64];

static void db_path(char *buf, size_t len)
{
	snprintf(buf, len, "%s/store.db", tmpdir);
}

static int setup_dir(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof tmpdir, "/tmp/pinhole-store-XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown_dir(void **state)
{
	(void)state;
	static const char *const suffix[] = {"", "-wal", "-shm", "-journal"};
	char p[128];
	for (size_t i = 0; i < ARRAY_SIZE(suffix); i++) {
		snprintf(p, sizeof p, "%s/store.db%s", tmpdir, suffix[i]);
		unlink(p);
	}
	return rmdir(tmpdir);
}

/* ---- cases ---- */

static void test_fields(void **state)
{
	(void)state;
	char aor[STORE_AOR_MAX];
	assert_int_equal(store_aor_canon(SLICE_LIT("Alice@Example.COM"), aor), 0);
	assert_string_equal(aor, "Alice@example.com");
	assert_int_equal(store_aor_canon(SLICE_LIT("EXAMPLE.com"), aor), 0);
	assert_string_equal(aor, "example.com");
	assert_int_equal(store_aor_canon(SLICE_LIT(""), aor), EINVAL);

	char big[STORE_AOR_MAX + 8];
	memset(big, 'a', sizeof big);
	assert_int_equal(store_aor_canon((struct slice){big, STORE_AOR_MAX}, aor), ENAMETOOLONG);

	struct store_binding b;
	memset(&b, 0, sizeof b);
	assert_int_equal(STORE_SET(b.instance, ((struct slice){big, sizeof b.instance})),
			 ENAMETOOLONG);
	assert_int_equal(STORE_SET(b.instance, ((struct slice){big, sizeof b.instance - 1})), 0);

	/* RFC 5626 identity */
	struct store_binding x, y;
	mk(&x, "sip:a@10.0.0.1:5060", 60, 1000);
	mk(&y, "sip:a@10.0.0.2:5060", 60, 1000);
	assert_false(store_binding_same(&x, &y, NULL));
	strcpy(x.instance, "<urn:uuid:1>");
	strcpy(y.instance, "<urn:uuid:1>");
	x.reg_id = y.reg_id = 1;
	assert_true(store_binding_same(&x, &y, NULL));
	y.reg_id = 2;
	assert_false(store_binding_same(&x, &y, NULL));
}

static void binding_equal(const struct store_binding *x, const struct store_binding *y)
{
	assert_int_equal(x->expires_at, y->expires_at);
	assert_int_equal(x->registered_at, y->registered_at);
	assert_int_equal(x->flow.tp, y->flow.tp);
	assert_int_equal(x->flow.listener, y->flow.listener);
	assert_int_equal(x->flow.conn_id, y->flow.conn_id);
	assert_true(net_addr_eq(&x->flow.local, &y->flow.local));
	assert_true(net_addr_eq(&x->flow.remote, &y->flow.remote));
	assert_memory_equal(&x->flow.remote.u.in6, &y->flow.remote.u.in6,
			    net_addr_len(&x->flow.remote));
	assert_int_equal(x->ka.last_sent, y->ka.last_sent);
	assert_int_equal(x->ka.last_answer, y->ka.last_answer);
	assert_int_equal(x->ka.failures, y->ka.failures);
	assert_int_equal(x->ka.unreachable, y->ka.unreachable);
	assert_int_equal(x->cseq, y->cseq);
	assert_int_equal(x->reg_id, y->reg_id);
	assert_int_equal(x->q, y->q);
	assert_int_equal(x->behind_nat, y->behind_nat);
	assert_string_equal(x->contact, y->contact);
	assert_string_equal(x->instance, y->instance);
	assert_string_equal(x->call_id, y->call_id);
	assert_string_equal(x->path, y->path);
	assert_string_equal(x->user_agent, y->user_agent);
}

/* The memory tier keeps bindings packed: every field comes back as it was
 * put, empty and longest strings included, and a binding that an update of
 * its AOR did not touch stays as it was. */
static void test_packed_fields(void **state)
{
	(void)state;
	struct store *s;
	assert_int_equal(store_alloc(&s, NULL), 0);
	struct store_binding a, b, out[4];
	size_t n;
	mk(&a, "sip:pack@[2001:db8::7]:5062;transport=tcp", 3600, 1000);
	a.flow.tp = NET_TCP;
	a.flow.listener = 3;
	a.flow.conn_id = 0x123456789abcULL;
	addr6(&a.flow.local, "2001:db8::1", 5060);
	addr6(&a.flow.remote, "2001:db8::7", 40001);
	a.flow.remote.u.in6.sin6_flowinfo = 0;
	a.flow.remote.u.in6.sin6_scope_id = 0;
	a.ka = (struct store_ka){.last_sent = 11, .last_answer = 12, .failures = 2};
	a.reg_id = 7;
	a.cseq = 99;
	a.behind_nat = false;
	strcpy(a.instance, "<urn:uuid:00000000-0000-1000-8000-000A95A0E128>");
	memset(a.path, 'p', sizeof a.path - 1); /* the longest a field may be */
	a.path[sizeof a.path - 1] = '\0';
	a.user_agent[0] = '\0';
	assert_int_equal(put(s, "pack@example.com", &a), 0);
	assert_int_equal(store_lookup(s, SLICE_LIT("pack@example.com"), out, 4, &n), 0);
	assert_int_equal(n, 1);
	binding_equal(&out[0], &a);
	assert_string_equal(out[0].aor, "pack@example.com");
	uint64_t id_a = out[0].id;

	/* another binding of the AOR: the first one is kept as it was */
	mk(&b, "sip:pack@100.64.0.9", 600, 300);
	assert_int_equal(put(s, "pack@example.com", &b), 0);
	assert_int_equal(store_lookup(s, SLICE_LIT("pack@example.com"), out, 4, &n), 0);
	assert_int_equal(n, 2);
	binding_equal(&out[0], &a);
	assert_int_equal(out[0].id, id_a);
	binding_equal(&out[1], &b);

	/* keepalive state set by contact reaches only that binding */
	struct store_ka ka = {
	    .last_sent = 21, .last_answer = 0, .failures = 3, .unreachable = true};
	assert_int_equal(
	    store_ka_set_contact(s, SLICE_LIT("pack@example.com"), slice_cstr(b.contact), &ka), 0);
	assert_int_equal(store_lookup(s, SLICE_LIT("pack@example.com"), out, 4, &n), 0);
	b.ka = ka;
	binding_equal(&out[0], &a);
	binding_equal(&out[1], &b);
	store_free(s);
}

static void test_add_refresh_remove(void **state)
{
	(void)state;
	struct store *s;
	assert_int_equal(store_alloc(&s, NULL), 0);

	struct store_binding a, b, out[4];
	size_t n;
	mk(&a, "sip:alice@100.64.0.2:5060", 3600, 500);
	mk(&b, "sip:alice@100.64.0.3:5062", 3600, 900);
	assert_int_equal(put(s, "alice@Example.com", &a), 0);
	assert_int_equal(put(s, "alice@example.com", &b), 0);

	assert_int_equal(store_lookup(s, SLICE_LIT("alice@example.com"), out, 4, &n), 0);
	assert_int_equal(n, 2);
	/* best first: q 900 before q 500 */
	assert_string_equal(out[0].contact, b.contact);
	assert_string_equal(out[1].contact, a.contact);
	assert_string_equal(out[0].aor, "alice@example.com");
	uint64_t id_a = out[1].id;
	assert_true(id_a != 0 && out[0].id != id_a);

	/* refresh: same contact, new expiry and cseq; same id */
	a.cseq = 2;
	a.expires_at += 100;
	assert_int_equal(put(s, "alice@example.com", &a), 0);
	assert_int_equal(store_lookup(s, SLICE_LIT("alice@example.com"), out, 4, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(out[1].id, id_a);
	assert_int_equal(out[1].cseq, 2);
	assert_int_equal(out[1].expires_at, a.expires_at);

	/* ENOBUFS keeps the best */
	assert_int_equal(store_lookup(s, SLICE_LIT("alice@example.com"), out, 1, &n), ENOBUFS);
	assert_int_equal(n, 1);
	assert_string_equal(out[0].contact, b.contact);

	/* abort leaves nothing, and done is not called */
	struct store_binding c;
	mk(&c, "sip:alice@100.64.0.4", 3600, 1000);
	struct done_rec d = {0};
	assert_int_equal(
	    store_update(s, SLICE_LIT("alice@example.com"), op_put_abort, &c, done_rec_h, &d),
	    EPERM);
	assert_int_equal(d.calls, 0);
	assert_int_equal(lookup_n(s, "alice@example.com"), 2);

	/* no change: done right away with 0 */
	assert_int_equal(
	    store_update(s, SLICE_LIT("alice@example.com"), op_nothing, NULL, done_rec_h, &d), 0);
	assert_int_equal(d.calls, 1);
	assert_int_equal(d.err, 0);

	/* remove one */
	assert_int_equal(store_update(s, SLICE_LIT("alice@example.com"), op_remove, &a, NULL, NULL),
			 0);
	assert_int_equal(lookup_n(s, "alice@example.com"), 1);
	assert_int_equal(store_update(s, SLICE_LIT("alice@example.com"), op_remove, &a, NULL, NULL),
			 ENOENT);

	/* RFC 5626: same instance and reg-id, new contact replaces */
	struct store_binding o1, o2;
	mk(&o1, "sip:bob@100.64.0.9:1111;ob", 3600, 1000);
	strcpy(o1.instance, "<urn:uuid:00000000-0000-1000-8000-000A95A0E128>");
	o1.reg_id = 1;
	o2 = o1;
	strcpy(o2.contact, "sip:bob@100.64.0.9:2222;ob");
	assert_int_equal(put(s, "bob@example.com", &o1), 0);
	assert_int_equal(put(s, "bob@example.com", &o2), 0);
	assert_int_equal(store_lookup(s, SLICE_LIT("bob@example.com"), out, 4, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(out[0].contact, o2.contact);
	/* reg-id 2 is a second flow of the same instance */
	o2.reg_id = 2;
	assert_int_equal(put(s, "bob@example.com", &o2), 0);
	assert_int_equal(lookup_n(s, "bob@example.com"), 2);

	struct store_stats st;
	store_stats_get(s, &st);
	assert_int_equal(st.bindings, 3);
	assert_int_equal(st.aors, 2);
	assert_int_equal(st.commits, 0); /* memory only */

	/* Contact: * */
	assert_int_equal(store_update(s, SLICE_LIT("bob@example.com"), op_clear, NULL, NULL, NULL),
			 0);
	assert_int_equal(lookup_n(s, "bob@example.com"), 0);
	store_stats_get(s, &st);
	assert_int_equal(st.bindings, 1);
	assert_int_equal(st.aors, 1);

	/* bad input */
	struct store_binding bad;
	mk(&bad, "", 60, 0);
	assert_int_equal(put(s, "x@example.com", &bad), EINVAL);
	mk(&bad, "sip:x@h", 60, 1001);
	assert_int_equal(put(s, "x@example.com", &bad), EINVAL);
	assert_int_equal(store_update(s, SLICE_LIT(""), op_put, &a, NULL, NULL), EINVAL);

	struct metric *m = metric_find("store_bindings", NULL);
	assert_non_null(m);
	store_free(s);
}

static void test_max_per_aor(void **state)
{
	(void)state;
	struct store *s;
	struct store_conf conf = {.max_per_aor = 3, .shards = 1};
	assert_int_equal(store_alloc(&s, &conf), 0);
	char c[64];
	struct store_binding b;
	for (int i = 0; i < 3; i++) {
		snprintf(c, sizeof c, "sip:u@10.0.0.%d", i + 1);
		mk(&b, c, 60, 0);
		assert_int_equal(put(s, "u@h", &b), 0);
	}
	mk(&b, "sip:u@10.0.0.99", 60, 0);
	assert_int_equal(put(s, "u@h", &b), ENOSPC);
	assert_int_equal(lookup_n(s, "u@h"), 3);
	store_free(s);
}

static void test_expiry(void **state)
{
	(void)state;
	struct store *s;
	assert_int_equal(store_alloc(&s, NULL), 0);
	struct store_binding live, dead;
	mk(&live, "sip:carol@10.0.0.1", 3600, 0);
	mk(&dead, "sip:carol@10.0.0.2", -5, 0);
	assert_int_equal(put(s, "carol@example.com", &live), 0);
	assert_int_equal(put(s, "carol@example.com", &dead), 0);
	mk(&dead, "sip:dave@10.0.0.3", -5, 0);
	assert_int_equal(put(s, "dave@example.com", &dead), 0);

	/* expired bindings are invisible before the purge... */
	assert_int_equal(lookup_n(s, "carol@example.com"), 1);
	assert_int_equal(lookup_n(s, "dave@example.com"), 0);
	struct store_stats st;
	store_stats_get(s, &st);
	assert_int_equal(st.bindings, 3);

	/* ...and gone after it */
	size_t removed = 0;
	assert_int_equal(store_expire(s, time_wall_s(), &removed), 0);
	assert_int_equal(removed, 2);
	store_stats_get(s, &st);
	assert_int_equal(st.bindings, 1);
	assert_int_equal(st.aors, 1);

	/* a later expiry time takes the last one */
	assert_int_equal(store_expire(s, time_wall_s() + 7200, &removed), 0);
	assert_int_equal(removed, 1);
	store_stats_get(s, &st);
	assert_int_equal(st.bindings, 0);
	assert_int_equal(st.aors, 0);
	store_free(s);
}

struct ka_ctx {
	struct store *s;
	int visited;
};

static int ka_visit(const struct store_binding *b, void *arg)
{
	struct ka_ctx *k = arg;
	k->visited++;
	struct store_ka ka = b->ka;
	ka.last_sent = 1000;
	ka.failures++;
	/* calling back into the store from a visit must not deadlock */
	assert_int_equal(store_ka_set(k->s, slice_cstr(b->aor), b->id, &ka), 0);
	return 0;
}

static void test_foreach_ka(void **state)
{
	(void)state;
	struct store *s;
	struct store_conf conf = {.shards = 4};
	assert_int_equal(store_alloc(&s, &conf), 0);
	char aor[32];
	struct store_binding b;
	for (int i = 0; i < 50; i++) {
		snprintf(aor, sizeof aor, "u%d@example.com", i);
		mk(&b, "sip:u@100.64.1.1:5060", 600, 0);
		assert_int_equal(put(s, aor, &b), 0);
	}
	struct ka_ctx k = {.s = s};
	assert_int_equal(store_foreach(s, ka_visit, &k), 0);
	assert_int_equal(k.visited, 50);

	struct store_binding out[2];
	size_t n;
	assert_int_equal(store_lookup(s, SLICE_LIT("u7@example.com"), out, 2, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(out[0].ka.last_sent, 1000);
	assert_int_equal(out[0].ka.failures, 1);

	struct store_ka ka = {.last_answer = 2000, .unreachable = true, .failures = 3};
	assert_int_equal(store_ka_set_contact(s, SLICE_LIT("u7@example.com"),
					      SLICE_LIT("sip:u@100.64.1.1:5060"), &ka),
			 0);
	assert_int_equal(
	    store_ka_set_contact(s, SLICE_LIT("u7@example.com"), SLICE_LIT("sip:nobody@x"), &ka),
	    ENOENT);
	assert_int_equal(store_ka_set(s, SLICE_LIT("u7@example.com"), 999999, &ka), ENOENT);
	/* unreachable bindings are returned, flagged */
	assert_int_equal(store_lookup(s, SLICE_LIT("u7@example.com"), out, 2, &n), 0);
	assert_int_equal(n, 1);
	assert_true(out[0].ka.unreachable);
	assert_int_equal(out[0].ka.last_answer, 2000);
	store_free(s);
}

/* ---- threads ---- */

#define THREADS 4
#define ROUNDS 2000

struct thr {
	struct store *s;
	int idx;
	bool durable; /* a lookup sees a binding only once committed */
	_Atomic int *dones;
};

static void done_count_h(int err, void *arg)
{
	_Atomic int *dones = arg;
	/* runs on the writer thread, where a cmocka assert cannot unwind: an error
	 * spoils the count instead */
	atomic_fetch_add(dones, err ? 1000000 : 1);
}

/* Read-modify-write: cseq of the one "counter" binding goes up by one. */
static int op_incr(struct store_view *v, void *arg)
{
	(void)arg;
	struct store_binding b;
	if (store_view_count(v)) {
		b = *store_view_get(v, 0);
	} else {
		mk(&b, "sip:counter@h", 3600, 0);
		b.cseq = 0;
	}
	b.cseq++;
	return store_view_put(v, &b, NULL);
}

static void *thr_main(void *arg)
{
	struct thr *t = arg;
	char aor[32], contact[64];
	struct store_binding b;
	for (int i = 0; i < ROUNDS; i++) {
		/* an AOR of its own, one shared by all, and the shared counter */
		snprintf(aor, sizeof aor, "t%d-%d@example.com", t->idx, i % 50);
		snprintf(contact, sizeof contact, "sip:x@10.0.%d.%d", t->idx, i % 3);
		mk(&b, contact, 600, 0);
		if (store_update(t->s, slice_cstr(aor), op_put, &b, done_count_h, t->dones))
			return "put own";
		snprintf(contact, sizeof contact, "sip:t%d@10.1.0.1", t->idx);
		mk(&b, contact, 600, 0);
		if (store_update(t->s, SLICE_LIT("shared@example.com"), op_put, &b, done_count_h,
				 t->dones))
			return "put shared";
		if (store_update(t->s, SLICE_LIT("counter@example.com"), op_incr, NULL,
				 done_count_h, t->dones))
			return "incr";
		struct store_binding out[8];
		size_t n;
		if (store_lookup(t->s, SLICE_LIT("shared@example.com"), out, 8, &n) ||
		    (n < 1 && !t->durable) || n > THREADS)
			return "lookup";
	}
	return NULL;
}

static void run_threads(struct store *s, bool durable, _Atomic int *dones)
{
	pthread_t th[THREADS];
	struct thr t[THREADS];
	for (int i = 0; i < THREADS; i++) {
		t[i] = (struct thr){.s = s, .idx = i, .dones = dones, .durable = durable};
		assert_int_equal(pthread_create(&th[i], NULL, thr_main, &t[i]), 0);
	}
	for (int i = 0; i < THREADS; i++) {
		void *ret;
		pthread_join(th[i], &ret);
		if (ret)
			fail_msg("thread %d: %s", i, (const char *)ret);
	}
}

static void check_after_threads(struct store *s)
{
	struct store_binding out[8];
	size_t n;
	assert_int_equal(store_lookup(s, SLICE_LIT("shared@example.com"), out, 8, &n), 0);
	assert_int_equal(n, THREADS);
	assert_int_equal(store_lookup(s, SLICE_LIT("counter@example.com"), out, 8, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(out[0].cseq, THREADS * ROUNDS);
	assert_int_equal(lookup_n(s, "t2-17@example.com"), 3);
	struct store_stats st;
	store_stats_get(s, &st);
	assert_int_equal(st.aors, 2 + THREADS * 50);
	assert_int_equal(st.bindings, 1 + THREADS + THREADS * 50 * 3);
	assert_int_equal(st.bindings_latest, st.bindings); /* max_bindings' count */
}

static void test_threads_memory(void **state)
{
	(void)state;
	struct store *s;
	struct store_conf conf = {.shards = 8};
	assert_int_equal(store_alloc(&s, &conf), 0);
	_Atomic int dones = 0;
	run_threads(s, false, &dones);
	assert_int_equal(dones, THREADS * ROUNDS * 3);
	check_after_threads(s);
	store_free(s);
}

static void test_group_commit(void **state)
{
	(void)state;
	char path[128];
	db_path(path, sizeof path);
	struct store *s;
	/* NORMAL keeps the test quick on slow disks; FULL is covered by the crash test */
	struct store_conf conf = {.path = path, .sync = STORE_SYNC_NORMAL};
	assert_int_equal(store_alloc(&s, &conf), 0);
	_Atomic int dones = 0;
	run_threads(s, true, &dones);
	assert_int_equal(store_flush(s), 0);
	assert_int_equal(dones, THREADS * ROUNDS * 3);
	struct store_stats st;
	store_stats_get(s, &st);
	/* updates arriving while a COMMIT is in flight share the next one */
	assert_true(st.commits < (uint64_t)THREADS * ROUNDS * 3);
	assert_true(st.commit_rows >= (uint64_t)THREADS * ROUNDS * 3);
	assert_int_equal(st.pending, 0);
	assert_int_equal(st.commit_errors, 0);
	print_message("group commit: %d updates, %llu commits, %llu rows\n", THREADS * ROUNDS * 3,
		      (unsigned long long)st.commits, (unsigned long long)st.commit_rows);
	check_after_threads(s);
	store_free(s);

	/* everything is back after a restart */
	assert_int_equal(store_alloc(&s, &conf), 0);
	check_after_threads(s);
	store_free(s);
	teardown_dir(NULL);
	setup_dir(NULL);
}

static void test_kick_explicit(void **state)
{
	(void)state;
	char path[128];
	db_path(path, sizeof path);
	struct store *s;
	struct store_conf conf = {.path = path, .kick_explicit = true};
	assert_int_equal(store_alloc(&s, &conf), 0);
	struct store_stats st0, st;
	store_stats_get(s, &st0);

	/* one "loop turn": 100 REGISTERs, then the turn-end kick */
	_Atomic int dones = 0;
	char aor[32];
	struct store_binding b;
	for (int i = 0; i < 100; i++) {
		snprintf(aor, sizeof aor, "k%d@example.com", i);
		mk(&b, "sip:k@10.9.9.9", 600, 0);
		assert_int_equal(store_update(s, slice_cstr(aor), op_put, &b, done_count_h, &dones),
				 0);
	}
	store_kick(s);
	assert_int_equal(store_flush(s), 0);
	assert_int_equal(dones, 100);
	store_stats_get(s, &st);
	/* one transaction, or two if the 5 ms safety net fired mid-turn */
	assert_true(st.commits - st0.commits <= 2);
	assert_int_equal(st.commit_rows - st0.commit_rows, 100);
	store_free(s);
	teardown_dir(NULL);
	setup_dir(NULL);
}

static bool addr_same(const struct net_addr *a, const struct net_addr *b)
{
	if (a->u.sa.sa_family != b->u.sa.sa_family)
		return false;
	if (a->u.sa.sa_family == AF_INET)
		return a->u.in.sin_port == b->u.in.sin_port &&
		       a->u.in.sin_addr.s_addr == b->u.in.sin_addr.s_addr;
	return a->u.in6.sin6_port == b->u.in6.sin6_port &&
	       memcmp(&a->u.in6.sin6_addr, &b->u.in6.sin6_addr, 16) == 0 &&
	       a->u.in6.sin6_scope_id == b->u.in6.sin6_scope_id;
}

static void test_persistence(void **state)
{
	(void)state;
	char path[128];
	db_path(path, sizeof path);
	struct store *s;
	struct store_conf bad = {.path = "/nonexistent-pinhole-dir/x.db"};
	assert_int_equal(store_alloc(&s, &bad), EIO);
	struct store_conf conf = {.path = path};
	assert_int_equal(store_alloc(&s, &conf), 0);

	struct store_binding u, t, gone, old;
	mk(&u, "sip:erin@100.64.3.3:5060", 3600, 700);
	strcpy(u.instance, "<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>");
	u.reg_id = 1;
	u.cseq = 42;
	strcpy(u.path, "<sip:token@edge.example.com;lr;ob>");
	u.flow.listener = 2;
	addr4(&u.flow.remote, "198.18.44.5", 61234);

	mk(&t, "sip:erin@[fd00::5]:5060;transport=tcp", 3600, 1000);
	t.flow.tp = NET_TCP;
	t.flow.conn_id = 77;
	addr6(&t.flow.local, "2001:db8::1", 5060);
	addr6(&t.flow.remote, "fe80::1234", 50000);
	t.flow.remote.u.in6.sin6_scope_id = 3;
	t.ka.last_answer = 5;

	mk(&gone, "sip:erin@100.64.3.4", 3600, 0);
	mk(&old, "sip:frank@100.64.3.5", 1, 0);

	assert_int_equal(put(s, "erin@example.com", &u), 0);
	assert_int_equal(put(s, "erin@example.com", &t), 0);
	assert_int_equal(put(s, "erin@example.com", &gone), 0);
	assert_int_equal(put(s, "frank@example.com", &old), 0);
	struct done_rec d = {0};
	assert_int_equal(
	    store_update(s, SLICE_LIT("erin@example.com"), op_remove, &gone, done_rec_h, &d), 0);
	assert_int_equal(store_flush(s), 0);
	assert_int_equal(d.calls, 1);
	assert_int_equal(d.err, 0);
	struct store_binding before[4];
	size_t n;
	assert_int_equal(store_lookup(s, SLICE_LIT("erin@example.com"), before, 4, &n), 0);
	assert_int_equal(n, 2);
	store_free(s);

	/* frank's binding has expired by the reopen: the load purges it */
	sleep(2);
	assert_int_equal(store_alloc(&s, &conf), 0);
	struct store_binding out[4];
	assert_int_equal(store_lookup(s, SLICE_LIT("erin@example.com"), out, 4, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(lookup_n(s, "frank@example.com"), 0);

	/* q 1000 (t) first */
	assert_string_equal(out[0].contact, t.contact);
	assert_int_equal(out[0].id, before[0].id);
	assert_int_equal(out[0].flow.tp, NET_TCP);
	assert_int_equal(out[0].flow.conn_id, 0); /* connection ids are per process */
	assert_true(addr_same(&out[0].flow.local, &t.flow.local));
	assert_true(addr_same(&out[0].flow.remote, &t.flow.remote));
	assert_int_equal(out[0].ka.last_answer, 5);

	assert_string_equal(out[1].contact, u.contact);
	assert_string_equal(out[1].aor, "erin@example.com");
	assert_string_equal(out[1].instance, u.instance);
	assert_int_equal(out[1].reg_id, 1);
	assert_int_equal(out[1].q, 700);
	assert_int_equal(out[1].cseq, 42);
	assert_string_equal(out[1].call_id, u.call_id);
	assert_string_equal(out[1].path, u.path);
	assert_string_equal(out[1].user_agent, u.user_agent);
	assert_int_equal(out[1].expires_at, u.expires_at);
	assert_int_equal(out[1].registered_at, u.registered_at);
	assert_true(out[1].behind_nat);
	assert_int_equal(out[1].flow.tp, NET_UDP);
	assert_int_equal(out[1].flow.listener, 2);
	assert_true(addr_same(&out[1].flow.local, &u.flow.local));
	assert_true(addr_same(&out[1].flow.remote, &u.flow.remote));

	/* new ids do not reuse old ones */
	struct store_binding g2;
	mk(&g2, "sip:gina@10.0.0.1", 60, 0);
	assert_int_equal(put(s, "gina@example.com", &g2), 0);
	assert_int_equal(store_lookup(s, SLICE_LIT("gina@example.com"), out, 4, &n), 0);
	assert_true(out[0].id > before[0].id && out[0].id > before[1].id);

	struct store_stats st;
	store_stats_get(s, &st);
	assert_int_equal(st.bindings, 3);
	store_free(s);
	teardown_dir(NULL);
	setup_dir(NULL);
}

/* ---- kill -9 ---- */

#define CRASH_N 20000
#define CRASH_KILL_AFTER 300

struct crash_ack {
	int fd;
	int i;
};

static void crash_done(int err, void *arg)
{
	struct crash_ack *a = arg;
	/* acknowledged only when committed: this is the 200 OK */
	if (!err && write(a->fd, &a->i, sizeof a->i) != sizeof a->i)
		_exit(3);
	free(a);
}

static void crash_child(const char *path, int fd)
{
	struct store *s;
	struct store_conf conf = {.path = path, .sync = STORE_SYNC_FULL};
	if (store_alloc(&s, &conf))
		_exit(2);
	char aor[32];
	struct store_binding b;
	for (int i = 0; i < CRASH_N; i++) {
		snprintf(aor, sizeof aor, "crash%d@example.com", i);
		memset(&b, 0, sizeof b);
		snprintf(b.contact, sizeof b.contact, "sip:c%d@100.64.9.9:5060", i);
		b.expires_at = time_wall_s() + 3600;
		b.flow.tp = NET_UDP;
		b.flow.remote.u.in.sin_family = AF_INET;
		b.flow.remote.u.in.sin_port = htons((uint16_t)(1024 + i % 60000));
		struct crash_ack *a = malloc(sizeof *a);
		if (!a)
			_exit(4);
		*a = (struct crash_ack){fd, i};
		if (store_update(s, slice_cstr(aor), op_put, &b, crash_done, a))
			_exit(5);
		/* a registrar has a bounded number of REGISTERs in flight */
		if (i % 64 == 63)
			store_flush(s);
	}
	store_free(s);
	_exit(0);
}

static void test_crash(void **state)
{
	(void)state;
	char path[128];
	db_path(path, sizeof path);
	int p[2];
	assert_int_equal(pipe(p), 0);
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(p[0]);
		crash_child(path, p[1]);
	}
	close(p[1]);

	static bool acked[CRASH_N];
	memset(acked, 0, sizeof acked);
	int nacked = 0, i;
	bool killed = false;
	while (read(p[0], &i, sizeof i) == sizeof i) {
		assert_true(i >= 0 && i < CRASH_N);
		acked[i] = true;
		nacked++;
		if (nacked == CRASH_KILL_AFTER) {
			kill(pid, SIGKILL);
			killed = true;
		}
	}
	/* the pipe drains what the child wrote before it died */
	close(p[0]);
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(killed);
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	print_message("crash: %d bindings acknowledged before kill -9\n", nacked);

	struct store *s;
	struct store_conf conf = {.path = path};
	assert_int_equal(store_alloc(&s, &conf), 0);
	char aor[32];
	int present = 0;
	for (i = 0; i < CRASH_N; i++) {
		snprintf(aor, sizeof aor, "crash%d@example.com", i);
		struct store_binding out[2];
		size_t n;
		assert_int_equal(store_lookup(s, slice_cstr(aor), out, 2, &n), 0);
		if (acked[i]) {
			if (n != 1)
				fail_msg("acknowledged %s lost", aor);
			assert_int_equal(ntohs(out[0].flow.remote.u.in.sin_port), 1024 + i % 60000);
		}
		present += (int)n;
	}
	assert_true(present >= nacked);
	store_free(s);
	teardown_dir(NULL);
	setup_dir(NULL);
}

/* ---- credentials ---- */

static struct store_cred_entry entry(const char *md5)
{
	struct store_cred_entry e;
	memset(&e, 0, sizeof e);
	snprintf(e.ha1[STORE_CRED_MD5], sizeof e.ha1[0], "%s", md5);
	return e;
}

static void test_cred(void **state)
{
	(void)state;
	struct store_cred *c;
	assert_int_equal(store_cred_alloc(&c), 0);
	assert_int_equal(store_cred_count(c), 0); /* no users: nothing is authenticated */
	struct store_cred_entry e, a1 = entry("0123456789abcdef0123456789abcdef"),
				   a2 = entry("fedcba9876543210fedcba9876543210");
	assert_int_equal(store_cred_lookup(c, SLICE_LIT("alice"), SLICE_LIT("example.com"), &e),
			 ENOENT);
	assert_int_equal(store_cred_set(c, SLICE_LIT("alice"), SLICE_LIT("example.com"), &a1), 0);
	assert_int_equal(store_cred_set(c, SLICE_LIT("bob"), SLICE_LIT("example.com"), &a2), 0);
	assert_int_equal(store_cred_count(c), 2);
	assert_int_equal(store_cred_lookup(c, SLICE_LIT("alice"), SLICE_LIT("EXAMPLE.com"), &e), 0);
	assert_string_equal(e.ha1[STORE_CRED_MD5], a1.ha1[STORE_CRED_MD5]);
	assert_string_equal(e.ha1[STORE_CRED_SHA256], "");
	assert_int_equal(store_cred_lookup(c, SLICE_LIT("Alice"), SLICE_LIT("example.com"), &e),
			 ENOENT);
	/* replace */
	assert_int_equal(store_cred_set(c, SLICE_LIT("alice"), SLICE_LIT("example.com"), &a2), 0);
	assert_int_equal(store_cred_count(c), 2);
	assert_int_equal(store_cred_lookup(c, SLICE_LIT("alice"), SLICE_LIT("example.com"), &e), 0);
	assert_string_equal(e.ha1[STORE_CRED_MD5], a2.ha1[STORE_CRED_MD5]);
	assert_int_equal(store_cred_set(c, SLICE_LIT(""), SLICE_LIT("r"), &a1), EINVAL);
	struct store_cred_entry none = entry("");
	assert_int_equal(store_cred_set(c, SLICE_LIT("z"), SLICE_LIT("r"), &none), EINVAL);
	char big[200];
	memset(big, 'x', sizeof big);
	assert_int_equal(store_cred_set(c, SLICE_LIT("z"), ((struct slice){big, sizeof big}), &a1),
			 ENAMETOOLONG);
	assert_int_equal(store_cred_del(c, SLICE_LIT("alice"), SLICE_LIT("example.com")), 0);
	assert_int_equal(store_cred_del(c, SLICE_LIT("alice"), SLICE_LIT("example.com")), ENOENT);
	assert_int_equal(store_cred_count(c), 1);
	store_cred_free(c);
}

/* Many users: a lookup walks a chain of a few entries, however many users
 * there are. (A fixed table of 256 buckets made the chains about 80 long at
 * 20,000 users, and an unknown user name, which anyone can send, walked a
 * whole one on every request.) */
static void test_cred_many(void **state)
{
	(void)state;
	enum { USERS = 20000 };
	struct store_cred *c;
	assert_int_equal(store_cred_alloc(&c), 0);
	struct store_cred_entry e, a = entry("0123456789abcdef0123456789abcdef");
	char u[32];
	for (int i = 0; i < USERS; i++) {
		snprintf(u, sizeof u, "u%d", i);
		assert_int_equal(store_cred_set(c, slice_cstr(u), SLICE_LIT("example.com"), &a), 0);
	}
	assert_int_equal(store_cred_count(c), USERS);
	assert_true(store_cred_chain_max(c) <= 16);
	for (int i = 0; i < USERS; i += 7) {
		snprintf(u, sizeof u, "u%d", i);
		assert_int_equal(store_cred_lookup(c, slice_cstr(u), SLICE_LIT("EXAMPLE.COM"), &e),
				 0);
	}
	assert_int_equal(store_cred_lookup(c, SLICE_LIT("nobody"), SLICE_LIT("example.com"), &e),
			 ENOENT);
	for (int i = 0; i < USERS; i += 2) {
		snprintf(u, sizeof u, "u%d", i);
		assert_int_equal(store_cred_del(c, slice_cstr(u), SLICE_LIT("example.com")), 0);
	}
	assert_int_equal(store_cred_count(c), USERS / 2);
	assert_int_equal(store_cred_lookup(c, SLICE_LIT("u1"), SLICE_LIT("example.com"), &e), 0);
	assert_int_equal(store_cred_lookup(c, SLICE_LIT("u2"), SLICE_LIT("example.com"), &e),
			 ENOENT);
	store_cred_free(c);
}

static int count_user(const char *user, const char *realm, const struct store_cred_entry *e,
		      void *arg)
{
	(void)realm;
	(void)e;
	if (strcmp(user, "carol") == 0)
		++*(int *)arg;
	return 0;
}

/* Another process (another connection) adds, changes and deletes users in the
 * file; the server's store sees each change at its next sync, and the binding
 * store's commits to the same file do not make it reload. */
static void test_cred_sqlite_reload(void **state)
{
	(void)state;
	char path[128];
	db_path(path, sizeof path);
	struct store *s;
	struct store_conf sc = {.path = path};
	assert_int_equal(store_alloc(&s, &sc), 0);
	struct store_cred *srv, *cli;
	assert_int_equal(store_cred_open(&srv, path, 0), 0);
	assert_int_equal(store_cred_count(srv), 0);
	assert_int_equal(store_cred_open(&cli, path, 0), 0);
	struct store_cred_entry e, a1 = entry("0123456789abcdef0123456789abcdef"),
				   a2 = entry("fedcba9876543210fedcba9876543210");
	assert_int_equal(store_cred_set(cli, SLICE_LIT("carol"), SLICE_LIT("Example.com"), &a1), 0);
	bool reloaded = false;
	assert_int_equal(store_cred_sync(srv, &reloaded), 0);
	assert_true(reloaded);
	assert_int_equal(store_cred_lookup(srv, SLICE_LIT("carol"), SLICE_LIT("example.com"), &e), 0);
	assert_string_equal(e.ha1[STORE_CRED_MD5], a1.ha1[STORE_CRED_MD5]);
	/* a binding commit moves data_version, not the credential counter */
	struct store_binding b;
	memset(&b, 0, sizeof b);
	strcpy(b.contact, "sip:x@10.0.0.1");
	b.expires_at = time_wall_s() + 300;
	assert_int_equal(store_update(s, SLICE_LIT("x@example.com"), op_put, &b, NULL, NULL), 0);
	assert_int_equal(store_flush(s), 0);
	assert_int_equal(store_cred_sync(srv, &reloaded), 0);
	assert_false(reloaded);
	/* a password change, then a delete */
	assert_int_equal(store_cred_set(cli, SLICE_LIT("carol"), SLICE_LIT("example.com"), &a2), 0);
	assert_int_equal(store_cred_sync(srv, &reloaded), 0);
	assert_true(reloaded);
	assert_int_equal(store_cred_lookup(srv, SLICE_LIT("carol"), SLICE_LIT("example.com"), &e), 0);
	assert_string_equal(e.ha1[STORE_CRED_MD5], a2.ha1[STORE_CRED_MD5]);
	int n = 0;
	assert_int_equal(store_cred_foreach(cli, count_user, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(store_cred_del(cli, SLICE_LIT("carol"), SLICE_LIT("EXAMPLE.COM")), 0);
	assert_int_equal(store_cred_del(cli, SLICE_LIT("carol"), SLICE_LIT("example.com")), ENOENT);
	assert_int_equal(store_cred_sync(srv, &reloaded), 0);
	assert_true(reloaded);
	assert_int_equal(store_cred_count(srv), 0);
	store_cred_free(cli);
	store_cred_free(srv);
	store_free(s);
	teardown_dir(NULL);
	setup_dir(NULL);
}

/* The watcher thread does the same by itself within its interval. */
static void test_cred_watcher(void **state)
{
	(void)state;
	char path[128];
	db_path(path, sizeof path);
	struct store_cred *srv, *cli;
	assert_int_equal(store_cred_open(&srv, path, 20), 0);
	assert_int_equal(store_cred_open(&cli, path, 0), 0);
	struct store_cred_entry a1 = entry("0123456789abcdef0123456789abcdef");
	assert_int_equal(store_cred_set(cli, SLICE_LIT("dave"), SLICE_LIT("example.com"), &a1), 0);
	/* waits for an event, not a duration: up to 5 s of 10 ms polls */
	for (int i = 0; i < 500 && store_cred_count(srv) == 0; i++)
		usleep(10000);
	assert_int_equal(store_cred_count(srv), 1);
	store_cred_free(cli);
	store_cred_free(srv);
	teardown_dir(NULL);
	setup_dir(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_fields),	   cmocka_unit_test(test_add_refresh_remove),
	    cmocka_unit_test(test_packed_fields),  cmocka_unit_test(test_max_per_aor),
	    cmocka_unit_test(test_expiry),	   cmocka_unit_test(test_foreach_ka),
	    cmocka_unit_test(test_threads_memory), cmocka_unit_test(test_group_commit),
	    cmocka_unit_test(test_kick_explicit),  cmocka_unit_test(test_persistence),
	    cmocka_unit_test(test_crash),	   cmocka_unit_test(test_cred),
	    cmocka_unit_test(test_cred_many),	   cmocka_unit_test(test_cred_sqlite_reload),
	    cmocka_unit_test(test_cred_watcher),
	};
	return cmocka_run_group_tests_name("store", tests, setup_dir, teardown_dir);
}
