/* Unit tests for the SIP message parser, header index and TCP framing. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sip/sip.h"

static bool eq(struct slice s, const char *want)
{
	return s.l == strlen(want) && memcmp(s.p, want, s.l) == 0;
}

#define assert_slice(s, want) assert_true(eq((s), (want)))

/* Static, so a failed assertion (a longjmp) leaks nothing. */
static struct sip_msg msg_storage;

/* The parser keeps pointers into the input; messages live in static strings. */
static int parse(struct sip_msg *m, const char *text, bool stream, struct sip_parse_error *e)
{
	return sip_msg_parse(m, text, strlen(text), stream, e);
}

static const char invite[] =
	"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
	"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;rport\r\n"
	"Via: SIP/2.0/TCP proxy.example.com:5061;branch=z9hG4bKp1, SIP/2.0/UDP [2001:db8::1]:5070;branch=z9hG4bKx;received=192.0.2.9\r\n"
	"Max-Forwards: 70\r\n"
	"To: Bob <sip:bob@biloxi.example.com>\r\n"
	"From: \"Alice A.\" <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
	"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
	"CSeq: 314159 INVITE\r\n"
	"Contact: <sip:alice@pc33.atlanta.example.com>\r\n"
	"Supported: path, outbound\r\n"
	"Require: 100rel\r\n"
	"X-Custom: hello\r\n"
	"Content-Type: application/sdp\r\n"
	"Content-Length: 4\r\n"
	"\r\n"
	"v=0\n";

static void test_request(void **state)
{
	(void)state;
	struct sip_msg *m = &msg_storage;
	struct sip_parse_error e;
	assert_int_equal(parse(m, invite, false, &e), 0);
	assert_true(m->request);
	assert_int_equal(m->method, SIP_INVITE);
	assert_slice(m->method_s, "INVITE");
	assert_slice(m->ruri_s, "sip:bob@biloxi.example.com");
	assert_slice(m->ruri.user, "bob");
	assert_slice(m->ruri.host, "biloxi.example.com");
	assert_slice(m->version, "SIP/2.0");
	assert_slice(m->start_line, "INVITE sip:bob@biloxi.example.com SIP/2.0");
	assert_int_equal(m->n_hdrs, 13);
	assert_slice(m->via1.transport, "UDP");
	assert_slice(m->via1.host, "pc33.atlanta.example.com");
	assert_slice(m->via1.branch, "z9hG4bK776asdhds");
	assert_true(m->via1.rport);
	assert_int_equal(m->via1.rport_value.l, 0);
	assert_int_equal(m->via1_hdr, 0);
	assert_slice(m->call_id, "a84b4c76e66710@pc33.atlanta.example.com");
	assert_int_equal(m->cseq.num, 314159);
	assert_int_equal(m->cseq.method, SIP_INVITE);
	assert_slice(m->from_tag, "1928301774");
	assert_int_equal(m->to_tag.l, 0);
	assert_slice(m->from.display, "\"Alice A.\"");
	assert_slice(m->to.uri.user, "bob");
	assert_int_equal(m->max_forwards, 70);
	assert_int_equal(m->content_length, 4);
	assert_slice(m->body, "v=0\n");
	assert_int_equal(m->hdr_end, strlen(invite) - 4);

	assert_int_equal(sip_msg_hdr_count(m, SIP_HDR_VIA), 2);
	const struct sip_hdr *h = sip_msg_hdr(m, SIP_HDR_VIA, 1);
	assert_non_null(h);
	assert_slice(h->name, "Via");
	assert_null(sip_msg_hdr(m, SIP_HDR_VIA, 2));
	assert_null(sip_msg_hdr(m, SIP_HDR_ROUTE, 0));
	h = sip_msg_hdr(m, SIP_HDR_MAX_FORWARDS, 0);
	assert_slice(h->line, "Max-Forwards: 70\r\n");
	assert_slice(h->value, "70");
	h = sip_msg_hdr_named(m, "x-custom");
	assert_non_null(h);
	assert_slice(h->value, "hello");
	assert_null(sip_msg_hdr_named(m, "X-Other"));
	assert_non_null(sip_msg_hdr_named(m, "call-id"));

	assert_true(sip_msg_has_option(m, SIP_HDR_SUPPORTED, "outbound"));
	assert_true(sip_msg_has_option(m, SIP_HDR_SUPPORTED, "PATH"));
	assert_false(sip_msg_has_option(m, SIP_HDR_SUPPORTED, "gruu"));
	assert_true(sip_msg_has_option(m, SIP_HDR_REQUIRE, "100rel"));
	assert_false(sip_msg_has_option(m, SIP_HDR_PROXY_REQUIRE, "100rel"));
}

/* Via parameters: names case-insensitive, the first of each name counts,
 * and a bad value of a known one fails the whole Via. */
static void test_via_params(void **state)
{
	(void)state;
	struct sip_via v;
	assert_int_equal(sip_via_parse(SLICE_LIT("SIP/2.0/UDP h.example:1;BRANCH=z9hG4bKa;"
						 "branch=z9hG4bKb;ttl=5;ttl=300;Received=192.0.2.1;"
						 "rport=5;rport;maddr=m1;maddr=m2;x"),
				       &v),
			 0);
	assert_slice(v.branch, "z9hG4bKa");
	assert_slice(v.ttl, "5");
	assert_slice(v.received, "192.0.2.1");
	assert_true(v.rport);
	assert_slice(v.rport_value, "5");
	assert_slice(v.maddr, "m1");
	assert_int_equal(sip_via_parse(SLICE_LIT("SIP/2.0/UDP h;rport;branch=z9hG4bKc"), &v), 0);
	assert_true(v.rport);
	assert_int_equal(v.rport_value.l, 0);
	assert_slice(v.branch, "z9hG4bKc");
	const char *bad[] = {
	    "SIP/2.0/UDP h;branch=", "SIP/2.0/UDP h;received", "SIP/2.0/UDP h;maddr=",
	    "SIP/2.0/UDP h;ttl=256", "SIP/2.0/UDP h;rport=123456", "SIP/2.0/UDP h;rport=5x",
	    "SIP/2.0/UDP h;x=\"open", "SIP/2.0/UDP h;branch=z9hG4bKa;;",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		if (sip_via_parse(slice_cstr(bad[i]), &v) != EBADMSG)
			fail_msg("accepted: %s", bad[i]);
}

static void test_multi_values(void **state)
{
	(void)state;
	struct sip_msg *m = &msg_storage;
	assert_int_equal(parse(m, invite, false, NULL), 0);
	const struct sip_hdr *h = sip_msg_hdr(m, SIP_HDR_VIA, 1);
	size_t pos = 0;
	struct slice v;
	struct sip_via via;
	assert_true(sip_hdr_next_value(h->value, &pos, &v));
	assert_int_equal(sip_via_parse(v, &via), 0);
	assert_slice(via.transport, "TCP");
	assert_int_equal(via.port, 5061);
	assert_true(sip_hdr_next_value(h->value, &pos, &v));
	assert_int_equal(sip_via_parse(v, &via), 0);
	assert_slice(via.host, "[2001:db8::1]");
	assert_int_equal(via.port, 5070);
	assert_slice(via.received, "192.0.2.9");
	assert_false(via.rport);
	assert_false(sip_hdr_next_value(h->value, &pos, &v));

	/* quotes and <> protect commas */
	struct slice c = SLICE_LIT("\"a, b\" <sip:x@y;p=\"q,r\">;q=0.5 , <sip:z@w?h=1,2>,,  *");
	pos = 0;
	assert_true(sip_hdr_next_value(c, &pos, &v));
	assert_slice(v, "\"a, b\" <sip:x@y;p=\"q,r\">;q=0.5");
	assert_true(sip_hdr_next_value(c, &pos, &v));
	assert_slice(v, "<sip:z@w?h=1,2>");
	assert_true(sip_hdr_next_value(c, &pos, &v));
	assert_slice(v, "*");
	assert_false(sip_hdr_next_value(c, &pos, &v));
	pos = 0;
	assert_false(sip_hdr_next_value(SLICE_LIT(" , ,"), &pos, &v));
}

static const char compact[] =
	"OPTIONS sip:carol@chicago.example.com SIP/2.0\r\n"
	"v: SIP/2.0/UDP 192.0.2.4:5080;branch=z9hG4bKhjhs8ass877\r\n"
	"t: <sip:carol@chicago.example.com>\r\n"
	"f: sip:alice@atlanta.example.com;tag=1\r\n"
	"i: compact@192.0.2.4\r\n"
	"CSeq: 63104 OPTIONS\r\n"
	"m: <sip:alice@192.0.2.4>\r\n"
	"k: path\r\n"
	"c: text/plain\r\n"
	"e: gzip\r\n"
	"s: hi\r\n"
	"o: presence\r\n"
	"r: <sip:x@y>\r\n"
	"l: 0\r\n"
	"\r\n";

static void test_compact(void **state)
{
	(void)state;
	struct sip_msg *m = &msg_storage;
	assert_int_equal(parse(m, compact, true, NULL), 0);
	assert_int_equal(m->method, SIP_OPTIONS);
	assert_int_equal(m->via1.port, 5080);
	assert_slice(m->call_id, "compact@192.0.2.4");
	assert_slice(m->from_tag, "1");
	assert_slice(m->from.uri_s, "sip:alice@atlanta.example.com");
	assert_int_equal(m->content_length, 0);
	assert_int_equal(m->max_forwards, -1); /* not mandatory */
	static const enum sip_hdr_id ids[] = {
		SIP_HDR_VIA, SIP_HDR_TO, SIP_HDR_FROM, SIP_HDR_CALL_ID, SIP_HDR_CSEQ,
		SIP_HDR_CONTACT, SIP_HDR_SUPPORTED, SIP_HDR_CONTENT_TYPE,
		SIP_HDR_CONTENT_ENCODING, SIP_HDR_SUBJECT, SIP_HDR_EVENT, SIP_HDR_REFER_TO,
		SIP_HDR_CONTENT_LENGTH,
	};
	assert_int_equal(m->n_hdrs, ARRAY_SIZE(ids));
	for (size_t i = 0; i < ARRAY_SIZE(ids); i++)
		assert_int_equal(m->hdrs[i].id, ids[i]);
	assert_int_equal(m->body.l, 0);
}

static void test_hdr_table(void **state)
{
	(void)state;
	assert_int_equal(sip_hdr_id_from(SLICE_LIT("via")), SIP_HDR_VIA);
	assert_int_equal(sip_hdr_id_from(SLICE_LIT("V")), SIP_HDR_VIA);
	assert_int_equal(sip_hdr_id_from(SLICE_LIT("CALL-ID")), SIP_HDR_CALL_ID);
	assert_int_equal(sip_hdr_id_from(SLICE_LIT("www-authenticate")),
			 SIP_HDR_WWW_AUTHENTICATE);
	assert_int_equal(sip_hdr_id_from(SLICE_LIT("x")), SIP_HDR_OTHER);
	assert_int_equal(sip_hdr_id_from(SLICE_LIT("Vias")), SIP_HDR_OTHER);
	assert_int_equal(sip_hdr_id_from(SLICE_LIT("")), SIP_HDR_OTHER);
	for (int id = 1; id < SIP_HDR_COUNT_; id++) {
		const char *n = sip_hdr_name((enum sip_hdr_id)id);
		assert_non_null(n);
		assert_int_equal(sip_hdr_id_from(slice_cstr(n)), id);
	}
	assert_null(sip_hdr_name(SIP_HDR_OTHER));
	/* same first letter and length as a known name, but another name */
	assert_int_equal(sip_hdr_id_from(SLICE_LIT("Contacq")), SIP_HDR_OTHER);
	assert_int_equal(sip_hdr_id_from(SLICE_LIT("1-Header")), SIP_HDR_OTHER);
	assert_int_equal(sip_hdr_id_from(SLICE_LIT("m")), SIP_HDR_CONTACT);
	assert_int_equal(sip_hdr_id_from(SLICE_LIT("L")), SIP_HDR_CONTENT_LENGTH);
	assert_int_equal(sip_hdr_id_from(SLICE_LIT("a")), SIP_HDR_OTHER);
	assert_int_equal(sip_method_from(SLICE_LIT("REGISTER")), SIP_REGISTER);
	assert_int_equal(sip_method_from(SLICE_LIT("BYE")), SIP_BYE);
	assert_int_equal(sip_method_from(SLICE_LIT("BYES")), SIP_METHOD_UNKNOWN);
	assert_int_equal(sip_method_from(SLICE_LIT("")), SIP_METHOD_UNKNOWN);
	assert_int_equal(sip_method_from(SLICE_LIT("register")), SIP_METHOD_UNKNOWN);
	assert_string_equal(sip_method_name(SIP_PUBLISH), "PUBLISH");
	assert_null(sip_method_name(SIP_METHOD_UNKNOWN));
}

static const char response[] =
	"SIP/2.0 180 Ringing\r\n"
	"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;rport=5066;received=198.18.0.1\r\n"
	"To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n"
	"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
	"Call-ID: a84b4c76e66710\r\n"
	"CSeq: 314159 INVITE\r\n"
	"Content-Length: 0\r\n"
	"\r\n";

static void test_response(void **state)
{
	(void)state;
	struct sip_msg *m = &msg_storage;
	assert_int_equal(parse(m, response, false, NULL), 0);
	assert_false(m->request);
	assert_int_equal(m->status, 180);
	assert_slice(m->reason, "Ringing");
	assert_slice(m->to_tag, "a6c85cf");
	assert_slice(m->via1.rport_value, "5066");
	assert_slice(m->via1.received, "198.18.0.1");
	assert_int_equal(m->cseq.method, SIP_INVITE);
	/* CSeq need not match anything in a response */
}

struct bad_case {
	const char *text;
	bool stream;
	uint16_t status;
	const char *reason;
};

#define HDRS_OK                                                     \
	"Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"                    \
	"From: <sip:a@h>;tag=1\r\n"                                 \
	"To: <sip:b@h>\r\n"

static const struct bad_case bad[] = {
	{"INVITE sip:a@h SIP/2.0\r\n" HDRS_OK "CSeq: 1 INVITE\r\n\r\n", false, 400,
	 "Missing Call-ID"},
	{"INVITE sip:a@h SIP/2.0\r\n" HDRS_OK "Call-ID: x\r\n\r\n", false, 400, "Missing CSeq"},
	{"INVITE sip:a@h SIP/2.0\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:b@h>\r\n"
	 "Call-ID: x\r\nCSeq: 1 INVITE\r\n\r\n", false, 400, "Missing Via"},
	{"INVITE sip:a@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nTo: <sip:b@h>\r\n"
	 "Call-ID: x\r\nCSeq: 1 INVITE\r\n\r\n", false, 400, "Missing From"},
	{"INVITE sip:a@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:b@h>\r\n"
	 "Call-ID: x\r\nCSeq: 1 INVITE\r\n\r\n", false, 400, "Missing To"},
	{"INVITE sip:a@h SIP/2.0\r\n" HDRS_OK "Call-ID: x\r\nCSeq: 1 BYE\r\n\r\n", false, 400,
	 "CSeq method does not match"},
	{"INVITE sip:a@h SIP/2.0\r\n" HDRS_OK "Call-ID: x\r\nCSeq: x INVITE\r\n\r\n", false,
	 400, "Bad CSeq"},
	{"INVITE sip:a@h SIP/2.0\r\n" HDRS_OK "Call-ID: x\r\nCSeq: 2147483648 INVITE\r\n\r\n",
	 false, 400, "Bad CSeq"},
	{"INVITE sip:a@h SIP/2.0\r\n" HDRS_OK "Call-ID: x\r\nCSeq: 1 INVITE\r\nCSeq: 2 INVITE\r\n\r\n",
	 false, 400, "Bad CSeq"},
	{"INVITE sip:a@h SIP/2.0\r\n" HDRS_OK "Call-ID: x y\r\nCSeq: 1 INVITE\r\n\r\n", false,
	 400, "Bad Call-ID"},
	{"INVITE sip:a@h SIP/2.0\r\nVia: SIP/2.0/UDP\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:b@h>\r\n"
	 "Call-ID: x\r\nCSeq: 1 INVITE\r\n\r\n", false, 400, "Bad Via"},
	{"INVITE sip:a@h SIP/2.0\r\n" HDRS_OK "Call-ID: x\r\nCSeq: 1 INVITE\r\nMax-Forwards: 256\r\n\r\n",
	 false, 400, "Bad Max-Forwards"},
	{"INVITE sip:a@h SIP/2.0\r\n" HDRS_OK "Call-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: -1\r\n\r\n",
	 false, 400, "Bad Content-Length"},
	{"INVITE sip:a@h SIP/2.0\r\n" HDRS_OK "Call-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 5\r\n\r\nabc",
	 false, 400, "Content-Length larger than body"},
	{"INVITE sip:a@h SIP/2.0\r\n" HDRS_OK "Call-ID: x\r\nCSeq: 1 INVITE\r\n\r\n", true, 400,
	 "Missing Content-Length"},
	{"INVITE sip:a@h SIP/3.0\r\n" HDRS_OK "Call-ID: x\r\nCSeq: 1 INVITE\r\n\r\n", false, 505,
	 "Version Not Supported"},
	{"INVITE sip:a@h HTTP/1.1\r\n" HDRS_OK "Call-ID: x\r\nCSeq: 1 INVITE\r\n\r\n", false,
	 400, "Bad Request-Line"},
	{"INVITE  sip:a@h SIP/2.0\r\n" HDRS_OK "Call-ID: x\r\nCSeq: 1 INVITE\r\n\r\n", false,
	 400, "Bad Request-Line"},
	{"INVITE http://h/ SIP/2.0\r\n" HDRS_OK "Call-ID: x\r\nCSeq: 1 INVITE\r\n\r\n", false,
	 416, "Unsupported URI Scheme"},
	{"INVITE sip:a@h:99999 SIP/2.0\r\n" HDRS_OK "Call-ID: x\r\nCSeq: 1 INVITE\r\n\r\n",
	 false, 400, "Bad Request-URI"},
	{"INVITE sip:a@h SIP/2.0\r\n" HDRS_OK "Call-ID: x\r\nno colon here\r\nCSeq: 1 INVITE\r\n\r\n",
	 false, 400, "Bad header line"},
	{"INVITE sip:a@h SIP/2.0\r\n" HDRS_OK "Call-ID: x\r\nCSeq: 1 INVITE\r\n", false, 400,
	 "Truncated headers"},
	{"SIP/2.0 200 OK\r\n" HDRS_OK "CSeq: 1 INVITE\r\n\r\n", false, 0, "Missing Call-ID"},
	{"SIP/2.0 2000 OK\r\n" HDRS_OK "Call-ID: x\r\nCSeq: 1 INVITE\r\n\r\n", false, 0,
	 "Bad Status-Line"},
	{"SIP/2.0 099 OK\r\n" HDRS_OK "Call-ID: x\r\nCSeq: 1 INVITE\r\n\r\n", false, 0,
	 "Bad Status-Line"},
	{"SIP/3.0 200 OK\r\n" HDRS_OK "Call-ID: x\r\nCSeq: 1 INVITE\r\n\r\n", false, 0,
	 "Version Not Supported"},
	{"\r\n\r\n", false, 0, "Truncated message"},
	{"", false, 0, "Truncated message"},
};

static void test_bad(void **state)
{
	(void)state;
	struct sip_msg *m = &msg_storage;
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		struct sip_parse_error e = {999, NULL};
		int rc = parse(m, bad[i].text, bad[i].stream, &e);
		if (rc != EBADMSG || e.status != bad[i].status || !e.reason ||
		    strcmp(e.reason, bad[i].reason) != 0)
			fail_msg("case %zu: rc %d status %u reason %s", i, rc, e.status,
				 e.reason ? e.reason : "(null)");
	}
}

/* A 505 still exposes the headers needed to answer it. */
static void test_505_keeps_headers(void **state)
{
	(void)state;
	struct sip_msg *m = &msg_storage;
	struct sip_parse_error e;
	assert_int_equal(parse(m, "OPTIONS sip:a@h SIP/7.0\r\n" HDRS_OK
				  "Call-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\n", false, &e),
			 EBADMSG);
	assert_int_equal(e.status, 505);
	assert_slice(m->call_id, "x");
	assert_slice(m->via1.branch, "z9hG4bK1");
	assert_int_equal(m->cseq.num, 1);
}

static void test_too_many_headers(void **state)
{
	(void)state;
	struct sip_msg *m = &msg_storage;
	struct buf b;
	buf_init(&b);
	buf_append_cstr(&b, "MESSAGE sip:a@h SIP/2.0\r\n" HDRS_OK
			    "Call-ID: x\r\nCSeq: 1 MESSAGE\r\n");
	for (int i = 0; i < SIP_MAX_HEADERS; i++)
		buf_printf(&b, "X-H%d: %d\r\n", i, i);
	buf_append_cstr(&b, "\r\n");
	struct sip_parse_error e;
	assert_int_equal(sip_msg_parse(m, b.data, b.len, false, &e), EBADMSG);
	assert_int_equal(e.status, 400);
	assert_string_equal(e.reason, "Too many headers");
	assert_int_equal(m->n_hdrs, SIP_MAX_HEADERS);
	buf_free(&b);
}

static void test_folding_and_body(void **state)
{
	(void)state;
	static const char text[] =
		"\r\n\r\nMESSAGE sip:a@h SIP/2.0\r\n"
		"Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
		"From: <sip:a@h>;tag=1\r\n"
		"To: <sip:b@h>\r\n"
		"Subject: first\r\n second\r\n\tthird  \r\n"
		"Call-ID: x\r\n"
		"CSeq: 1\r\n  MESSAGE\r\n"
		"Content-Length: 3\r\n"
		"\r\n"
		"abcEXTRA";
	struct sip_msg *m = &msg_storage;
	assert_int_equal(parse(m, text, false, NULL), 0);
	assert_true(m->raw.p == text + 4);
	const struct sip_hdr *h = sip_msg_hdr(m, SIP_HDR_SUBJECT, 0);
	assert_slice(h->value, "first\r\n second\r\n\tthird");
	assert_slice(h->line, "Subject: first\r\n second\r\n\tthird  \r\n");
	assert_int_equal(m->cseq.method, SIP_MESSAGE);
	/* RFC 3261 18.3: datagram bytes past Content-Length are dropped */
	assert_slice(m->body, "abc");
	/* the same as a stream message needs exactly Content-Length bytes */
	assert_int_equal(sip_msg_parse(m, text + 4, strlen(text) - 4 - 5, true, NULL), 0);
	assert_slice(m->body, "abc");
	/* no Content-Length over a datagram: the rest is the body */
	static const char nocl[] = "MESSAGE sip:a@h SIP/2.0\n" HDRS_OK
				   "Call-ID: x\nCSeq: 1 MESSAGE\n\nhello";
	assert_int_equal(parse(m, nocl, false, NULL), 0);
	assert_slice(m->body, "hello");
	assert_int_equal(m->content_length, -1);
}

static void test_frame(void **state)
{
	(void)state;
	size_t n = 0;
	assert_int_equal(sip_frame("\r\n\r\n", 4, 65535, &n), 0);
	assert_int_equal(n, 4);
	assert_int_equal(sip_frame("\r\n", 2, 65535, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(sip_frame("\r\nINVITE", 8, 65535, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(sip_frame("\r\n\r", 3, 65535, &n), ENODATA);
	assert_int_equal(sip_frame("", 0, 65535, &n), ENODATA);

	size_t full = strlen(invite);
	assert_int_equal(sip_frame(invite, full, 65535, &n), 0);
	assert_int_equal(n, full);
	for (size_t cut = 1; cut < full; cut++)
		assert_int_equal(sip_frame(invite, cut, 65535, &n), ENODATA);
	/* two back to back */
	char two[2048];
	memcpy(two, invite, full);
	memcpy(two + full, compact, strlen(compact));
	assert_int_equal(sip_frame(two, full + strlen(compact), 65535, &n), 0);
	assert_int_equal(n, full);
	assert_int_equal(sip_frame(two + full, strlen(compact), 65535, &n), 0);
	assert_int_equal(n, strlen(compact));
	/* bounded by max */
	assert_int_equal(sip_frame(invite, full, 100, &n), EBADMSG);
	assert_int_equal(sip_frame(invite, 50, 100, &n), ENODATA);
	assert_int_equal(sip_frame(invite, full, full - 1, &n), EBADMSG);
	/* Content-Length is mandatory and must be valid */
	static const char nocl[] = "OPTIONS sip:a@h SIP/2.0\r\nVia: x\r\n\r\n";
	assert_int_equal(sip_frame(nocl, strlen(nocl), 65535, &n), EBADMSG);
	static const char badcl[] = "OPTIONS sip:a@h SIP/2.0\r\nl: 1x\r\n\r\n";
	assert_int_equal(sip_frame(badcl, strlen(badcl), 65535, &n), EBADMSG);
	static const char two_cl[] = "OPTIONS sip:a@h SIP/2.0\r\nl: 1\r\nContent-Length: 2\r\n\r\nab";
	assert_int_equal(sip_frame(two_cl, strlen(two_cl), 65535, &n), EBADMSG);
	static const char folded[] = "OPTIONS sip:a@h SIP/2.0\r\nContent-Length :\r\n 2\r\n\r\nab";
	assert_int_equal(sip_frame(folded, strlen(folded), 65535, &n), 0);
	assert_int_equal(n, strlen(folded));
	/* a header merely containing the name does not count */
	static const char xcl[] = "OPTIONS sip:a@h SIP/2.0\r\nX-Content-Length: 2\r\n\r\n";
	assert_int_equal(sip_frame(xcl, strlen(xcl), 65535, &n), EBADMSG);
	/* the name in any case, compact too; a 14-letter name that is not it */
	static const char *const cls[] = {
	    "OPTIONS sip:a@h SIP/2.0\r\nCONTENT-LENGTH: 2\r\n\r\nab",
	    "OPTIONS sip:a@h SIP/2.0\r\ncontent-length: 2\r\n\r\nab",
	    "OPTIONS sip:a@h SIP/2.0\r\nL: 2\r\n\r\nab"};
	for (size_t i = 0; i < 3; i++) {
		assert_int_equal(sip_frame(cls[i], strlen(cls[i]), 65535, &n), 0);
		assert_int_equal(n, strlen(cls[i]));
	}
	static const char near[] = "OPTIONS sip:a@h SIP/2.0\r\nContent-Lengtz: 2\r\n\r\nab";
	assert_int_equal(sip_frame(near, strlen(near), 65535, &n), EBADMSG);
}

/* The attack: a large message trickled a byte at a time over TCP (62 KB took
 * 0.14 s of CPU when every read rescanned the headers from the start).
 * Resumed framing examines each byte a bounded number of times, and answers
 * as the stateless framer does at every length. */
static void test_frame_resume_linear(void **state)
{
	(void)state;
	size_t hdr_lines = 1500;
	struct buf m;
	buf_init(&m);
	buf_append_cstr(&m, "MESSAGE sip:a@h SIP/2.0\r\n");
	for (size_t i = 0; i < hdr_lines; i++)
		buf_printf(&m, "X-Filler-%zu: %s\r\n", i, "abcdefghijklmnopqrstuvwxyz");
	buf_append_cstr(&m, "Content-Length: 5\r\n\r\nhello");
	assert_false(m.failed);
	size_t total = m.len, n = 0;
	struct sip_frame_state fs = {0};
	for (size_t l = 1; l < total; l++) {
		assert_int_equal(sip_frame_resume(&fs, m.data, l, 65535, &n), ENODATA);
		if (l % 997 == 0) /* the stateless framer agrees (spot checks) */
			assert_int_equal(sip_frame(m.data, l, 65535, &n), ENODATA);
	}
	assert_int_equal(sip_frame_resume(&fs, m.data, total, 65535, &n), 0);
	assert_int_equal(n, total);
	assert_false(fs.keepalive);
	/* each byte once, the two before each read's new ones again (they may
	 * begin the empty line), the headers once more for Content-Length:
	 * 4 per byte here; rescanning from the start is ~total/2 per byte */
	if (fs.work > 5 * total)
		fail_msg("%zu bytes examined to frame a %zu-byte message", fs.work, total);

	/* a keepalive run trickled in: linear too, and said to be one */
	struct sip_frame_state ks = {0};
	char crs[4000];
	memset(crs, '\r', sizeof crs);
	crs[sizeof crs - 1] = '\n';
	for (size_t l = 1; l < sizeof crs; l++)
		assert_int_equal(sip_frame_resume(&ks, crs, l, 65535, &n), ENODATA);
	assert_int_equal(sip_frame_resume(&ks, crs, sizeof crs, 65535, &n), 0);
	assert_int_equal(n, sizeof crs);
	assert_true(ks.keepalive);
	assert_true(ks.work <= sizeof crs);
	buf_free(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_request),
		cmocka_unit_test(test_via_params), cmocka_unit_test(test_multi_values),
		cmocka_unit_test(test_compact),
		cmocka_unit_test(test_hdr_table),
		cmocka_unit_test(test_response),
		cmocka_unit_test(test_bad),
		cmocka_unit_test(test_505_keeps_headers),
		cmocka_unit_test(test_too_many_headers),
		cmocka_unit_test(test_folding_and_body),
		cmocka_unit_test(test_frame),
		cmocka_unit_test(test_frame_resume_linear),
	};
	return cmocka_run_group_tests_name("sip_msg", tests, NULL, NULL);
}
