/* Location store when COMMITs fail (disk full): memory holds only what is committed, logs stay
 * short. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cmocka.h>

#include "store/store.h"

static char tmpdir[64], path[128];

static int setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof tmpdir, "/tmp/pinhole-commit-XXXXXX");
	if (!mkdtemp(tmpdir))
		return -1;
	snprintf(path, sizeof path, "%s/store.db", tmpdir);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	static const char *const suffix[] = {"", "-wal", "-shm", "-journal"};
	char p[160];
	for (size_t i = 0; i < sizeof suffix / sizeof suffix[0]; i++) {
		snprintf(p, sizeof p, "%s%s", path, suffix[i]);
		unlink(p);
	}
	return rmdir(tmpdir);
}

/* ---- a disk that is full: RLIMIT_FSIZE 0 makes every file write fail
 * (EFBIG), as ENOSPC would, without root or a small filesystem ---- */

static struct rlimit saved_fsize;

static void disk_full(void)
{
	signal(SIGXFSZ, SIG_IGN); /* else the first write kills the process */
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &saved_fsize), 0);
	struct rlimit full = saved_fsize;
	full.rlim_cur = 0;
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &full), 0);
}

static void disk_freed(void)
{
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &saved_fsize), 0);
}

/* stderr into a pipe, to count log lines (a pipe: the full "disk" would
 * refuse a file) */
static int saved_stderr = -1, log_pipe[2];

static void log_capture(void)
{
	fflush(stderr);
	assert_int_equal(pipe(log_pipe), 0);
	fcntl(log_pipe[0], F_SETFL, O_NONBLOCK);
	saved_stderr = dup(2);
	dup2(log_pipe[1], 2);
}

/* Restores stderr; returns the lines logged by role "store" and echoes them. */
static int log_release(void)
{
	fflush(stderr);
	dup2(saved_stderr, 2);
	close(saved_stderr);
	close(log_pipe[1]);
	static char text[65536];
	ssize_t n = read(log_pipe[0], text, sizeof text - 1);
	close(log_pipe[0]);
	text[n > 0 ? n : 0] = '\0';
	fputs(text, stderr);
	int lines = 0;
	for (const char *p = strstr(text, " store: "); p; p = strstr(p + 1, " store: "))
		lines++;
	return lines;
}

/* ---- updates ---- */

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

static void mk(struct store_binding *b, const char *contact, int64_t expires_in)
{
	memset(b, 0, sizeof *b);
	snprintf(b->contact, sizeof b->contact, "%s", contact);
	snprintf(b->call_id, sizeof b->call_id, "cid-%s", contact);
	b->expires_at = time_wall_s() + expires_in;
	b->registered_at = time_wall_s();
	b->q = 1000;
	b->flow.tp = NET_UDP;
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

/* How many bindings the update callback sees (what the next REGISTER builds on). */
static int op_count(struct store_view *v, void *arg)
{
	*(size_t *)arg = store_view_count(v);
	return 0;
}

/* Puts (or removes) and waits for the commit; returns done's error. */
static int update(struct store *s, const char *aor, store_update_h *op, struct store_binding *b)
{
	struct done_rec d = {0};
	assert_int_equal(store_update(s, slice_cstr(aor), op, b, done_rec_h, &d), 0);
	store_flush(s);
	assert_int_equal(d.calls, 1);
	return d.err;
}

static size_t lookup_n(struct store *s, const char *aor, struct store_binding *out)
{
	struct store_binding tmp[8];
	size_t n = 99;
	assert_int_equal(store_lookup(s, slice_cstr(aor), out ? out : tmp, 8, &n), 0);
	return n;
}

static size_t view_n(struct store *s, const char *aor)
{
	size_t n = 99;
	assert_int_equal(store_update(s, slice_cstr(aor), op_count, &n, NULL, NULL), 0);
	return n;
}

/* With the disk full a REGISTER gets 500 (done reports the error), and:
 * a new binding must not be routed (it used to stay in memory and take
 * calls although no restart would bring it back), a removal must not take
 * effect (the removed binding used to vanish from memory and come back at
 * the next start), and the next update builds on the committed state. The
 * failures are logged once for the burst, not once per batch (it used to
 * be a line per failed transaction, plus the registrar's per REGISTER). */
static void test_disk_full(void **state)
{
	(void)state;
	struct store *s;
	struct store_conf conf = {.path = path, .sync = STORE_SYNC_NORMAL};
	assert_int_equal(store_alloc(&s, &conf), 0);
	struct store_binding alice, alice2, b;
	mk(&alice, "sip:alice@100.64.0.1", 600);
	assert_int_equal(update(s, "alice@example.com", op_put, &alice), 0);
	struct store_binding before;
	assert_int_equal(lookup_n(s, "alice@example.com", &before), 1);

	disk_full();
	log_capture();
	enum { FAILS = 20 };
	for (int i = 0; i < FAILS; i++) {
		char aor[32], contact[64];
		snprintf(aor, sizeof aor, "bob%d@example.com", i);
		snprintf(contact, sizeof contact, "sip:bob@100.64.1.%d", i + 1);
		mk(&b, contact, 600);
		int err = update(s, aor, op_put, &b);
		if (!err)
			break; /* checked below, after stderr is back */
		if (lookup_n(s, aor, NULL) != 0 || view_n(s, aor) != 0)
			break;
	}
	/* unregistering fails: alice stays, exactly as committed */
	int rm_err = update(s, "alice@example.com", op_remove, &alice);
	size_t alice_n = lookup_n(s, "alice@example.com", NULL);
	/* a refresh and a second contact, both failing: nothing of them sticks */
	mk(&alice2, "sip:alice@100.64.0.2", 600);
	struct store_binding refresh = alice;
	refresh.expires_at += 300;
	int put_err = update(s, "alice@example.com", op_put, &alice2);
	int refresh_err = update(s, "alice@example.com", op_put, &refresh);
	struct store_binding after[8];
	size_t after_n = lookup_n(s, "alice@example.com", after);
	size_t after_view = view_n(s, "alice@example.com");
	int lines = log_release();
	disk_freed();

	for (int i = 0; i < FAILS; i++) {
		char aor[32];
		snprintf(aor, sizeof aor, "bob%d@example.com", i);
		assert_int_equal(lookup_n(s, aor, NULL), 0);
		assert_int_equal(view_n(s, aor), 0);
	}
	assert_int_not_equal(rm_err, 0);
	assert_int_equal(alice_n, 1);
	assert_int_not_equal(put_err, 0);
	assert_int_not_equal(refresh_err, 0);
	assert_int_equal(after_n, 1);
	assert_int_equal(after_view, 1);
	assert_int_equal(after[0].id, before.id);
	assert_int_equal(after[0].expires_at, before.expires_at);
	assert_int_equal(lines, 1);
	struct store_stats st;
	store_stats_get(s, &st);
	assert_int_equal(st.commit_errors, FAILS + 3);
	assert_int_equal(st.bindings, 1);
	/* failed new bindings give back their place under max_bindings */
	assert_int_equal(st.bindings_latest, 1);

	/* room again: updates commit, and the recovery is logged */
	log_capture();
	mk(&b, "sip:carol@100.64.2.1", 600);
	assert_int_equal(update(s, "carol@example.com", op_put, &b), 0);
	assert_int_equal(log_release(), 1);
	assert_int_equal(lookup_n(s, "carol@example.com", NULL), 1);
	store_free(s);

	/* a restart shows the same: what was answered 200, nothing else */
	assert_int_equal(store_alloc(&s, &conf), 0);
	assert_int_equal(lookup_n(s, "alice@example.com", NULL), 1);
	assert_int_equal(lookup_n(s, "bob0@example.com", NULL), 0);
	assert_int_equal(lookup_n(s, "carol@example.com", NULL), 1);
	store_free(s);
}

/* An update queued for its COMMIT is what the next update of the AOR builds
 * on, but lookups (routing) see it only once it is committed. */
static void test_visible_once_committed(void **state)
{
	(void)state;
	struct store *s;
	/* explicit kicks: nothing is written until store_kick */
	struct store_conf conf = {.path = path, .sync = STORE_SYNC_NORMAL, .kick_explicit = true};
	assert_int_equal(store_alloc(&s, &conf), 0);
	struct store_binding d1, d2;
	mk(&d1, "sip:dave@100.64.3.1", 600);
	mk(&d2, "sip:dave@100.64.3.2", 600);
	struct done_rec r1 = {0}, r2 = {0}, r3 = {0};
	assert_int_equal(
	    store_update(s, SLICE_LIT("dave@example.com"), op_put, &d1, done_rec_h, &r1), 0);
	assert_int_equal(lookup_n(s, "dave@example.com", NULL), 0);
	assert_int_equal(view_n(s, "dave@example.com"), 1);
	assert_int_equal(
	    store_update(s, SLICE_LIT("dave@example.com"), op_put, &d2, done_rec_h, &r2), 0);
	assert_int_equal(
	    store_update(s, SLICE_LIT("dave@example.com"), op_remove, &d1, done_rec_h, &r3), 0);
	assert_int_equal(view_n(s, "dave@example.com"), 1);
	assert_int_equal(lookup_n(s, "dave@example.com", NULL), 0);
	store_kick(s);
	assert_int_equal(store_flush(s), 0);
	assert_int_equal(r1.calls + r2.calls + r3.calls, 3);
	struct store_binding out[8];
	assert_int_equal(lookup_n(s, "dave@example.com", out), 1);
	assert_string_equal(out[0].contact, d2.contact);
	/* expiry in between: a binding refreshed by a queued update is not
	 * purged on the strength of its committed expiry */
	struct store_binding e = d2;
	e.expires_at = time_wall_s() + 10;
	assert_int_equal(store_update(s, SLICE_LIT("dave@example.com"), op_put, &e, NULL, NULL), 0);
	store_kick(s);
	assert_int_equal(store_flush(s), 0);
	e.expires_at = time_wall_s() + 600;
	assert_int_equal(store_update(s, SLICE_LIT("dave@example.com"), op_put, &e, NULL, NULL), 0);
	size_t removed = 99;
	assert_int_equal(store_expire(s, time_wall_s() + 20, &removed), 0);
	assert_int_equal(removed, 0);
	store_kick(s);
	assert_int_equal(store_flush(s), 0);
	assert_int_equal(lookup_n(s, "dave@example.com", out), 1);
	assert_int_equal(out[0].expires_at, e.expires_at);
	store_free(s);
	assert_int_equal(store_alloc(&s, &conf), 0);
	assert_int_equal(lookup_n(s, "dave@example.com", out), 1);
	assert_string_equal(out[0].contact, d2.contact);
	store_free(s);
}

/* Several updates of one AOR queued in one transaction that fails: each is
 * undone (the later ones' working copy first, then all of it), and the
 * next update and lookups see the committed bindings only. */
static void test_failed_batch_undone(void **state)
{
	(void)state;
	struct store *s;
	struct store_conf conf = {.path = path, .sync = STORE_SYNC_NORMAL, .kick_explicit = true};
	assert_int_equal(store_alloc(&s, &conf), 0);
	struct store_binding e1, e2, e3;
	mk(&e1, "sip:erin@100.64.4.1", 600);
	mk(&e2, "sip:erin@100.64.4.2", 600);
	mk(&e3, "sip:erin@100.64.4.3", 600);
	assert_int_equal(store_update(s, SLICE_LIT("erin@example.com"), op_put, &e1, NULL, NULL), 0);
	store_kick(s);
	assert_int_equal(store_flush(s), 0);

	disk_full();
	log_capture();
	struct done_rec r[3] = {{0}};
	assert_int_equal(
	    store_update(s, SLICE_LIT("erin@example.com"), op_put, &e2, done_rec_h, &r[0]), 0);
	assert_int_equal(
	    store_update(s, SLICE_LIT("erin@example.com"), op_remove, &e1, done_rec_h, &r[1]), 0);
	assert_int_equal(
	    store_update(s, SLICE_LIT("erin@example.com"), op_put, &e3, done_rec_h, &r[2]), 0);
	size_t queued_view = view_n(s, "erin@example.com"); /* e2, e3 */
	struct store_stats st;
	store_stats_get(s, &st);
	size_t queued_latest = st.bindings_latest;
	store_kick(s);
	int flush_err = store_flush(s);
	log_release();
	disk_freed();
	assert_int_equal(queued_view, 2);
	assert_int_not_equal(flush_err, 0);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(r[i].calls, 1);
		assert_int_not_equal(r[i].err, 0);
	}
	struct store_binding out[8];
	assert_int_equal(lookup_n(s, "erin@example.com", out), 1);
	assert_string_equal(out[0].contact, e1.contact);
	assert_int_equal(view_n(s, "erin@example.com"), 1);
	/* max_bindings counted the queued state, and counts e1 alone again */
	assert_int_equal(queued_latest, 2);
	store_stats_get(s, &st);
	assert_int_equal(st.bindings_latest, 1);
	store_free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_disk_full, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_visible_once_committed, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_failed_batch_undone, setup, teardown),
	};
	return cmocka_run_group_tests_name("store_commit", tests, NULL, NULL);
}
