/* STUN codec against the RFC 5769 test vectors, plus encoder and malformed-input cases. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>

#include "stun/stun.h"

/* RFC 5769 2.1 "Sample Request": SOFTWARE, PRIORITY, ICE-CONTROLLED, USERNAME,
 * MESSAGE-INTEGRITY (short-term) and FINGERPRINT. */
static const char rfc5769_request[] =
    "00 01 00 58 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae"
    "80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74"
    "00 24 00 04 6e 00 01 ff"
    "80 29 00 08 93 2f f9 b1 51 26 3b 36"
    "00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20"
    "00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2"
    "80 28 00 04 e5 7a 3b cf";

/* RFC 5769 2.2 "Sample IPv4 Response": XOR-MAPPED-ADDRESS 192.0.2.1:32853. */
static const char rfc5769_v4_response[] =
    "01 01 00 3c 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae"
    "80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20"
    "00 20 00 08 00 01 a1 47 e1 12 a6 43"
    "00 08 00 14 2b 91 f5 99 fd 9e 90 c3 8c 74 89 f9 2a f9 ba 53 f0 6b e7 d7"
    "80 28 00 04 c0 7d 4c 96";

/* RFC 5769 2.3 "Sample IPv6 Response": [2001:db8:1234:5678:11:2233:4455:6677]:32853. */
static const char rfc5769_v6_response[] =
    "01 01 00 48 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae"
    "80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20"
    "00 20 00 14 00 02 a1 47 01 13 a9 fa a5 d3 f1 79 bc 25 f4 b5 be d2 b9 d9"
    "00 08 00 14 a3 82 95 4e 4b e6 7b f1 17 84 c9 7c 82 92 c2 75 bf e3 ed 41"
    "80 28 00 04 c8 fb 0b 4c";

/* RFC 5769 2.4 "Sample Request with Long-Term Authentication": USERNAME
 * (U+30DE U+30C8 U+30EA U+30C3 U+30AF U+30B9), NONCE, REALM, MESSAGE-INTEGRITY. */
static const char rfc5769_long_term[] =
    "00 01 00 60 21 12 a4 42 78 ad 34 33 c6 ad 72 c0 29 da 41 2e"
    "00 06 00 12 e3 83 9e e3 83 88 e3 83 aa e3 83 83 e3 82 af e3 82 b9 00 00"
    "00 15 00 1c 66 2f 2f 34 39 39 6b 39 35 34 64 36 4f 4c 33 34 6f 4c 39 46"
    "53 54 76 79 36 34 73 41"
    "00 14 00 0b 65 78 61 6d 70 6c 65 2e 6f 72 67 00"
    "00 08 00 14 f6 70 24 65 6d d6 4a 3e 02 b8 e0 71 2e 85 c9 a2 8c a8 96 66";

static const char short_term_pw[] = "VOkJxbRl1RmTxUk/WvJxBt";

static size_t unhex(const char *s, uint8_t *out, size_t cap)
{
	size_t n = 0;
	int hi = -1;
	for (; *s; s++) {
		int v;
		if (*s >= '0' && *s <= '9')
			v = *s - '0';
		else if (*s >= 'a' && *s <= 'f')
			v = *s - 'a' + 10;
		else
			continue;
		if (hi < 0) {
			hi = v;
		} else {
			assert_true(n < cap);
			out[n++] = (uint8_t)(hi << 4 | v);
			hi = -1;
		}
	}
	return n;
}

static void test_rfc5769_request(void **state)
{
	(void)state;
	uint8_t b[256];
	size_t n = unhex(rfc5769_request, b, sizeof b);
	assert_int_equal(n, 108);
	assert_true(stun_is_message(b, n));
	struct stun_msg m;
	assert_int_equal(stun_msg_decode(&m, b, n), 0);
	assert_int_equal(m.method, STUN_METHOD_BINDING);
	assert_int_equal(m.cls, STUN_CLASS_REQUEST);
	assert_false(m.classic);
	assert_int_equal(m.nattr, 6);
	assert_memory_equal(m.tid, "\xb7\xe7\xa7\x01\xbc\x34\xd6\x86\xfa\x87\xdf\xae", 12);
	assert_true(slice_eq(stun_attr_slice(stun_msg_attr(&m, STUN_ATTR_USERNAME)),
			     SLICE_LIT("evtj:h6vY")));
	assert_true(slice_eq(stun_attr_slice(stun_msg_attr(&m, STUN_ATTR_SOFTWARE)),
			     SLICE_LIT("STUN test client")));
	uint32_t prio;
	assert_int_equal(stun_attr_u32(stun_msg_attr(&m, STUN_ATTR_PRIORITY), &prio), 0);
	assert_int_equal(prio, 0x6e0001ff);
	uint64_t tie;
	assert_int_equal(stun_attr_u64(stun_msg_attr(&m, STUN_ATTR_ICE_CONTROLLED), &tie), 0);
	assert_true(tie == 0x932ff9b151263b36ull);
	assert_int_equal(stun_msg_check_fingerprint(&m), 0);
	assert_int_equal(stun_msg_check_integrity(&m, short_term_pw, strlen(short_term_pw)), 0);
	assert_int_equal(stun_msg_check_integrity(&m, "wrong", 5), EACCES);
	assert_int_equal(stun_msg_check_integrity_sha256(&m, "x", 1), ENOENT);
	uint16_t unk[4];
	assert_int_equal(stun_msg_unknown(&m, NULL, 0, unk, 4), 0);

	/* one flipped bit breaks both */
	b[30] ^= 1;
	assert_int_equal(stun_msg_decode(&m, b, n), 0);
	assert_int_equal(stun_msg_check_fingerprint(&m), EACCES);
	assert_int_equal(stun_msg_check_integrity(&m, short_term_pw, strlen(short_term_pw)),
			 EACCES);
}

static void check_response(const char *hex, int family, const char *ip)
{
	uint8_t b[256];
	size_t n = unhex(hex, b, sizeof b);
	struct stun_msg m;
	assert_int_equal(stun_msg_decode(&m, b, n), 0);
	assert_int_equal(m.method, STUN_METHOD_BINDING);
	assert_int_equal(m.cls, STUN_CLASS_SUCCESS);
	assert_int_equal(stun_msg_check_fingerprint(&m), 0);
	assert_int_equal(stun_msg_check_integrity(&m, short_term_pw, strlen(short_term_pw)), 0);
	assert_true(slice_eq(stun_attr_slice(stun_msg_attr(&m, STUN_ATTR_SOFTWARE)),
			     SLICE_LIT("test vector")));
	struct sockaddr_storage ss;
	assert_int_equal(stun_msg_addr(&m, STUN_ATTR_XOR_MAPPED_ADDRESS, &ss), 0);
	assert_int_equal(ss.ss_family, family);
	char txt[INET6_ADDRSTRLEN];
	if (family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;
		assert_int_equal(ntohs(in->sin_port), 32853);
		inet_ntop(AF_INET, &in->sin_addr, txt, sizeof txt);
	} else {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
		assert_int_equal(ntohs(in6->sin6_port), 32853);
		inet_ntop(AF_INET6, &in6->sin6_addr, txt, sizeof txt);
	}
	assert_string_equal(txt, ip);
	assert_int_equal(stun_msg_addr(&m, STUN_ATTR_MAPPED_ADDRESS, &ss), ENOENT);

	/* the encoder writes the same bytes: same attributes, same integrity and
	 * fingerprint (the RFC pads SOFTWARE with a space; the encoder with zero) */
	struct buf out;
	buf_init(&out);
	buf_append(&out, "pre", 3); /* a prefix: the encoder works after it */
	struct stun_enc e;
	stun_enc_begin(&e, &out, STUN_METHOD_BINDING, STUN_CLASS_SUCCESS, m.tid);
	stun_enc_str(&e, STUN_ATTR_SOFTWARE, SLICE_LIT("test vector"));
	out.data[3 + 20 + 4 + 11] = ' ';
	stun_enc_addr(&e, STUN_ATTR_XOR_MAPPED_ADDRESS, (struct sockaddr *)&ss);
	stun_enc_integrity(&e, short_term_pw, strlen(short_term_pw));
	stun_enc_fingerprint(&e);
	assert_int_equal(stun_enc_end(&e), 0);
	assert_int_equal(stun_enc_len(&e), n);
	assert_memory_equal(out.data + 3, b, n);
	buf_free(&out);
}

static void test_rfc5769_v4_response(void **state)
{
	(void)state;
	check_response(rfc5769_v4_response, AF_INET, "192.0.2.1");
}

static void test_rfc5769_v6_response(void **state)
{
	(void)state;
	check_response(rfc5769_v6_response, AF_INET6, "2001:db8:1234:5678:11:2233:4455:6677");
}

static void test_rfc5769_long_term(void **state)
{
	(void)state;
	uint8_t b[256];
	size_t n = unhex(rfc5769_long_term, b, sizeof b);
	struct stun_msg m;
	assert_int_equal(stun_msg_decode(&m, b, n), 0);
	assert_int_equal(m.fp, -1);
	assert_int_equal(stun_msg_check_fingerprint(&m), ENOENT);
	struct slice user = stun_attr_slice(stun_msg_attr(&m, STUN_ATTR_USERNAME));
	struct slice realm = stun_attr_slice(stun_msg_attr(&m, STUN_ATTR_REALM));
	struct slice nonce = stun_attr_slice(stun_msg_attr(&m, STUN_ATTR_NONCE));
	assert_true(slice_eq(user, SLICE_LIT("\xe3\x83\x9e\xe3\x83\x88\xe3\x83\xaa\xe3\x83\x83"
					     "\xe3\x82\xaf\xe3\x82\xb9")));
	assert_true(slice_eq(realm, SLICE_LIT("example.org")));
	assert_true(slice_eq(nonce, SLICE_LIT("f//499k954d6OL34oL9FSTvy64sA")));
	uint8_t key[32];
	size_t kl;
	/* the password "The<U+00AD>M<U+00AA>tr<U+2168>" after SASLprep */
	assert_int_equal(
	    stun_key_long_term(STUN_PWALG_MD5, user, realm, SLICE_LIT("TheMatrIX"), key, &kl), 0);
	assert_int_equal(kl, 16);
	assert_int_equal(stun_msg_check_integrity(&m, key, kl), 0);
	stun_key_long_term(STUN_PWALG_MD5, user, realm, SLICE_LIT("TheMatrix"), key, &kl);
	assert_int_equal(stun_msg_check_integrity(&m, key, kl), EACCES);
}

static void test_type_bits(void **state)
{
	(void)state;
	static const struct {
		uint16_t method;
		enum stun_class cls;
		uint16_t type;
	} t[] = {
	    {STUN_METHOD_BINDING, STUN_CLASS_REQUEST, 0x0001},
	    {STUN_METHOD_BINDING, STUN_CLASS_INDICATION, 0x0011},
	    {STUN_METHOD_BINDING, STUN_CLASS_SUCCESS, 0x0101},
	    {STUN_METHOD_BINDING, STUN_CLASS_ERROR, 0x0111},
	    {STUN_METHOD_ALLOCATE, STUN_CLASS_REQUEST, 0x0003},
	    {STUN_METHOD_SEND, STUN_CLASS_INDICATION, 0x0016},
	    {STUN_METHOD_CHANNEL_BIND, STUN_CLASS_SUCCESS, 0x0109},
	    {0xfff, STUN_CLASS_ERROR, 0x3fff},
	    {0x080, STUN_CLASS_REQUEST, 0x0200},
	};
	for (size_t i = 0; i < ARRAY_SIZE(t); i++) {
		assert_int_equal(stun_type(t[i].method, t[i].cls), t[i].type);
		assert_int_equal(stun_type_method(t[i].type), t[i].method);
		assert_int_equal(stun_type_class(t[i].type), t[i].cls);
	}
}

static void test_demux(void **state)
{
	(void)state;
	static const char sip[] = "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP x\r\n\r\n";
	assert_false(stun_is_message(sip, sizeof sip - 1));
	assert_false(stun_is_message("\r\n\r\n", 4));
	assert_false(stun_is_message("", 0));
	uint8_t b[256];
	size_t n = unhex(rfc5769_request, b, sizeof b);
	assert_true(stun_is_message(b, n));
	assert_false(stun_is_message(b, n - 1));
	assert_false(stun_is_message(b, n + 0 - 4)); /* length no longer matches */
	b[4] = 0;				     /* no cookie: classic only */
	assert_false(stun_is_message(b, n));
	assert_true(stun_is_message_classic(b, n));

	size_t ml = 0;
	n = unhex(rfc5769_request, b, sizeof b);
	assert_int_equal(stun_frame((char *)b, 3, 1500, &ml), ENODATA);
	assert_int_equal(stun_frame((char *)b, n - 1, 1500, &ml), ENODATA);
	assert_int_equal(stun_frame((char *)b, n, 1500, &ml), 0);
	assert_int_equal(ml, n);
	assert_int_equal(stun_frame((char *)b, n, 64, &ml), EBADMSG);
	assert_int_equal(stun_frame("INVITE", 6, 1500, &ml), EBADMSG);
}

static void test_malformed(void **state)
{
	(void)state;
	uint8_t b[256];
	struct stun_msg m;
	size_t n = unhex(rfc5769_request, b, sizeof b);
	assert_int_equal(stun_msg_decode(&m, b, 19), EBADMSG);
	assert_int_equal(stun_msg_decode(&m, b, n - 4), EBADMSG); /* header length too long */
	b[0] |= 0x80;
	assert_int_equal(stun_msg_decode(&m, b, n), EBADMSG);
	n = unhex(rfc5769_request, b, sizeof b);
	b[23] = 0x40; /* SOFTWARE runs past the end */
	assert_int_equal(stun_msg_decode(&m, b, n), EBADMSG);
	n = unhex(rfc5769_request, b, sizeof b);
	b[3] = 0x55; /* not a multiple of 4 */
	assert_int_equal(stun_msg_decode(&m, b, n), EBADMSG);

	/* a MESSAGE-INTEGRITY of the wrong size */
	struct buf out;
	buf_init(&out);
	struct stun_enc e;
	stun_enc_begin(&e, &out, STUN_METHOD_BINDING, STUN_CLASS_REQUEST, NULL);
	stun_enc_attr(&e, STUN_ATTR_MESSAGE_INTEGRITY, "short", 5);
	assert_int_equal(stun_enc_end(&e), 0);
	assert_int_equal(stun_msg_decode(&m, out.data, out.len), EBADMSG);
	buf_reset(&out);
	stun_enc_begin(&e, &out, STUN_METHOD_BINDING, STUN_CLASS_REQUEST, NULL);
	stun_enc_attr(&e, STUN_ATTR_FINGERPRINT, "ab", 2);
	assert_int_equal(stun_msg_decode(&m, out.data, out.len), EBADMSG);

	/* too many attributes */
	buf_reset(&out);
	stun_enc_begin(&e, &out, STUN_METHOD_BINDING, STUN_CLASS_REQUEST, NULL);
	for (int i = 0; i < STUN_MAX_ATTRS + 1; i++)
		stun_enc_attr(&e, STUN_ATTR_SOFTWARE, "x", 1);
	assert_int_equal(stun_enc_end(&e), 0);
	assert_int_equal(stun_msg_decode(&m, out.data, out.len), ENOTSUP);

	/* a bad address family */
	buf_reset(&out);
	stun_enc_begin(&e, &out, STUN_METHOD_BINDING, STUN_CLASS_SUCCESS, NULL);
	stun_enc_attr(&e, STUN_ATTR_XOR_MAPPED_ADDRESS, "\x00\x03\x00\x00\x01\x02\x03\x04", 8);
	stun_enc_attr(&e, STUN_ATTR_MAPPED_ADDRESS, "\x00\x01\x00\x00\x01\x02\x03", 7);
	assert_int_equal(stun_msg_decode(&m, out.data, out.len), 0);
	struct sockaddr_storage ss;
	assert_int_equal(stun_msg_addr(&m, STUN_ATTR_XOR_MAPPED_ADDRESS, &ss), EBADMSG);
	assert_int_equal(stun_msg_addr(&m, STUN_ATTR_MAPPED_ADDRESS, &ss), EBADMSG);
	buf_free(&out);
}

static void test_after_integrity_ignored(void **state)
{
	(void)state;
	struct buf out;
	buf_init(&out);
	struct stun_enc e;
	stun_enc_begin(&e, &out, STUN_METHOD_BINDING, STUN_CLASS_REQUEST, NULL);
	stun_enc_str(&e, STUN_ATTR_USERNAME, SLICE_LIT("alice"));
	stun_enc_integrity(&e, "key", 3);
	stun_enc_u32(&e, 0x0031, 7);			      /* unknown, but after integrity */
	stun_enc_integrity_sha256(&e, "key", 3);	      /* counts */
	stun_enc_str(&e, STUN_ATTR_SOFTWARE, SLICE_LIT("x")); /* ignored */
	stun_enc_fingerprint(&e);
	stun_enc_u32(&e, 0x0032, 7); /* after the fingerprint: ignored */
	assert_int_equal(stun_enc_end(&e), 0);
	struct stun_msg m;
	assert_int_equal(stun_msg_decode(&m, out.data, out.len), 0);
	assert_int_equal(m.nattr, 4);
	assert_int_equal(m.mi, 1);
	assert_int_equal(m.mi256, 2);
	assert_int_equal(m.fp, 3);
	assert_null(stun_msg_attr(&m, STUN_ATTR_SOFTWARE));
	uint16_t unk[4];
	assert_int_equal(stun_msg_unknown(&m, NULL, 0, unk, 4), 0);
	/* the integrity values were computed before the later attributes went in,
	 * and still verify: each covers exactly what precedes it */
	assert_int_equal(stun_msg_check_integrity(&m, "key", 3), 0);
	assert_int_equal(stun_msg_check_integrity_sha256(&m, "key", 3), 0);
	assert_int_equal(stun_msg_check_fingerprint(&m), 0);
	buf_free(&out);
}

static void test_attrs_roundtrip(void **state)
{
	(void)state;
	struct buf out;
	buf_init(&out);
	struct stun_enc e;
	uint8_t tid[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
	struct sockaddr_in in = {.sin_family = AF_INET, .sin_port = htons(3478)};
	inet_pton(AF_INET, "198.18.0.1", &in.sin_addr);
	struct sockaddr_in6 in6 = {.sin6_family = AF_INET6, .sin6_port = htons(5060)};
	inet_pton(AF_INET6, "2001:db8::5", &in6.sin6_addr);
	struct sockaddr_in6 mapped = {.sin6_family = AF_INET6, .sin6_port = htons(1)};
	inet_pton(AF_INET6, "::ffff:100.64.0.7", &mapped.sin6_addr);
	uint16_t unk_in[] = {0x0031, 0x7fff, 0x0002};
	uint16_t algs_in[] = {STUN_PWALG_SHA256, STUN_PWALG_MD5};

	stun_enc_begin(&e, &out, STUN_METHOD_BINDING, STUN_CLASS_ERROR, tid);
	stun_enc_error(&e, 420, NULL);
	stun_enc_unknown(&e, unk_in, 3);
	stun_enc_addr(&e, STUN_ATTR_RESPONSE_ORIGIN, (struct sockaddr *)&in);
	stun_enc_addr(&e, STUN_ATTR_OTHER_ADDRESS, (struct sockaddr *)&in6);
	stun_enc_addr(&e, STUN_ATTR_XOR_MAPPED_ADDRESS, (struct sockaddr *)&in6);
	stun_enc_addr(&e, STUN_ATTR_MAPPED_ADDRESS, (struct sockaddr *)&mapped);
	stun_enc_addr(&e, STUN_ATTR_ALTERNATE_SERVER, (struct sockaddr *)&in);
	stun_enc_change(&e, STUN_CHANGE_IP | STUN_CHANGE_PORT);
	stun_enc_response_port(&e, 40000);
	stun_enc_padding(&e, 7);
	stun_enc_pwalgs(&e, algs_in, 2);
	stun_enc_str(&e, STUN_ATTR_REALM, SLICE_LIT("pinhole"));
	stun_enc_str(&e, STUN_ATTR_NONCE, SLICE_LIT("obMatJos2AAACf//499k954d6OL34oL9FSTvy64sA"));
	uint8_t uh[32];
	stun_userhash(SLICE_LIT("bob"), SLICE_LIT("pinhole"), uh);
	stun_enc_attr(&e, STUN_ATTR_USERHASH, uh, 32);
	uint8_t key[32];
	size_t kl;
	assert_int_equal(stun_key_long_term(STUN_PWALG_SHA256, SLICE_LIT("bob"),
					    SLICE_LIT("pinhole"), SLICE_LIT("pw"), key, &kl),
			 0);
	assert_int_equal(kl, 32);
	stun_enc_integrity_sha256(&e, key, kl);
	stun_enc_fingerprint(&e);
	assert_int_equal(stun_enc_end(&e), 0);

	struct stun_msg m;
	assert_int_equal(stun_msg_decode(&m, out.data, out.len), 0);
	assert_int_equal(m.cls, STUN_CLASS_ERROR);
	assert_memory_equal(m.tid, tid, 12);
	uint16_t code;
	struct slice reason;
	assert_int_equal(stun_attr_error(stun_msg_attr(&m, STUN_ATTR_ERROR_CODE), &code, &reason),
			 0);
	assert_int_equal(code, 420);
	assert_true(slice_eq(reason, SLICE_LIT("Unknown Attribute")));
	uint16_t unk[8];
	size_t nu;
	assert_int_equal(
	    stun_attr_unknown(stun_msg_attr(&m, STUN_ATTR_UNKNOWN_ATTRIBUTES), unk, 8, &nu), 0);
	assert_int_equal(nu, 3);
	assert_memory_equal(unk, unk_in, sizeof unk_in);

	struct sockaddr_storage ss;
	assert_int_equal(stun_msg_addr(&m, STUN_ATTR_RESPONSE_ORIGIN, &ss), 0);
	assert_memory_equal(&ss, &in, sizeof in);
	assert_int_equal(stun_msg_addr(&m, STUN_ATTR_ALTERNATE_SERVER, &ss), 0);
	assert_memory_equal(&ss, &in, sizeof in);
	assert_int_equal(stun_msg_addr(&m, STUN_ATTR_OTHER_ADDRESS, &ss), 0);
	assert_memory_equal(&ss, &in6, sizeof in6);
	assert_int_equal(stun_msg_addr(&m, STUN_ATTR_XOR_MAPPED_ADDRESS, &ss), 0);
	assert_memory_equal(&ss, &in6, sizeof in6);
	assert_int_equal(stun_msg_addr(&m, STUN_ATTR_MAPPED_ADDRESS, &ss), 0);
	assert_int_equal(ss.ss_family, AF_INET); /* v4-mapped written as IPv4 */
	assert_int_equal(ntohs(((struct sockaddr_in *)&ss)->sin_port), 1);

	uint32_t flags;
	assert_int_equal(stun_attr_change(stun_msg_attr(&m, STUN_ATTR_CHANGE_REQUEST), &flags), 0);
	assert_int_equal(flags, STUN_CHANGE_IP | STUN_CHANGE_PORT);
	uint16_t port;
	assert_int_equal(stun_attr_response_port(stun_msg_attr(&m, STUN_ATTR_RESPONSE_PORT), &port),
			 0);
	assert_int_equal(port, 40000);
	assert_int_equal(stun_msg_attr(&m, STUN_ATTR_PADDING)->len, 7);
	uint16_t algs[4];
	size_t na;
	assert_int_equal(
	    stun_attr_pwalgs(stun_msg_attr(&m, STUN_ATTR_PASSWORD_ALGORITHMS), algs, 4, &na), 0);
	assert_int_equal(na, 2);
	assert_memory_equal(algs, algs_in, sizeof algs_in);
	assert_memory_equal(stun_msg_attr(&m, STUN_ATTR_USERHASH)->v, uh, 32);
	assert_int_equal(stun_msg_check_integrity_sha256(&m, key, kl), 0);
	assert_int_equal(stun_msg_check_integrity(&m, key, kl), ENOENT);
	assert_int_equal(stun_msg_check_fingerprint(&m), 0);

	/* nothing here is unknown, except what the caller says it cannot do */
	assert_int_equal(stun_msg_unknown(&m, NULL, 0, unk, 8), 0);
	buf_free(&out);
}

static void test_unknown_attrs(void **state)
{
	(void)state;
	struct buf out;
	buf_init(&out);
	struct stun_enc e;
	stun_enc_begin(&e, &out, STUN_METHOD_BINDING, STUN_CLASS_REQUEST, NULL);
	stun_enc_u32(&e, 0x0031, 1);
	stun_enc_u32(&e, 0x8031, 1);			 /* optional: never reported */
	stun_enc_u32(&e, 0x0031, 2);			 /* a duplicate is listed once */
	stun_enc_u32(&e, STUN_ATTR_RESPONSE_ADDRESS, 2); /* RFC 3489, not honoured */
	stun_enc_u32(&e, 0x0040, 3);
	assert_int_equal(stun_enc_end(&e), 0);
	struct stun_msg m;
	assert_int_equal(stun_msg_decode(&m, out.data, out.len), 0);
	uint16_t unk[8];
	assert_int_equal(stun_msg_unknown(&m, NULL, 0, unk, 8), 3);
	assert_int_equal(unk[0], 0x0031);
	assert_int_equal(unk[1], STUN_ATTR_RESPONSE_ADDRESS);
	assert_int_equal(unk[2], 0x0040);
	uint16_t extra[] = {0x0040};
	assert_int_equal(stun_msg_unknown(&m, extra, 1, unk, 8), 2);
	assert_int_equal(stun_msg_unknown(&m, NULL, 0, unk, 1), 1);
	buf_free(&out);
}

static void test_encoder_limits(void **state)
{
	(void)state;
	struct buf out;
	buf_init(&out);
	struct stun_enc e;
	stun_enc_begin(&e, &out, STUN_METHOD_BINDING, STUN_CLASS_REQUEST, NULL);
	static uint8_t big[70000];
	stun_enc_attr(&e, STUN_ATTR_DATA, big, sizeof big);
	assert_int_equal(stun_enc_end(&e), EMSGSIZE);
	buf_reset(&out);
	stun_enc_begin(&e, &out, STUN_METHOD_BINDING, STUN_CLASS_REQUEST, NULL);
	struct sockaddr sa = {.sa_family = AF_UNIX};
	stun_enc_addr(&e, STUN_ATTR_MAPPED_ADDRESS, &sa);
	stun_enc_fingerprint(&e); /* sticky: does nothing after an error */
	assert_int_equal(stun_enc_end(&e), EAFNOSUPPORT);
	assert_int_equal(stun_enc_len(&e), STUN_HDR_LEN);
	buf_reset(&out);
	stun_enc_begin(&e, &out, STUN_METHOD_BINDING, STUN_CLASS_ERROR, NULL);
	stun_enc_error(&e, 200, "no");
	assert_int_equal(stun_enc_end(&e), EINVAL);
	buf_free(&out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_rfc5769_request),
	    cmocka_unit_test(test_rfc5769_v4_response),
	    cmocka_unit_test(test_rfc5769_v6_response),
	    cmocka_unit_test(test_rfc5769_long_term),
	    cmocka_unit_test(test_type_bits),
	    cmocka_unit_test(test_demux),
	    cmocka_unit_test(test_malformed),
	    cmocka_unit_test(test_after_integrity_ignored),
	    cmocka_unit_test(test_attrs_roundtrip),
	    cmocka_unit_test(test_unknown_attrs),
	    cmocka_unit_test(test_encoder_limits),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
