/* Server keepalives over real sockets: pings reach NATed bindings, silence makes them unreachable (480) and stops them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_answered_pings_keep_binding),
		cmocka_unit_test(test_silent_binding_becomes_unreachable),
		cmocka_unit_test(test_proven_then_silent_stops),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
