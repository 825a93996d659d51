/* RFC 4475 section 3.1 torture messages through the SIP parser: what each must yield. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sip/sip.h"

/* How the parser must treat one message, next to what RFC 4475 expects of
 * the element as a whole. Where the parser accepts an invalid message the
 * rejection belongs to a layer above it, and check() asserts the parsed
 * value that layer decides on. */
struct vector {
	const char *file;
	int rc;             /* from sip_msg_parse() over a datagram */
	uint16_t status;    /* err.status when rc is EBADMSG */
	const char *reason; /* err.reason when rc is EBADMSG */
	const char *rfc;    /* the RFC's expected behaviour */
	void (*check)(const struct sip_msg *m);
};

static bool eq(struct slice s, const char *want)
{
	return s.l == strlen(want) && memcmp(s.p, want, s.l) == 0;
}

#define assert_slice(s, want) assert_true(eq((s), (want)))

static size_t count_values(const struct sip_msg *m, enum sip_hdr_id id)
{
	size_t n = 0;
	const struct sip_hdr *h;
	for (size_t i = 0; (h = sip_msg_hdr(m, id, i)) != NULL; i++) {
		size_t pos = 0;
		struct slice v;
		while (sip_hdr_next_value(h->value, &pos, &v))
			n++;
	}
	return n;
}

static void check_wsinv(const struct sip_msg *m)
{
	assert_int_equal(m->method, SIP_INVITE);
	assert_slice(m->ruri.params, ";unknownparam");
	assert_slice(m->to_tag, "1918181833n");
	assert_slice(m->from_tag, "98asjd8");
	assert_slice(m->from.display, "\"J Rosenberg \\\\\\\"\"");
	assert_int_equal(m->max_forwards, 68);
	assert_int_equal(m->cseq.num, 9);
	assert_int_equal(m->cseq.method, SIP_INVITE);
	assert_slice(m->via1.transport, "UDP");
	assert_slice(m->via1.host, "192.0.2.2");
	assert_slice(m->via1.branch, "390skdjuw");
	assert_int_equal(m->content_length, 150);
	assert_int_equal(m->body.l, 150);
	assert_int_equal(m->n_hdrs, 14);
	assert_int_equal(count_values(m, SIP_HDR_VIA), 3);
	/* the folded second Via line */
	const struct sip_hdr *h = sip_msg_hdr(m, SIP_HDR_VIA, 1);
	size_t pos = 0;
	struct slice v;
	struct sip_via via;
	assert_true(sip_hdr_next_value(h->value, &pos, &v));
	assert_int_equal(sip_via_parse(v, &via), 0);
	assert_slice(via.transport, "TCP");
	assert_slice(via.branch, "z9hG4bK9ikj8");
	assert_true(sip_hdr_next_value(h->value, &pos, &v));
	assert_int_equal(sip_via_parse(v, &via), 0);
	assert_slice(via.host, "192.168.255.111");
	assert_slice(via.branch, "z9hG4bK30239");
	/* Contact with parameters spread over folded lines */
	struct sip_nameaddr na;
	assert_int_equal(sip_nameaddr_parse(sip_msg_hdr(m, SIP_HDR_CONTACT, 0)->value, &na), 0);
	assert_slice(na.display, "\"Quoted string \\\"\\\"\"");
	struct sip_param p;
	assert_true(sip_param_find(na.params, "q", &p));
	assert_slice(p.value, "0.33");
	assert_true(sip_param_find(na.params, "newparam", &p));
	assert_slice(p.value, "newvalue");
	assert_true(sip_param_find(na.params, "secondparam", &p));
	assert_false(p.has_value);
	assert_int_equal(sip_nameaddr_parse(sip_msg_hdr(m, SIP_HDR_ROUTE, 0)->value, &na), 0);
	assert_true(sip_param_find(na.uri.params, "lr", NULL));
	assert_slice(sip_msg_hdr(m, SIP_HDR_SUBJECT, 0)->value, "");
	assert_slice(sip_msg_hdr_named(m, "NewFangledHeader")->value,
		     "newfangled value\r\n continued newfangled value");
	assert_slice(sip_msg_hdr_named(m, "UnknownHeaderWithUnusualValue")->value, ";;,,;;,;");
}

static void check_intmeth(const struct sip_msg *m)
{
	assert_int_equal(m->method, SIP_METHOD_UNKNOWN);
	assert_slice(m->method_s, "!interesting-Method0123456789_*+`.%indeed'~");
	assert_slice(m->ruri.user, "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*");
	assert_slice(m->ruri.password, "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)");
	assert_true(slice_eq(m->cseq.method_s, m->method_s));
	assert_int_equal(m->max_forwards, 255);
	assert_slice(m->via1.branch, "z9hG4bK-.!%66*_+`'~");
	/* the display name keeps its quoted-pairs of BEL, NUL and DEL */
	assert_int_equal(m->to.display.l, 22);
	assert_memory_equal(m->to.display.p, "\"BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f\"", 22);
	assert_slice(m->from.display, "token1~` token2'+_ token3*%!.-");
	assert_slice(m->from_tag, "_token~1'+`*%!-.");
	assert_slice(m->call_id, "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{");
	assert_non_null(sip_msg_hdr_named(m, "extensionHeader-!.%*+_`'~"));
}

static void check_esc01(const struct sip_msg *m)
{
	assert_slice(m->ruri.user, "sips%3Auser%40example.com");
	assert_slice(m->ruri.host, "example.net");
	assert_slice(m->to.uri.user, "%75se%72");
	assert_slice(m->call_id, "esc01.239409asdfakjkn23onasd0-3234");
	struct sip_nameaddr na;
	assert_int_equal(sip_nameaddr_parse(sip_msg_hdr(m, SIP_HDR_CONTACT, 0)->value, &na), 0);
	assert_slice(na.uri.params, ";%6C%72;n%61me=v%61lue%25%34%31");
	assert_int_equal(sip_hdr_id_from(SLICE_LIT("C")), SIP_HDR_CONTENT_TYPE);
	assert_non_null(sip_msg_hdr(m, SIP_HDR_CONTENT_TYPE, 0));
}

static void check_escnull(const struct sip_msg *m)
{
	assert_int_equal(m->method, SIP_REGISTER);
	assert_slice(m->to.uri.user, "null-%00-null");
	assert_int_equal(sip_msg_hdr_count(m, SIP_HDR_CONTACT), 2);
	struct sip_nameaddr na;
	assert_int_equal(sip_nameaddr_parse(sip_msg_hdr(m, SIP_HDR_CONTACT, 1)->value, &na), 0);
	assert_slice(na.uri.user, "%00%00");
	assert_int_equal(m->content_length, 0);
}

static void check_esc02(const struct sip_msg *m)
{
	assert_slice(m->method_s, "RE%47IST%45R");
	assert_int_equal(m->method, SIP_METHOD_UNKNOWN);
	assert_slice(m->from.display, "\"%Z%45\"");
	assert_slice(m->via1.branch, "z9hG4bK209%fzsnel234");
	/* "C%6Fntact" is not Contact */
	assert_int_equal(sip_msg_hdr_count(m, SIP_HDR_CONTACT), 2);
	assert_non_null(sip_msg_hdr_named(m, "C%6Fntact"));
}

static void check_lwsdisp(const struct sip_msg *m)
{
	assert_slice(m->from.display, "caller");
	assert_slice(m->from.uri_s, "sip:caller@example.com");
	assert_slice(m->from_tag, "323");
}

static void check_longreq(const struct sip_msg *m)
{
	assert_int_equal(sip_msg_hdr_count(m, SIP_HDR_VIA), 34);
	assert_slice(m->via1.host, "sip33.example.com");
	assert_int_equal(m->to.uri.port, 6000);
	assert_int_equal(m->from_tag.l, 2 + 150 + 3);
	assert_int_equal(m->call_id.l, strlen("longreq.one") + 6 * 20 + strlen("longcallid"));
	const struct sip_hdr *last = sip_msg_hdr(m, SIP_HDR_VIA, 33);
	struct sip_via via;
	assert_int_equal(sip_via_parse(last->value, &via), 0);
	assert_slice(via.received, "192.0.2.5");
	assert_int_equal(via.branch.l, 4 + 200 + 11);
	assert_int_equal(m->body.l, 150);
}

static void check_dblreq(const struct sip_msg *m)
{
	/* RFC 3261 18.3: the INVITE after Content-Length is noise */
	assert_int_equal(m->method, SIP_REGISTER);
	assert_int_equal(m->content_length, 0);
	assert_int_equal(m->body.l, 0);
	assert_true(m->raw.l > m->hdr_end);
}

static void check_semiuri(const struct sip_msg *m)
{
	assert_slice(m->ruri.user, "user;par=u%40example.net");
	assert_slice(m->ruri.host, "example.com");
	assert_int_equal(m->ruri.params.l, 0);
	const struct sip_hdr *acc = sip_msg_hdr_named(m, "Accept");
	size_t pos = 0, n = 0;
	struct slice v;
	while (sip_hdr_next_value(acc->value, &pos, &v))
		n++;
	assert_int_equal(n, 6);
}

static void check_transports(const struct sip_msg *m)
{
	static const char *const want[] = {"UDP", "SCTP", "TLS", "UNKNOWN", "TCP"};
	assert_int_equal(sip_msg_hdr_count(m, SIP_HDR_VIA), 5);
	for (size_t i = 0; i < 5; i++) {
		struct sip_via via;
		assert_int_equal(sip_via_parse(sip_msg_hdr(m, SIP_HDR_VIA, i)->value, &via), 0);
		assert_slice(via.transport, want[i]);
	}
	assert_slice(m->call_id, "transports.kijh4akdnaqjkwendsasfdj");
}

static void check_mpart01(const struct sip_msg *m)
{
	assert_int_equal(m->method, SIP_MESSAGE);
	assert_int_equal(m->content_length, 553);
	assert_int_equal(m->body.l, 553);
	assert_non_null(memchr(m->body.p, 0, m->body.l)); /* binary with NULs */
	assert_true(m->via1.rport);
	assert_int_equal(m->via1.port, 5070);
}

static void check_unreason(const struct sip_msg *m)
{
	assert_false(m->request);
	assert_int_equal(m->status, 200);
	assert_true(m->reason.l > 14);
	assert_memory_equal(m->reason.p, "= 2**3 * 5**2 ", 14);
	assert_int_equal(m->body.l, 154);
}

static void check_noreason(const struct sip_msg *m)
{
	assert_int_equal(m->status, 100);
	assert_int_equal(m->reason.l, 0);
	assert_slice(m->to_tag, "902jndnke3");
}

static void check_scalar02(const struct sip_msg *m)
{
	/* the other out-of-range values are exposed as text for the registrar,
	 * which treats them as absent (RFC 4475 3.1.2.4) */
	uint32_t v;
	assert_int_not_equal(slice_to_u32(sip_msg_hdr(m, SIP_HDR_EXPIRES, 0)->value,
					  UINT32_MAX, &v), 0);
	assert_int_equal(m->max_forwards, -1);
	struct sip_nameaddr na;
	struct sip_param p;
	assert_int_equal(sip_nameaddr_parse(sip_msg_hdr(m, SIP_HDR_CONTACT, 0)->value, &na), 0);
	assert_true(sip_param_find(na.params, "expires", &p));
	assert_int_not_equal(slice_to_u32(p.value, UINT32_MAX, &v), 0);
}

static void check_baddate(const struct sip_msg *m)
{
	/* accepted by the parser; Date is never interpreted by pinhole */
	const struct sip_hdr *d = sip_msg_hdr(m, SIP_HDR_DATE, 0);
	assert_non_null(d);
	assert_slice(d->value, "Fri, 01 Jan 2010 16:00:00 EST");
}

static void check_regbadct(const struct sip_msg *m)
{
	/* Contact is decoded on demand, by the registrar: that is where the
	 * unbracketed URI with headers is refused */
	struct sip_nameaddr na;
	const struct sip_hdr *c = sip_msg_hdr(m, SIP_HDR_CONTACT, 0);
	assert_non_null(c);
	assert_int_equal(sip_nameaddr_parse(c->value, &na), EBADMSG);
}

static void check_badvers(const struct sip_msg *m)
{
	/* enough was decoded to answer the 505 */
	assert_slice(m->call_id, "badvers.31417@c.example.com");
	assert_slice(m->from_tag, "qweoiqpe");
	assert_int_equal(m->cseq.num, 1);
}

static const struct vector vectors[] = {
	/* 3.1.1: valid, must parse */
	{"3.1.1.1_wsinv.dat", 0, 0, NULL, "accept", check_wsinv},
	{"3.1.1.2_intmeth.dat", 0, 0, NULL, "accept", check_intmeth},
	{"3.1.1.3_esc01.dat", 0, 0, NULL, "accept", check_esc01},
	{"3.1.1.4_escnull.dat", 0, 0, NULL, "accept", check_escnull},
	{"3.1.1.5_esc02.dat", 0, 0, NULL, "accept", check_esc02},
	{"3.1.1.6_lwsdisp.dat", 0, 0, NULL, "accept", check_lwsdisp},
	{"3.1.1.7_longreq.dat", 0, 0, NULL, "accept", check_longreq},
	{"3.1.1.8_dblreq.dat", 0, 0, NULL, "accept the REGISTER, ignore trailing octets", check_dblreq},
	{"3.1.1.9_semiuri.dat", 0, 0, NULL, "accept", check_semiuri},
	{"3.1.1.10_transports.dat", 0, 0, NULL, "accept", check_transports},
	{"3.1.1.11_mpart01.dat", 0, 0, NULL, "accept", check_mpart01},
	{"3.1.1.12_unreason.dat", 0, 0, NULL, "accept", check_unreason},
	{"3.1.1.13_noreason.dat", 0, 0, NULL, "accept", check_noreason},
	/* 3.1.2: invalid */
	{"3.1.2.1_badinv01.dat", EBADMSG, 400, "Bad Via", "400", NULL},
	{"3.1.2.2_clerr.dat", EBADMSG, 400, "Content-Length larger than body", "400", NULL},
	{"3.1.2.3_ncl.dat", EBADMSG, 400, "Bad Content-Length", "400", NULL},
	{"3.1.2.4_scalar02.dat", EBADMSG, 400, "Bad CSeq", "400 for the CSeq", check_scalar02},
	{"3.1.2.5_scalarlg.dat", EBADMSG, 0, "Bad CSeq", "discard the response", NULL},
	{"3.1.2.6_quotbal.dat", EBADMSG, 400, "Bad To", "400", NULL},
	{"3.1.2.7_ltgtruri.dat", EBADMSG, 400, "Bad Request-URI", "400", NULL},
	{"3.1.2.8_lwsruri.dat", EBADMSG, 400, "Bad Request-Line", "400", NULL},
	{"3.1.2.9_lwsstart.dat", EBADMSG, 400, "Bad Request-Line", "400", NULL},
	{"3.1.2.10_trws.dat", EBADMSG, 400, "Bad Request-Line", "400", NULL},
	{"3.1.2.11_escruri.dat", EBADMSG, 400, "Bad Request-URI", "400", NULL},
	{"3.1.2.12_baddate.dat", 0, 0, NULL,
	 "may accept, treating the zone as GMT, unless Date matters", check_baddate},
	{"3.1.2.13_regbadct.dat", 0, 0, NULL, "400 (registrar: Contact parse fails)",
	 check_regbadct},
	{"3.1.2.14_badaspec.dat", EBADMSG, 400, "Bad To", "400", NULL},
	{"3.1.2.15_baddn.dat", EBADMSG, 400, "Bad From", "400", NULL},
	{"3.1.2.16_badvers.dat", EBADMSG, 505, "Version Not Supported", "505", check_badvers},
	{"3.1.2.17_mismatch01.dat", EBADMSG, 400, "CSeq method does not match", "400", NULL},
	{"3.1.2.18_mismatch02.dat", EBADMSG, 400, "CSeq method does not match",
	 "501, or 400 (also acceptable)", NULL},
	{"3.1.2.19_bigcode.dat", EBADMSG, 0, "Bad Status-Line", "discard the response", NULL},
};

static char *load(const char *name, size_t *len)
{
	char path[512];
	snprintf(path, sizeof path, "%s/rfc4475/%s", TEST_DATA_DIR, name);
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	char *data = malloc(8192);
	*len = data ? fread(data, 1, 8192, f) : 0;
	fclose(f);
	return data;
}

static struct sip_msg msg;
/* The message under test; freed by the next run or the group teardown, so a
 * failed assertion (a longjmp) leaks nothing. */
static char *cur;

static int release(void **state)
{
	(void)state;
	free(cur);
	cur = NULL;
	return 0;
}

static void run_vector(const struct vector *v)
{
	size_t len;
	char *data = load(v->file, &len);
	if (!data)
		fail_msg("cannot read %s", v->file);
	/* an exact-size copy so ASan catches any read past the message */
	release(NULL);
	char *exact = cur = malloc(len);
	memcpy(exact, data, len);
	free(data);
	struct sip_parse_error err = {999, NULL};
	int rc = sip_msg_parse(&msg, exact, len, false, &err);
	bool ok = rc == v->rc;
	if (ok && rc)
		ok = err.status == v->status && err.reason && strcmp(err.reason, v->reason) == 0;
	if (!ok)
		fail_msg("%s: rc %d status %u reason \"%s\"; want rc %d status %u \"%s\" (RFC: %s)",
			 v->file, rc, err.status, err.reason ? err.reason : "", v->rc, v->status,
			 v->reason ? v->reason : "", v->rfc);
	if (v->check)
		v->check(&msg);
}

static void test_vectors(void **state)
{
	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(vectors); i++)
		run_vector(&vectors[i]);
}

/* Every valid message also frames over a stream, where Content-Length rules. */
static void test_valid_frame(void **state)
{
	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(vectors); i++) {
		const struct vector *v = &vectors[i];
		if (strncmp(v->file, "3.1.1.", 6) != 0)
			continue;
		size_t len, n = 0;
		release(NULL);
		char *data = cur = load(v->file, &len);
		assert_non_null(data);
		int rc = sip_frame(data, len, 65535, &n);
		if (rc != 0)
			fail_msg("%s: frame rc %d", v->file, rc);
		/* dblreq is one REGISTER plus noise; the rest are one message each */
		if (strstr(v->file, "dblreq"))
			assert_true(n < len);
		else
			assert_int_equal(n, len);
		assert_int_equal(sip_msg_parse(&msg, data, n, true, NULL), 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_vectors, release),
		cmocka_unit_test_teardown(test_valid_frame, release),
	};
	return cmocka_run_group_tests_name("sip_rfc4475", tests, NULL, release);
}
