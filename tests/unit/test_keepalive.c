/* Server keepalives over real sockets: pings reach NATed bindings, silence makes them unreachable (480) and stops them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "phone.h"

static struct test_server srv;

static int setup(void **state)
{
	(void)state;
	test_server_start(&srv, "[sip]\nlisten = udp:127.0.0.1:0\nt1 = 100\n"
				"[keepalive]\ninterval = 1\nmax_failures = 2\n"
				"[proxy]\nrelay = none\n");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	test_server_stop(&srv);
	return 0;
}

static struct store_binding lookup_one(const char *aor)
{
	struct store_binding b[2];
	size_t n = 0;
	assert_int_equal(registrar_lookup(srv.reg, aor, b, 2, &n), 0);
	assert_int_equal(n, 1);
	return b[0];
}

static void test_answered_pings_keep_binding(void **state)
{
	(void)state;
	struct phone p;
	phone_open(&p, &srv);
	phone_register(&p, "pinged"); /* private Contact: behind NAT */
	char opt[4096];
	/* the server pings the real source of the REGISTER; answer three pings */
	for (int i = 0; i < 3; i++) {
		phone_expect(&p, "OPTIONS sip:pinged@10.1.1.1:", opt, sizeof opt);
		phone_reply(&p, opt, 200, "OK", "ph");
	}
	usleep(200 * 1000);
	struct store_binding b = lookup_one("pinged@127.0.0.1");
	assert_true(b.behind_nat);
	assert_true(b.ka.last_answer > 0);
	assert_int_equal(b.ka.failures, 0);
	assert_false(b.ka.unreachable);
	phone_close(&p);
}

/* A source that never answered gets one ping for its REGISTER, then none:
 * it may be a victim named by a spoofed REGISTER. Calls to it get 480. */
static void test_silent_binding_becomes_unreachable(void **state)
{
	(void)state;
	struct phone p, caller;
	phone_open(&p, &srv);
	phone_open(&caller, &srv);
	phone_register(&p, "silent");
	char msg[4096];
	phone_expect(&p, "OPTIONS ", msg, sizeof msg);
	phone_expect_silence(&p, 2500); /* two more intervals: no second ping */
	struct store_binding b = lookup_one("silent@127.0.0.1");
	assert_true(b.ka.unreachable);
	assert_false(b.ka.proven);
	phone_invite(&caller, "silent", "c-480", "z9hG4bKsil1", 70);
	phone_expect(&caller, "SIP/2.0 480", msg, sizeof msg);
	phone_close(&p);
	phone_close(&caller);
}

/* A phone that answered once and then falls silent gets max_failures more
 * pings, is marked unreachable, and pinging stops. */
static void test_proven_then_silent_stops(void **state)
{
	(void)state;
	struct phone p;
	phone_open(&p, &srv);
	phone_register(&p, "gone");
	char msg[4096];
	phone_expect(&p, "OPTIONS ", msg, sizeof msg);
	phone_reply(&p, msg, 200, "OK", "g");
	/* then silent: two unanswered pings (max_failures = 2) and no more */
	phone_expect(&p, "OPTIONS ", msg, sizeof msg);
	phone_expect(&p, "OPTIONS ", msg, sizeof msg);
	phone_expect_silence(&p, 2500);
	struct store_binding b = lookup_one("gone@127.0.0.1");
	assert_true(b.ka.proven);
	assert_true(b.ka.unreachable);
	assert_int_equal(registrar_keepalive_pending(srv.reg), 0);
	phone_close(&p);
}

/* A REGISTER as an edge forwards it (RFC 3327): its Via and Path on top, the phone's Via below. */
static void register_via_edge(struct phone *edge, const char *user, const char *token,
			      unsigned n)
{
	phone_send(edge,
		   "REGISTER sip:127.0.0.1 SIP/2.0\r\n"
		   "Via: SIP/2.0/UDP 127.0.0.1:%u;branch=z9hG4bKkpe%u\r\n"
		   "Via: SIP/2.0/UDP 10.1.1.%u:5060;branch=z9hG4bKkpp%u;received=198.51.100.%u\r\n"
		   "Max-Forwards: 69\r\nFrom: <sip:%s@127.0.0.1>;tag=k%u\r\n"
		   "To: <sip:%s@127.0.0.1>\r\nCall-ID: kp-%s-%u\r\nCSeq: 1 REGISTER\r\n"
		   "Path: <sip:%s@127.0.0.1:%u;lr>\r\n"
		   "Contact: <sip:%s@10.1.1.%u:5060>\r\nExpires: 300\r\nContent-Length: 0\r\n\r\n",
		   edge->port, n, n, n, n, user, n, user, user, n, token, edge->port, user, n);
}

/* Two NATed phones of one AOR registered through one edge share the edge's
 * flow to us but not their own: each is pinged, through its Path (as a
 * Route, which the edge follows to the phone's flow), not at the edge's
 * address as if it were the phone. */
static void test_path_binding_pinged_through_path(void **state)
{
	(void)state;
	struct test_server s;
	test_server_start(&s, "[sip]\nlisten = udp:127.0.0.1:0\nt1 = 100\n"
			      "[keepalive]\ninterval = 1\nmax_failures = 2\n"
			      "[proxy]\nrelay = none\ntrusted = 127.0.0.0/8\n");
	struct phone edge;
	phone_open(&edge, &s);
	char msg[4096], route[512];
	register_via_edge(&edge, "behind", "tokenOne", 1);
	phone_expect(&edge, "SIP/2.0 200", msg, sizeof msg);
	register_via_edge(&edge, "behind", "tokenTwo", 2);
	phone_expect(&edge, "SIP/2.0 200", msg, sizeof msg);
	bool seen[2] = {false, false};
	for (int i = 0; i < 4 && !(seen[0] && seen[1]); i++) {
		phone_expect(&edge, "OPTIONS sip:behind@10.1.1.", msg, sizeof msg);
		msg_header(msg, "Route", route, sizeof route);
		if (strstr(msg, "OPTIONS sip:behind@10.1.1.1:5060 ")) {
			assert_non_null(strstr(route, "<sip:tokenOne@127.0.0.1:"));
			seen[0] = true;
		} else {
			assert_non_null(strstr(route, "<sip:tokenTwo@127.0.0.1:"));
			seen[1] = true;
		}
		phone_reply(&edge, msg, 200, "OK", "e");
	}
	assert_true(seen[0] && seen[1]);
	phone_close(&edge);
	test_server_stop(&s);
}

/* Pings are scheduled per flow by the edge's flow table, which starts empty:
 * bindings loaded from the database at start are put back in it, so a NATed
 * phone keeps being pinged across a restart (its NAT binding would close). */
static void test_pings_resume_after_restart(void **state)
{
	(void)state;
	char dir[] = "/tmp/pinhole-karestart-XXXXXX", conf[256];
	assert_non_null(mkdtemp(dir));
	snprintf(conf, sizeof conf,
		 "[sip]\nlisten = udp:127.0.0.1:0\nt1 = 100\n[keepalive]\ninterval = 1\n"
		 "[proxy]\nrelay = none\n[store]\npath = %s/ka.db\n",
		 dir);
	struct test_server s1;
	test_server_start(&s1, conf);
	struct phone p;
	phone_open(&p, &s1);
	phone_register(&p, "restarted");
	char msg[4096];
	phone_expect(&p, "OPTIONS sip:restarted@10.1.1.1:", msg, sizeof msg);
	phone_reply(&p, msg, 200, "OK", "rs");
	test_server_stop(&s1);
	test_server_start(&s1, conf);
	phone_expect(&p, "OPTIONS sip:restarted@10.1.1.1:", msg, sizeof msg);
	phone_close(&p);
	test_server_stop(&s1);
	char path[128];
	static const char *const suffix[] = {"", "-wal", "-shm"};
	for (size_t i = 0; i < 3; i++) {
		snprintf(path, sizeof path, "%s/ka.db%s", dir, suffix[i]);
		unlink(path);
	}
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_answered_pings_keep_binding),
		cmocka_unit_test(test_silent_binding_becomes_unreachable),
		cmocka_unit_test(test_proven_then_silent_stops),
		cmocka_unit_test(test_path_binding_pinged_through_path),
		cmocka_unit_test(test_pings_resume_after_restart),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
