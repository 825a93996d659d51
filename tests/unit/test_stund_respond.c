/* The Binding responder: success, 420, 400, drops, RFC 5780 answers and amplification bounds. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "stun/stun.h"
#include "stund/stund.h"

static struct sockaddr_storage v4(const char *ip, uint16_t port)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof ss);
	struct sockaddr_in *in = (struct sockaddr_in *)&ss;
	in->sin_family = AF_INET;
	in->sin_port = htons(port);
	inet_pton(AF_INET, ip, &in->sin_addr);
	return ss;
}

static struct sockaddr_storage v6(const char *ip, uint16_t port)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof ss);
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
	in6->sin6_family = AF_INET6;
	in6->sin6_port = htons(port);
	inet_pton(AF_INET6, ip, &in6->sin6_addr);
	return ss;
}

static bool addr_eq(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return false;
	size_t l =
	    a->ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
	return memcmp(a, b, l) == 0;
}

/* Whether m carries attr, an address equal to want; says which part failed when not. */
static bool addr_attr_is(const struct stun_msg *m, uint16_t attr,
			 const struct sockaddr_storage *want)
{
	struct sockaddr_storage got;
	int err = stun_msg_addr(m, attr, &got);
	if (err)
		print_error("attribute 0x%04x: stun_msg_addr = %d\n", attr, err);
	else if (!addr_eq(&got, want))
		print_error("attribute 0x%04x: another address\n", attr);
	return !err && addr_eq(&got, want);
}

/* Runs the responder and decodes what it built; returns its result. */
static int respond(const struct stund_view *v, unsigned in, const struct sockaddr_storage *src,
		   const struct buf *req, struct buf *resp, struct stund_reply *r,
		   struct stun_msg *m)
{
	buf_reset(resp);
	int err = stund_respond(v, in, (const struct sockaddr *)src, req->data, req->len, resp, r);
	if (err == 0) {
		assert_int_equal(stun_msg_decode(m, resp->data, resp->len), 0);
		/* the amplification bound, whatever the request */
		assert_true(resp->len <= MAX(req->len, (size_t)STUND_RESP_FLOOR));
		/* same transaction */
		assert_memory_equal(resp->data + 4, req->data + 4, 16);
	}
	return err;
}

static void binding(struct buf *b, struct stun_enc *e)
{
	buf_reset(b);
	stun_enc_begin(e, b, STUN_METHOD_BINDING, STUN_CLASS_REQUEST, NULL);
}

static void test_plain_binding(void **state)
{
	(void)state;
	struct buf req, resp;
	buf_init(&req);
	buf_init(&resp);
	struct stun_enc e;
	struct stun_msg m;
	struct stund_reply r;
	struct sockaddr_storage src = v4("100.64.1.2", 40000);

	binding(&req, &e);
	assert_int_equal(respond(NULL, 0, &src, &req, &resp, &r, &m), 0);
	assert_int_equal(m.cls, STUN_CLASS_SUCCESS);
	assert_int_equal(m.method, STUN_METHOD_BINDING);
	assert_int_equal(r.code, 0);
	assert_int_equal(r.from, 0);
	assert_true(addr_eq(&r.to, &src));
	assert_true(addr_attr_is(&m, STUN_ATTR_XOR_MAPPED_ADDRESS, &src));
	assert_int_equal(m.nattr, 1); /* nothing optional without a view */
	assert_int_equal(resp.len, 32);

	/* with FINGERPRINT the answer has one, and IPv6 works the same way */
	src = v6("2001:db8::7", 5060);
	stun_enc_fingerprint(&e);
	assert_int_equal(respond(NULL, 0, &src, &req, &resp, &r, &m), 0);
	assert_int_equal(stun_msg_check_fingerprint(&m), 0);
	assert_true(addr_attr_is(&m, STUN_ATTR_XOR_MAPPED_ADDRESS, &src));

	/* stund_answer is the same thing */
	buf_reset(&resp);
	assert_int_equal(stund_answer((struct sockaddr *)&src, req.data, req.len, &resp), 0);
	buf_free(&req);
	buf_free(&resp);
}

static void test_rfc5769_request_answered(void **state)
{
	(void)state;
	/* RFC 5769 2.1: ICE attributes, USERNAME and MESSAGE-INTEGRITY; no
	 * credentials here, so the integrity is not checked and none is sent */
	static const uint8_t vec[] = {
	    0x00, 0x01, 0x00, 0x58, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34,
	    0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x10, 0x53, 0x54, 0x55, 0x4e,
	    0x20, 0x74, 0x65, 0x73, 0x74, 0x20, 0x63, 0x6c, 0x69, 0x65, 0x6e, 0x74, 0x00, 0x24,
	    0x00, 0x04, 0x6e, 0x00, 0x01, 0xff, 0x80, 0x29, 0x00, 0x08, 0x93, 0x2f, 0xf9, 0xb1,
	    0x51, 0x26, 0x3b, 0x36, 0x00, 0x06, 0x00, 0x09, 0x65, 0x76, 0x74, 0x6a, 0x3a, 0x68,
	    0x36, 0x76, 0x59, 0x20, 0x20, 0x20, 0x00, 0x08, 0x00, 0x14, 0x9a, 0xea, 0xa7, 0x0c,
	    0xbf, 0xd8, 0xcb, 0x56, 0x78, 0x1e, 0xf2, 0xb5, 0xb2, 0xd3, 0xf2, 0x49, 0xc1, 0xb5,
	    0x71, 0xa2, 0x80, 0x28, 0x00, 0x04, 0xe5, 0x7a, 0x3b, 0xcf};
	struct buf req, resp;
	buf_init(&req);
	buf_init(&resp);
	buf_append(&req, vec, sizeof vec);
	struct stun_msg m;
	struct stund_reply r;
	struct sockaddr_storage src = v4("192.0.2.1", 32853);
	assert_int_equal(respond(NULL, 0, &src, &req, &resp, &r, &m), 0);
	assert_int_equal(m.cls, STUN_CLASS_SUCCESS);
	assert_int_equal(stun_msg_check_fingerprint(&m), 0);
	assert_true(addr_attr_is(&m, STUN_ATTR_XOR_MAPPED_ADDRESS, &src));

	/* the same with one bit of the fingerprint wrong: dropped */
	req.data[req.len - 1] ^= 1;
	assert_int_equal(respond(NULL, 0, &src, &req, &resp, &r, &m), EACCES);
	buf_free(&req);
	buf_free(&resp);
}

static void test_classic(void **state)
{
	(void)state;
	/* RFC 3489: 128-bit transaction id, CHANGE-REQUEST with no flags */
	static const uint8_t vec[] = {0x00, 0x01, 0x00, 0x08, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66,
				      0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x00,
				      0x00, 0x03, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00};
	struct buf req, resp;
	buf_init(&req);
	buf_init(&resp);
	buf_append(&req, vec, sizeof vec);
	struct stun_msg m;
	struct stund_reply r;
	struct sockaddr_storage src = v4("100.64.0.9", 1024);
	assert_int_equal(respond(NULL, 0, &src, &req, &resp, &r, &m), 0);
	assert_true(m.classic);
	assert_true(addr_attr_is(&m, STUN_ATTR_MAPPED_ADDRESS, &src));
	assert_null(stun_msg_attr(&m, STUN_ATTR_XOR_MAPPED_ADDRESS));

	/* asking for a change from a single-address server: 420 */
	req.data[27] = STUN_CHANGE_IP;
	assert_int_equal(respond(NULL, 0, &src, &req, &resp, &r, &m), 0);
	assert_int_equal(m.cls, STUN_CLASS_ERROR);
	assert_int_equal(r.code, 420);
	buf_free(&req);
	buf_free(&resp);
}

static void test_unknown_420(void **state)
{
	(void)state;
	struct buf req, resp;
	buf_init(&req);
	buf_init(&resp);
	struct stun_enc e;
	struct stun_msg m;
	struct stund_reply r;
	struct sockaddr_storage src = v4("100.64.1.2", 40000);

	binding(&req, &e);
	stun_enc_u32(&e, 0x8055, 1); /* optional: ignored */
	assert_int_equal(respond(NULL, 0, &src, &req, &resp, &r, &m), 0);
	assert_int_equal(m.cls, STUN_CLASS_SUCCESS);

	stun_enc_u32(&e, 0x0055, 1);
	stun_enc_u32(&e, 0x0056, 1);
	stun_enc_fingerprint(&e);
	assert_int_equal(respond(NULL, 0, &src, &req, &resp, &r, &m), 0);
	assert_int_equal(m.cls, STUN_CLASS_ERROR);
	assert_int_equal(r.code, 420);
	uint16_t code, unk[4];
	size_t n;
	assert_int_equal(stun_attr_error(stun_msg_attr(&m, STUN_ATTR_ERROR_CODE), &code, NULL), 0);
	assert_int_equal(code, 420);
	assert_int_equal(
	    stun_attr_unknown(stun_msg_attr(&m, STUN_ATTR_UNKNOWN_ATTRIBUTES), unk, 4, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(unk[0], 0x0055);
	assert_int_equal(unk[1], 0x0056);
	assert_int_equal(stun_msg_check_fingerprint(&m), 0);

	/* RFC 5780 attributes on a server without a second address */
	binding(&req, &e);
	stun_enc_change(&e, STUN_CHANGE_PORT);
	stun_enc_response_port(&e, 9);
	assert_int_equal(respond(NULL, 0, &src, &req, &resp, &r, &m), 0);
	assert_int_equal(r.code, 420);
	assert_int_equal(
	    stun_attr_unknown(stun_msg_attr(&m, STUN_ATTR_UNKNOWN_ATTRIBUTES), unk, 4, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(unk[0], STUN_ATTR_CHANGE_REQUEST);
	assert_int_equal(unk[1], STUN_ATTR_RESPONSE_PORT);
	binding(&req, &e);
	stun_enc_change(&e, 0);
	assert_int_equal(respond(NULL, 0, &src, &req, &resp, &r, &m), 0);
	assert_int_equal(r.code, 0);
	buf_free(&req);
	buf_free(&resp);
}

static void test_drops_and_400(void **state)
{
	(void)state;
	struct buf req, resp;
	buf_init(&req);
	buf_init(&resp);
	struct stun_enc e;
	struct stun_msg m;
	struct stund_reply r;
	struct sockaddr_storage src = v4("100.64.1.2", 40000);

	buf_append_cstr(&req, "OPTIONS sip:x SIP/2.0\r\n\r\n");
	assert_int_equal(respond(NULL, 0, &src, &req, &resp, &r, &m), EBADMSG);
	buf_reset(&req);
	buf_append(&req, "\r\n\r\n", 4);
	assert_int_equal(respond(NULL, 0, &src, &req, &resp, &r, &m), EBADMSG);

	buf_reset(&req);
	stun_enc_begin(&e, &req, STUN_METHOD_BINDING, STUN_CLASS_INDICATION, NULL);
	assert_int_equal(respond(NULL, 0, &src, &req, &resp, &r, &m), ENOTSUP);
	buf_reset(&req);
	stun_enc_begin(&e, &req, STUN_METHOD_BINDING, STUN_CLASS_SUCCESS, NULL);
	stun_enc_addr(&e, STUN_ATTR_XOR_MAPPED_ADDRESS, (struct sockaddr *)&src);
	assert_int_equal(respond(NULL, 0, &src, &req, &resp, &r, &m), ENOTSUP);

	/* a method the server does not do */
	buf_reset(&req);
	stun_enc_begin(&e, &req, STUN_METHOD_ALLOCATE, STUN_CLASS_REQUEST, NULL);
	assert_int_equal(respond(NULL, 0, &src, &req, &resp, &r, &m), 0);
	assert_int_equal(m.cls, STUN_CLASS_ERROR);
	assert_int_equal(m.method, STUN_METHOD_ALLOCATE);
	assert_int_equal(r.code, 400);

	/* attributes that do not add up: 400 */
	binding(&req, &e);
	stun_enc_attr(&e, STUN_ATTR_SOFTWARE, "abcd", 4);
	req.data[23] = 9; /* SOFTWARE length runs past the end */
	assert_int_equal(respond(NULL, 0, &src, &req, &resp, &r, &m), 0);
	assert_int_equal(r.code, 400);
	binding(&req, &e);
	stun_enc_attr(&e, STUN_ATTR_CHANGE_REQUEST, "ab", 2);
	assert_int_equal(respond(NULL, 0, &src, &req, &resp, &r, &m), 0);
	assert_int_equal(r.code, 400);
	buf_free(&req);
	buf_free(&resp);
}

static struct stund_view view5780(void)
{
	struct stund_view v;
	memset(&v, 0, sizeof v);
	v.addr[0] = v4("198.18.0.1", 3478);
	v.addr[1] = v4("198.18.0.1", 3479);
	v.addr[2] = v4("198.18.0.2", 3478);
	v.addr[3] = v4("198.18.0.2", 3479);
	v.rfc5780 = true;
	v.software = "pinhole";
	return v;
}

static void test_rfc5780(void **state)
{
	(void)state;
	struct stund_view v = view5780();
	struct buf req, resp;
	buf_init(&req);
	buf_init(&resp);
	struct stun_enc e;
	struct stun_msg m;
	struct stund_reply r;
	struct sockaddr_storage src = v4("203.0.113.9", 61000);

	/* test I: no change; RESPONSE-ORIGIN is where it came in, OTHER-ADDRESS
	 * the diagonal */
	binding(&req, &e);
	assert_int_equal(respond(&v, 0, &src, &req, &resp, &r, &m), 0);
	assert_int_equal(r.from, 0);
	assert_true(addr_attr_is(&m, STUN_ATTR_RESPONSE_ORIGIN, &v.addr[0]));
	assert_true(addr_attr_is(&m, STUN_ATTR_OTHER_ADDRESS, &v.addr[3]));
	/* SOFTWARE fits too: 20 + 12 + 12 + 12 + 12 */
	assert_non_null(stun_msg_attr(&m, STUN_ATTR_SOFTWARE));

	/* change IP and port */
	binding(&req, &e);
	stun_enc_change(&e, STUN_CHANGE_IP | STUN_CHANGE_PORT);
	assert_int_equal(respond(&v, 0, &src, &req, &resp, &r, &m), 0);
	assert_int_equal(r.from, 3);
	assert_true(addr_attr_is(&m, STUN_ATTR_RESPONSE_ORIGIN, &v.addr[3]));

	/* change port only, arriving on the alternate IP */
	binding(&req, &e);
	stun_enc_change(&e, STUN_CHANGE_PORT);
	assert_int_equal(respond(&v, 2, &src, &req, &resp, &r, &m), 0);
	assert_int_equal(r.from, 3);
	assert_true(addr_attr_is(&m, STUN_ATTR_OTHER_ADDRESS, &v.addr[1]));

	/* RESPONSE-PORT: same IP, that port */
	binding(&req, &e);
	stun_enc_response_port(&e, 5000);
	assert_int_equal(respond(&v, 0, &src, &req, &resp, &r, &m), 0);
	struct sockaddr_storage want = v4("203.0.113.9", 5000);
	assert_true(addr_eq(&r.to, &want));
	/* still the source's own mapping */
	assert_true(addr_attr_is(&m, STUN_ATTR_XOR_MAPPED_ADDRESS, &src));
	binding(&req, &e);
	stun_enc_response_port(&e, 0);
	assert_int_equal(respond(&v, 0, &src, &req, &resp, &r, &m), 0);
	assert_int_equal(r.code, 400);

	/* classic clients get SOURCE-ADDRESS and CHANGED-ADDRESS */
	static const uint8_t classic[] = {0x00, 0x01, 0x00, 0x08, 1,	2,    3,    4,	 5,  6,
					  7,	8,    9,    10,	  11,	12,   13,   14,	 15, 16,
					  0x00, 0x03, 0x00, 0x04, 0x00, 0x00, 0x00, 0x06};
	buf_reset(&req);
	buf_append(&req, classic, sizeof classic);
	assert_int_equal(respond(&v, 0, &src, &req, &resp, &r, &m), 0);
	assert_int_equal(r.from, 3);
	assert_true(addr_attr_is(&m, STUN_ATTR_SOURCE_ADDRESS, &v.addr[3]));
	assert_true(addr_attr_is(&m, STUN_ATTR_CHANGED_ADDRESS, &v.addr[3]));
	buf_free(&req);
	buf_free(&resp);
}

static void test_amplification(void **state)
{
	(void)state;
	struct stund_view v = view5780();
	for (int i = 0; i < 4; i++) {
		char ip[64];
		snprintf(ip, sizeof ip, "2001:db8::%d", i + 1);
		v.addr[i] = v6(ip, (uint16_t)(3478 + (i & 1)));
	}
	v.software = "a rather long software description that does not fit";
	struct buf req, resp;
	buf_init(&req);
	buf_init(&resp);
	struct stun_enc e;
	struct stun_msg m;
	struct stund_reply r;
	struct sockaddr_storage src = v6("2001:db8:ffff::1", 61000);

	/* a bare 20-byte request over IPv6: XOR-MAPPED-ADDRESS, RESPONSE-ORIGIN and
	 * OTHER-ADDRESS fit in the budget, SOFTWARE does not */
	binding(&req, &e);
	assert_int_equal(respond(&v, 0, &src, &req, &resp, &r, &m), 0);
	assert_non_null(stun_msg_attr(&m, STUN_ATTR_OTHER_ADDRESS));
	assert_null(stun_msg_attr(&m, STUN_ATTR_SOFTWARE));
	assert_true(resp.len <= STUND_RESP_FLOOR);

	/* a padded request gets a response as large as itself, no larger */
	binding(&req, &e);
	stun_enc_padding(&e, 500);
	stun_enc_fingerprint(&e);
	assert_int_equal(respond(&v, 0, &src, &req, &resp, &r, &m), 0);
	assert_non_null(stun_msg_attr(&m, STUN_ATTR_PADDING));
	assert_non_null(stun_msg_attr(&m, STUN_ATTR_SOFTWARE));
	assert_int_equal(resp.len, req.len);
	assert_int_equal(stun_msg_check_fingerprint(&m), 0);

	/* many unknown attributes: the 420 lists a bounded number */
	binding(&req, &e);
	for (uint16_t t = 0x0050; t < 0x0070; t++)
		stun_enc_attr(&e, t, NULL, 0);
	assert_int_equal(respond(&v, 0, &src, &req, &resp, &r, &m), 0);
	assert_int_equal(r.code, 420);
	buf_free(&req);
	buf_free(&resp);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_plain_binding), cmocka_unit_test(test_rfc5769_request_answered),
	    cmocka_unit_test(test_classic),	  cmocka_unit_test(test_unknown_420),
	    cmocka_unit_test(test_drops_and_400), cmocka_unit_test(test_rfc5780),
	    cmocka_unit_test(test_amplification),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
