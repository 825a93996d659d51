/* ua load, the pure parts: the AOR/URI patterns (one %u, nothing else a format could
 * read) and the nearest-rank percentiles of the summary. The load run itself is
 * tested against pinhole serve through real NAT (tests/lab/test_ua_load.sh). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "ua/ua.h"

static void test_fmt(void **state)
{
	(void)state;
	char out[64];
	assert_int_equal(ua_load_fmt("sip:user%u@example.org", 7, out, sizeof out), 0);
	assert_string_equal(out, "sip:user7@example.org");
	assert_int_equal(ua_load_fmt("sip:u%d@h", 123456, out, sizeof out), 0);
	assert_string_equal(out, "sip:u123456@h");
	assert_int_equal(ua_load_fmt("pw-%u", 0, out, sizeof out), 0);
	assert_string_equal(out, "pw-0");
	/* a pattern is never a format string: no other conversion, one only */
	assert_int_equal(ua_load_fmt("sip:user@example.org", 1, out, sizeof out), EINVAL);
	assert_int_equal(ua_load_fmt("sip:%s@h", 1, out, sizeof out), EINVAL);
	assert_int_equal(ua_load_fmt("sip:%u%n@h", 1, out, sizeof out), EINVAL);
	assert_int_equal(ua_load_fmt("sip:%u@%u", 1, out, sizeof out), EINVAL);
	assert_int_equal(ua_load_fmt("sip:%%u@h", 1, out, sizeof out), EINVAL);
	assert_int_equal(ua_load_fmt("sip:u%", 1, out, sizeof out), EINVAL);
	assert_int_equal(ua_load_fmt("sip:%u@a-rather-long-domain.example.org", 1, out, 16),
			 ENAMETOOLONG);
}

static void test_pct(void **state)
{
	(void)state;
	double v[100];
	for (unsigned i = 0; i < 100; i++)
		v[i] = (double)(100 - i); /* 100 .. 1, unsorted */
	struct ua_load_pct p;
	ua_load_pct(v, 100, &p);
	assert_int_equal(p.n, 100);
	assert_true(p.p50 == 50 && p.p95 == 95 && p.p99 == 99 && p.max == 100);
	double one[] = {7};
	ua_load_pct(one, 1, &p);
	assert_true(p.p50 == 7 && p.p99 == 7 && p.max == 7);
	double three[] = {3, 1, 2};
	ua_load_pct(three, 3, &p);
	assert_true(p.p50 == 2 && p.p95 == 3);
	ua_load_pct(NULL, 0, &p);
	assert_int_equal(p.n, 0);
}

/* The summary's words and exit status from the figures. */
static void test_summary(void **state)
{
	(void)state;
	struct ua_load_result r;
	memset(&r, 0, sizeof r);
	r.flows = r.flows_registered = 4;
	r.calls = r.calls_placed = r.calls_answered = 4;
	r.calls_two_way = 3;
	r.calls_one_way = 1;
	r.exit_code = UA_EXIT_NO_AUDIO;
	snprintf(r.example_cause, sizeof r.example_cause, "flow 1: RTP arrived from x");
	struct buf b;
	buf_init(&b);
	assert_int_equal(ua_load_text(&r, &b), 0);
	buf_append(&b, "", 1);
	assert_non_null(strstr(b.data, "4 answered: 3 two-way, 1 one-way"));
	assert_non_null(strstr(b.data, "first call not two-way: flow 1: RTP arrived from x"));
	assert_non_null(strstr(b.data, "load: NOT all ok (exit 6)"));
	buf_free(&b);
	buf_init(&b);
	assert_int_equal(ua_load_json(&r, &b), 0);
	buf_append(&b, "", 1);
	assert_non_null(strstr(b.data, "{\"event\":\"load\",\"ok\":false,\"exit\":6,"));
	assert_non_null(strstr(b.data, "\"two_way\":3,\"one_way\":1,"));
	buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_fmt),
	    cmocka_unit_test(test_pct),
	    cmocka_unit_test(test_summary),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
