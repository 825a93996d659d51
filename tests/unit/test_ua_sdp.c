/* ua: the SDP offer and answer of a call: what we offer reads back, what we pick from a far
 * end's offer or answer (codec order, rejected sections, a=rtcp, rtcp-mux), and what we refuse. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
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

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_offer_reads_back),
	    cmocka_unit_test(test_read_picks_far_order_and_defaults),
	    cmocka_unit_test(test_read_refuses),
	    cmocka_unit_test(test_answer),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
