/* Unit tests of the SDP rewriter's ICE part ([proxy] ice = candidate): the relay added as a
 * candidate of type relay, or as an ICE-lite agent for a party without ICE. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "sdp/sdp.h"

#define CRLF "\r\n"

/* A softphone behind NAT with full ICE: host and srflx candidates for RTP and
 * RTCP, session-level credentials, a malformed candidate, trickle options. */
/* clang-format off */
static const char ice_offer[] =
	"v=0" CRLF
	"o=- 1 1 IN IP4 100.64.1.2" CRLF
	"s=-" CRLF
	"c=IN IP4 198.18.0.11" CRLF
	"t=0 0" CRLF
	"a=ice-ufrag:StbFyWc" CRLF
	"a=ice-pwd:N7jY38yuHCfZuGIXend7hYQKRTBll0y" CRLF
	"a=ice-options:trickle" CRLF
	"m=audio 42046 RTP/AVP 0 101" CRLF
	"a=rtcp:42047 IN IP4 198.18.0.11" CRLF
	"a=candidate:64400102 1 UDP 2113929471 100.64.1.2 42046 typ host" CRLF
	"a=candidate:64400102 2 UDP 2113929470 100.64.1.2 42047 typ host" CRLF
	"a=candidate:junk 1 UDP 5 100.64.1.2" CRLF
	"a=candidate:c612000a 1 UDP 1677721855 198.18.0.11 42046 typ srflx raddr 100.64.1.2 rport 42046" CRLF
	"a=candidate:c612000a 2 UDP 1677721854 198.18.0.11 42047 typ srflx raddr 100.64.1.2 rport 42047" CRLF
	"a=end-of-candidates" CRLF
	"a=sendrecv" CRLF;
/* clang-format on */

/* An endpoint with rtcp-mux and only component 1, whose own relay (TURN)
 * candidate has the lowest priority a candidate can have, and which uses our
 * foundation already. */
/* clang-format off */
static const char ice_mux[] =
	"v=0\n"
	"o=- 2 2 IN IP4 10.0.0.5\n"
	"s=-\n"
	"t=0 0\n"
	"a=ice-lite\n"
	"m=audio 4000 RTP/AVP 0\n"
	"c=IN IP4 10.0.0.5\n"
	"a=ice-ufrag:abcd\n"
	"a=ice-pwd:0123456789abcdefghijkl\n"
	"a=rtcp-mux\n"
	"a=candidate:pinholerelay 1 udp 1 203.0.113.9 5000 typ relay raddr 10.0.0.5 rport 4000\n"
	"a=candidate:h 1 udp 2130706431 10.0.0.5 4000 typ host\n"
	"a=sendrecv\n";
/* clang-format on */

/* A plain phone, no ICE. */
/* clang-format off */
static const char plain[] =
	"v=0" CRLF
	"o=- 3 3 IN IP4 192.168.1.23" CRLF
	"s=-" CRLF
	"c=IN IP4 192.168.1.23" CRLF
	"t=0 0" CRLF
	"m=audio 11780 RTP/AVP 0" CRLF
	"a=sendrecv" CRLF;
/* clang-format on */

static void rewrite(const char *in, struct sdp_media_rw *mrw, struct buf *out)
{
	struct sdp s;
	assert_int_equal(sdp_parse(&s, slice_cstr(in)), 0);
	struct sdp_rw rw = {.media = mrw,
			    .n_media = 1,
			    .replace_session_conn = true,
			    .strip_ice = true,
			    .add_nortpproxy = true};
	buf_init(out);
	assert_int_equal(sdp_rewrite(&s, &rw, out), 0);
	assert_false(out->failed);
}

static bool has(const struct buf *b, const char *line)
{
	struct slice s = buf_slice(b);
	size_t l = strlen(line);
	for (size_t i = 0; i + l <= s.l; i++)
		if ((i == 0 || s.p[i - 1] == '\n') && memcmp(s.p + i, line, l) == 0 &&
		    (i + l == s.l || s.p[i + l] == '\r' || s.p[i + l] == '\n'))
			return true;
	return false;
}

/* Offset of a line (its first occurrence), or SIZE_MAX. */
static size_t at(const struct buf *b, const char *prefix)
{
	struct slice s = buf_slice(b);
	size_t l = strlen(prefix);
	for (size_t i = 0; i + l <= s.l; i++)
		if ((i == 0 || s.p[i - 1] == '\n') && memcmp(s.p + i, prefix, l) == 0)
			return i;
	return SIZE_MAX;
}

static const struct sdp_media_rw relay_rw = {
    .af = SDP_AF_IP4,
    .addr = SLICE_LIT("198.18.0.1"),
    .port = 31000,
    .rtcp_port = 31001,
    .ice_candidate = true,
    .ice_rtcp_port = 31001,
};

/* The party's ICE stays, c= and m= name the relay (the default candidate,
 * which a party without ICE uses), and the relay's candidates come after the
 * party's own, before a=end-of-candidates, with priorities below all of them. */
static void test_candidate_added(void **state)
{
	(void)state;
	struct sdp_media_rw mrw = relay_rw;
	struct buf out;
	rewrite(ice_offer, &mrw, &out);
	assert_true(has(&out, "a=ice-ufrag:StbFyWc"));
	assert_true(has(&out, "a=ice-pwd:N7jY38yuHCfZuGIXend7hYQKRTBll0y"));
	assert_true(has(&out, "a=ice-options:trickle"));
	assert_true(has(&out, "c=IN IP4 198.18.0.1"));
	assert_true(has(&out, "m=audio 31000 RTP/AVP 0 101"));
	assert_true(has(&out, "a=rtcp:31001"));
	assert_true(has(&out, "a=candidate:64400102 1 UDP 2113929471 100.64.1.2 42046 typ host"));
	/* RFC 8445 5.1.2.1 with type preference 0: (2^8)*65535 + 256 - component */
	assert_true(has(&out, "a=candidate:pinholerelay 1 UDP 16777215 198.18.0.1 31000 typ relay "
			      "raddr 198.18.0.1 rport 31000"));
	assert_true(has(&out, "a=candidate:pinholerelay 2 UDP 16777214 198.18.0.1 31001 typ relay "
			      "raddr 198.18.0.1 rport 31001"));
	size_t last_own = at(&out, "a=candidate:c612000a 2 ");
	size_t ours = at(&out, "a=candidate:pinholerelay 1 ");
	size_t eoc = at(&out, "a=end-of-candidates");
	assert_true(last_own < ours && ours < eoc);
	/* a malformed candidate is the party's: copied as it was, and its
	 * priority (5) does not drag ours down */
	assert_true(has(&out, "a=candidate:junk 1 UDP 5 100.64.1.2"));
	assert_true(has(&out, "a=nortpproxy:yes"));

	/* the result parses, and every candidate of the party is still there */
	struct sdp s;
	assert_int_equal(sdp_parse(&s, buf_slice(&out)), 0);
	assert_int_equal(s.media[0].ice.n_candidates, 7);
	struct sdp_candidate c;
	assert_int_equal(sdp_candidate_parse(s.media[0].ice.candidates[5], &c), 0);
	assert_true(slice_eq(c.type, SLICE_LIT("relay")));
	assert_int_equal(c.component, 1);
	for (size_t i = 0; i < 5; i++) {
		struct sdp_candidate own;
		if (sdp_candidate_parse(s.media[0].ice.candidates[i], &own) == 0)
			assert_true(own.priority > c.priority);
	}
	buf_free(&out);
}

/* rtcp-mux with component 1 only: one candidate; below even the lowest
 * priority the party has (its own relay at 1: ours is 1 too, the floor);
 * our foundation taken by the party: another one; ICE-lite kept. */
static void test_candidate_mux_lite_foundation(void **state)
{
	(void)state;
	struct sdp_media_rw mrw = relay_rw;
	mrw.rtcp_port = 0;
	mrw.rtcp_mux = true;
	mrw.ice_rtcp_port = 0;
	struct buf out;
	rewrite(ice_mux, &mrw, &out);
	assert_true(has(&out, "a=ice-lite"));
	assert_true(has(&out, "a=rtcp-mux"));
	assert_true(has(&out, "a=candidate:pinholerelay1 1 UDP 1 198.18.0.1 31000 typ relay raddr "
			      "198.18.0.1 rport 31000"));
	assert_int_equal(at(&out, "a=candidate:pinholerelay1 2 "), SIZE_MAX);
	assert_int_equal(at(&out, "a=rtcp:"), SIZE_MAX);
	/* bare LF in, bare LF out */
	assert_null(memchr(out.data, '\r', out.len));
	buf_free(&out);
}

/* Without ice_candidate, strip_ice removes every ICE attribute, as before. */
static void test_strip_still(void **state)
{
	(void)state;
	struct sdp_media_rw mrw = relay_rw;
	mrw.ice_candidate = false;
	struct buf out;
	rewrite(ice_offer, &mrw, &out);
	assert_int_equal(at(&out, "a=ice-"), SIZE_MAX);
	assert_int_equal(at(&out, "a=candidate"), SIZE_MAX);
	assert_int_equal(at(&out, "a=end-of-candidates"), SIZE_MAX);
	buf_free(&out);
}

/* A party without ICE: the relay stands in as an ICE-lite agent. */
static void test_lite_agent(void **state)
{
	(void)state;
	struct sdp_media_rw mrw = relay_rw;
	mrw.ice_candidate = false;
	mrw.lite_ufrag = SLICE_LIT("Rel4yUfr");
	mrw.lite_pwd = SLICE_LIT("abcdefghijklmnopqrstuvwx");
	struct buf out;
	rewrite(plain, &mrw, &out);
	assert_true(has(&out, "a=ice-lite"));
	assert_true(at(&out, "a=ice-lite") < at(&out, "m=audio"));
	assert_true(has(&out, "a=ice-ufrag:Rel4yUfr"));
	assert_true(has(&out, "a=ice-pwd:abcdefghijklmnopqrstuvwx"));
	/* host type preference 126 (RFC 8445 5.1.2.2) */
	assert_true(
	    has(&out, "a=candidate:pinholerelay 1 UDP 2130706431 198.18.0.1 31000 typ host"));
	assert_true(
	    has(&out, "a=candidate:pinholerelay 2 UDP 2130706430 198.18.0.1 31001 typ host"));
	assert_true(has(&out, "c=IN IP4 198.18.0.1"));
	struct sdp s;
	assert_int_equal(sdp_parse(&s, buf_slice(&out)), 0);
	assert_true(s.ice.lite);
	struct slice u, p;
	assert_true(sdp_media_ice_creds(&s, 0, &u, &p));
	assert_true(slice_eq(u, SLICE_LIT("Rel4yUfr")));
	buf_free(&out);

	/* a rejected stream gets nothing */
	struct sdp_media_rw keep = {
	    .keep = true, .lite_ufrag = SLICE_LIT("x"), .lite_pwd = SLICE_LIT("y")};
	rewrite(plain, &keep, &out);
	assert_int_equal(at(&out, "a=ice"), SIZE_MAX);
	buf_free(&out);
}

static void test_candidate_parse(void **state)
{
	(void)state;
	struct sdp_candidate c;
	assert_int_equal(
	    sdp_candidate_parse(slice_cstr("c612000a 2 UDP 1677721854 198.18.0.11 42047 typ srflx "
					   "raddr 100.64.1.2 rport 42047"),
				&c),
	    0);
	assert_true(slice_eq(c.foundation, SLICE_LIT("c612000a")));
	assert_int_equal(c.component, 2);
	assert_int_equal(c.priority, 1677721854u);
	assert_true(slice_eq(c.addr, SLICE_LIT("198.18.0.11")));
	assert_int_equal(c.port, 42047);
	assert_true(slice_eq(c.type, SLICE_LIT("srflx")));
	assert_int_equal(
	    sdp_candidate_parse(slice_cstr("a+/9 1 tcp 7 ::1 9 typ host tcptype active"), &c), 0);

	static const char *const bad[] = {
	    "",
	    "f 1 UDP 1 1.2.3.4 5 typ",		     /* no type */
	    "f 1 UDP 1 1.2.3.4 5 type host",	     /* not "typ" */
	    "f 0 UDP 1 1.2.3.4 5 typ host",	     /* component 0 */
	    "f 257 UDP 1 1.2.3.4 5 typ host",	     /* component > 256 */
	    "f 1 UDP 0 1.2.3.4 5 typ host",	     /* priority 0 */
	    "f 1 UDP 2147483648 1.2.3.4 5 typ host", /* priority >= 2^31 */
	    "f 1 UDP -1 1.2.3.4 5 typ host",
	    "f 1 UDP 1 1.2.3.4 65536 typ host",				    /* port */
	    "f! 1 UDP 1 1.2.3.4 5 typ host",				    /* not an ice-char */
	    "123456789012345678901234567890123 1 UDP 1 1.2.3.4 5 typ host", /* 33 chars */
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		assert_int_equal(sdp_candidate_parse(slice_cstr(bad[i]), &c), EBADMSG);
}

/* Credentials at media level override the session's (RFC 8839 5.4). */
static void test_creds(void **state)
{
	(void)state;
	struct sdp s;
	struct slice u, p;
	assert_int_equal(sdp_parse(&s, slice_cstr(ice_offer)), 0);
	assert_true(sdp_media_ice_creds(&s, 0, &u, &p));
	assert_true(slice_eq(u, SLICE_LIT("StbFyWc")));
	assert_true(sdp_media_ice_component(&s, 0, 2));
	assert_int_equal(sdp_parse(&s, slice_cstr(ice_mux)), 0);
	assert_true(sdp_media_ice_creds(&s, 0, &u, &p));
	assert_true(slice_eq(u, SLICE_LIT("abcd")));
	assert_false(sdp_media_ice_component(&s, 0, 2));
	assert_int_equal(sdp_parse(&s, slice_cstr(plain)), 0);
	assert_false(sdp_media_ice_creds(&s, 0, &u, &p));
	assert_false(sdp_media_ice_creds(&s, 1, &u, &p));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_candidate_added),
	    cmocka_unit_test(test_candidate_mux_lite_foundation),
	    cmocka_unit_test(test_strip_still),
	    cmocka_unit_test(test_lite_agent),
	    cmocka_unit_test(test_candidate_parse),
	    cmocka_unit_test(test_creds),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
