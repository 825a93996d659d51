/* conf: the key table, defaults, loading with line-numbered errors, sections, help. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/core.h"

static const struct conf_key sip_keys[] = {
	{"sip", "port", CONF_INT, "5060", 1, 65535, NULL, "UDP/TCP port"},
	{"sip", "tcp", CONF_BOOL, "yes", 0, 0, NULL, "accept TCP"},
	{"sip", "mode", CONF_ENUM, "proxy", 0, 0, "proxy|registrar|b2bua", "what to be"},
	{"sip", "realm", CONF_STR, "example.org", 0, 0, NULL, "digest realm"},
	{"sip", "offset", CONF_INT, "-5", -10, 10, NULL, "a signed value"},
	{NULL, NULL, 0, NULL, 0, 0, NULL, NULL},
};
static const struct conf_key relay_keys[] = {
	{"relay", "ports", CONF_INT, "1000", 2, 100000, NULL, "relay port count"},
	{"relay", "ipv6", CONF_BOOL, "no", 0, 0, NULL, "relay over IPv6"},
	{NULL, NULL, 0, NULL, 0, 0, NULL, NULL},
};
static const struct conf_key stun_keys[] = {
	{"stun", "enabled", CONF_BOOL, "no", 0, 0, NULL, "answer STUN"},
	{NULL, NULL, 0, NULL, 0, 0, NULL, NULL},
};
static const struct conf_key *const tables[] = {sip_keys, relay_keys, stun_keys, NULL};

static struct conf *new_conf(void)
{
	struct conf *c = NULL;
	assert_int_equal(conf_alloc(&c, tables), 0);
	assert_non_null(c);
	return c;
}

/* A section may span tables, a key may not be declared twice: two modules
 * that meet on a key must agree on who declares it. */
static void key_declared_twice_is_refused(void **state)
{
	(void)state;
	static const struct conf_key more_sip[] = {
		{"sip", "workers", CONF_INT, "0", 0, 8, NULL, "a new key in a known section"},
		{NULL, NULL, 0, NULL, 0, 0, NULL, NULL},
	};
	static const struct conf_key again[] = {
		{"SIP", "Port", CONF_INT, "5070", 1, 65535, NULL, "the same key again"},
		{NULL, NULL, 0, NULL, 0, 0, NULL, NULL},
	};
	const struct conf_key *const spans[] = {sip_keys, more_sip, NULL};
	const struct conf_key *const twice[] = {sip_keys, relay_keys, again, NULL};
	struct conf *c = NULL;
	assert_int_equal(conf_alloc(&c, spans), 0);
	assert_int_equal(conf_int(c, "sip", "workers"), 0);
	conf_free(c);
	c = NULL;
	assert_int_equal(conf_alloc(&c, twice), EEXIST);
	assert_null(c);
}

static void defaults_are_set(void **state)
{
	(void)state;
	struct conf *c = new_conf();
	assert_int_equal(conf_int(c, "sip", "port"), 5060);
	assert_int_equal(conf_int(c, "sip", "offset"), -5);
	assert_true(conf_bool(c, "sip", "tcp"));
	assert_false(conf_bool(c, "relay", "ipv6"));
	assert_string_equal(conf_str(c, "sip", "mode"), "proxy");
	assert_string_equal(conf_str(c, "sip", "realm"), "example.org");
	assert_int_equal(conf_int(c, "relay", "ports"), 1000);
	/* nothing loaded: no section present, no file */
	assert_false(conf_section_present(c, "sip"));
	assert_false(conf_section_present(c, "relay"));
	assert_false(conf_loaded_file(c));
	conf_free(c);
}

static void good_values_load(void **state)
{
	(void)state;
	struct conf *c = new_conf();
	char err[256] = "";
	const char *text = "; pinhole test config\n"
			   "# another comment style\n"
			   "\n"
			   "[sip]\n"
			   "port = 5080\n"
			   "  tcp=off  \r\n"
			   "mode = REGISTRAR\n"
			   "realm = voip.example.com\n"
			   "offset = -10\n"
			   "[relay]\n"
			   "ports = 100000\n"
			   "ipv6 = true\n";
	assert_int_equal(conf_load_string(c, "t.ini", text, err, sizeof err), 0);
	assert_string_equal(err, "");
	assert_int_equal(conf_int(c, "sip", "port"), 5080);
	assert_false(conf_bool(c, "sip", "tcp"));
	assert_string_equal(conf_str(c, "sip", "mode"), "REGISTRAR");
	assert_string_equal(conf_str(c, "sip", "realm"), "voip.example.com");
	assert_int_equal(conf_int(c, "sip", "offset"), -10);
	assert_int_equal(conf_int(c, "relay", "ports"), 100000);
	assert_true(conf_bool(c, "relay", "ipv6"));
	assert_true(conf_section_present(c, "sip"));
	assert_true(conf_section_present(c, "relay"));
	assert_false(conf_section_present(c, "stun"));
	assert_false(conf_section_present(c, "nosuch"));
	assert_false(conf_loaded_file(c)); /* a string, not a file */
	conf_free(c);
}

static void inline_comments(void **state)
{
	(void)state;
	struct conf *c = new_conf();
	char err[256] = "";
	const char *text = "[sip] ; the SIP side\n"
			   "port = 5 ; comment\n"
			   "tcp = no ; disable\n"
			   "realm = a.b ; the realm\n"
			   "mode = b2bua\t; tab before\n";
	assert_int_equal(conf_load_string(c, "ic.ini", text, err, sizeof err), 0);
	assert_int_equal(conf_int(c, "sip", "port"), 5);
	assert_false(conf_bool(c, "sip", "tcp"));
	assert_string_equal(conf_str(c, "sip", "realm"), "a.b");
	assert_string_equal(conf_str(c, "sip", "mode"), "b2bua");
	conf_free(c);
}

/* Loads text expecting failure; checks the error starts with "name:line:" and contains want. */
static void expect_error(const char *text, int line, const char *want)
{
	struct conf *c = new_conf();
	char err[256];
	memset(err, 0, sizeof err);
	assert_int_equal(conf_load_string(c, "bad.ini", text, err, sizeof err), EINVAL);
	char prefix[32];
	snprintf(prefix, sizeof prefix, "bad.ini:%d:", line);
	if (strncmp(err, prefix, strlen(prefix)) != 0 || !strstr(err, want))
		fail_msg("error \"%s\": expected prefix \"%s\" and \"%s\"", err, prefix, want);
	conf_free(c);
}

static void unknown_key_names_line_and_key(void **state)
{
	(void)state;
	expect_error("[sip]\nport = 5060\n\n; c\nbogus_key = 1\n", 5, "bogus_key");
	expect_error("[sip]\r\nport = 5060\r\nportt = 1\r\n", 3, "portt");
	/* a key of another section is unknown here */
	expect_error("[sip]\nipv6 = yes\n", 2, "ipv6");
}

static void unknown_section(void **state)
{
	(void)state;
	expect_error("[sip]\nport = 1\n[media]\nx = 1\n", 3, "media");
	expect_error("port = 1\n", 1, "section");
	expect_error("[sip\nport = 1\n", 1, "section");
	expect_error("[]\n", 1, "section");
}

static void bad_values_rejected(void **state)
{
	(void)state;
	/* bad int */
	expect_error("[sip]\nport = 50x0\n", 2, "port");
	expect_error("[sip]\nport = 50x0\n", 2, "50x0");
	expect_error("[sip]\n\nport =\n", 3, "port");
	expect_error("[sip]\nport = 99999999999999999999999\n", 2, "port");
	/* out of range, both ends */
	expect_error("[sip]\ntcp = yes\nport = 65536\n", 3, "1..65535");
	expect_error("[sip]\nport = 0\n", 2, "port");
	expect_error("[sip]\noffset = -11\n", 2, "-10..10");
	expect_error("[relay]\nports = 1\n", 2, "ports");
	/* bad enum */
	expect_error("[sip]\nmode = proxy\nmode = gateway\n", 3, "gateway");
	expect_error("[sip]\nmode = prox\n", 2, "proxy|registrar|b2bua");
	expect_error("[sip]\nmode = proxy|registrar\n", 2, "mode");
	/* bad bool */
	expect_error("[sip]\n\n\n\ntcp = maybe\n", 5, "tcp");
	expect_error("[sip]\ntcp = 2\n", 2, "tcp");
	/* no "=" at all */
	expect_error("[sip]\nport 5060\n", 2, "");
}

static void first_error_wins_and_values_kept(void **state)
{
	(void)state;
	struct conf *c = new_conf();
	char err[256];
	assert_int_equal(conf_load_string(c, "x", "[sip]\nport = 0\nrealm = q\nfoo = 1\n", err,
					  sizeof err),
			 EINVAL);
	assert_non_null(strstr(err, "x:2:"));
	assert_null(strstr(err, "foo"));
	assert_int_equal(conf_int(c, "sip", "port"), 5060); /* rejected value not stored */
	/* a short error buffer is still NUL-terminated */
	char tiny[6];
	memset(tiny, 'Z', sizeof tiny);
	assert_int_equal(conf_load_string(c, "longname.ini", "[nope]\n", tiny, sizeof tiny),
			 EINVAL);
	assert_int_equal(tiny[5], '\0');
	conf_free(c);
}

static void long_lines(void **state)
{
	(void)state;
	struct conf *c = new_conf();
	char err[256] = "";
	/* a long value that fits is read whole */
	char text[1024];
	char val[181];
	memset(val, 'v', sizeof val - 1);
	val[sizeof val - 1] = '\0';
	snprintf(text, sizeof text, "[sip]\nrealm = %s\n", val);
	assert_int_equal(conf_load_string(c, "l", text, err, sizeof err), 0);
	assert_string_equal(conf_str(c, "sip", "realm"), val);
	/* a value too long for the INI reader is an error, and the value is not
	 * cut short and stored (inih would read the tail as a line of its own) */
	char longval[601];
	memset(longval, 'w', sizeof longval - 1);
	longval[sizeof longval - 1] = '\0';
	snprintf(text, sizeof text, "[sip]\n\nrealm = %s\n", longval);
	assert_int_equal(conf_load_string(c, "l", text, err, sizeof err), EINVAL);
	assert_non_null(strstr(err, "l:3:"));
	assert_string_equal(conf_str(c, "sip", "realm"), val);
	assert_int_equal(conf_int(c, "sip", "port"), 5060);
	conf_free(c);
}

static void section_presence(void **state)
{
	(void)state;
	struct conf *c = new_conf();
	char err[256];
	/* an empty section (no keys, only a comment) is present; one not written is not */
	assert_int_equal(conf_load_string(c, "s", "[sip]\nport = 1\n\n[stun]\n; on with defaults\n",
					  err, sizeof err),
			 0);
	assert_true(conf_section_present(c, "sip"));
	assert_true(conf_section_present(c, "stun"));
	assert_true(conf_section_present(c, "STUN")); /* names are case-insensitive */
	assert_false(conf_section_present(c, "relay"));
	assert_false(conf_bool(c, "stun", "enabled")); /* default */

	conf_section_enable(c, "relay");
	assert_true(conf_section_present(c, "relay"));
	conf_section_enable(c, "undeclared"); /* no effect, no crash */
	assert_false(conf_section_present(c, "undeclared"));
	conf_free(c);

	/* empty section as the very last line, without a newline; spaces in brackets */
	c = new_conf();
	assert_int_equal(conf_load_string(c, "s", "[ relay ]\nports=5\n[stun]", err, sizeof err), 0);
	assert_true(conf_section_present(c, "stun"));
	assert_true(conf_section_present(c, "relay"));
	assert_false(conf_section_present(c, "sip"));
	assert_int_equal(conf_int(c, "relay", "ports"), 5);
	conf_free(c);
}

static void conf_set_overrides(void **state)
{
	(void)state;
	struct conf *c = new_conf();
	char err[256] = "";
	assert_int_equal(conf_set(c, "sip", "port", "6000", err, sizeof err), 0);
	assert_int_equal(conf_int(c, "sip", "port"), 6000);
	assert_int_equal(conf_set(c, "sip", "port", "70000", err, sizeof err), EINVAL);
	assert_non_null(strstr(err, "port"));
	assert_int_equal(conf_int(c, "sip", "port"), 6000);
	assert_int_equal(conf_set(c, "sip", "nokey", "1", err, sizeof err), EINVAL);
	assert_non_null(strstr(err, "nokey"));
	assert_int_equal(conf_set(c, "nosec", "port", "1", err, sizeof err), EINVAL);
	assert_non_null(strstr(err, "nosec"));
	conf_free(c);
}

static void load_from_file(void **state)
{
	(void)state;
	char path[] = "/tmp/pinhole_test_conf_XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	const char *text = "\xEF\xBB\xBF[sip]\nport = 7070\n[relay]\nports = 3\nbad = 1\n";
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);

	struct conf *c = new_conf();
	char err[512] = "";
	assert_int_equal(conf_load_file(c, path, err, sizeof err), EINVAL);
	char want[300];
	snprintf(want, sizeof want, "%s:5:", path);
	assert_non_null(strstr(err, want));
	assert_non_null(strstr(err, "bad"));
	assert_false(conf_loaded_file(c));

	fd = open(path, O_WRONLY | O_TRUNC);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text) - 8), (ssize_t)strlen(text) - 8);
	close(fd);
	assert_int_equal(conf_load_file(c, path, err, sizeof err), 0);
	assert_true(conf_loaded_file(c));
	assert_int_equal(conf_int(c, "sip", "port"), 7070);
	assert_int_equal(conf_int(c, "relay", "ports"), 3);
	unlink(path);

	assert_int_equal(conf_load_file(c, path, err, sizeof err), ENOENT);
	assert_non_null(strstr(err, path));
	conf_free(c);
}

static void help_lists_keys(void **state)
{
	(void)state;
	struct buf b;
	buf_init(&b);
	assert_int_equal(conf_write_help(tables, &b), 0);
	assert_int_equal(buf_append(&b, "", 1), 0);
	const char *t = b.data;
	assert_non_null(strstr(t, "[sip]\n"));
	assert_non_null(strstr(t, "[relay]\n"));
	assert_non_null(strstr(t, "[stun]\n"));
	const char *names[] = {"port", "tcp", "mode", "realm", "offset", "ports", "ipv6", "enabled"};
	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		char want[64];
		snprintf(want, sizeof want, "\n%s ", names[i]);
		if (!strstr(t, want))
			fail_msg("help lacks key %s:\n%s", names[i], t);
	}
	assert_non_null(strstr(t, "UDP/TCP port"));
	assert_non_null(strstr(t, "1..65535"));
	assert_non_null(strstr(t, "proxy|registrar|b2bua"));
	assert_non_null(strstr(t, "5060"));
	/* keys appear under their own section */
	assert_true(strstr(t, "[sip]") < strstr(t, "\nrealm "));
	assert_true(strstr(t, "\nrealm ") < strstr(t, "[relay]"));
	assert_true(strstr(t, "[relay]") < strstr(t, "\nipv6 "));
	buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(defaults_are_set),
		cmocka_unit_test(key_declared_twice_is_refused),
		cmocka_unit_test(good_values_load),
		cmocka_unit_test(inline_comments),
		cmocka_unit_test(unknown_key_names_line_and_key),
		cmocka_unit_test(unknown_section),
		cmocka_unit_test(bad_values_rejected),
		cmocka_unit_test(first_error_wins_and_values_kept),
		cmocka_unit_test(long_lines),
		cmocka_unit_test(section_presence),
		cmocka_unit_test(conf_set_overrides),
		cmocka_unit_test(load_from_file),
		cmocka_unit_test(help_lists_keys),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
