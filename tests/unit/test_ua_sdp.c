/* ua: the SDP offer and answer of a call: what we offer reads back, what we pick from a far
 * end's offer or answer (codec order, rejected sections, a=rtcp, rtcp-mux), and what we refuse. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "ua/ua.h"

static const struct ua_sdp_local local = {
    .ip = "100.64.0.10", .rtp_port = 40000, .rtcp_port = 40123, .sess_id = 7, .version = 1};

static struct slice sl(const struct buf *b)
{
	return (struct slice){(const char *)b->data, b->len};
}

static void test_offer_reads_back(void **state)
{
	(void)state;
	struct buf b;
	buf_init(&b);
	assert_int_equal(ua_sdp_offer(&local, &b), 0);
	struct sdp s;
	assert_int_equal(sdp_parse(&s, sl(&b)), 0);
	assert_int_equal(s.n_media, 1);
	assert_true(s.media[0].rtcp_mux);
	assert_true(s.media[0].has_rtcp);
	assert_int_equal(s.media[0].rtcp_port, 40123);
	assert_int_equal(s.media[0].dir, SDP_DIR_SENDRECV);
	struct ua_sdp_remote r;
	assert_int_equal(ua_sdp_read(sl(&b), &r), 0);
	assert_string_equal(r.addr, "100.64.0.10");
	assert_int_equal(r.port, 40000);
	assert_int_equal(r.rtcp_port, 40123);
	assert_int_equal(r.pt, RTP_PT_PCMU); /* PCMU first, PCMA offered too */
	assert_true(r.rtcp_mux);
	assert_non_null(memmem(b.data, b.len, "a=rtpmap:8 PCMA/8000\r\n", 22));
	buf_free(&b);
}

#define HEAD "v=0\r\no=- 1 1 IN IP4 198.51.100.7\r\ns=-\r\nt=0 0\r\n"

static int read_s(const char *sdp, struct ua_sdp_remote *r)
{
	return ua_sdp_read(slice_cstr(sdp), r);
}

static void test_read_picks_far_order_and_defaults(void **state)
{
	(void)state;
	struct ua_sdp_remote r;
	/* the far end's order decides; a codec we lack is passed over; no
	 * a=rtcp means RTP + 1; no a=rtcp-mux means two ports */
	assert_int_equal(read_s(HEAD "c=IN IP4 198.51.100.7\r\nm=audio 4000 RTP/AVP 18 8 0\r\n", &r),
			 0);
	assert_int_equal(r.pt, RTP_PT_PCMA);
	assert_int_equal(r.rtcp_port, 4001);
	assert_false(r.rtcp_mux);
	assert_string_equal(r.addr, "198.51.100.7");
	/* a rejected section (port 0) and a video one are skipped; the media c=
	 * wins over the session's */
	assert_int_equal(read_s(HEAD "c=IN IP4 198.51.100.7\r\n"
				     "m=audio 0 RTP/AVP 0\r\n"
				     "m=video 5000 RTP/AVP 96\r\n"
				     "m=audio 6000 RTP/AVP 0\r\nc=IN IP4 203.0.113.9\r\n"
				     "a=rtcp:6100\r\na=sendonly\r\n",
				&r),
			 0);
	assert_int_equal(r.port, 6000);
	assert_int_equal(r.rtcp_port, 6100);
	assert_string_equal(r.addr, "203.0.113.9");
	assert_int_equal(r.dir, SDP_DIR_SENDONLY);
	assert_int_equal(r.pt, RTP_PT_PCMU);
}

static void test_read_refuses(void **state)
{
	(void)state;
	struct ua_sdp_remote r;
	/* no G.711 at all */
	assert_int_equal(read_s(HEAD "c=IN IP4 198.51.100.7\r\nm=audio 4000 RTP/AVP 18 96\r\n", &r),
			 ENOTSUP);
	/* "80" and "08" are not PCMA */
	assert_int_equal(read_s(HEAD "c=IN IP4 198.51.100.7\r\nm=audio 4000 RTP/AVP 80 08\r\n", &r),
			 ENOTSUP);
	/* SRTP profile: we do not do it */
	assert_int_equal(read_s(HEAD "c=IN IP4 198.51.100.7\r\nm=audio 4000 RTP/SAVP 0\r\n", &r),
			 ENOTSUP);
	/* a name, not an address: we will not resolve what a stranger wrote */
	assert_int_equal(read_s(HEAD "c=IN IP4 media.example.org\r\nm=audio 4000 RTP/AVP 0\r\n", &r),
			 EBADMSG);
	/* no address anywhere */
	assert_int_equal(read_s(HEAD "m=audio 4000 RTP/AVP 0\r\n", &r), EBADMSG);
	/* not SDP, empty */
	assert_int_not_equal(read_s("hello", &r), 0);
	assert_int_equal(read_s("", &r), EBADMSG);
}

static void test_answer(void **state)
{
	(void)state;
	struct ua_sdp_remote offer = {.pt = RTP_PT_PCMA, .rtcp_mux = true};
	struct buf b;
	buf_init(&b);
	assert_int_equal(ua_sdp_answer(&local, &offer, &b), 0);
	struct ua_sdp_remote r;
	assert_int_equal(ua_sdp_read(sl(&b), &r), 0);
	assert_int_equal(r.pt, RTP_PT_PCMA);
	assert_true(r.rtcp_mux);
	assert_int_equal(r.rtcp_port, 40000); /* muxed: RTCP on the RTP port */
	assert_null(memmem(b.data, b.len, "RTP/AVP 0", 9));
	/* no mux offered: none answered, our own RTCP port */
	buf_reset(&b);
	offer.rtcp_mux = false;
	offer.pt = RTP_PT_PCMU;
	assert_int_equal(ua_sdp_answer(&local, &offer, &b), 0);
	assert_int_equal(ua_sdp_read(sl(&b), &r), 0);
	assert_false(r.rtcp_mux);
	assert_int_equal(r.rtcp_port, 40123);
	assert_int_equal(r.pt, RTP_PT_PCMU);
	buf_free(&b);
}

/* RFC 3264 6.1 and 8.4: hold by a=sendonly, the mirrored answers, the old
 * c=0.0.0.0 form, and what each side may send */
static void test_hold_directions(void **state)
{
	(void)state;
	struct buf b;
	buf_init(&b);
	struct ua_sdp_local l = local;
	l.dir = SDP_DIR_SENDONLY;
	l.version = 2;
	assert_int_equal(ua_sdp_offer(&l, &b), 0);
	assert_non_null(memmem(b.data, b.len, "a=sendonly\r\n", 12));
	assert_null(memmem(b.data, b.len, "a=sendrecv", 10));
	assert_non_null(memmem(b.data, b.len, "o=pinhole 7 2 IN IP4", 20));
	struct ua_sdp_remote r;
	assert_int_equal(ua_sdp_read(sl(&b), &r), 0);
	assert_int_equal(r.dir, SDP_DIR_SENDONLY);
	assert_true(r.rtcp_mux); /* a hold keeps offering mux */
	/* the answers that mirror each offered direction */
	assert_int_equal(ua_sdp_answer_dir(SDP_DIR_SENDONLY, SDP_DIR_NONE), SDP_DIR_RECVONLY);
	assert_int_equal(ua_sdp_answer_dir(SDP_DIR_RECVONLY, SDP_DIR_NONE), SDP_DIR_SENDONLY);
	assert_int_equal(ua_sdp_answer_dir(SDP_DIR_INACTIVE, SDP_DIR_NONE), SDP_DIR_INACTIVE);
	assert_int_equal(ua_sdp_answer_dir(SDP_DIR_SENDRECV, SDP_DIR_NONE), SDP_DIR_SENDRECV);
	assert_int_equal(ua_sdp_answer_dir(SDP_DIR_NONE, SDP_DIR_NONE), SDP_DIR_SENDRECV);
	/* while we hold: a sendrecv offer gets sendonly, a sendonly one inactive */
	assert_int_equal(ua_sdp_answer_dir(SDP_DIR_SENDRECV, SDP_DIR_SENDONLY), SDP_DIR_SENDONLY);
	assert_int_equal(ua_sdp_answer_dir(SDP_DIR_SENDONLY, SDP_DIR_SENDONLY), SDP_DIR_INACTIVE);
	/* the answer we write to a hold */
	struct ua_sdp_remote offer = {.pt = RTP_PT_PCMU, .dir = SDP_DIR_SENDONLY};
	buf_reset(&b);
	assert_int_equal(ua_sdp_answer(&local, &offer, &b), 0);
	assert_non_null(memmem(b.data, b.len, "a=recvonly\r\n", 12));
	assert_int_equal(ua_sdp_read(sl(&b), &r), 0);
	assert_false(ua_sdp_dir_they_send(r.dir)); /* we, as they read us, do not send */
	assert_true(ua_sdp_dir_we_send(r.dir));	   /* ... and take what comes */
	/* resumed */
	offer.dir = SDP_DIR_SENDRECV;
	buf_reset(&b);
	assert_int_equal(ua_sdp_answer(&local, &offer, &b), 0);
	assert_non_null(memmem(b.data, b.len, "a=sendrecv\r\n", 12));
	/* the RFC 2543 form: c=0.0.0.0 means do not send to it */
	assert_int_equal(read_s(HEAD "c=IN IP4 0.0.0.0\r\nm=audio 4000 RTP/AVP 0\r\n", &r), 0);
	assert_true(r.null_addr);
	assert_false(ua_sdp_dir_we_send(r.dir));
	assert_true(ua_sdp_dir_they_send(r.dir));
	assert_int_equal(read_s(HEAD "c=IN IP4 0.0.0.0\r\nm=audio 4000 RTP/AVP 0\r\na=recvonly\r\n",
				&r),
			 0);
	assert_int_equal(r.dir, SDP_DIR_INACTIVE);
	/* rtcp-mux answered: used; a=rtcp names the RTP port then */
	assert_int_equal(read_s(HEAD "c=IN IP4 198.51.100.7\r\nm=audio 4000 RTP/AVP 8\r\n"
				     "a=rtcp:4000\r\na=rtcp-mux\r\na=inactive\r\n",
				&r),
			 0);
	assert_true(r.rtcp_mux);
	assert_int_equal(r.rtcp_port, 4000);
	assert_false(ua_sdp_dir_we_send(r.dir));
	assert_false(ua_sdp_dir_they_send(r.dir));
	buf_free(&b);
}

/* ---- the config file ---- */

struct ini_seen {
	char keys[8][32], vals[8][64];
	unsigned lines[8];
	size_t n;
	char *err;
	size_t errlen;
};

static int ini_h(const char *key, const char *value, unsigned line, void *arg)
{
	struct ini_seen *s = arg;
	if (strcmp(key, "bad") == 0) {
		snprintf(s->err, s->errlen, "bad wants a better value than '%s'", value);
		return EINVAL;
	}
	if (s->n < 8) {
		snprintf(s->keys[s->n], 32, "%s", key);
		snprintf(s->vals[s->n], 64, "%s", value);
		s->lines[s->n++] = line;
	}
	return 0;
}

static int ini(const char *text, struct ini_seen *s, char *err, size_t errlen)
{
	memset(s, 0, sizeof *s);
	s->err = err;
	s->errlen = errlen;
	err[0] = '\0';
	return ua_ini_parse("ua.ini", text, ini_h, s, err, errlen);
}

static void test_ini(void **state)
{
	(void)state;
	struct ini_seen s;
	char err[256];
	/* comments, blank lines, [ua], inline comments, spaces: the keys in order
	 * with their own line numbers */
	assert_int_equal(ini("; a ua\n\n[ua]\nproxy = udp:198.51.100.1:5060 ; the edge\n"
			     "# and\r\nduration=12\njson = yes\n",
			     &s, err, sizeof err),
			 0);
	assert_int_equal(s.n, 3);
	assert_string_equal(s.keys[0], "proxy");
	assert_string_equal(s.vals[0], "udp:198.51.100.1:5060");
	assert_int_equal(s.lines[0], 4);
	assert_string_equal(s.keys[1], "duration");
	assert_string_equal(s.vals[1], "12");
	assert_int_equal(s.lines[1], 6);
	assert_int_equal(s.lines[2], 7);
	/* without a section header too */
	assert_int_equal(ini("tone = 1000", &s, err, sizeof err), 0);
	assert_int_equal(s.n, 1);
	/* errors name the file and the line */
	assert_int_equal(ini("[ua]\ntone = 1000\n[serve]\nx = 1\n", &s, err, sizeof err), EINVAL);
	assert_string_equal(err, "ua.ini:3: unknown section [serve] (only [ua])");
	assert_int_equal(ini("\n\nduration 10\n", &s, err, sizeof err), EINVAL);
	assert_string_equal(err, "ua.ini:3: expected key = value");
	assert_int_equal(ini("tone = 1\nbad = 7\n", &s, err, sizeof err), EINVAL);
	assert_string_equal(err, "ua.ini:2: bad wants a better value than '7'");
	assert_int_equal(s.n, 1); /* the keys before it were read, none after */
	char longl[400];
	memset(longl, 'x', sizeof longl);
	memcpy(longl, "record = ", 9);
	longl[sizeof longl - 1] = '\0';
	assert_int_equal(ini(longl, &s, err, sizeof err), EINVAL);
	assert_non_null(strstr(err, "ua.ini:1: line too long"));
	assert_int_equal(s.n, 0);
	assert_int_equal(ini("= 5\n", &s, err, sizeof err), EINVAL);
	assert_non_null(strstr(err, "ua.ini:1:"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_offer_reads_back),
	    cmocka_unit_test(test_read_picks_far_order_and_defaults),
	    cmocka_unit_test(test_read_refuses),
	    cmocka_unit_test(test_answer),
	    cmocka_unit_test(test_hold_directions),
	    cmocka_unit_test(test_ini),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
