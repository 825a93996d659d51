/* Unit tests of the one-way-audio verdict: each cause from its figures, and the text and JSON forms. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "rtp/rtp.h"

static struct rtp_verdict_in base(void)
{
	struct rtp_verdict_in in;
	memset(&in, 0, sizeof in);
	in.sent_packets = 250;
	in.sent_bytes = 250 * 172;
	snprintf(in.local_announced, sizeof in.local_announced, "203.0.113.9:4000");
	snprintf(in.remote_announced, sizeof in.remote_announced, "198.51.100.7:40112");
	return in;
}

static void hear(struct rtp_verdict_in *in, const char *from)
{
	in->recv_packets = 248;
	in->recv_bytes = 248 * 172;
	in->lost = 2;
	in->jitter_ms = 1.5;
	snprintf(in->remote_source, sizeof in->remote_source, "%s", from);
}

static void test_two_way(void **state)
{
	(void)state;
	struct rtp_verdict_in in = base();
	struct rtp_verdict_out out;
	hear(&in, "198.51.100.7:40112");
	in.far_rtcp = in.far_block = true;
	in.far_received = 249;
	rtp_verdict_decide(&in, &out);
	assert_int_equal(out.verdict, RTP_VERDICT_TWO_WAY);
	assert_false(out.source_mismatch);
	assert_string_equal(out.cause,
			    "Audio went both ways. Of theirs, we got 248 of 250 (0.8% lost).");
	/* an echo: our packets coming back prove both ways, no RTCP needed */
	in = base();
	in.echo = true;
	hear(&in, "198.51.100.7:40112");
	rtp_verdict_decide(&in, &out);
	assert_int_equal(out.verdict, RTP_VERDICT_TWO_WAY);
	/* both ways, from another port than announced: latching worked */
	in.echo = false;
	in.far_rtcp = in.far_block = true;
	in.far_received = 10;
	snprintf(in.remote_announced, sizeof in.remote_announced, "10.0.0.5:4000");
	rtp_verdict_decide(&in, &out);
	assert_int_equal(out.verdict, RTP_VERDICT_TWO_WAY);
	assert_true(out.source_mismatch);
	assert_non_null(strstr(out.cause, "latching"));
}

static void test_one_way_in_nat(void **state)
{
	(void)state;
	/* the example: RTP from the NAT, the SDP names the LAN */
	struct rtp_verdict_in in = base();
	struct rtp_verdict_out out;
	snprintf(in.remote_announced, sizeof in.remote_announced, "10.0.0.5:4000");
	in.remote_private = true;
	hear(&in, "198.51.100.7:40112");
	in.far_rtcp = true; /* its RR has no block about us */
	rtp_verdict_decide(&in, &out);
	assert_int_equal(out.verdict, RTP_VERDICT_ONE_WAY_IN);
	assert_true(out.source_mismatch);
	assert_string_equal(out.cause,
			    "RTP arrived from 198.51.100.7:40112, not from the announced "
			    "10.0.0.5:4000: the far end is behind NAT and nothing relays or latches "
			    "its media, so our RTP to 10.0.0.5:4000 never reached it.");
	/* a block that says it got nothing counts the same */
	in.far_block = true;
	in.far_received = 0;
	rtp_verdict_decide(&in, &out);
	assert_int_equal(out.verdict, RTP_VERDICT_ONE_WAY_IN);
	/* same address both ways, public: dropped on the way */
	in = base();
	hear(&in, "198.51.100.7:40112");
	in.far_rtcp = true;
	rtp_verdict_decide(&in, &out);
	assert_int_equal(out.verdict, RTP_VERDICT_ONE_WAY_IN);
	assert_non_null(strstr(out.cause, "dropped on the way"));
}

static void test_one_way_out(void **state)
{
	(void)state;
	struct rtp_verdict_in in = base();
	struct rtp_verdict_out out;
	in.far_rtcp = in.far_block = true;
	in.far_received = 240;
	snprintf(in.local_announced, sizeof in.local_announced, "192.168.1.20:4000");
	in.local_private = true;
	rtp_verdict_decide(&in, &out);
	assert_int_equal(out.verdict, RTP_VERDICT_ONE_WAY_OUT);
	assert_non_null(strstr(out.cause, "192.168.1.20:4000"));
	assert_non_null(strstr(out.cause, "announced our private address"));
	/* STUN put a public address in the SDP, and still nothing came */
	in.local_private = false;
	in.local_stun = true;
	snprintf(in.local_announced, sizeof in.local_announced, "203.0.113.9:61000");
	rtp_verdict_decide(&in, &out);
	assert_int_equal(out.verdict, RTP_VERDICT_ONE_WAY_OUT);
	assert_non_null(strstr(out.cause, "symmetric"));
}

static void test_none(void **state)
{
	(void)state;
	struct rtp_verdict_in in = base();
	struct rtp_verdict_out out;
	/* echo call, nothing came back, we announced a private address */
	in.echo = true;
	in.local_private = true;
	rtp_verdict_decide(&in, &out);
	assert_int_equal(out.verdict, RTP_VERDICT_NONE);
	assert_non_null(strstr(out.cause, "We sent 250 RTP packets to the echo"));
	assert_non_null(strstr(out.cause, "private address"));
	/* both private */
	in = base();
	in.local_private = in.remote_private = true;
	rtp_verdict_decide(&in, &out);
	assert_int_equal(out.verdict, RTP_VERDICT_NONE);
	assert_non_null(strstr(out.cause, "both are behind NAT"));
	/* the far end's RTCP arrives but says it got nothing, and no RTP */
	in = base();
	in.far_rtcp = true;
	rtp_verdict_decide(&in, &out);
	assert_int_equal(out.verdict, RTP_VERDICT_NONE);
	/* nothing sent at all */
	in = base();
	in.sent_packets = 0;
	rtp_verdict_decide(&in, &out);
	assert_int_equal(out.verdict, RTP_VERDICT_NONE);
	assert_non_null(strstr(out.cause, "carried no media"));
}

static void test_unconfirmed(void **state)
{
	(void)state;
	struct rtp_verdict_in in = base();
	struct rtp_verdict_out out;
	hear(&in, "198.51.100.7:40112");
	rtp_verdict_decide(&in, &out);
	assert_int_equal(out.verdict, RTP_VERDICT_UNCONFIRMED);
	assert_non_null(strstr(out.cause, "sent no RTCP"));
	assert_string_equal(rtp_verdict_name(out.verdict), "unconfirmed");
}

/* A direction where almost nothing arrived is not working audio. */
static void test_share(void **state)
{
	(void)state;
	struct rtp_verdict_in in = base();
	struct rtp_verdict_out out;
	/* an echo: 1 of 300 came back */
	in.echo = true;
	in.sent_packets = 300;
	in.recv_packets = 1;
	in.recv_bytes = 172;
	snprintf(in.remote_source, sizeof in.remote_source, "198.51.100.7:40112");
	rtp_verdict_decide(&in, &out);
	assert_int_not_equal(out.verdict, RTP_VERDICT_TWO_WAY);
	assert_int_equal(out.verdict, RTP_VERDICT_NONE);
	assert_non_null(strstr(out.cause, "only 1 of 300 packets came back"));
	/* 280 of 300 back: two-way, with the loss in the cause */
	in.recv_packets = 280;
	rtp_verdict_decide(&in, &out);
	assert_int_equal(out.verdict, RTP_VERDICT_TWO_WAY);
	assert_string_equal(out.cause, "Audio went both ways. Of our packets, the echo "
				       "returned 280 of 300 (6.7% lost).");
	/* the far end got 2 of ours and lost 298 */
	in = base();
	in.sent_packets = 300;
	hear(&in, "198.51.100.7:40112");
	in.far_rtcp = in.far_block = true;
	in.far_received = 2;
	in.far_lost = 298;
	rtp_verdict_decide(&in, &out);
	assert_int_equal(out.verdict, RTP_VERDICT_ONE_WAY_IN);
	assert_non_null(strstr(out.cause, "the far end reports only 2 of 300 of ours"));
	/* theirs: 3 arrived, 297 lost by our statistics, while ours got through */
	in.far_received = 300;
	in.far_lost = 0;
	in.recv_packets = 3;
	in.lost = 297;
	rtp_verdict_decide(&in, &out);
	assert_int_equal(out.verdict, RTP_VERDICT_ONE_WAY_OUT);
	assert_non_null(strstr(out.cause, "only 3 of 300 of its packets"));
	/* at half, it counts */
	in.recv_packets = 150;
	in.lost = 150;
	rtp_verdict_decide(&in, &out);
	assert_int_equal(out.verdict, RTP_VERDICT_TWO_WAY);
	assert_non_null(strstr(out.cause, "150 of 300 (50.0% lost)"));
	/* both thin: neither counts, and the cause says what little came */
	in.recv_packets = 3;
	in.lost = 297;
	in.far_received = 2;
	in.far_lost = 298;
	rtp_verdict_decide(&in, &out);
	assert_int_equal(out.verdict, RTP_VERDICT_NONE);
	assert_non_null(strstr(out.cause, "Almost no RTP arrived either way: 3 of 300"));
}

static void test_text_json(void **state)
{
	(void)state;
	struct rtp_verdict_in in = base();
	struct rtp_verdict_out out;
	snprintf(in.remote_announced, sizeof in.remote_announced, "10.0.0.5:4000");
	hear(&in, "198.51.100.7:40112");
	in.far_rtcp = true;
	in.have_rtt = true;
	in.rtt_ms = 42;
	in.strays = 3;
	rtp_verdict_decide(&in, &out);
	struct buf b;
	buf_init(&b);
	assert_int_equal(rtp_verdict_text(&in, &out, &b), 0);
	buf_append(&b, "", 1);
	assert_non_null(strstr(b.data, "audio: one-way-in\n"));
	assert_non_null(strstr(b.data, "out: 250 packets, 43000 bytes sent to 10.0.0.5:4000; far "
				       "end reports nothing of ours\n"));
	assert_non_null(strstr(b.data, "in: 248 packets, 42656 bytes from 198.51.100.7:40112 "
				       "(announced 10.0.0.5:4000), lost 2 (0.8%), jitter 1.5 ms, 3 "
				       "from other sources ignored\n"));
	assert_non_null(strstr(b.data, "rtt: 42 ms\n"));
	buf_reset(&b);
	in.have_rtt = false;
	assert_int_equal(rtp_verdict_json(&in, &out, &b), 0);
	buf_append(&b, "", 1);
	assert_non_null(strstr(b.data, "{\"verdict\":\"one-way-in\",\"cause\":\"RTP arrived from"));
	assert_non_null(strstr(b.data, "\"in\":{\"packets\":248,\"bytes\":42656,\"lost\":2,"
				       "\"loss_pct\":0.8,\"jitter_ms\":1.5,\"strays\":3}"));
	assert_non_null(strstr(b.data, "\"rtt_ms\":null"));
	assert_non_null(strstr(b.data, "\"remote_source\":\"198.51.100.7:40112\""));
	assert_non_null(strstr(b.data, "\"source_mismatch\":true}"));
	/* balanced and closed: one object */
	int depth = 0;
	for (const char *p = b.data; *p; p++)
		depth += *p == '{' ? 1 : *p == '}' ? -1 : 0;
	assert_int_equal(depth, 0);
	assert_int_equal(b.data[0], '{');
	buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_two_way),	cmocka_unit_test(test_one_way_in_nat),
	    cmocka_unit_test(test_one_way_out), cmocka_unit_test(test_none),
	    cmocka_unit_test(test_unconfirmed), cmocka_unit_test(test_text_json),
	    cmocka_unit_test(test_share),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
