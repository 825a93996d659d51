/* ua: the SIP ALG verdict: Pinhole-Seen decoding, the comparison of what the ua sent with what
 * the server saw (an ALG's rewrites found, a plain NAT's address change not mistaken for one),
 * and the verdict's words and JSON. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "edge/edge.h"
#include "ua/ua.h"

/* RFC 4648 base64 with padding, as the server writes it */
static void b64(const char *in, char *out)
{
	static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t n = strlen(in), o = 0;
	const unsigned char *p = (const unsigned char *)in;
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)p[i + 1] << 8;
		if (i + 2 < n)
			v |= p[i + 2];
		out[o++] = a[(v >> 18) & 63];
		out[o++] = a[(v >> 12) & 63];
		out[o++] = i + 1 < n ? a[(v >> 6) & 63] : '=';
		out[o++] = i + 2 < n ? a[v & 63] : '=';
	}
	out[o] = '\0';
}

static int decode(const char *text, struct ua_seen *s)
{
	char enc[4096];
	b64(text, enc);
	return ua_seen_decode(slice_cstr(enc), s);
}

static const char reg[] =
    "REGISTER sip:example.org SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 100.64.1.2:5062;rport;branch=z9hG4bKabc\r\n"
    "Max-Forwards: 70\r\n"
    "From: <sip:alice@example.org>;tag=1\r\n"
    "To: <sip:alice@example.org>\r\n"
    "Call-ID: c1\r\n"
    "CSeq: 1 REGISTER\r\n"
    "Contact: <sip:alice@100.64.1.2:5062>;reg-id=1;+sip.instance=\"<urn:uuid:x>\";expires=600\r\n"
    "Content-Length: 0\r\n\r\n";

static const char sdp[] = "v=0\r\n"
			  "o=- 1 1 IN IP4 100.64.1.2\r\n"
			  "s=-\r\n"
			  "c=IN IP4 100.64.1.2\r\n"
			  "t=0 0\r\n"
			  "m=audio 40000 RTP/AVP 0 8\r\n"
			  "a=rtpmap:0 PCMU/8000\r\n";

static void invite(char *out, size_t cap)
{
	snprintf(out, cap,
		 "INVITE sip:bob@example.org SIP/2.0\r\n"
		 "Via: SIP/2.0/UDP 100.64.1.2:5062;rport;branch=z9hG4bKinv\r\n"
		 "Max-Forwards: 70\r\n"
		 "From: <sip:alice@example.org>;tag=1\r\n"
		 "To: <sip:bob@example.org>\r\n"
		 "Call-ID: c2\r\n"
		 "CSeq: 1 INVITE\r\n"
		 "Contact: <sip:alice@100.64.1.2:5062>\r\n"
		 "Content-Type: application/sdp\r\n"
		 "Content-Length: %zu\r\n\r\n%s",
		 strlen(sdp), sdp);
}

static void test_decode(void **state)
{
	(void)state;
	struct ua_seen s;
	assert_int_equal(decode("src=198.18.0.11:2386\n"
				"via=SIP/2.0/UDP 198.18.0.11:2386;rport;branch=z9hG4bKabc\n"
				"contact=<sip:alice@198.18.0.11:2386>;reg-id=1\n"
				"sdp-c=198.18.0.11\n"
				"sdp-m=40000\n"
				"future=whatever",
				&s),
			 0);
	assert_true(s.has_src && s.has_via && s.has_contact && s.has_sdp_c && s.has_sdp_m);
	assert_string_equal(s.src, "198.18.0.11:2386");
	assert_string_equal(s.via, "SIP/2.0/UDP 198.18.0.11:2386;rport;branch=z9hG4bKabc");
	assert_string_equal(s.contact, "<sip:alice@198.18.0.11:2386>;reg-id=1");
	assert_string_equal(s.sdp_c, "198.18.0.11");
	assert_int_equal(s.sdp_m, 40000);

	/* a value too long for its field is left out, the rest stays */
	char big[600] = "contact=<sip:";
	memset(big + strlen(big), 'a', 400);
	strcat(big, "@h>\nvia=SIP/2.0/UDP 1.2.3.4:5060");
	assert_int_equal(decode(big, &s), 0);
	assert_false(s.has_contact);
	assert_true(s.has_via);
}

static void test_decode_refuses(void **state)
{
	(void)state;
	struct ua_seen s;
	assert_int_equal(ua_seen_decode(slice_cstr("c3JjPTEuMi4zLjQ6NQ*="), &s), EBADMSG);
	assert_int_equal(ua_seen_decode(slice_cstr("dmlhPXg=x"), &s), EBADMSG); /* after padding */
	assert_int_equal(ua_seen_decode(slice_cstr(""), &s), EBADMSG);
	/* only src: nothing to compare */
	assert_int_equal(decode("src=198.18.0.11:2386", &s), EBADMSG);
	/* a decoded text larger than any the server sends */
	static char huge[4001];
	memset(huge, 'A', sizeof huge - 1);
	assert_int_equal(ua_seen_decode(slice_cstr(huge), &s), EBADMSG);
}

static unsigned cmp(const char *sent, const char *seen_text)
{
	struct ua_seen s;
	assert_int_equal(decode(seen_text, &s), 0);
	return ua_alg_compare(slice_cstr(sent), &s);
}

static void test_register(void **state)
{
	(void)state;
	/* a plain NAT: the source changed, the text did not; the server's own
	 * Via parameters (received, rport=) do not count */
	assert_int_equal(cmp(reg, "src=198.18.0.11:31000\n"
				  "via=SIP/2.0/UDP 100.64.1.2:5062;rport=31000;branch=z9hG4bKabc;"
				  "received=198.18.0.11\n"
				  "contact=<sip:alice@100.64.1.2:5062>;reg-id=1"),
			 0);
	/* host case is not a rewrite */
	assert_int_equal(cmp(reg, "contact=<SIP:alice@100.64.1.2:5062>"), 0);
	/* an ALG: Via and Contact carry the NAT's address and port */
	assert_int_equal(cmp(reg, "src=198.18.0.11:31000\n"
				  "via=SIP/2.0/UDP 198.18.0.11:31000;rport;branch=z9hG4bKabc\n"
				  "contact=<sip:alice@198.18.0.11:31000>;reg-id=1"),
			 UA_ALG_VIA | UA_ALG_CONTACT);
	/* only the port (an ALG behind a port-preserving NAT changes the host,
	 * one that maps ports may change only the port) */
	assert_int_equal(cmp(reg, "contact=<sip:alice@100.64.1.2:31000>"), UA_ALG_CONTACT);
	assert_int_equal(cmp(reg, "via=SIP/2.0/UDP 100.64.1.2;branch=z9hG4bKabc"), UA_ALG_VIA);
	assert_int_equal(cmp(reg, "via=SIP/2.0/TCP 100.64.1.2:5062;branch=z9hG4bKabc"), UA_ALG_VIA);
	/* the top Via the server saw is another hop's (its own branch): no claim */
	assert_int_equal(cmp(reg, "via=SIP/2.0/UDP 203.0.113.5:5060;branch=z9hG4bKotherhop"), 0);
	/* an SDP key on a REGISTER (no body) is no claim */
	assert_int_equal(cmp(reg, "sdp-c=198.18.0.11\nsdp-m=1"), 0);
}

static void test_invite(void **state)
{
	(void)state;
	char inv[2048];
	invite(inv, sizeof inv);
	assert_int_equal(cmp(inv, "via=SIP/2.0/UDP 100.64.1.2:5062;branch=z9hG4bKinv\n"
				  "contact=<sip:alice@100.64.1.2:5062>\n"
				  "sdp-c=100.64.1.2\nsdp-m=40000"),
			 0);
	assert_int_equal(cmp(inv, "contact=<sip:alice@198.18.0.11:5062>\n"
				  "sdp-c=198.18.0.11\nsdp-m=40000"),
			 UA_ALG_CONTACT | UA_ALG_SDP);
	assert_int_equal(cmp(inv, "sdp-c=100.64.1.2\nsdp-m=41234"), UA_ALG_SDP);
	/* keys the server left out are not compared */
	assert_int_equal(cmp(inv, "sdp-m=40000"), 0);
	/* our request unparsable (cannot happen; no claim either) */
	assert_int_equal(cmp("garbage", "sdp-m=1"), 0);
}

static void test_words(void **state)
{
	(void)state;
	struct buf b;
	buf_init(&b);
	ua_alg_words(UA_ALG_CONTACT | UA_ALG_SDP, &b);
	buf_append(&b, "", 1);
	assert_string_equal(b.data,
			    "a SIP ALG on your router rewrote Contact and SDP: switch it off");
	buf_reset(&b);
	ua_alg_words(UA_ALG_VIA | UA_ALG_CONTACT | UA_ALG_SDP, &b);
	buf_append(&b, "", 1);
	assert_string_equal(b.data,
			    "a SIP ALG on your router rewrote Via, Contact and SDP: switch it off");
	buf_reset(&b);
	ua_alg_words(UA_ALG_VIA, &b);
	buf_append(&b, "", 1);
	assert_string_equal(b.data, "a SIP ALG on your router rewrote Via: switch it off");
	buf_reset(&b);
	ua_alg_words(0, &b);
	buf_append(&b, "", 1);
	assert_non_null(strstr(b.data, "no SIP ALG"));

	/* the event, in words and in JSON */
	buf_reset(&b);
	struct buf w;
	buf_init(&w);
	ua_alg_words(UA_ALG_CONTACT | UA_ALG_SDP, &w);
	buf_append(&w, "", 1);
	struct ua_event ev = {.kind = UA_EV_SIP_ALG,
			      .t_ms = 1234,
			      .method = "REGISTER",
			      .rewritten = UA_ALG_CONTACT | UA_ALG_SDP,
			      .detail = w.data};
	assert_int_equal(ua_event_format(&ev, true, &b), 0);
	buf_append(&b, "", 1);
	assert_string_equal(
	    b.data, "{\"event\":\"sip-alg\",\"t\":1.234,\"request\":\"REGISTER\",\"alg\":true,"
		    "\"rewritten\":[\"contact\",\"sdp\"],\"detail\":\"a SIP ALG on your router "
		    "rewrote Contact and SDP: switch it off\"}");
	buf_reset(&b);
	assert_int_equal(ua_event_format(&ev, false, &b), 0);
	buf_append(&b, "", 1);
	assert_string_equal(b.data, "1.234 sip-alg request=REGISTER alg=yes: a SIP ALG on your "
				    "router rewrote Contact and SDP: switch it off");
	buf_free(&w);
	buf_free(&b);
}

/* The seam end to end: the server's own encoder (edge_seen_append) on the
 * message as it arrived, the ua's decoder and comparison against what it sent. */
static unsigned through_server(const char *sent, const char *arrived, bool with_sdp)
{
	struct sip_msg *m = malloc(sizeof *m);
	assert_non_null(m);
	assert_int_equal(sip_msg_parse(m, arrived, strlen(arrived), false, NULL), 0);
	struct net_addr src;
	assert_int_equal(net_addr_parse("198.18.0.11:31000", 0, &src), 0);
	struct buf b;
	buf_init(&b);
	assert_int_equal(edge_seen_append(&b, m, &src, with_sdp), 0);
	buf_append(&b, "", 1);
	const char *v = strchr(b.data, ':');
	assert_non_null(v);
	assert_int_equal(strncmp(b.data, "Pinhole-Seen:", 13), 0);
	struct ua_seen seen;
	assert_int_equal(ua_seen_decode(slice_trim(slice_cstr(v + 1)), &seen), 0);
	assert_string_equal(seen.src, "198.18.0.11:31000");
	unsigned r = ua_alg_compare(slice_cstr(sent), &seen);
	buf_free(&b);
	free(m);
	return r;
}

static char *replace_all(const char *s, const char *from, const char *to)
{
	static char out[4096];
	size_t o = 0, fl = strlen(from), tl = strlen(to);
	while (*s && o + tl < sizeof out) {
		if (!strncmp(s, from, fl)) {
			memcpy(out + o, to, tl);
			o += tl;
			s += fl;
		} else {
			out[o++] = *s++;
		}
	}
	out[o] = '\0';
	return out;
}

static void test_seam(void **state)
{
	(void)state;
	/* a plain NAT: the text arrives as sent */
	assert_int_equal(through_server(reg, reg, false), 0);
	/* an ALG: every 100.64.1.2:5062 became the NAT's 198.18.0.11:31000 */
	assert_int_equal(
	    through_server(reg, replace_all(reg, "100.64.1.2:5062", "198.18.0.11:31000"), false),
	    UA_ALG_VIA | UA_ALG_CONTACT);
	char inv[2048], alg[4096];
	invite(inv, sizeof inv);
	assert_int_equal(through_server(inv, inv, true), 0);
	/* the ALG rewrites addresses in the SDP too (Content-Length kept: same length) */
	snprintf(alg, sizeof alg, "%s", replace_all(inv, "100.64.1.2", "198.18.0.9"));
	assert_int_equal(through_server(inv, alg, true), UA_ALG_VIA | UA_ALG_CONTACT | UA_ALG_SDP);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_decode),   cmocka_unit_test(test_decode_refuses),
	    cmocka_unit_test(test_register), cmocka_unit_test(test_invite),
	    cmocka_unit_test(test_words),    cmocka_unit_test(test_seam),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
