/* Unit tests for SIP URI, Via, name-addr and parameter parsing. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "sip/sip.h"

static bool eq(struct slice s, const char *want)
{
	return s.l == strlen(want) && memcmp(s.p, want, s.l) == 0;
}

#define assert_slice(s, want) assert_true(eq((s), (want)))

static int uri(const char *s, struct sip_uri *u)
{
	return sip_uri_parse(slice_cstr(s), u);
}

static void test_uri_full(void **state)
{
	(void)state;
	struct sip_uri u;
	assert_int_equal(uri("sips:alice:secret@atlanta.example.com:5061;transport=tcp;lr?subject=project%20x&priority=urgent", &u), 0);
	assert_slice(u.scheme, "sips");
	assert_slice(u.user, "alice");
	assert_slice(u.password, "secret");
	assert_slice(u.host, "atlanta.example.com");
	assert_int_equal(u.port, 5061);
	assert_slice(u.params, ";transport=tcp;lr");
	assert_slice(u.headers, "subject=project%20x&priority=urgent");

	struct sip_param p;
	assert_true(sip_param_find(u.params, "transport", &p));
	assert_slice(p.value, "tcp");
	assert_true(p.has_value);
	assert_true(sip_param_find(u.params, "LR", &p));
	assert_false(p.has_value);
	assert_int_equal(p.value.l, 0);
	assert_false(sip_param_find(u.params, "l", &p));
	assert_false(sip_param_find(u.params, "maddr", NULL));
}

static void test_uri_forms(void **state)
{
	(void)state;
	struct sip_uri u;
	assert_int_equal(uri("sip:example.com", &u), 0);
	assert_int_equal(u.user.l, 0);
	assert_slice(u.host, "example.com");
	assert_int_equal(u.port, 0);

	assert_int_equal(uri("SIP:[2001:db8::10]:5060;maddr=[2001:db8::1]", &u), 0);
	assert_slice(u.host, "[2001:db8::10]");
	assert_int_equal(u.port, 5060);
	struct sip_param p;
	assert_true(sip_param_find(u.params, "maddr", &p));
	assert_slice(p.value, "[2001:db8::1]");

	assert_int_equal(uri("sip:[::ffff:192.0.2.1]", &u), 0);
	assert_int_equal(uri("sip:192.0.2.1:1", &u), 0);
	assert_int_equal(u.port, 1);

	/* escaped chars are kept as written */
	assert_int_equal(uri("sip:%61lice%40x@example.com", &u), 0);
	assert_slice(u.user, "%61lice%40x");

	/* RFC 4475 3.1.1.2: the wide range of characters allowed in user and password */
	assert_int_equal(uri("sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com", &u), 0);
	assert_slice(u.user, "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*");
	assert_slice(u.password, "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)");
	assert_slice(u.host, "example.com");

	/* RFC 4475 3.1.1.10: the user part may hold ';' */
	assert_int_equal(uri("sip:user;par=u%40example.net@example.com", &u), 0);
	assert_slice(u.user, "user;par=u%40example.net");
	assert_int_equal(u.params.l, 0);

	assert_int_equal(uri("tel:+1-201-555-0123;phone-context=example.com", &u), 0);
	assert_slice(u.scheme, "tel");
	assert_slice(u.user, "+1-201-555-0123");
	assert_int_equal(u.host.l, 0);
	assert_slice(u.params, ";phone-context=example.com");

	assert_int_equal(uri("http://example.com/x", &u), ENOTSUP);
	assert_slice(u.scheme, "http");
	assert_int_equal(uri("urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6", &u), ENOTSUP);
}

static void test_uri_bad(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"", "sip:", "sip:@h", "sip:a@", "sip:a@h:", "sip:a@h:65536", "sip:a@h:1234567",
		"sip:a@h:12x", "sip:a b@h", "sip:a@h;", "sip:a@h;;x", "sip:a@h;=x", "sip:a@h?",
		"sip:a@[::1", "sip:a@[zz::1]", "sip:a@[]", "sip:a@h x", "sip:a%4@h", "sip:a%@h",
		"sip:a%4", "<sip:a@h>", "sip:a@h>", ":x", "1x:y", "tel:", "tel:xyz;x",
		"tel:+1 2", "sip:a@h;a=\"b\"", "sip:user@example.com;lr ",
		"x:", "x:a b",
	};
	struct sip_uri u;
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		if (uri(bad[i], &u) != EBADMSG)
			fail_msg("accepted %s", bad[i]);
}

static bool uri_eq(const char *a, const char *b)
{
	struct sip_uri ua, ub;
	assert_int_equal(uri(a, &ua), 0);
	assert_int_equal(uri(b, &ub), 0);
	bool r = sip_uri_eq(&ua, &ub);
	assert_int_equal(r, sip_uri_eq(&ub, &ua));
	return r;
}

static void test_uri_eq(void **state)
{
	(void)state;
	/* RFC 3261 19.1.4 examples */
	assert_true(uri_eq("sip:%61lice@atlanta.com;transport=TCP",
			   "sip:alice@AtLanTa.CoM;Transport=tcp"));
	assert_true(uri_eq("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"));
	assert_true(uri_eq("sip:carol@chicago.com;security=on", "sip:carol@chicago.com;newparam=5"));
	assert_true(uri_eq("sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
			   "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com"));
	assert_true(uri_eq("sip:alice@atlanta.com?subject=project%20x&priority=urgent",
			   "sip:alice@atlanta.com?priority=urgent&subject=project%20x"));
	/* headers are never ignored */
	assert_false(uri_eq("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"));
	assert_false(uri_eq("sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
			    "sip:biloxi.com;method=REGISTER;transport=tcp?from=sip:joe%40atlanta.com"));
	assert_false(uri_eq("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"));
	assert_false(uri_eq("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"));
	assert_false(uri_eq("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"));
	/* the RFC's examples treat a transport on one side only as a difference */
	assert_false(uri_eq("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"));
	assert_false(uri_eq("sip:bob@biloxi.com:6000;transport=tcp", "sip:bob@biloxi.com:6000"));
	assert_false(uri_eq("sip:carol@chicago.com", "sip:carol@chicago.com;security=on") == false);
	assert_false(uri_eq("sip:carol@chicago.com;security=on", "sip:carol@chicago.com;security=off"));
	assert_false(uri_eq("sip:a@h", "sip:a@h;user=phone"));
	assert_false(uri_eq("sip:a@h", "sip:a@h;maddr=1.2.3.4"));
	assert_false(uri_eq("sip:a@h", "sips:a@h"));
	assert_false(uri_eq("sip:a:x@h", "sip:a@h"));
}

/* Beyond the RFC's examples: each rule of 19.1.4 on its own, both ways. */
static void test_uri_eq_rules(void **state)
{
	(void)state;
	/* scheme and host in any case; userinfo case-sensitive */
	assert_true(uri_eq("SIPS:bob@EXAMPLE.com", "sips:bob@example.COM"));
	assert_false(uri_eq("sip:Bob@example.com", "sip:bob@example.com"));
	assert_false(uri_eq("sip:bob:Pw@example.com", "sip:bob:pw@example.com"));
	assert_true(uri_eq("sip:bob:pw@example.com", "sip:bob:p%77@example.com"));
	/* escapes equal what they stand for, in user, params and headers */
	assert_true(uri_eq("sip:%62%6F%62@h", "sip:bob@h"));
	assert_true(uri_eq("sip:%62%6f%62@h", "sip:%62%6F%62@h"));
	assert_false(uri_eq("sip:%42ob@h", "sip:bob@h")); /* %42 is 'B' */
	assert_true(uri_eq("sip:a@h;transport=%74cp", "sip:a@h;transport=TCP"));
	assert_true(uri_eq("sip:a@h;%74ransport=tcp", "sip:a@h;transport=tcp"));
	assert_true(uri_eq("sip:a@h?subject=a%20b", "sip:a@h?SUBJECT=A%20B"));
	/* ports: absent differs from any, equal numbers match */
	assert_true(uri_eq("sip:a@h:5070", "sip:a@h:5070"));
	assert_false(uri_eq("sip:a@h:5070", "sip:a@h:5071"));
	/* IPv6 references by address */
	assert_true(uri_eq("sip:a@[2001:DB8::1]:5060", "sip:a@[2001:db8:0:0::1]:5060"));
	assert_false(uri_eq("sip:a@[2001:db8::1]", "sip:a@[2001:db8::2]"));
	assert_false(uri_eq("sip:a@[::ffff:192.0.2.1]", "sip:a@192.0.2.1"));
	/* the five that must be on both sides or neither, each one */
	const char *const five[] = {"user=phone", "ttl=1", "method=INVITE", "maddr=192.0.2.1",
				    "transport=tcp"};
	for (size_t i = 0; i < ARRAY_SIZE(five); i++) {
		char with[64], other[64];
		snprintf(with, sizeof with, "sip:a@h;lr;%s", five[i]);
		assert_false(uri_eq("sip:a@h;lr", with));
		assert_true(uri_eq(with, with));
		snprintf(other, sizeof other, "sip:a@h;%s;x=1", five[i]);
		assert_true(uri_eq(with, other));
	}
	assert_false(uri_eq("sip:a@h;ttl=1", "sip:a@h;ttl=2"));
	assert_false(uri_eq("sip:a@h;maddr=192.0.2.1", "sip:a@h;maddr=192.0.2.2"));
	/* others: ignored on one side, compared on both */
	assert_true(uri_eq("sip:a@h;ob", "sip:a@h"));
	assert_true(uri_eq("sip:a@h;x=1;y=2", "sip:a@h;y=2;z=3"));
	assert_false(uri_eq("sip:a@h;x=1;y=2", "sip:a@h;y=3"));
	assert_true(uri_eq("sip:a@h;X=Yes", "sip:a@h;x=yes"));
	assert_false(uri_eq("sip:a@h;lr", "sip:a@h;lr=on")); /* with and without a value */
	/* a repeated parameter is judged by its first occurrence */
	assert_true(uri_eq("sip:a@h;x=1;x=2", "sip:a@h;x=1"));
	assert_false(uri_eq("sip:a@h;x=1;x=2", "sip:a@h;x=2"));
	/* headers: the same set, in any order */
	assert_false(uri_eq("sip:a@h?x=1&y=2", "sip:a@h?x=1"));
	assert_false(uri_eq("sip:a@h?x=1", "sip:a@h?x=2"));
	assert_true(uri_eq("sip:a@h?x=1&y=2", "sip:a@h?y=2&x=1"));
	/* user part with a ';' user-param, and tel numbers */
	assert_true(uri_eq("sip:+1555;phone-context=x@h;user=phone",
			   "sip:+1555;phone-context=x@H;USER=PHONE"));
	assert_true(uri_eq("tel:+1-555-ABC", "tel:+1-555-abc"));
	assert_false(uri_eq("tel:+1555", "sip:+1555@h"));
	/* text form: equal bytes, or both parse and compare equal */
	assert_true(sip_uri_text_eq(SLICE_LIT("sip:a@H;Transport=TCP"),
				    SLICE_LIT("sip:a@h;transport=tcp")));
	assert_false(sip_uri_text_eq(SLICE_LIT("sip:a@h"), SLICE_LIT("sip:a@h;transport=tcp")));
	assert_true(sip_uri_text_eq(SLICE_LIT("x y"), SLICE_LIT("x y")));
	assert_false(sip_uri_text_eq(SLICE_LIT("sip:a@h "), SLICE_LIT("sip:a@h")));
}

static void test_via(void **state)
{
	(void)state;
	struct sip_via v;
	assert_int_equal(sip_via_parse(SLICE_LIT("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc;rport;received=198.18.0.7;maddr=224.2.0.1;ttl=16"), &v), 0);
	assert_slice(v.transport, "UDP");
	assert_slice(v.host, "192.0.2.1");
	assert_int_equal(v.port, 5060);
	assert_slice(v.branch, "z9hG4bKabc");
	assert_true(v.rport);
	assert_int_equal(v.rport_value.l, 0);
	assert_slice(v.received, "198.18.0.7");
	assert_slice(v.maddr, "224.2.0.1");
	assert_slice(v.ttl, "16");
	assert_slice(v.params, ";branch=z9hG4bKabc;rport;received=198.18.0.7;maddr=224.2.0.1;ttl=16");

	assert_int_equal(sip_via_parse(SLICE_LIT(" SIP / 2.0 / TLS [2001:db8::9] : 5061 ; branch = z9hG4bK1 ; rport = 40000 "), &v), 0);
	assert_slice(v.transport, "TLS");
	assert_slice(v.host, "[2001:db8::9]");
	assert_int_equal(v.port, 5061);
	assert_slice(v.branch, "z9hG4bK1");
	assert_true(v.rport);
	assert_slice(v.rport_value, "40000");
	assert_slice(v.whole, "SIP / 2.0 / TLS [2001:db8::9] : 5061 ; branch = z9hG4bK1 ; rport = 40000");

	/* folded across lines (RFC 4475 3.1.1.1) */
	assert_int_equal(sip_via_parse(SLICE_LIT("SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw"), &v), 0);
	assert_slice(v.host, "192.0.2.2");
	assert_slice(v.branch, "390skdjuw");
	assert_false(v.rport);

	assert_int_equal(sip_via_parse(SLICE_LIT("SIP/2.0/WS df7jal23ls0d.invalid;branch=z9hG4bK56sdasks;received=[2001:db8::2]"), &v), 0);
	assert_slice(v.received, "[2001:db8::2]");
	assert_int_equal(v.port, 0);

	static const char *const bad[] = {
		"", "SIP/2.0/UDP", "SIP/2.0/UDP ", "SIP/2.0 UDP h", "SIP/2.0/UDPh", "SIP//UDP h",
		"SIP/2.0/UDP h;branch", "SIP/2.0/UDP h;branch=", "SIP/2.0/UDP h;;", "SIP/2.0/UDP h;",
		"SIP/2.0/UDP h;rport=x", "SIP/2.0/UDP h;rport=70000", "SIP/2.0/UDP h;ttl=300",
		"SIP/2.0/UDP h:99999", "SIP/2.0/UDP [::1", "SIP/2.0/UDP h junk",
		"SIP/2.0/UDP h;received", "SIP/2.0/UDP 192.0.2.15;;,;,,",
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		if (sip_via_parse(slice_cstr(bad[i]), &v) != EBADMSG)
			fail_msg("accepted via %s", bad[i]);
}

static void test_nameaddr(void **state)
{
	(void)state;
	struct sip_nameaddr na;
	assert_int_equal(sip_nameaddr_parse(SLICE_LIT("\"Mr. \\\"Watson\\\"\" <sip:watson@bell.example.com;transport=tcp>;tag=xy;expires=3600"), &na), 0);
	assert_slice(na.display, "\"Mr. \\\"Watson\\\"\"");
	assert_slice(na.uri_s, "sip:watson@bell.example.com;transport=tcp");
	assert_slice(na.uri.params, ";transport=tcp");
	assert_slice(na.params, ";tag=xy;expires=3600");
	assert_false(na.star);
	struct sip_param p;
	assert_true(sip_param_find(na.params, "expires", &p));
	assert_slice(p.value, "3600");
	assert_false(sip_param_find(na.params, "transport", &p));

	assert_int_equal(sip_nameaddr_parse(SLICE_LIT("Bob Smith<sip:bob@h>"), &na), 0);
	assert_slice(na.display, "Bob Smith");
	assert_slice(na.uri.user, "bob");

	/* addr-spec: parameters after it are header parameters (RFC 3261 20.10) */
	assert_int_equal(sip_nameaddr_parse(SLICE_LIT("sip:bob@h;tag=88 "), &na), 0);
	assert_int_equal(na.display.l, 0);
	assert_slice(na.uri_s, "sip:bob@h");
	assert_int_equal(na.uri.params.l, 0);
	assert_slice(na.params, ";tag=88");

	assert_int_equal(sip_nameaddr_parse(SLICE_LIT(" * "), &na), 0);
	assert_true(na.star);

	/* RFC 5626 Contact parameters */
	assert_int_equal(sip_nameaddr_parse(SLICE_LIT(
		"<sip:line1@192.0.2.2;transport=tcp>; reg-id=1;q=0.7;expires=600;"
		"+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\""), &na), 0);
	assert_true(sip_param_find(na.params, "reg-id", &p));
	assert_slice(p.value, "1");
	assert_true(sip_param_find(na.params, "q", &p));
	assert_slice(p.value, "0.7");
	assert_true(sip_param_find(na.params, "+sip.instance", &p));
	assert_slice(p.value, "\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\"");
	assert_true(sip_param_find(na.params, "EXPIRES", &p));
	assert_slice(p.value, "600");

	/* a quoted value may hold ';' and '=' */
	assert_int_equal(sip_nameaddr_parse(SLICE_LIT("<sip:a@h>;x=\"a;b=c\";y=2"), &na), 0);
	assert_true(sip_param_find(na.params, "y", &p));
	assert_slice(p.value, "2");
	assert_false(sip_param_find(na.params, "b", &p));

	/* other schemes are accepted in name-addr (Contact: <mailto:...>) */
	assert_int_equal(sip_nameaddr_parse(SLICE_LIT("<mailto:a@example.com>"), &na), 0);
	assert_slice(na.uri.scheme, "mailto");

	static const char *const bad[] = {
		"", "\"unterminated <sip:a@h>", "\"x\" sip:a@h", "<sip:a@h", "<sip:a@h> junk",
		"Bell, Alexander <sip:a@h>", "< sip:a@h >", "sip:a@h?x=y", "sip:a@h, sip:b@h",
		"<sip:a@h>;", "<sip:a@h>;=1", "<sip:a b@h>", "**", "<>",
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		if (sip_nameaddr_parse(slice_cstr(bad[i]), &na) != EBADMSG)
			fail_msg("accepted name-addr %s", bad[i]);
}

static void test_params(void **state)
{
	(void)state;
	struct sip_param p;
	struct slice s = SLICE_LIT(" ; a = 1 ;B;c=\"x;y\" ;d=");
	assert_true(sip_param_find(s, "a", &p));
	assert_slice(p.name, "a");
	assert_slice(p.value, "1");
	assert_true(sip_param_find(s, "b", &p));
	assert_false(p.has_value);
	assert_true(sip_param_find(s, "c", &p));
	assert_slice(p.value, "\"x;y\"");
	assert_true(sip_param_find(s, "d", &p));
	assert_true(p.has_value);
	assert_int_equal(p.value.l, 0);
	assert_false(sip_param_find(s, "y", &p));
	assert_false(sip_param_find(SLICE_NULL, "a", &p));
	/* without a leading ';' too */
	assert_true(sip_param_find(SLICE_LIT("lr;x=1"), "lr", &p));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_uri_full),
		cmocka_unit_test(test_uri_forms),
		cmocka_unit_test(test_uri_bad),
		cmocka_unit_test(test_uri_eq),
		cmocka_unit_test(test_uri_eq_rules),
		cmocka_unit_test(test_via),
		cmocka_unit_test(test_nameaddr),
		cmocka_unit_test(test_params),
	};
	return cmocka_run_group_tests_name("sip_uri", tests, NULL, NULL);
}
