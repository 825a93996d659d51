/* core: slices, buffers, hashing, logging and the metrics registry. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/core.h"

/* ---- slices ---- */

static void slice_next_item_walks_a_list(void **state)
{
	(void)state;
	struct slice rest = SLICE_LIT(" a , b,,c "), it;
	const char *want[] = {"a", "b", "", "c"};
	for (size_t i = 0; i < ARRAY_SIZE(want); i++) {
		assert_true(slice_next_item(&rest, ',', &it));
		assert_true(slice_eq(it, slice_cstr(want[i])));
	}
	assert_false(slice_next_item(&rest, ',', &it));
	rest = SLICE_LIT("");
	assert_false(slice_next_item(&rest, ',', &it));
}

static void slice_trim_strips_lws_both_ends(void **state)
{
	(void)state;
	struct slice s = slice_trim(slice_cstr(" \t\r\nabc d\r\n \t"));
	assert_int_equal(s.l, 5);
	assert_memory_equal(s.p, "abc d", 5);

	s = slice_trim(slice_cstr(" \t \r\n"));
	assert_int_equal(s.l, 0);

	s = slice_trim(SLICE_NULL);
	assert_int_equal(s.l, 0);

	/* other bytes are not whitespace for SIP */
	s = slice_trim(slice_cstr("\vx\f"));
	assert_int_equal(s.l, 3);

	s = slice_trim(slice_cstr("x"));
	assert_int_equal(s.l, 1);
	assert_int_equal(s.p[0], 'x');
}

static void slice_eq_exact_and_nocase(void **state)
{
	(void)state;
	assert_true(slice_eq(SLICE_LIT("Via"), slice_cstr("Via")));
	assert_false(slice_eq(SLICE_LIT("Via"), slice_cstr("via")));
	assert_false(slice_eq(SLICE_LIT("Via"), slice_cstr("Vias")));
	assert_true(slice_eq(SLICE_NULL, slice_cstr("")));

	assert_true(slice_eq_nocase(SLICE_LIT("Call-ID"), SLICE_LIT("call-id")));
	assert_true(slice_eq_nocase(SLICE_LIT("CALL-ID"), SLICE_LIT("call-Id")));
	assert_false(slice_eq_nocase(SLICE_LIT("Call-ID"), SLICE_LIT("Call-IE")));
	assert_false(slice_eq_nocase(SLICE_LIT("Call-ID"), SLICE_LIT("Call-I")));
	assert_true(slice_eq_cstr_nocase(SLICE_LIT("INVITE"), "invite"));
	assert_false(slice_eq_cstr_nocase(SLICE_LIT("INVITE"), "invites"));
	/* '@' and '`' differ from 'A'/'a' by 32 too, but are not letters */
	assert_false(slice_eq_nocase(SLICE_LIT("@"), SLICE_LIT("`")));
	assert_false(slice_eq_nocase(SLICE_LIT("["), SLICE_LIT("{")));

	/* slices are byte ranges: bytes after an embedded NUL count */
	struct slice a = {"ab\0cd", 5};
	struct slice b = {"AB\0CX", 5};
	struct slice c = {"AB\0CD", 5};
	assert_false(slice_eq_nocase(a, b));
	assert_true(slice_eq_nocase(a, c));
}

static void slice_to_u32_bounds(void **state)
{
	(void)state;
	uint32_t v = 12345;
	assert_int_equal(slice_to_u32(SLICE_LIT("0"), 10, &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(slice_to_u32(SLICE_LIT("5060"), 65535, &v), 0);
	assert_int_equal(v, 5060);
	assert_int_equal(slice_to_u32(SLICE_LIT("65535"), 65535, &v), 0);
	assert_int_equal(v, 65535);

	v = 7;
	assert_int_equal(slice_to_u32(SLICE_LIT("65536"), 65535, &v), EINVAL);
	assert_int_equal(v, 7); /* untouched on error */
	assert_int_equal(slice_to_u32(SLICE_NULL, 10, &v), EINVAL);
	assert_int_equal(slice_to_u32(SLICE_LIT("-1"), UINT32_MAX, &v), EINVAL);
	assert_int_equal(slice_to_u32(SLICE_LIT("+1"), UINT32_MAX, &v), EINVAL);
	assert_int_equal(slice_to_u32(SLICE_LIT(" 1"), UINT32_MAX, &v), EINVAL);
	assert_int_equal(slice_to_u32(SLICE_LIT("1 "), UINT32_MAX, &v), EINVAL);
	assert_int_equal(slice_to_u32(SLICE_LIT("12a"), UINT32_MAX, &v), EINVAL);
	assert_int_equal(v, 7);

	/* the whole 32-bit range, and overflow past it */
	assert_int_equal(slice_to_u32(SLICE_LIT("4294967295"), UINT32_MAX, &v), 0);
	assert_int_equal(v, UINT32_MAX);
	assert_int_equal(slice_to_u32(SLICE_LIT("4294967296"), UINT32_MAX, &v), EINVAL);
	assert_int_equal(slice_to_u32(SLICE_LIT("9999999999"), UINT32_MAX, &v), EINVAL);
	assert_int_equal(slice_to_u32(SLICE_LIT("99999999999999999999999"), UINT32_MAX, &v),
			 EINVAL);
	/* 2^64 + 5 would wrap a 64-bit accumulator to 5 */
	assert_int_equal(slice_to_u32(SLICE_LIT("18446744073709551621"), UINT32_MAX, &v),
			 EINVAL);

	/* leading zeros are still a decimal number (Content-Length: 0000000000005) */
	v = 0;
	assert_int_equal(slice_to_u32(SLICE_LIT("0000000000005"), 10, &v), 0);
	assert_int_equal(v, 5);

	/* the parse stops at the slice end, not at a NUL */
	struct slice part = {"123456", 3};
	assert_int_equal(slice_to_u32(part, 1000, &v), 0);
	assert_int_equal(v, 123);
}

static void slice_cstr_and_find(void **state)
{
	(void)state;
	char dst[4];
	assert_string_equal(slice_to_cstr(SLICE_LIT("abcdef"), dst, sizeof dst), "abc");
	assert_string_equal(slice_to_cstr(SLICE_LIT("ab"), dst, sizeof dst), "ab");
	assert_string_equal(slice_to_cstr(SLICE_NULL, dst, sizeof dst), "");
	dst[0] = 'z';
	slice_to_cstr(SLICE_LIT("abc"), dst, 0); /* no room: untouched */
	assert_int_equal(dst[0], 'z');

	assert_int_equal(slice_find(SLICE_LIT("a:b:c"), ':'), 1);
	assert_int_equal(slice_find(SLICE_LIT("abc"), ':'), 3);
	assert_int_equal(slice_find(SLICE_NULL, ':'), 0);
	struct slice s = {"ab:", 2};
	assert_int_equal(slice_find(s, ':'), 2); /* beyond the slice: absent */
	assert_int_equal(slice_cstr(NULL).l, 0);
}

/* ---- buffers ---- */

static void buf_grows_and_keeps_content(void **state)
{
	(void)state;
	struct buf b;
	buf_init(&b);
	assert_null(b.data);
	assert_int_equal(b.len, 0);

	/* many small appends, crossing several reallocations */
	for (int i = 0; i < 5000; i++) {
		char c = (char)('a' + i % 26);
		assert_int_equal(buf_append(&b, &c, 1), 0);
		assert_true(b.len <= b.cap);
	}
	assert_int_equal(b.len, 5000);
	for (int i = 0; i < 5000; i++)
		assert_int_equal(b.data[i], 'a' + i % 26);

	/* one append larger than twice the capacity */
	size_t big = b.cap * 3 + 17;
	char *blob = malloc(big);
	assert_non_null(blob);
	memset(blob, 'Q', big);
	assert_int_equal(buf_append(&b, blob, big), 0);
	assert_int_equal(b.len, 5000 + big);
	assert_true(b.len <= b.cap);
	assert_int_equal(b.data[4999], 'a' + 4999 % 26);
	assert_int_equal(b.data[5000], 'Q');
	assert_int_equal(b.data[b.len - 1], 'Q');
	free(blob);

	assert_int_equal(buf_append_cstr(&b, ""), 0);
	assert_int_equal(buf_append(&b, NULL, 0), 0);
	assert_int_equal(b.len, 5000 + big);

	size_t cap = b.cap;
	buf_reset(&b);
	assert_int_equal(b.len, 0);
	assert_int_equal(b.cap, cap); /* keeps the memory */
	assert_int_equal(buf_append_slice(&b, SLICE_LIT("xy")), 0);
	assert_int_equal(buf_append_cstr(&b, "z"), 0);
	struct slice s = buf_slice(&b);
	assert_true(slice_eq(s, SLICE_LIT("xyz")));

	buf_free(&b);
	assert_null(b.data);
	assert_int_equal(b.len, 0);
	assert_int_equal(b.cap, 0);
}

static void buf_reserve_refuses_overflow(void **state)
{
	(void)state;
	struct buf b;
	buf_init(&b);
	assert_int_equal(buf_append_cstr(&b, "abc"), 0);
	/* len + extra wraps around: must fail, not "fit" or loop forever */
	assert_int_equal(buf_reserve(&b, SIZE_MAX - 1), ENOMEM);
	assert_true(b.failed);
	assert_int_equal(buf_append_cstr(&b, "d"), ENOMEM); /* sticky */
	buf_reset(&b);
	assert_false(b.failed);
	assert_int_equal(buf_append_cstr(&b, "d"), 0);
	buf_free(&b);
}

static void buf_printf_short_and_long(void **state)
{
	(void)state;
	struct buf b;
	buf_init(&b);
	assert_int_equal(buf_printf(&b, "%s=%d;", "a", 1), 0);
	assert_int_equal(b.len, 4);
	assert_memory_equal(b.data, "a=1;", 4);

	/* longer than the 256-byte stack buffer, and longer than the first capacity */
	char *long_s = malloc(3001);
	assert_non_null(long_s);
	for (int i = 0; i < 3000; i++)
		long_s[i] = (char)('0' + i % 10);
	long_s[3000] = '\0';
	assert_int_equal(buf_printf(&b, "<%s>%d", long_s, 42), 0);
	assert_int_equal(b.len, 4 + 1 + 3000 + 1 + 2);
	assert_memory_equal(b.data, "a=1;<", 5);
	assert_memory_equal(b.data + 5, long_s, 3000);
	assert_memory_equal(b.data + 3005, ">42", 3);

	/* exactly at the stack-buffer boundary */
	buf_reset(&b);
	long_s[255] = '\0';
	assert_int_equal(buf_printf(&b, "%s", long_s), 0);
	assert_int_equal(b.len, 255);
	buf_reset(&b);
	long_s[255] = '5';
	long_s[256] = '\0';
	assert_int_equal(buf_printf(&b, "%s", long_s), 0);
	assert_int_equal(b.len, 256);
	assert_memory_equal(b.data, long_s, 256);

	/* appending after a long printf keeps both */
	assert_int_equal(buf_printf(&b, "|%s", "tail"), 0);
	assert_int_equal(b.len, 261);
	assert_memory_equal(b.data + 256, "|tail", 5);

	free(long_s);
	buf_free(&b);
}

/* ---- hashing, randomness, clocks, logging ---- */

static void hash_fnv1a_and_nocase(void **state)
{
	(void)state;
	/* FNV-1a 64 reference values */
	assert_true(hash_fnv1a("", 0) == 0xcbf29ce484222325ULL);
	assert_true(hash_fnv1a("a", 1) == 0xaf63dc4c8601ec8cULL);
	assert_true(hash_fnv1a("foobar", 6) == 0x85944171f73967e8ULL);
	assert_true(hash_fnv1a_nocase("FooBar", 6) == hash_fnv1a("foobar", 6));
	assert_true(hash_fnv1a("FooBar", 6) != hash_fnv1a("foobar", 6));
	assert_true(hash_fnv1a_nocase("[", 1) != hash_fnv1a_nocase("{", 1));
}

/* hash_bytes: every byte and the length count, and a table's low bits spread */
static void hash_bytes_spreads(void **state)
{
	(void)state;
	char a[40], b[40];
	memset(a, 'x', sizeof a);
	memset(b, 'x', sizeof b);
	assert_true(hash_bytes(a, 0) != hash_bytes(a, 1));
	for (size_t l = 1; l <= sizeof a; l++) {
		assert_true(hash_bytes(a, l) == hash_bytes(b, l));
		assert_true(hash_bytes(a, l) != hash_bytes(a, l - 1));
		for (size_t i = 0; i < l; i++) { /* one changed byte anywhere */
			b[i] = 'y';
			assert_true(hash_bytes(a, l) != hash_bytes(b, l));
			b[i] = 'x';
		}
	}
	/* keys differing in one digit, as transaction branches do, fill 64
	 * buckets evenly enough: no bucket gets three times its share */
	unsigned count[64] = {0};
	for (unsigned k = 0; k < 6400; k++) {
		char key[64];
		int n = snprintf(key, sizeof key, "z9hG4bK-%08u-call@host", k);
		count[hash_bytes(key, (size_t)n) & 63]++;
	}
	for (unsigned i = 0; i < 64; i++)
		assert_true(count[i] < 300);
}

static void rand_and_clock(void **state)
{
	(void)state;
	unsigned char a[32], b[32];
	memset(a, 0, sizeof a);
	memset(b, 0, sizeof b);
	rand_bytes(a, sizeof a);
	rand_bytes(b, sizeof b);
	assert_memory_not_equal(a, b, sizeof a);
	uint32_t r[4];
	for (int i = 0; i < 4; i++)
		r[i] = rand_u32();
	assert_false(r[0] == r[1] && r[1] == r[2] && r[2] == r[3]);

	uint64_t m0 = time_mono_ms(), u0 = time_mono_us();
	assert_true(u0 / 1000 + 1 >= m0);
	assert_true(time_mono_ms() >= m0);
	assert_true(time_wall_s() > 1600000000); /* after 2020 */
}

static void log_levels(void **state)
{
	(void)state;
	enum log_level lvl = LOG_ERROR;
	assert_int_equal(log_level_parse("debug", &lvl), 0);
	assert_int_equal(lvl, LOG_DEBUG);
	assert_int_equal(log_level_parse("WARN", &lvl), 0);
	assert_int_equal(lvl, LOG_WARN);
	assert_int_equal(log_level_parse("verbose", &lvl), EINVAL);
	assert_int_equal(lvl, LOG_WARN);

	enum log_level old = log_get_level();
	log_set_level(LOG_ERROR);
	assert_int_equal(log_get_level(), LOG_ERROR);
	/* capture stderr in a file */
	char path[] = "/tmp/pinhole_test_log_XXXXXX";
	int cap = mkstemp(path);
	assert_true(cap >= 0);
	fflush(stderr);
	int saved = dup(2);
	assert_true(saved >= 0);
	dup2(cap, 2);

	log_msg(LOG_INFO, "edge", "suppressed %d", 1); /* below the level */
	log_set_level(LOG_DEBUG);
	/* a role longer than the line buffer must neither overrun it nor crowd out the text */
	char role[2000];
	memset(role, 'r', sizeof role - 1);
	role[sizeof role - 1] = '\0';
	log_msg(LOG_INFO, role, "text %s", "x1");
	log_msg(LOG_WARN, "t", "multi\nline\r\ntext %s", "x2"); /* one event, one line */
	LOG_D("t", "debug %d", 3);
	char big[3000];
	memset(big, 'b', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	LOG_E("t", "%s", big); /* truncated, still one line */
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	log_set_level(old);

	char out[8192];
	ssize_t k = pread(cap, out, sizeof out - 1, 0);
	close(cap);
	unlink(path);
	assert_true(k > 0);
	out[k] = '\0';
	assert_null(strstr(out, "suppressed"));
	assert_non_null(strstr(out, "info rrrr"));
	assert_non_null(strstr(out, "text x1\n"));
	assert_non_null(strstr(out, "warn t: multi line  text x2\n"));
	assert_non_null(strstr(out, "debug t: debug 3\n"));
	const char *e = strstr(out, "error t: bbbb");
	assert_non_null(e);
	const char *nl = strchr(e, '\n');
	assert_non_null(nl);
	assert_true(nl - e <= 1023);
	assert_null(strchr(nl + 1, '\n')); /* the error line was the last line */
	/* four lines written: info, warn, debug, error */
	size_t lines = 0;
	for (const char *c = out; *c; c++)
		lines += *c == '\n';
	assert_int_equal(lines, 4);
}

static void json_string_escapes(void **state)
{
	(void)state;
	struct buf b;
	buf_init(&b);
	assert_int_equal(buf_append_json_str(&b, "a\"b\\c\n\x01" "d"), 0);
	assert_int_equal(buf_append(&b, "", 1), 0);
	assert_string_equal(b.data, "\"a\\\"b\\\\c\\u000a\\u0001d\"");
	buf_reset(&b);
	assert_int_equal(buf_append_json_str(&b, ""), 0);
	assert_int_equal(b.len, 2);
	assert_memory_equal(b.data, "\"\"", 2);
	buf_free(&b);
}

/* ---- metrics ---- */

static struct metric m_req_2xx = {.name = "test_requests_total",
				  .help = "Requests by class",
				  .labels = "class=\"2xx\""};
static struct metric m_conns = {.name = "test_open_conns", .help = "Open connections",
				.gauge = true};
static struct metric m_req_4xx = {.name = "test_requests_total",
				  .help = "Requests by class",
				  .labels = "class=\"4xx\""};

static size_t count_of(const char *hay, const char *needle)
{
	size_t n = 0;
	for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
		n++;
	return n;
}

static void metrics_register_add_export(void **state)
{
	(void)state;
	metric_register(&m_req_2xx);
	metric_register(&m_conns);
	metric_register(&m_req_4xx); /* same family, not adjacent to its sibling */
	metric_register(&m_req_2xx); /* idempotent */

	metric_add(&m_req_2xx, 5);
	metric_inc(&m_req_2xx);
	metric_add(&m_req_4xx, 2);
	metric_add(&m_conns, 7);
	metric_add(&m_conns, -3);
	assert_int_equal(metric_get(&m_req_2xx), 6);
	assert_int_equal(metric_get(&m_conns), 4);

	assert_ptr_equal(metric_find("test_open_conns", NULL), &m_conns);
	assert_ptr_equal(metric_find("test_requests_total", "class=\"4xx\""), &m_req_4xx);
	assert_ptr_equal(metric_find("test_requests_total", "class=\"2xx\""), &m_req_2xx);
	assert_null(metric_find("test_requests_total", NULL));
	assert_null(metric_find("test_open_conns", "x=\"y\""));
	assert_null(metric_find("nope", NULL));

	struct buf b;
	buf_init(&b);
	assert_int_equal(metrics_write_prometheus(&b), 0);
	assert_int_equal(buf_append(&b, "", 1), 0);
	const char *t = b.data;
	assert_non_null(strstr(t, "# HELP pinhole_test_requests_total Requests by class\n"));
	assert_non_null(strstr(t, "# TYPE pinhole_test_requests_total counter\n"));
	assert_non_null(strstr(t, "# HELP pinhole_test_open_conns Open connections\n"));
	assert_non_null(strstr(t, "# TYPE pinhole_test_open_conns gauge\n"));
	assert_non_null(strstr(t, "\npinhole_test_requests_total{class=\"2xx\"} 6\n"));
	assert_non_null(strstr(t, "\npinhole_test_requests_total{class=\"4xx\"} 2\n"));
	assert_non_null(strstr(t, "\npinhole_test_open_conns 4\n"));
	/* one family, one header, and its samples right after it */
	assert_int_equal(count_of(t, "# TYPE pinhole_test_requests_total "), 1);
	assert_int_equal(count_of(t, "# HELP pinhole_test_requests_total "), 1);
	const char *hdr = strstr(t, "# TYPE pinhole_test_requests_total counter\n");
	const char *s2 = strstr(t, "pinhole_test_requests_total{class=\"2xx\"}");
	const char *s4 = strstr(t, "pinhole_test_requests_total{class=\"4xx\"}");
	const char *other = strstr(t, "# HELP pinhole_test_open_conns");
	assert_true(hdr < s2 && s2 < s4);
	assert_true(s4 < other || other < hdr);
	/* every line is a comment or "name[{labels}] value" */
	for (const char *line = t; *line;) {
		const char *nl = strchr(line, '\n');
		assert_non_null(nl);
		if (line[0] != '#') {
			assert_memory_equal(line, "pinhole_", 8);
			const char *sp = memchr(line, ' ', (size_t)(nl - line));
			assert_non_null(sp);
			char *end;
			strtoll(sp + 1, &end, 10);
			assert_ptr_equal(end, nl);
		}
		line = nl + 1;
	}

	buf_reset(&b);
	assert_int_equal(metrics_write_json(&b), 0);
	assert_int_equal(buf_append(&b, "", 1), 0);
	t = b.data;
	assert_int_equal(t[0], '{');
	assert_int_equal(t[strlen(t) - 1], '}');
	assert_non_null(strstr(t, "\"test_requests_total{class=2xx}\":6"));
	assert_non_null(strstr(t, "\"test_requests_total{class=4xx}\":2"));
	assert_non_null(strstr(t, "\"test_open_conns\":4"));
	assert_null(strstr(t, ",,"));
	assert_null(strstr(t, "{,"));
	buf_free(&b);
}

/* A flood of refusals makes one log line, and the next line counts them all. */
static void log_burst_one_line_per_burst(void **state)
{
	(void)state;
	struct log_burst b = {0};
	int64_t n = 0;
	assert_true(log_burst_due(&b, 3600 * 1000, &n));
	assert_int_equal(n, 1);
	int lines = 0;
	for (int i = 0; i < 10000; i++)
		lines += log_burst_due(&b, 3600 * 1000, &n);
	assert_int_equal(lines, 0);
	b.next_ms = 0; /* as if the interval had passed */
	assert_true(log_burst_due(&b, 3600 * 1000, &n));
	assert_int_equal(n, 10001);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(slice_next_item_walks_a_list),
		cmocka_unit_test(slice_trim_strips_lws_both_ends),
		cmocka_unit_test(slice_eq_exact_and_nocase),
		cmocka_unit_test(slice_to_u32_bounds),
		cmocka_unit_test(slice_cstr_and_find),
		cmocka_unit_test(buf_grows_and_keeps_content),
		cmocka_unit_test(buf_reserve_refuses_overflow),
		cmocka_unit_test(buf_printf_short_and_long),
		cmocka_unit_test(hash_fnv1a_and_nocase),
		cmocka_unit_test(hash_bytes_spreads),
		cmocka_unit_test(rand_and_clock),
		cmocka_unit_test(log_levels),
		cmocka_unit_test(json_string_escapes),
		cmocka_unit_test(metrics_register_add_export),
		cmocka_unit_test(log_burst_one_line_per_burst),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
