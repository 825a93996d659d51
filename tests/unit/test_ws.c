/* WebSocket codec: RFC 6455's examples, the upgrade decision, fragmented, masked/unmasked, oversize and broken frames. */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "ws/ws.h"

#define REQ(extra)                                                                                 \
	"GET /sip HTTP/1.1\r\n"                                                                    \
	"Host: server.example.com\r\n"                                                             \
	"Upgrade: websocket\r\n"                                                                   \
	"Connection: keep-alive, Upgrade\r\n"                                                      \
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"                                          \
	"Sec-WebSocket-Version: 13\r\n" extra "\r\n"

static unsigned check(const char *req, const char *origins)
{
	struct ws_upgrade u;
	size_t used = 0;
	int err = ws_upgrade_parse(req, strlen(req), WS_UPGRADE_MAX, &u, &used);
	if (err)
		return 1000 + (unsigned)err;
	assert_int_equal(used, strlen(req));
	return ws_upgrade_check(&u, origins);
}

/* RFC 6455 1.3 and 4.2.2: the sample key and its accept value */
static void test_accept_key(void **state)
{
	(void)state;
	char acc[29];
	assert_int_equal(ws_accept_key(SLICE_LIT("dGhlIHNhbXBsZSBub25jZQ=="), acc), 0);
	assert_string_equal(acc, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");

	const char *req = REQ("Sec-WebSocket-Protocol: chat, sip\r\nOrigin: https://a.example\r\n");
	struct ws_upgrade u;
	size_t used;
	assert_int_equal(ws_upgrade_parse(req, strlen(req), WS_UPGRADE_MAX, &u, &used), 0);
	assert_int_equal(ws_upgrade_check(&u, NULL), 101);
	struct buf out;
	buf_init(&out);
	assert_int_equal(ws_upgrade_answer(&u, 101, &out), 0);
	buf_append(&out, "", 1);
	assert_non_null(strstr(out.data, "HTTP/1.1 101 "));
	assert_non_null(
	    strstr(out.data, "\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
	assert_non_null(strstr(out.data, "\r\nSec-WebSocket-Protocol: sip\r\n"));
	buf_free(&out);
}

static void test_upgrade_decision(void **state)
{
	(void)state;
	assert_int_equal(check(REQ("Sec-WebSocket-Protocol: sip\r\n"), NULL), 101);
	/* RFC 7118: sip is required */
	assert_int_equal(check(REQ(""), NULL), 400);
	assert_int_equal(check(REQ("Sec-WebSocket-Protocol: chat\r\n"), NULL), 400);
	/* a second header line also counts */
	assert_int_equal(
	    check(REQ("Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Protocol: sip\r\n"), NULL),
	    101);
	/* Origin against the list */
	const char *list = "https://phone.example.org, https://b.example";
	assert_int_equal(
	    check(REQ("Sec-WebSocket-Protocol: sip\r\nOrigin: https://PHONE.example.org\r\n"),
		  list),
	    101);
	assert_int_equal(
	    check(REQ("Sec-WebSocket-Protocol: sip\r\nOrigin: https://evil.example\r\n"), list),
	    403);
	assert_int_equal(
	    check(REQ("Sec-WebSocket-Protocol: sip\r\nOrigin: https://evil.example\r\n"), "*"),
	    101);
	assert_int_equal(check(REQ("Sec-WebSocket-Protocol: sip\r\n"), list), 101); /* no Origin */
	/* a wildcard entry: any host under the domain, same scheme and port */
	const char *wild = "https://phone.example.org, https://*.example.com";
	const struct {
		const char *origin;
		unsigned status;
	} w[] = {
	    {"https://a.example.com", 101},
	    {"https://a.b.EXAMPLE.com", 101},
	    {"HTTPS://x-1.example.com", 101},
	    {"https://example.com", 403},	  /* the domain itself is not under it */
	    {"https://evilexample.com", 403},	  /* nor a name that ends like it */
	    {"https://.example.com", 403},
	    {"http://a.example.com", 403},	  /* another scheme */
	    {"https://a.example.com:8443", 403}, /* another port */
	    {"https://a.example.com.evil.net", 403},
	    {"https://user@a.example.com", 403}, /* not a host */
	    {"https://evil.net/.example.com", 403},
	    {"https://evil.net:1.example.com", 403},
	};
	for (size_t i = 0; i < sizeof w / sizeof w[0]; i++) {
		char req[512];
		snprintf(req, sizeof req, REQ("Sec-WebSocket-Protocol: sip\r\nOrigin: %s\r\n"),
			 w[i].origin);
		if (check(req, wild) != w[i].status)
			fail_msg("Origin %s: %u, want %u", w[i].origin, check(req, wild),
				 w[i].status);
	}
	assert_int_equal(
	    check(REQ("Sec-WebSocket-Protocol: sip\r\nOrigin: https://a.example.com:8443\r\n"),
		  "https://*.example.com:8443"),
	    101);
	/* not a WebSocket upgrade: 426 */
	assert_int_equal(check("GET / HTTP/1.1\r\nHost: x\r\n\r\n", NULL), 426);
	assert_int_equal(check("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n", NULL),
			 426);
	/* other version: 426 */
	const char *v8 =
	    "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\n"
	    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n"
	    "Sec-WebSocket-Protocol: sip\r\n\r\n";
	assert_int_equal(check(v8, NULL), 426);
	/* bad key, POST, twice the key, HTTP/1.0, no Host */
	const char *badkey =
	    "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\n"
	    "Sec-WebSocket-Key: short==\r\nSec-WebSocket-Version: 13\r\n"
	    "Sec-WebSocket-Protocol: sip\r\n\r\n";
	assert_int_equal(check(badkey, NULL), 400);
	assert_int_equal(check(REQ("Sec-WebSocket-Protocol: sip\r\n"
				   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"),
			       NULL),
			 400);
	const char *post =
	    "POST / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\n"
	    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
	    "Sec-WebSocket-Protocol: sip\r\n\r\n";
	assert_int_equal(check(post, NULL), 400);
	const char *nohost =
	    "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n"
	    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
	    "Sec-WebSocket-Protocol: sip\r\n\r\n";
	assert_int_equal(check(nohost, NULL), 400);
	/* refusals are short and close */
	struct ws_upgrade u;
	memset(&u, 0, sizeof u);
	struct buf out;
	buf_init(&out);
	assert_int_equal(ws_upgrade_answer(&u, 426, &out), 0);
	buf_append(&out, "", 1);
	assert_non_null(strstr(out.data, "HTTP/1.1 426 "));
	assert_non_null(strstr(out.data, "Sec-WebSocket-Version: 13\r\n"));
	assert_non_null(strstr(out.data, "Connection: close\r\n"));
	assert_true(out.len < 200);
	buf_free(&out);
}

static void test_upgrade_parse_bounds(void **state)
{
	(void)state;
	struct ws_upgrade u;
	size_t used = 0;
	const char *req = REQ("Sec-WebSocket-Protocol: sip\r\n");
	size_t l = strlen(req);
	/* every proper prefix needs more; the bytes after the request are not its */
	for (size_t i = 0; i < l; i++)
		assert_int_equal(ws_upgrade_parse(req, i, WS_UPGRADE_MAX, &u, &used), ENODATA);
	char both[1024];
	memcpy(both, req, l);
	memcpy(both + l, "\x81\x85", 2);
	assert_int_equal(ws_upgrade_parse(both, l + 2, WS_UPGRADE_MAX, &u, &used), 0);
	assert_int_equal(used, l);
	/* no end within the bound */
	assert_int_equal(ws_upgrade_parse(req, l, l - 1, &u, &used), EMSGSIZE);
	static char big[WS_UPGRADE_MAX + 100];
	memset(big, 'a', sizeof big);
	memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
	assert_int_equal(ws_upgrade_parse(big, sizeof big, WS_UPGRADE_MAX, &u, &used), EMSGSIZE);
	/* not HTTP */
	assert_int_equal(ws_upgrade_parse("REGISTER sip:x SIP/2.0\r\n\r\n", 26, 100, &u, &used),
			 EBADMSG);
	assert_int_equal(ws_upgrade_parse("GET / HTTP/1.1\nHost: x\r\n\r\n", 26, 100, &u, &used),
			 EBADMSG);
	assert_int_equal(ws_upgrade_parse("GET / HTTP/1.1\r\n folded\r\n\r\n", 28, 100, &u, &used),
			 EBADMSG);
	assert_int_equal(ws_upgrade_parse("\r\n\r\n", 4, 100, &u, &used), EBADMSG);
	assert_int_equal(ws_upgrade_parse("GET / HTTP/1.1\r\nX\x01: y\r\n\r\n", 25, 100, &u, &used),
			 EBADMSG);
}

/* RFC 6455 5.7 */
static void test_rfc6455_examples(void **state)
{
	(void)state;
	struct ws_frame fr;
	/* a single-frame unmasked text message: a client's view of a server frame */
	const char unmasked[] = "\x81\x05Hello";
	assert_int_equal(ws_frame_parse(unmasked, 7, false, 1000, &fr), 0);
	assert_true(fr.fin);
	assert_int_equal(fr.opcode, WS_OP_TEXT);
	assert_int_equal(fr.hlen, 2);
	assert_int_equal(fr.plen, 5);
	assert_memory_equal(unmasked + 2, "Hello", 5);
	/* a server rejects it: clients must mask */
	assert_int_equal(ws_frame_parse(unmasked, 7, true, 1000, &fr), EBADMSG);
	/* a single-frame masked text message */
	char masked[] = "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58";
	assert_int_equal(ws_frame_parse(masked, 11, true, 1000, &fr), 0);
	assert_true(fr.masked);
	assert_int_equal(fr.hlen, 6);
	assert_int_equal(fr.plen, 5);
	ws_mask(masked + fr.hlen, fr.plen, fr.mask);
	assert_memory_equal(masked + 6, "Hello", 5);
	assert_int_equal(ws_frame_parse(masked, 11, false, 1000, &fr), EBADMSG);
	/* a fragmented unmasked text message */
	struct ws_msg_state ms = {0};
	bool done;
	uint8_t op = 0;
	assert_int_equal(ws_frame_parse("\x01\x03Hel", 5, false, 1000, &fr), 0);
	assert_false(fr.fin);
	assert_int_equal(ws_msg_add(&ms, &fr, 1000, &done, &op), 0);
	assert_false(done);
	assert_int_equal(ws_frame_parse("\x80\x02lo", 4, false, 1000, &fr), 0);
	assert_int_equal(fr.opcode, WS_OP_CONT);
	assert_int_equal(ws_msg_add(&ms, &fr, 1000, &done, &op), 0);
	assert_true(done);
	assert_int_equal(op, WS_OP_TEXT);
	/* unmasked ping, masked pong */
	assert_int_equal(ws_frame_parse("\x89\x05Hello", 7, false, 1000, &fr), 0);
	assert_int_equal(fr.opcode, WS_OP_PING);
	assert_int_equal(
	    ws_frame_parse("\x8a\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58", 11, true, 1000, &fr), 0);
	assert_int_equal(fr.opcode, WS_OP_PONG);
	/* 256 bytes binary in one unmasked frame: 16-bit length */
	static char b256[4 + 256];
	memcpy(b256, "\x82\x7e\x01\x00", 4);
	assert_int_equal(ws_frame_parse(b256, sizeof b256, false, 1000, &fr), 0);
	assert_int_equal(fr.hlen, 4);
	assert_int_equal(fr.plen, 256);
	/* 64 KiB binary: 64-bit length */
	const char h64k[] = "\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00";
	assert_int_equal(ws_frame_parse(h64k, 10, false, 1u << 20, &fr), ENODATA);
	assert_int_equal(ws_frame_parse(h64k, 10, false, 65535, &fr), EMSGSIZE);
}

static void test_build_roundtrip(void **state)
{
	(void)state;
	static const size_t lens[] = {0, 1, 125, 126, 127, 65535, 65536, 70000};
	static char buf[WS_HDR_MAX + 70000], msg[70000];
	for (size_t i = 0; i < sizeof msg; i++)
		msg[i] = (char)('a' + i % 26);
	for (size_t k = 0; k < 8; k++) {
		for (int masked = 0; masked < 2; masked++) {
			const uint8_t key[4] = {1, 2, 3, 0x80};
			size_t h = ws_frame_hdr((uint8_t *)buf, true, WS_OP_BINARY, lens[k],
						masked ? key : NULL);
			memcpy(buf + h, msg, lens[k]);
			if (masked)
				ws_mask(buf + h, lens[k], key);
			struct ws_frame fr;
			/* every prefix needs more */
			for (size_t cut = 0; cut < h + lens[k]; cut += 1 + cut / 3)
				assert_int_equal(ws_frame_parse(buf, cut, masked, 1u << 20, &fr),
						 ENODATA);
			assert_int_equal(ws_frame_parse(buf, h + lens[k], masked, 1u << 20, &fr),
					 0);
			assert_int_equal(fr.hlen, h);
			assert_int_equal(fr.plen, lens[k]);
			if (masked)
				ws_mask(buf + h, lens[k], fr.mask);
			assert_memory_equal(buf + h, msg, lens[k]);
		}
	}
}

static void test_broken_frames(void **state)
{
	(void)state;
	struct ws_frame fr;
	const size_t max = 1000;
	/* RSV bits */
	assert_int_equal(ws_frame_parse("\xc1\x80\0\0\0\0", 6, true, max, &fr), EBADMSG);
	/* opcodes 3-7, b-f */
	assert_int_equal(ws_frame_parse("\x83\x80\0\0\0\0", 6, true, max, &fr), EBADMSG);
	assert_int_equal(ws_frame_parse("\x8b\x80\0\0\0\0", 6, true, max, &fr), EBADMSG);
	/* fragmented control frame; control payload over 125 */
	assert_int_equal(ws_frame_parse("\x09\x80\0\0\0\0", 6, true, max, &fr), EBADMSG);
	assert_int_equal(ws_frame_parse("\x89\xfe\x00\x7e", 4, true, max, &fr), EBADMSG);
	/* lengths not in shortest form; top bit of the 64-bit length */
	assert_int_equal(ws_frame_parse("\x81\xfe\x00\x05", 4, true, max, &fr), EBADMSG);
	assert_int_equal(ws_frame_parse("\x81\xff\0\0\0\0\0\0\x01\0", 10, true, max, &fr), EBADMSG);
	assert_int_equal(ws_frame_parse("\x81\xff\x80\0\0\0\0\0\0\0", 10, true, SIZE_MAX, &fr),
			 EBADMSG);
	/* oversize, known from the header before any payload */
	assert_int_equal(ws_frame_parse("\x81\xfe\x03\xe9", 4, true, max, &fr), EMSGSIZE);
	assert_int_equal(ws_frame_parse("\x81\xff\0\0\0\0\xff\xff\xff\xff", 10, true, max, &fr),
			 EMSGSIZE);
	/* message assembly: continuation of nothing, interleaving, total size */
	struct ws_msg_state ms = {0};
	bool done;
	uint8_t op;
	struct ws_frame cont = {.fin = true, .opcode = WS_OP_CONT, .plen = 1};
	assert_int_equal(ws_msg_add(&ms, &cont, max, &done, &op), EBADMSG);
	struct ws_frame start = {.fin = false, .opcode = WS_OP_TEXT, .plen = 600};
	assert_int_equal(ws_msg_add(&ms, &start, max, &done, &op), 0);
	assert_int_equal(ws_msg_add(&ms, &start, max, &done, &op), EBADMSG);
	struct ws_frame more = {.fin = false, .opcode = WS_OP_CONT, .plen = 400};
	assert_int_equal(ws_msg_add(&ms, &more, max, &done, &op), 0);
	more.plen = 1;
	assert_int_equal(ws_msg_add(&ms, &more, max, &done, &op), EMSGSIZE);
}

static void test_close_and_utf8(void **state)
{
	(void)state;
	uint16_t code;
	assert_int_equal(ws_close_parse("", 0, &code), 0);
	assert_int_equal(code, WS_CLOSE_NO_STATUS);
	assert_int_equal(ws_close_parse("\x03\xe8", 2, &code), 0);
	assert_int_equal(code, 1000);
	assert_int_equal(ws_close_parse("\x03\xe8"
					"bye",
					5, &code),
			 0);
	assert_int_equal(ws_close_parse("\x03", 1, &code), EBADMSG);
	assert_int_equal(ws_close_parse("\x03\xed", 2, &code), EBADMSG); /* 1005: never sent */
	assert_int_equal(ws_close_parse("\x03\xee", 2, &code), EBADMSG); /* 1006 */
	assert_int_equal(ws_close_parse("\x00\x00", 2, &code), EBADMSG);
	assert_int_equal(ws_close_parse("\x0f\xa0", 2, &code), 0); /* 4000: private use */
	assert_int_equal(ws_close_parse("\x03\xe8\xff", 3, &code), EBADMSG);
	assert_true(ws_utf8_valid("h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80", 16));
	assert_false(ws_utf8_valid("\xc0\xaf", 2));	    /* overlong '/' */
	assert_false(ws_utf8_valid("\xed\xa0\x80", 3));	    /* surrogate */
	assert_false(ws_utf8_valid("\xf4\x90\x80\x80", 4)); /* above U+10FFFF */
	assert_false(ws_utf8_valid("\xe2\x82", 2));	    /* cut short */
	assert_false(ws_utf8_valid("\x80", 1));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_accept_key),		 cmocka_unit_test(test_upgrade_decision),
	    cmocka_unit_test(test_upgrade_parse_bounds), cmocka_unit_test(test_rfc6455_examples),
	    cmocka_unit_test(test_build_roundtrip),	 cmocka_unit_test(test_broken_frames),
	    cmocka_unit_test(test_close_and_utf8),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
