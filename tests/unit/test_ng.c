/* Unit tests of the ng codec: bencode decoding and encoding, cookies, replies, abuse. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "ng/ng.h"

#define OFFER_SDP                                                                                  \
	"v=0\r\no=- 1545997027 1 IN IP4 100.64.1.10\r\ns=-\r\nc=IN IP4 100.64.1.10\r\n"            \
	"t=0 0\r\nm=audio 7078 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n"

/* What Kamailio's rtpengine module sends for rtpengine_offer("trust-address
 * replace-origin replace-session-connection rtcp-mux-demux ICE=remove"):
 * keys unsorted, a number sent as a string. */
/* clang-format off */
static const char offer_msg[] =
	"8253_7 d3:sdp141:" OFFER_SDP
	"5:flagsl13:trust-addresse7:replacel6:origin18:session-connectione"
	"8:rtcp-muxl5:demuxe3:ICE6:remove7:call-id31:a84b4c76e66710@pc33.example.com"
	"10:via-branch16:z9hG4bK776asdhds13:received-froml3:IP411:203.0.113.5e"
	"8:from-tag10:19283017747:command5:offer12:delete-delay2:303:ttli60ee";
/* clang-format on */

static struct slice S(const char *s) {
	return slice_cstr(s);
}

static void
assert_slice(struct slice got, const char *want)
{
	assert_int_equal(got.l, strlen(want));
	assert_memory_equal(got.p, want, got.l);
}

static void assert_buf(const struct buf *b, const char *want)
{
	assert_false(b->failed);
	assert_int_equal(b->len, strlen(want));
	assert_memory_equal(b->data, want, b->len);
}

static void test_ping(void **state)
{
	(void)state;
	struct ng_node nodes[8];
	struct ng_arena a;
	struct slice cookie, cmd;
	const struct ng_node *d;
	struct buf out;

	ng_arena_init(&a, nodes, ARRAY_SIZE(nodes));
	assert_int_equal(ng_msg_parse(S("5323_1 d7:command4:pinge"), &a, &cookie, &d), 0);
	assert_slice(cookie, "5323_1");
	assert_int_equal(d->type, NG_DICT);
	assert_int_equal(d->count, 1);
	assert_int_equal(ng_dict_str(d, "command", &cmd), 0);
	assert_slice(cmd, "ping");
	assert_int_equal(a.used, 2);

	buf_init(&out);
	assert_int_equal(ng_reply_result(&out, cookie, "pong"), 0);
	assert_buf(&out, "5323_1 d6:result4:ponge");
	buf_free(&out);
}

static void test_offer(void **state)
{
	(void)state;
	struct ng_node nodes[64];
	struct ng_arena a;
	struct slice cookie, v;
	const struct ng_node *d;
	int64_t n;

	ng_arena_init(&a, nodes, ARRAY_SIZE(nodes));
	assert_int_equal(ng_msg_parse(S(offer_msg), &a, &cookie, &d), 0);
	assert_slice(cookie, "8253_7");
	assert_int_equal(d->count, 12);

	assert_int_equal(ng_dict_str(d, "command", &v), 0);
	assert_slice(v, "offer");
	assert_int_equal(ng_dict_str(d, "call-id", &v), 0);
	assert_slice(v, "a84b4c76e66710@pc33.example.com");
	assert_int_equal(ng_dict_str(d, "from-tag", &v), 0);
	assert_slice(v, "1928301774");
	assert_int_equal(ng_dict_str(d, "via-branch", &v), 0);
	assert_slice(v, "z9hG4bK776asdhds");
	assert_int_equal(ng_dict_str(d, "sdp", &v), 0);
	assert_slice(v, OFFER_SDP);
	assert_int_equal(ng_dict_str(d, "ICE", &v), 0);
	assert_slice(v, "remove");
	assert_int_equal(ng_dict_str(d, "to-tag", &v), ENOENT);
	assert_int_equal(ng_dict_str(d, "flags", &v), EBADMSG); /* a list */

	const struct ng_node *flags = ng_dict_get(d, "flags");
	assert_non_null(flags);
	assert_int_equal(flags->type, NG_LIST);
	assert_true(ng_list_has(flags, "trust-address"));
	assert_true(ng_list_has(flags, "TRUST-ADDRESS"));
	assert_false(ng_list_has(flags, "trust"));

	const struct ng_node *replace = ng_dict_get(d, "replace");
	assert_int_equal(replace->count, 2);
	assert_true(ng_list_has(replace, "origin"));
	assert_true(ng_list_has(replace, "session-connection"));
	assert_true(ng_list_has(ng_dict_get(d, "rtcp-mux"), "demux"));
	assert_false(ng_list_has(ng_dict_get(d, "rtcp-mux"), "offer"));
	assert_false(ng_list_has(ng_dict_get(d, "command"), "offer")); /* not a list */

	const struct ng_node *rf = ng_dict_get(d, "received-from");
	assert_int_equal(rf->type, NG_LIST);
	assert_int_equal(rf->count, 2);
	assert_slice(rf->child->str, "IP4");
	assert_slice(rf->child->next->str, "203.0.113.5");
	assert_null(rf->child->next->next);
	assert_slice(rf->raw, "l3:IP411:203.0.113.5e");
	assert_slice(rf->key, "received-from");

	assert_int_equal(ng_dict_int(d, "ttl", &n), 0);
	assert_int_equal(n, 60);
	assert_int_equal(ng_dict_int(d, "delete-delay", &n), 0); /* "30" */
	assert_int_equal(n, 30);
	assert_int_equal(ng_dict_int(d, "call-id", &n), EBADMSG);
	assert_int_equal(ng_dict_int(d, "flags", &n), EBADMSG);
	assert_int_equal(ng_dict_int(d, "nope", &n), ENOENT);
	assert_int_equal(ng_dict_int(NULL, "ttl", &n), ENOENT);
	assert_null(ng_dict_get(flags, "x")); /* not a dict */
}

static void test_encode(void **state)
{
	(void)state;
	struct buf out;
	buf_init(&out);

	/* an answer reply with the rewritten SDP */
	assert_int_equal(ng_reply_begin(&out, S("8253_7")), 0);
	assert_int_equal(ng_enc_kv_cstr(&out, "result", "ok"), 0);
	assert_int_equal(ng_enc_kv_str(&out, "sdp", S("v=0\r\n")), 0);
	assert_int_equal(ng_enc_end(&out), 0);
	assert_buf(&out, "8253_7 d6:result2:ok3:sdp5:v=0\r\ne");

	/* a query reply: nested dictionaries, a list, integers and the empty string */
	buf_reset(&out);
	ng_enc_dict_begin(&out);
	ng_enc_kv_cstr(&out, "result", "ok");
	ng_enc_kv_int(&out, "created", 1700000000);
	ng_enc_cstr(&out, "tags");
	ng_enc_dict_begin(&out);
	ng_enc_cstr(&out, "1928301774");
	ng_enc_dict_begin(&out);
	ng_enc_cstr(&out, "medias");
	ng_enc_list_begin(&out);
	ng_enc_int(&out, -1);
	ng_enc_int(&out, 0);
	ng_enc_int(&out, INT64_MIN);
	ng_enc_cstr(&out, "");
	ng_enc_end(&out);
	ng_enc_end(&out);
	ng_enc_end(&out);
	assert_int_equal(ng_enc_end(&out), 0);
	static const char want[] = "d6:result2:ok7:createdi1700000000e4:tagsd10:1928301774d"
				   "6:mediasli-1ei0ei-9223372036854775808e0:eeee";
	assert_buf(&out, want);

	/* and it decodes back to the same structure; re-encoding a node copies it */
	struct ng_node nodes[16];
	struct ng_arena a;
	struct ng_node *root;
	ng_arena_init(&a, nodes, ARRAY_SIZE(nodes));
	assert_int_equal(ng_decode(buf_slice(&out), &a, &root), 0);
	const struct ng_node *medias =
	    ng_dict_get(ng_dict_get(ng_dict_get(root, "tags"), "1928301774"), "medias");
	assert_non_null(medias);
	assert_int_equal(medias->count, 4);
	assert_int_equal(medias->child->next->next->i, INT64_MIN);
	assert_int_equal(medias->child->next->next->next->str.l, 0);
	struct buf copy;
	buf_init(&copy);
	assert_int_equal(ng_enc_node(&copy, medias), 0);
	assert_buf(&copy, "li-1ei0ei-9223372036854775808e0:e");
	buf_free(&copy);
	buf_free(&out);
}

static void test_error_reply(void **state)
{
	(void)state;
	struct buf out;
	buf_init(&out);
	assert_int_equal(ng_reply_error(&out, S("abc"), "Unknown command"), 0);
	assert_buf(&out, "abc d6:result5:error12:error-reason15:Unknown commande");

	/* the error reply is a valid message itself */
	struct ng_node nodes[8];
	struct ng_arena a;
	struct slice cookie, v;
	const struct ng_node *d;
	ng_arena_init(&a, nodes, ARRAY_SIZE(nodes));
	assert_int_equal(ng_msg_parse(buf_slice(&out), &a, &cookie, &d), 0);
	assert_int_equal(ng_dict_str(d, "error-reason", &v), 0);
	assert_slice(v, "Unknown command");
	buf_free(&out);
}

static void test_valid_edges(void **state)
{
	(void)state;
	static const struct {
		const char *in;
		enum ng_type type;
		int64_t i;
	} cases[] = {
	    {"i0e", NG_INT, 0},
	    {"i-1e", NG_INT, -1},
	    {"i9223372036854775807e", NG_INT, INT64_MAX},
	    {"i-9223372036854775808e", NG_INT, INT64_MIN},
	    {"0:", NG_STR, 0},
	    {"le", NG_LIST, 0},
	    {"de", NG_DICT, 0},
	    {"d0:0:e", NG_DICT, 0},
	    {"10:0123456789", NG_STR, 0},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct ng_node nodes[4];
		struct ng_arena a;
		struct ng_node *root;
		ng_arena_init(&a, nodes, ARRAY_SIZE(nodes));
		if (ng_decode(S(cases[i].in), &a, &root) != 0)
			fail_msg("case %zu rejected: %s", i, cases[i].in);
		assert_int_equal(root->type, cases[i].type);
		if (root->type == NG_INT)
			assert_int_equal(root->i, cases[i].i);
		assert_slice(root->raw, cases[i].in);
	}
	/* a string may hold any byte, NUL included */
	static const char bin[] = "3:a\0b";
	struct ng_node n1[1];
	struct ng_arena a;
	struct ng_node *root;
	ng_arena_init(&a, n1, 1);
	assert_int_equal(ng_decode((struct slice){bin, sizeof bin - 1}, &a, &root), 0);
	assert_int_equal(root->str.l, 3);
}

static void test_malformed(void **state)
{
	(void)state;
	static const char *const cases[] = {
	    "",
	    "e",
	    "x",
	    " ",
	    "4:pin",  /* truncated string */
	    "4pinge", /* no colon */
	    "1:",     /* truncated */
	    ":",
	    "-1:x",
	    "03:abc", /* leading zero in a length */
	    "00:",
	    "99999999999999999999999999:x", /* huge length */
	    "18446744073709551616:x",
	    "4294967296:x",
	    "i03e", /* leading zero */
	    "i-0e", /* negative zero */
	    "i00e",
	    "ie",
	    "i-e",
	    "i--1e",
	    "i+1e",
	    "i1",
	    "i12",
	    "i1.5e",
	    "i9223372036854775808e", /* one past INT64_MAX */
	    "i-9223372036854775809e",
	    "i99999999999999999999999e",
	    "l",
	    "li1e",
	    "d",
	    "d3:abc",	  /* key without value */
	    "d3:abci1e",  /* unterminated dict */
	    "di1e1:xe",	  /* integer key */
	    "dl1:ae1:xe", /* list key */
	    "d3:abce",
	    "4:pingX", /* trailing bytes */
	    "i1ei2e",
	    "dee",
	    "d7:command4:pinge ",
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct ng_node nodes[16];
		struct ng_arena a;
		struct ng_node *root = NULL;
		ng_arena_init(&a, nodes, ARRAY_SIZE(nodes));
		int err = ng_decode(S(cases[i]), &a, &root);
		if (err != EBADMSG)
			fail_msg("case %zu (%s): got %d", i, cases[i], err);
		assert_int_equal(a.used, 0); /* nodes given back */
	}
}

static void test_abuse_limits(void **state)
{
	(void)state;
	struct ng_arena a;
	struct ng_node *root;
	char deep[2 * NG_MAX_DEPTH + 2];

	assert_int_equal(ng_arena_alloc(&a, 4096), 0);

	/* nesting: NG_MAX_DEPTH lists deep is fine, one more is not */
	size_t k = NG_MAX_DEPTH + 1;
	memset(deep, 'l', k);
	memset(deep + k, 'e', k);
	assert_int_equal(ng_decode((struct slice){deep, 2 * k}, &a, &root), EBADMSG);
	k = NG_MAX_DEPTH;
	memset(deep, 'l', k);
	memset(deep + k, 'e', k);
	assert_int_equal(ng_decode((struct slice){deep, 2 * k}, &a, &root), 0);
	ng_arena_reset(&a);

	/* a million opening brackets: refused at the depth limit, no stack overflow */
	size_t big = 1u << 20;
	char *lots = test_malloc(big);
	memset(lots, 'l', big);
	assert_int_equal(ng_decode((struct slice){lots, big}, &a, &root), EBADMSG);
	memset(lots, 'd', big);
	assert_int_equal(ng_decode((struct slice){lots, big}, &a, &root), EBADMSG);

	/* more values than the arena holds */
	struct buf b;
	buf_init(&b);
	ng_enc_list_begin(&b);
	for (int i = 0; i < 5000; i++)
		ng_enc_int(&b, i);
	ng_enc_end(&b);
	assert_int_equal(ng_decode(buf_slice(&b), &a, &root), EBADMSG);
	assert_int_equal(a.used, 0);
	buf_free(&b);
	test_free(lots);
	ng_arena_free(&a);
	assert_null(a.nodes);

	/* an arena of nothing decodes nothing */
	ng_arena_init(&a, NULL, 10);
	assert_int_equal(ng_decode(S("i1e"), &a, &root), EBADMSG);
}

static void test_framing(void **state)
{
	(void)state;
	struct slice cookie, body;
	static const char *const bad[] = {
	    "",
	    "nospace",
	    " d7:command4:pinge", /* empty cookie */
	    "abc ",		  /* empty body */
	    "ab\tc d7:command4:pinge",
	    "ab\x01 de",
	    "ab\xc3\xa9 de",
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		if (ng_msg_split(S(bad[i]), &cookie, &body) != EBADMSG)
			fail_msg("case %zu accepted", i);

	char longc[NG_MAX_COOKIE + 8];
	memset(longc, 'c', NG_MAX_COOKIE);
	memcpy(longc + NG_MAX_COOKIE, " de", 4);
	assert_int_equal(ng_msg_split(S(longc), &cookie, &body), 0);
	memset(longc, 'c', NG_MAX_COOKIE + 1);
	memcpy(longc + NG_MAX_COOKIE + 1, " de", 4);
	assert_int_equal(ng_msg_split(S(longc), &cookie, &body), EBADMSG);

	/* only the first space separates; the body keeps its own */
	assert_int_equal(ng_msg_split(S("c1  de"), &cookie, &body), 0);
	assert_slice(cookie, "c1");
	assert_slice(body, " de");

	/* the body must be one dictionary */
	struct ng_node nodes[8];
	struct ng_arena a;
	const struct ng_node *d;
	ng_arena_init(&a, nodes, ARRAY_SIZE(nodes));
	assert_int_equal(ng_msg_parse(S("c1 l4:pinge"), &a, &cookie, &d), EBADMSG);
	assert_int_equal(ng_msg_parse(S("c1 4:ping"), &a, &cookie, &d), EBADMSG);
	assert_int_equal(ng_msg_parse(S("c1  de"), &a, &cookie, &d), EBADMSG);
	assert_int_equal(ng_msg_parse(S("c1 d7:command4:ping"), &a, &cookie, &d), EBADMSG);
	assert_int_equal(a.used, 0);
	assert_int_equal(ng_msg_parse(S("c1 de"), &a, &cookie, &d), 0);
	assert_int_equal(d->count, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_ping),	 cmocka_unit_test(test_offer),
	    cmocka_unit_test(test_encode),	 cmocka_unit_test(test_error_reply),
	    cmocka_unit_test(test_valid_edges),	 cmocka_unit_test(test_malformed),
	    cmocka_unit_test(test_abuse_limits), cmocka_unit_test(test_framing),
	};
	return cmocka_run_group_tests_name("ng", tests, NULL, NULL);
}
