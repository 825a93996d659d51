/* Unit tests for the SIP splicing serializer and response builder. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "sip/sip.h"

static struct sip_msg msg_storage, out_storage;
static struct sip_editor ed_storage;

static const char req[] =
	"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
	"Via: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKaaa;rport\r\n"
	"Via: SIP/2.0/TCP p1.example.com;branch=z9hG4bKp1, SIP/2.0/UDP p2.example.com;branch=z9hG4bKp2\r\n"
	"Route: <sip:p0.example.com;lr>, <sip:p9.example.com;lr>\r\n"
	"Route: <sip:p8.example.com;lr>\r\n"
	"Max-Forwards: 70\r\n"
	"To: <sip:bob@biloxi.example.com>\r\n"
	"f: <sip:alice@atlanta.example.com>;tag=1\r\n"
	"Call-ID: ed1\r\n"
	"CSeq: 7 INVITE\r\n"
	"Content-Length: 5\r\n"
	"\r\n"
	"hello";

struct fixture {
	struct sip_msg *m;
	struct sip_editor *e;
	struct buf out;
};

static struct fixture fx;

static int setup(void **state)
{
	fx.m = &msg_storage;
	fx.e = &ed_storage;
	buf_init(&fx.out);
	if (sip_msg_parse(fx.m, req, strlen(req), false, NULL))
		return -1;
	sip_editor_init(fx.e, fx.m);
	*state = &fx;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	sip_editor_free(fx.e);
	buf_free(&fx.out);
	return 0;
}

/* The expected text with one change spliced in, as a C string for comparison. */
static void assert_out(const struct buf *b, const char *want)
{
	if (b->len != strlen(want) || memcmp(b->data, want, b->len) != 0)
		fail_msg("got:\n%.*s\nwant:\n%s", (int)b->len, b->data, want);
}

static void test_noop(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(sip_edit_apply(f->e, &f->out), 0);
	assert_out(&f->out, req);
}

static void test_proxy_edits(void **state)
{
	struct fixture *f = *state;
	const struct sip_msg *m = f->m;
	/* what a proxy does: received/rport on the top Via, its own Via on top,
	 * pop the first Route value, decrement Max-Forwards, new R-URI */
	assert_int_equal(sip_edit_insert_after(f->e, m->via1.whole, ";received=%s", "198.18.0.5"), 0);
	struct sip_param rp;
	assert_true(sip_param_find(m->via1.params, "rport", &rp));
	assert_int_equal(sip_edit_replace(f->e, rp.name, "rport=%u", 40001u), 0);
	assert_int_equal(sip_edit_insert_hdr_before(f->e, 0, "Via: SIP/2.0/UDP px.example.com;branch=%s1", SIP_BRANCH_MAGIC), 0);
	const struct sip_hdr *route = sip_msg_hdr(m, SIP_HDR_ROUTE, 0);
	assert_int_equal(sip_edit_remove_first_value(f->e, (size_t)(route - m->hdrs)), 0);
	const struct sip_hdr *mf = sip_msg_hdr(m, SIP_HDR_MAX_FORWARDS, 0);
	assert_int_equal(sip_edit_replace(f->e, mf->value, "%d", m->max_forwards - 1), 0);
	assert_int_equal(sip_edit_set_ruri(f->e, "sip:bob@%s:%u", "192.0.2.99", 5062u), 0);
	assert_int_equal(sip_edit_insert_hdr_before(f->e, m->n_hdrs, "X-Last: %d", 1), 0);
	assert_int_equal(sip_edit_apply(f->e, &f->out), 0);
	assert_out(&f->out,
		   "INVITE sip:bob@192.0.2.99:5062 SIP/2.0\r\n"
		   "Via: SIP/2.0/UDP px.example.com;branch=z9hG4bK1\r\n"
		   "Via: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKaaa;rport=40001;received=198.18.0.5\r\n"
		   "Via: SIP/2.0/TCP p1.example.com;branch=z9hG4bKp1, SIP/2.0/UDP p2.example.com;branch=z9hG4bKp2\r\n"
		   "Route: <sip:p9.example.com;lr>\r\n"
		   "Route: <sip:p8.example.com;lr>\r\n"
		   "Max-Forwards: 69\r\n"
		   "To: <sip:bob@biloxi.example.com>\r\n"
		   "f: <sip:alice@atlanta.example.com>;tag=1\r\n"
		   "Call-ID: ed1\r\n"
		   "CSeq: 7 INVITE\r\n"
		   "Content-Length: 5\r\n"
		   "X-Last: 1\r\n"
		   "\r\n"
		   "hello");
	/* the input is untouched */
	assert_int_equal(memcmp(m->raw.p, req, strlen(req)), 0);
}

static void test_remove(void **state)
{
	struct fixture *f = *state;
	const struct sip_msg *m = f->m;
	/* single-value line: the whole line goes */
	assert_int_equal(sip_edit_remove_first_value(f->e, m->via1_hdr), 0);
	/* two values on the second Via line: only the first goes */
	assert_int_equal(sip_edit_remove_first_value(f->e, 1), 0);
	const struct sip_hdr *r2 = sip_msg_hdr(m, SIP_HDR_ROUTE, 1);
	assert_int_equal(sip_edit_remove_hdr(f->e, (size_t)(r2 - m->hdrs)), 0);
	/* insert before a removed header still lands in its place */
	assert_int_equal(sip_edit_insert_hdr_before(f->e, (size_t)(r2 - m->hdrs), "Record-Route: <sip:me;lr>"), 0);
	assert_int_equal(sip_edit_apply(f->e, &f->out), 0);
	assert_out(&f->out,
		   "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
		   "Via: SIP/2.0/UDP p2.example.com;branch=z9hG4bKp2\r\n"
		   "Route: <sip:p0.example.com;lr>, <sip:p9.example.com;lr>\r\n"
		   "Record-Route: <sip:me;lr>\r\n"
		   "Max-Forwards: 70\r\n"
		   "To: <sip:bob@biloxi.example.com>\r\n"
		   "f: <sip:alice@atlanta.example.com>;tag=1\r\n"
		   "Call-ID: ed1\r\n"
		   "CSeq: 7 INVITE\r\n"
		   "Content-Length: 5\r\n"
		   "\r\n"
		   "hello");
	/* the result parses */
	assert_int_equal(sip_msg_parse(&out_storage, f->out.data, f->out.len, true, NULL), 0);
	assert_int_equal(out_storage.via1.port, 0);
}

static void test_body(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(sip_edit_set_body(f->e, SLICE_LIT("v=0\r\no=- 1 1 IN IP4 198.18.0.1\r\n")), 0);
	assert_int_equal(sip_edit_apply(f->e, &f->out), 0);
	const char *tail = "Content-Length: 32\r\n\r\nv=0\r\no=- 1 1 IN IP4 198.18.0.1\r\n";
	assert_true(f->out.len > strlen(tail));
	assert_memory_equal(f->out.data + f->out.len - strlen(tail), tail, strlen(tail));
	assert_int_equal(sip_msg_parse(&out_storage, f->out.data, f->out.len, true, NULL), 0);
	assert_int_equal(out_storage.content_length, 32);
}

static void test_body_no_cl(void **state)
{
	(void)state;
	/* a datagram without Content-Length and with trailing noise after the body */
	static const char text[] = "MESSAGE sip:a@h SIP/2.0\r\nv: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
				   "f: <sip:a@h>;tag=1\r\nt: <sip:b@h>\r\ni: x\r\nCSeq: 1 MESSAGE\r\n\r\nold";
	struct sip_editor *e = &ed_storage;
	struct buf out;
	buf_init(&out);
	assert_int_equal(sip_msg_parse(&msg_storage, text, strlen(text), false, NULL), 0);
	sip_editor_init(e, &msg_storage);
	assert_int_equal(sip_edit_set_body(e, SLICE_LIT("new!")), 0);
	assert_int_equal(sip_edit_apply(e, &out), 0);
	assert_out(&out, "MESSAGE sip:a@h SIP/2.0\r\nv: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
			 "f: <sip:a@h>;tag=1\r\nt: <sip:b@h>\r\ni: x\r\nCSeq: 1 MESSAGE\r\n"
			 "Content-Length: 4\r\n\r\nnew!");
	sip_editor_free(e);
	buf_free(&out);

	/* bytes past Content-Length are not forwarded */
	static const char dbl[] = "MESSAGE sip:a@h SIP/2.0\r\nv: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
				  "f: <sip:a@h>;tag=1\r\nt: <sip:b@h>\r\ni: x\r\nCSeq: 1 MESSAGE\r\n"
				  "l: 2\r\n\r\nokNOISE";
	assert_int_equal(sip_msg_parse(&msg_storage, dbl, strlen(dbl), false, NULL), 0);
	sip_editor_init(e, &msg_storage);
	assert_int_equal(sip_edit_apply(e, &out), 0);
	assert_int_equal(out.len, strlen(dbl) - 5);
	sip_editor_free(e);
	buf_free(&out);
}

/* Pieces are formatted by the editor's own subset of printf, by vsnprintf for
 * any other conversion, and kept on the heap once its arena is full: the
 * text is the same whichever way it went. */
static void test_piece_formats(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(sip_edit_insert_hdr_before(f->e, 0, "X-A: %s|%.*s|%d|%d|%u|%zu|100%%", "str", 3,
						    "abcdef", -42, -2147483647 - 1, 4294967295u,
						    (size_t)12345), 0);
	assert_int_equal(sip_edit_insert_hdr_before(f->e, 0, "X-B: %x|%5d|%s", 255u, 7, "end"), 0);
	char big[3000];
	memset(big, 'y', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	assert_int_equal(sip_edit_insert_hdr_before(f->e, 0, "X-C: %s", big), 0);
	assert_int_equal(sip_edit_insert_hdr_before(f->e, 0, "X-D: %u", 9u), 0);
	assert_int_equal(sip_edit_apply(f->e, &f->out), 0);
	static char want[4096];
	snprintf(want, sizeof want,
		 "X-A: str|abc|-42|-2147483648|4294967295|12345|100%%\r\n"
		 "X-B: ff|    7|end\r\n"
		 "X-C: %s\r\n"
		 "X-D: 9\r\n",
		 big);
	const char *start = memchr(f->out.data, '\n', f->out.len);
	assert_non_null(start);
	start++;
	assert_true((size_t)(f->out.data + f->out.len - start) > strlen(want));
	if (memcmp(start, want, strlen(want)) != 0)
		fail_msg("got:\n%.*s\nwant:\n%s", (int)strlen(want), start, want);
}

static void test_errors(void **state)
{
	struct fixture *f = *state;
	char other[] = "elsewhere";
	assert_int_equal(sip_edit_replace(f->e, (struct slice){other, 3}, "x"), EINVAL);
	assert_true(f->e->failed);
	assert_int_equal(sip_edit_apply(f->e, &f->out), EINVAL);
	sip_editor_free(f->e);

	sip_editor_init(f->e, f->m);
	assert_int_equal(sip_edit_remove_hdr(f->e, f->m->n_hdrs), EINVAL);
	sip_editor_free(f->e);

	/* overlapping edits are refused at apply */
	sip_editor_init(f->e, f->m);
	assert_int_equal(sip_edit_remove_hdr(f->e, 0), 0);
	assert_int_equal(sip_edit_replace(f->e, f->m->via1.branch, "z9hG4bKnew"), 0);
	assert_int_equal(sip_edit_apply(f->e, &f->out), EINVAL);
	sip_editor_free(f->e);

	/* too many edits */
	sip_editor_init(f->e, f->m);
	int err = 0;
	for (int i = 0; i <= SIP_MAX_EDITS && !err; i++)
		err = sip_edit_insert_hdr_before(f->e, 0, "X-N: %d", i);
	assert_int_equal(err, ENOSPC);
	assert_int_equal(sip_edit_apply(f->e, &f->out), EINVAL);
}

static void test_build_response(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(sip_build_response(&f->out, f->m, 200, NULL, SLICE_NULL,
					    SLICE_LIT("srv1"), "Contact: <sip:me>\r\n"), 0);
	assert_out(&f->out,
		   "SIP/2.0 200 OK\r\n"
		   "Via: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKaaa;rport\r\n"
		   "Via: SIP/2.0/TCP p1.example.com;branch=z9hG4bKp1, SIP/2.0/UDP p2.example.com;branch=z9hG4bKp2\r\n"
		   "From: <sip:alice@atlanta.example.com>;tag=1\r\n"
		   "To: <sip:bob@biloxi.example.com>;tag=srv1\r\n"
		   "Call-ID: ed1\r\n"
		   "CSeq: 7 INVITE\r\n"
		   "Contact: <sip:me>\r\n"
		   "Content-Length: 0\r\n"
		   "\r\n");
	buf_reset(&f->out);
	assert_int_equal(sip_build_response(&f->out, f->m, 483, "Too Many Hops",
					    SLICE_LIT("SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKaaa;rport=1;received=198.18.0.2"),
					    SLICE_NULL, NULL), 0);
	assert_out(&f->out,
		   "SIP/2.0 483 Too Many Hops\r\n"
		   "Via: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKaaa;rport=1;received=198.18.0.2\r\n"
		   "Via: SIP/2.0/TCP p1.example.com;branch=z9hG4bKp1, SIP/2.0/UDP p2.example.com;branch=z9hG4bKp2\r\n"
		   "From: <sip:alice@atlanta.example.com>;tag=1\r\n"
		   "To: <sip:bob@biloxi.example.com>\r\n"
		   "Call-ID: ed1\r\n"
		   "CSeq: 7 INVITE\r\n"
		   "Content-Length: 0\r\n"
		   "\r\n");
	/* the response parses and matches the request */
	assert_int_equal(sip_msg_parse(&out_storage, f->out.data, f->out.len, true, NULL), 0);
	assert_int_equal(out_storage.status, 483);
	assert_true(slice_eq(out_storage.via1.branch, f->m->via1.branch));
	assert_int_equal(sip_build_response(&f->out, &out_storage, 200, NULL, SLICE_NULL,
					    SLICE_NULL, NULL), EINVAL);
}

static void test_response_to_tagged(void **state)
{
	(void)state;
	static const char text[] = "BYE sip:a@h SIP/2.0\r\nv: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
				   "f: <sip:a@h>;tag=1\r\nt: <sip:b@h>;tag=2\r\ni: x\r\nCSeq: 2 BYE\r\n\r\n";
	struct buf out;
	buf_init(&out);
	assert_int_equal(sip_msg_parse(&msg_storage, text, strlen(text), false, NULL), 0);
	assert_int_equal(sip_build_response(&out, &msg_storage, 481, NULL, SLICE_NULL,
					    SLICE_LIT("zz"), NULL), 0);
	assert_out(&out, "SIP/2.0 481 Call/Transaction Does Not Exist\r\n"
			 "Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
			 "From: <sip:a@h>;tag=1\r\nTo: <sip:b@h>;tag=2\r\nCall-ID: x\r\n"
			 "CSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n");
	buf_free(&out);
	assert_string_equal(sip_reason_phrase(486), "Busy Here");
	assert_string_equal(sip_reason_phrase(499), "Bad Request");
	assert_string_equal(sip_reason_phrase(299), "OK");
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_noop),           T(test_proxy_edits),   T(test_remove),
		T(test_body),           T(test_body_no_cl),    T(test_errors),
		T(test_build_response), T(test_response_to_tagged),
		T(test_piece_formats),
	};
	return cmocka_run_group_tests_name("sip_edit", tests, NULL, NULL);
}
